//! The engine's fuzz targets: plate and pattern parsers, the VIN checker, the keyboard index,
//! release specifications and the office configuration.

use std::collections::BTreeSet;

use arbitrary::Unstructured;
use platepool_engine::keyboard::KeyboardIndex;
use platepool_engine::plate::{full_plate, ALPHABET, ALPHABET_LEN, SERIAL_LEN_MAX};
use platepool_engine::pool::{NewRelease, OfficePool};
use platepool_engine::vin::{check_vin, vin_check_digit, Vin};
use platepool_engine::{
    CharSet, Notice, OfficeConfig, OfficeRules, Pattern, PlateClass, ReleaseSource, Serial,
};

use super::{ExecResult, Target};

pub const TARGETS: &[Target] = &[
    Target {
        name: "plate",
        what: "Serial::parse and parse_with_prefix over odd prefixes; print/parse round trip",
        dict: &["A1234", "粤K·", "粤F", "粤k", "DA1234", "·", " ", "-", "i", "o", "ﬀ", "1234567"],
        run: plate,
    },
    Target {
        name: "pattern",
        what: "Pattern::parse; count = enumeration, every serial matches, rank/nth and print/parse round trips",
        dict: &["#", "@", "*", "[", "]", "-", "[A-H]", "[AB3]", "[0-9]", "[Z-A]", "[]", "A####", "D@####"],
        run: pattern,
    },
    Target {
        name: "vin",
        what: "check_vin on any text; every 17 characters given their check digit pass",
        dict: &["LSVAA1234X1234567", "I", "O", "Q", "X", " ", "lsv"],
        run: vin,
    },
    Target {
        name: "keyboard",
        what: "KeyboardIndex::query with random entered vectors vs a brute-force scan of small spaces (I8)",
        dict: &[],
        run: keyboard,
    },
    Target {
        name: "release",
        what: "OfficePool::add_release with random patterns and serials: a refusal changes nothing, counts add up",
        dict: &["#", "@", "*", "[", "]", "A", "D", "F", "0"],
        run: release,
    },
    Target {
        name: "office_config",
        what: "serde_json::from_str::<OfficeConfig> + validate; a valid config opens a pool and round-trips",
        dict: &[
            "\"rules\":", "\"custom_quota\":", "\"random_batch\":", "\"holidays\":[\"2026-10-01\"]", "\"service_hours\":{\"open\":\"08:00\",\"close\":\"20:00\"}",
            "\"deny\":[\"three_identical_digits\"]", "\"custom_patterns\":{\"small\":[\"#####\"]}", "\"classes\":[\"small\"]",
            "4294967295", "-1", "1e309", "null", "0", "18446744073709551615", "{", "}", "[", "]", ",", "\"",
        ],
        run: office_config,
    },
];

const PREFIXES: &[&str] = &["", "粤K", "粤F", "京A", "K", "ß", "ǅ", "İ", "F", "粤ﬀ"];

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------------------------

fn plate(bytes: &[u8]) -> ExecResult {
    let (sel, rest) = bytes.split_first().map_or((0, bytes), |(a, r)| (*a, r));
    let prefix = PREFIXES[sel as usize % PREFIXES.len()];
    let input = text(rest);
    let plain = Serial::parse(&input);
    let prefixed = Serial::parse_with_prefix(&input, prefix);
    for r in [&plain, &prefixed] {
        match r {
            Ok(s) => {
                if !(1..=SERIAL_LEN_MAX).contains(&s.len()) {
                    return Err(format!("serial of length {}", s.len()));
                }
                let printed = s.to_string();
                if Serial::parse(&printed).as_ref() != Ok(s) {
                    return Err(format!("{printed} does not parse back"));
                }
                if !printed.bytes().all(|b| ALPHABET.contains(&b)) {
                    return Err(format!("{printed} prints outside the alphabet"));
                }
                let full = full_plate(prefix, *s);
                if Serial::parse_with_prefix(&full, prefix).as_ref() != Ok(s) {
                    return Err(format!(
                        "full plate {full:?} does not parse back with prefix {prefix:?}"
                    ));
                }
                if Serial::parse(&printed.to_lowercase()).as_ref() != Ok(s) {
                    return Err(format!("{printed} in lower case parses differently"));
                }
            }
            Err(e) => {
                if e.position() == 0 {
                    return Err(format!("error {e} has position 0"));
                }
            }
        }
    }
    let kind = |r: &Result<Serial, _>| match r {
        Ok(s) => format!("ok{}", s.len()),
        Err(e) => format!("{e:?}").chars().take(12).collect(),
    };
    Ok(format!(
        "{}|{}|{}",
        kind(&plain),
        kind(&prefixed),
        sel as usize % PREFIXES.len()
    ))
}

