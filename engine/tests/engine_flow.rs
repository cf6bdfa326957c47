//! Engine-level flow tests: the `Engine` handle over real actors and a real sled store.
//!
//! Covers R4.2 (the order of the application checks), R4.4–R4.6 (identity, draw, pick, claim,
//! custom check), R4.10–R4.12 (register, void, lapse and blacklist, a VIN succeeds once), I4
//! (expired holds come back by the timer), I6 (blacklist), I7 (one live application per VIN, a
//! citizen sees only their own applications) and I9 (after a restart the state is exactly the
//! acknowledged state, holds back in the pool).
#![allow(clippy::unwrap_used)]

mod common_engine;

use std::sync::Arc;
use std::time::Duration;

use common_engine::*;
use platepool_engine::record::NumberState;
use platepool_engine::{
    AppId, AppRecord, AppState, Caller, Check, Durability, Engine, EngineConfig, NewRelease,
    Pattern, Refusal, ReleaseSource, Serial, Unavailable,
};

const OP: &str = "operator:1";
const DAY_MS: u64 = 86_400_000;

fn serial(text: &str) -> Serial {
    Serial::parse(text).unwrap()
}

fn citizen(user: &str) -> Caller<'_> {
    Caller::Citizen(user)
}

async fn record(engine: &Engine, id: &AppId) -> AppRecord {
    engine
        .application(id, Caller::Operator)
        .await
        .unwrap()
        .record
}

/// What phase 1 of the flow test acknowledged, to compare after the restart.
struct Acknowledged {
    apps: Vec<(AppId, AppRecord)>,
    stats_small: platepool_engine::pool::Counts,
    stats_new_energy: platepool_engine::pool::Counts,
    carol_batch: Vec<Serial>,
}

