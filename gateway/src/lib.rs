//! platepool gateway: the HTTP/JSON contract of `docs/API.md` over the engine.
//!
//! Embedded: `App::new().service(gateway.scope(""))` adds the whole API to someone else's
//! actix-web app (any mount path; nothing global, so two gateways can live in one process).
//! The reference web pages are one more call: `.service(gateway.pages_scope(""))` before the
//! API's scope (citizen page at `/`, operator console at `/console/`, see [`pages`]).
//! Standalone: the `platepool` binary (`platepool serve`).
//!
//! Handlers are thin: parse, authenticate, rate-limit, call the engine, map the outcome. Every
//! engine outcome becomes an HTTP answer in one place ([`error`]).

pub mod admin_socket;
pub mod auth;
#[cfg(unix)]
pub mod backup;
pub mod certificate_csv;
pub mod cluster_status;
pub mod config;
pub mod demo;
pub mod error;
pub mod expiry;
pub mod extract;
pub mod idempotency;
pub mod jwt;
pub mod lag;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod operators;
pub mod pages;
pub mod proxies;
pub mod reindex;
pub mod request_log;
pub mod rotation;
pub mod routes;
pub mod session;
pub mod settings;
pub mod sms;
pub mod sms_queue;
pub mod sms_webhook;
pub mod verify_records;
pub mod voucher;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::Service as _;
use actix_web::{web, HttpResponse, Scope};
use futures_util::FutureExt as _;
use platepool_engine::Engine;
use routes::Shed;

pub use config::GatewayConfig;
pub use error::{ApiError, ApiResult};

/// `(method, path pattern)` of every route, in the route table's order (see [`routes`]).
pub fn route_keys() -> Vec<(&'static str, &'static str)> {
    routes::all().iter().map(|r| r.key()).collect()
}

/// Everything a handler needs, shared by every worker. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Gateway {
    pub engine: Engine,
    pub config: Arc<GatewayConfig>,
    pub tokens: Arc<jwt::TokenVerifier>,
    pub sms: Arc<sms::SmsService>,
    pub limits: Arc<limits::RateLimits>,
    pub idempotency: idempotency::Idempotency,
    pub metrics: Arc<metrics::Metrics>,
    ready: Arc<AtomicBool>,
    /// The operator credentials in force (replaceable while serving).
    pub operators: Arc<operators::OperatorSet>,
    /// What expires and how long it is kept (`expiry.rs`).
    pub retention: Arc<expiry::Retention>,
    /// The background sweep of expired keys, messages and codes: held for its `Drop`, which
    /// stops it with the last clone of the gateway.
    _sweeper: Arc<expiry::Sweeper>,
}

