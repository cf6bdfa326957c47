//! SPEC T1 through the real `platepool` binary under libfaketime (Debian's `faketime`): the
//! process's wall clock is stepped while it serves (`FAKETIME_TIMESTAMP_FILE` re-read on every
//! reading, `DONT_FAKE_MONOTONIC=1` so its monotonic clock stays real), and over HTTP:
//!
//! - a step of −1 hour: a live 90-second batch does not gain the hour, `/readyz` says
//!   `degraded`, `/metrics` counts the step; the wall clock set right again ends it;
//! - a step of +30 days: no claim lapses, nobody is blacklisted, the batch still expires on
//!   time; after `POST /v1/admin/clock/confirm` (audited) engine time jumps, the batch keeps
//!   what it had left, and the claim lapses and its citizen is blacklisted.
//!
//! The test fails when libfaketime is missing (`.ci/install-faketime.sh` installs it).
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use platepool_gateway::demo;
use serde_json::{json, Value};

const OP: &str = "clock-test-operator-token";
const SECRET: &str = "clock-test-citizen-secret";
const READY_WITHIN: Duration = Duration::from_secs(120);
const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;
/// The demo office's random batch life.
const BATCH_TTL_MS: u64 = 90_000;

fn libfaketime() -> PathBuf {
    for dir in [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib",
    ] {
        let lib = Path::new(dir).join("faketime/libfaketime.so.1");
        if lib.exists() {
            return lib;
        }
    }
    panic!("libfaketime is missing: install Debian's faketime package (.ci/install-faketime.sh)");
}