async fn flow_first_phase(config: EngineConfig, clock: Arc<TestClock>) -> Acknowledged {
    let engine = open_engine(config).await;

    // Offices (R5.1): two offices, one reconfigured.
    assert!(engine
        .put_office("maoming", office_config("茂名"), OP)
        .await
        .unwrap());
    let mut zhanjiang = office_config("湛江");
    zhanjiang.classes = vec!["small".into()];
    assert!(engine.put_office("zhanjiang", zhanjiang, OP).await.unwrap());
    assert!(!engine
        .put_office("maoming", office_config("茂名市车辆管理所"), OP)
        .await
        .unwrap());
    assert_eq!(
        engine.office_config("maoming").unwrap().name,
        "茂名市车辆管理所"
    );
    assert_eq!(office_ids(&engine.offices()), ["maoming", "zhanjiang"]);
    assert!(matches!(
        engine.put_office("Bad-Id", office_config("x"), OP).await,
        Err(Refusal::InvalidConfig { .. })
    ));

    // Releases (R5.2).
    let now = engine.now_ms();
    let (r1, n) = engine
        .add_release("maoming", release("small", &["A00##", "A01##"], now), OP)
        .await
        .unwrap();
    assert_eq!((r1, n), (1, 200));
    let (_, n) = engine
        .add_release(
            "maoming",
            release("small_new_energy", &["DA00##", "F[AB]00##"], now),
            OP,
        )
        .await
        .unwrap();
    assert_eq!(n, 300);
    let (_, n) = engine
        .add_release("zhanjiang", release("small", &["B00##"], now), OP)
        .await
        .unwrap();
    assert_eq!(n, 100);
    assert_eq!(
        engine
            .add_release(
                "zhanjiang",
                release("small_new_energy", &["DA00##"], now),
                OP
            )
            .await,
        Err(Refusal::UnknownClass("small_new_energy".into()))
    );
    assert_eq!(
        engine
            .add_release("nowhere", release("small", &["A00##"], now), OP)
            .await,
        Err(Refusal::UnknownOffice)
    );

    // Certificates (R5.3): good rows imported, bad rows reported by row number.
    let (alice, bob, carol, dave) = (vin("AL", 1), vin("BB", 2), vin("CA", 3), vin("DA", 4));
    let fuel_new_energy = vin("FU", 5);
    let report = engine
        .import_certificates(
            vec![
                cert(&alice, "HGZ0001", "small", "fuel"),
                cert(&bob, "HGZ0002", "small_new_energy", "bev"),
                cert(&carol, "hgz0003", "small", "fuel"),
                cert(&dave, "HGZ0004", "small", "phev"),
                cert(&fuel_new_energy, "HGZ0005", "small_new_energy", "fuel"),
                cert("LSV00001X1234567", "HGZ0006", "small", "fuel"),
                cert(&vin("TR", 7), "HGZ0007", "truck", "fuel"),
                cert(&vin("DS", 8), "HGZ0008", "small", "diesel"),
                cert(&vin("VC", 9), "", "small", "fuel"),
            ],
            "operator:test",
        )
        .await
        .unwrap();
    assert_eq!(report.imported, 5);
    assert_eq!(
        report.rejected.iter().map(|r| r.row).collect::<Vec<_>>(),
        [6, 7, 8, 9]
    );

    // R4.2: the checks in order — office, notice, VIN, voucher, eligibility.
    let mut req = request("nowhere", "alice", "BADVIN", "nope");
    req.notice_version = "v0".into();
    assert_eq!(
        engine.create_application(req.clone()).await,
        Err(Refusal::UnknownOffice)
    );
    req.office = "maoming".into();
    assert_eq!(
        engine.create_application(req.clone()).await,
        Err(Refusal::NoticeNotAccepted {
            expected: "v1".into()
        })
    );
    req.notice_version = "v1".into();
    assert!(matches!(
        engine.create_application(req.clone()).await,
        Err(Refusal::InvalidVin(_))
    ));
    let mut wrong_check_digit = alice.clone().into_bytes();
    wrong_check_digit[8] = if wrong_check_digit[8] == b'0' {
        b'1'
    } else {
        b'0'
    };
    req.vin = String::from_utf8(wrong_check_digit).unwrap();
    match engine.create_application(req.clone()).await {
        Err(Refusal::InvalidVin(message)) => assert!(message.contains("check digit"), "{message}"),
        other => panic!("expected invalid_vin, got {other:?}"),
    }
    req.vin = alice.clone();
    assert_eq!(
        engine.create_application(req.clone()).await,
        Err(Refusal::VoucherMismatch)
    );
    req.vin = vin("ZZ", 99);
    req.voucher = "HGZ0001".into();
    assert_eq!(
        engine.create_application(req.clone()).await,
        Err(Refusal::VoucherMismatch)
    );
    assert!(matches!(
        engine
            .create_application(request("maoming", "frank", &fuel_new_energy, "HGZ0005"))
            .await,
        Err(Refusal::VehicleNotEligible(_))
    ));
    assert!(matches!(
        engine
            .create_application(request("zhanjiang", "bob", &bob, "HGZ0002"))
            .await,
        Err(Refusal::VehicleNotEligible(_))
    ));
    // A dry run checks everything and creates nothing.
    engine
        .check_application(request("maoming", "alice", &alice, "HGZ0001"))
        .await
        .unwrap();
    assert!(engine.user_applications("alice").await.unwrap().is_empty());

    let a1 = engine
        .create_application(request("maoming", "alice", &alice, "HGZ0001"))
        .await
        .unwrap();
    assert_eq!(a1.to_string(), "maoming-1");
    assert_eq!("maoming-1".parse::<AppId>().unwrap(), a1);
    // I7: one live application per VIN, in this office and in any other; VIN and voucher are
    // normalised before they are compared.
    let exists = Err(Refusal::ApplicationExists {
        application: "maoming-1".into(),
    });
    assert_eq!(
        engine
            .create_application(request("maoming", "mallory", &alice, "HGZ0001"))
            .await,
        exists
    );
    assert_eq!(
        engine
            .create_application(request(
                "zhanjiang",
                "alice",
                &format!(" {} ", alice.to_lowercase()),
                " hgz0001 "
            ))
            .await,
        exists
    );
    assert_eq!(
        engine
            .check_application(request("zhanjiang", "alice", &alice, "HGZ0001"))
            .await,
        Err(Refusal::ApplicationExists {
            application: "maoming-1".into()
        })
    );
    let a2 = engine
        .create_application(request("maoming", "bob", &bob, "HGZ0002"))
        .await
        .unwrap();
    let a3 = engine
        .create_application(request("maoming", "carol", &carol, "HGZ0003"))
        .await
        .unwrap();
    let a4 = engine
        .create_application(request("maoming", "dave", &dave, "HGZ0004"))
        .await
        .unwrap();
    assert_eq!(
        [&a2, &a3, &a4].map(|a| a.to_string()),
        ["maoming-2", "maoming-3", "maoming-4"]
    );
    let view = engine.application(&a1, citizen("alice")).await.unwrap();
    assert_eq!(view.record.state, AppState::Confirmed);
    assert_eq!((view.record.custom_left, view.record.random_left), (20, 5));

    // I7: another citizen neither sees nor acts on alice's application.
    let unknown = Refusal::UnknownApplication;
    assert_eq!(
        engine.application(&a1, citizen("bob")).await.err(),
        Some(unknown.clone())
    );
    assert_eq!(
        engine.verify_identity(&a1, citizen("bob")).await,
        Err(unknown.clone())
    );
    assert_eq!(
        engine.draw(&a1, citizen("bob"), false).await.err(),
        Some(unknown.clone())
    );
    assert_eq!(
        engine
            .custom_check(&a1, citizen("bob"), vec!["A0001".into()])
            .await
            .err(),
        Some(unknown.clone())
    );
    assert_eq!(
        engine
            .pick_candidate(&a1, citizen("bob"), "A0001")
            .await
            .err(),
        Some(unknown.clone())
    );
    assert_eq!(
        engine.claim(&a1, citizen("bob"), "A0001").await.err(),
        Some(unknown.clone())
    );
    for missing in ["maoming-99", "nowhere-1"] {
        let id: AppId = missing.parse().unwrap();
        assert_eq!(
            engine.application(&id, Caller::Operator).await.err(),
            Some(unknown.clone())
        );
        assert_eq!(
            engine.draw(&id, citizen("alice"), false).await.err(),
            Some(unknown.clone())
        );
    }
    let bobs: Vec<AppId> = engine
        .user_applications("bob")
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(bobs, std::slice::from_ref(&a2));

    // Random selection (R4.4, R4.6): verify, draw, pick, draw again, claim.
    assert_eq!(
        engine.draw(&a1, citizen("alice"), false).await.err(),
        Some(Refusal::IdentityNotVerified)
    );
    let until = engine.verify_identity(&a1, citizen("alice")).await.unwrap();
    assert!(until > engine.now_ms());
    let draw = engine.draw(&a1, citizen("alice"), false).await.unwrap();
    assert_eq!(draw.random_left, 4);
    assert_eq!(draw.batch.serials.len(), 10);
    for s in &draw.batch.serials {
        assert!(s.to_string().starts_with("A0"), "{s}");
        let (owner, _) = engine
            .serial_application("maoming", &s.to_string())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(owner, a1);
    }
    let stats = engine.stats("maoming").await.unwrap();
    assert_eq!(class_stats(&stats, "small").counts.held, 10);
    let pick = draw.batch.serials[3];
    let candidates = engine
        .pick_candidate(&a1, citizen("alice"), &pick.to_string())
        .await
        .unwrap();
    assert_eq!(candidates.serials, [pick]);
    assert_eq!(
        engine
            .pick_candidate(&a1, citizen("alice"), &draw.batch.serials[4].to_string())
            .await,
        Err(Refusal::AlreadyPicked)
    );
    assert_eq!(
        engine
            .claim(&a1, citizen("alice"), &draw.batch.serials[5].to_string())
            .await
            .err(),
        Some(Refusal::NotHeld)
    );
    let second = engine.draw(&a1, citizen("alice"), true).await.unwrap();
    assert_eq!(second.random_left, 3);
    assert!(second.batch.serials.iter().all(|s| !s.contains_four()));
    assert!(!second.batch.serials.contains(&pick));
    assert_eq!(second.candidates.as_ref().unwrap().serials, [pick]);
    let stats = engine.stats("maoming").await.unwrap();
    assert_eq!(class_stats(&stats, "small").counts.held, 11);
    let claim = engine
        .claim(&a1, citizen("alice"), &format!("粤K·{pick}"))
        .await
        .unwrap();
    assert_eq!(claim.serial, pick);
    assert!(claim.register_by_ms > engine.now_ms());
    assert_eq!(claim.voucher_code.len(), 8);
    let view = engine.application(&a1, citizen("alice")).await.unwrap();
    assert_eq!(view.record.state, AppState::Claimed);
    assert_eq!((view.record.random_left, view.record.custom_left), (3, 20));
    assert!(view.batch.is_none() && view.candidates.is_none());
    let stats = engine.stats("maoming").await.unwrap();
    let small = class_stats(&stats, "small").counts;
    assert_eq!((small.held, small.claimed), (0, 1));
    assert_eq!(
        engine.draw(&a1, citizen("alice"), false).await.err(),
        Some(Refusal::WrongState { state: "claimed" })
    );

    // Custom selection (R4.5) for a battery-electric car: interval, composition, debits.
    engine.verify_identity(&a2, citizen("bob")).await.unwrap();
    assert!(matches!(
        engine
            .custom_check(&a2, citizen("bob"), vec!["DA0001".into()])
            .await,
        Err(Refusal::TooSoon { .. })
    ));
    clock.advance(8_000);
    assert!(matches!(
        engine
            .custom_check(&a2, citizen("bob"), vec!["FA0001".into()])
            .await,
        Err(Refusal::NotAllowed { index: 0, .. })
    ));
    match engine
        .custom_check(&a2, citizen("bob"), vec!["DB1234".into()])
        .await
        .unwrap()
    {
        Check::NoneAvailable {
            results,
            custom_left,
            ..
        } => {
            assert_eq!(results, [(serial("DB1234"), Unavailable::NotInPool)]);
            assert_eq!(custom_left, 19);
        }
        other => panic!("expected none available, got {other:?}"),
    }
    assert!(matches!(
        engine
            .custom_check(&a2, citizen("bob"), vec!["DA0001".into()])
            .await,
        Err(Refusal::TooSoon { .. })
    ));
    clock.advance(8_000);
    match engine
        .custom_check(
            &a2,
            citizen("bob"),
            vec!["DB1111".into(), "粤K·da0007".into()],
        )
        .await
        .unwrap()
    {
        Check::Claimed(c) => assert_eq!(c.serial, serial("DA0007")),
        other => panic!("expected a claim, got {other:?}"),
    }
    let bob_view = record(&engine, &a2).await;
    assert_eq!(
        (bob_view.state, bob_view.custom_left, bob_view.random_left),
        (AppState::Claimed, 17, 5)
    );

    // Taken and held numbers are reported as such (and cost the quota).
    engine.verify_identity(&a3, citizen("carol")).await.unwrap();
    clock.advance(8_000);
    match engine
        .custom_check(&a3, citizen("carol"), vec![pick.to_string()])
        .await
        .unwrap()
    {
        Check::NoneAvailable { results, .. } => assert_eq!(results, [(pick, Unavailable::Taken)]),
        other => panic!("expected none available, got {other:?}"),
    }
    let carol_draw = engine.draw(&a3, citizen("carol"), false).await.unwrap();
    let carol_batch = carol_draw.batch.serials.clone();
    engine.verify_identity(&a4, citizen("dave")).await.unwrap();
    clock.advance(8_000);
    match engine
        .custom_check(&a4, citizen("dave"), vec![carol_batch[0].to_string()])
        .await
        .unwrap()
    {
        Check::NoneAvailable {
            results,
            custom_left,
            ..
        } => {
            assert_eq!(results, [(carol_batch[0], Unavailable::Held)]);
            assert_eq!(custom_left, 19);
        }
        other => panic!("expected none available, got {other:?}"),
    }
    let free = (0..200)
        .map(|n| serial(&format!("A{n:04}")))
        .find(|s| *s != pick && !carol_batch.contains(s))
        .unwrap();
    clock.advance(8_000);
    match engine
        .custom_check(
            &a4,
            citizen("dave"),
            vec![carol_batch[1].to_string(), free.to_string()],
        )
        .await
        .unwrap()
    {
        Check::Claimed(c) => assert_eq!(c.serial, free),
        other => panic!("expected a claim, got {other:?}"),
    }
    assert_eq!(record(&engine, &a4).await.custom_left, 17);

    // Registration and voiding (R4.10, R4.11) and what they do to the VIN (R4.12).
    assert_eq!(
        engine
            .register("maoming", &pick.to_string(), OP)
            .await
            .unwrap(),
        a1
    );
    assert_eq!(record(&engine, &a1).await.state, AppState::Issued);
    assert_eq!(
        engine.register("maoming", &pick.to_string(), OP).await,
        Err(Refusal::NumberBusy { status: "issued" })
    );
    assert_eq!(
        engine
            .void("maoming", &free.to_string(), "owner asked", OP)
            .await
            .unwrap(),
        a4
    );
    assert_eq!(record(&engine, &a4).await.state, AppState::Voided);
    let a5 = engine
        .create_application(request("maoming", "dave", &dave, "HGZ0004"))
        .await
        .unwrap();
    assert_eq!(a5.to_string(), "maoming-5");
    assert_eq!(
        engine
            .create_application(request("zhanjiang", "alice", &alice, "HGZ0001"))
            .await,
        Err(Refusal::VinAlreadyUsed)
    );

    let mut apps = Vec::new();
    for id in [&a1, &a2, &a3, &a4, &a5] {
        apps.push((id.clone(), record(&engine, id).await));
    }
    let stats = engine.stats("maoming").await.unwrap();
    let stats_small = class_stats(&stats, "small").counts;
    assert_eq!(
        (stats_small.held, stats_small.claimed, stats_small.issued),
        (10, 0, 1)
    );
    engine.flush().unwrap();
    Acknowledged {
        apps,
        stats_small,
        stats_new_energy: class_stats(&stats, "small_new_energy").counts,
        carol_batch,
    }
}

