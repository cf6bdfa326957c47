//! `platepool verify` of the gateway's own trees, in the engine's pass
//! (`platepool_engine::verify::verify_with`):
//!
//! - **idempotency**: every request's entry decodes (pending or done) under a key of the
//!   shape the gateway writes (user, method, path, key); once the tree is indexed, every key
//!   has its expiry index entry (`expiry.rs`), else the sweep would keep it for ever. An index
//!   entry whose key is gone is not a problem: a key whose answer is not kept (429, 5xx) leaves
//!   its entry for the sweep.
//! - **sms_outbox**: every message decodes and is stored under its own phone; once indexed,
//!   every message has its time-index entry (retention and listings read only that).
//! - **sms_codes**: every code decodes, is stored under its own phone and purpose, is hashed
//!   (SPEC S2: a salt and a SHA-256, never the code), counts at most [`CODE_TRIES_MAX`] wrong
//!   tries and expires after it was sent; delivery markers decode.
//! - **sms_queue**: every queued message decodes and is stored under its own purpose and
//!   reference.
//!
//! A tree the gateway never opened is simply not there. Problems are listed per tree.

use platepool_engine::store::{Kv, Store};
use platepool_engine::verify::{decode_record, for_each_record, VerifyReport};

use crate::expiry::{idempotency_index_prefix, outbox_index, OUTBOX_TIME_PREFIX};
use crate::idempotency::StoredEntry;
use crate::reindex::INDEXED_MARK;
use crate::sms::{outbox_key, OutboxMessage, StoredCode, CODE_TRIES_MAX};
use crate::sms_queue::QueuedMessage;

/// Checks the gateway's trees of `store` into `report`.
pub fn check_gateway_trees(store: &Store, report: &mut VerifyReport) {
    let names = store.kv_names();
    let tree = |name: &str, report: &mut VerifyReport| -> Option<Kv> {
        if !names.iter().any(|n| n == name) {
            return None;
        }
        match store.kv(name) {
            Ok(kv) => Some(kv),
            Err(e) => {
                report.problem(name, "decode", e.to_string());
                None
            }
        }
    };
    if let Some(kv) = tree("idempotency", report) {
        check_idempotency(&kv, report);
    }
    if let Some(kv) = tree("sms_outbox", report) {
        check_outbox(&kv, report);
    }
    if let Some(kv) = tree("sms_codes", report) {
        check_codes(&kv, report);
    }
    if let Some(kv) = tree("sms_queue", report) {
        check_queue(&kv, report);
    }
}

fn shown(key: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(key))
}

/// Whether the tree's records all have index entries (`reindex.rs`); if not, the next start
/// indexes them.
fn indexed(kv: &Kv, place: &str, report: &mut VerifyReport) -> bool {
    match kv.get::<bool>(INDEXED_MARK) {
        Ok(mark) => mark.is_some(),
        Err(e) => {
            report.problem(place, "decode", e.to_string());
            false
        }
    }
}

fn walk(
    kv: &Kv,
    place: &str,
    report: &mut VerifyReport,
    mut f: impl FnMut(&[u8], serde_json::Value, &mut VerifyReport),
) {
    let mut problems = VerifyReport::default();
    let walked = for_each_record(kv, b"", |key, value| f(key, value, &mut problems));
    report.problems.append(&mut problems.problems);
    if let Err(e) = walked {
        report.problem(place, "decode", e.to_string());
    }
}

fn check_idempotency(kv: &Kv, report: &mut VerifyReport) {
    let place = "idempotency";
    let index_prefix = idempotency_index_prefix();
    let mut index = std::collections::HashSet::new();
    let mut keys = Vec::new();
    walk(kv, place, report, |key, value, report| {
        if key.starts_with(&index_prefix) {
            match key.get(index_prefix.len() + 8..) {
                Some(request) => drop(index.insert(request.to_vec())),
                None => report.problem(
                    place,
                    "decode",
                    format!("index entry {} is cut short", shown(key)),
                ),
            }
        } else if key == INDEXED_MARK {
            decode_record::<bool>(report, place, key, value);
        } else if key.first().is_some_and(|b| *b >= b' ') {
            if key.iter().filter(|b| **b == b'\n').count() < 3 {
                return report.problem(
                    place,
                    "decode",
                    format!("key {} is not user, method, path and key", shown(key)),
                );
            }
            if decode_record::<StoredEntry>(report, place, key, value).is_some() {
                keys.push(key.to_vec());
            }
        } else {
            report.problem(place, "decode", format!("unknown record {}", shown(key)));
        }
    });
    if indexed(kv, place, report) {
        for key in keys.iter().filter(|k| !index.contains(*k)) {
            report.problem(
                place,
                "refs",
                format!(
                    "key {} has no expiry index entry: it would be kept for ever",
                    shown(key)
                ),
            );
        }
    }
}

