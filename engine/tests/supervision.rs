//! Office supervision: an office whose actor panicked, or whose writer failed, is named
//! unhealthy and restarted from its durable state (claims and quotas as acknowledged, holds back
//! in the pool) with the restart counted; it then serves writes again.
#![allow(clippy::unwrap_used)]

mod common_engine;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common_engine::*;
use platepool_engine::actor::Call;
use platepool_engine::pool::OfficePool;
use platepool_engine::{AppState, Caller, Durability, Engine, Refusal};

const OP: &str = "operator:supervision";

fn condition(engine: &Engine) -> (bool, u64, Option<String>) {
    let c = engine.office_conditions().pop().unwrap();
    assert_eq!(c.office, "maoming");
    (c.healthy, c.restarts, c.reason)
}

async fn back_within(engine: &Engine, restarts: u64) -> bool {
    eventually(Duration::from_secs(10), || {
        let (healthy, n, _) = condition(engine);
        healthy && n == restarts
    })
    .await
}

#[test]
fn a_panicked_or_failed_office_is_restarted_from_its_durable_state() {
    let dir = tempfile::tempdir().unwrap();
    let config = engine_config(dir.path(), Durability::Flush, TestClock::new(), 11);
    in_own_system(move || async move {
        let engine = open_engine(config).await;
        office_with_release(&engine, "maoming", office_config("茂名"), &["A0###"], OP).await;
        let ann = verified_application(&engine, "maoming", "ann", &vin("SU", 1), "S1").await;
        let claim = draw_and_claim(&engine, &ann, "ann").await;
        assert_eq!(condition(&engine), (true, 0, None));

        // The office's actor panics.
        let handle = engine.office_handle("maoming").unwrap();
        let answer = handle
            .call(Call::write(
                |_: &mut OfficePool, _, _| -> Result<(), Refusal> {
                    panic!("a fault inside the office")
                },
            ))
            .await;
        assert!(matches!(answer, Err(Refusal::Unavailable(_))), "{answer:?}");
        // Named unhealthy once the actor's thread has dropped it (before the first restart,
        // which waits half a second).
        assert!(
            eventually(Duration::from_millis(400), || {
                let (healthy, _, reason) = condition(&engine);
                !healthy && reason.is_some_and(|r| r.contains("actor stopped"))
            })
            .await,
            "{:?}",
            engine.office_conditions()
        );
        assert!(
            back_within(&engine, 1).await,
            "{:?}",
            engine.office_conditions()
        );
        let view = engine.application(&ann, Caller::Operator).await.unwrap();
        assert_eq!(view.record.state, AppState::Claimed);
        assert_eq!(view.record.claim.unwrap().serial, claim.serial);
        let stats = engine.stats("maoming").await.unwrap();
        assert_eq!(class_stats(&stats, "small").counts.claimed, 1);
        assert_eq!(class_stats(&stats, "small").counts.held, 0);

        // Its writer fails (what a failed write or fsync sets): writes are refused, then the
        // office comes back and accepts them.
        let health = engine.office_handle("maoming").unwrap().health;
        health.failed.store(true, Ordering::SeqCst);
        let (healthy, _, reason) = condition(&engine);
        assert!(!healthy);
        assert!(reason.unwrap().contains("writer failed"));
        assert!(
            back_within(&engine, 2).await,
            "{:?}",
            engine.office_conditions()
        );
        let bob = verified_application(&engine, "maoming", "bob", &vin("SU", 2), "S2").await;
        engine
            .draw(&bob, Caller::Citizen("bob"), false)
            .await
            .unwrap();
    });
}
