//! Bounded state: what the gateway keeps for a while, and the background sweep that lets it go.
//!
//! - `Idempotency-Key`s: a retry is a retry for [`GatewayConfig::idempotency_ttl_s`] (24 h by
//!   default); each key claimed gets an index entry ordered by the time it was claimed
//!   ([`idempotency_index`]), so the sweep reads the oldest ones only, never the whole tree.
//! - The SMS outbox keeps messages (their codes in plain text) for
//!   [`GatewayConfig::outbox_retention_s`] (7 days; 0 keeps them, as the demo does), by a time
//!   index ([`outbox_index`]) that also serves listings without a phone.
//! - SMS codes leave once they expired (they cannot be used, nor do they hold the resend window
//!   any more); the once-per-claim delivery markers after the idempotency lifetime (they exist
//!   for keyed retries).
//! - The rate limiters forget idle keys ([`RateLimits::sweep`]).
//!
//! The sweep runs on a thread of its own every [`GatewayConfig::sweep_interval_s`], never on an
//! HTTP worker, in pages of [`SWEEP_PAGE`] keys. A removal is made durable with its page; one
//! lost in a crash is simply made again by the next sweep.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use platepool_engine::store::{Kv, StoreError};

use crate::config::GatewayConfig;
use crate::limits::RateLimits;
use crate::sms::{OutboxSender, StoredCode};

/// Keys one step of a sweep reads and removes at most.
pub const SWEEP_PAGE: usize = 1_000;
/// First byte of the idempotency tree's expiry index: below every key of a request (which
/// begins with a user id, printable ASCII).
const IDEMPOTENCY_INDEX: &[u8] = b"\x01i";
/// The outbox's time index: `t/` + sent-at ms + message id, both big-endian.
pub const OUTBOX_TIME_PREFIX: &[u8] = b"t/";
const CODE_PREFIX: &[u8] = b"c/";
const DELIVERED_PREFIX: &[u8] = b"d/";

/// Where the idempotency tree's expiry index begins (its entries: this, the time, the key).
pub fn idempotency_index_prefix() -> Vec<u8> {
    IDEMPOTENCY_INDEX.to_vec()
}