fn check_outbox(kv: &Kv, report: &mut VerifyReport) {
    let place = "sms_outbox";
    let mut messages = Vec::new();
    let mut index = std::collections::HashSet::new();
    walk(kv, place, report, |key, value, report| {
        if let Some(rest) = key.strip_prefix(b"m/".as_slice()) {
            let Some(message) = decode_record::<OutboxMessage>(report, place, key, value) else {
                return;
            };
            let phone_part = rest.get(..rest.len().saturating_sub(9));
            if rest.len() < 9 || phone_part != Some(message.phone.as_bytes()) {
                report.problem(
                    place,
                    "refs",
                    format!(
                        "message {} is stored outside its phone {}",
                        shown(key),
                        message.phone
                    ),
                );
            }
            messages.push(key.to_vec());
        } else if key.starts_with(OUTBOX_TIME_PREFIX) {
            let Some(phone) = decode_record::<String>(report, place, key, value) else {
                return;
            };
            if key.len() != outbox_index(0, 0).len() {
                report.problem(
                    place,
                    "decode",
                    format!("index entry {} is malformed", shown(key)),
                );
                return;
            }
            index.insert(outbox_key(&phone, key));
        } else if key == INDEXED_MARK {
            decode_record::<bool>(report, place, key, value);
        } else {
            report.problem(place, "decode", format!("unknown record {}", shown(key)));
        }
    });
    if indexed(kv, place, report) {
        for key in messages.iter().filter(|k| !index.contains(*k)) {
            report.problem(
                place,
                "refs",
                format!(
                    "message {} has no time-index entry: it would be kept for ever",
                    shown(key)
                ),
            );
        }
    }
}

fn check_codes(kv: &Kv, report: &mut VerifyReport) {
    let place = "sms_codes";
    walk(kv, place, report, |key, value, report| {
        if let Some(rest) = key.strip_prefix(b"c/".as_slice()) {
            let purpose = rest.rsplit(|b| *b == b'/').next().unwrap_or_default();
            if !matches!(purpose, b"apply" | b"identity" | b"login") || rest.len() == purpose.len()
            {
                report.problem(
                    place,
                    "decode",
                    format!("code {} names no phone and purpose", shown(key)),
                );
            }
            let Some(code) = decode_record::<StoredCode>(report, place, key, value) else {
                return;
            };
            if let Err(what) = code.check(CODE_TRIES_MAX) {
                report.problem(place, "refs", format!("code {}: {what}", shown(key)));
            }
        } else if key.starts_with(b"d/") {
            decode_record::<u64>(report, place, key, value);
        } else {
            report.problem(place, "decode", format!("unknown record {}", shown(key)));
        }
    });
}

fn check_queue(kv: &Kv, report: &mut VerifyReport) {
    let place = "sms_queue";
    walk(kv, place, report, |key, value, report| {
        if !key.starts_with(b"q/") {
            return report.problem(place, "decode", format!("unknown record {}", shown(key)));
        }
        let Some(queued) = decode_record::<QueuedMessage>(report, place, key, value) else {
            return;
        };
        if key != queued.key().as_slice() {
            report.problem(
                place,
                "refs",
                format!(
                    "queued message {} is stored under another purpose or reference",
                    shown(key)
                ),
            );
        }
    });
}

#[cfg(test)]
mod tests {
    use actix_web::http::StatusCode;
    use platepool_engine::verify::verify_with;
    use platepool_engine::{Durability, PlateClass};
    use serde_json::{json, Value};

    use super::*;
    use crate::idempotency::Idempotency;
    use crate::sms::{Purpose, SmsService};

    const PHONE: &str = "13800000001";
    const KEY: &[u8] = b"u1\nPOST\n/v1/sms\nk1";

