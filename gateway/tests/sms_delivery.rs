//! SMS through the webhook sender (`sms_webhook`): a real HTTP receiver on loopback stands in
//! for the platform's SMS service, and the gateway is driven through `POST /v1/sms` (API.md,
//! SPEC S2). Pins that a code reaches the service and works, that a failed delivery answers 503
//! and changes nothing (the retry sends at once), and that a keyed retry gets the first answer
//! without a second message. Every request the receiver gets must carry a valid signature
//! (docs/sms-webhook.md), checked here with the receiver's own HMAC. The claim message (R4.8) is
//! queued durably: it is accepted while the service fails, retried until the service takes it,
//! sent once, counted in `/metrics`, and a queued message left by one sender is sent by the next.

use std::future::Future;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::body::MessageBody;
use actix_web::dev::{ServerHandle, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::HttpRequest;
use actix_web::{web, App, HttpResponse, HttpServer};
use hmac::{Hmac, Mac};
use platepool_engine::actor::Clock;
use platepool_engine::store::Store;
use platepool_engine::{Durability, OfficeRules};
use platepool_gateway::sms::{Purpose, SmsService};
use platepool_gateway::sms_webhook::{WebhookSender, SIGNATURE_HEADER};
use platepool_gateway::Gateway;
use serde_json::{json, Value};

mod support;
use support::{t0, vin, voucher_no, TestClock};

const OFFICE: &str = "maoming";
const PHONE: &str = "13800000001";
const WEBHOOK_SECRET: &str = "sms-webhook-test-secret-0123";

/// What the stand-in SMS service saw, and how it answers.
#[derive(Debug)]
struct Inbox {
    /// Every JSON body received, in order, whatever the answer was.
    received: Mutex<Vec<Value>>,
    /// The status the next deliveries get.
    answer: AtomicU16,
    /// Requests whose signature did not verify, with why.
    forged: Mutex<Vec<String>>,
    /// While set, requests wait before they are answered (a stalled SMS service).
    hold: AtomicBool,
}

impl Inbox {
    fn received(&self) -> Vec<Value> {
        self.received.lock().expect("inbox lock").clone()
    }

    fn answer(&self, status: StatusCode) {
        self.answer.store(status.as_u16(), Ordering::SeqCst);
    }

    fn forged(&self) -> Vec<String> {
        self.forged.lock().expect("forged lock").clone()
    }
}

/// Checks `t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` as an SMS service would: the
/// MAC, and a timestamp within 5 minutes of now.
fn check_signature(header: Option<&str>, body: &[u8]) -> Result<(), String> {
    let header = header.ok_or("no signature header")?;
    let (t, v1) = header
        .split_once(',')
        .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v.strip_prefix("v1=")?)))
        .ok_or_else(|| format!("malformed signature {header:?}"))?;
    let t: u64 = t.parse().map_err(|_| format!("bad timestamp {t:?}"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    if t.abs_diff(now) > 300 {
        return Err(format!("timestamp {t} too far from {now}"));
    }
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).expect("key");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let want: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if want != v1 {
        return Err(format!("signature {v1} is not {want}"));
    }
    Ok(())
}

async fn receive(inbox: web::Data<Inbox>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let signature = req
        .headers()
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok());
    if let Err(why) = check_signature(signature, &body) {
        inbox.forged.lock().expect("forged lock").push(why);
    }
    while inbox.hold.load(Ordering::SeqCst) {
        actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let message: Value = serde_json::from_slice(&body).expect("a JSON body");
    inbox.received.lock().expect("inbox lock").push(message);
    let status =
        StatusCode::from_u16(inbox.answer.load(Ordering::SeqCst)).expect("a valid status was set");
    HttpResponse::build(status).finish()
}

/// The SMS service: an HTTP server on 127.0.0.1, on a free port.
struct Receiver {
    inbox: Arc<Inbox>,
    url: String,
    handle: ServerHandle,
}

