//! Settled applications leave memory (issued, voided, exhausted) and are read back from the
//! office's store: every look-up answers as it did while they were in memory, before and
//! after a restart, the rules that need them (I7, R4.12) still hold, and the office keeps as
//! many applications in memory however many have settled.
#![allow(clippy::unwrap_used)]

#[path = "common_engine/mod.rs"]
mod common_engine;

use std::collections::BTreeMap;
use std::sync::Arc;

use common_engine::*;
use platepool_engine::{
    AppId, AppState, AppView, Caller, Check, Durability, Engine, EngineConfig, OfficeRules, Refusal,
};

const OP: &str = "operator:1";
const OFFICE: &str = "maoming";
const ROUNDS: u32 = 3;
const PER_ROUND: u32 = 10;

/// How an application ends in the test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Issued,
    Voided,
    Exhausted,
    /// Claimed and left so: it stays live.
    Live,
}

fn end_of(i: u32) -> End {
    match i % 4 {
        0 => End::Issued,
        1 => End::Voided,
        2 => End::Exhausted,
        _ => End::Live,
    }
}

/// One custom check per application and no draws: a check that finds nothing exhausts it.
fn rules() -> OfficeRules {
    OfficeRules {
        custom_quota: 1,
        random_quota: 0,
        custom_min_interval_ms: 0,
        ..office_config("x").rules
    }
}

struct Made {
    id: AppId,
    user: String,
    vin: String,
    end: End,
}

/// Opens, claims and settles the applications of one round; checks each settled one reads
/// back as its in-memory view with only what settling changed.
async fn round(engine: &Engine, r: u32) -> Vec<Made> {
    let mut made = Vec::new();
    for i in 0..PER_ROUND {
        let k = r * PER_ROUND + i;
        let (user, vin) = (format!("u{k}"), vin(&format!("R{r}"), i));
        let id = verified_application(engine, OFFICE, &user, &vin, &format!("V{k}")).await;
        let who = Caller::Citizen(&user);
        let end = end_of(i);
        let serial = format!("A0{k:03}");
        let plate = if end == End::Exhausted {
            "B0000".to_string()
        } else {
            serial.clone()
        };
        let check = engine.custom_check(&id, who, vec![plate]).await.unwrap();
        let before = engine.application(&id, who).await.unwrap();
        match (end, check) {
            (End::Exhausted, Check::NoneAvailable { .. }) => {}
            (_, Check::Claimed(_)) => {}
            (end, check) => panic!("{id} ({end:?}): {check:?}"),
        }
        match end {
            End::Issued => drop(engine.register(OFFICE, &serial, OP).await.unwrap()),
            End::Voided => drop(engine.void(OFFICE, &serial, "asked", OP).await.unwrap()),
            End::Exhausted | End::Live => {}
        }
        let after = engine.application(&id, who).await.unwrap();
        let want_state = match end {
            End::Issued => AppState::Issued,
            End::Voided => AppState::Voided,
            End::Exhausted => AppState::Exhausted,
            End::Live => AppState::Claimed,
        };
        assert_eq!(after.record.state, want_state, "{id}");
        if matches!(end, End::Issued | End::Voided) {
            let mut want = before.clone();
            want.record.state = want_state;
            want.record.closed_at_ms = after.record.closed_at_ms;
            assert!(after.record.closed_at_ms.is_some(), "{id}");
            assert_eq!(after, want, "{id}: read back from the store");
        } else {
            assert_eq!(after, before, "{id}: unchanged by settling");
        }
        made.push(Made { id, user, vin, end });
    }
    made
}

async fn views(engine: &Engine, made: &[Made]) -> BTreeMap<String, AppView> {
    let mut out = BTreeMap::new();
    for m in made {
        let view = engine.application(&m.id, Caller::Operator).await.unwrap();
        assert_eq!(
            engine
                .application(&m.id, Caller::Citizen(&m.user))
                .await
                .unwrap(),
            view
        );
        out.insert(m.id.to_string(), view);
    }
    out
}

fn live(made: &[Made]) -> usize {
    made.iter().filter(|m| m.end == End::Live).count()
}

