//! Load shedding at the HTTP layer: while a worker's event loop runs late, selection calls get
//! 503 `unavailable` with `Retry-After` at once, and operator and health calls are still served.

mod support;

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use serde_json::Value;

/// Status, `Retry-After` and JSON body of one request.
macro_rules! status_of {
    ($app:expr, $req:expr) => {{
        let res = test::call_service(&$app, $req.to_request()).await;
        let status = res.status();
        let retry = res
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = test::read_body(res).await;
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (status, retry, json)
    }};
}

/// A gateway shedding at `lag_ms` (0: off), with its engine and data folder.
async fn gateway_shedding_at(
    lag_ms: u64,
) -> (
    tempfile::TempDir,
    platepool_engine::Engine,
    platepool_gateway::Gateway,
) {
    let (dir, engine) = support::engine(Some(1), None).await;
    let mut config = support::gateway_config();
    config.shed_loop_lag_ms = lag_ms;
    let gw = support::gateway(&engine, config);
    (dir, engine, gw)
}

/// Keeps the worker's only thread busy for 200 ms, then lets its loop turn once.
async fn block_the_worker() {
    std::thread::sleep(Duration::from_millis(200));
    actix_rt::time::sleep(Duration::from_millis(2)).await;
}

#[actix_rt::test]
async fn a_late_worker_refuses_selection_calls_and_still_serves_operators() {
    let (_dir, _engine, gw) = gateway_shedding_at(50).await;
    let app = support::app!(gw);
    let offices = || TestRequest::get().uri("/v1/offices");
    let admin = || {
        TestRequest::get()
            .uri("/v1/admin/blacklist")
            .insert_header(("authorization", format!("Bearer {}", support::OPERATOR)))
    };

    // On time: served (the first request also starts this worker's probe).
    let (s, _, _) = status_of!(app, offices());
    assert_eq!(s, StatusCode::OK);
    actix_rt::time::sleep(Duration::from_millis(30)).await;
    let (s, _, _) = status_of!(app, offices());
    assert_eq!(s, StatusCode::OK, "an idle worker sheds nothing");

    // The worker's only thread is busy for 200 ms: its loop runs late.
    block_the_worker().await;
    let (s, retry, body) = status_of!(app, offices());
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert_eq!(retry.as_deref(), Some("1"));
    let (s, _, body) = status_of!(app, admin());
    assert_eq!(
        s,
        StatusCode::OK,
        "operators are served while shedding: {body}"
    );
    let (s, _, _) = status_of!(app, TestRequest::get().uri("/healthz"));
    assert_eq!(s, StatusCode::OK, "health checks are served while shedding");

    // Once the loop is on time again, selection calls are served again.
    let mut served = false;
    for _ in 0..100 {
        actix_rt::time::sleep(Duration::from_millis(10)).await;
        if status_of!(app, offices()).0 == StatusCode::OK {
            served = true;
            break;
        }
    }
    assert!(served, "shedding stops once the loop is on time");
}

#[actix_rt::test]
async fn a_late_worker_leaves_application_writes_to_the_office() {
    let (_dir, _engine, gw) = gateway_shedding_at(50).await;
    let app = support::app!(gw);
    let _ = status_of!(app, TestRequest::get().uri("/v1/offices"));
    actix_rt::time::sleep(Duration::from_millis(30)).await;
    block_the_worker().await;
    // The office is idle, so a draw is not refused for load: it reaches the handler, which
    // asks for a token.
    let (s, _, body) = status_of!(
        app,
        TestRequest::post()
            .uri("/v1/applications/maoming-1/draws")
            .set_json(serde_json::json!({}))
    );
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
}

#[actix_rt::test]
async fn shedding_can_be_turned_off() {
    let (_dir, _engine, gw) = gateway_shedding_at(0).await;
    let app = support::app!(gw);
    let _ = status_of!(app, TestRequest::get().uri("/v1/offices"));
    block_the_worker().await;
    let (s, _, _) = status_of!(app, TestRequest::get().uri("/v1/offices"));
    assert_eq!(s, StatusCode::OK);
}