impl Receiver {
    fn start() -> Receiver {
        let inbox = Arc::new(Inbox {
            received: Mutex::new(Vec::new()),
            answer: AtomicU16::new(StatusCode::OK.as_u16()),
            forged: Mutex::new(Vec::new()),
            hold: AtomicBool::new(false),
        });
        let data = web::Data::from(inbox.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/sms", web::post().to(receive))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(0)
        .bind(("127.0.0.1", 0))
        .expect("bind the receiver");
        let addr = *server.addrs().first().expect("a bound address");
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Receiver {
            inbox,
            url: format!("http://{addr}/sms"),
            handle,
        }
    }

    /// Stops the receiver, after checking every request it got was signed.
    async fn stop(self) {
        assert_eq!(
            self.inbox.forged(),
            Vec::<String>::new(),
            "unsigned or forged requests"
        );
        self.handle.stop(false).await;
    }
}

/// An `http://` URL on loopback where nothing listens (the port was free a moment ago).
fn nowhere() -> String {
    let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    format!("http://{addr}/sms")
}

struct World {
    _dir: tempfile::TempDir,
    gw: Gateway,
    clock: Arc<TestClock>,
    token: String,
}

impl World {
    /// One office with a release and certificates, and a gateway sending SMS to `webhook`.
    async fn new(webhook: &str) -> World {
        let clock = TestClock::at(t0());
        let (dir, engine) = support::engine(Some(7), Some(clock.clone())).await;
        let who = "operator:test";
        let rules = OfficeRules {
            opening_window_ms: 0,
            ..OfficeRules::default()
        };
        let office = support::office("茂名市车辆管理所", &["small"], rules);
        engine
            .put_office(OFFICE, office, who)
            .await
            .expect("office");
        let release = support::release("small", "粤K·A0000–A9999", &["A####"], t0() - 60_000);
        engine
            .add_release(OFFICE, release, who)
            .await
            .expect("release");
        let config = platepool_gateway::GatewayConfig {
            sms_webhook: Some(webhook.to_string()),
            sms_webhook_secret: WEBHOOK_SECRET.into(),
            ..support::gateway_config()
        };
        let gw = support::gateway(&engine, config);
        // Through the operator API, as a deployment imports them.
        let rows: Vec<Value> = (1..=3)
            .map(|n| json!({"vin": vin(n), "voucher": voucher_no(n), "class": "small", "energy": "fuel"}))
            .collect();
        {
            let app = support::app!(gw);
            let req = TestRequest::post()
                .uri("/v1/admin/certificates")
                .insert_header(("Authorization", format!("Bearer {}", support::OPERATOR)))
                .set_json(rows);
            let report: Value = test::call_and_read_body_json(&app, req.to_request()).await;
            assert_eq!(report["imported"], 3, "{report}");
        }
        let token = support::token("u1", PHONE, clock.now_ms() / 1000 + 86_400);
        World {
            _dir: dir,
            gw,
            clock,
            token,
        }
    }
}

#[derive(Debug)]
struct Resp {
    status: StatusCode,
    body: Value,
}

impl Resp {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

async fn post<F, Fut, B>(s: &F, w: &World, path: &str, body: Value, key: Option<&str>) -> Resp
where
    F: Fn(TestRequest) -> Fut,
    Fut: Future<Output = ServiceResponse<B>>,
    B: MessageBody,
{
    let mut req = TestRequest::post()
        .uri(path)
        .insert_header(("Authorization", format!("Bearer {}", w.token)))
        .set_json(body);
    if let Some(key) = key {
        req = req.insert_header(("Idempotency-Key", key));
    }
    let resp = s(req).await;
    let status = resp.status();
    let bytes = test::read_body(resp).await;
    Resp {
        status,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// The 6-digit code in a message the receiver got, after checking its phone and purpose.
fn code_in(message: &Value, purpose: &str) -> String {
    assert_eq!(message["phone"], PHONE, "{message}");
    assert_eq!(message["purpose"], purpose, "{message}");
    assert!(message["sent_at"].is_string(), "{message}");
    let text = message["text"].as_str().expect("text");
    // Other numbers in the text ("5分钟") are short; the code is the one long run of digits.
    let runs: Vec<&str> = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|run| run.len() >= 6)
        .collect();
    assert_eq!(runs.len(), 1, "one code in {text:?}");
    assert_eq!(runs[0].len(), 6, "a 6-digit code in {text:?}");
    runs[0].to_string()
}

fn application_body(n: u32, code: &str) -> Value {
    json!({
        "office": OFFICE, "vin": vin(n), "voucher": voucher_no(n),
        "notice_version": "v1", "sms_code": code,
    })
}

#[actix_rt::test]
async fn codes_sent_through_the_webhook_arrive_and_work() {
    let receiver = Receiver::start();
    let w = World::new(&receiver.url).await;
    let app = support::app!(w.gw);
    let s = |r: TestRequest| test::call_service(&app, r.to_request());

    let sent = post(&s, &w, "/v1/sms", json!({"purpose": "apply"}), None).await;
    assert_eq!(sent.status, StatusCode::OK, "{sent:?}");
    let received = receiver.inbox.received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0]["sent_at"], sent.body["sent_at"]);
    let code = code_in(&received[0], "apply");
    // The webhook replaces the outbox: nothing is kept there.
    assert!(w.gw.sms.outbox(Some(PHONE)).expect("outbox").is_empty());