#[actix_rt::test]
async fn apply_select_claim_and_recover_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::starting_at(monday_10am());
    let config = engine_config(dir.path(), Durability::Flush, clock.clone(), 7);
    let acked = {
        let (config, clock) = (config.clone(), clock.clone());
        in_own_system(move || flow_first_phase(config, clock))
    };

    // I9: reopened, the state is exactly what was acknowledged; holds are back in the pool.
    let engine = open_engine(config).await;
    assert_eq!(engine.recovery().offices, 2);
    assert_eq!(engine.recovery().applications, 5);
    for (id, rec) in &acked.apps {
        let view = engine.application(id, Caller::Operator).await.unwrap();
        assert_eq!(&view.record, rec, "{id}");
        assert!(
            view.batch.is_none() && view.candidates.is_none(),
            "{id} holds after restart"
        );
    }
    let stats = engine.stats("maoming").await.unwrap();
    let small = class_stats(&stats, "small");
    let before = acked.stats_small;
    assert_eq!(small.counts.held, 0);
    assert_eq!(small.counts.claimed, before.claimed);
    assert_eq!(small.counts.issued, before.issued);
    assert_eq!(small.counts.available, before.available + before.held);
    assert_eq!(small.counts.total(), 200);
    for r in &small.releases {
        assert_eq!(
            r.counts.total(),
            r.total,
            "conservation in release {}",
            r.id
        );
    }
    assert_eq!(
        class_stats(&stats, "small_new_energy").counts,
        acked.stats_new_energy
    );
    for s in &acked.carol_batch {
        assert!(engine
            .serial_application("maoming", &s.to_string())
            .await
            .unwrap()
            .is_none());
    }
    // The claimed and issued numbers are stored as such.
    let snapshot = engine.store().office("maoming").unwrap().load().unwrap();
    let mut claimed: Vec<(String, NumberState)> = snapshot
        .numbers
        .iter()
        .map(|(_, s, st)| (s.to_string(), *st))
        .collect();
    claimed.sort_by(|a, b| a.0.cmp(&b.0));
    let pick = acked.apps[0].1.claim.as_ref().unwrap().serial.to_string();
    assert_eq!(
        claimed,
        [
            (pick.clone(), NumberState::Issued { app: 1 }),
            ("DA0007".to_string(), NumberState::Claimed { app: 2 })
        ]
    );

    // The VIN index is rebuilt from what is durable.
    let (alice, bob, carol, dave) = (vin("AL", 1), vin("BB", 2), vin("CA", 3), vin("DA", 4));
    assert_eq!(
        engine
            .create_application(request("zhanjiang", "alice", &alice, "HGZ0001"))
            .await,
        Err(Refusal::VinAlreadyUsed)
    );
    for (v, voucher, id) in [
        (&bob, "HGZ0002", "maoming-2"),
        (&carol, "HGZ0003", "maoming-3"),
        (&dave, "HGZ0004", "maoming-5"),
    ] {
        assert_eq!(
            engine
                .create_application(request("maoming", "x", v, voucher))
                .await,
            Err(Refusal::ApplicationExists {
                application: id.into()
            }),
            "{v}"
        );
    }
    let daves: Vec<String> = engine
        .user_applications("dave")
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id.to_string())
        .collect();
    assert_eq!(daves, ["maoming-4", "maoming-5"]);
    let by_vin = engine.vin_applications(&dave.to_lowercase()).await.unwrap();
    assert_eq!(by_vin.len(), 2);

    // Sequence numbers go on; quotas go on from where they were.
    engine
        .import_certificates(
            vec![cert(&vin("ER", 6), "HGZ0006", "small", "fuel")],
            "operator:test",
        )
        .await
        .unwrap();
    let a6 = engine
        .create_application(request("maoming", "erin", &vin("ER", 6), "HGZ0006"))
        .await
        .unwrap();
    assert_eq!(a6.to_string(), "maoming-6");
    let a3: AppId = "maoming-3".parse().unwrap();
    let draw = engine.draw(&a3, citizen("carol"), false).await.unwrap();
    assert_eq!(draw.random_left, 3);
    let audit: Vec<String> = engine
        .audit("maoming", 0, 10_000)
        .unwrap()
        .into_iter()
        .map(|(_, e)| e.action)
        .collect();
    for action in ["apply", "draw", "claim", "custom_claim", "register", "void"] {
        assert!(
            audit.iter().any(|a| a == action),
            "no {action} in the audit trail"
        );
    }
}