// ---------------------------------------------------------------------------------------------

fn pattern(bytes: &[u8]) -> ExecResult {
    let input = text(bytes);
    let p = match Pattern::parse(&input) {
        Ok(p) => p,
        Err(e) => {
            return Ok(format!(
                "err:{}",
                format!("{e:?}").chars().take(20).collect::<String>()
            ))
        }
    };
    if p.is_empty_pattern() {
        return Err("a parsed pattern with no positions".into());
    }
    let printed = p.to_string();
    match Pattern::parse(&printed) {
        Ok(q) if q == p => {}
        other => {
            return Err(format!(
                "{printed:?} (printed from {input:?}) parses to {other:?}"
            ))
        }
    }
    if !p.is_subset(&p) {
        return Err("a pattern is not a subset of itself".into());
    }
    let count = p.count();
    if count <= 2_000 {
        let all: Vec<Serial> = p.iter().collect();
        if all.len() as u64 != count {
            return Err(format!("count {count} but {} enumerated", all.len()));
        }
        for (i, s) in all.iter().enumerate() {
            if !p.matches(*s) {
                return Err(format!("{s} enumerated but does not match"));
            }
            if p.rank(*s) != Some(i as u64) || p.nth(i as u64) != Some(*s) {
                return Err(format!(
                    "rank/nth of {s} disagree with the enumeration at {i}"
                ));
            }
        }
        let set: BTreeSet<Serial> = all.iter().copied().collect();
        if set.len() != all.len() {
            return Err("a serial enumerated twice".into());
        }
    } else {
        for i in [0, count / 2, count - 1] {
            let Some(s) = p.nth(i) else {
                return Err(format!("nth({i}) is missing below count {count}"));
            };
            if !p.matches(s) || p.rank(s) != Some(i) {
                return Err(format!("nth({i}) = {s} does not rank back"));
            }
        }
    }
    Ok(format!("ok{}:{}", p.len(), count.min(10_000) / 1_000))
}

trait PatternExt {
    fn is_empty_pattern(&self) -> bool;
}

impl PatternExt for Pattern {
    fn is_empty_pattern(&self) -> bool {
        self.len() == 0 || self.positions().iter().any(|s| s.is_empty())
    }
}

// ---------------------------------------------------------------------------------------------

const VIN_CHARS: &[u8] = b"0123456789ABCDEFGHJKLMNPRSTUVWXYZ";

fn vin(bytes: &[u8]) -> ExecResult {
    let input = text(bytes);
    let checked = check_vin(&input);
    if let Ok(v) = &checked {
        let s = v.as_str();
        if s.len() != 17
            || s.contains(['I', 'O', 'Q'])
            || !s.bytes().all(|b| VIN_CHARS.contains(&b))
        {
            return Err(format!("{s:?} accepted"));
        }
        if vin_check_digit(s) != s.chars().nth(8) {
            return Err(format!("{s:?} accepted with a wrong check digit"));
        }
    }
    // Constructive: any 17 VIN characters with their check digit pass.
    if bytes.len() >= 17 {
        let made: String = bytes[..17]
            .iter()
            .map(|b| VIN_CHARS[*b as usize % VIN_CHARS.len()] as char)
            .collect();
        match Vin::with_check_digit(&made) {
            Some(v) if check_vin(v.as_str()).is_ok() => {}
            other => {
                return Err(format!(
                    "{made:?} with its check digit is refused: {other:?}"
                ))
            }
        }
    }
    Ok(match checked {
        Ok(_) => "ok".into(),
        Err(e) => format!("{}:{:?}", e.reason_code(), e.position.map(|p| p.min(18))),
    })
}

// ---------------------------------------------------------------------------------------------

fn charset(u: &mut Unstructured) -> arbitrary::Result<CharSet> {
    let n = u.int_in_range(1..=4u8)?;
    let mut set = CharSet::default();
    for _ in 0..n {
        set.insert(u.int_in_range(0..=(ALPHABET_LEN as u8 - 1))?);
    }
    Ok(set)
}

