//! A one-time migration at start-up: idempotency keys and outbox messages written before their
//! expiry indexes existed (`expiry.rs`) have no index entry, so the sweep, which reads only the
//! indexes, would keep them for ever. [`index_unindexed`] gives each one its entry — an
//! idempotency key at the time its marker records (`since_ms` of a request still pending),
//! else at the migration's time, so it lives one more lifetime; an outbox message at its
//! `sent_at` — then records that the tree is indexed, so later starts skip the walk.
//!
//! The walk reads pages of [`SWEEP_PAGE`] keys; the entries it adds are committed per page.

use std::collections::HashSet;

use platepool_engine::store::{Kv, StoreError};
use serde_json::Value;

use crate::expiry::{idempotency_index, outbox_index, OUTBOX_TIME_PREFIX, SWEEP_PAGE};

/// Marks a tree whose entries all have index entries (outside every other key's prefix).
pub(crate) const INDEXED_MARK: &[u8] = b"\x02indexed";
/// Request keys begin with a user id (printable ASCII); the idempotency tree's own keys (index
/// entries, the mark) begin below it.
const REQUEST_KEYS_FROM: u8 = b' ';
const MESSAGE_PREFIX: &[u8] = b"m/";

/// What the migration added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reindexed {
    pub idempotency_keys: usize,
    pub outbox_messages: usize,
}

/// Indexes what has no index entry yet, once per tree (see the module's notes).
pub fn index_unindexed(
    idempotency: &Kv,
    outbox: Option<&Kv>,
    now_ms: u64,
) -> Result<Reindexed, StoreError> {
    let mut done = Reindexed::default();
    if idempotency.get::<bool>(INDEXED_MARK)?.is_none() {
        done.idempotency_keys = index_idempotency(idempotency, now_ms)?;
        idempotency.put(INDEXED_MARK, &true)?;
    }
    if let Some(outbox) = outbox {
        if outbox.get::<bool>(INDEXED_MARK)?.is_none() {
            done.outbox_messages = index_outbox(outbox, now_ms)?;
            outbox.put(INDEXED_MARK, &true)?;
        }
    }
    Ok(done)
}

