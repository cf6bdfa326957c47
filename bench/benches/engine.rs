//! Criterion benchmarks of the engine, one group per concern, each with the limit it is judged
//! against measured alongside it (`cargo bench -p platepool-bench`; a few minutes):
//!
//! - `io`: bare fdatasync, sled batch + flush (+ fdatasync) at 1, 64 and 1024 records;
//! - `keyboard`: pure-pool query, the same through the engine (256 in flight), the linear scan;
//! - `draw`, `custom_check`: engine and direct actor at 64/256/1024 in flight, raw sled writing the
//!   same records in the group-commit sizes the direct actor's writer really made, pure pool;
//! - `claim`: one durable claim at a time vs a bare sled insert + flush + fdatasync, and vs raw
//!   sled writing a claim's three records as one batch + flush + fdatasync (p50/p99 are printed
//!   from hdrhistogram after the group);
//! - `actor`: no-op call, draw with `Durability::None`, draw with fsync, pure draw;
//! - `recovery`: `Engine::open` on 1M numbers + 100k claims vs sled open + full read.
//!
//! The memory figure needs a fresh process per size: see the `engine-report` binary.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use platepool_bench::fixture::{self, Office, Plan, Pure};
use platepool_bench::io::{encode_like_store, RawKind, RawRecord, RawSled, SyncFile};
use platepool_bench::load::{closed_loop, histogram, record, Stop};
use platepool_engine::Durability;

/// mimalloc: glibc's malloc serialises the frees that the writer thread makes of records the
/// office actor allocated; with mimalloc durable draws ran 35–70 % faster in the same run.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const INFLIGHT: [usize; 3] = [64, 256, 1024];

fn main() {
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(10)
        .configure_from_args();
    let system = actix_rt::System::new();

    io(&mut c);

    let plan = Plan {
        claimers: 8_000,
        ..Plan::standard()
    };
    let mut pure = Pure::new(&plan);
    let engine = system.block_on(Office::engine(&plan, Durability::Fsync));
    let direct = system.block_on(Office::direct(&plan, Durability::Fsync));

    keyboard(&mut c, &system, &pure, &engine);

    let draw_template = encode_like_store(&pure.draw_records());
    let check_template = encode_like_store(&pure.check_records());
    let apps = (plan.select + plan.claimers + plan.holders + plan.takers) as u64;
    let app_value = draw_template[0].value.clone();
    // Claims first, against a fresh raw database: both sides in the same state.
    claim(
        &mut c,
        &system,
        &engine,
        &mut RawSled::open(apps, &app_value),
        &app_value,
        &encode_like_store(&pure.claim_records()),
    );
    let mut raw = RawSled::open(apps, &app_value);
    throughput(
        &mut c,
        &system,
        "draw",
        &engine,
        &direct,
        &mut raw,
        &draw_template,
        &mut || pure.draw().expect("pure draw"),
    );
    throughput(
        &mut c,
        &system,
        "custom_check",
        &engine,
        &direct,
        &mut raw,
        &check_template,
        &mut || pure.check().expect("pure check"),
    );
    actor(&mut c, &system, &engine, &direct, &plan, &mut pure);
    drop((engine, direct, raw));
    recovery(&mut c);

    system.block_on(async { actix_rt::System::current().stop() });
    let _ = system.run();
    c.final_summary();
}