/// The index entry of an idempotency key claimed at `at_ms`.
pub fn idempotency_index(at_ms: u64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(IDEMPOTENCY_INDEX.len() + 8 + key.len());
    k.extend_from_slice(IDEMPOTENCY_INDEX);
    k.extend_from_slice(&at_ms.to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// The time-index key of outbox message `id`, sent at `at_ms`.
pub fn outbox_index(at_ms: u64, id: u64) -> Vec<u8> {
    let mut k = OUTBOX_TIME_PREFIX.to_vec();
    k.extend_from_slice(&at_ms.to_be_bytes());
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// The time in an index key: the 8 bytes after its prefix.
fn stamp(key: &[u8], prefix: &[u8]) -> Option<u64> {
    let bytes = key.get(prefix.len()..prefix.len() + 8)?;
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// Removes every idempotency key claimed before `cutoff_ms`, with its index entry.
pub fn sweep_idempotency(kv: &Kv, cutoff_ms: u64) -> Result<usize, StoreError> {
    let mut removed = 0;
    loop {
        let page = kv.scan_from::<()>(IDEMPOTENCY_INDEX, IDEMPOTENCY_INDEX, SWEEP_PAGE)?;
        let mut changes = Vec::new();
        for (index, ()) in &page {
            match stamp(index, IDEMPOTENCY_INDEX) {
                Some(at) if at >= cutoff_ms => break,
                _ => {}
            }
            let key = index[IDEMPOTENCY_INDEX.len() + 8..].to_vec();
            changes.push((key, None));
            changes.push((index.clone(), None));
        }
        let done = changes.len() / 2 < page.len() || page.len() < SWEEP_PAGE;
        removed += changes.len() / 2;
        if !changes.is_empty() {
            kv.commit_raw(changes)?;
        }
        if done {
            return Ok(removed);
        }
    }
}

/// Removes every outbox message sent before `cutoff_ms`, with its index entry.
pub fn sweep_outbox(outbox: &OutboxSender, cutoff_ms: u64) -> Result<usize, StoreError> {
    let kv = &outbox.kv;
    let mut removed = 0;
    loop {
        let page = kv.scan_from::<String>(OUTBOX_TIME_PREFIX, OUTBOX_TIME_PREFIX, SWEEP_PAGE)?;
        let mut changes = Vec::new();
        for (index, phone) in &page {
            match stamp(index, OUTBOX_TIME_PREFIX) {
                Some(at) if at >= cutoff_ms => break,
                _ => {}
            }
            changes.push((crate::sms::outbox_key(phone, index), None));
            changes.push((index.clone(), None));
        }
        let done = changes.len() / 2 < page.len() || page.len() < SWEEP_PAGE;
        removed += changes.len() / 2;
        if !changes.is_empty() {
            kv.commit_raw(changes)?;
        }
        if done {
            return Ok(removed);
        }
    }
}

/// Removes the SMS codes that expired before `now_ms` and the delivery markers written before
/// `markers_cutoff_ms`. A code replaced meanwhile by a new send is kept (the removal compares
/// the send time).
pub fn sweep_codes(codes: &Kv, now_ms: u64, markers_cutoff_ms: u64) -> Result<usize, StoreError> {
    let mut removed = 0;
    let mut start = CODE_PREFIX.to_vec();
    loop {
        let page = codes.scan_from::<StoredCode>(CODE_PREFIX, &start, SWEEP_PAGE)?;
        for (key, code) in &page {
            if code.expires_at_ms > now_ms {
                continue;
            }
            let sent = code.sent_at_ms;
            // Applied now; durable with the next sync (a removal lost in a crash is redone).
            drop(codes.update_async::<StoredCode>(key, move |current| {
                current.filter(|c| c.sent_at_ms != sent)
            }));
            removed += 1;
        }
        match page.last() {
            Some((last, _)) if page.len() == SWEEP_PAGE => {
                start = last.clone();
                start.push(0);
            }
            _ => break,
        }
    }
    let mut start = DELIVERED_PREFIX.to_vec();
    loop {
        let page = codes.scan_from::<u64>(DELIVERED_PREFIX, &start, SWEEP_PAGE)?;
        let old: Vec<(Vec<u8>, Option<Vec<u8>>)> = page
            .iter()
            .filter(|(_, at)| *at < markers_cutoff_ms)
            .map(|(k, _)| (k.clone(), None))
            .collect();
        removed += old.len();
        if !old.is_empty() {
            codes.commit_raw(old)?;
        }
        match page.last() {
            Some((last, _)) if page.len() == SWEEP_PAGE => {
                start = last.clone();
                start.push(0);
            }
            _ => break,
        }
    }
    Ok(removed)
}

/// What one sweep found to remove.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub idempotency_keys: usize,
    pub outbox_messages: usize,
    pub sms_codes: usize,
}

/// Everything the sweep cleans, with how long each kind is kept.
#[derive(Debug, Clone)]
pub struct Retention {
    pub idempotency: Kv,
    pub codes: Kv,
    pub outbox: Option<OutboxSender>,
    pub limits: Arc<RateLimits>,
    pub idempotency_ttl_ms: u64,
    /// `None`: messages are kept.
    pub outbox_retention_ms: Option<u64>,
}

impl Retention {
    pub fn new(
        config: &GatewayConfig,
        idempotency: Kv,
        sms: &crate::sms::SmsService,
        limits: Arc<RateLimits>,
    ) -> Retention {
        Retention {
            idempotency,
            codes: sms.codes.clone(),
            outbox: sms.outbox.clone(),
            limits,
            idempotency_ttl_ms: config.idempotency_ttl_s.saturating_mul(1_000),
            outbox_retention_ms: config
                .outbox_retention_s()
                .filter(|&s| s > 0)
                .map(|s| s.saturating_mul(1_000)),
        }
    }

    /// One sweep at `now_ms`.
    pub fn sweep(&self, now_ms: u64) -> Result<Swept, StoreError> {
        let cutoff = now_ms.saturating_sub(self.idempotency_ttl_ms);
        self.limits.sweep();
        Ok(Swept {
            idempotency_keys: sweep_idempotency(&self.idempotency, cutoff)?,
            outbox_messages: match (&self.outbox, self.outbox_retention_ms) {
                (Some(o), Some(keep)) => sweep_outbox(o, now_ms.saturating_sub(keep))?,
                _ => 0,
            },
            sms_codes: sweep_codes(&self.codes, now_ms, cutoff)?,
        })
    }
}

/// The sweep's thread; stopped (and joined, releasing the store) when dropped.
#[derive(Debug)]
pub struct Sweeper {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

/// How often the sweep's thread looks whether it must stop.
const STOP_POLL: Duration = Duration::from_millis(100);

impl Sweeper {
    pub fn start(retention: Retention, every: Duration) -> Sweeper {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let spawned = thread::Builder::new()
            .name("pp-sweeper".into())
            .spawn(move || {
                let mut next = Instant::now() + every;
                while !flag.load(Ordering::SeqCst) {
                    if Instant::now() < next {
                        thread::sleep(STOP_POLL.min(every));
                        continue;
                    }
                    next = Instant::now() + every;
                    match retention.sweep(platepool_engine::calendar::now_ms()) {
                        Ok(s) if s != Swept::default() => tracing::info!(
                            idempotency_keys = s.idempotency_keys,
                            outbox_messages = s.outbox_messages,
                            sms_codes = s.sms_codes,
                            "expired state removed"
                        ),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "sweep of expired state failed"),
                    }
                }
            });
        let thread = match spawned {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the sweep of expired state");
                None
            }
        };
        Sweeper { stop, thread }
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::StatusCode;
    use platepool_engine::store::Store;
    use platepool_engine::Durability;

    use super::*;
    use crate::idempotency::Idempotency;
    use crate::sms::{Purpose, SmsService};

    struct World {
        _dir: tempfile::TempDir,
        idem: Idempotency,
        sms: SmsService,
        retention: Retention,
    }

    fn world() -> World {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path(), Durability::None).expect("store");
        let idem = Idempotency::new(&store).expect("idempotency");
        let sms = SmsService::with_outbox(&store).expect("sms");
        let config = GatewayConfig {
            idempotency_ttl_s: 60,
            outbox_retention_s: Some(600),
            ..GatewayConfig::default()
        };
        let limits = Arc::new(RateLimits::new(&config));
        let retention = Retention::new(&config, idem.kv.clone(), &sms, limits);
        World {
            _dir: dir,
            idem,
            sms,
            retention,
        }
    }

    #[actix_rt::test]
    async fn keys_codes_and_messages_leave_when_their_time_is_up() {
        let w = world();
        let t0 = 1_000_000;
        let runs = std::cell::Cell::new(0);
        let work = || async {
            runs.set(runs.get() + 1);
            Ok((StatusCode::OK, serde_json::json!({ "n": runs.get() })))
        };
        for _ in 0..2 {
            w.idem
                .run(Some("u1\nPOST\n/v1/sms\nk1".into()), t0, work())
                .await
                .expect("runs");
        }
        assert_eq!(
            runs.get(),
            1,
            "a retry within the lifetime is answered, not run"
        );
        w.sms
            .send_code("13800000001", Purpose::Apply, None, 0, t0)
            .await
            .expect("sent");
        assert_eq!(w.sms.outbox(None).expect("outbox").len(), 1);

        // Within every lifetime: nothing goes.
        let kept = w.retention.sweep(t0 + 59_999).expect("sweep");
        assert_eq!(kept.idempotency_keys, 0);
        assert_eq!(w.idem.kv.len(), 2, "the key and its index entry");

        // The key's minute is over, and the code's five: both go, the message stays.
        let swept = w.retention.sweep(t0 + 5 * 60_000).expect("sweep");
        assert_eq!((swept.idempotency_keys, swept.sms_codes), (1, 1));
        assert!(w.idem.kv.is_empty());
        assert!(w.sms.codes.is_empty());
        assert_eq!(w.sms.outbox(Some("13800000001")).expect("outbox").len(), 1);
        w.idem
            .run(
                Some("u1\nPOST\n/v1/sms\nk1".into()),
                t0 + 5 * 60_000,
                work(),
            )
            .await
            .expect("runs");
        assert_eq!(runs.get(), 2, "an expired key runs again");
    }

    #[actix_rt::test]
    async fn the_outbox_lists_the_newest_by_its_index_and_keeps_them_for_the_retention() {
        let w = world();
        let outbox = w.sms.outbox.clone().expect("outbox");
        let now = platepool_engine::calendar::now_ms();
        for n in 0..5u32 {
            w.sms
                .deliver(
                    &format!("1390000000{n}"),
                    Purpose::Claimed,
                    format!("m{n}"),
                    now,
                )
                .await
                .expect("sent");
        }
        let all: Vec<String> = outbox
            .list(None)
            .expect("list")
            .into_iter()
            .map(|m| m.text)
            .collect();
        assert_eq!(
            all,
            ["m0", "m1", "m2", "m3", "m4"],
            "oldest first, across phones"
        );
        assert_eq!(w.retention.sweep(now).expect("sweep").outbox_messages, 0);
        let swept = w.retention.sweep(now + 700_000).expect("sweep");
        assert_eq!(swept.outbox_messages, 5);
        assert!(outbox.list(None).expect("list").is_empty());
        assert!(outbox.kv.is_empty(), "messages and index entries both gone");
    }
}
