//! SMS codes and messages (SPEC S2, R4.2, R4.4, R4.8).
//!
//! Codes are 6 digits, single use, valid 5 minutes, dead after 5 wrong tries, one send per phone
//! and purpose per 60 s, and stored only as a salted SHA-256. Messages go through an
//! [`SmsSender`]: the built-in outbox (kept in sled, readable by operators) or a webhook to the
//! platform's SMS service (`sms_webhook.rs`). Codes are sent while the request waits (its answer
//! says whether the code went out); the claim message (R4.8) through a webhook is queued durably
//! and sent by a background task with retries (`sms_queue.rs`), so the claim never waits for it.

use std::sync::Arc;

use futures_util::future::LocalBoxFuture;

use actix_web::http::StatusCode;
use platepool_engine::calendar::rfc3339;
use platepool_engine::store::{Kv, Store};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::sms_queue::DeliveryQueue;
pub use crate::sms_queue::SmsStats;
pub use crate::sms_webhook::WebhookSender;

/// How long a code lives.
pub const CODE_TTL_MS: u64 = 5 * 60_000;
/// Least time between two sends to one phone for one purpose.
pub const RESEND_INTERVAL_MS: u64 = 60_000;
/// Wrong tries after which a code is dead.
pub const CODE_TRIES_MAX: u32 = 5;
/// Most outbox messages one listing returns.
pub const OUTBOX_LIST_MAX: usize = 1_000;

/// What a code is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// Confirms a new application (R4.2).
    Apply,
    /// Verifies identity before selection (R4.4).
    Identity,
    /// Signs a citizen in to the standalone gateway (SPEC S5).
    Login,
    /// Not a code: tells the pre-selected number (R4.8).
    Claimed,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Apply => "apply",
            Purpose::Identity => "identity",
            Purpose::Login => "login",
            Purpose::Claimed => "claimed",
        }
    }
}

/// One message as the phone would receive it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMessage {
    pub phone: String,
    pub purpose: Purpose,
    pub text: String,
    pub sent_at: String,
}

/// Delivers messages. The future runs on the request's worker thread (it need not be `Send`).
pub trait SmsSender: Send + Sync + std::fmt::Debug {
    fn send(&self, message: OutboxMessage) -> LocalBoxFuture<'static, Result<(), String>>;

    /// Whether a message is delivered where it is sent, durably and at once (the outbox): then
    /// nothing is queued for it.
    fn is_local(&self) -> bool {
        false
    }
}

/// The default sender: keeps every message in sled for operators, tests and load tests.
#[derive(Debug, Clone)]
pub struct OutboxSender {
    pub(crate) kv: Kv,
}

impl OutboxSender {
    pub fn new(store: &Store) -> Result<OutboxSender, String> {
        Ok(OutboxSender {
            kv: store.kv("sms_outbox").map_err(|e| e.to_string())?,
        })
    }

    /// The newest [`OUTBOX_LIST_MAX`] messages for one phone (or all), oldest first. Read
    /// from the end of an index (by phone, or by time), never by walking the whole outbox.
    pub fn list(&self, phone: Option<&str>) -> Result<Vec<OutboxMessage>, String> {
        let err = |e: platepool_engine::store::StoreError| e.to_string();
        if let Some(p) = phone {
            let rows = self
                .kv
                .scan_last::<OutboxMessage>(format!("m/{p}/").as_bytes(), OUTBOX_LIST_MAX)
                .map_err(err)?;
            return Ok(rows.into_iter().map(|(_, m)| m).collect());
        }
        let index = self
            .kv
            .scan_last::<String>(crate::expiry::OUTBOX_TIME_PREFIX, OUTBOX_LIST_MAX)
            .map_err(err)?;
        let mut out = Vec::with_capacity(index.len());
        for (key, phone) in index {
            if let Some(m) = self.kv.get(&outbox_key(&phone, &key)).map_err(err)? {
                out.push(m);
            }
        }
        Ok(out)
    }
}

