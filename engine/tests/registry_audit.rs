//! Through the `Engine` handle: certificate imports are in the registry's audit trail and stay
//! there across a restart (SPEC R5.6), each office keeps its own draw and check figures (R5.5),
//! and a pre-selection voucher is found by its serial and code only (R4.8).
#![allow(clippy::unwrap_used)]

mod common_engine;

use common_engine::*;
use platepool_engine::{
    Caller, Check, Durability, Energy, ImportPart, NewRelease, Pattern, ReleaseSource,
};

const OP: &str = "operator:ops1";

fn release(opens_at_ms: u64) -> NewRelease {
    NewRelease {
        class: "small".into(),
        label: String::new(),
        opens_at_ms,
        custom_from_ms: None,
        source: ReleaseSource::Patterns(vec![Pattern::parse("A####").unwrap()]),
    }
}

#[actix_rt::test]
async fn imports_are_audited_durably_with_who_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let config = engine_config(dir.path(), Durability::Flush, TestClock::new(), 5);
    let at = {
        let config = config.clone();
        in_own_system(move || async move {
            let engine = open_engine(config).await;
            let report = engine
                .import_certificates(
                    vec![
                        cert(&vin("MT", 1), "V1", "small", "fuel"),
                        cert("LSVIM002X1234567Q", "V2", "small", "fuel"),
                        cert(&vin("MT", 3), "V3", "no_such_class", "fuel"),
                    ],
                    OP,
                )
                .await
                .unwrap();
            assert_eq!((report.imported, report.rejected.len()), (1, 2));
            // The second call of an import sent in three, after 4 rows refused by the caller.
            let part = ImportPart {
                index: 2,
                of: 3,
                rejected_before: 4,
            };
            let report = engine
                .import_certificates_part(
                    vec![cert(&vin("MT", 4), "V4", "small", "bev")],
                    "system",
                    part,
                )
                .await
                .unwrap();
            assert_eq!(report.imported, 1);
            let trail = engine.registry_audit().await.unwrap();
            assert_eq!(trail.len(), 2, "{trail:?}");
            trail[0].at_ms
        })
    };

    // Reopened: the entries are there, as they were.
    let engine = open_engine(config).await;
    let trail = engine.registry_audit().await.unwrap();
    assert_eq!(trail.len(), 2, "{trail:?}");
    assert_eq!(
        (
            trail[0].who.as_str(),
            trail[0].action.as_str(),
            trail[0].detail.as_str()
        ),
        (
            OP,
            "import_certificates",
            "certificates: 1 imported, 2 rejected"
        )
    );
    assert_eq!(trail[0].at_ms, at);
    assert_eq!(
        (trail[1].who.as_str(), trail[1].detail.as_str()),
        (
            "system",
            "certificates: 1 imported, 4 rejected (part 2 of 3)"
        )
    );
    assert!(trail[1].at_ms >= at);
    // And so are the records they imported.
    engine
        .put_office("maoming", office_config("茂名"), OP)
        .await
        .unwrap();
    engine
        .create_application(request("maoming", "alice", &vin("MT", 1), "v1"))
        .await
        .unwrap();
}

#[actix_rt::test]
async fn figures_per_office_and_vouchers_by_serial_and_code() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let engine = open_engine(engine_config(
        dir.path(),
        Durability::None,
        clock.clone(),
        9,
    ))
    .await;
    let mut rules = office_config("x").rules;
    rules.opening_window_ms = 0;
    rules.custom_min_interval_ms = 0;
    for id in ["maoming", "gaozhou"] {
        let mut config = office_config(id);
        config.rules = rules.clone();
        engine.put_office(id, config, OP).await.unwrap();
        engine
            .add_release(id, release(engine.now_ms()), OP)
            .await
            .unwrap();
    }
    let mut rows = Vec::new();
    for n in 1..=3 {
        rows.push(cert(&vin("FG", n), &format!("F{n}"), "small", "fuel"));
    }
    engine.import_certificates(rows, OP).await.unwrap();
    let open = |office: &'static str, user: &'static str, n: u32| {
        let engine = engine.clone();
        async move {
            let id = engine
                .create_application(request(office, user, &vin("FG", n), &format!("F{n}")))
                .await
                .unwrap();
            engine
                .verify_identity(&id, Caller::Citizen(user))
                .await
                .unwrap();
            id
        }
    };
    let a = open("maoming", "ann", 1).await;
    let b = open("gaozhou", "bob", 2).await;
    let c = open("gaozhou", "cat", 3).await;
    for _ in 0..3 {
        engine
            .draw(&a, Caller::Citizen("ann"), false)
            .await
            .unwrap();
    }
    engine
        .draw(&b, Caller::Citizen("bob"), false)
        .await
        .unwrap();
    // Someone else's application: the office refuses it, a refused draw of Gaozhou's.
    engine
        .draw(&b, Caller::Citizen("ann"), false)
        .await
        .unwrap_err();
    let Check::Claimed(claim) = engine
        .custom_check(&c, Caller::Citizen("cat"), vec!["A1235".into()])
        .await
        .unwrap()
    else {
        panic!("A1235 is available");
    };

    let m = engine.office_calls("maoming").unwrap();
    let g = engine.office_calls("gaozhou").unwrap();
    assert_eq!((m.draws.count(), m.checks.count()), (3, 0));
    assert_eq!(
        (g.draws.count(), g.draws.refused, g.checks.count()),
        (2, 1, 1)
    );
    assert!(m.draws.quantile_us(0.5).is_some());
    assert!(engine.office_calls("nowhere").is_err());

    // The voucher: its serial and code find the application; anything else finds nothing.
    let found = engine
        .voucher_application(&claim.voucher_serial, &claim.voucher_code)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.0, c);
    assert_eq!(
        found.1.record.claim.as_ref().unwrap().serial.to_string(),
        "A1235"
    );
    let lower = claim.voucher_serial.to_lowercase();
    assert!(engine
        .voucher_application(&lower, &claim.voucher_code)
        .await
        .unwrap()
        .is_some());
    let wrong = if claim.voucher_code == "00000000" {
        "00000001"
    } else {
        "00000000"
    };
    assert!(engine
        .voucher_application(&claim.voucher_serial, wrong)
        .await
        .unwrap()
        .is_none());
    assert!(engine
        .voucher_application(&claim.voucher_serial, "")
        .await
        .unwrap()
        .is_none());
    assert!(engine
        .voucher_application("A1235", &claim.voucher_code)
        .await
        .unwrap()
        .is_none());
    let unclaimed = claim
        .voucher_serial
        .replace(&format!("-{}", c.seq), &format!("-{}", b.seq));
    assert!(engine
        .voucher_application(&unclaimed, &claim.voucher_code)
        .await
        .unwrap()
        .is_none());

    // A practice voucher is void: never confirmed.
    let p = engine
        .create_practice("maoming", "pat", "small", Energy::Fuel)
        .await
        .unwrap();
    let Check::Claimed(practice) = engine
        .custom_check(&p, Caller::Citizen("pat"), vec!["A2346".into()])
        .await
        .unwrap()
    else {
        panic!("A2346 is available to practice");
    };
    assert!(engine
        .voucher_application(&practice.voucher_serial, &practice.voucher_code)
        .await
        .unwrap()
        .is_none());
}
