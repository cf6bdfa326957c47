//! Request ids and the access log.
//!
//! Every request runs inside a `request` span carrying its id: the client's `X-Request-Id` when
//! it is a plausible id (1 to 128 of letters, digits and `-_.:/+=`), else 16 random hex digits.
//! The id is answered in `X-Request-Id`, and every log line the request's handlers write carries
//! it (the span's fields, in text and JSON logs). When the answer is ready one access line is
//! logged (target `platepool::access`, level info): method, route pattern, path, status,
//! latency and the client's address. `RUST_LOG=info,platepool::access=off` silences it.

use std::future::{ready, Ready};
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Instant;

use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{HeaderName, HeaderValue};
use futures_util::future::LocalBoxFuture;
use futures_util::FutureExt as _;
use ipnet::IpNet;
use rand::Rng as _;
use tracing::Instrument as _;

use crate::settings::LogFormat;

/// The header a request id comes in and goes out in.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Longest request id taken from a client.
pub const REQUEST_ID_LEN_MAX: usize = 128;
/// The access log's target.
pub const ACCESS_TARGET: &str = "platepool::access";

/// Installs the process's log subscriber: lines on stderr, as text or JSON, filtered by
/// `RUST_LOG` (default `info`). In JSON, the current span's fields (the request id) are on
/// every line, flattened beside the event's. Does nothing when one is installed already.
pub fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

/// The client's id when it is one we can log and echo safely.
pub fn accepted_id(value: &str) -> Option<&str> {
    let ok = !value.is_empty()
        && value.len() <= REQUEST_ID_LEN_MAX
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(&b));
    ok.then_some(value)
}

/// A fresh id: 16 random hex digits.
pub fn new_id() -> String {
    let n: u64 = rand::rng().random();
    format!("{n:016x}")
}

/// The middleware (`.wrap(RequestLog::new(trusted_proxies))`).
#[derive(Debug, Clone)]
pub struct RequestLog {
    trusted_proxies: Rc<[IpNet]>,
}

impl RequestLog {
    pub fn new(trusted_proxies: &[IpNet]) -> RequestLog {
        RequestLog {
            trusted_proxies: trusted_proxies.into(),
        }
    }
}

impl<S, B> Transform<S, ServiceRequest> for RequestLog
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = RequestLogService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequestLogService {
            service: Rc::new(service),
            trusted_proxies: self.trusted_proxies.clone(),
        }))
    }
}

#[derive(Debug)]
pub struct RequestLogService<S> {
    service: Rc<S>,
    trusted_proxies: Rc<[IpNet]>,
}

impl<S, B> Service<ServiceRequest> for RequestLogService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<ServiceResponse<B>, actix_web::Error>>;

    actix_web::dev::forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let started = Instant::now();
        let id = req
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(accepted_id)
            .map_or_else(new_id, str::to_string);
        let method = req.method().clone();
        let path = req.path().to_string();
        let client: Option<IpAddr> =
            crate::proxies::client_ip(req.request(), &self.trusted_proxies);
        let span = tracing::info_span!("request", request_id = %id);
        let answer = self.service.call(req).instrument(span.clone());
        async move {
            let mut res = answer.await;
            let _entered = span.enter();
            let latency_ms = started.elapsed().as_secs_f64() * 1e3;
            let (status, route) = match &res {
                Ok(r) => (
                    r.status().as_u16(),
                    r.request()
                        .match_pattern()
                        .unwrap_or_else(|| "unmatched".into()),
                ),
                Err(e) => (e.as_response_error().status_code().as_u16(), "error".into()),
            };
            tracing::info!(
                target: ACCESS_TARGET,
                method = %method,
                route = %route,
                path = %path,
                status,
                latency_ms,
                client = %client.map_or_else(|| "-".to_string(), |c| c.to_string()),
                "access"
            );
            if let (Ok(r), Ok(value)) = (&mut res, HeaderValue::from_str(&id)) {
                r.headers_mut()
                    .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
            }
            res
        }
        .boxed_local()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_clients_are_checked() {
        assert_eq!(accepted_id("abc-123_x.y:z/+="), Some("abc-123_x.y:z/+="));
        assert_eq!(accepted_id(""), None);
        assert_eq!(accepted_id("has space"), None);
        assert_eq!(accepted_id("new\nline"), None);
        assert_eq!(accepted_id(&"a".repeat(REQUEST_ID_LEN_MAX + 1)), None);
        let fresh = new_id();
        assert_eq!(fresh.len(), 16);
        assert!(accepted_id(&fresh).is_some());
        assert_ne!(new_id(), fresh);
    }
}