/// Phase 1 of the blacklist test: two claims lapse when the clock passes their deadline.
async fn lapse_first_phase(config: EngineConfig, clock: Arc<TestClock>) -> (u64, u64) {
    let engine = open_engine(config).await;
    engine
        .put_office("maoming", office_config("茂名"), OP)
        .await
        .unwrap();
    let now = engine.now_ms();
    engine
        .add_release("maoming", release("small", &["A00##"], now), OP)
        .await
        .unwrap();
    let rows = (1..=3)
        .map(|n| cert(&vin("ER", n), &format!("E{n}"), "small", "fuel"))
        .chain((1..=2).map(|n| cert(&vin("FR", n), &format!("F{n}"), "small", "fuel")))
        .collect();
    assert_eq!(
        engine
            .import_certificates(rows, "operator:test")
            .await
            .unwrap()
            .imported,
        5
    );
    let ea = engine
        .create_application(request("maoming", "erin", &vin("ER", 1), "E1"))
        .await
        .unwrap();
    let eb = engine
        .create_application(request("maoming", "erin", &vin("ER", 2), "E2"))
        .await
        .unwrap();
    let fa = engine
        .create_application(request("maoming", "frank", &vin("FR", 1), "F1"))
        .await
        .unwrap();
    let mut deadline = 0;
    for (id, user) in [(&ea, "erin"), (&fa, "frank")] {
        engine.verify_identity(id, citizen(user)).await.unwrap();
        let draw = engine.draw(id, citizen(user), false).await.unwrap();
        let s = draw.batch.serials[0].to_string();
        engine.pick_candidate(id, citizen(user), &s).await.unwrap();
        let claim = engine.claim(id, citizen(user), &s).await.unwrap();
        deadline = deadline.max(claim.register_by_ms);
    }
    // Monday's claim must be registered by the end of Thursday (3 working days).
    assert_eq!(
        deadline,
        monday_10am() + 3 * DAY_MS + 14 * 3_600_000 - 1_000
    );
    engine.verify_identity(&eb, citizen("erin")).await.unwrap();
    assert_eq!(engine.blacklisted_until("erin"), None);

    // The deadline passes; the next call to the office lapses both claims (R4.11).
    clock.advance(deadline + 1_000 - engine.now_ms());
    let lapsed_at = engine.now_ms();
    let view = engine.application(&ea, citizen("erin")).await.unwrap();
    assert_eq!(view.record.state, AppState::Lapsed);
    assert_eq!(record(&engine, &fa).await.state, AppState::Lapsed);
    let small = engine.stats("maoming").await.unwrap();
    assert_eq!(class_stats(&small, "small").counts.claimed, 0);
    assert!(
        eventually(Duration::from_secs(5), || engine
            .blacklisted_until("erin")
            .is_some()
            && engine.blacklisted_until("frank").is_some())
        .await,
        "lapsed users are not blacklisted"
    );
    let until = engine.blacklisted_until("erin").unwrap();
    assert!(until >= lapsed_at + 730 * DAY_MS && until <= engine.now_ms() + 730 * DAY_MS);

    // I6: a blacklisted user can neither continue nor start a selection.
    let blacklisted = Refusal::Blacklisted { until_ms: until };
    assert_eq!(
        engine.draw(&eb, citizen("erin"), false).await.err(),
        Some(blacklisted.clone())
    );
    assert_eq!(
        engine.verify_identity(&eb, citizen("erin")).await,
        Err(blacklisted.clone())
    );
    assert_eq!(
        engine
            .custom_check(&eb, citizen("erin"), vec!["A0001".into()])
            .await
            .err(),
        Some(blacklisted.clone())
    );
    assert_eq!(
        engine
            .create_application(request("maoming", "erin", &vin("ER", 3), "E3"))
            .await,
        Err(blacklisted)
    );
    let listed: Vec<(String, String)> = engine
        .blacklist()
        .into_iter()
        .map(|e| (e.user, e.application))
        .collect();
    assert_eq!(
        listed,
        [
            ("erin".to_string(), ea.to_string()),
            ("frank".to_string(), fa.to_string())
        ]
    );
    // A lapsed VIN has succeeded online once (R4.12).
    assert_eq!(
        engine
            .create_application(request("maoming", "george", &vin("ER", 1), "E1"))
            .await,
        Err(Refusal::VinAlreadyUsed)
    );
    (until, engine.blacklisted_until("frank").unwrap())
}