    let created = post(&s, &w, "/v1/applications", application_body(1, &code), None).await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let id = created.body["id"].as_str().expect("id").to_string();

    let body = json!({"purpose": "identity", "application": id});
    let sent = post(&s, &w, "/v1/sms", body, None).await;
    assert_eq!(sent.status, StatusCode::OK, "{sent:?}");
    let received = receiver.inbox.received();
    assert_eq!(received.len(), 2, "{received:?}");
    let code = code_in(&received[1], "identity");
    w.clock
        .advance(sent.body["confirm_after_ms"].as_u64().expect("delay"));
    let path = format!("/v1/applications/{id}/identity");
    let verified = post(&s, &w, &path, json!({"sms_code": code}), None).await;
    assert_eq!(verified.status, StatusCode::OK, "{verified:?}");
    receiver.stop().await;
}

#[actix_rt::test]
async fn a_failed_delivery_changes_nothing_and_the_retry_sends_at_once() {
    let receiver = Receiver::start();
    let w = World::new(&receiver.url).await;
    let app = support::app!(w.gw);
    let s = |r: TestRequest| test::call_service(&app, r.to_request());
    let apply = || json!({"purpose": "apply"});

    // The service takes the message but answers 500: the code must not count as sent.
    receiver.inbox.answer(StatusCode::INTERNAL_SERVER_ERROR);
    let failed = post(&s, &w, "/v1/sms", apply(), Some("k-1")).await;
    assert_eq!(
        (failed.status, failed.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        "{failed:?}"
    );
    let received = receiver.inbox.received();
    assert_eq!(received.len(), 1, "{received:?}");
    let lost = code_in(&received[0], "apply");
    let r = post(&s, &w, "/v1/applications", application_body(1, &lost), None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "sms_code_invalid"),
        "no code is kept after a failed send: {r:?}"
    );

    // The service is back: the retry, at the same instant and with the same key, sends.
    receiver.inbox.answer(StatusCode::OK);
    let sent = post(&s, &w, "/v1/sms", apply(), Some("k-1")).await;
    assert_eq!(sent.status, StatusCode::OK, "{sent:?}");
    let received = receiver.inbox.received();
    assert_eq!(received.len(), 2, "{received:?}");
    let code = code_in(&received[1], "apply");
    let r = post(&s, &w, "/v1/applications", application_body(1, &code), None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    receiver.stop().await;

    // A service that is down (nothing listens) is a failed delivery too.
    let down = World::new(&nowhere()).await;
    let app = support::app!(down.gw);
    let s = |r: TestRequest| test::call_service(&app, r.to_request());
    for _ in 0..2 {
        let r = post(&s, &down, "/v1/sms", apply(), None).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            "a retry gets 503 again, never 429: {r:?}"
        );
    }
}

#[actix_rt::test]
async fn one_code_per_window_even_for_concurrent_sends() {
    let receiver = Receiver::start();
    let w = World::new(&receiver.url).await;
    let app = support::app!(w.gw);
    let s = |r: TestRequest| test::call_service(&app, r.to_request());
    let apply = || json!({"purpose": "apply"});

    let (a, b) = futures_util::future::join(
        post(&s, &w, "/v1/sms", apply(), None),
        post(&s, &w, "/v1/sms", apply(), None),
    )
    .await;
    let mut outcomes = [(a.status, a.code()), (b.status, b.code())];
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            (StatusCode::OK, ""),
            (StatusCode::TOO_MANY_REQUESTS, "sms_too_soon")
        ],
        "{a:?} {b:?}"
    );
    assert_eq!(receiver.inbox.received().len(), 1);
    receiver.stop().await;
}

