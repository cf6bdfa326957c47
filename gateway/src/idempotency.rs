//! `Idempotency-Key` on state-changing citizen calls: a retry with the same key gets the first
//! answer, and nothing is debited twice.
//!
//! The first request with a key claims it atomically in sled (compare-and-swap of a *pending*
//! marker), runs, and stores its answer durably before answering. A retry while the first is
//! still running gets 409 `conflict`; after it, the stored answer, once that is durable too (a
//! retry may read it in memory while the first request still waits for its sync). Answers that
//! changed nothing and invite a retry (429, 5xx) are not kept, so the retry runs for real. A
//! retry gets 409 `in_progress` only while a request with its key is running in this process
//! (an in-memory set of the keys being handled, checked and filled under one lock with the
//! marker's compare-and-swap): a pending marker left by an earlier run of the process (a crash
//! mid-request: each run marks its markers with a random instance id) or by a request of this
//! run that ended without storing an answer (its caller went away, even while the key was
//! being re-marked after a crash) no longer blocks the key. For calls that debit
//! a quota (draws, custom checks) the marker holds the application's state and quotas read
//! before the call ran ([`Idempotency::run_guarded`]): the retry runs only if they are
//! unchanged, and otherwise gets 409 `conflict` — the first attempt may have debited, and a
//! second run would debit twice (found by the long kill -9 campaign). For other calls the retry
//! runs: whatever the interrupted request made durable is still there for it to meet (a claim
//! retried after its number was claimed gets that claim as its answer, `/v1/me` shows it).

use actix_web::http::StatusCode;
use actix_web::HttpRequest;
use platepool_engine::store::{Kv, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// Longest key accepted.
pub const KEY_LEN_MAX: usize = 128;
pub const HEADER: &str = "Idempotency-Key";
/// `reason` of a 409 `conflict` while the first request with the key runs: retry shortly.
pub const REASON_IN_PROGRESS: &str = "in_progress";
/// `reason` of a 409 `conflict` when the first request was interrupted after it may have
/// debited: do not retry with this key; read the application.
pub const REASON_INTERRUPTED: &str = "interrupted";

/// A key's stored entry, as `platepool verify` decodes it.
pub(crate) type StoredEntry = Entry;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Entry {
    Pending {
        since_ms: u64,
        /// The process run that is handling it (0: written before runs were marked, or left by
        /// a request whose caller went away before it finished).
        #[serde(default)]
        instance: u64,
        /// What the application's quotas and state were when the request began (debiting
        /// calls only): a retry that finds them changed cannot know whether the first attempt
        /// debited, so it does not run again (API.md: nothing is debited twice).
        #[serde(default)]
        before: Option<String>,
    },
    Done {
        status: u16,
        body: Value,
    },
}

#[derive(Debug, Clone)]
pub struct Idempotency {
    pub(crate) kv: Kv,
    /// This run of the process: a marker of another run is a crash's leftover.
    instance: u64,
    /// The store's folder, scoping this gateway's keys in [`running`].
    scope: String,
}

/// The keys whose request is running in this process (scoped by store folder): only these
/// answer a retry with 409 `in_progress`.
fn running() -> std::sync::MutexGuard<'static, std::collections::HashSet<String>> {
    static RUNNING: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<String>>> =
        std::sync::OnceLock::new();
    RUNNING
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A key marked running; unmarked when its request ends or is dropped.
struct Running(String);

impl Drop for Running {
    fn drop(&mut self) {
        running().remove(&self.0);
    }
}

/// This run of the process, shared by every gateway in it (never 0, the value of old markers).
fn instance() -> u64 {
    static INSTANCE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *INSTANCE.get_or_init(|| rand::random::<u64>() | 1)
}

/// The key of a request, if it carries one: validated, and scoped to the user and route.
pub fn request_key(req: &HttpRequest, user: &str) -> ApiResult<Option<String>> {
    let Some(value) = req.headers().get(HEADER) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| {
            !k.is_empty() && k.len() <= KEY_LEN_MAX && k.chars().all(|c| c.is_ascii_graphic())
        })
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "{HEADER} must be 1 to {KEY_LEN_MAX} printable ASCII characters"
            ))
            .field(HEADER)
        })?;
    Ok(Some(format!(
        "{user}\n{}\n{}\n{key}",
        req.method(),
        req.path()
    )))
}