#[actix_rt::test]
async fn lapse_blacklists_until_lifted_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::starting_at(monday_10am());
    let config = engine_config(dir.path(), Durability::Fsync, clock.clone(), 11);
    let (erin_until, frank_until) = {
        let (config, clock) = (config.clone(), clock.clone());
        in_own_system(move || lapse_first_phase(config, clock))
    };
    let ea: AppId = "maoming-1".parse().unwrap();
    let eb: AppId = "maoming-2".parse().unwrap();

    // After a restart the blacklist is still there; an operator lifts it.
    {
        let config = config.clone();
        let (ea, eb) = (ea.clone(), eb.clone());
        in_own_system(move || async move {
            let engine = open_engine(config).await;
            assert_eq!(engine.blacklisted_until("erin"), Some(erin_until));
            assert_eq!(engine.blacklisted_until("frank"), Some(frank_until));
            assert_eq!(
                engine.draw(&eb, citizen("erin"), false).await.err(),
                Some(Refusal::Blacklisted {
                    until_ms: erin_until
                })
            );
            assert_eq!(record(&engine, &ea).await.state, AppState::Lapsed);
            let stats = engine.stats("maoming").await.unwrap();
            assert_eq!(class_stats(&stats, "small").counts.claimed, 0);
            engine
                .lift_blacklist("erin", "operator:7", "appeal granted")
                .await
                .unwrap();
            assert_eq!(engine.blacklisted_until("erin"), None);
            assert!(matches!(
                engine.lift_blacklist("erin", "operator:7", "again").await,
                Err(Refusal::Conflict(_))
            ));
            engine.verify_identity(&eb, citizen("erin")).await.unwrap();
            assert_eq!(
                engine
                    .draw(&eb, citizen("erin"), false)
                    .await
                    .unwrap()
                    .random_left,
                4
            );
            let actions: Vec<String> = engine
                .registry_audit()
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.action)
                .collect();
            assert!(actions.iter().any(|a| a == "blacklist"), "{actions:?}");
            assert!(actions.iter().any(|a| a == "lift_blacklist"), "{actions:?}");
        });
    }

    // The lift survives a restart too; the other entry lifts by itself at its date (I6).
    let engine = open_engine(config).await;
    assert_eq!(
        engine.blacklisted_until("erin"),
        None,
        "a lifted blacklist entry came back"
    );
    assert_eq!(engine.blacklisted_until("frank"), Some(frank_until));
    engine.verify_identity(&eb, citizen("erin")).await.unwrap();
    assert_eq!(
        engine
            .draw(&eb, citizen("erin"), false)
            .await
            .unwrap()
            .random_left,
        3
    );
    clock.advance(frank_until - engine.now_ms() + 1);
    assert_eq!(engine.blacklisted_until("frank"), None);
    assert!(engine.blacklist().is_empty());
    engine
        .create_application(request("maoming", "frank", &vin("FR", 2), "F2"))
        .await
        .unwrap();
}