#[actix_rt::test]
async fn a_keyed_retry_gets_the_first_answer_and_sends_nothing() {
    let receiver = Receiver::start();
    let w = World::new(&receiver.url).await;
    let app = support::app!(w.gw);
    let s = |r: TestRequest| test::call_service(&app, r.to_request());
    let apply = || json!({"purpose": "apply"});

    let first = post(&s, &w, "/v1/sms", apply(), Some("send-1")).await;
    assert_eq!(first.status, StatusCode::OK, "{first:?}");
    // A second later a fresh send would answer another `sent_at` (or 429).
    w.clock.advance(1_000);
    let retry = post(&s, &w, "/v1/sms", apply(), Some("send-1")).await;
    assert_eq!(retry.status, StatusCode::OK, "{retry:?}");
    assert_eq!(retry.body, first.body);
    assert_eq!(receiver.inbox.received().len(), 1);

    // Another key is another request: the 60 s window refuses it.
    let other = post(&s, &w, "/v1/sms", apply(), Some("send-2")).await;
    assert_eq!(
        (other.status, other.code()),
        (StatusCode::TOO_MANY_REQUESTS, "sms_too_soon"),
        "{other:?}"
    );
    assert_eq!(receiver.inbox.received().len(), 1);
    receiver.stop().await;
}

/// Waits (up to 30 s) until `done` holds.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "not within 30 s: {what}"
        );
        actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn webhook_sms(store: &Store, url: &str) -> SmsService {
    let sender = WebhookSender::start(url, WEBHOOK_SECRET, None).expect("webhook client");
    SmsService::with_sender(store, Arc::new(sender)).expect("sms service")
}

fn claimed_texts(inbox: &Inbox) -> Vec<String> {
    inbox
        .received()
        .iter()
        .filter(|m| m["purpose"] == "claimed")
        .map(|m| m["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[actix_rt::test]
async fn the_claim_message_is_queued_retried_until_taken_and_sent_once() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), Durability::Fsync).expect("store");
    let sms = webhook_sms(&store, &receiver.url);
    let stats = sms.stats();

    // The SMS service refuses: the message is accepted all the same (queued, on the disk).
    receiver.inbox.answer(StatusCode::SERVICE_UNAVAILABLE);
    let queued = sms
        .deliver_once("A-1/V-1", PHONE, Purpose::Claimed, "claim A-1".into(), t0())
        .await
        .expect("queued");
    assert!(queued);
    eventually("two failed attempts", || {
        stats.failures.load(Ordering::SeqCst) >= 2
    })
    .await;
    assert_eq!(stats.queued.load(Ordering::SeqCst), 1);
    assert_eq!(stats.sent.load(Ordering::SeqCst), 0);
    let mut metrics = String::new();
    stats.render(&mut metrics);
    assert!(
        metrics.contains("platepool_sms_queue_depth 1\n"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("platepool_sms_failures_total 0\n"),
        "{metrics}"
    );

    // The service is back: the next retry delivers it, once.
    receiver.inbox.answer(StatusCode::OK);
    eventually("the message delivered", || {
        stats.sent.load(Ordering::SeqCst) == 1 && stats.queued.load(Ordering::SeqCst) == 0
    })
    .await;
    let texts = claimed_texts(&receiver.inbox);
    assert!(
        texts.len() >= 3,
        "two refused tries and the taken one: {texts:?}"
    );
    assert!(texts.iter().all(|t| t == "claim A-1"), "{texts:?}");
    let tries = texts.len();
    // Sent once per reference: a retried claim queues nothing more.
    let again = sms
        .deliver_once("A-1/V-1", PHONE, Purpose::Claimed, "claim A-1".into(), t0())
        .await
        .expect("answered");
    assert!(!again);
    actix_rt::time::sleep(std::time::Duration::from_millis(1_500)).await;
    assert_eq!(claimed_texts(&receiver.inbox).len(), tries);
    receiver.stop().await;
}

#[actix_rt::test]
async fn a_queued_message_outlives_its_sender() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), Durability::Fsync).expect("store");
    // Nothing listens: the message stays queued.
    let first = webhook_sms(&store, &nowhere());
    first
        .deliver_once("A-2/V-2", PHONE, Purpose::Claimed, "claim A-2".into(), t0())
        .await
        .expect("queued");
    eventually("a failed attempt", || {
        first.stats().failures.load(Ordering::SeqCst) >= 1
    })
    .await;
    drop(first);
    // The next sender (as after a restart) finds it in the store and sends it.
    let receiver = Receiver::start();
    let second = webhook_sms(&store, &receiver.url);
    eventually("the message sent by the next sender", || {
        claimed_texts(&receiver.inbox) == ["claim A-2"]
    })
    .await;
    eventually("the queue empty", || {
        second.stats().queued.load(Ordering::SeqCst) == 0
    })
    .await;
    receiver.stop().await;
}

