//! The durable queue of messages sent in the background: the claim SMS (R4.8) through a remote
//! sender. A claim's answer waits only for its message to be written (and fsync'ed) to the
//! `sms_queue` tree; a thread of its own (`pp-sms-queue`) sends what is due, and on a failure
//! tries again after a backoff (1 s, doubling, at most 5 min), for as long as it takes: a queued
//! message is never dropped, and one queued before a crash is sent after the restart.
//!
//! A message is sent once per reference: the marker of [`crate::sms::SmsService::deliver_once`]
//! is written (durably) after the SMS service took it, then the queue entry is removed; an entry
//! whose marker exists is removed unsent (a crash between the two writes).
//!
//! `/metrics` shows the messages sent, the failed attempts and the queue's depth.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use platepool_engine::store::{Kv, StoreError};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::sms::{delivered_key, OutboxMessage, SmsSender};

/// The first retry's delay; each failure doubles it.
pub const RETRY_FIRST_MS: u64 = 1_000;
/// The longest delay between two tries of one message.
pub const RETRY_MAX_MS: u64 = 5 * 60_000;
/// Most messages sent at once.
const SEND_BATCH: usize = 64;
/// Longest sleep of the sender between two looks at the queue.
const IDLE_MS: u64 = 1_000;

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct SmsStats {
    /// Messages the sender took.
    pub sent: AtomicU64,
    /// Attempts that failed (a message retried three times counts three).
    pub failures: AtomicU64,
    /// Messages waiting in the queue.
    pub queued: AtomicU64,
}

impl SmsStats {
    pub(crate) fn count(&self, outcome: &Result<(), String>) {
        let counter = match outcome {
            Ok(()) => &self.sent,
            Err(_) => &self.failures,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text of the counters.
    pub fn render(&self, out: &mut String) {
        let figures = [
            (
                "platepool_sms_sent_total",
                "counter",
                "SMS the sender (outbox or webhook) took.",
                &self.sent,
            ),
            (
                "platepool_sms_failures_total",
                "counter",
                "SMS send attempts that failed (the SMS service refused or could not be reached).",
                &self.failures,
            ),
            (
                "platepool_sms_queue_depth",
                "gauge",
                "Claim SMS queued durably and not yet taken by the SMS service.",
                &self.queued,
            ),
        ];
        for (name, kind, help, value) in figures {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
    }
}

/// One queued message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Queued {
    reference: String,
    message: OutboxMessage,
    attempts: u32,
    /// Wall-clock time of the next try, Unix ms.
    next_attempt_ms: u64,
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The delay before the try after `attempts` failed ones.
pub fn backoff_ms(attempts: u32) -> u64 {
    let doublings = attempts.saturating_sub(1).min(20);
    RETRY_FIRST_MS
        .saturating_mul(1 << doublings)
        .min(RETRY_MAX_MS)
}

/// A queued message, as `platepool verify` decodes it.
pub(crate) type QueuedMessage = Queued;

impl Queued {
    /// The key it is stored under.
    pub(crate) fn key(&self) -> Vec<u8> {
        queue_key(&self.message, &self.reference)
    }
}

fn queue_key(message: &OutboxMessage, reference: &str) -> Vec<u8> {
    format!("q/{}/{reference}", message.purpose.as_str()).into_bytes()
}

/// The queue and its sending thread, which stops when this is dropped.
#[derive(Debug)]
pub struct DeliveryQueue {
    queued: Kv,
    stats: Arc<SmsStats>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    wake: Notify,
    stop: AtomicBool,
}

impl Drop for DeliveryQueue {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake.notify_one();
    }
}

impl DeliveryQueue {
    /// Starts the sending thread over the queue tree `queued` (markers go to `markers`).
    pub fn start(
        queued: Kv,
        markers: Kv,
        sender: Arc<dyn SmsSender>,
        stats: Arc<SmsStats>,
    ) -> Result<Arc<DeliveryQueue>, String> {
        let shared = Arc::new(Shared {
            wake: Notify::new(),
            stop: AtomicBool::new(false),
        });
        stats.queued.store(queued.len() as u64, Ordering::Relaxed);
        let worker = Worker {
            queued: queued.clone(),
            markers,
            sender,
            stats: stats.clone(),
            shared: shared.clone(),
        };
        std::thread::Builder::new()
            .name("pp-sms-queue".into())
            .spawn(move || actix_rt::System::new().block_on(worker.run()))
            .map_err(|e| format!("cannot start the SMS queue thread: {e}"))?;
        Ok(Arc::new(DeliveryQueue {
            queued,
            stats,
            shared,
        }))
    }

    /// Queues `message` durably (the future resolves once it is on the device) and wakes the
    /// sender.
    pub async fn enqueue(&self, reference: &str, message: OutboxMessage) -> Result<(), StoreError> {
        let key = queue_key(&message, reference);
        let entry = Queued {
            reference: reference.to_string(),
            message,
            attempts: 0,
            next_attempt_ms: 0,
        };
        self.queued.put_async(&key, &entry).await?;
        self.stats
            .queued
            .store(self.queued.len() as u64, Ordering::Relaxed);
        self.shared.wake.notify_one();
        Ok(())
    }
}

struct Worker {
    queued: Kv,
    markers: Kv,
    sender: Arc<dyn SmsSender>,
    stats: Arc<SmsStats>,
    shared: Arc<Shared>,
}

impl Worker {
    async fn run(self) {
        while !self.shared.stop.load(Ordering::SeqCst) {
            let next_due = match self.send_due().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::error!(error = %e, "SMS queue: storage failed; retrying");
                    Some(wall_ms() + IDLE_MS)
                }
            };
            self.stats
                .queued
                .store(self.queued.len() as u64, Ordering::Relaxed);
            let sleep_ms =
                next_due.map_or(IDLE_MS, |due| due.saturating_sub(wall_ms()).min(IDLE_MS));
            tokio::select! {
                _ = self.shared.wake.notified() => {}
                _ = actix_rt::time::sleep(Duration::from_millis(sleep_ms)) => {}
            }
        }
    }

