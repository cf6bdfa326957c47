//! A backup taken while claims are being made (SPEC D1): it holds every claim acknowledged
//! before it began, none sent after it ended, and no torn state (the copy verifies sound —
//! I1, I3, I9 — and a node opened on it shows each application's claim and its number agreeing).
#![allow(clippy::unwrap_used)]

mod common_engine;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common_engine::*;
use platepool_engine::{AppId, AppState, Caller, Durability, PlateClass};

const OP: &str = "operator:1";
const WORKERS: u32 = 6;
const APPS_PER_WORKER: u32 = 10;

/// One claim as its caller saw it.
#[derive(Debug, Clone)]
struct Sent {
    app: AppId,
    serial: String,
    sent: Instant,
    acknowledged: Option<Instant>,
}

struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn a_backup_under_concurrent_claims_holds_exactly_those_acknowledged_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let copy = dir.path().join("copy");
    let clock = TestClock::starting_at(monday_10am());
    let config = engine_config(&data, Durability::Fsync, clock.clone(), 7);
    let (sent, began, ended, report) = {
        let copy = copy.clone();
        in_own_system(move || claims_with_a_backup(config, copy))
    };
    println!(
        "backup: {} records, writes paused {} µs, {} ms in all; {} claims sent",
        report.records,
        report.pause_us,
        report.total_ms,
        sent.len()
    );
    let before = sent
        .iter()
        .filter(|s| s.acknowledged.is_some_and(|a| a < began))
        .count();
    let after = sent.iter().filter(|s| s.sent > ended).count();
    assert!(
        before > 0 && after > 0,
        "claims before ({before}) and after ({after}) the backup"
    );

    let verified = platepool_engine::verify::verify(&copy, &PlateClass::builtin());
    assert!(verified.is_sound(), "{:?}", verified.problems);

    let config = engine_config(&copy, Durability::Fsync, clock, 8);
    let states = in_own_system(move || async move {
        let engine = open_engine(config).await;
        let mut states = Vec::new();
        for s in &sent {
            let view = engine.application(&s.app, Caller::Operator).await.unwrap();
            let claim = view.record.claim.map(|c| c.serial.to_string());
            let owner = engine
                .serial_application(&s.app.office, &s.serial)
                .await
                .unwrap()
                .map(|(id, _)| id.seq);
            states.push((s.clone(), view.record.state, claim, owner));
        }
        engine.shutdown().await.unwrap();
        states
    });
    for (s, state, claim, owner) in states {
        let in_copy = state == AppState::Claimed;
        if s.acknowledged.is_some_and(|a| a < began) {
            assert!(in_copy, "{s:?} was acknowledged before the backup");
        }
        if s.sent > ended {
            assert!(!in_copy, "{s:?} was sent after the backup");
        }
        // No torn state: the application's claim and its number agree.
        if in_copy {
            assert_eq!(claim.as_deref(), Some(s.serial.as_str()), "{s:?}");
            assert_eq!(owner, Some(s.app.seq), "{s:?}: its number's owner");
        } else {
            assert_eq!(claim, None, "{s:?}");
            assert_eq!(owner, None, "{s:?}: a number no one holds");
        }
    }
}

async fn claims_with_a_backup(
    config: platepool_engine::EngineConfig,
    copy: PathBuf,
) -> (
    Vec<Sent>,
    Instant,
    Instant,
    platepool_engine::backup::BackupReport,
) {
    let engine = open_engine(config).await;
    engine
        .put_office("maoming", office_config("茂名"), OP)
        .await
        .unwrap();
    let release = release("small", &["A0###"], engine.now_ms());
    engine.add_release("maoming", release, OP).await.unwrap();
    let total = WORKERS * APPS_PER_WORKER;
    let rows = (1..=total)
        .map(|n| cert(&vin("BK", n), &format!("V{n}"), "small", "fuel"))
        .collect();
    engine.import_certificates(rows, OP).await.unwrap();
    let mut apps = Vec::new();
    for n in 1..=total {
        let user = format!("user{n}");
        let id = engine
            .create_application(request("maoming", &user, &vin("BK", n), &format!("V{n}")))
            .await
            .unwrap();
        engine
            .verify_identity(&id, Caller::Citizen(&user))
            .await
            .unwrap();
        apps.push((id, user));
    }
    let sent = Arc::new(Mutex::new(Vec::<Sent>::new()));
    let backup_done = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for chunk in apps.chunks(APPS_PER_WORKER as usize) {
        let (engine, chunk, sent) = (engine.clone(), chunk.to_vec(), sent.clone());
        let backup_done = backup_done.clone();
        workers.push(actix_rt::spawn(async move {
            let last = chunk.len() - 1;
            for (i, (id, user)) in chunk.into_iter().enumerate() {
                // Each worker's last claim is sent once the backup is over.
                while i == last && !backup_done.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let caller = Caller::Citizen(&user);
                let draw = engine.draw(&id, caller, false).await.unwrap();
                let serial = draw.batch.serials[0].to_string();
                engine.pick_candidate(&id, caller, &serial).await.unwrap();
                let at = {
                    let mut sent = sent.lock().unwrap();
                    sent.push(Sent {
                        app: id.clone(),
                        serial: serial.clone(),
                        sent: Instant::now(),
                        acknowledged: None,
                    });
                    sent.len() - 1
                };
                engine.claim(&id, caller, &serial).await.unwrap();
                sent.lock().unwrap()[at].acknowledged = Some(Instant::now());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    // The backup starts once a third of the claims are in, on a thread of its own.
    let acknowledged = |sent: &Mutex<Vec<Sent>>| {
        sent.lock()
            .unwrap()
            .iter()
            .filter(|s| s.acknowledged.is_some())
            .count() as u32
    };
    assert!(eventually(Duration::from_secs(60), || acknowledged(&sent) >= total / 3).await);
    let store = engine.store().clone();
    let done = backup_done.clone();
    let backup = std::thread::spawn(move || {
        // Set even if the backup panics, so no worker waits for ever (the join reports it).
        let _done = SetOnDrop(done);
        let began = Instant::now();
        let report = platepool_engine::backup::backup(&store, &copy).unwrap();
        (began, Instant::now(), report)
    });
    for w in workers {
        w.await.unwrap();
    }
    let (began, ended, report) = backup.join().unwrap();
    engine.shutdown().await.unwrap();
    let sent = sent.lock().unwrap().clone();
    (sent, began, ended, report)
}