fn keyboard(bytes: &[u8]) -> ExecResult {
    let mut u = Unstructured::new(bytes);
    let run = (|| -> arbitrary::Result<ExecResult> {
        let len = u.int_in_range(1..=4usize)?;
        let sets: Vec<CharSet> = (0..len)
            .map(|_| charset(&mut u))
            .collect::<arbitrary::Result<_>>()?;
        let space = Pattern::from_sets(sets).map_err(|_| arbitrary::Error::IncorrectFormat)?;
        let mut index = KeyboardIndex::new(&space);
        let mut members: BTreeSet<Serial> = BTreeSet::new();
        let all: Vec<Serial> = space.iter().collect();
        let ops = u.int_in_range(0..=40u32)?;
        for _ in 0..ops {
            let s = all[u.choose_index(all.len())?];
            if members.contains(&s) {
                if u.ratio(1, 3)? {
                    index.remove(s);
                    members.remove(&s);
                }
            } else {
                index.insert(s);
                members.insert(s);
            }
        }
        if index.len() != members.len() as u64 {
            return Ok(Err(format!(
                "index has {} serials, {} inserted",
                index.len(),
                members.len()
            )));
        }
        for s in &all {
            if index.contains(*s) != members.contains(s) {
                return Ok(Err(format!("contains({s}) is wrong")));
            }
        }
        let queries = u.int_in_range(1..=8u32)?;
        for _ in 0..queries {
            let n = u.int_in_range(0..=len + 1)?;
            let mut entered = Vec::with_capacity(n);
            for _ in 0..n {
                entered.push(if u.ratio(1, 2)? {
                    None
                } else {
                    Some(u.int_in_range(0..=(ALPHABET_LEN as u8 - 1))?)
                });
            }
            let got = index.query(&entered);
            let want = brute_force(&space, &members, &entered);
            if got != want {
                return Ok(Err(format!(
                    "space {space}, {} serials, entered {entered:?}: index {:?}, scan {:?}",
                    members.len(),
                    got.iter().map(|c| c.to_chars()).collect::<Vec<_>>(),
                    want.iter().map(|c| c.to_chars()).collect::<Vec<_>>()
                )));
            }
        }
        Ok(Ok(format!("kb{len}:{}", members.len().min(20) / 5)))
    })();
    run.unwrap_or_else(|_| Ok("short input".into()))
}