/// One HTTP/1.1 exchange: (status, body as JSON, or as a string when it is not JSON).
fn http(port: u16, method: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    head.push_str("Content-Length: 0\r\n\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let headers = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = headers.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = String::from_utf8_lossy(&raw[split + 4..]).to_string();
    assert!(
        !headers.to_ascii_lowercase().contains("chunked"),
        "{method} {path}: a chunked answer: {headers}"
    );
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

fn send(port: u16, method: &str, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let payload = body.to_string();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n", payload.len());
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(payload.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let headers = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = headers.split_whitespace().nth(1).unwrap().parse().unwrap();
    let text = String::from_utf8_lossy(&raw[split + 4..]).to_string();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The binary under libfaketime, its wall-clock offset in `spec` (re-read at every reading).
struct Server {
    child: Child,
    port: u16,
    spec: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(dir: &Path) -> Server {
        let lib = libfaketime();
        let spec = dir.join("faketime-offset");
        std::fs::write(&spec, "+0\n").unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_platepool"))
            .args(["serve", "--demo", "--addr", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .env("PLATEPOOL_OPERATOR_TOKEN", OP)
            .env("PLATEPOOL_TOKEN_SECRET", SECRET)
            .env_remove("PLATEPOOL_DURABILITY")
            .env_remove("PLATEPOOL_CLOCK_STEP_BOUND_MS")
            .env("RUST_LOG", "warn")
            .env("LD_PRELOAD", &lib)
            .env("FAKETIME_TIMESTAMP_FILE", &spec)
            .env("FAKETIME_NO_CACHE", "1")
            .env("DONT_FAKE_MONOTONIC", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut server = Server { child, port, spec };
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok()
                && http(port, "GET", "/readyz", None).0 == 200
            {
                return server;
            }
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("the server exited ({status}) before it was ready");
            }
            assert!(
                Instant::now() < deadline,
                "not ready within {READY_WITHIN:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sets the process's wall clock `offset_ms` away from the real one.
    fn set_offset(&self, offset_ms: i64) {
        let hours = offset_ms / HOUR_MS;
        assert_eq!(hours * HOUR_MS, offset_ms, "whole hours only");
        std::fs::write(&self.spec, format!("{hours:+}h\n")).unwrap();
        // One reading of the clock after the change makes the step seen.
        std::thread::sleep(Duration::from_millis(300));
    }

    fn get(&self, path: &str, token: Option<&str>) -> Value {
        let (status, body) = http(self.port, "GET", path, token);
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    fn post(&self, path: &str, token: Option<&str>, body: Value, want: u16) -> Value {
        let (status, answer) = send(self.port, "POST", path, token, &body);
        assert_eq!(status, want, "POST {path}: {answer}");
        answer
    }

    fn citizen_token(&self, user: &str, phone: &str) -> String {
        let body = json!({"user": user, "phone": phone, "ttl_s": 3600});
        let b = self.post("/v1/admin/tokens", Some(OP), body, 200);
        b["token"].as_str().unwrap().to_string()
    }

    fn sms_code(&self, phone: &str, purpose: &str) -> String {
        let b = self.get(&format!("/v1/admin/sms/outbox?phone={phone}"), Some(OP));
        let text = b
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|m| m["purpose"] == purpose)
            .and_then(|m| m["text"].as_str())
            .unwrap_or_else(|| panic!("no {purpose} code for {phone}: {b}"))
            .to_string();
        text.split(|c: char| !c.is_ascii_digit())
            .find(|w| w.len() == 6)
            .unwrap()
            .to_string()
    }

    /// The operator's view of the application of `vin`.
    fn application(&self, vin: &str) -> Value {
        let list = self.get(&format!("/v1/admin/applications?vin={vin}"), Some(OP));
        list.as_array().unwrap()[0].clone()
    }

    fn ready(&self) -> Value {
        self.get("/readyz", None)
    }

    fn metric(&self, name: &str) -> f64 {
        let (status, text) = http(self.port, "GET", "/metrics", None);
        assert_eq!(status, 200);
        let text = text.as_str().unwrap().to_string();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in /metrics"))
            .trim()
            .parse()
            .unwrap()
    }
}

/// Two citizens with verified identity: (token, application id) each.
fn two_selecting_citizens(server: &Server) -> Vec<(String, String)> {
    let vehicles = demo::vehicles();
    let people = [("clock_a", "13800138301", 0), ("clock_b", "13800138302", 1)];
    let mut out = Vec::new();
    for (user, phone, v) in people {
        let token = server.citizen_token(user, phone);
        server.post("/v1/sms", Some(&token), json!({"purpose": "apply"}), 200);
        let code = server.sms_code(phone, "apply");
        let vehicle = &vehicles[v];
        let app = server.post(
            "/v1/applications",
            Some(&token),
            json!({"office": "maoming", "vin": vehicle.vin, "voucher": vehicle.voucher,
                   "notice_version": demo::NOTICE_VERSION, "sms_code": code}),
            201,
        );
        let id = app["id"].as_str().unwrap().to_string();
        let body = json!({"purpose": "identity", "application": id});
        server.post("/v1/sms", Some(&token), body, 200);
        out.push((token, id));
    }
    // The demo office accepts identity codes 5 s after they are sent.
    std::thread::sleep(Duration::from_millis(5_300));
    for ((token, id), (_, phone, _)) in out.iter().zip(people) {
        let code = server.sms_code(phone, "identity");
        let path = format!("/v1/applications/{id}/identity");
        server.post(&path, Some(token), json!({"sms_code": code}), 200);
    }
    out
}

fn left_ms(app: &Value) -> u64 {
    app["batch"]["expires_in_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("no live batch: {app}"))
}

#[test]
fn wall_clock_steps_of_minus_an_hour_and_plus_thirty_days_while_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let vehicles = demo::vehicles();
    let (vin_a, vin_b) = (vehicles[0].vin.clone(), vehicles[1].vin.clone());
    let citizens = two_selecting_citizens(&server);
    let ((token_a, app_a), (token_b, app_b)) = (&citizens[0], &citizens[1]);

    // A claims a number; B holds a fresh batch.
    let draw = server.post(
        &format!("/v1/applications/{app_a}/draws"),
        Some(token_a),
        json!({"exclude_four": false}),
        201,
    );
    let serial = draw["batch"]["plates"][0]["serial"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/v1/applications/{app_a}/candidates");
    server.post(&path, Some(token_a), json!({"serial": serial}), 200);
    let path = format!("/v1/applications/{app_a}/claim");
    let claimed = server.post(&path, Some(token_a), json!({"serial": serial}), 201);
    assert_eq!(claimed["state"], "claimed", "{claimed}");
    let path = format!("/v1/applications/{app_b}/draws");
    server.post(&path, Some(token_b), json!({"exclude_four": false}), 201);
    assert!(left_ms(&server.application(&vin_b)) <= BATCH_TTL_MS);
    assert_eq!(server.ready()["status"], "ready");
    assert_eq!(server.metric("platepool_clock_steps_total"), 0.0);

    // −1 hour: the batch does not gain the hour.
    server.set_offset(-HOUR_MS);
    let ready = server.ready();
    assert_eq!(ready["status"], "degraded", "{ready}");
    let offset = ready["clock"]["offset_ms"].as_i64().unwrap();
    assert!((offset + HOUR_MS).abs() < 5_000, "{ready}");
    let left = left_ms(&server.application(&vin_b));
    assert!(
        left <= BATCH_TTL_MS,
        "a hold stretched by the step: {left} ms left"
    );
    assert_eq!(server.metric("platepool_clock_steps_total"), 1.0);
    assert_eq!(server.metric("platepool_clock_degraded"), 1.0);
    // Set right again: the clock agrees, nothing to confirm.
    server.set_offset(0);
    assert_eq!(server.ready()["status"], "ready");
    assert_eq!(server.metric("platepool_clock_degraded"), 0.0);
    server.post("/v1/admin/clock/confirm", Some(OP), json!({}), 409);

    // +30 days: no lapse, no blacklist, the batch runs on the monotonic clock.
    server.set_offset(30 * DAY_MS);
    let ready = server.ready();
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["clock"]["steps"], 2, "{ready}");
    assert_eq!(server.application(&vin_a)["state"], "claimed");
    assert_eq!(server.get("/v1/admin/blacklist", Some(OP)), json!([]));
    let before = left_ms(&server.application(&vin_b));
    assert!(before > 0 && before <= BATCH_TTL_MS, "{before}");
    assert_eq!(server.metric("platepool_clock_steps_total"), 2.0);
    // A citizen's token is judged on engine time too: still valid.
    server.get(&format!("/v1/applications/{app_a}"), Some(token_a));

    // The operator confirms: the batch keeps what it had, the claim lapses.
    let confirmed = server.post("/v1/admin/clock/confirm", Some(OP), json!({}), 200);
    let jump = confirmed["jump_ms"].as_i64().unwrap();
    assert!((jump - 30 * DAY_MS).abs() < 5_000, "{confirmed}");
    assert_eq!(server.ready()["status"], "ready");
    assert_eq!(server.metric("platepool_clock_degraded"), 0.0);
    let after = left_ms(&server.application(&vin_b));
    assert!(
        after <= before && before - after < 5_000,
        "the batch had {before} ms left, then {after} ms"
    );
    assert_eq!(server.application(&vin_a)["state"], "lapsed");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed = server.get("/v1/admin/blacklist", Some(OP));
        if listed
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["user"] == "clock_a")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "clock_a not blacklisted: {listed}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let audit = server.get("/v1/admin/audit", Some(OP));
    let text = audit.to_string();
    assert!(
        text.contains("confirm_clock"),
        "no confirmation in the audit trail: {audit}"
    );
}