impl Idempotency {
    pub fn new(store: &Store) -> Result<Idempotency, String> {
        Ok(Idempotency {
            kv: store.kv("idempotency").map_err(|e| e.to_string())?,
            instance: instance(),
            scope: store.path().display().to_string(),
        })
    }

    fn pending(&self, now_ms: u64, before: Option<String>) -> Entry {
        Entry::Pending {
            since_ms: now_ms,
            instance: self.instance,
            before,
        }
    }

    /// Runs `work` once per key; without a key, simply runs it.
    pub async fn run<F>(
        &self,
        key: Option<String>,
        now_ms: u64,
        work: F,
    ) -> ApiResult<(StatusCode, Value)>
    where
        F: std::future::Future<Output = ApiResult<(StatusCode, Value)>>,
    {
        self.run_guarded(key, now_ms, async { None }, work).await
    }

    /// [`Idempotency::run`] for calls that debit a quota: `state` reads what the call would
    /// change (only when a key is sent). A retry after an interruption (a crash, or a caller
    /// that went away mid-request) runs again only if that state is unchanged; otherwise the
    /// first attempt may have debited, and the retry gets 409 `conflict` instead of a second
    /// debit.
    pub async fn run_guarded<S, F>(
        &self,
        key: Option<String>,
        now_ms: u64,
        state: S,
        work: F,
    ) -> ApiResult<(StatusCode, Value)>
    where
        S: std::future::Future<Output = Option<String>>,
        F: std::future::Future<Output = ApiResult<(StatusCode, Value)>>,
    {
        let Some(key) = key else {
            return work.await;
        };
        let k = key.as_bytes();
        let storage = |e: platepool_engine::store::StoreError| ApiError::unavailable(e.to_string());
        let before = state.await;
        let live_key = format!("{}\n{key}", self.scope);
        // The marker's compare-and-swap and the running set change under one lock, so a key is
        // running here exactly when a request of this process holds it.
        let (_running, remark) = {
            let mut live = running();
            let claimed = self
                .kv
                .insert_if_absent(k, &self.pending(now_ms, before.clone()))
                .map_err(storage)?;
            if claimed {
                // Its place in the expiry order; durable with the answer (`crate::expiry`).
                self.kv
                    .insert_if_absent(&crate::expiry::idempotency_index(now_ms, k), &())
                    .map_err(storage)?;
            }
            let remark = if claimed {
                None
            } else {
                match self.kv.get::<Entry>(k).map_err(storage)? {
                    Some(Entry::Done { status, body }) => {
                        drop(live);
                        self.kv.durable().await.map_err(storage)?;
                        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                        return if status.is_success() {
                            Ok((status, body))
                        } else {
                            Err(replayed_error(status, body))
                        };
                    }
                    Some(Entry::Pending { .. }) if live.contains(&live_key) => {
                        return Err(ApiError::conflict(
                            "a request with this Idempotency-Key is still being handled",
                        )
                        .with("reason", Value::from(REASON_IN_PROGRESS)));
                    }
                    Some(Entry::Pending {
                        before: Some(was), ..
                    }) if before.as_ref().is_some_and(|now| *now != was) => {
                        return Err(ApiError::conflict(
                            "the first request with this Idempotency-Key was interrupted and may \
                             have been carried out: read the application for its state, and use a \
                             new key for a new request",
                        )
                        .with("reason", Value::from(REASON_INTERRUPTED)));
                    }
                    // A leftover (a dead run's, or a request of this run that ended unanswered):
                    // this request takes the key over.
                    _ => Some(self.kv.put_async(k, &self.pending(now_ms, before.clone()))),
                }
            };
            live.insert(live_key.clone());
            (Running(live_key), remark)
        };
        // From here on, if the caller goes away (actix drops the handler) — while the key is
        // re-marked or while `work` runs — the marker is left for a retry to judge by `before`,
        // and the key stops being running, instead of blocking it as "in progress".
        let mut guard = Abandoned {
            kv: &self.kv,
            key: k,
            instance: self.instance,
            armed: true,
        };
        if let Some(remark) = remark {
            remark.await.map_err(storage)?;
        }
        let result = work.await;
        guard.armed = false;
        let keep = match &result {
            Ok((status, body)) => Some((status.as_u16(), body.clone())),
            Err(e) if e.status == StatusCode::TOO_MANY_REQUESTS || e.status.is_server_error() => {
                None
            }
            Err(e) => Some((e.status.as_u16(), e.body())),
        };
        // The answer goes out only once it is durable; if it cannot be stored (the store has
        // stopped after a failed sync), the caller gets 503 and retries with the same key.
        match keep {
            Some((status, body)) => {
                let stored = self.kv.put_async(k, &Entry::Done { status, body }).await;
                if let Err(e) = stored {
                    tracing::warn!(error = %e, "idempotency answer not stored");
                    return Err(storage(e));
                }
            }
            None => {
                // The answer already invites a retry; a key left pending only delays it.
                if let Err(e) = self.kv.remove_async(k).await {
                    tracing::warn!(error = %e, "idempotency key not released");
                }
            }
        }
        result
    }
}

