//! The HTTP side: an `awc` client (keep-alive connection pool) on the current actix system, and
//! the answers of API.md read as JSON.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use awc::error::SendRequestError;
use awc::http::Method;
use serde_json::Value;

use crate::recorder::Ending;

/// Largest answer body read (outbox listings and application lists are the big ones).
const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// How busy the client's connection pool got.
#[derive(Debug, Default)]
pub struct PoolCounters {
    in_flight: Cell<usize>,
    max_in_flight: Cell<usize>,
    /// Requests started while every connection was busy: they waited in the client.
    waits: Cell<u64>,
}

impl PoolCounters {
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.get()
    }
    pub fn waits(&self) -> u64 {
        self.waits.get()
    }
}

/// Counts a request in flight until dropped.
struct InFlight<'a>(&'a PoolCounters);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0
            .in_flight
            .set(self.0.in_flight.get().saturating_sub(1));
    }
}

/// One gateway, as seen from one thread.
#[derive(Clone)]
pub struct Api {
    client: awc::Client,
    base: String,
    operator_token: String,
    connections: usize,
    pool: Rc<PoolCounters>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("base", &self.base).finish()
    }
}

/// An answer: the status and the JSON body (`Null` when empty, a string when not JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// `error.code` of an error answer.
    pub fn code(&self) -> Option<&str> {
        self.body.get("error")?.get("code")?.as_str()
    }

    /// A field beside `code` inside `error`.
    pub fn error_field(&self, key: &str) -> Option<&Value> {
        self.body.get("error")?.get(key)
    }

    /// 409 `conflict` with reason `interrupted`: an earlier send with this Idempotency-Key was
    /// cut off (a crash, a caller gone) and may or may not have taken effect; the gateway will
    /// not run it again. What it would have debited or claimed is uncertain.
    pub fn interrupted(&self) -> bool {
        self.status == 409
            && self.code() == Some("conflict")
            && self.error_field("reason").and_then(Value::as_str) == Some("interrupted")
    }

    /// 409 `conflict` with reason `in_progress`: the first send with this Idempotency-Key is
    /// still being handled; retry shortly for its answer. Any other 409 is an answer.
    pub fn in_progress(&self) -> bool {
        self.status == 409
            && self.code() == Some("conflict")
            && self.error_field("reason").and_then(Value::as_str) == Some("in_progress")
    }

    pub fn error_u64(&self, key: &str) -> Option<u64> {
        self.error_field(key)?.as_u64()
    }

    pub fn retry_after_ms(&self) -> Option<u64> {
        self.error_u64("retry_after_ms")
    }

    pub fn ending(&self) -> Ending {
        Ending::Answer {
            status: self.status,
            code: self.code().map(str::to_string),
        }
    }

    /// A short description for error messages.
    pub fn describe(&self) -> String {
        let text = self.body.to_string();
        let short: String = text.chars().take(300).collect();
        format!("HTTP {}: {short}", self.status)
    }
}

/// A request.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    pub method: Method,
    pub path: &'a str,
    pub token: &'a str,
    pub body: Option<&'a Value>,
    /// `X-Forwarded-For`.
    pub ip: Option<&'a str>,
    /// `Idempotency-Key`.
    pub key: Option<&'a str>,
}

/// Why a request got no answer, as a short kind.
pub fn transport_kind(e: &SendRequestError) -> &'static str {
    match e {
        SendRequestError::Timeout => "timeout",
        SendRequestError::Connect(_) => "connect",
        SendRequestError::Send(_) => "send",
        SendRequestError::Response(_) => "response",
        SendRequestError::Url(_) => "url",
        SendRequestError::Http(_) => "http",
        SendRequestError::Body(_) => "body",
        _ => "other",
    }
}

impl Api {
    /// A client keeping up to `connections` keep-alive connections to `base`. Must be called on
    /// an actix system's thread; the client stays on it.
    pub fn new(base: &str, operator_token: &str, connections: usize, timeout: Duration) -> Api {
        let connector = awc::Connector::new()
            .limit(connections)
            // Shorter than the server's keep-alive, so the pool never reuses a connection the
            // server is closing.
            .conn_keep_alive(Duration::from_secs(3))
            .conn_lifetime(Duration::from_secs(300))
            .timeout(Duration::from_secs(10));
        let client = awc::Client::builder()
            .connector(connector)
            .timeout(timeout)
            .disable_redirects()
            .finish();
        Api {
            client,
            base: base.trim_end_matches('/').to_string(),
            operator_token: operator_token.to_string(),
            connections: connections.max(1),
            pool: Rc::new(PoolCounters::default()),
        }
    }