/// I4: a hold nobody confirms is back in the pool shortly after it expires, by the office's own
/// timer (no call needed), and can be drawn again.
#[actix_rt::test]
async fn expired_holds_come_back_by_the_timer() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let engine = open_engine(engine_config(dir.path(), Durability::Flush, clock, 3)).await;
    let mut office = office_config("茂名");
    office.rules.random_ttl_ms = 1_000;
    office.rules.candidate_ttl_ms = 1_000;
    office.rules.random_quota = 1;
    office.rules.custom_quota = 0;
    engine.put_office("maoming", office, OP).await.unwrap();
    let now = engine.now_ms();
    engine
        .add_release("maoming", release("small", &["A000#"], now), OP)
        .await
        .unwrap();
    engine
        .import_certificates(
            vec![
                cert(&vin("HA", 1), "H1", "small", "fuel"),
                cert(&vin("HB", 2), "H2", "small", "fuel"),
            ],
            "operator:test",
        )
        .await
        .unwrap();
    let a = engine
        .create_application(request("maoming", "hana", &vin("HA", 1), "H1"))
        .await
        .unwrap();
    let b = engine
        .create_application(request("maoming", "hugo", &vin("HB", 2), "H2"))
        .await
        .unwrap();
    engine.verify_identity(&a, citizen("hana")).await.unwrap();
    engine.verify_identity(&b, citizen("hugo")).await.unwrap();
    let first = engine.draw(&a, citizen("hana"), false).await.unwrap();
    assert_eq!((first.batch.serials.len(), first.random_left), (10, 0));
    assert_eq!(
        engine.draw(&b, citizen("hugo"), false).await.err(),
        Some(Refusal::NotAvailable)
    );

    // Without any call to the office, its timer expires the batch: the application, with both
    // quotas spent and nothing held, is stored as exhausted (R4.7).
    let store = engine.store().office("maoming").unwrap();
    let exhausted = eventually(Duration::from_secs(3), || {
        store
            .load()
            .unwrap()
            .apps
            .iter()
            .any(|r| r.seq == a.seq && r.state == AppState::Exhausted)
    })
    .await;
    assert!(exhausted, "the timer did not expire the batch");
    let stats = engine.stats("maoming").await.unwrap();
    assert_eq!(class_stats(&stats, "small").counts.held, 0);
    let mut again = engine
        .draw(&b, citizen("hugo"), false)
        .await
        .unwrap()
        .batch
        .serials;
    let mut before = first.batch.serials.clone();
    again.sort();
    before.sort();
    assert_eq!(again, before);
    assert_eq!(
        engine.draw(&a, citizen("hana"), false).await.err(),
        Some(Refusal::Exhausted)
    );
}

