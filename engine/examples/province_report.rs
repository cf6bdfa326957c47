//! The province report: many offices on one node. For each office count, a child process builds
//! the offices through the engine (each one `put_office` and one release of `--numbers` `small`
//! numbers, durable), then fresh child processes reopen the folder as a restart would and report
//! how long `Engine::open` took to be ready, the resident memory (VmRSS) and the OS threads
//! (`Threads` in `/proc/self/status`). Memory per office should follow its released numbers, not
//! the size of its classes' serial space, and threads should not grow with the offices.
//! With `--certificates`, each case also imports that many certificate records (valid VINs, in
//! calls of 200,000 as `POST /v1/admin/certificates` sends them) after its offices: the records
//! live in the certificate log on disk, and memory holds only their index.
//!
//! ```text
//! cargo run --release -p platepool-engine --example province_report -- \
//!     [--offices 100,300] [--numbers 90000] [--certificates 0,1000000] [--opens 3] [--write]
//! ```
//!
//! Every (offices, certificates) pair is one case.
//!
//! `--write` saves the report to `bench/PROVINCE-REPORT.md`; it always goes to stdout. (An
//! example of the engine rather than a `platepool-bench` binary: it needs the engine alone, so
//! a release build of it is quick.)
//! Each office releases `[first k letters]####` (k × 10,000 numbers, every one on the keyboard
//! under the default composition rules), as an office releasing blocks of numbers would.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use platepool_engine::pattern::Pattern;
use platepool_engine::pool::NewRelease;
use platepool_engine::record::ReleaseSource;
use platepool_engine::registry::IMPORT_ROWS_MAX;
use platepool_engine::vin::Vin;
use platepool_engine::{
    CertificateRow, Durability, Engine, EngineConfig, ImportPart, Notice, OfficeConfig, OfficeRules,
};

/// The class every office releases into.
const CLASS: &str = "small";

/// Every office's configuration: both built-in classes, default rules.
fn office_config() -> OfficeConfig {
    OfficeConfig {
        name: "Province office".into(),
        prefix: "粤K".into(),
        classes: vec![CLASS.into(), "small_new_energy".into()],
        rules: OfficeRules::default(),
        notice: Notice {
            version: "v1".into(),
            text: "业务须知".into(),
        },
    }
}

/// Opens the engine on `dir` (fsync durability) and says how long `Engine::open` took.
async fn open_engine(dir: &Path) -> (Engine, Duration) {
    let mut config = EngineConfig::new(dir);
    config.durability = Durability::Fsync;
    config.seed = Some(7);
    let started = Instant::now();
    let engine = Engine::open(config).await.expect("engine opens");
    (engine, started.elapsed())
}

/// The 1, 5 and 15 minute load averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The machine, as `/proc` describes it.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown", |(_, v)| v.trim());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let nproc = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!(
        "{nproc} × {model} (nproc {nproc}), kernel {}, {} kB memory",
        kernel.trim(),
        status_like("/proc/meminfo", "MemTotal:")
    )
}

/// Letters in the order of the plate alphabet (no I, no O).
const LETTERS: &str = "ABCDEFGHJKLMNPQRSTUVWXYZ";

/// What a child reports: one line of `key=value` fields.
#[derive(Debug, Default, Clone)]
struct Figures {
    seconds: f64,
    rss_bytes: u64,
    threads: u64,
    settled_rss_bytes: u64,
    /// `Engine::office_memory_bytes` summed over the offices.
    accounted_bytes: u64,
    /// Building: of `seconds`, the time the certificate import took.
    import_seconds: f64,
}

impl Figures {
    fn line(&self) -> String {
        format!(
            "seconds={} rss={} threads={} settled_rss={} accounted={} import_seconds={}",
            self.seconds,
            self.rss_bytes,
            self.threads,
            self.settled_rss_bytes,
            self.accounted_bytes,
            self.import_seconds
        )
    }

    fn parse(text: &str) -> Option<Figures> {
        let line = text.lines().rev().find(|l| l.starts_with("seconds="))?;
        let mut f = Figures::default();
        for field in line.split_whitespace() {
            let (key, value) = field.split_once('=')?;
            match key {
                "seconds" => f.seconds = value.parse().ok()?,
                "rss" => f.rss_bytes = value.parse().ok()?,
                "threads" => f.threads = value.parse().ok()?,
                "settled_rss" => f.settled_rss_bytes = value.parse().ok()?,
                "accounted" => f.accounted_bytes = value.parse().ok()?,
                "import_seconds" => f.import_seconds = value.parse().ok()?,
                _ => {}
            }
        }
        Some(f)
    }
}

