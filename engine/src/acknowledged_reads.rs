//! Nothing undurable is shown: while an office's group commit is in flight, reads and refusals
//! that would show its changes wait for it, and when it fails they are refused (503) like the
//! write itself; the office then answers nothing until it is restarted from what is durable.
//! The flush failure is injected at [`crate::store::Store::sync`] ([`crate::store::SyncGate`]).

use std::time::Duration;

use crate::config::{Notice, OfficeConfig, OfficeRules};
use crate::pattern::Pattern;
use crate::record::{AppState, ReleaseSource};
use crate::registry::{ApplicationRequest, CertificateRow};
use crate::store::Durability;
use crate::vin::Vin;
use crate::{AppId, Caller, Engine, EngineConfig, NewRelease, Refusal};

const OP: &str = "operator:test";
/// Long enough that an answer given from memory would have come; the gate holds the group for
/// as long as the test wants, so a correct office cannot answer within it.
const PATIENCE: Duration = Duration::from_millis(300);

fn office_config() -> OfficeConfig {
    OfficeConfig {
        name: "茂名".into(),
        prefix: "粤K".into(),
        classes: vec!["small".into()],
        rules: OfficeRules::default(),
        notice: Notice {
            version: "v1".into(),
            text: "业务须知".into(),
        },
    }
}

/// An engine with one office, an open release and an application holding a candidate; returns
/// the application and the candidate's serial.
async fn with_candidate(dir: &std::path::Path) -> (Engine, AppId, String) {
    let mut config = EngineConfig::new(dir);
    config.durability = Durability::None;
    config.seed = Some(5);
    config.shed_queue_delay = None;
    let engine = Engine::open(config).await.expect("open");
    engine
        .put_office("maoming", office_config(), OP)
        .await
        .expect("office");
    let now = engine.now_ms();
    let release = NewRelease {
        class: "small".into(),
        label: String::new(),
        opens_at_ms: now - 3_600_000,
        custom_from_ms: None,
        source: ReleaseSource::Patterns(vec![Pattern::parse("A00##").expect("pattern")]),
    };
    engine
        .add_release("maoming", release, OP)
        .await
        .expect("release");
    let vin = Vin::with_check_digit("LSVAL001X12345678")
        .expect("vin")
        .into_string();
    let row = CertificateRow {
        vin: vin.clone(),
        voucher: "HGZ0001".into(),
        class: "small".into(),
        energy: "fuel".into(),
    };
    engine
        .import_certificates(vec![row], OP)
        .await
        .expect("import");
    let id = engine
        .create_application(ApplicationRequest {
            office: "maoming".into(),
            user: "alice".into(),
            phone: "13800000001".into(),
            vin,
            voucher: "HGZ0001".into(),
            notice_version: "v1".into(),
        })
        .await
        .expect("application");
    let alice = Caller::Citizen("alice");
    engine.verify_identity(&id, alice).await.expect("verify");
    let draw = engine.draw(&id, alice, false).await.expect("draw");
    let serial = draw.batch.serials[0].to_string();
    engine
        .pick_candidate(&id, alice, &serial)
        .await
        .expect("pick");
    (engine, id, serial)
}

/// Whether `fut` answers within [`PATIENCE`].
async fn answers_soon<T>(fut: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::time::timeout(PATIENCE, fut).await.ok()
}