/// Where a message is kept: by phone, then by id (the last 8 bytes of its time-index key).
pub(crate) fn outbox_key(phone: &str, index_key: &[u8]) -> Vec<u8> {
    let mut key = format!("m/{phone}/").into_bytes();
    key.extend_from_slice(&index_key[index_key.len().saturating_sub(8)..]);
    key
}

impl SmsSender for OutboxSender {
    fn is_local(&self) -> bool {
        true
    }

    /// Stored at once; sent (the future resolves) once the message is durable.
    fn send(&self, message: OutboxMessage) -> LocalBoxFuture<'static, Result<(), String>> {
        let id = match self.kv.generate_id() {
            Ok(id) => id,
            Err(e) => return Box::pin(async move { Err(e.to_string()) }),
        };
        // The time index first (applied in memory; durable with the message's own sync):
        // listings without a phone and the retention sweep read it (`crate::expiry`).
        let index = crate::expiry::outbox_index(platepool_engine::calendar::now_ms(), id);
        if let Err(e) = self.kv.insert_if_absent(&index, &message.phone) {
            return Box::pin(async move { Err(e.to_string()) });
        }
        let key = outbox_key(&message.phone, &index);
        let stored = self.kv.put_async(&key, &message);
        Box::pin(async move { stored.await.map_err(|e| e.to_string()) })
    }
}

/// A stored code: never the code itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredCode {
    salt: String,
    hash: String,
    pub(crate) sent_at_ms: u64,
    pub(crate) expires_at_ms: u64,
    confirm_after_ms: u64,
    tries: u32,
    /// The application an identity code was sent for.
    application: Option<String>,
}

/// Who holds the resend window of one phone and purpose, as a send found it.
#[derive(Debug)]
enum Slot {
    /// A code was sent less than [`RESEND_INTERVAL_MS`] ago: no send before `retry_after_ms`.
    Taken { retry_after_ms: u64 },
    /// This send stored its code; `previous` is what it replaced, put back if delivery fails.
    Claimed { previous: Option<StoredCode> },
}

/// What `POST /v1/sms` answers.
#[derive(Debug, Clone, Serialize)]
pub struct Sent {
    pub sent_at: String,
    pub confirm_after_ms: u64,
    pub expires_in_ms: u64,
}

/// Codes and messages.
#[derive(Debug, Clone)]
pub struct SmsService {
    pub(crate) codes: Kv,
    sender: Arc<dyn SmsSender>,
    pub(crate) outbox: Option<OutboxSender>,
    /// Messages sent, failed, queued (for `/metrics`).
    stats: Arc<SmsStats>,
    /// The durable queue of messages sent in the background (with a remote sender).
    queue: Option<Arc<DeliveryQueue>>,
}

impl StoredCode {
    /// What `platepool verify` asks of a stored code: hashed with a salt (SPEC S2), at most
    /// `tries_max` wrong tries, expiring after it was sent.
    pub(crate) fn check(&self, tries_max: u32) -> Result<(), String> {
        let hashed = self.hash.len() == 64 && self.hash.bytes().all(|b| b.is_ascii_hexdigit());
        if !hashed || self.salt.is_empty() {
            return Err("not stored as a salted SHA-256".into());
        }
        if self.tries > tries_max {
            return Err(format!("{} wrong tries, more than {tries_max}", self.tries));
        }
        if self.expires_at_ms < self.sent_at_ms || self.confirm_after_ms < self.sent_at_ms {
            return Err("expires, or may be confirmed, before it was sent".into());
        }
        Ok(())
    }
}