/// What the rules and look-ups say of settled applications (memory or store alike).
async fn check_look_ups(engine: &Engine, made: &[Made], seen: &BTreeMap<String, AppView>) {
    for m in made {
        let view = &seen[&m.id.to_string()];
        // A user sees and acts on their own applications only (I7).
        assert_eq!(
            engine.application(&m.id, Caller::Citizen("stranger")).await,
            Err(Refusal::UnknownApplication),
            "{}",
            m.id
        );
        let listed = engine.user_applications(&m.user).await.unwrap();
        assert_eq!(listed, [(m.id.clone(), view.clone())], "{}", m.id);
        let by_vin = engine.vin_applications(&m.vin).await.unwrap();
        assert!(by_vin.contains(&(m.id.clone(), view.clone())), "{}", m.id);
        let who = Caller::Citizen(&m.user);
        let keyboard = engine.keyboard(&m.id, who, vec![None; 5]).await;
        assert!(keyboard.is_ok(), "{}: {keyboard:?}", m.id);
        let draw = engine.draw(&m.id, who, false).await;
        let verify = engine.verify_identity(&m.id, who).await;
        let want = match m.end {
            End::Issued => Some(Refusal::WrongState { state: "issued" }),
            End::Voided => Some(Refusal::WrongState { state: "voided" }),
            End::Exhausted => Some(Refusal::Exhausted),
            End::Live => None,
        };
        if let Some(want) = want {
            assert_eq!(draw.err(), Some(want.clone()), "{}", m.id);
            assert_eq!(verify.err(), Some(want), "{}", m.id);
        }
        if let Some(claim) = &view.record.claim {
            // The number's owner: held in memory while live, its number record once issued.
            let owner = engine
                .serial_application(OFFICE, &claim.serial.to_string())
                .await
                .unwrap();
            match m.end {
                End::Issued | End::Live => {
                    assert_eq!(owner, Some((m.id.clone(), view.clone())), "{}", m.id)
                }
                _ => assert_eq!(owner, None, "{}", m.id),
            }
            if m.end != End::Voided {
                let by_voucher = engine
                    .voucher_application(&claim.voucher_serial, &claim.voucher_code)
                    .await
                    .unwrap();
                assert_eq!(by_voucher, Some((m.id.clone(), view.clone())), "{}", m.id);
            }
        }
        // A VIN with a live application, or that succeeded online (R4.12), cannot apply
        // again (the dry run of R4.2: nothing is created).
        let again = engine
            .check_application(request(OFFICE, &m.user, &m.vin, &voucher_of(m)))
            .await;
        match m.end {
            End::Issued | End::Exhausted => {
                assert_eq!(again, Err(Refusal::VinAlreadyUsed), "{}", m.id)
            }
            End::Live => assert_eq!(
                again,
                Err(Refusal::ApplicationExists {
                    application: m.id.to_string()
                }),
                "{}",
                m.id
            ),
            // Voiding frees the VIN.
            End::Voided => assert_eq!(again, Ok(()), "{}", m.id),
        }
    }
}

fn voucher_of(m: &Made) -> String {
    format!("V{}", m.id.seq - 1)
}

async fn first_phase(config: EngineConfig) -> (Vec<Made>, BTreeMap<String, AppView>) {
    let engine = open_engine(config).await;
    let mut office = office_config("茂名");
    office.rules = rules();
    office_with_release(&engine, OFFICE, office, &["A0###"], OP).await;
    let mut made = Vec::new();
    for r in 0..ROUNDS {
        made.extend(round(&engine, r).await);
        // However many have settled, only the live ones stay in memory.
        assert_eq!(
            engine.office_resident_applications(OFFICE).await.unwrap(),
            live(&made),
            "after round {r}"
        );
    }
    let seen = views(&engine, &made).await;
    check_look_ups(&engine, &made, &seen).await;
    engine.shutdown().await.unwrap();
    (made, seen)
}

#[actix_rt::test]
async fn settled_applications_leave_memory_and_read_back_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::starting_at(monday_10am());
    let config = engine_config(dir.path(), Durability::Flush, clock.clone(), 11);
    let (made, seen) = {
        let config = config.clone();
        in_own_system(move || first_phase(config))
    };
    let _: Arc<TestClock> = clock;
    let engine = open_engine(config).await;
    assert_eq!(engine.recovery().applications, made.len());
    // Restored: only live applications are loaded into memory.
    assert_eq!(
        engine.office_resident_applications(OFFICE).await.unwrap(),
        live(&made)
    );
    assert_eq!(views(&engine, &made).await, seen);
    check_look_ups(&engine, &made, &seen).await;
}