fn io(c: &mut Criterion) {
    let mut g = c.benchmark_group("io");
    let mut f = SyncFile::new();
    for _ in 0..300 {
        f.step();
    }
    g.throughput(Throughput::Elements(1));
    g.bench_function("fdatasync_4k_overwrite", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| f.step()).sum())
    });
    let template = [RawRecord {
        kind: RawKind::App,
        value: vec![b'x'; 360],
    }];
    let mut raw = RawSled::open(10_000, &template[0].value);
    for batch in [1usize, 64, 1024] {
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_with_input(
            BenchmarkId::new("sled_batch_flush", batch),
            &batch,
            |b, &batch| {
                b.iter_custom(|iters| {
                    let t = Instant::now();
                    for _ in 0..iters {
                        raw.apply(&template, 0, batch);
                        raw.flush();
                    }
                    t.elapsed()
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("sled_batch_flush_fdatasync", batch),
            &batch,
            |b, &batch| {
                b.iter_custom(|iters| {
                    raw.group_commits_count(&template, batch, iters * batch as u64)
                })
            },
        );
    }
    g.finish();
}

fn keyboard(c: &mut Criterion, system: &actix_rt::SystemRunner, pure: &Pure, engine: &Office) {
    let set = pure.scan_set();
    let queries = set.queries(4_096, 9);
    for q in queries.iter().take(100) {
        assert_eq!(
            pure.keyboard(q),
            set.query(q),
            "keyboard index and scan disagree on {q:?}"
        );
    }
    let mut g = c.benchmark_group("keyboard");
    g.throughput(Throughput::Elements(1));
    let i = Cell::new(0usize);
    g.bench_function("pure_pool", |b| {
        b.iter(|| {
            let q = &queries[i.get() % queries.len()];
            i.set(i.get() + 1);
            pure.keyboard(std::hint::black_box(q))
        })
    });
    g.bench_function("linear_scan", |b| {
        b.iter(|| {
            let q = &queries[i.get() % queries.len()];
            i.set(i.get() + 1);
            set.query(std::hint::black_box(q))
        })
    });
    let queries = Rc::new(queries);
    g.bench_function("engine_256_in_flight", |b| {
        b.iter_custom(|iters| {
            let r = system.block_on(closed_loop(
                256,
                Stop::Count(iters),
                engine.keyboard_op(queries.clone()),
            ));
            assert_eq!(r.failed, 0, "{:?}", r.first_error);
            r.elapsed
        })
    });
    g.finish();
}

#[allow(clippy::too_many_arguments)]
fn throughput(
    c: &mut Criterion,
    system: &actix_rt::SystemRunner,
    name: &str,
    engine: &Office,
    direct: &Office,
    raw: &mut RawSled,
    template: &[RawRecord],
    pure_op: &mut dyn FnMut(),
) {
    let per_op = template.len() as u64;
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(1));
    let op = |office: &Office| match name {
        "draw" => office.draw_op(),
        _ => office.check_op(),
    };
    for inflight in INFLIGHT {
        // (group commits, records) the direct actor's writer made during its benchmark.
        let observed = RefCell::new((0u64, 0u64));
        g.bench_function(BenchmarkId::new("engine", inflight), |b| {
            b.iter_custom(|iters| {
                let r = system.block_on(closed_loop(inflight, Stop::Count(iters), op(engine)));
                assert_eq!(r.failed, 0, "{:?}", r.first_error);
                r.elapsed
            })
        });
        g.bench_function(BenchmarkId::new("direct_actor", inflight), |b| {
            b.iter_custom(|iters| {
                let before = direct.writer_counts().unwrap_or_default();
                let r = system.block_on(closed_loop(inflight, Stop::Count(iters), op(direct)));
                let after = direct.writer_counts().unwrap_or_default();
                let mut o = observed.borrow_mut();
                o.0 += after.0 - before.0;
                o.1 += after.1 - before.1;
                assert_eq!(r.failed, 0, "{:?}", r.first_error);
                r.elapsed
            })
        });
        let (commits, records) = *observed.borrow();
        let batch = (records as f64 / commits.max(1) as f64).round().max(1.0) as usize;
        eprintln!(
            "{name}/{inflight}: direct actor's writer made {commits} group commits of {:.1} records",
            records as f64 / commits.max(1) as f64
        );
        g.bench_function(
            BenchmarkId::new(format!("raw_sled_batch_{batch}_records"), inflight),
            |b| b.iter_custom(|iters| raw.group_commits_count(template, batch, iters * per_op)),
        );
    }
    g.bench_function("pure_pool", |b| b.iter(&mut *pure_op));
    g.finish();
}

fn claim(
    c: &mut Criterion,
    system: &actix_rt::SystemRunner,
    engine: &Office,
    raw: &mut RawSled,
    value: &[u8],
    claim_template: &[RawRecord],
) {
    let claims = RefCell::new(histogram());
    let bare = RefCell::new(histogram());
    let mut g = c.benchmark_group("claim");
    g.sampling_mode(SamplingMode::Flat);
    g.bench_function("engine_durable_claim", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let d = system.block_on(engine.claim_once());
                record(&mut claims.borrow_mut(), d);
                total += d;
            }
            total
        })
    });
    g.bench_function("bare_sled_insert_flush_fdatasync", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let d = raw.bare_durable_insert(value);
                record(&mut bare.borrow_mut(), d);
                total += d;
            }
            total
        })
    });
    g.bench_function("raw_sled_claim_records_batch_flush_fdatasync", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                raw.group_commit(claim_template, 0, claim_template.len());
            }
            t.elapsed()
        })
    });
    g.finish();
    let (c, b) = (claims.borrow(), bare.borrow());
    eprintln!(
        "claim latency: p50 {} µs, p99 {} µs ({} claims); bare sled insert + flush + fdatasync: p50 {} µs, p99 {} µs ({}); p99 ratio {:.2} (target ≤ 2)",
        c.value_at_quantile(0.5),
        c.value_at_quantile(0.99),
        c.len(),
        b.value_at_quantile(0.5),
        b.value_at_quantile(0.99),
        b.len(),
        c.value_at_quantile(0.99) as f64 / b.value_at_quantile(0.99).max(1) as f64
    );
}