/// I9 for every number: a claimed number whose stored code happens to contain the byte `/` (the
/// separator in the store's number keys) is read back after a restart.
#[actix_rt::test]
async fn claims_of_any_number_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let config = engine_config(dir.path(), Durability::Flush, clock, 5);
    let odd: Vec<Serial> = Pattern::parse("A####")
        .unwrap()
        .iter()
        .filter(|s| s.code().to_be_bytes().contains(&b'/'))
        .take(3)
        .collect();
    assert_eq!(odd.len(), 3, "no serial has a '/' byte in its code");
    let claimed = {
        let (config, odd) = (config.clone(), odd.clone());
        in_own_system(move || async move {
            let engine = open_engine(config).await;
            let mut office = office_config("茂名");
            office.rules.custom_min_interval_ms = 0;
            office.rules.opening_window_ms = 0;
            engine.put_office("maoming", office, OP).await.unwrap();
            let release = NewRelease {
                class: "small".into(),
                label: "odd codes".into(),
                opens_at_ms: engine.now_ms(),
                custom_from_ms: None,
                source: ReleaseSource::Serials(odd.clone()),
            };
            engine.add_release("maoming", release, OP).await.unwrap();
            let mut claimed = Vec::new();
            for (n, s) in odd.iter().enumerate() {
                let (v, voucher, user) =
                    (vin("DD", n as u32), format!("OD{n}"), format!("user{n}"));
                engine
                    .import_certificates(vec![cert(&v, &voucher, "small", "fuel")], "operator:test")
                    .await
                    .unwrap();
                let id = engine
                    .create_application(request("maoming", &user, &v, &voucher))
                    .await
                    .unwrap();
                engine.verify_identity(&id, citizen(&user)).await.unwrap();
                match engine
                    .custom_check(&id, citizen(&user), vec![s.to_string()])
                    .await
                    .unwrap()
                {
                    Check::Claimed(c) => assert_eq!(c.serial, *s),
                    other => panic!("expected a claim of {s}, got {other:?}"),
                }
                claimed.push(id);
            }
            engine
                .register("maoming", &odd[0].to_string(), OP)
                .await
                .unwrap();
            claimed
        })
    };
    let engine = open_engine(config).await;
    for (id, s) in claimed.iter().zip(&odd) {
        let rec = record(&engine, id).await;
        assert_eq!(rec.claim.unwrap().serial, *s);
        let (owner, _) = engine
            .serial_application("maoming", &s.to_string())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&owner, id);
    }
    let stats = engine.stats("maoming").await.unwrap();
    let small = class_stats(&stats, "small").counts;
    assert_eq!((small.claimed, small.issued, small.available), (2, 1, 0));
}