fn hash(salt: &str, code: &str) -> String {
    let digest = Sha256::digest(format!("{salt}:{code}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn code_key(phone: &str, purpose: Purpose) -> Vec<u8> {
    format!("c/{phone}/{}", purpose.as_str()).into_bytes()
}

/// The marker of a message sent once per reference ([`SmsService::deliver_once`]); beside the
/// codes (`c/…`) in the same tree.
pub(crate) fn delivered_key(purpose: Purpose, reference: &str) -> Vec<u8> {
    format!("d/{}/{reference}", purpose.as_str()).into_bytes()
}

fn sms_error(status: StatusCode, code: &'static str, message: &str) -> ApiError {
    ApiError::new(status, code, message)
}

fn storage(e: impl std::fmt::Display) -> ApiError {
    ApiError::unavailable(format!("storage: {e}"))
}

impl SmsService {
    /// With the built-in outbox as sender.
    pub fn with_outbox(store: &Store) -> Result<SmsService, String> {
        let outbox = OutboxSender::new(store)?;
        Ok(SmsService {
            codes: store.kv("sms_codes").map_err(|e| e.to_string())?,
            sender: Arc::new(outbox.clone()),
            outbox: Some(outbox),
            stats: Arc::default(),
            queue: None,
        })
    }

    /// With another sender (a webhook); the outbox still records nothing then. A sender that
    /// is not local gets the background delivery queue (started here, on its own thread).
    pub fn with_sender(store: &Store, sender: Arc<dyn SmsSender>) -> Result<SmsService, String> {
        let codes = store.kv("sms_codes").map_err(|e| e.to_string())?;
        let stats = Arc::new(SmsStats::default());
        let queue = if sender.is_local() {
            None
        } else {
            let queued = store.kv("sms_queue").map_err(|e| e.to_string())?;
            Some(DeliveryQueue::start(
                queued,
                codes.clone(),
                sender.clone(),
                stats.clone(),
            )?)
        };
        Ok(SmsService {
            codes,
            sender,
            outbox: None,
            stats,
            queue,
        })
    }

    /// Whether a sync of the gateway's store failed (every later durable write is refused).
    pub fn storage_failed(&self) -> bool {
        self.codes.sync_stats().failed
    }

    /// Messages sent and failed, and the queue's depth.
    pub fn stats(&self) -> &SmsStats {
        &self.stats
    }

    /// Messages in the built-in outbox (empty with another sender).
    pub fn outbox(&self, phone: Option<&str>) -> Result<Vec<OutboxMessage>, ApiError> {
        match &self.outbox {
            Some(o) => o.list(phone).map_err(storage),
            None => Ok(Vec::new()),
        }
    }

    /// Sends a fresh code; refuses with 429 `sms_too_soon` within 60 s of the last send.
    ///
    /// The code is stored (hashed, durable) before its message goes out, so a code that reached
    /// the phone is never lost; storing it is also what claims the 60 s window, atomically, so
    /// two concurrent sends for one phone and purpose cannot both go out. If the message cannot
    /// be delivered the caller gets 503, which promises that nothing changed (API.md): the
    /// stored code is put back as it was before this send, so no dead code is kept and the
    /// retry can send at once instead of meeting 429 for a code that never arrived.
    pub async fn send_code(
        &self,
        phone: &str,
        purpose: Purpose,
        application: Option<String>,
        confirm_after_ms: u64,
        now_ms: u64,
    ) -> Result<Sent, ApiError> {
        let mut rng = rand::rng();
        let code = format!("{:06}", rng.random_range(0..1_000_000u32));
        let salt: String = (0..16)
            .map(|_| format!("{:02x}", rng.random::<u8>()))
            .collect();
        let fresh = StoredCode {
            hash: hash(&salt, &code),
            salt,
            sent_at_ms: now_ms,
            expires_at_ms: now_ms + CODE_TTL_MS,
            confirm_after_ms,
            tries: 0,
            application,
        };
        let key = code_key(phone, purpose);
        let mut slot = Slot::Taken { retry_after_ms: 0 };
        self.codes
            .update_async::<StoredCode>(&key, |old| match old {
                Some(old) if old.sent_at_ms + RESEND_INTERVAL_MS > now_ms => {
                    slot = Slot::Taken {
                        retry_after_ms: old.sent_at_ms + RESEND_INTERVAL_MS - now_ms,
                    };
                    Some(old)
                }
                previous => {
                    slot = Slot::Claimed { previous };
                    Some(fresh.clone())
                }
            })
            .await
            .map_err(storage)?;
        let previous = match slot {
            Slot::Taken { retry_after_ms } => {
                return Err(sms_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "sms_too_soon",
                    "a code was sent less than 60 s ago",
                )
                .with("retry_after_ms", json!(retry_after_ms)))
            }
            Slot::Claimed { previous } => previous,
        };
        let text = match purpose {
            Purpose::Apply => format!("【互联网预选号牌】您正在申请预选号牌，验证码 {code}，5分钟内有效，请勿告诉他人。"),
            Purpose::Identity => format!("【互联网预选号牌】您正在进行选号身份验证，验证码 {code}，5分钟内有效，请勿告诉他人。"),
            Purpose::Login => format!("【互联网预选号牌】您正在登录预选号牌服务，验证码 {code}，5分钟内有效，请勿告诉他人。"),
            Purpose::Claimed => code,
        };
        if let Err(e) = self.deliver(phone, purpose, text, now_ms).await {
            self.release(&key, &fresh, previous).await;
            return Err(e);
        }
        Ok(Sent {
            sent_at: rfc3339(now_ms),
            confirm_after_ms,
            expires_in_ms: CODE_TTL_MS,
        })
    }

    /// Undoes the store of `fresh` after its message failed: puts back the code it replaced
    /// (or nothing), which also reopens the resend window. Only while `fresh` is still the
    /// stored code (told by its salt): a wrong try counted on it meanwhile is dropped with it, and
    /// a code stored by a later send is left alone. A failure here is only logged: the caller
    /// already answers 503, and the store refuses every later write anyway once a sync failed.
    async fn release(&self, key: &[u8], fresh: &StoredCode, previous: Option<StoredCode>) {
        let restored = self
            .codes
            .update_async::<StoredCode>(key, |current| match current {
                Some(c) if c.salt == fresh.salt && c.sent_at_ms == fresh.sent_at_ms => {
                    previous.clone()
                }
                other => other,
            });
        if let Err(e) = restored.await {
            tracing::warn!(error = %e, "SMS code of a failed send not released");
        }
    }

    /// Sends a plain message (the pre-selected number, R4.8).
    pub async fn deliver(
        &self,
        phone: &str,
        purpose: Purpose,
        text: String,
        now_ms: u64,
    ) -> Result<(), ApiError> {
        let message = OutboxMessage {
            phone: phone.to_string(),
            purpose,
            text,
            sent_at: rfc3339(now_ms),
        };
        let sent = self.sender.send(message).await;
        self.stats.count(&sent);
        sent.map_err(|e| ApiError::unavailable(format!("SMS cannot be sent: {e}")))
    }

    /// [`SmsService::deliver`] once per `reference` (for a claim: its application and voucher
    /// serial): a durable marker records each message sent, and a message whose marker exists
    /// is not sent again (markers are kept; one small record per claim). The
    /// marker is written after the send, so a crash in between sends the message twice rather
    /// than never — what a keyed retry of a claim whose first send was cut off after the claim
    /// was durable needs. Answers whether it sent (or queued).
    ///
    /// With a remote sender the message is not sent here: it is queued durably (the answer waits
    /// for that write only) and the background task sends it, retrying with backoff until the
    /// SMS service takes it (`sms_queue.rs`).
    pub async fn deliver_once(
        &self,
        reference: &str,
        phone: &str,
        purpose: Purpose,
        text: String,
        now_ms: u64,
    ) -> Result<bool, ApiError> {
        let key = delivered_key(purpose, reference);
        if self.codes.get::<u64>(&key).map_err(storage)?.is_some() {
            return Ok(false);
        }
        if let Some(queue) = &self.queue {
            let message = OutboxMessage {
                phone: phone.to_string(),
                purpose,
                text,
                sent_at: rfc3339(now_ms),
            };
            queue.enqueue(reference, message).await.map_err(storage)?;
            return Ok(true);
        }
        self.deliver(phone, purpose, text, now_ms).await?;
        self.codes.put_async(&key, &now_ms).await.map_err(storage)?;
        Ok(true)
    }

    /// Checks a code. A wrong code counts a try (the 5th kills it); with `consume` the right code
    /// is used up. Codes submitted before their `confirm_after_ms` get 429 `sms_too_soon`. The
    /// answer waits until the try or the use is durable.
    pub async fn verify(
        &self,
        phone: &str,
        purpose: Purpose,
        application: Option<&str>,
        code: &str,
        consume: bool,
        now_ms: u64,
    ) -> Result<(), ApiError> {
        let invalid = || {
            sms_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "sms_code_invalid",
                "the SMS code is not right",
            )
            .field("sms_code")
        };
        let well_formed = code.len() == 6 && code.chars().all(|c| c.is_ascii_digit());
        let key = code_key(phone, purpose);
        let Some(stored) = self.codes.get::<StoredCode>(&key).map_err(storage)? else {
            return Err(invalid());
        };
        if stored.tries >= CODE_TRIES_MAX {
            return Err(invalid().with("tries_left", json!(0)));
        }
        if stored.expires_at_ms <= now_ms {
            return Err(sms_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "sms_code_expired",
                "the SMS code has expired: ask for a new one",
            )
            .field("sms_code"));
        }
        let ready_at = stored.sent_at_ms + stored.confirm_after_ms;
        if now_ms < ready_at {
            return Err(sms_error(
                StatusCode::TOO_MANY_REQUESTS,
                "sms_too_soon",
                "wait for the confirm countdown before submitting the code",
            )
            .with("retry_after_ms", json!(ready_at - now_ms)));
        }
        let right = well_formed
            && stored.application.as_deref() == application
            && hash(&stored.salt, code) == stored.hash;
        let mut outcome: Result<(), ApiError> = Err(invalid());
        let sent_at = stored.sent_at_ms;
        self.codes
            .update_async::<StoredCode>(&key, |current| {
                let mut c = current?;
                if c.sent_at_ms != sent_at || c.tries >= CODE_TRIES_MAX {
                    // A new code was sent meanwhile, or the code died: this one is wrong.
                    outcome = Err(invalid());
                    return Some(c);
                }
                if right {
                    outcome = Ok(());
                    return if consume { None } else { Some(c) };
                }
                c.tries += 1;
                outcome = Err(invalid().with("tries_left", json!(CODE_TRIES_MAX - c.tries)));
                Some(c)
            })
            .await
            .map_err(storage)?;
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> (tempfile::TempDir, SmsService) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), platepool_engine::Durability::None).expect("store");
        (dir, SmsService::with_outbox(&store).expect("sms"))
    }

    fn last_code(s: &SmsService, phone: &str) -> String {
        let msgs = s.outbox(Some(phone)).expect("outbox");
        let text = &msgs.last().expect("a message").text;
        text.chars()
            .collect::<Vec<_>>()
            .windows(6)
            .map(|w| w.iter().collect::<String>())
            .find(|w| w.chars().all(|c| c.is_ascii_digit()))
            .expect("six digits")
    }

    /// A sender that fails while `down` is set, else delivers to the outbox.
    #[derive(Debug)]
    struct Flaky {
        down: std::sync::atomic::AtomicBool,
        outbox: OutboxSender,
    }

    impl SmsSender for Flaky {
        /// Delivered inline, as the outbox is (a remote sender's claim messages are queued:
        /// `tests/sms_delivery.rs`).
        fn is_local(&self) -> bool {
            true
        }

        fn send(&self, message: OutboxMessage) -> LocalBoxFuture<'static, Result<(), String>> {
            if self.down.load(std::sync::atomic::Ordering::Relaxed) {
                return Box::pin(async { Err("gateway down".to_string()) });
            }
            self.outbox.send(message)
        }
    }

    #[actix_rt::test]
    async fn a_message_per_reference_is_sent_once_and_again_after_a_failed_send() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), platepool_engine::Durability::None).expect("store");
        let outbox = OutboxSender::new(&store).expect("outbox");
        let flaky = Arc::new(Flaky {
            down: std::sync::atomic::AtomicBool::new(true),
            outbox: outbox.clone(),
        });
        let s = SmsService::with_sender(&store, flaky.clone()).expect("sms");
        let phone = "13800000009";
        let send = |reference: &'static str| {
            s.deliver_once(
                reference,
                phone,
                Purpose::Claimed,
                format!("claim {reference}"),
                1_000,
            )
        };
        // The first send fails: no marker, so the retry sends.
        assert!(send("V-1").await.is_err());
        assert!(outbox.list(Some(phone)).expect("list").is_empty());
        flaky
            .down
            .store(false, std::sync::atomic::Ordering::Relaxed);
        assert!(
            send("V-1").await.expect("sent"),
            "sent after the failed send"
        );
        // Sent once: a second call for the same reference sends nothing.
        assert!(!send("V-1").await.expect("answered"), "not sent twice");
        assert!(
            send("V-2").await.expect("sent"),
            "another reference is sent"
        );
        let texts: Vec<String> = outbox
            .list(Some(phone))
            .expect("list")
            .into_iter()
            .map(|m| m.text)
            .collect();
        assert_eq!(
            texts,
            vec!["claim V-1".to_string(), "claim V-2".to_string()]
        );
    }

    /// A sender whose deliveries wait for `release` and then fail while `down` is set.
    #[derive(Debug, Default)]
    struct Held {
        release: tokio::sync::Notify,
        down: std::sync::atomic::AtomicBool,
        attempts: std::sync::atomic::AtomicUsize,
    }

    impl SmsSender for Arc<Held> {
        fn send(&self, _message: OutboxMessage) -> LocalBoxFuture<'static, Result<(), String>> {
            let held = self.clone();
            held.attempts
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move {
                held.release.notified().await;
                if held.down.load(std::sync::atomic::Ordering::SeqCst) {
                    Err("SMS service down".to_string())
                } else {
                    Ok(())
                }
            })
        }
    }

    #[actix_rt::test]
    async fn a_failed_send_keeps_no_code_and_the_window_holds_while_it_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), platepool_engine::Durability::None).expect("store");
        let held = Arc::new(Held::default());
        held.down.store(true, std::sync::atomic::Ordering::SeqCst);
        let s = SmsService::with_sender(&store, Arc::new(held.clone())).expect("sms");
        let phone = "13800000010";
        let key = code_key(phone, Purpose::Apply);
        // An older code, past its resend window: a failed send must leave it as it was.
        s.codes
            .put(
                &key,
                &StoredCode {
                    salt: "old".into(),
                    hash: hash("old", "123456"),
                    sent_at_ms: 1_000,
                    expires_at_ms: 1_000 + CODE_TTL_MS,
                    confirm_after_ms: 0,
                    tries: 1,
                    application: None,
                },
            )
            .expect("put");
        let now = 1_000 + RESEND_INTERVAL_MS;
        // The second send starts while the first one's message is on its way: it is refused,
        // then lets the first delivery answer (a failure).
        let first = s.send_code(phone, Purpose::Apply, None, 0, now);
        let second = async {
            let r = s.send_code(phone, Purpose::Apply, None, 0, now).await;
            held.release.notify_one();
            r
        };
        let (first, second) = futures_util::future::join(first, second).await;
        assert_eq!(second.expect_err("too soon").code, "sms_too_soon");
        assert_eq!(first.expect_err("not delivered").code, "unavailable");
        assert_eq!(held.attempts.load(std::sync::atomic::Ordering::SeqCst), 1);
        let kept = s.codes.get::<StoredCode>(&key).expect("get").expect("old");
        assert_eq!((kept.salt.as_str(), kept.tries), ("old", 1));
        // The retry sends at once.
        held.down.store(false, std::sync::atomic::Ordering::SeqCst);
        held.release.notify_one();
        s.send_code(phone, Purpose::Apply, None, 0, now)
            .await
            .expect("retry sent");
        assert_eq!(held.attempts.load(std::sync::atomic::Ordering::SeqCst), 2);
        let stored = s.codes.get::<StoredCode>(&key).expect("get").expect("new");
        assert_eq!(stored.sent_at_ms, now);
        // Without an earlier code, a failed send leaves none.
        held.down.store(true, std::sync::atomic::Ordering::SeqCst);
        held.release.notify_one();
        let other = "13800000011";
        let r = s.send_code(other, Purpose::Apply, None, 0, now).await;
        assert_eq!(r.expect_err("not delivered").code, "unavailable");
        assert!(s
            .codes
            .get::<StoredCode>(&code_key(other, Purpose::Apply))
            .expect("get")
            .is_none());
    }

    #[actix_rt::test]
    async fn a_code_works_once_and_is_stored_hashed() {
        let (_d, s) = service();
        s.send_code("13800000001", Purpose::Apply, None, 0, 1_000)
            .await
            .expect("sent");
        let code = last_code(&s, "13800000001");
        let raw = s.codes.scan::<serde_json::Value>(b"c/").expect("scan");
        assert!(
            !raw[0].1.to_string().contains(&code),
            "code stored in clear"
        );
        s.verify("13800000001", Purpose::Apply, None, &code, false, 2_000)
            .await
            .expect("peek");
        s.verify("13800000001", Purpose::Apply, None, &code, true, 2_000)
            .await
            .expect("consume");
        let again = s
            .verify("13800000001", Purpose::Apply, None, &code, true, 2_000)
            .await;
        assert_eq!(again.expect_err("used").code, "sms_code_invalid");
    }

    #[actix_rt::test]
    async fn five_wrong_tries_kill_the_code() {
        let (_d, s) = service();
        s.send_code("13800000002", Purpose::Apply, None, 0, 1_000)
            .await
            .expect("sent");
        let code = last_code(&s, "13800000002");
        let wrong = if code == "000000" { "000001" } else { "000000" };
        for _ in 0..CODE_TRIES_MAX {
            assert_eq!(
                s.verify("13800000002", Purpose::Apply, None, wrong, true, 2_000)
                    .await
                    .expect_err("wrong")
                    .code,
                "sms_code_invalid"
            );
        }
        let right = s
            .verify("13800000002", Purpose::Apply, None, &code, true, 2_000)
            .await;
        assert_eq!(right.expect_err("dead").code, "sms_code_invalid");
    }

    #[actix_rt::test]
    async fn resend_interval_expiry_and_confirm_delay() {
        let (_d, s) = service();
        s.send_code(
            "13800000003",
            Purpose::Identity,
            Some("a-1".into()),
            5_000,
            1_000,
        )
        .await
        .expect("sent");
        let e = s
            .send_code(
                "13800000003",
                Purpose::Identity,
                Some("a-1".into()),
                5_000,
                30_000,
            )
            .await;
        assert_eq!(e.expect_err("too soon").code, "sms_too_soon");
        let code = last_code(&s, "13800000003");
        let identity = |app: &'static str, now_ms: u64| {
            s.verify(
                "13800000003",
                Purpose::Identity,
                Some(app),
                &code,
                true,
                now_ms,
            )
        };
        let early = identity("a-1", 3_000).await;
        assert_eq!(early.expect_err("early").code, "sms_too_soon");
        let other_app = identity("a-2", 7_000).await;
        assert_eq!(other_app.expect_err("other app").code, "sms_code_invalid");
        let late = identity("a-1", 1_000 + CODE_TTL_MS).await;
        assert_eq!(late.expect_err("expired").code, "sms_code_expired");
        s.send_code(
            "13800000003",
            Purpose::Identity,
            Some("a-1".into()),
            5_000,
            61_000,
        )
        .await
        .expect("resent");
    }
}