fn actor(
    c: &mut Criterion,
    system: &actix_rt::SystemRunner,
    engine: &Office,
    direct: &Office,
    plan: &Plan,
    pure: &mut Pure,
) {
    let none = system.block_on(Office::direct(plan, Durability::None));
    let mut g = c.benchmark_group("actor");
    g.throughput(Throughput::Elements(1));
    let one_at_a_time = |op: fn(&Office) -> fixture::Op, office: &Office, iters: u64| {
        let r = system.block_on(closed_loop(1, Stop::Count(iters), op(office)));
        assert_eq!(r.failed, 0, "{:?}", r.first_error);
        r.elapsed
    };
    g.bench_function("noop_call_round_trip", |b| {
        b.iter_custom(|iters| one_at_a_time(Office::noop_op, direct, iters))
    });
    g.bench_function("noop_calls_256_in_flight", |b| {
        b.iter_custom(|iters| {
            system
                .block_on(closed_loop(256, Stop::Count(iters), direct.noop_op()))
                .elapsed
        })
    });
    g.bench_function("draw_round_trip_durability_none", |b| {
        b.iter_custom(|iters| one_at_a_time(Office::draw_op, &none, iters))
    });
    g.bench_function("draw_round_trip_fsync_direct", |b| {
        b.iter_custom(|iters| one_at_a_time(Office::draw_op, direct, iters))
    });
    g.bench_function("draw_round_trip_fsync_engine", |b| {
        b.iter_custom(|iters| one_at_a_time(Office::draw_op, engine, iters))
    });
    g.bench_function("pure_pool_draw", |b| {
        b.iter(|| pure.draw().expect("pure draw"))
    });
    g.finish();
    for numbers in [1_000_000u64, 7_000_000] {
        let pool = fixture::pool_with(fixture::sized_patterns(numbers));
        eprintln!(
            "memory: {numbers} numbers, numbers_memory_bytes() = {:.1} B per number (target ≤ 32; RSS in engine-report)",
            pool.numbers_memory_bytes() as f64 / numbers as f64
        );
    }
}

fn recovery(c: &mut Criterion) {
    let dir = fixture::temp_dir("platepool-recovery-");
    let plan = Plan {
        patterns: fixture::million_patterns(),
        select: 0,
        claimers: 0,
        holders: 0,
        takers: 100_000,
        seed: 5,
    };
    drop(fixture::build_into(dir.path(), Durability::None, &plan));
    let path = dir.path().to_path_buf();
    let mut g = c.benchmark_group("recovery");
    g.sampling_mode(SamplingMode::Flat);
    g.bench_function("engine_open_1m_numbers_100k_claims", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let p = path.clone();
                    std::thread::spawn(move || {
                        let system = actix_rt::System::new();
                        let took = system.block_on(async {
                            let (engine, took) =
                                fixture::open_engine_timed(&p, Durability::Fsync).await;
                            assert_eq!(engine.recovery().applications, 100_000);
                            let _ = engine.shutdown().await;
                            took
                        });
                        system.block_on(async { actix_rt::System::current().stop() });
                        let _ = system.run();
                        took
                    })
                    .join()
                    .expect("recovery thread")
                })
                .sum()
        })
    });
    g.bench_function("sled_open_read_everything", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| fixture::raw_read(&path)).sum())
    });
    g.finish();
}
