//! A workload to run under a profiler, to see where an operation's time goes:
//!
//! ```text
//! cargo build --release -p platepool-bench --example profile
//! perf record -g ./target/release/examples/profile engine-draw 1024
//! perf report --no-children --sort comm,sym
//! ```
//!
//! Workloads: `pure-draw`, `pure-check` (the pool alone, 4 s), `engine-draw`, `engine-check`,
//! `direct-draw`, `direct-check` (the standard office, 1,000,000 numbers and 10,000 verified
//! applications, with `inflight` calls in flight for 5 s, durable with fdatasync).

use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use platepool_bench::fixture::{Office, Plan, Pure};
use platepool_bench::io::{encode_like_store, RawSled};
use platepool_bench::load::{closed_loop, histogram, record, Stop};
use platepool_engine::Durability;

fn main() {
    let workload = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "engine-draw".into());
    let inflight: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let plan = Plan::standard();
    match workload.as_str() {
        "pure-draw" | "pure-check" => {
            let mut pure = Pure::new(&plan);
            let t = Instant::now();
            let mut n = 0u64;
            while t.elapsed() < Duration::from_secs(4) {
                if workload == "pure-check" {
                    pure.check().expect("check");
                } else {
                    pure.draw().expect("draw");
                }
                n += 1;
            }
            println!(
                "{workload}: {:.2} µs per operation",
                t.elapsed().as_secs_f64() * 1e6 / n as f64
            );
        }
        "engine-draw" | "engine-check" | "direct-draw" | "direct-check" => {
            let system = actix_rt::System::new();
            let office = if workload.starts_with("engine") {
                system.block_on(Office::engine(&plan, Durability::Fsync))
            } else {
                system.block_on(Office::direct(&plan, Durability::Fsync))
            };
            let op = if workload.ends_with("draw") {
                office.draw_op()
            } else {
                office.check_op()
            };
            let r = system.block_on(closed_loop(
                inflight,
                Stop::After(Duration::from_secs(5)),
                op,
            ));
            println!(
                "{workload} @{inflight}: {:.0} per second, {} failed {:?}; writer (commits, records): {:?}",
                r.rate(),
                r.failed,
                r.first_error,
                office.writer_counts()
            );
        }
        "latency" => latency(&plan),
        "writer" => writer(),
        other => eprintln!("unknown workload {other}"),
    }
}

/// One call at a time, interleaved: no-op call, draw without flush, draw with fdatasync through
/// the engine, and the bare sled insert + flush + fdatasync; p50/p99 of each.
fn latency(plan: &Plan) {
    let system = actix_rt::System::new();
    let engine = system.block_on(Office::engine(plan, Durability::Fsync));
    let none = system.block_on(Office::direct(plan, Durability::None));
    let value = encode_like_store(
        &Pure::new(&Plan {
            select: 10,
            claimers: 0,
            holders: 0,
            takers: 0,
            ..plan.clone()
        })
        .draw_records(),
    )[0]
    .value
    .clone();
    let mut raw = RawSled::open(10_000, &value);
    let mut h = [histogram(), histogram(), histogram(), histogram()];
    let (noop, draw_none, draw_engine) = (none.noop_op(), none.draw_op(), engine.draw_op());
    for _ in 0..1_000 {
        for (i, op) in [&noop, &draw_none, &draw_engine].into_iter().enumerate() {
            let t = Instant::now();
            system.block_on(op()).expect("op");
            record(&mut h[i], t.elapsed());
        }
        record(&mut h[3], raw.bare_durable_insert(&value));
    }
    for (name, h) in [
        "no-op call",
        "draw, Durability::None",
        "draw, engine, Fsync",
        "bare insert+flush+fdatasync",
    ]
    .iter()
    .zip(&h)
    {
        println!(
            "{name:32} p50 {:6} µs  p90 {:6} µs  p99 {:6} µs",
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.9),
            h.value_at_quantile(0.99)
        );
    }
}

/// The writer alone, from the main thread: commits of one draw's records, one at a time, with
/// `Durability::None` and `Durability::Fsync`, against raw sled doing the same.
fn writer() {
    use platepool_engine::store::Store;
    let records = Pure::new(&Plan {
        select: 10,
        claimers: 0,
        holders: 0,
        takers: 0,
        ..Plan::standard()
    })
    .draw_records();
    let rt = actix_rt::System::new();
    for durability in [Durability::None, Durability::Fsync] {
        let dir = platepool_bench::fixture::temp_dir("platepool-writer-");
        let store = Store::open(dir.path(), durability).expect("store");
        let office = store.office("w").expect("office");
        let writer = office.start_writer("w").expect("writer");
        let mut h = histogram();
        let mut direct = histogram();
        let mut raw_h = histogram();
        let mut bare_h = histogram();
        let template = encode_like_store(&records);
        let mut raw = RawSled::open(10, &template[0].value);
        for _ in 0..2_000 {
            let t = Instant::now();
            raw.group_commit(&template, 0, template.len());
            record(&mut raw_h, t.elapsed());
            record(&mut bare_h, raw.bare_durable_insert(&template[0].value));
            let t = Instant::now();
            rt.block_on(writer.commit(records.clone()))
                .expect("answer")
                .expect("written");
            record(&mut h, t.elapsed());
            let t = Instant::now();
            office.commit_now(&records).expect("commit_now");
            record(&mut direct, t.elapsed());
        }
        println!(
            "{durability:?}: writer round trip p50 {} µs p99 {} µs; commit_now on this thread p50 {} µs p99 {} µs; raw group commit of the same records p50 {} µs p99 {} µs; bare insert p50 {} µs p99 {} µs",
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            direct.value_at_quantile(0.5),
            direct.value_at_quantile(0.99),
            raw_h.value_at_quantile(0.5),
            raw_h.value_at_quantile(0.99),
            bare_h.value_at_quantile(0.5),
            bare_h.value_at_quantile(0.99)
        );
    }
}