/// `GET /metrics`'s value of an unlabelled series.
async fn metric<F, Fut, B>(s: &F, name: &str) -> f64
where
    F: Fn(TestRequest) -> Fut,
    Fut: Future<Output = ServiceResponse<B>>,
    B: MessageBody,
{
    let resp = s(TestRequest::get().uri("/metrics")).await;
    let text = String::from_utf8(test::read_body(resp).await.to_vec()).expect("UTF-8");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
}

#[actix_rt::test]
async fn a_claim_is_answered_while_the_sms_service_stalls_and_its_message_follows() {
    let receiver = Receiver::start();
    let w = World::new(&receiver.url).await;
    let app = support::app!(w.gw);
    let s = |r: TestRequest| test::call_service(&app, r.to_request());

    // Apply, verify identity, draw and pick a number (codes through the webhook).
    let sent = post(&s, &w, "/v1/sms", json!({"purpose": "apply"}), None).await;
    assert_eq!(sent.status, StatusCode::OK, "{sent:?}");
    let code = code_in(&receiver.inbox.received()[0], "apply");
    let created = post(&s, &w, "/v1/applications", application_body(1, &code), None).await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let id = created.body["id"].as_str().expect("id").to_string();
    let body = json!({"purpose": "identity", "application": id});
    let sent = post(&s, &w, "/v1/sms", body, None).await;
    let code = code_in(&receiver.inbox.received()[1], "identity");
    w.clock
        .advance(sent.body["confirm_after_ms"].as_u64().expect("delay"));
    let path = format!("/v1/applications/{id}/identity");
    let verified = post(&s, &w, &path, json!({"sms_code": code}), None).await;
    assert_eq!(verified.status, StatusCode::OK, "{verified:?}");
    let drawn = post(
        &s,
        &w,
        &format!("/v1/applications/{id}/draws"),
        json!({"exclude_four": false}),
        None,
    )
    .await;
    assert_eq!(drawn.status, StatusCode::CREATED, "{drawn:?}");
    let serial = drawn.body["batch"]["plates"][0]["serial"]
        .as_str()
        .expect("a drawn serial")
        .to_string();
    let picked = post(
        &s,
        &w,
        &format!("/v1/applications/{id}/candidates"),
        json!({"serial": serial}),
        None,
    )
    .await;
    assert_eq!(picked.status, StatusCode::OK, "{picked:?}");

    // The SMS service stalls: the claim is answered all the same, its message queued.
    receiver.inbox.hold.store(true, Ordering::SeqCst);
    let claimed = post(
        &s,
        &w,
        &format!("/v1/applications/{id}/claim"),
        json!({"serial": serial}),
        None,
    )
    .await;
    assert_eq!(claimed.status, StatusCode::CREATED, "{claimed:?}");
    assert_eq!(metric(&s, "platepool_sms_queue_depth").await, 1.0);
    assert_eq!(
        receiver.inbox.received().len(),
        2,
        "no claim message answered yet"
    );

    // The service comes back: the message follows (retried after the stalled attempt).
    receiver.inbox.hold.store(false, Ordering::SeqCst);
    eventually("the claim message delivered", || {
        claimed_texts(&receiver.inbox).len() == 1
    })
    .await;
    let text = &claimed_texts(&receiver.inbox)[0];
    let voucher = claimed.body["claim"]["voucher"]["serial"]
        .as_str()
        .expect("the voucher serial");
    assert!(text.contains(voucher), "{text} / {claimed:?}");
    let started = std::time::Instant::now();
    while metric(&s, "platepool_sms_queue_depth").await != 0.0 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "queue not emptied"
        );
        actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(metric(&s, "platepool_sms_sent_total").await >= 3.0);
    receiver.stop().await;
}