#[actix_rt::test]
async fn a_claim_whose_group_commit_fails_is_never_shown() {
    let dir = tempfile::tempdir().expect("dir");
    let (engine, id, serial) = with_candidate(dir.path()).await;
    let gate = std::sync::Arc::clone(&engine.store().sync_gate);
    gate.arm();
    let alice = Caller::Citizen("alice");
    let claim = {
        let (engine, id, serial) = (engine.clone(), id.clone(), serial.clone());
        actix_rt::spawn(async move { engine.claim(&id, Caller::Citizen("alice"), &serial).await })
    };
    // The claim's group is at the disk, held there.
    let waiter = std::sync::Arc::clone(&gate);
    tokio::task::spawn_blocking(move || waiter.wait_held())
        .await
        .expect("held");

    // While it is in flight, nothing shows the claim: the view, the serial's owner, the pool's
    // counts, the keyboard and a second claim of the same number all wait for the group.
    let view = actix_rt::spawn({
        let (engine, id) = (engine.clone(), id.clone());
        async move { engine.application(&id, Caller::Citizen("alice")).await }
    });
    let owner = actix_rt::spawn({
        let (engine, serial) = (engine.clone(), serial.clone());
        async move { engine.serial_application("maoming", &serial).await }
    });
    let stats = actix_rt::spawn({
        let engine = engine.clone();
        async move { engine.stats("maoming").await }
    });
    let keyboard = actix_rt::spawn({
        let (engine, id) = (engine.clone(), id.clone());
        async move {
            engine
                .keyboard(&id, Caller::Citizen("alice"), vec![None; 5])
                .await
        }
    });
    let again = actix_rt::spawn({
        let (engine, id, serial) = (engine.clone(), id.clone(), serial.clone());
        async move { engine.claim(&id, Caller::Citizen("alice"), &serial).await }
    });
    tokio::time::sleep(PATIENCE).await;
    for (what, done) in [
        ("view", view.is_finished()),
        ("serial owner", owner.is_finished()),
        ("pool counts", stats.is_finished()),
        ("keyboard", keyboard.is_finished()),
        ("second claim", again.is_finished()),
    ] {
        assert!(
            !done,
            "the {what} was answered while the claim's group commit was in flight"
        );
    }

    // The group fails: the claim is refused, and so is everything that waited on it.
    gate.release_failing();
    let refused = |r: &Result<(), Refusal>| matches!(r, Err(Refusal::Unavailable(_)));
    let claim = claim.await.expect("claim task").map(|_| ());
    assert!(refused(&claim), "the claim: {claim:?}");
    let view = view.await.expect("task").map(|_| ());
    assert!(refused(&view), "the view: {view:?}");
    let owner = owner.await.expect("task").map(|_| ());
    assert!(refused(&owner), "the owner: {owner:?}");
    let stats = stats.await.expect("task").map(|_| ());
    assert!(refused(&stats), "the counts: {stats:?}");
    let keyboard = keyboard.await.expect("task").map(|_| ());
    assert!(refused(&keyboard), "the keyboard: {keyboard:?}");
    let again = again.await.expect("task").map(|_| ());
    assert!(refused(&again), "the second claim: {again:?}");

    // Later reads are refused at once: memory holds a claim the disk may not (fail-stop).
    let later = answers_soon(engine.application(&id, alice))
        .await
        .expect("a refusal comes at once");
    assert!(matches!(later, Err(Refusal::Unavailable(_))), "{later:?}");
    let voucher = answers_soon(engine.voucher_application("MAOMING-20260101-1", "000000"))
        .await
        .expect("at once");
    assert!(
        matches!(voucher, Err(Refusal::Unavailable(_))),
        "{voucher:?}"
    );
}

/// Actions of an office's audit trail.
fn audit_actions(engine: &Engine) -> Vec<String> {
    engine
        .audit("maoming", 0, 1_000)
        .expect("audit")
        .into_iter()
        .map(|(_, e)| e.action)
        .collect()
}

#[actix_rt::test]
async fn the_audit_trail_shows_no_entry_of_a_group_not_yet_durable() {
    let dir = tempfile::tempdir().expect("dir");
    let (engine, id, serial) = with_candidate(dir.path()).await;
    let before = audit_actions(&engine);
    assert!(before.iter().any(|a| a == "pick_candidate"), "{before:?}");
    let gate = std::sync::Arc::clone(&engine.store().sync_gate);
    gate.arm();
    let claim = {
        let (engine, id, serial) = (engine.clone(), id.clone(), serial.clone());
        actix_rt::spawn(async move { engine.claim(&id, Caller::Citizen("alice"), &serial).await })
    };
    // The claim's group is applied to the database and held at its sync: its audit entry is
    // in sled's memory, not on the device.
    let waiter = std::sync::Arc::clone(&gate);
    tokio::task::spawn_blocking(move || waiter.wait_held())
        .await
        .expect("held");
    let during = audit_actions(&engine);
    assert_eq!(
        during, before,
        "the audit trail showed an entry of a group commit in flight"
    );
    // The sync fails: the entry never becomes an acknowledged one.
    gate.release_failing();
    let claim = claim.await.expect("claim task");
    assert!(
        matches!(claim, Err(Refusal::Unavailable(_))),
        "the claim: {claim:?}"
    );
    assert_eq!(audit_actions(&engine), before);
}

#[actix_rt::test]
async fn reads_of_durable_state_do_not_wait() {
    let dir = tempfile::tempdir().expect("dir");
    let (engine, id, serial) = with_candidate(dir.path()).await;
    let alice = Caller::Citizen("alice");
    // Nothing in flight: a read is answered from memory at once, and shows the candidate.
    let view = answers_soon(engine.application(&id, alice))
        .await
        .expect("at once")
        .expect("view");
    assert_eq!(view.record.state, AppState::Selecting);
    let held = view.candidates.expect("candidate").serials;
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].to_string(), serial);
    // A claim made durable is shown once acknowledged.
    engine.claim(&id, alice, &serial).await.expect("claim");
    let view = engine.application(&id, alice).await.expect("view");
    assert_eq!(view.record.state, AppState::Claimed);
    // And so is its audit entry.
    let actions = audit_actions(&engine);
    assert_eq!(
        actions.last().map(String::as_str),
        Some("claim"),
        "{actions:?}"
    );
}