    /// How busy the connection pool got (shared by this client's clones).
    pub fn pool(&self) -> &PoolCounters {
        &self.pool
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn operator_token(&self) -> &str {
        &self.operator_token
    }

    /// Sends one request; `Err` carries the transport failure kind (no answer at all).
    pub async fn send(&self, call: &Call<'_>) -> Result<Answer, String> {
        let pool = &*self.pool;
        let busy = pool.in_flight.get();
        if busy >= self.connections {
            pool.waits.set(pool.waits.get() + 1);
        }
        pool.in_flight.set(busy + 1);
        pool.max_in_flight
            .set(pool.max_in_flight.get().max(busy + 1));
        let _in_flight = InFlight(pool);
        let url = format!("{}{}", self.base, call.path);
        let mut req = self
            .client
            .request(call.method.clone(), url)
            .insert_header(("Authorization", format!("Bearer {}", call.token)));
        if let Some(ip) = call.ip {
            req = req.insert_header(("X-Forwarded-For", ip.to_string()));
        }
        if let Some(key) = call.key {
            req = req.insert_header(("Idempotency-Key", key.to_string()));
        }
        let sent = match call.body {
            Some(b) => req.send_json(b).await,
            None => req.send().await,
        };
        let mut resp = sent.map_err(|e| transport_kind(&e).to_string())?;
        let status = resp.status().as_u16();
        let bytes = resp
            .body()
            .limit(BODY_LIMIT)
            .await
            .map_err(|_| "body".to_string())?;
        let body = if bytes.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok(Answer { status, body })
    }

    /// An operator call; an answer that is not 2xx or a transport failure is an `Err` message.
    pub async fn operator(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, String> {
        let token = self.operator_token.clone();
        let call = Call {
            method: method.clone(),
            path,
            token: &token,
            body,
            ip: None,
            key: None,
        };
        match self.send(&call).await {
            Ok(a) if a.ok() => Ok(a),
            Ok(a) => Err(format!("{method} {path}: {}", a.describe())),
            Err(kind) => Err(format!("{method} {path}: no answer ({kind})")),
        }
    }
}

/// Percent-encodes a query value (the few characters our values can hold that need it).
pub fn query_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The list inside an answer that is either a JSON array or an object holding one under one of
/// `keys`.
pub fn list<'a>(v: &'a Value, keys: &[&str]) -> &'a [Value] {
    if let Some(a) = v.as_array() {
        return a;
    }
    for k in keys {
        if let Some(a) = v.get(*k).and_then(Value::as_array) {
            return a;
        }
    }
    &[]
}

/// Serials of a hold (`{"plates":[{"serial","plate"}…]}`; plain strings are accepted too).
pub fn hold_serials(hold: &Value) -> Vec<String> {
    list(hold, &["plates", "serials"])
        .iter()
        .filter_map(|p| match p {
            Value::String(s) => Some(s.clone()),
            other => other
                .get("serial")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_expose_error_fields() {
        let a = Answer {
            status: 429,
            body: json!({"error": {"code": "too_soon", "message": "m", "retry_after_ms": 120}}),
        };
        assert!(!a.ok());
        assert_eq!(a.code(), Some("too_soon"));
        assert_eq!(a.retry_after_ms(), Some(120));
        assert!(a.describe().starts_with("HTTP 429"));
        let ok = Answer {
            status: 201,
            body: json!({"id": "x-1"}),
        };
        assert!(ok.ok() && ok.code().is_none());
        assert!(!a.interrupted() && !ok.interrupted());
        let conflict = |reason: &str| Answer {
            status: 409,
            body: json!({"error": {"code": "conflict", "message": "m", "reason": reason}}),
        };
        assert!(conflict("interrupted").interrupted());
        assert!(!conflict("in_progress").interrupted());
        assert!(conflict("in_progress").in_progress() && !conflict("interrupted").in_progress());
        let wrong_state = Answer {
            status: 409,
            body: json!({"error": {"code": "conflict", "message": "application is claimed"}}),
        };
        assert!(!wrong_state.in_progress() && !wrong_state.interrupted());
    }

    #[test]
    fn lists_and_holds_in_either_shape() {
        let arr = json!([1, 2]);
        assert_eq!(list(&arr, &["applications"]).len(), 2);
        let obj = json!({"applications": [1]});
        assert_eq!(list(&obj, &["applications"]).len(), 1);
        assert!(list(&json!({"x": 1}), &["applications"]).is_empty());
        let hold = json!({"plates": [{"serial": "A0001", "plate": "粤K·A0001"}, "A0002"]});
        assert_eq!(hold_serials(&hold), vec!["A0001", "A0002"]);
        assert!(hold_serials(&Value::Null).is_empty());
        assert_eq!(query_value("lt00001-3"), "lt00001-3");
        assert_eq!(query_value("+86 1"), "%2B86%201");
    }
}