impl Gateway {
    /// A gateway over an opened engine. The engine has recovered every office when `open`
    /// returned, so the gateway is ready at once.
    pub fn new(engine: Engine, config: GatewayConfig) -> Result<Gateway, String> {
        config.validate()?;
        let store = engine.store().clone();
        let sms = match config.sms_webhook() {
            Some(url) => {
                let sender = sms_webhook::WebhookSender::start(
                    url,
                    &config.sms_webhook_secret,
                    config.sms_webhook_ca_file.as_deref(),
                )?;
                sms::SmsService::with_sender(&store, Arc::new(sender))?
            }
            None => sms::SmsService::with_outbox(&store)?,
        };
        let limits = Arc::new(limits::RateLimits::new(&config));
        let idempotency = idempotency::Idempotency::new(&store)?;
        let reindexed = reindex::index_unindexed(
            &idempotency.kv,
            sms.outbox.as_ref().map(|o| &o.kv),
            engine.now_ms(),
        )
        .map_err(|e| format!("indexing old idempotency keys and outbox messages: {e}"))?;
        if reindexed != reindex::Reindexed::default() {
            tracing::info!(
                idempotency_keys = reindexed.idempotency_keys,
                outbox_messages = reindexed.outbox_messages,
                "indexed state written before the expiry indexes (once)"
            );
        }
        let retention =
            expiry::Retention::new(&config, idempotency.kv.clone(), &sms, limits.clone());
        let sweeper = expiry::Sweeper::start(
            retention.clone(),
            Duration::from_secs(config.sweep_interval_s.max(1)),
        );
        Ok(Gateway {
            tokens: Arc::new(jwt::TokenVerifier::new(&config)?),
            limits,
            idempotency,
            metrics: Arc::new(metrics::Metrics::new(&route_keys())),
            operators: Arc::new(operators::OperatorSet::new(operators::Credentials::new(
                &config,
            )?)),
            retention: Arc::new(retention),
            _sweeper: Arc::new(sweeper),
            sms: Arc::new(sms),
            config: Arc::new(config),
            engine,
            ready: Arc::new(AtomicBool::new(true)),
        })
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Marks the gateway as stopping: `/readyz` answers 503 so balancers drain it.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// The reference web front end (citizen page at `path/`, operator console at
    /// `path/console/`), served from files compiled into the binary. It answers only its own
    /// paths: register it before [`Gateway::scope`] when both are mounted at the same path.
    pub fn pages_scope(&self, path: &str) -> impl actix_web::dev::HttpServiceFactory {
        pages::scope(path)
    }

    /// The whole API as a scope mounted at `path` ("" for the root).
    pub fn scope(
        &self,
        path: &str,
    ) -> Scope<
        impl actix_web::dev::ServiceFactory<
            actix_web::dev::ServiceRequest,
            Config = (),
            Response = actix_web::dev::ServiceResponse<actix_web::body::BoxBody>,
            Error = actix_web::Error,
            InitError = (),
        >,
    > {
        let metrics = self.metrics.clone();
        let engine = self.engine.clone();
        let table = routes::all();
        let prefix = path.trim_end_matches('/').to_string();
        let shed_lag = match self.config.shed_loop_lag_ms {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        };
        web::scope(path)
            .app_data(web::Data::new(self.clone()))
            .wrap_fn(move |req, srv| {
                use futures_util::future::Either;
                let started = Instant::now();
                // The route from the path, without the router's regular expressions
                // (`match_pattern` would run them all again) and without allocating.
                let path = req.path();
                let local = path.strip_prefix(prefix.as_str()).unwrap_or(path);
                let route = metrics.route_index(req.method().as_str(), local);
                // A write to an office's application is admitted by the office's own measure
                // of its queue, plus what this worker's loop lag says the request waited before
                // it was read (checked here, before the token or body is read: the answer the
                // office would give, for less work). Everything else sheddable is refused while
                // the loop runs late. The lag alone is no measure for office writes: under a
                // flood of connections it is set by how many connections send, not by the work
                // admitted, and refusing every write by it starved the offices (RELIABILITY.md,
                // campaign 4).
                let lag = shed_lag.map(|limit| {
                    lag::ensure_probe();
                    (lag::current(), limit)
                });
                // How the route is treated under load comes from the route table; a path no
                // route serves (a cheap 404 or 405) is shed as its prefix says.
                let shed = match route.and_then(|i| table.get(i)) {
                    Some(r) => r.shed,
                    None if lag::sheddable(local) => Shed::Lag,
                    None => Shed::Never,
                };
                let overloaded = match shed {
                    Shed::Office => lag::write_office(local).is_some_and(|office| {
                        engine.sheds_writes(office, lag.map_or(Duration::ZERO, |(late, _)| late))
                    }),
                    Shed::Lag => lag.is_some_and(|(late, limit)| late > limit),
                    Shed::Never => false,
                };
                if overloaded {
                    metrics.observe_route(route, 503, started.elapsed());
                    return Either::Left(refuse_for_load(req));
                }
                let metrics = metrics.clone();
                Either::Right(srv.call(req).map(move |res| {
                    if let Ok(r) = &res {
                        metrics.observe_route(route, r.status().as_u16(), started.elapsed());
                    }
                    res
                }))
            })
            // Outermost: load refusals get a request id and an access line too.
            .wrap(request_log::RequestLog::new(&self.config.trusted_proxies))
            .configure(routes::configure)
    }
}

/// Request bytes read and dropped before a load refusal is sent. actix-http closes a connection
/// whose request body was not read to its end; a refusal that cost the client its connection
/// would make it reconnect, and a flood of reconnections costs the server more than the
/// requests. Bodies of the selection calls are far smaller than this; a larger one is left
/// unread and its connection closed.
const REFUSAL_DRAIN_MAX: usize = 16 * 1024;

/// 503 `unavailable` with `retry_after_ms` (which also sets `Retry-After`, see error.rs), once
/// the request's body (up to [`REFUSAL_DRAIN_MAX`]) has been read so the connection stays open.
fn refuse_for_load(
    mut req: actix_web::dev::ServiceRequest,
) -> futures_util::future::LocalBoxFuture<
    'static,
    Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error>,
> {
    use actix_web::{HttpMessage as _, ResponseError as _};
    use futures_util::StreamExt as _;
    let mut payload = req.take_payload();
    async move {
        let mut read = 0;
        while read <= REFUSAL_DRAIN_MAX {
            match payload.next().await {
                Some(Ok(chunk)) => read += chunk.len(),
                _ => break,
            }
        }
        let answer = ApiError::unavailable("overloaded: try again shortly")
            .with("retry_after_ms", lag::RETRY_AFTER_MS.into())
            .error_response();
        Ok(req.into_response(answer))
    }
    .boxed_local()
}

/// The answer for a path no route serves (the standalone app's default service).
pub async fn not_found() -> HttpResponse {
    use actix_web::ResponseError as _;
    ApiError::not_found("no such resource").error_response()
}