/// I8 by definition: at position p, the characters c such that some serial has c at p and the
/// entered characters everywhere else.
fn brute_force(
    space: &Pattern,
    members: &BTreeSet<Serial>,
    entered: &[Option<u8>],
) -> Vec<CharSet> {
    let len = space.len();
    let mut out = vec![CharSet::default(); len];
    if entered.iter().skip(len).any(Option::is_some) {
        return out;
    }
    for (q, e) in entered.iter().take(len).enumerate() {
        if let Some(c) = e {
            if !space.at(q).contains(*c) {
                return out;
            }
        }
    }
    for s in members {
        let idx = s.indices();
        for (p, slot) in out.iter_mut().enumerate() {
            let fits = entered
                .iter()
                .take(len)
                .enumerate()
                .all(|(q, e)| q == p || e.is_none_or(|c| idx[q] == c));
            if fits {
                slot.insert(idx[p]);
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------

thread_local! {
    static POOL: std::cell::RefCell<Option<(OfficePool, u64)>> = const { std::cell::RefCell::new(None) };
    static EXECS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn fuzz_office() -> OfficeConfig {
    OfficeConfig {
        name: "fuzz".into(),
        prefix: "粤K".into(),
        classes: vec!["small".into(), "small_new_energy".into()],
        rules: OfficeRules::default(),
        notice: Notice {
            version: "v1".into(),
            text: "terms".into(),
        },
    }
}

/// Numbers a pool may hold before the target starts a fresh one (keeps executions fast).
const RELEASE_POOL_NUMBERS_MAX: u64 = 20_000;
/// Releases larger than this are tried only on some inputs (they take milliseconds), and only
/// up to [`RELEASE_HUGE`] (beyond it, up to the engine's own limit, they take seconds in a debug
/// build); releases past the engine's limit are always tried (refused by counting).
const RELEASE_BIG: u64 = 5_000;
const RELEASE_HUGE: u64 = 50_000;

fn pattern_text(u: &mut Unstructured, len: usize) -> arbitrary::Result<String> {
    let mut s = String::new();
    for _ in 0..len {
        match u.int_in_range(0..=9u8)? {
            0 => s.push('#'),
            1 => s.push('@'),
            2 => s.push('*'),
            3 => {
                let a = ALPHABET[u.choose_index(ALPHABET_LEN)?] as char;
                let b = ALPHABET[u.choose_index(ALPHABET_LEN)?] as char;
                s.push_str(&format!("[{a}-{b}]"));
            }
            4 => {
                let a = ALPHABET[u.choose_index(ALPHABET_LEN)?] as char;
                let b = ALPHABET[u.choose_index(ALPHABET_LEN)?] as char;
                s.push_str(&format!("[{a}{b}]"));
            }
            5 => s.push(['D', 'F'][u.choose_index(2)?]),
            _ => s.push(ALPHABET[u.choose_index(ALPHABET_LEN)?] as char),
        }
    }
    Ok(s)
}

fn release(bytes: &[u8]) -> ExecResult {
    let mut u = Unstructured::new(bytes);
    let spec = (|| -> arbitrary::Result<(String, ReleaseSource, Vec<String>, bool)> {
        let class = if u.ratio(1, 2)? {
            "small"
        } else {
            "small_new_energy"
        };
        let by_pattern = u.ratio(2, 3)?;
        let n = u.int_in_range(1..=4usize)?;
        let mut texts = Vec::new();
        for _ in 0..n {
            let len = u.int_in_range(4..=7usize)?;
            texts.push(pattern_text(&mut u, len)?);
        }
        let big = u.ratio(1, 50)?;
        if by_pattern {
            let patterns: Vec<Pattern> = texts
                .iter()
                .filter_map(|t| Pattern::parse(t).ok())
                .collect();
            Ok((class.into(), ReleaseSource::Patterns(patterns), texts, big))
        } else {
            let serials: Vec<Serial> = texts
                .iter()
                .filter_map(|t| Pattern::parse(t).ok())
                .filter_map(|p| p.nth(0))
                .collect();
            Ok((class.into(), ReleaseSource::Serials(serials), texts, big))
        }
    })();
    let Ok((class, source, texts, big)) = spec else {
        return Ok("short input".into());
    };
    if let ReleaseSource::Patterns(ps) = &source {
        let total: u64 = ps.iter().map(Pattern::count).sum();
        let over_limit = total > platepool_engine::pool::RELEASE_NUMBERS_MAX;
        if !over_limit && total > RELEASE_BIG && (!big || total > RELEASE_HUGE) {
            return Ok("big skipped".into());
        }
    }
    POOL.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot
            .as_ref()
            .is_none_or(|(_, n)| *n > RELEASE_POOL_NUMBERS_MAX)
        {
            let pool = OfficePool::new("fuzz", fuzz_office(), PlateClass::builtin())
                .map_err(|e| e.to_string())?;
            *slot = Some((pool, 0));
        }
        let Some((pool, numbers)) = slot.as_mut() else {
            return Err("no pool".to_string());
        };
        let now = 1_772_413_200_000;
        let before = pool.stats();
        let releases_before = pool.releases().len();
        let req = NewRelease {
            class: class.clone(),
            label: texts.join(","),
            opens_at_ms: now,
            custom_from_ms: None,
            source,
        };
        let result = pool.add_release(req, "operator:fuzz", now);
        let effects = pool.take_effects();
        let after = pool.stats();
        match &result {
            Err(r) => {
                if before != after
                    || !effects.is_empty()
                    || pool.releases().len() != releases_before
                {
                    return Err(format!("refused release {texts:?} ({r}) changed the pool"));
                }
            }
            Ok((_, total)) => {
                let sum = |s: &Vec<platepool_engine::pool::ClassStats>| {
                    s.iter().map(|c| c.counts.total()).sum::<u64>()
                };
                if sum(&after) != sum(&before) + total || *total == 0 {
                    return Err(format!(
                        "release {texts:?} says {total} numbers, the pool grew by {}",
                        sum(&after) - sum(&before)
                    ));
                }
                if effects.records.is_empty() {
                    return Err("an accepted release wrote no record".into());
                }
                *numbers += total;
            }
        }
        // The full invariant scan costs a pass over every number: every 16th input, and after
        // every accepted release.
        let n = EXECS.with(|c| {
            c.set(c.get() + 1);
            c.get()
        });
        if result.is_ok() || n % 16 == 0 {
            pool.check_invariants(now);
        }
        Ok(match result {
            Ok((_, t)) => format!("ok:{class}:{}", t.min(100_000) / 10_000),
            Err(r) => format!(
                "{}:{}",
                r.code(),
                r.to_string().chars().take(24).collect::<String>()
            ),
        })
    })
}

// ---------------------------------------------------------------------------------------------

fn office_config(bytes: &[u8]) -> ExecResult {
    let input = text(bytes);
    let config: OfficeConfig = match serde_json::from_str(&input) {
        Ok(c) => c,
        Err(e) => return Ok(format!("json:{:?}", e.classify())),
    };
    let catalog = PlateClass::builtin();
    let valid = config.validate(&catalog);
    let printed =
        serde_json::to_string(&config).map_err(|e| format!("cannot print a parsed config: {e}"))?;
    match serde_json::from_str::<OfficeConfig>(&printed) {
        Ok(again) if again == config => {}
        other => return Err(format!("config does not round-trip: {printed} → {other:?}")),
    }
    match valid {
        Ok(()) => {
            if let Err(e) = OfficePool::new("fuzz", config, catalog) {
                return Err(format!("a validated config opens no pool: {e}"));
            }
            Ok("valid".into())
        }
        Err(e) => Ok(format!("invalid:{}", e.field)),
    }
}
