//! Campaign 5: seeded, structure-aware fuzzing on stable Rust.
//!
//! Each target takes bytes. Inputs come from the target's corpus (`reliability/corpus/<target>/`,
//! small files kept in the repository), mutated libFuzzer-style (bit flips, byte edits, splices,
//! dictionary tokens, tricky Unicode), or fresh random bytes; structured targets read their
//! choices from the bytes with `arbitrary::Unstructured`. A target checks properties, not just
//! "no panic": parse ∘ print round trips, agreement with a brute-force scan, "a refusal changes
//! nothing", "every HTTP answer is a documented 2xx/4xx with a known error code". A panic, a
//! property violation or an input slower than [`SLOW_EXEC`] is a violation; the input is written
//! to the corpus as `crash-<hash>` so the next run replays it first.
//!
//! Inputs whose outcome has a signature not seen before (e.g. a new refusal reason) join the
//! in-memory corpus for further mutation — a poor man's coverage feedback.

pub mod http;
pub mod targets;

use std::collections::HashSet;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{thousands, Mode, Outcome};

/// An input that takes longer than this is a violation (a hang, in small).
pub const SLOW_EXEC: Duration = Duration::from_secs(2);
/// Longest input generated or mutated.
const INPUT_LEN_MAX: usize = 512;
/// Inputs the in-memory corpus keeps at most.
const CORPUS_MAX: usize = 2_000;

/// What one execution found: a signature of its outcome, or a broken property.
pub type ExecResult = Result<String, String>;

/// A fuzz target over bytes.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub name: &'static str,
    pub what: &'static str,
    /// Tokens the mutator splices in.
    pub dict: &'static [&'static str],
    pub run: fn(&[u8]) -> ExecResult,
}

/// Executions per target for a mode.
pub fn execs_for(mode: Mode, http: bool) -> u64 {
    match (mode, http) {
        (Mode::Short, false) => 5_000,
        (Mode::Short, true) => 5_000,
        (Mode::Long, _) => 10_000_000,
    }
}

/// The corpus folder of a target.
pub fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
}

/// Reads a target's corpus files.
pub fn load_corpus(target: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(corpus_dir(target)) {
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            if let Ok(bytes) = std::fs::read(&p) {
                out.push(bytes);
            }
        }
    }
    out
}

fn hash(bytes: &[u8]) -> u64 {
    // FNV-1a: stable across runs and platforms, enough to name a file.
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Saves an input that broke something, so the next run replays it.
pub(crate) fn save_crash(target: &str, input: &[u8]) -> Option<PathBuf> {
    let dir = corpus_dir(target);
    std::fs::create_dir_all(&dir).ok()?;
    let path = dir.join(format!("crash-{:016x}", hash(input)));
    std::fs::write(&path, input).ok()?;
    Some(path)
}

/// Characters that have tripped parsers elsewhere: case mappings that change byte lengths,
/// separators, full-width forms, combining marks, right-to-left, NUL.
pub const TRICKY: &[&str] = &[
    "ﬀ",
    "ß",
    "İ",
    "ı",
    "ǅ",
    "K",
    "Å",
    "·",
    "•",
    "\u{3000}",
    "\u{0301}",
    "\u{202e}",
    "\u{0000}",
    "\u{feff}",
    "Ａ",
    "１",
    "粤",
    "京",
    "🚗",
    "\u{10ffff}",
    "\r\n",
    "\\",
    "\"",
    "%00",
    "%2F",
    "../",
];

/// Mutates `input` in place: one to four edits.
pub fn mutate(rng: &mut StdRng, input: &mut Vec<u8>, dict: &[&str], corpus: &[Vec<u8>]) {
    let edits = rng.random_range(1..=4);
    for _ in 0..edits {
        let len = input.len();
        match rng.random_range(0..11) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                input[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                input[i] = rng.random();
            }
            2 => {
                let i = rng.random_range(0..=len);
                input.insert(i, rng.random());
            }
            3 if len > 0 => {
                let a = rng.random_range(0..len);
                let b = rng.random_range(a..=len.min(a + 8));
                input.drain(a..b);
            }
            4 | 5 if !dict.is_empty() => {
                let tok = dict[rng.random_range(0..dict.len())].as_bytes();
                let i = rng.random_range(0..=len);
                if rng.random_bool(0.3) && len > 0 {
                    let end = rng.random_range(i..=len);
                    input.splice(i..end, tok.iter().copied());
                } else {
                    input.splice(i..i, tok.iter().copied());
                }
            }
            6 => {
                let tok = TRICKY[rng.random_range(0..TRICKY.len())].as_bytes();
                let i = rng.random_range(0..=len);
                input.splice(i..i, tok.iter().copied());
            }
            7 if !corpus.is_empty() => {
                let other = &corpus[rng.random_range(0..corpus.len())];
                if !other.is_empty() {
                    let a = rng.random_range(0..other.len());
                    let b = rng.random_range(a..=other.len());
                    let i = rng.random_range(0..=len);
                    input.splice(i..i, other[a..b].iter().copied());
                }
            }
            8 if len > 1 => {
                let a = rng.random_range(0..len);
                let b = rng.random_range(a..=len.min(a + 16));
                let chunk: Vec<u8> = input[a..b].to_vec();
                input.splice(b..b, chunk);
            }
            9 if len > 0 => input.truncate(rng.random_range(0..len)),
            _ => {
                let i = rng.random_range(0..=len);
                let digit = b"0123456789"[rng.random_range(0..10)];
                input.insert(i, digit);
            }
        }
    }
    input.truncate(INPUT_LEN_MAX);
}

