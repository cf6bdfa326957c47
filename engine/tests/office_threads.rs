//! Office actors are not threads: many offices run on one arbiter and one writer thread per
//! core, and an office whose actor panics takes no other office down with it.
//! (Its own test binary: it counts the threads of the process.)
#![allow(clippy::unwrap_used)]

mod common_engine;

use common_engine::*;
use platepool_engine::actor::Call;
use platepool_engine::pool::OfficePool;
use platepool_engine::{Durability, Engine, Refusal};

const OP: &str = "operator:threads";

/// Threads of this process whose name starts with `prefix` (`/proc/self/task/*/comm`, which
/// keeps 15 bytes of a name).
fn threads_named(prefix: &str) -> usize {
    threads_where(|name| name.starts_with(prefix))
}

/// The offices' writer threads (`pp-writer-0`, `pp-writer-1`, …; not the Kv syncer,
/// `pp-writer-kv`, which shares the prefix for vendor/sled's sake).
fn office_writers() -> usize {
    threads_where(|name| {
        name.strip_prefix("pp-writer-")
            .is_some_and(|n| n.starts_with(|c: char| c.is_ascii_digit()))
    })
}

fn threads_where(keep: impl Fn(&str) -> bool) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|name| keep(name.trim_end()))
        })
        .count()
}

async fn add_offices(engine: &Engine, from: usize, to: usize) {
    for i in from..to {
        let id = format!("office{i}");
        engine
            .put_office(&id, office_config(&id), OP)
            .await
            .unwrap();
        let release = release("small", &["A1###"], engine.now_ms());
        engine.add_release(&id, release, OP).await.unwrap();
    }
}

#[actix_rt::test]
async fn offices_share_one_arbiter_and_one_writer_per_core() {
    let dir = tempfile::tempdir().unwrap();
    let config = engine_config(dir.path(), Durability::None, TestClock::new(), 1);
    let engine = open_engine(config).await;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    add_offices(&engine, 0, 2 * cores).await;
    let arbiters = threads_named("actix-rt|system");
    let writers = office_writers();
    assert_eq!(writers, cores, "one writer thread per core");
    assert!(arbiters <= cores, "{arbiters} arbiters for {cores} cores");
    add_offices(&engine, 2 * cores, 6 * cores).await;
    assert_eq!(
        threads_named("actix-rt|system"),
        arbiters,
        "no arbiter per office"
    );
    assert_eq!(office_writers(), writers, "no writer per office");

    // An office whose actor panics is alone in stopping: the offices on its arbiter answer.
    let doomed = engine.office_handle("office0").unwrap();
    let crashed = doomed
        .call(Call::write(
            |_: &mut OfficePool, _, _| -> Result<(), Refusal> {
                panic!("fault injected by the test")
            },
        ))
        .await;
    assert!(crashed.is_err());
    for i in 1..6 * cores {
        let stats = engine.stats(&format!("office{i}")).await.unwrap();
        assert_eq!(class_stats(&stats, "small").counts.available, 1_000);
    }
    engine.shutdown().await.unwrap();
}
