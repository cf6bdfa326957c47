//! The registry's writes through the `Engine` handle: imports made at the same time are all
//! durable across a restart with their audit entries; an import whose audit entry a crash kept
//! out of the trail gets it at the next start; certificates that older versions kept in the
//! database move into the certificate log and stay found.
#![allow(clippy::unwrap_used)]

mod common_engine;

use common_engine::*;
use platepool_engine::registry::Certificate;
use platepool_engine::store::Store;
use platepool_engine::{Durability, Energy, ImportPart};

const OP: &str = "operator:ops1";
const IMPORTS: u32 = 8;
const ROWS: u32 = 50;

fn imported_vin(import: u32, row: u32) -> String {
    vin(&format!("{import:02}"), row)
}

#[actix_rt::test]
async fn concurrent_imports_are_all_durable_with_their_audit_entries() {
    let dir = tempfile::tempdir().unwrap();
    let config = engine_config(dir.path(), Durability::Fsync, TestClock::new(), 5);
    {
        let config = config.clone();
        in_own_system(move || async move {
            let engine = open_engine(config).await;
            let imports: Vec<_> = (0..IMPORTS)
                .map(|i| {
                    let engine = engine.clone();
                    let rows = (0..ROWS)
                        .map(|r| cert(&imported_vin(i, r), &format!("V{i}-{r}"), "small", "bev"))
                        .collect();
                    let part = ImportPart {
                        index: i as usize + 1,
                        of: IMPORTS as usize,
                        rejected_before: 0,
                    };
                    actix_rt::spawn(
                        async move { engine.import_certificates_part(rows, OP, part).await },
                    )
                })
                .collect();
            for import in imports {
                assert_eq!(import.await.unwrap().unwrap().imported, ROWS as usize);
            }
        });
    }
    in_own_system(move || async move {
        let engine = open_engine(config).await;
        for i in 0..IMPORTS {
            for r in [0, ROWS - 1] {
                let found = engine.certificate(&imported_vin(i, r)).await.unwrap();
                let found = found.unwrap_or_else(|| panic!("import {i} row {r} lost"));
                assert_eq!(found.voucher, format!("V{i}-{r}"));
                assert_eq!(found.energy, Energy::Bev);
            }
        }
        let trail = engine.registry_audit().await.unwrap();
        let mut parts: Vec<_> = trail
            .iter()
            .filter(|e| e.action == "import_certificates")
            .map(|e| e.detail.clone())
            .collect();
        parts.sort();
        let mut expected: Vec<_> = (1..=IMPORTS)
            .map(|i| format!("certificates: {ROWS} imported, 0 rejected (part {i} of {IMPORTS})"))
            .collect();
        expected.sort();
        assert_eq!(parts, expected, "one audit entry per import");
    });
}

#[actix_rt::test]
async fn an_import_whose_audit_entry_was_lost_gets_it_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = engine_config(dir.path(), Durability::Flush, TestClock::new(), 5);
    {
        let config = config.clone();
        in_own_system(move || async move {
            let engine = open_engine(config).await;
            let rows = vec![cert(&vin("AU", 1), "V1", "small", "fuel")];
            engine.import_certificates(rows, OP).await.unwrap();
        });
    }
    // A crash after the log's sync and before the registry's tree had the entry: both gone.
    {
        let store = open_store(dir.path());
        let kv = store.kv("registry").unwrap();
        let mut mark = b"certlog/import/".to_vec();
        mark.extend_from_slice(&1u64.to_be_bytes());
        assert!(
            kv.get::<u64>(&mark).unwrap().is_some(),
            "the import's marker"
        );
        kv.remove(&mark).unwrap();
        let entries: Vec<(Vec<u8>, serde_json::Value)> = kv.scan(b"log/").unwrap();
        assert_eq!(entries.len(), 1);
        kv.remove(&entries[0].0).unwrap();
    }
    in_own_system(move || async move {
        let engine = open_engine(config).await;
        let trail = engine.registry_audit().await.unwrap();
        let imports: Vec<_> = trail
            .iter()
            .filter(|e| e.action == "import_certificates")
            .collect();
        assert_eq!(imports.len(), 1, "{trail:?}");
        assert_eq!(imports[0].who, OP);
        assert_eq!(imports[0].detail, "certificates: 1 imported, 0 rejected");
        assert!(engine.certificate(&vin("AU", 1)).await.unwrap().is_some());
    });
}

#[actix_rt::test]
async fn certificates_kept_in_the_database_move_into_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let old: Vec<Certificate> = (0..3)
        .map(|n| Certificate {
            vin: vin("AL", n),
            voucher: format!("OLD{n}"),
            class: "small".into(),
            energy: Energy::Fuel,
        })
        .collect();
    {
        let store = open_store(dir.path());
        let kv = store.kv("registry").unwrap();
        for c in &old {
            kv.put(format!("cert/{}", c.vin).as_bytes(), c).unwrap();
        }
    }
    let config = engine_config(dir.path(), Durability::Flush, TestClock::new(), 5);
    for _ in 0..2 {
        let config = config.clone();
        let old = old.clone();
        in_own_system(move || async move {
            let engine = open_engine(config).await;
            for c in &old {
                assert_eq!(engine.certificate(&c.vin).await.unwrap().as_ref(), Some(c));
            }
        });
    }
    let store = open_store(dir.path());
    let kv = store.kv("registry").unwrap();
    let left: Vec<(Vec<u8>, Certificate)> = kv.scan(b"cert/").unwrap();
    assert!(left.is_empty(), "moved out of the database: {left:?}");
}

/// The store alone, once the engine that had it open has let go of it.
fn open_store(dir: &std::path::Path) -> Store {
    for _ in 0..200 {
        match Store::open(dir, Durability::Flush) {
            Ok(store) => return store,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
    Store::open(dir, Durability::Flush).unwrap()
}