/// Every key under `prefix`, page by page.
fn for_each_page(
    kv: &Kv,
    prefix: &[u8],
    mut page_fn: impl FnMut(&[(Vec<u8>, Value)]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut start = prefix.to_vec();
    loop {
        let page = kv.scan_from::<Value>(prefix, &start, SWEEP_PAGE)?;
        page_fn(&page)?;
        match page.last() {
            Some((last, _)) if page.len() == SWEEP_PAGE => {
                start = last.clone();
                start.push(0);
            }
            _ => return Ok(()),
        }
    }
}

fn index_idempotency(kv: &Kv, now_ms: u64) -> Result<usize, StoreError> {
    // The keys that have an entry: the index key is prefix + 8-byte time + the key.
    let index_prefix = idempotency_index(0, b"");
    let index_prefix = &index_prefix[..index_prefix.len() - 8];
    let mut indexed = HashSet::new();
    for_each_page(kv, index_prefix, |page| {
        for (k, _) in page {
            if let Some(key) = k.get(index_prefix.len() + 8..) {
                indexed.insert(key.to_vec());
            }
        }
        Ok(())
    })?;
    let mut added = 0;
    for_each_page(kv, b"", |page| {
        let changes: Vec<(Vec<u8>, Option<Vec<u8>>)> = page
            .iter()
            .filter(|(k, _)| k.first().is_some_and(|&b| b >= REQUEST_KEYS_FROM))
            .filter(|(k, _)| !indexed.contains(k))
            .map(|(k, v)| {
                let at = v
                    .pointer("/Pending/since_ms")
                    .and_then(Value::as_u64)
                    .unwrap_or(now_ms);
                (idempotency_index(at, k), Some(Kv::encode(&())))
            })
            .collect();
        added += changes.len();
        if changes.is_empty() {
            Ok(())
        } else {
            kv.commit_raw(changes)
        }
    })?;
    Ok(added)
}

fn index_outbox(kv: &Kv, now_ms: u64) -> Result<usize, StoreError> {
    // Messages are `m/<phone>/<id>`; index entries end with the same 8-byte id.
    let mut indexed = HashSet::new();
    for_each_page(kv, OUTBOX_TIME_PREFIX, |page| {
        for (k, _) in page {
            indexed.insert(k[k.len().saturating_sub(8)..].to_vec());
        }
        Ok(())
    })?;
    let mut added = 0;
    for_each_page(kv, MESSAGE_PREFIX, |page| {
        let mut changes = Vec::new();
        for (k, message) in page {
            let Some(id) = k.len().checked_sub(8).map(|at| &k[at..]) else {
                continue;
            };
            let (Some(phone), Ok(id)) = (
                message.get("phone").and_then(Value::as_str),
                <[u8; 8]>::try_from(id),
            ) else {
                continue;
            };
            if indexed.contains(id.as_slice()) {
                continue;
            }
            let at = message
                .get("sent_at")
                .and_then(Value::as_str)
                .and_then(|t| platepool_engine::calendar::parse_rfc3339(t).ok())
                .unwrap_or(now_ms);
            let index = outbox_index(at, u64::from_be_bytes(id));
            changes.push((index, Some(Kv::encode(&phone))));
        }
        added += changes.len();
        if changes.is_empty() {
            Ok(())
        } else {
            kv.commit_raw(changes)
        }
    })?;
    Ok(added)
}

#[cfg(test)]
mod tests {
    use platepool_engine::store::Store;
    use platepool_engine::Durability;

    use super::*;
    use crate::expiry::{sweep_idempotency, sweep_outbox};
    use crate::sms::OutboxSender;

    #[test]
    fn state_written_before_the_indexes_is_indexed_once_and_then_expires() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path(), Durability::None).expect("store");
        let idem = store.kv("idempotency").expect("kv");
        let outbox_kv = store.kv("sms_outbox").expect("kv");
        // As the gateway wrote them before the indexes: a finished and a pending key, a
        // message under `m/<phone>/<id>` with no time entry.
        idem.put(
            b"u1\nPOST\n/v1/sms\nold",
            &serde_json::json!({"Done": {"status": 200, "body": {}}}),
        )
        .expect("put");
        idem.put(
            b"u2\nPOST\n/v1/sms\npending",
            &serde_json::json!({"Pending": {"since_ms": 5_000, "instance": 0}}),
        )
        .expect("put");
        // One written since, with its entry: not indexed twice.
        idem.put(
            b"u3\nPOST\n/v1/sms\nnew",
            &serde_json::json!({"Done": {"status": 200, "body": {}}}),
        )
        .expect("put");
        idem.put(&idempotency_index(9_000, b"u3\nPOST\n/v1/sms\nnew"), &())
            .expect("put");
        let mut key = b"m/13800000001/".to_vec();
        key.extend_from_slice(&7u64.to_be_bytes());
        let message = serde_json::json!({
            "phone": "13800000001", "purpose": "apply", "text": "code 123456",
            "sent_at": "2026-01-01T08:00:00+08:00"
        });
        outbox_kv.put(&key, &message).expect("put");

        let now = 1_000_000;
        let done = index_unindexed(&idem, Some(&outbox_kv), now).expect("migrate");
        assert_eq!(
            done,
            Reindexed {
                idempotency_keys: 2,
                outbox_messages: 1
            }
        );
        assert_eq!(
            index_unindexed(&idem, Some(&outbox_kv), now).expect("again"),
            Reindexed::default(),
            "once only"
        );
        // The pending key is indexed at its own time, the finished one at the migration's.
        assert_eq!(sweep_idempotency(&idem, 5_001).expect("sweep"), 1);
        assert!(idem
            .get::<Value>(b"u2\nPOST\n/v1/sms\npending")
            .expect("get")
            .is_none());
        assert_eq!(sweep_idempotency(&idem, now + 1).expect("sweep"), 2);
        assert!(idem
            .get::<Value>(b"u1\nPOST\n/v1/sms\nold")
            .expect("get")
            .is_none());
        // The message is listed by time and leaves after its retention.
        let outbox = OutboxSender { kv: outbox_kv };
        assert_eq!(outbox.list(None).expect("list").len(), 1);
        let sent =
            platepool_engine::calendar::parse_rfc3339("2026-01-01T08:00:00+08:00").expect("time");
        assert_eq!(sweep_outbox(&outbox, sent).expect("sweep"), 0);
        assert_eq!(sweep_outbox(&outbox, sent + 1).expect("sweep"), 1);
        assert!(outbox.list(Some("13800000001")).expect("list").is_empty());
    }
}
