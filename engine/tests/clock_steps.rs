//! SPEC T1 through the engine on a fake clock whose wall time a test steps apart from its
//! monotonic time: a step of +30 days lapses no claim and blacklists nobody, a hold made before
//! it expires on the monotonic clock; after an operator's audited confirmation the lapse comes
//! due and holds keep their length; a step of −1 hour stretches no hold; a confirmed −1 hour
//! keeps the rate rules' intervals at their length, across a restart too.
#![allow(clippy::unwrap_used)]

mod common_engine;

use std::sync::Arc;
use std::time::Duration;

use common_engine::*;
use platepool_engine::clock::FakeClock;
use platepool_engine::{AppId, AppState, Caller, Durability, Engine, OfficeConfig, Refusal};

const OP: &str = "operator:clock";
const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;
const TTL_MS: u64 = 90_000;

fn citizen(user: &str) -> Caller<'_> {
    Caller::Citizen(user)
}

/// How long `id`'s batch has left, `None` without one.
async fn batch_left(engine: &Engine, id: &AppId) -> Option<u64> {
    let view = engine.application(id, Caller::Operator).await.unwrap();
    view.batch
        .map(|b| b.expires_at_ms.saturating_sub(engine.now_ms()))
}

async fn state(engine: &Engine, id: &AppId) -> AppState {
    engine
        .application(id, Caller::Operator)
        .await
        .unwrap()
        .record
        .state
}

/// An office with one open release, a claim by erin and a live batch held by frank.
async fn setup(engine: &Engine) -> (AppId, AppId) {
    setup_office(engine, office_config("茂名")).await
}

/// [`setup`] with the office configured as `office` says.
async fn setup_office(engine: &Engine, office: OfficeConfig) -> (AppId, AppId) {
    office_with_release(engine, "maoming", office, &["A0###"], OP).await;
    let erin = verified_application(engine, "maoming", "erin", &vin("ER", 1), "E1").await;
    let frank = verified_application(engine, "maoming", "frank", &vin("FR", 1), "F1").await;
    draw_and_claim(engine, &erin, "erin").await;
    engine.draw(&frank, citizen("frank"), false).await.unwrap();
    (erin, frank)
}

#[test]
fn a_forward_step_lapses_nothing_until_confirmed_and_holds_keep_their_length() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeClock::at(monday_10am()));
    let config = engine_config(dir.path(), Durability::Flush, fake.clone(), 7);
    in_own_system(move || async move {
        let engine = open_engine(config).await;
        let (erin, frank) = setup(&engine).await;
        assert_eq!(batch_left(&engine, &frank).await, Some(TTL_MS));

        // +30 days on the wall clock alone, then one second of real time.
        fake.step_wall(30 * DAY_MS);
        fake.advance(1_000);
        let status = engine.clock_status();
        assert_eq!(status.steps, 1, "{status:?}");
        assert_eq!(status.degraded.unwrap().offset_ms, 30 * DAY_MS);
        assert_eq!(engine.now_ms(), monday_10am() + 1_000);
        assert_eq!(
            state(&engine, &erin).await,
            AppState::Claimed,
            "no lapse from a step"
        );
        assert_eq!(engine.blacklisted_until("erin"), None);
        assert_eq!(batch_left(&engine, &frank).await, Some(TTL_MS - 1_000));
        // The hold expires on the monotonic clock: not before, not after.
        fake.advance(TTL_MS - 2_000);
        assert_eq!(batch_left(&engine, &frank).await, Some(1_000));
        fake.advance(1_000);
        assert_eq!(batch_left(&engine, &frank).await, None);

        // A new batch, then the operator confirms the wall time.
        engine.draw(&frank, citizen("frank"), false).await.unwrap();
        fake.advance(5_000);
        let confirmed = engine.confirm_clock(OP).await.unwrap();
        assert_eq!(confirmed.jump_ms, 30 * DAY_MS);
        assert_eq!(engine.clock_status().degraded, None);
        let audit = engine.registry_audit().await.unwrap();
        let entry = audit.iter().find(|e| e.action == "confirm_clock").unwrap();
        assert_eq!(entry.who, OP);
        assert!(entry.detail.contains("2592000000 ms"), "{}", entry.detail);
        assert_eq!(
            engine.confirm_clock(OP).await.err().map(|e| e.code()),
            Some("conflict"),
            "nothing left to confirm"
        );
        // The hold kept its length across the jump; the claim is past its deadline now.
        assert_eq!(batch_left(&engine, &frank).await, Some(TTL_MS - 5_000));
        assert_eq!(state(&engine, &erin).await, AppState::Lapsed);
        assert!(
            eventually(Duration::from_secs(5), || engine
                .blacklisted_until("erin")
                .is_some())
            .await
        );
    });
}

