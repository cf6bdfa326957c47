//! Over HTTP: the gateway (platepool's own actix-web API), a Redis-backed twin of its draw route
//! (the same handler shape: bearer token verified with the gateway's own HMAC check, application
//! id parsed, JSON body read, one call to the store, JSON answer), and an actix-web hello world
//! (the limit of any handler). wrk ([`crate::wrk`]) drives each from another process.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use platepool_engine::{AppId, Engine};
use platepool_gateway::auth::{sign_token, verify_token, TokenClaims};
use platepool_gateway::{Gateway, GatewayConfig};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Script};
use serde_json::{json, Value};

use super::redis::draw_script;
use super::{DRAW_BATCH, HOLD_TTL_MS};
use crate::fixture::{App as BenchApp, OFFICE};
use crate::wrk::{self, Load, Request, WrkError, WrkResult};

/// Where every server mounts its routes, as an integrator mounts the gateway's scope.
pub const MOUNT: &str = "/plates";
/// The secret both the gateway and the twin verify citizen tokens with.
const TOKEN_SECRET: &str = "platepool-bench-compare-secret-0123456789";
const OPERATOR_TOKEN: &str = "platepool-bench-compare-operator-0123456789";
/// Office prefix the twin writes in front of serials (as the gateway does).
const PREFIX: &str = "粤K";

/// A running HTTP server.
#[derive(Debug)]
pub struct Served {
    pub base_url: String,
    handle: ServerHandle,
}

impl Served {
    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}

/// Starts a bound server on the current actix system.
fn serve(server: actix_web::dev::Server, addrs: &[std::net::SocketAddr]) -> Served {
    let port = addrs.first().map_or(0, |a| a.port());
    let handle = server.handle();
    actix_rt::spawn(server);
    Served {
        base_url: format!("http://127.0.0.1:{port}"),
        handle,
    }
}

/// The gateway over `engine`, rate limits off (a load test from one address would hit them).
pub fn serve_gateway(engine: Engine, workers: usize) -> Result<Served, String> {
    let gateway = Gateway::new(
        engine,
        GatewayConfig {
            operator_token: OPERATOR_TOKEN.into(),
            token_secret: TOKEN_SECRET.into(),
            rate_limit_user_per_s: 0,
            rate_limit_ip_per_s: 0,
            ..GatewayConfig::default()
        },
    )?;
    let server = HttpServer::new(move || App::new().service(gateway.scope(MOUNT)))
        .workers(workers)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .map_err(|e| e.to_string())?;
    let addrs = server.addrs();
    Ok(serve(server.run(), &addrs))
}

/// The limit of any actix-web handler: `GET /plates/hello` answers a constant.
pub fn serve_hello(workers: usize) -> Result<Served, String> {
    let server = HttpServer::new(|| {
        App::new().route(
            &format!("{MOUNT}/hello"),
            web::get().to(|| async { "hello" }),
        )
    })
    .workers(workers)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .map_err(|e| e.to_string())?;
    let addrs = server.addrs();
    Ok(serve(server.run(), &addrs))
}

/// What the twin's handlers share.
#[derive(Debug, Clone)]
struct Twin {
    draw: Arc<Script>,
}

/// The Redis-backed twin of the gateway's `POST /v1/applications/{id}/draws`, over the Redis
/// server at `url` (loaded by [`super::redis::RedisBackend::load`]). One multiplexed connection
/// per worker, opened in the worker.
pub fn serve_redis_twin(url: &str, workers: usize) -> Result<Served, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let twin = Twin {
        draw: Arc::new(draw_script()),
    };
    let server = HttpServer::new(move || {
        let client = client.clone();
        App::new()
            .app_data(web::Data::new(twin.clone()))
            .data_factory(move || {
                let client = client.clone();
                async move {
                    let config = AsyncConnectionConfig::new()
                        .set_response_timeout(Some(Duration::from_secs(30)));
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await
                }
            })
            .route(
                &format!("{MOUNT}/v1/applications/{{id}}/draws"),
                web::post().to(twin_draw),
            )
    })
    .workers(workers)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .map_err(|e| e.to_string())?;
    let addrs = server.addrs();
    Ok(serve(server.run(), &addrs))
}

fn error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": { "code": code, "message": message } }))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The twin's draw handler: the gateway's steps (token, application id, body, one store call,
/// JSON answer) with a Redis script as the store call.
async fn twin_draw(
    twin: web::Data<Twin>,
    con: web::Data<MultiplexedConnection>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let token = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a bearer token is required",
        );
    };
    let now = now_ms();
    let claims = match verify_token(TOKEN_SECRET, token, now / 1000) {
        Ok(c) => c,
        Err(_) => return error(StatusCode::UNAUTHORIZED, "unauthorized", "bad token"),
    };
    let Some(id) = req
        .match_info()
        .get("id")
        .and_then(|s| s.parse::<AppId>().ok())
    else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_application",
            "no such application",
        );
    };
    let exclude_four = if body.is_empty() {
        false
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => v
                .get("exclude_four")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", &e.to_string()),
        }
    };
    let mut con = con.get_ref().clone();
    let answer: Result<Vec<String>, redis::RedisError> = twin
        .draw
        .arg(id.seq)
        .arg(now)
        .arg(HOLD_TTL_MS)
        .arg(DRAW_BATCH)
        .arg(&claims.user)
        .invoke_async(&mut con)
        .await;
    match answer {
        Ok(mut out) if !out.is_empty() => {
            let left = out.remove(0);
            HttpResponse::Created().json(json!({
                "batch": {
                    "plates": out.iter().map(|s| json!({
                        "serial": s,
                        "plate": format!("{PREFIX}·{s}"),
                    })).collect::<Vec<_>>(),
                    "expires_in_ms": HOLD_TTL_MS,
                },
                "random_left": left.parse::<u64>().unwrap_or(0),
                "exclude_four": exclude_four,
            }))
        }
        Ok(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "empty answer",
        ),
        Err(e) => error(StatusCode::CONFLICT, "refused", &e.to_string()),
    }
}

/// A citizen token for a fixture application (the fixture's phone is `138` + the user number).
pub fn token(app: &BenchApp) -> String {
    let n: u64 = app.user.trim_start_matches('u').parse().unwrap_or(0);
    sign_token(
        TOKEN_SECRET,
        &TokenClaims {
            user: app.user.clone(),
            phone: format!("138{n:08}"),
            exp: now_ms() / 1000 + 24 * 3600,
        },
    )
}

/// The draw requests wrk sends round robin: one per application, each with its own token.
pub fn draw_requests(apps: &[BenchApp]) -> Vec<Request> {
    apps.iter()
        .map(|a| {
            Request::post_json(
                &format!("{MOUNT}/v1/applications/{OFFICE}-{}/draws", a.id.seq),
                "{}",
            )
            .bearer(&token(a))
        })
        .collect()
}

/// Runs wrk in a thread of its own while the current actix system keeps serving (the engine's
/// system and the servers live here).
pub async fn run_wrk(load: Load) -> Result<WrkResult, WrkError> {
    let job = thread::spawn(move || wrk::run(&load));
    while !job.is_finished() {
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    job.join()
        .unwrap_or_else(|_| Err(WrkError::Invalid("wrk thread panicked".into())))
}
