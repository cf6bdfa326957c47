//! The gateway embedded in someone else's actix-web app, as README "Embedding" shows: mounted as
//! a scope at a path of the host's choosing beside the host's own routes, and two gateways over
//! two engines side by side in one process, each with its own secrets, sharing nothing.
#![allow(clippy::unwrap_used)]

use actix_web::{test, web, App, HttpResponse};
use platepool_engine::{Durability, Engine, EngineConfig};
use platepool_gateway::{Gateway, GatewayConfig};
use serde_json::{json, Value};

mod support;

/// What the host app answers for paths nobody serves (told apart from the gateway's JSON 404).
const HOST_404: &str = "host: no such page";
const HOST_HELLO: &str = "hello from the host";

/// An engine in a fresh temp folder (no fsync: nothing here is about durability).
async fn engine() -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::new(dir.path());
    config.durability = Durability::None;
    // A test's client shares the process with the server: no shedding by queue delay.
    config.shed_queue_delay = None;
    let engine = Engine::open(config).await.unwrap();
    (dir, engine)
}

/// A gateway over `engine` with these secrets, no rate limits and no shedding by loop lag.
fn gateway(engine: &Engine, operator_token: &str, token_secret: &str) -> Gateway {
    Gateway::new(
        engine.clone(),
        GatewayConfig {
            operator_token: operator_token.into(),
            token_secret: token_secret.into(),
            rate_limit_user_per_s: 0,
            rate_limit_ip_per_s: 0,
            shed_loop_lag_ms: 0,
            ..GatewayConfig::default()
        },
    )
    .unwrap()
}

async fn host_hello() -> HttpResponse {
    HttpResponse::Ok().body(HOST_HELLO)
}

async fn host_not_found() -> HttpResponse {
    HttpResponse::NotFound().body(HOST_404)
}

fn request(
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> test::TestRequest {
    let mut req = match method {
        "GET" => test::TestRequest::get(),
        "POST" => test::TestRequest::post(),
        "PUT" => test::TestRequest::put(),
        "DELETE" => test::TestRequest::delete(),
        other => panic!("method {other}"),
    }
    .uri(path);
    if let Some(t) = token {
        req = req.insert_header(("Authorization", format!("Bearer {t}")));
    }
    if let Some(b) = body {
        req = req.set_json(b);
    }
    req
}

/// The paths the tests below mount a gateway at: answers under them are checked against the
/// OpenAPI document, the others are the host's.
const MOUNTS: &[&str] = &["/plates", "/a", "/b"];

/// One request: (status, body as JSON, or as a JSON string when it is not JSON); an answer of
/// a gateway is checked against the OpenAPI document.
macro_rules! call {
    ($app:expr, $method:expr, $path:expr, $token:expr, $body:expr $(,)?) => {{
        let (method, path): (&str, &str) = ($method, $path);
        let req = request(method, path, $token, $body).to_request();
        let resp = test::call_service(&$app, req).await;
        let read = support::openapi::read_checked(MOUNTS, method, path, resp).await;
        let (status, bytes) = (read.status.as_u16(), read.body);
        let text = String::from_utf8_lossy(&bytes).to_string();
        (
            status,
            serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text)),
        )
    }};
}

/// A request that must answer `want`; the body is returned, a failure names the request.
macro_rules! expect {
    ($app:expr, $method:expr, $path:expr, $token:expr, $body:expr, $want:expr $(,)?) => {{
        let (method, path): (&str, &str) = ($method, $path);
        let (status, answer) = call!($app, method, path, $token, $body);
        assert_eq!(
            status, $want,
            "{method} {path} answered {status}, not {}: {answer}",
            $want
        );
        answer
    }};
}

fn office_doc(name: &str) -> Value {
    json!({
        "name": name, "prefix": "粤K", "classes": ["small", "small_new_energy"],
        "rules": {"custom_min_interval_ms": 0, "opening_window_ms": 0, "sms_confirm_delay_ms": 0},
        "notice": {"version": "v1", "text": "须知"}
    })
}