    /// Sends every due message; answers when the next one not yet due is.
    async fn send_due(&self) -> Result<Option<u64>, StoreError> {
        let now = wall_ms();
        let entries: Vec<(Vec<u8>, Queued)> = self.queued.scan(b"q/")?;
        let mut next_due: Option<u64> = None;
        let mut due = Vec::new();
        for (key, entry) in entries {
            let marker = delivered_key(entry.message.purpose, &entry.reference);
            if self.markers.get::<u64>(&marker)?.is_some() {
                // Sent before a crash cut the removal off.
                self.queued.remove_async(&key).await?;
                continue;
            }
            if entry.next_attempt_ms <= now {
                due.push((key, entry));
            } else {
                next_due =
                    Some(next_due.map_or(entry.next_attempt_ms, |n| n.min(entry.next_attempt_ms)));
            }
        }
        for batch in due.chunks(SEND_BATCH) {
            let sends: Vec<_> = batch
                .iter()
                .map(|(key, entry)| {
                    let send = self.sender.send(entry.message.clone());
                    (key.clone(), entry.clone(), actix_rt::spawn(send))
                })
                .collect();
            for (key, entry, send) in sends {
                let outcome = send.await.unwrap_or_else(|e| Err(e.to_string()));
                if let Some(at) = self.settle(&key, entry, outcome).await? {
                    next_due = Some(next_due.map_or(at, |n| n.min(at)));
                }
            }
        }
        Ok(next_due)
    }

    /// Records one try's outcome: the marker and the removal after a success, the next try after
    /// a failure (answered).
    async fn settle(
        &self,
        key: &[u8],
        mut entry: Queued,
        outcome: Result<(), String>,
    ) -> Result<Option<u64>, StoreError> {
        self.stats.count(&outcome);
        let marker = delivered_key(entry.message.purpose, &entry.reference);
        match outcome {
            Ok(()) => {
                self.markers.put_async(&marker, &wall_ms()).await?;
                self.queued.remove_async(key).await?;
                Ok(None)
            }
            Err(e) => {
                entry.attempts += 1;
                entry.next_attempt_ms = wall_ms() + backoff_ms(entry.attempts);
                tracing::warn!(
                    reference = %entry.reference,
                    attempts = entry.attempts,
                    retry_in_ms = backoff_ms(entry.attempts),
                    error = %e,
                    "SMS not taken by the SMS service; retrying"
                );
                let at = entry.next_attempt_ms;
                self.queued.put_async(key, &entry).await?;
                Ok(Some(at))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_ceiling() {
        assert_eq!(backoff_ms(1), 1_000);
        assert_eq!(backoff_ms(2), 2_000);
        assert_eq!(backoff_ms(5), 16_000);
        assert_eq!(backoff_ms(30), RETRY_MAX_MS);
        assert_eq!(backoff_ms(u32::MAX), RETRY_MAX_MS);
    }
}
