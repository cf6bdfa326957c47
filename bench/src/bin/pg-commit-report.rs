//! An office's group commits on PostgreSQL (cluster mode: a primary with a synchronous standby,
//! `synchronous_commit = on`) against the sled backend (`Durability::Fsync`), same records, same
//! machine, same run: draws per second and commit latency by group size.
//!
//! ```sh
//! deploy/postgres/local-cluster.sh start /tmp/pp-pg 5440 5441
//! PLATEPOOL_POSTGRES="host=127.0.0.1 port=5440 user=postgres dbname=platepool" \
//!     cargo run --release -p platepool-bench --bin pg-commit-report
//! ```
//!
//! A draw writes what the engine's draw writes: the application's selection fields and one audit
//! entry. Groups are committed one after another by one office (the office's writer never has
//! two commits in flight); the last rows run several offices at once, each on its connection,
//! which PostgreSQL's WAL flushes group together.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use platepool_engine::cluster::PgStore;
use platepool_engine::record::Record;
use platepool_engine::store::{Durability, Store};
use platepool_engine::{AppRecord, AppState, AuditEntry, Energy};

const GROUPS: [usize; 4] = [1, 10, 100, 500];
const APPS: u64 = 1_000;
const RUN: Duration = Duration::from_secs(4);
const PARALLEL_OFFICES: usize = 4;

fn app(seq: u64) -> AppRecord {
    AppRecord {
        seq,
        user: format!("user-{seq}"),
        phone: "13800000000".into(),
        vin: format!("LSVAU2180N2{seq:06}"),
        class: "small".into(),
        energy: Energy::Fuel,
        notice_version: "v1".into(),
        created_at_ms: 1_700_000_000_000,
        custom_left: 5,
        random_left: 1_000_000,
        last_check_at_ms: None,
        last_draw_at_ms: None,
        verified_at_ms: None,
        verified_until_ms: None,
        state: AppState::Selecting,
        claim: None,
        closed_at_ms: None,
    }
}

/// `size` draws, as the records the engine writes for them.
fn draws(apps: &mut [AppRecord], next: &mut u64, size: usize) -> Vec<Record> {
    let mut group = Vec::with_capacity(size * 2);
    for _ in 0..size {
        *next += 1;
        let a = &mut apps[(*next % APPS) as usize];
        a.random_left -= 1;
        a.last_draw_at_ms = Some(1_700_000_000_000 + *next);
        group.push(Record::Progress {
            seq: a.seq,
            progress: a.progress(),
        });
        group.push(Record::Audit(Box::new(AuditEntry {
            at_ms: 1_700_000_000_000 + *next,
            who: format!("user:{}", a.user),
            action: "draw".into(),
            application: Some(a.seq),
            serial: None,
            detail: "10 numbers".into(),
        })));
    }
    group
}

fn creation() -> (Vec<AppRecord>, Vec<Record>) {
    let apps: Vec<AppRecord> = (1..=APPS).map(app).collect();
    let records = apps
        .iter()
        .map(|a| Record::App(Box::new(a.clone())))
        .collect();
    (apps, records)
}

#[derive(Debug)]
struct Figures {
    draws_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn figures(draws: usize, elapsed: Duration, h: &Histogram<u64>) -> Figures {
    Figures {
        draws_per_s: draws as f64 / elapsed.as_secs_f64(),
        p50_ms: h.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

fn sled_run(size: usize) -> Figures {
    let dir = tempfile::tempdir().expect("temporary folder");
    let store = Store::open(dir.path(), Durability::Fsync).expect("sled store");
    let office = store.office("bench").expect("office");
    let (mut apps, created) = creation();
    office.commit_now(&created).expect("create");
    let (mut next, mut done, mut h) = (0, 0, histogram());
    let start = Instant::now();
    while start.elapsed() < RUN {
        let group = draws(&mut apps, &mut next, size);
        let t = Instant::now();
        office.commit_now(&group).expect("sled commit");
        h.saturating_record(t.elapsed().as_micros() as u64);
        done += size;
    }
    figures(done, start.elapsed(), &h)
}

/// One office committing groups for [`RUN`]; (draws, latency histogram).
async fn pg_office(url: &str, office: &str, size: usize) -> (usize, Histogram<u64>) {
    let mut store = PgStore::connect(url, Duration::from_secs(30))
        .await
        .expect("connect to PLATEPOOL_POSTGRES");
    store
        .register_offices(&[office.to_string()])
        .await
        .expect("register");
    let lease = store
        .acquire(office, "bench", Duration::from_secs(600))
        .await
        .expect("take")
        .expect("the bench's offices are free");
    let (mut apps, created) = creation();
    store
        .commit(office, lease.epoch, &created)
        .await
        .expect("create");
    let (mut next, mut done, mut h) = (0, 0, histogram());
    let start = Instant::now();
    while start.elapsed() < RUN {
        let group = draws(&mut apps, &mut next, size);
        let t = Instant::now();
        store
            .commit(office, lease.epoch, &group)
            .await
            .expect("commit");
        h.saturating_record(t.elapsed().as_micros() as u64);
        done += size;
    }
    (done, h)
}

fn pg_run(url: &str, size: usize, offices: usize, round: usize) -> Figures {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let names: Vec<String> = (0..offices)
            .map(|i| format!("bench-{}-{size}-{offices}-{round}-{i}", std::process::id()))
            .collect();
        let start = Instant::now();
        let mut runs = tokio::task::JoinSet::new();
        for name in names {
            let url = url.to_string();
            runs.spawn(async move { pg_office(&url, &name, size).await });
        }
        let (mut done, mut h) = (0, histogram());
        while let Some(result) = runs.join_next().await {
            let (d, oh) = result.expect("an office's run");
            done += d;
            h.add(oh).expect("same bounds");
        }
        let elapsed = start.elapsed();
        figures(done, elapsed, &h)
    })
}

fn main() {
    let Ok(url) = std::env::var("PLATEPOOL_POSTGRES") else {
        eprintln!(
            "PLATEPOOL_POSTGRES is not set: start a primary and its synchronous standby with \
             deploy/postgres/local-cluster.sh and give its connection string"
        );
        std::process::exit(2);
    };
    println!("| draws per group | sled draws/s | sled p50 / p99 ms | PostgreSQL draws/s | PostgreSQL p50 / p99 ms | PostgreSQL / sled |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for (round, &size) in GROUPS.iter().enumerate() {
        let s = sled_run(size);
        let p = pg_run(&url, size, 1, round);
        println!(
            "| {size} | {:.0} | {:.2} / {:.2} | {:.0} | {:.2} / {:.2} | {:.0} % |",
            s.draws_per_s,
            s.p50_ms,
            s.p99_ms,
            p.draws_per_s,
            p.p50_ms,
            p.p99_ms,
            100.0 * p.draws_per_s / s.draws_per_s
        );
    }
    println!();
    println!("| {PARALLEL_OFFICES} offices at once, draws per group | PostgreSQL draws/s | p50 / p99 ms |");
    println!("|---:|---:|---:|");
    for (round, &size) in GROUPS.iter().enumerate() {
        let p = pg_run(&url, size, PARALLEL_OFFICES, round);
        println!(
            "| {size} | {:.0} | {:.2} / {:.2} |",
            p.draws_per_s, p.p50_ms, p.p99_ms
        );
    }
}