/// A field of `/proc/self/status`, in its own unit (kB for memory).
fn status_field(name: &str) -> u64 {
    status_like("/proc/self/status", name)
}

/// The first number after `name` in a `/proc` file of `name value` lines.
fn status_like(file: &str, name: &str) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l[name.len()..].split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn vm_rss() -> u64 {
    status_field("VmRSS:") * 1024
}

fn threads() -> u64 {
    status_field("Threads:")
}

/// The release of one office: `[k letters]####`.
fn office_pattern(numbers: u64) -> Pattern {
    let letters = (numbers / 10_000) as usize;
    assert!(
        numbers % 10_000 == 0 && (1..=LETTERS.len()).contains(&letters),
        "--numbers must be a multiple of 10,000 up to 240,000"
    );
    let text = format!("[{}]####", &LETTERS[..letters]);
    Pattern::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn office_id(i: usize) -> String {
    format!("o{i:04}")
}

/// The alphabet of a VIN's serial part (no I, O or Q).
const VIN_ALPHABET: &[u8] = b"0123456789ABCDEFGHJKLMNPRSTUVWXYZ";

/// The `i`-th vehicle's VIN: a fixed world maker and descriptor, the check digit, and `i` in
/// eight characters of the VIN alphabet (what `bench/certificates-rss.sh` generates).
fn vin(i: usize) -> String {
    let mut tail = [b'0'; 8];
    let mut n = i;
    for c in tail.iter_mut().rev() {
        *c = VIN_ALPHABET[n % VIN_ALPHABET.len()];
        n /= VIN_ALPHABET.len();
    }
    let first17 = format!("LSVAU2180{}", String::from_utf8_lossy(&tail));
    Vin::with_check_digit(&first17)
        .unwrap_or_else(|| panic!("{first17}: no check digit"))
        .into_string()
}

fn certificate_row(i: usize) -> CertificateRow {
    CertificateRow {
        vin: vin(i),
        voucher: format!("HGZ{i:09}"),
        class: CLASS.into(),
        energy: "fuel".into(),
    }
}

/// Imports `count` certificates in calls of [`IMPORT_ROWS_MAX`] rows, each durable.
async fn import_certificates(engine: &Engine, count: usize) {
    let calls = count.div_ceil(IMPORT_ROWS_MAX);
    for call in 0..calls {
        let rows: Vec<CertificateRow> = (call * IMPORT_ROWS_MAX
            ..count.min((call + 1) * IMPORT_ROWS_MAX))
            .map(certificate_row)
            .collect();
        let len = rows.len();
        let part = ImportPart {
            index: call + 1,
            of: calls,
            rejected_before: 0,
        };
        let report = engine
            .import_certificates_part(rows, "operator:bench", part)
            .await
            .expect("certificates are imported");
        assert_eq!(
            report.imported,
            len,
            "rejected: {:?}",
            report.rejected.first()
        );
    }
}

/// The first, a middle and the last of `count` certificates are on record after a restart.
async fn check_certificates(engine: &Engine, count: usize) {
    if count == 0 {
        return;
    }
    for i in [0, count / 2, count - 1] {
        let expected = certificate_row(i);
        let found = engine
            .certificate(&expected.vin)
            .await
            .expect("certificate look-up")
            .unwrap_or_else(|| panic!("certificate {i} ({}) is missing", expected.vin));
        assert_eq!(found.voucher, expected.voucher);
    }
}

/// Bytes the files under `dir` occupy on disk (allocated blocks, not apparent sizes).
fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_bytes(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

fn in_system<R>(f: impl std::future::Future<Output = R>) -> R {
    let system = actix_rt::System::new();
    let result = system.block_on(f);
    system.block_on(async { actix_rt::System::current().stop() });
    let _ = system.run();
    result
}

/// Child: creates `offices` offices of `numbers` numbers each in `dir`, then imports
/// `certificates` certificate records.
fn build_child(dir: &Path, offices: usize, numbers: u64, certificates: usize) -> Figures {
    let pattern = office_pattern(numbers);
    in_system(async move {
        let (engine, _) = open_engine(dir).await;
        let started = Instant::now();
        for i in 0..offices {
            let id = office_id(i);
            engine
                .put_office(&id, office_config(), "operator:bench")
                .await
                .expect("office is created");
            let release = NewRelease {
                class: CLASS.into(),
                label: String::new(),
                opens_at_ms: engine.now_ms(),
                custom_from_ms: None,
                source: ReleaseSource::Patterns(vec![pattern.clone()]),
            };
            let (_, added) = engine
                .add_release(&id, release, "operator:bench")
                .await
                .expect("release is added");
            assert_eq!(added, numbers);
        }
        let import_started = Instant::now();
        import_certificates(&engine, certificates).await;
        let figures = Figures {
            seconds: started.elapsed().as_secs_f64(),
            rss_bytes: vm_rss(),
            threads: threads(),
            settled_rss_bytes: 0,
            accounted_bytes: 0,
            import_seconds: import_started.elapsed().as_secs_f64(),
        };
        engine.shutdown().await.expect("engine shuts down");
        figures
    })
}

/// Child: reopens `dir` (a restart) and measures the engine once ready, and again once every
/// office built its keyboards (what the offices do after being ready) and a few of the
/// certificates were looked up.
fn open_child(dir: &Path, offices: usize, certificates: usize) -> Figures {
    in_system(async move {
        let (engine, took) = open_engine(dir).await;
        assert_eq!(engine.recovery().offices, offices, "every office recovered");
        let rss_bytes = vm_rss();
        let threads = threads();
        check_certificates(&engine, certificates).await;
        // Every office answers with its keyboards built before the settled reading.
        let mut accounted_bytes = 0;
        for i in 0..offices {
            accounted_bytes += engine
                .office_memory_bytes(&office_id(i))
                .await
                .expect("office answers") as u64;
        }
        actix_rt::time::sleep(Duration::from_secs(2)).await;
        let figures = Figures {
            seconds: took.as_secs_f64(),
            rss_bytes,
            threads,
            settled_rss_bytes: vm_rss(),
            accounted_bytes,
            import_seconds: 0.0,
        };
        engine.shutdown().await.expect("engine shuts down");
        figures
    })
}

fn run_child(args: &[String]) -> Figures {
    let exe = std::env::current_exe().expect("current exe");
    let out = Command::new(exe)
        .args(args)
        // mimalloc returns freed pages after a delay; measure what it keeps.
        .env("MIMALLOC_PURGE_DELAY", "0")
        .output()
        .expect("child runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    Figures::parse(&stdout).unwrap_or_else(|| {
        panic!(
            "child {args:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

struct Options {
    offices: Vec<usize>,
    numbers: u64,
    certificates: Vec<usize>,
    opens: usize,
    write: bool,
}

fn options(args: &[String]) -> Options {
    let mut o = Options {
        offices: vec![100, 300],
        numbers: 90_000,
        certificates: vec![0],
        opens: 3,
        write: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().cloned().unwrap_or_default();
        match arg.as_str() {
            "--offices" => {
                o.offices = value()
                    .split(',')
                    .map(|v| v.parse().expect("--offices takes numbers, comma-separated"))
                    .collect()
            }
            "--numbers" => o.numbers = value().parse().expect("--numbers takes a number"),
            "--certificates" => {
                o.certificates = value()
                    .split(',')
                    .map(|v| {
                        v.parse()
                            .expect("--certificates takes numbers, comma-separated")
                    })
                    .collect()
            }
            "--opens" => o.opens = value().parse().expect("--opens takes a number"),
            "--write" => o.write = true,
            other => panic!("unknown argument {other}"),
        }
    }
    o
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("__build") => {
            let f = build_child(
                Path::new(&args[1]),
                args[2].parse().expect("offices"),
                args[3].parse().expect("numbers"),
                args[4].parse().expect("certificates"),
            );
            println!("{}", f.line());
            return;
        }
        Some("__open") => {
            let f = open_child(
                Path::new(&args[1]),
                args[2].parse().expect("offices"),
                args[3].parse().expect("certificates"),
            );
            println!("{}", f.line());
            return;
        }
        _ => {}
    }
    let o = options(&args);
    office_pattern(o.numbers);
    let machine = machine();
    let load_before = load_average();
    let started = Instant::now();
    let mut rows = String::new();
    // Settled RSS of each office count without certificates, when measured: what a case with
    // certificates adds above it is their cost.
    let mut without_certificates: Vec<(usize, u64)> = Vec::new();
    for &offices in &o.offices {
        for &certificates in &o.certificates {
            let (row, settled) = run_case(&o, offices, certificates, &without_certificates);
            if certificates == 0 {
                without_certificates.push((offices, settled));
            }
            rows.push_str(&row);
        }
    }
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut report = String::new();
    let _ = writeln!(report, "# Province report: many offices on one node\n");
    let list = |v: &[usize]| v.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    let _ = writeln!(
        report,
        "Generated by `cargo run --release -p platepool-engine --example province_report -- --offices {} --numbers {} --certificates {} --opens {} --write`; do not edit by hand.\n",
        list(&o.offices),
        o.numbers,
        list(&o.certificates),
        o.opens
    );
    let _ = writeln!(report, "|  |  |\n|---|---|");
    let _ = writeln!(report, "| commit | {commit} |");
    let _ = writeln!(report, "| machine | {machine} |");
    let _ = writeln!(
        report,
        "| load average before / after | {load_before} / {} |",
        load_average()
    );
    let _ = writeln!(
        report,
        "| run time | {:.0} s |\n",
        started.elapsed().as_secs_f64()
    );
    let _ = writeln!(
        report,
        "Each office: `put_office` (classes `small` and `small_new_energy`, default rules), then one release of `[first k letters]####` (k × 10,000 `small` numbers, all open and on the keyboard). Built in one process through the engine, durable (fsync); then the folder is reopened {} times in fresh processes, as after a restart: ready = `Engine::open` returned (every office recovered, its actor running); RSS = VmRSS at ready, and 2 s after every office answered `Engine::office_memory_bytes` with its keyboards built (per office: that RSS over the offices; the pool and indexes: what `numbers_memory_bytes` accounts). The median open by time is shown.\n\nCertificates: after the offices, the build imports that many certificate records (valid VINs, voucher, class `small`, fuel) through `Engine::import_certificates_part` in calls of {IMPORT_ROWS_MAX} rows, each durable, as `POST /v1/admin/certificates` sends a large CSV; each reopen then looks up the first, a middle and the last certificate (and finds them) before the settled reading. The records live in the certificate log on disk; memory holds their index (16 B per certificate). Per certificate: the settled RSS above the case with the same offices and no certificates in the same run, over the certificates. Disk: the blocks the data folder occupies after the build.\n",
        o.opens
    );
    let _ = writeln!(
        report,
        "| offices × numbers | certificates | build: time (of which import), RSS, threads | ready after restart (median) | RSS at ready | RSS, keyboards built | per office / per certificate | threads | data folder on disk |\n|---|---|---|---|---|---|---|---|---|"
    );
    report.push_str(&rows);
    if o.write {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/PROVINCE-REPORT.md");
        std::fs::write(&path, &report).expect("report is written");
        eprintln!("wrote {}", path.display());
    }
    print!("{report}");
}

/// Builds one case in a fresh folder, reopens it `o.opens` times and gives its table row and
/// its median settled RSS.
fn run_case(
    o: &Options,
    offices: usize,
    certificates: usize,
    without_certificates: &[(usize, u64)],
) -> (String, u64) {
    eprintln!(
        "{offices} offices × {} numbers, {certificates} certificates: building...",
        o.numbers
    );
    let dir = tempfile::Builder::new()
        .prefix("platepool-province-")
        .tempdir()
        .expect("temp dir");
    let path = dir.path().display().to_string();
    let build = run_child(&[
        "__build".into(),
        path.clone(),
        offices.to_string(),
        o.numbers.to_string(),
        certificates.to_string(),
    ]);
    let disk = disk_bytes(dir.path());
    let mut opens: Vec<Figures> = (0..o.opens)
        .map(|i| {
            eprintln!("  restart {}/{}...", i + 1, o.opens);
            run_child(&[
                "__open".into(),
                path.clone(),
                offices.to_string(),
                certificates.to_string(),
            ])
        })
        .collect();
    opens.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    let median = opens[opens.len() / 2].clone();
    let per_office = median.settled_rss_bytes as f64 / offices as f64;
    let cost = if certificates == 0 {
        format!(
            "{:.2} MiB per office ({:.1} B per number; pool and indexes {:.1} B)",
            per_office / (1024.0 * 1024.0),
            per_office / o.numbers as f64,
            median.accounted_bytes as f64 / offices as f64 / o.numbers as f64,
        )
    } else {
        match without_certificates.iter().find(|(n, _)| *n == offices) {
            Some(&(_, base)) => format!(
                "{:.1} B per certificate",
                (median.settled_rss_bytes as f64 - base as f64) / certificates as f64
            ),
            None => "— (no case without certificates)".into(),
        }
    };
    let row = format!(
        "| {offices} × {} | {certificates} | {:.1} s ({:.1} s), {}, {} threads | {:.2} s (all: {}) | {} | {} | {cost} | {} | {} |\n",
        o.numbers,
        build.seconds,
        build.import_seconds,
        mib(build.rss_bytes),
        build.threads,
        median.seconds,
        opens
            .iter()
            .map(|f| format!("{:.2}", f.seconds))
            .collect::<Vec<_>>()
            .join(", "),
        mib(median.rss_bytes),
        mib(median.settled_rss_bytes),
        median.threads,
        mib(disk),
    );
    (row, median.settled_rss_bytes)
}