/// An engine dropped without `shutdown` gives its data folder back (its registry, office
/// threads and store stop), so the same program can open it again: before, the event router
/// kept the registry alive for ever and the folder stayed locked.
#[actix_rt::test]
async fn a_dropped_engine_lets_go_of_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let config = engine_config(dir.path(), Durability::Flush, TestClock::new(), 3);
    for round in 0..3 {
        // Waits up to 20 s for the folder's lock, then fails.
        let engine = open_engine(config.clone()).await;
        if round == 0 {
            engine
                .put_office("maoming", office_config("茂名"), OP)
                .await
                .unwrap();
        }
        assert_eq!(engine.offices().len(), 1, "round {round}");
        drop(engine);
    }
}

/// R4.14: a draw starts the application's `random_min_interval_ms` whether or not it finds
/// numbers; a draw sooner is refused with the time left, costs nothing, and the pacing survives
/// a restart (the draw's instant is stored with the application's selection fields).
#[test]
fn draws_are_paced_even_when_they_find_nothing_and_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let config = engine_config(dir.path(), Durability::Flush, clock.clone(), 9);
    let a = {
        let (config, clock) = (config.clone(), clock.clone());
        in_own_system(move || async move {
            let engine = open_engine(config).await;
            let mut office = office_config("茂名");
            office.rules.opening_window_ms = 0;
            office.rules.random_min_interval_ms = 60_000;
            engine.put_office("maoming", office, OP).await.unwrap();
            engine
                .import_certificates(vec![cert(&vin("PA", 1), "P1", "small", "fuel")], OP)
                .await
                .unwrap();
            let a = engine
                .create_application(request("maoming", "paula", &vin("PA", 1), "P1"))
                .await
                .unwrap();
            engine.verify_identity(&a, citizen("paula")).await.unwrap();
            // Nothing released: the draw finds nothing, debits nothing, and starts the interval.
            assert_eq!(
                engine.draw(&a, citizen("paula"), false).await.err(),
                Some(Refusal::NotAvailable)
            );
            clock.advance(10_000);
            match engine.draw(&a, citizen("paula"), false).await {
                Err(Refusal::TooSoon { retry_after_ms }) => {
                    assert!(
                        (49_000..=50_000).contains(&retry_after_ms),
                        "{retry_after_ms}"
                    )
                }
                other => panic!("expected too_soon, got {other:?}"),
            }
            let view = engine.application(&a, citizen("paula")).await.unwrap();
            assert_eq!(view.record.random_left, 5, "nothing debited");
            let now = engine.now_ms();
            engine
                .add_release("maoming", release("small", &["A000#"], now), OP)
                .await
                .unwrap();
            a
        })
    };
    // After a restart the interval the draw that found nothing started still runs.
    in_own_system(move || async move {
        let engine = open_engine(config).await;
        assert!(matches!(
            engine.draw(&a, citizen("paula"), false).await,
            Err(Refusal::TooSoon { .. })
        ));
        clock.advance(50_000);
        let draw = engine.draw(&a, citizen("paula"), false).await.unwrap();
        assert_eq!((draw.batch.serials.len(), draw.random_left), (10, 4));
        assert!(matches!(
            engine.draw(&a, citizen("paula"), false).await,
            Err(Refusal::TooSoon { .. })
        ));
    });
}
