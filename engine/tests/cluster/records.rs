//! Group commits of an office as the actor makes them: its configuration, releases,
//! applications created, drawing (selection fields only), claiming and giving back numbers, and
//! the audit entries that go with them.

use platepool_engine::record::{AppProgress, NumberState, Record};
use platepool_engine::store::OfficeSnapshot;
use platepool_engine::{
    AppRecord, AppState, AuditEntry, Claim, Energy, Notice, OfficeConfig, OfficeRules,
    ReleaseRecord, ReleaseSource, Serial,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub fn config(name: &str) -> OfficeConfig {
    OfficeConfig {
        name: name.to_string(),
        prefix: "粤K".into(),
        classes: vec!["small".into(), "large".into()],
        rules: OfficeRules::default(),
        notice: Notice {
            version: "v1".into(),
            text: "业务须知".into(),
        },
    }
}

pub fn app(seq: u64) -> AppRecord {
    AppRecord {
        seq,
        user: format!("user-{seq}"),
        phone: "13800000000".into(),
        vin: format!("LSVAU2180N2{seq:06}"),
        class: if seq % 3 == 0 { "large" } else { "small" }.into(),
        energy: Energy::Fuel,
        notice_version: "v1".into(),
        created_at_ms: 1_700_000_000_000 + seq,
        custom_left: 5,
        random_left: 3,
        last_check_at_ms: None,
        last_draw_at_ms: None,
        verified_at_ms: None,
        verified_until_ms: None,
        state: AppState::Confirmed,
        claim: None,
        closed_at_ms: None,
    }
}

pub fn audit(at_ms: u64, action: &str, application: Option<u64>, serial: Option<Serial>) -> Record {
    Record::Audit(Box::new(AuditEntry {
        at_ms,
        who: "user:test".into(),
        action: action.into(),
        application,
        serial: serial.map(|s| s.to_string()),
        detail: String::new(),
    }))
}

fn serial(rng: &mut StdRng) -> Serial {
    let text = format!("A{:04}", rng.random_range(0..10_000u32));
    Serial::parse(&text).expect("a valid serial")
}

/// `groups` group commits of an office, from a seeded generator.
pub fn office_history(seed: u64, groups: usize) -> Vec<Vec<Record>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut apps: Vec<AppRecord> = Vec::new();
    let mut out = vec![vec![
        Record::Config(Box::new(config("Test office"))),
        Record::Release(Box::new(ReleaseRecord {
            id: 1,
            class: "small".into(),
            label: "opening".into(),
            opens_at_ms: 1_700_000_000_000,
            custom_from_ms: 1_700_000_000_000,
            source: ReleaseSource::Serials(vec![Serial::parse("A0001").expect("serial")]),
            created_at_ms: 1_699_000_000_000,
            withdrawn: false,
        })),
    ]];
    for g in 0..groups {
        let at = 1_700_000_100_000 + g as u64 * 1000;
        let mut group = Vec::new();
        for _ in 0..rng.random_range(1..40) {
            match rng.random_range(0..10) {
                0..=2 => {
                    let a = app(apps.len() as u64 + 1);
                    group.push(Record::App(Box::new(a.clone())));
                    group.push(audit(at, "apply", Some(a.seq), None));
                    apps.push(a);
                }
                3..=6 if !apps.is_empty() => {
                    let i = rng.random_range(0..apps.len());
                    let a = &mut apps[i];
                    a.random_left = a.random_left.saturating_sub(1);
                    a.last_draw_at_ms = Some(at);
                    a.state = AppState::Selecting;
                    let progress: AppProgress = a.progress();
                    group.push(Record::Progress {
                        seq: a.seq,
                        progress,
                    });
                    group.push(audit(at, "draw", Some(a.seq), None));
                }
                7 | 8 if !apps.is_empty() => {
                    let i = rng.random_range(0..apps.len());
                    let s = serial(&mut rng);
                    let a = &mut apps[i];
                    a.state = AppState::Claimed;
                    a.claim = Some(Claim {
                        serial: s,
                        claimed_at_ms: at,
                        register_by_ms: at + 86_400_000,
                        voucher_serial: format!("V{}", a.seq),
                        voucher_code: "123456".into(),
                        void: false,
                    });
                    group.push(Record::App(Box::new(a.clone())));
                    group.push(Record::Number {
                        class: a.class.clone(),
                        serial: s,
                        state: Some(NumberState::Claimed { app: a.seq }),
                    });
                    group.push(audit(at, "claim", Some(a.seq), Some(s)));
                }
                _ => {
                    // A number back to what its release says (or never changed).
                    group.push(Record::Number {
                        class: "small".into(),
                        serial: serial(&mut rng),
                        state: None,
                    });
                }
            }
        }
        out.push(group);
    }
    out
}

/// Asserts two snapshots hold the same office (OfficeSnapshot has no `PartialEq`).
pub fn assert_same(found: &OfficeSnapshot, expected: &OfficeSnapshot) {
    assert_eq!(found.config, expected.config, "configuration");
    assert_eq!(found.releases, expected.releases, "releases");
    assert_eq!(
        found.apps.len(),
        expected.apps.len(),
        "number of applications"
    );
    for (f, e) in found.apps.iter().zip(&expected.apps) {
        assert_eq!(f, e, "application {}", e.seq);
    }
    assert_eq!(found.numbers, expected.numbers, "numbers");
}