    /// A folder with what the gateway writes: a keyed answer, an SMS code and its outbox
    /// message, both trees indexed. The store stays open for the test to plant a fault.
    async fn written() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path(), Durability::None).expect("store");
        let idem = Idempotency::new(&store).expect("idempotency");
        let key = String::from_utf8(KEY.to_vec()).expect("key");
        idem.run(Some(key), 1_000, async {
            Ok((StatusCode::OK, json!({ "sent": true })))
        })
        .await
        .expect("ran");
        let sms = SmsService::with_outbox(&store).expect("sms");
        sms.send_code(PHONE, Purpose::Apply, None, 5_000, 1_000)
            .await
            .expect("sent");
        let outbox = store.kv("sms_outbox").expect("outbox");
        crate::reindex::index_unindexed(&idem.kv, Some(&outbox), 1_000).expect("indexed");
        (dir, store)
    }

    /// Verifies the folder once the store is closed.
    fn verified(dir: &tempfile::TempDir, store: Store) -> VerifyReport {
        store.sync().expect("sync");
        drop(store);
        verify_with(dir.path(), &PlateClass::builtin(), check_gateway_trees)
    }

    fn found(report: &VerifyReport) -> Vec<(&str, &str)> {
        report
            .problems
            .iter()
            .map(|p| (p.place.as_str(), p.check.as_str()))
            .collect()
    }

    fn put(store: &Store, tree: &str, key: &[u8], value: &Value) {
        store.kv(tree).expect("tree").put(key, value).expect("put");
    }

    fn stored_code(store: &Store) -> (Vec<u8>, Value) {
        let codes = store.kv("sms_codes").expect("codes");
        codes.scan::<Value>(b"c/").expect("scan").remove(0)
    }

    #[actix_rt::test]
    async fn the_trees_as_the_gateway_writes_them_are_sound() {
        let (dir, store) = written().await;
        let report = verified(&dir, store);
        assert!(report.is_sound(), "{:?}", report.problems);
    }

    #[actix_rt::test]
    async fn an_idempotency_key_without_its_expiry_entry_is_a_refs_problem() {
        let (dir, store) = written().await;
        let done = json!({ "Done": { "status": 200, "body": {} } });
        put(&store, "idempotency", b"u2\nPOST\n/v1/sms\nk2", &done);
        let report = verified(&dir, store);
        assert_eq!(
            found(&report),
            [("idempotency", "refs")],
            "{:?}",
            report.problems
        );
        assert!(report.problems[0].what.contains("kept for ever"));
    }

    #[actix_rt::test]
    async fn idempotency_records_that_do_not_decode_are_named() {
        let (dir, store) = written().await;
        put(&store, "idempotency", KEY, &json!("not an entry"));
        put(
            &store,
            "idempotency",
            b"no separators",
            &json!({ "Done": { "status": 200, "body": 1 } }),
        );
        let report = verified(&dir, store);
        assert_eq!(
            found(&report),
            [("idempotency", "decode"), ("idempotency", "decode")],
            "{:?}",
            report.problems
        );
    }

    #[actix_rt::test]
    async fn an_outbox_message_under_another_phone_or_unindexed_is_a_refs_problem() {
        let (dir, store) = written().await;
        let outbox = store.kv("sms_outbox").expect("outbox");
        let (key, message) = outbox.scan::<Value>(b"m/").expect("scan").remove(0);
        let mut elsewhere = b"m/13900000009/".to_vec();
        elsewhere.extend_from_slice(&key[key.len() - 8..]);
        put(&store, "sms_outbox", &elsewhere, &message);
        drop(outbox);
        let report = verified(&dir, store);
        assert_eq!(
            found(&report),
            [("sms_outbox", "refs"), ("sms_outbox", "refs")],
            "{:?}",
            report.problems
        );
        assert!(report
            .problems
            .iter()
            .any(|p| p.what.contains("outside its phone")));
        assert!(report
            .problems
            .iter()
            .any(|p| p.what.contains("no time-index entry")));
    }

    #[actix_rt::test]
    async fn a_code_kept_in_clear_or_over_its_tries_is_a_refs_problem() {
        let (dir, store) = written().await;
        let (key, mut code) = stored_code(&store);
        code["hash"] = json!("123456");
        put(&store, "sms_codes", &key, &code);
        let mut tried = stored_code(&store).1;
        tried["hash"] = json!("ab".repeat(32));
        tried["tries"] = json!(CODE_TRIES_MAX + 1);
        put(&store, "sms_codes", b"c/13800000002/identity", &tried);
        let report = verified(&dir, store);
        assert_eq!(
            found(&report),
            [("sms_codes", "refs"), ("sms_codes", "refs")],
            "{:?}",
            report.problems
        );
        assert!(report.problems[0]
            .what
            .contains("not stored as a salted SHA-256"));
        assert!(report.problems[1].what.contains("wrong tries"));
    }

    #[actix_rt::test]
    async fn sms_records_that_do_not_decode_are_named() {
        let (dir, store) = written().await;
        let (_, code) = stored_code(&store);
        put(&store, "sms_codes", b"c/13800000003/unknown", &code);
        put(&store, "sms_codes", b"d/claimed/maoming-1", &json!("when"));
        put(&store, "sms_outbox", b"x", &json!(1));
        let report = verified(&dir, store);
        assert_eq!(
            found(&report),
            [
                ("sms_outbox", "decode"),
                ("sms_codes", "decode"),
                ("sms_codes", "decode")
            ],
            "{:?}",
            report.problems
        );
    }

    #[actix_rt::test]
    async fn a_queued_message_under_another_reference_is_a_refs_problem() {
        let (dir, store) = written().await;
        let queued = json!({
            "reference": "maoming-1",
            "message": { "phone": PHONE, "purpose": "claimed", "text": "粤KA0001", "sent_at": "" },
            "attempts": 0,
            "next_attempt_ms": 0
        });
        put(&store, "sms_queue", b"q/claimed/maoming-1", &queued);
        put(&store, "sms_queue", b"q/claimed/maoming-2", &queued);
        let report = verified(&dir, store);
        assert_eq!(
            found(&report),
            [("sms_queue", "refs")],
            "{:?}",
            report.problems
        );
        assert!(report.problems[0].what.contains("maoming-2"));
    }
}