fn office_ids(offices: &Value) -> Vec<String> {
    offices
        .as_array()
        .unwrap_or_else(|| panic!("not a list of offices: {offices}"))
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_string())
        .collect()
}

/// Requests counted by the gateway's metrics for `method route` with a 2xx status.
fn ok_count(metrics: &Value, method: &str, route: &str) -> u64 {
    let text = metrics.as_str().expect("metrics are text");
    let series = format!(
        "platepool_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"2xx\"}} "
    );
    text.lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[actix_web::test]
async fn the_gateway_answers_under_its_mount_path_beside_the_host_routes() {
    const OP: &str = "embedding-operator-token-0123456789";
    const SECRET: &str = "embedding-token-secret-0123456789";
    let (_dir, engine) = engine().await;
    let gw = gateway(&engine, OP, SECRET);
    let app = test::init_service(
        App::new()
            .route("/hello", web::get().to(host_hello))
            .service(gw.scope("/plates"))
            .default_service(web::to(host_not_found)),
    )
    .await;

    // The host's own route.
    let b = expect!(app, "GET", "/hello", None, None, 200);
    assert_eq!(b, json!(HOST_HELLO));

    // Public routes under the prefix.
    let b = expect!(app, "GET", "/plates/healthz", None, None, 200);
    assert_eq!(b["status"], "ok", "{b}");
    expect!(app, "GET", "/plates/readyz", None, None, 200);
    let b = expect!(app, "GET", "/plates/v1/offices", None, None, 200);
    assert_eq!(b, json!([]));

    // Operator routes under the prefix: an office, a release, a citizen token.
    expect!(
        app,
        "PUT",
        "/plates/v1/admin/offices/maoming",
        Some(OP),
        Some(office_doc("茂名市车辆管理所")),
        201,
    );
    let b = expect!(
        app,
        "POST",
        "/plates/v1/admin/offices/maoming/releases",
        Some(OP),
        Some(json!({"class": "small", "label": "two", "serials": ["A0001", "A0002"]})),
        201,
    );
    assert_eq!(b["total"], 2, "{b}");
    let b = expect!(app, "GET", "/plates/v1/offices", None, None, 200);
    assert_eq!(office_ids(&b), ["maoming"]);
    let b = expect!(
        app,
        "GET",
        "/plates/v1/offices/maoming/notice",
        None,
        None,
        200
    );
    assert_eq!(b["version"], "v1", "{b}");
    let phone = "13800138001";
    let b = expect!(
        app,
        "POST",
        "/plates/v1/admin/tokens",
        Some(OP),
        Some(json!({"user": "host_user", "phone": phone, "ttl_s": 600})),
        200,
    );
    let citizen = b["token"].as_str().unwrap().to_string();

    // Citizen routes under the prefix, with that token.
    let b = expect!(app, "GET", "/plates/v1/me", Some(&citizen), None, 200);
    assert_eq!(b["user"], "host_user", "{b}");
    expect!(
        app,
        "POST",
        "/plates/v1/sms",
        Some(&citizen),
        Some(json!({"purpose": "apply"})),
        200,
    );
    let b = expect!(
        app,
        "GET",
        &format!("/plates/v1/admin/sms/outbox?phone={phone}"),
        Some(OP),
        None,
        200,
    );
    assert_eq!(b.as_array().map(Vec::len), Some(1), "{b}");
    assert_eq!(b[0]["purpose"], "apply", "{b}");
    let b = expect!(
        app,
        "POST",
        "/plates/v1/practice",
        Some(&citizen),
        Some(json!({"office": "maoming", "class": "small"})),
        201,
    );
    let practice = b["id"].as_str().unwrap().to_string();
    let b = expect!(
        app,
        "POST",
        &format!("/plates/v1/applications/{practice}/draws"),
        Some(&citizen),
        Some(json!({"exclude_four": false})),
        201,
    );
    assert_eq!(
        b["batch"]["plates"].as_array().map(Vec::len),
        Some(2),
        "{b}"
    );
    let b = expect!(
        app,
        "GET",
        &format!("/plates/v1/applications/{practice}"),
        Some(&citizen),
        None,
        200,
    );
    assert_eq!((&b["id"], &b["practice"]), (&json!(practice), &json!(true)));

    // The gateway's own checks hold under the prefix.
    let (s, b) = call!(app, "GET", "/plates/v1/me", None, None);
    assert_eq!((s, &b["error"]["code"]), (401, &json!("unauthorized")));
    let (s, b) = call!(
        app,
        "GET",
        "/plates/v1/admin/blacklist",
        Some(&citizen),
        None
    );
    assert_eq!((s, &b["error"]["code"]), (403, &json!("forbidden")));
    let (s, b) = call!(app, "GET", "/plates/v1/offices/nowhere", None, None);
    assert_eq!((s, &b["error"]["code"]), (404, &json!("not_found")));

    // The metrics name the routes without the mount path.
    let metrics = expect!(app, "GET", "/plates/metrics", None, None, 200);
    assert_eq!(ok_count(&metrics, "GET", "/v1/me"), 1, "{metrics}");
    assert_eq!(ok_count(&metrics, "POST", "/v1/sms"), 1, "{metrics}");
    assert_eq!(
        ok_count(&metrics, "GET", "/v1/applications/{id}"),
        1,
        "{metrics}"
    );

    // The gateway's paths without the prefix (or under a look-alike one) are the host's.
    for path in [
        "/healthz",
        "/readyz",
        "/v1/offices",
        "/v1/offices/maoming/notice",
        "/platesx/healthz",
    ] {
        let (s, b) = call!(app, "GET", path, None, None);
        assert_eq!((s, &b), (404, &json!(HOST_404)), "GET {path}");
    }
    let (s, b) = call!(app, "GET", "/v1/me", Some(&citizen), None);
    assert_eq!((s, &b), (404, &json!(HOST_404)), "GET /v1/me");
    let (s, b) = call!(
        app,
        "PUT",
        "/v1/admin/offices/other",
        Some(OP),
        Some(office_doc("别处")),
    );
    assert_eq!((s, &b), (404, &json!(HOST_404)), "PUT unprefixed");
    let b = expect!(app, "GET", "/plates/v1/offices", None, None, 200);
    assert_eq!(
        office_ids(&b),
        ["maoming"],
        "the unprefixed PUT changed nothing"
    );
}

#[actix_web::test]
async fn two_gateways_in_one_process_share_nothing() {
    const OP_A: &str = "gateway-a-operator-token-0123456789";
    const SECRET_A: &str = "gateway-a-token-secret-0123456789";
    const OP_B: &str = "gateway-b-operator-token-0123456789";
    const SECRET_B: &str = "gateway-b-token-secret-0123456789";
    let (dir_a, engine_a) = engine().await;
    let (dir_b, engine_b) = engine().await;
    assert_ne!(dir_a.path(), dir_b.path());
    let gw_a = gateway(&engine_a, OP_A, SECRET_A);
    let gw_b = gateway(&engine_b, OP_B, SECRET_B);
    let app = test::init_service(
        App::new()
            .route("/hello", web::get().to(host_hello))
            .service(gw_a.scope("/a"))
            .service(gw_b.scope("/b"))
            .default_service(web::to(host_not_found)),
    )
    .await;

    // An office created in A is not in B.
    expect!(
        app,
        "PUT",
        "/a/v1/admin/offices/north",
        Some(OP_A),
        Some(office_doc("北")),
        201,
    );
    let b = expect!(app, "GET", "/a/v1/offices", None, None, 200);
    assert_eq!(office_ids(&b), ["north"]);
    let b = expect!(app, "GET", "/b/v1/offices", None, None, 200);
    assert_eq!(office_ids(&b), Vec::<String>::new());
    let (s, b) = call!(app, "GET", "/b/v1/offices/north", None, None);
    assert_eq!((s, &b["error"]["code"]), (404, &json!("not_found")));
    assert!(engine_b.offices().is_empty());

    // A's operator token is nothing to B, and B's is nothing to A.
    let (s, b) = call!(
        app,
        "PUT",
        "/b/v1/admin/offices/north",
        Some(OP_A),
        Some(office_doc("北")),
    );
    assert_eq!((s, &b["error"]["code"]), (401, &json!("unauthorized")));
    let (s, b) = call!(app, "GET", "/a/v1/admin/blacklist", Some(OP_B), None);
    assert_eq!((s, &b["error"]["code"]), (401, &json!("unauthorized")));
    let b = expect!(app, "GET", "/b/v1/offices", None, None, 200);
    assert_eq!(
        office_ids(&b),
        Vec::<String>::new(),
        "the refused PUT changed nothing"
    );

    // An office created in B is not in A.
    expect!(
        app,
        "PUT",
        "/b/v1/admin/offices/south",
        Some(OP_B),
        Some(office_doc("南")),
        201,
    );
    let b = expect!(app, "GET", "/a/v1/offices", None, None, 200);
    assert_eq!(office_ids(&b), ["north"]);
    let b = expect!(app, "GET", "/b/v1/offices", None, None, 200);
    assert_eq!(office_ids(&b), ["south"]);

    // Citizen tokens: each gateway's are refused by the other.
    let phone = "13800138002";
    let mut tokens = Vec::new();
    for (prefix, op) in [("/a", OP_A), ("/b", OP_B)] {
        let b = expect!(
            app,
            "POST",
            &format!("{prefix}/v1/admin/tokens"),
            Some(op),
            Some(json!({"user": "twin_user", "phone": phone, "ttl_s": 600})),
            200,
        );
        tokens.push(b["token"].as_str().unwrap().to_string());
    }
    let (token_a, token_b) = (&tokens[0], &tokens[1]);
    assert_ne!(token_a, token_b, "different secrets sign differently");
    expect!(app, "GET", "/a/v1/me", Some(token_a), None, 200);
    expect!(app, "GET", "/b/v1/me", Some(token_b), None, 200);
    for (path, token) in [
        ("/b/v1/me", token_a),
        ("/a/v1/me", token_b),
        ("/b/v1/admin/blacklist", token_a),
        ("/a/v1/admin/blacklist", token_b),
    ] {
        let (s, b) = call!(app, "GET", path, Some(token), None);
        assert_eq!(
            (s, &b["error"]["code"]),
            (401, &json!("unauthorized")),
            "GET {path} with the other gateway's citizen token"
        );
    }

    // An SMS sent through A is in A's outbox only.
    expect!(
        app,
        "POST",
        "/a/v1/sms",
        Some(token_a),
        Some(json!({"purpose": "apply"})),
        200,
    );
    let outbox = format!("/v1/admin/sms/outbox?phone={phone}");
    let b = expect!(app, "GET", &format!("/a{outbox}"), Some(OP_A), None, 200);
    assert_eq!(b.as_array().map(Vec::len), Some(1), "{b}");
    let b = expect!(app, "GET", &format!("/b{outbox}"), Some(OP_B), None, 200);
    assert_eq!(b, json!([]), "B's outbox");

    // Readiness and metrics are each gateway's own.
    gw_a.set_ready(false);
    expect!(app, "GET", "/a/readyz", None, None, 503);
    expect!(app, "GET", "/b/readyz", None, None, 200);
    gw_a.set_ready(true);
    expect!(app, "GET", "/a/readyz", None, None, 200);
    let metrics_a = expect!(app, "GET", "/a/metrics", None, None, 200);
    let metrics_b = expect!(app, "GET", "/b/metrics", None, None, 200);
    assert_eq!(ok_count(&metrics_a, "POST", "/v1/sms"), 1, "{metrics_a}");
    assert_eq!(ok_count(&metrics_b, "POST", "/v1/sms"), 0, "{metrics_b}");
    assert_eq!(ok_count(&metrics_a, "GET", "/v1/me"), 1, "{metrics_a}");
    assert_eq!(ok_count(&metrics_b, "GET", "/v1/me"), 1, "{metrics_b}");

    // The host's route is still the host's.
    let b = expect!(app, "GET", "/hello", None, None, 200);
    assert_eq!(b, json!(HOST_HELLO));
}