#[test]
fn a_backward_step_stretches_no_hold() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeClock::at(monday_10am()));
    let config = engine_config(dir.path(), Durability::Flush, fake.clone(), 8);
    in_own_system(move || async move {
        let engine = open_engine(config).await;
        let (erin, frank) = setup(&engine).await;
        fake.step_wall(-HOUR_MS);
        fake.advance(1_000);
        // Not 3,601 s left: the hour the wall clock went back is not added.
        assert_eq!(batch_left(&engine, &frank).await, Some(TTL_MS - 1_000));
        assert_eq!(engine.clock_status().degraded.unwrap().offset_ms, -HOUR_MS);
        fake.advance(TTL_MS - 1_000);
        assert_eq!(
            batch_left(&engine, &frank).await,
            None,
            "back in the pool (I4)"
        );
        // Custom checks wait their interval on the monotonic clock too.
        let next = engine
            .application(&frank, Caller::Operator)
            .await
            .unwrap()
            .next_check_at_ms;
        assert!(next <= engine.now_ms(), "{next}");
        // The wall clock is set right again: the clock agrees and is no longer degraded.
        fake.step_wall(HOUR_MS);
        let status = engine.clock_status();
        assert_eq!((status.steps, status.degraded), (1, None));
        assert_eq!(state(&engine, &erin).await, AppState::Claimed);
        assert!(matches!(
            engine.confirm_clock(OP).await,
            Err(Refusal::Conflict(_))
        ));
    });
}

/// Least time between two draws in [`a_confirmed_step_back_keeps_the_intervals_of_rate_rules`].
const DRAW_INTERVAL_MS: u64 = 60_000;

/// How long until frank may draw again: `Some(wait)` when refused as too soon, `None` when the
/// draw is made.
async fn draw_wait(engine: &Engine, frank: &AppId) -> Option<u64> {
    match engine.draw(frank, citizen("frank"), false).await {
        Ok(_) => None,
        Err(Refusal::TooSoon { retry_after_ms }) => Some(retry_after_ms),
        Err(e) => panic!("draw: {e:?}"),
    }
}

#[test]
fn a_confirmed_step_back_keeps_the_intervals_of_rate_rules() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeClock::at(monday_10am()));
    let config = engine_config(dir.path(), Durability::Flush, fake.clone(), 9);
    let again = config.clone();
    let step = Arc::clone(&fake);
    let frank = in_own_system(move || async move {
        let engine = open_engine(config).await;
        let mut office = office_config("茂名");
        office.rules.random_min_interval_ms = DRAW_INTERVAL_MS;
        let (_, frank) = setup_office(&engine, office).await;
        // Numbers released for 08:00, still open after the clock is set back an hour (the
        // setup's release is for 10:00).
        let early = release("small", &["B0###"], monday_10am() - 2 * HOUR_MS as u64);
        engine.add_release("maoming", early, OP).await.unwrap();
        // frank drew and verified at 10:00; the wall clock was an hour fast and is set back.
        step.step_wall(-HOUR_MS);
        step.advance(1_000);
        let confirmed = engine.confirm_clock(OP).await.unwrap();
        assert_eq!(confirmed.jump_ms, -HOUR_MS);
        let now = engine.now_ms();
        assert_eq!(now, monday_10am() + 1_000 - HOUR_MS as u64);
        let view = engine.application(&frank, Caller::Operator).await.unwrap();
        // The intervals count from times moved by the jump: not an hour and a minute away.
        assert_eq!(view.next_draw_at_ms, now - 1_000 + DRAW_INTERVAL_MS);
        assert!(
            view.next_check_at_ms <= now + 8_000,
            "next custom check {} ms away",
            view.next_check_at_ms - now
        );
        let until = view.record.verified_until_ms.unwrap();
        let verified = view.record.verified_at_ms.unwrap();
        assert_eq!(verified, now - 1_000, "identity verified a second ago");
        assert!(until > now && until - verified < 2 * HOUR_MS as u64);
        assert_eq!(
            draw_wait(&engine, &frank).await,
            Some(DRAW_INTERVAL_MS - 1_000)
        );
        frank
    });
    // A restart reads the moved times back.
    in_own_system(move || async move {
        let engine = open_engine(again).await;
        assert_eq!(engine.clock_status().degraded, None);
        assert_eq!(
            draw_wait(&engine, &frank).await,
            Some(DRAW_INTERVAL_MS - 1_000)
        );
        fake.advance(DRAW_INTERVAL_MS - 1_000);
        assert_eq!(draw_wait(&engine, &frank).await, None, "drawn on time");
    });
}
