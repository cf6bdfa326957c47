//! The campaigns in small, for `cargo test`: a few simulation seeds (and that a seed replays
//! exactly), every fuzz target over its corpus and a few thousand inputs, the functional attacks,
//! and the storage faults when a fresh `platepool` binary and root are at hand.

use platepool_engine::Serial;
use platepool_reliability::fuzz::{self, targets::TARGETS};
use platepool_reliability::sim::{self, shell::WriterMode, Plan};
use platepool_reliability::{attacks, storage, Mode};

#[test]
fn simulation_seeds_hold_and_replay_exactly() {
    let (a, fa) = sim::run_seed(3, 1_500, WriterMode::FailStop);
    let (b, fb) = sim::run_seed(3, 1_500, WriterMode::FailStop);
    assert!(fa.is_none(), "{fa:?}");
    assert!(fb.is_none(), "{fb:?}");
    assert_eq!(
        (
            a.ops,
            a.crashes,
            a.restarts,
            a.flush_failures,
            a.acked_writes,
            a.acked_claims,
            &a.refusals
        ),
        (
            b.ops,
            b.crashes,
            b.restarts,
            b.flush_failures,
            b.acked_writes,
            b.acked_claims,
            &b.refusals
        ),
        "a seed must replay exactly"
    );
}

#[test]
fn simulation_plan_holds_with_crashes_and_failed_flushes() {
    let plan = Plan {
        seeds: 8,
        ops_per_seed: 1_500,
        mode: WriterMode::FailStop,
    };
    let (t, failure) = sim::run_plan(plan, 100);
    assert!(
        failure.is_none(),
        "{}",
        failure.map(|f| f.to_string()).unwrap_or_default()
    );
    assert!(t.crashes + t.restarts > 0, "no crash or restart: {t:?}");
    assert!(
        t.acked_claims > 0 && t.claims_verified_after_recovery > 0,
        "{t:?}"
    );
}

#[test]
fn fuzz_targets_hold_over_their_corpus() {
    for t in TARGETS {
        let stats = fuzz::fuzz(t, 2_000, 7);
        assert!(
            stats.violations.is_empty(),
            "{}: {:?}",
            t.name,
            stats.violations
        );
        assert!(stats.execs >= 2_000);
    }
}

#[test]
fn json_bodies_get_documented_answers() {
    let stats = fuzz::http::fuzz(600, 7);
    assert!(stats.violations.is_empty(), "{:?}", stats.violations);
    assert!(
        stats.accepted > 0,
        "no body was ever accepted: the corpus no longer reaches the handlers"
    );
}

/// Found by the plate fuzz target: a case mapping that changes byte lengths ("ﬀ" → "FF") cut a
/// character in two and panicked the office actor.
#[test]
fn regression_prefix_with_a_ligature_is_refused_not_a_panic() {
    assert!(Serial::parse_with_prefix("粤ﬀ1234", "粤F").is_err());
    assert!(Serial::parse_with_prefix("粤ß1234", "粤S").is_err());
    assert_eq!(
        Serial::parse_with_prefix("粤f·A1234", "粤F").map(|s| s.to_string()),
        Ok("A1234".to_string())
    );
}

#[test]
fn functional_attacks_are_refused_as_documented() {
    let out = attacks::functional_only();
    out.print();
    assert!(out.passed(), "{:?}", out.violations);
}

#[test]
fn storage_faults_through_the_binary() {
    let out = storage::campaign_with(Mode::Short, false);
    out.print();
    assert!(out.passed(), "{:?}", out.violations);
}