/// What a target's run counted.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub execs: u64,
    pub signatures: usize,
    pub corpus_files: usize,
    pub slowest: Duration,
    pub violations: Vec<String>,
    /// HTTP target: answers that were 2xx (the rest were documented 4xx).
    pub accepted: u64,
}

/// Runs a synchronous target `execs` times from `seed`.
pub fn fuzz(target: &Target, execs: u64, seed: u64) -> Stats {
    let mut rng = StdRng::seed_from_u64(seed ^ hash(target.name.as_bytes()));
    let files = load_corpus(target.name);
    let mut stats = Stats {
        corpus_files: files.len(),
        ..Stats::default()
    };
    let mut corpus = files.clone();
    let mut seen: HashSet<String> = HashSet::new();
    let hook = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let mut replay = files.into_iter();
    for n in 0..execs {
        let input = match replay.next() {
            Some(f) => f,
            None => next_input(&mut rng, target.dict, &corpus),
        };
        let started = Instant::now();
        let result = panic::catch_unwind(AssertUnwindSafe(|| (target.run)(&input)));
        let took = started.elapsed();
        stats.slowest = stats.slowest.max(took);
        stats.execs = n + 1;
        let problem = match result {
            Ok(Ok(sig)) => {
                if seen.insert(sig) && corpus.len() < CORPUS_MAX {
                    corpus.push(input.clone());
                }
                None
            }
            Ok(Err(broken)) => Some(broken),
            Err(p) => Some(format!("panic: {}", panic_text(&p))),
        };
        let problem = problem.or_else(|| (took > SLOW_EXEC).then(|| format!("took {took:?}")));
        if let Some(p) = problem {
            let saved = save_crash(target.name, &input)
                .map(|p| format!(" (saved as {})", p.display()))
                .unwrap_or_default();
            stats.violations.push(format!(
                "{}: {p} on input {:?}{saved}",
                target.name,
                String::from_utf8_lossy(&input)
            ));
            if stats.violations.len() >= 5 {
                break;
            }
        }
    }
    panic::set_hook(hook);
    stats.signatures = seen.len();
    stats
}

/// A fresh input: a mutated corpus entry mostly, random bytes sometimes.
pub fn next_input(rng: &mut StdRng, dict: &[&str], corpus: &[Vec<u8>]) -> Vec<u8> {
    if corpus.is_empty() || rng.random_bool(0.1) {
        let len = rng.random_range(0..64);
        let mut v: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        if rng.random_bool(0.5) {
            mutate(rng, &mut v, dict, corpus);
        }
        return v;
    }
    let mut v = corpus[rng.random_range(0..corpus.len())].clone();
    mutate(rng, &mut v, dict, corpus);
    v
}

pub fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

/// Every target: the engine's (synchronous) ones and the gateway's JSON bodies.
pub fn target_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = targets::TARGETS.iter().map(|t| t.name).collect();
    names.push(http::TARGET);
    names
}

/// Runs one target by name (the `fuzz` subcommand).
pub fn run_one(name: &str, execs: u64, seed: u64) -> Result<Outcome, String> {
    let started = Instant::now();
    let mut out = Outcome::new("fuzz", "fuzzing (campaign 5)");
    let stats = if name == http::TARGET {
        http::fuzz(execs, seed)
    } else {
        let t = targets::TARGETS
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| {
                format!(
                    "no fuzz target {name:?}; targets: {}",
                    target_names().join(", ")
                )
            })?;
        fuzz(t, execs, seed)
    };
    record(&mut out, name, &stats);
    out.elapsed = started.elapsed();
    Ok(out)
}

fn record(out: &mut Outcome, name: &str, stats: &Stats) {
    out.figure(
        format!("{name}: executions"),
        format!(
            "{} ({} corpus files replayed first, {} outcome signatures, slowest {:.1} ms)",
            thousands(stats.execs),
            stats.corpus_files,
            stats.signatures,
            stats.slowest.as_secs_f64() * 1e3
        ),
    );
    if stats.violations.is_empty() {
        if name == http::TARGET {
            out.held(format!(
                "{name}: every one of {} requests answered 2xx ({}) or a documented 4xx with a known error code; no 5xx, no panic",
                thousands(stats.execs),
                thousands(stats.accepted)
            ));
        } else {
            out.held(format!(
                "{name}: no panic, no hang, every property held over {} inputs",
                thousands(stats.execs)
            ));
        }
    }
    for v in &stats.violations {
        out.violation(v.clone());
    }
}

/// The campaign for the `reliability` binary.
pub fn campaign(mode: Mode) -> Outcome {
    let started = Instant::now();
    let mut out = Outcome::new(
        "fuzz",
        "fuzzing: parsers, keyboard, releases, office config, JSON bodies (campaign 5)",
    );
    for t in targets::TARGETS {
        out.tried(format!("{}: {}", t.name, t.what));
        let stats = fuzz(t, execs_for(mode, false), 1);
        record(&mut out, t.name, &stats);
    }
    out.tried(format!("{}: {}", http::TARGET, http::WHAT));
    let stats = http::fuzz(execs_for(mode, true), 1);
    record(&mut out, http::TARGET, &stats);
    out.figure(
        "lost or corrupted state",
        if out.violations.is_empty() {
            "none"
        } else {
            "see violations"
        },
    );
    out.elapsed = started.elapsed();
    out
}
