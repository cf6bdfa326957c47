//! The registry goes on answering while one of its writes waits for its sync, shows nothing of
//! the write before the sync has returned, and when the sync fails answers the write with 503
//! and still shows nothing of it. The failure is injected at [`crate::store::Store::sync`]
//! (`SyncGate`), where an import's audit entry is made durable.

use std::time::Duration;

use crate::registry::CertificateRow;
use crate::store::Durability;
use crate::vin::Vin;
use crate::{Engine, EngineConfig, Refusal};

const OP: &str = "operator:test";

fn row(n: u32) -> CertificateRow {
    CertificateRow {
        vin: vin(n),
        voucher: format!("HGZ{n:04}"),
        class: "small".into(),
        energy: "fuel".into(),
    }
}

fn vin(n: u32) -> String {
    Vin::with_check_digit(&format!("LSVAL{n:03}X12345678"))
        .expect("vin")
        .into_string()
}

#[actix_rt::test]
async fn the_registry_serves_while_an_import_syncs_and_shows_it_only_once_durable() {
    let dir = tempfile::tempdir().expect("dir");
    let mut config = EngineConfig::new(dir.path());
    config.durability = Durability::None;
    config.shed_queue_delay = None;
    let engine = Engine::open(config).await.expect("open");
    engine
        .import_certificates(vec![row(1)], OP)
        .await
        .expect("first import");
    let gate = std::sync::Arc::clone(&engine.store().sync_gate);
    gate.arm();
    let importer = engine.clone();
    let import =
        actix_rt::spawn(async move { importer.import_certificates(vec![row(2)], OP).await });
    // Off this thread: the registry runs on it.
    let (held_tx, held_rx) = tokio::sync::oneshot::channel();
    let waiter = std::sync::Arc::clone(&gate);
    std::thread::spawn(move || {
        waiter.wait_held();
        let _ = held_tx.send(());
    });
    tokio::time::timeout(Duration::from_secs(10), held_rx)
        .await
        .expect("the import's sync reaches the gate")
        .expect("gate");
    // The import waits for its sync; the registry answers others meanwhile.
    let first = tokio::time::timeout(Duration::from_secs(5), engine.certificate(&vin(1)))
        .await
        .expect("the registry answers while a write syncs")
        .expect("look-up");
    assert_eq!(first.map(|c| c.voucher), Some("HGZ0001".to_string()));
    assert_eq!(
        engine.certificate(&vin(2)).await.expect("look-up"),
        None,
        "shown before its sync returned"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!import.is_finished(), "answered before its sync returned");
    gate.release_failing();
    let answer = tokio::time::timeout(Duration::from_secs(10), import)
        .await
        .expect("answered after the sync")
        .expect("task");
    assert!(matches!(answer, Err(Refusal::Unavailable(_))), "{answer:?}");
    assert_eq!(
        engine.certificate(&vin(2)).await.expect("look-up"),
        None,
        "a failed import is not shown"
    );
    let refused = engine.import_certificates(vec![row(3)], OP).await;
    assert!(
        matches!(refused, Err(Refusal::Unavailable(_))),
        "{refused:?}"
    );
}