/// Re-marks a pending key as left behind when its request is dropped unfinished.
struct Abandoned<'a> {
    kv: &'a Kv,
    key: &'a [u8],
    instance: u64,
    armed: bool,
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let instance = self.instance;
        // Applied in memory at once; durable with the next sync (a crash before it leaves the
        // marker of a dead run, which is judged the same way).
        // The update is applied when called; the returned future only waits for the sync.
        drop(
            self.kv
                .update_async::<Entry>(self.key, move |current| match current {
                    Some(Entry::Pending {
                        since_ms,
                        instance: i,
                        before,
                    }) if i == instance => Some(Entry::Pending {
                        since_ms,
                        instance: 0,
                        before,
                    }),
                    other => other,
                }),
        );
    }
}

/// Rebuilds a stored error answer.
fn replayed_error(status: StatusCode, body: Value) -> ApiError {
    let err = body.get("error").cloned().unwrap_or(Value::Null);
    let code = err
        .get("code")
        .and_then(Value::as_str)
        .unwrap_or("conflict");
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("replayed answer")
        .to_string();
    let code: &'static str = crate::error::static_code(code);
    let mut e = ApiError::new(status, code, message);
    if let Value::Object(map) = err {
        for (k, v) in map {
            match k.as_str() {
                "code" | "message" => {}
                "field" => e.field = v.as_str().map(str::to_string),
                _ => {
                    e.extra.insert(k, v);
                }
            }
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use platepool_engine::Durability;

    /// Idempotency over a store in a fresh folder (kept while the folder lives).
    fn fresh() -> (tempfile::TempDir, Idempotency) {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path(), Durability::None).expect("store");
        let idem = Idempotency::new(&store).expect("idempotency");
        (dir, idem)
    }

    fn ran() -> ApiResult<(StatusCode, Value)> {
        Ok((StatusCode::OK, serde_json::json!({ "ran": true })))
    }

    #[actix_rt::test]
    async fn a_marker_left_by_an_earlier_run_does_not_block_the_retry() {
        let (_dir, idem) = fresh();
        // A crash left this key pending a second ago.
        let leftover = Entry::Pending {
            since_ms: 1_000,
            instance: idem.instance ^ 2,
            before: None,
        };
        idem.kv.put(b"crashed", &leftover).expect("put");
        let (status, body) = idem
            .run(Some("crashed".into()), 2_000, async { ran() })
            .await
            .expect("the retry runs");
        assert_eq!(
            (status, body["ran"].as_bool()),
            (StatusCode::OK, Some(true))
        );
        // A request of this run still in progress does block it.
        let first = idem.run(
            Some("running".into()),
            1_000,
            std::future::pending::<ApiResult<(StatusCode, Value)>>(),
        );
        tokio::pin!(first);
        let err = tokio::select! {
            biased;
            _ = &mut first => panic!("the first request never finishes"),
            second = idem.run(Some("running".into()), 2_000, async { ran() }) => {
                second.expect_err("still being handled")
            }
        };
        assert_eq!(err.status, StatusCode::CONFLICT);
        assert_eq!(err.body()["error"]["reason"], REASON_IN_PROGRESS);
        // A marker of this run whose request is not running does not.
        idem.kv
            .put(b"left", &idem.pending(1_000, None))
            .expect("put");
        idem.run(Some("left".into()), 2_000, async { ran() })
            .await
            .expect("the retry runs");
    }

    #[actix_rt::test]
    async fn a_retry_dropped_while_taking_over_a_dead_runs_key_does_not_block_it() {
        // Durable syncs (an fdatasync each): the retry's new marker is still being synced when
        // its caller goes away.
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path(), Durability::Fsync).expect("store");
        let idem = Idempotency::new(&store).expect("idempotency");
        // After a crash: the killed run's marker.
        let leftover = Entry::Pending {
            since_ms: 1_000,
            instance: idem.instance ^ 2,
            before: None,
        };
        idem.kv.put(b"k", &leftover).expect("put");
        // The first retry takes the key over and its caller goes away at once (polled once:
        // while its marker is being made durable, or while its work runs).
        let first = idem.run(
            Some("k".into()),
            2_000,
            std::future::pending::<ApiResult<(StatusCode, Value)>>(),
        );
        let dropped = actix_rt::time::timeout(std::time::Duration::ZERO, first).await;
        assert!(dropped.is_err(), "the first retry never finishes");
        // The next retry runs: nothing of this key is running any more.
        let (status, body) = idem
            .run(Some("k".into()), 2_100, async { ran() })
            .await
            .expect("not 409 in_progress");
        assert_eq!(
            (status, body["ran"].as_bool()),
            (StatusCode::OK, Some(true))
        );
    }

    #[actix_rt::test]
    async fn an_interrupted_debit_is_not_run_twice() {
        let (_dir, idem) = fresh();
        let state = |s: &'static str| async move { Some(s.to_string()) };
        let runs = std::cell::Cell::new(0);
        let work = || async {
            runs.set(runs.get() + 1);
            ran()
        };
        // A crash left the key pending when the quotas read "5/20".
        for (key, now_state) in [("debited", "4/20"), ("untouched", "5/20")] {
            let leftover = Entry::Pending {
                since_ms: 1_000,
                instance: idem.instance ^ 2,
                before: Some("5/20".into()),
            };
            idem.kv.put(key.as_bytes(), &leftover).expect("put");
            let r = idem
                .run_guarded(Some(key.into()), 2_000, state(now_state), work())
                .await;
            match key {
                "debited" => {
                    let err = r.expect_err("the state moved: no second run");
                    assert_eq!(err.status, StatusCode::CONFLICT);
                    assert_eq!(err.body()["error"]["reason"], REASON_INTERRUPTED);
                    assert_eq!(runs.get(), 0);
                }
                _ => {
                    r.expect("the state is as before: the retry runs");
                    assert_eq!(runs.get(), 1);
                }
            }
        }
    }

    #[actix_rt::test]
    async fn a_request_dropped_mid_work_does_not_block_its_key() {
        let (_dir, idem) = fresh();
        let state = |s: &'static str| async move { Some(s.to_string()) };
        // The caller goes away while the work waits (the engine's answer never comes).
        {
            let first = idem.run_guarded(
                Some("k".into()),
                1_000,
                state("5/20"),
                std::future::pending::<ApiResult<(StatusCode, Value)>>(),
            );
            let timed_out =
                actix_rt::time::timeout(std::time::Duration::from_millis(20), first).await;
            assert!(timed_out.is_err(), "the work never finishes");
        }
        // The retry a second later, state unchanged: runs (not "still being handled").
        let (status, _) = idem
            .run_guarded(Some("k".into()), 2_000, state("5/20"), async { ran() })
            .await
            .expect("runs");
        assert_eq!(status, StatusCode::OK);
        // Now done: a further retry gets the stored answer without running.
        let (_, body) = idem
            .run_guarded(Some("k".into()), 3_000, state("4/20"), async {
                Err(ApiError::conflict("must not run"))
            })
            .await
            .expect("replayed");
        assert_eq!(body["ran"].as_bool(), Some(true));
    }
}
