//! The real `platepool` binary, started by the test on a free loopback port over a temporary
//! folder, driven over real HTTP:
//!
//! - at its default durability (fsync), a citizen walks the flow to a claim (the SMS codes read
//!   from the operator's outbox); the process is killed with SIGKILL right after the claim's
//!   201, and a restart on the same folder shows the same claim, quotas as debited and the number
//!   out of the pool;
//! - SIGTERM stops it with exit code 0 after flushing what it acknowledged, and a restart on the
//!   same folder finds the demo and the operator's change again.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use platepool_gateway::demo;
use serde_json::{json, Value};

const OP: &str = "binary-test-operator-token";
const SECRET: &str = "binary-test-citizen-secret";

/// How long a start (demo seed or recovery, debug build, busy CI machine) may take.
const READY_WITHIN: Duration = Duration::from_secs(120);

/// One HTTP/1.1 exchange on a fresh connection: (status, body as JSON or `Value::String`).
fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> std::io::Result<(u16, Value)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if body.is_some() {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", payload.len()));
    stream.write_all(head.as_bytes())?;
    stream.write_all(payload.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    let headers = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw[split + 4..].to_vec();
    let status: u16 = headers
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line: {headers}")))?;
    if headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    let text = String::from_utf8_lossy(&body).to_string();
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = end + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The server process; killed if the test fails before it stops it.
struct Server {
    child: Child,
    port: u16,
    stdout: Arc<Mutex<String>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// `platepool serve --demo` on a free loopback port over `dir`, with `extra` flags; returns
    /// once `/readyz` answers 200.
    fn start(dir: &Path, extra: &[&str]) -> Server {
        let port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_platepool"))
            .args(["serve", "--demo", "--addr", &format!("127.0.0.1:{port}")])
            .args(extra)
            .arg("--data-dir")
            .arg(dir)
            .env("PLATEPOOL_OPERATOR_TOKEN", OP)
            .env("PLATEPOOL_TOKEN_SECRET", SECRET)
            // Nothing from the environment the test runs in changes what is tested.
            .env_remove("PLATEPOOL_DURABILITY")
            .env_remove("PLATEPOOL_DATA_DIR")
            .env_remove("PLATEPOOL_ADDR")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = Arc::new(Mutex::new(String::new()));
        let pipe = child.stdout.take().unwrap();
        let sink = stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut server = Server {
            child,
            port,
            stdout,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_WITHIN;
        while Instant::now() < deadline {
            if let Ok((200, _)) = http(self.port, "GET", "/readyz", None, None) {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "the server exited ({status}) before it was ready; stdout:\n{}",
                    self.banner()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "the server was not ready within {READY_WITHIN:?}; stdout:\n{}",
            self.banner()
        );
    }

    fn banner(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        http(self.port, "GET", path, token, None)
            .unwrap_or_else(|e| panic!("GET {path}: no answer: {e}"))
    }

    fn send(&self, method: &str, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        http(self.port, method, path, token, Some(&body))
            .unwrap_or_else(|e| panic!("{method} {path}: no answer: {e}"))
    }

    /// A step of a flow: the request must answer `want`; the body is returned. A failure names
    /// the step, the request and what came back.
    fn step(
        &self,
        step: &str,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        want: u16,
    ) -> Value {
        let (status, answer) = match body {
            Some(b) => self.send(method, path, token, b),
            None => self.get(path, token),
        };
        assert_eq!(
            status, want,
            "{step}: {method} {path} answered {status}, not {want}: {answer}"
        );
        answer
    }

    /// SIGTERM, then the exit code.
    fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "the server did not stop within 60 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no handler runs, nothing is flushed on the way out.
    fn kill(mut self) -> ExitStatus {
        self.child.kill().unwrap();
        self.child.wait().unwrap()
    }
}

/// The newest SMS code sent to `phone` for `purpose`, from the operator's outbox.
fn sms_code(server: &Server, phone: &str, purpose: &str) -> String {
    let b = server.step(
        &format!("reading the {purpose} code from the outbox"),
        "GET",
        &format!("/v1/admin/sms/outbox?phone={phone}"),
        Some(OP),
        None,
        200,
    );
    let text = b
        .as_array()
        .unwrap_or_else(|| panic!("the outbox is not a list: {b}"))
        .iter()
        .rev()
        .find(|m| m["purpose"] == purpose)
        .and_then(|m| m["text"].as_str())
        .unwrap_or_else(|| panic!("no {purpose} message for {phone} in the outbox: {b}"))
        .to_string();
    text.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap_or_else(|| panic!("no 6-digit code in {text:?}"))
        .to_string()
}

fn serial_of(plate: &Value) -> String {
    plate
        .as_str()
        .or_else(|| plate["serial"].as_str())
        .unwrap_or_else(|| panic!("no serial in {plate}"))
        .to_string()
}

/// The longest run of one digit in `serial` (the demo office denies 3 in custom checks).
fn longest_digit_run(serial: &str) -> usize {
    let (mut best, mut run, mut last) = (0, 0, None);
    for c in serial.chars() {
        if c.is_ascii_digit() && Some(c) == last {
            run += 1;
        } else {
            run = usize::from(c.is_ascii_digit());
        }
        last = Some(c);
        best = best.max(run);
    }
    best
}

/// The available count per class from the pool notice, once every change acknowledged before
/// the call is in it (the notice may lag 100 ms).
fn pool_counts(server: &Server) -> Vec<(String, u64)> {
    std::thread::sleep(Duration::from_millis(150));
    let b = server.step(
        "the pool notice",
        "GET",
        "/v1/offices/maoming/pool",
        None,
        None,
        200,
    );
    b["classes"]
        .as_array()
        .unwrap_or_else(|| panic!("no classes in the pool notice: {b}"))
        .iter()
        .map(|c| {
            (
                c["class"].as_str().unwrap().to_string(),
                c["available"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn small_counts(available_small: u64) -> Vec<(String, u64)> {
    vec![
        ("small".to_string(), available_small),
        ("small_new_energy".to_string(), 30_000),
    ]
}

/// A citizen token minted by the operator API.
fn citizen_token(server: &Server, user: &str, phone: &str) -> String {
    let b = server.step(
        "minting a citizen token",
        "POST",
        "/v1/admin/tokens",
        Some(OP),
        Some(json!({"user": user, "phone": phone, "ttl_s": 3600})),
        200,
    );
    b["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token in {b}"))
        .to_string()
}

#[test]
fn a_claim_acknowledged_at_default_durability_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    // No --durability: the default (fsync before every acknowledgement) is what is tested.
    let server = Server::start(dir.path(), &[]);
    assert!(
        server.banner().contains("seeded now"),
        "{}",
        server.banner()
    );
    assert_eq!(pool_counts(&server), small_counts(20_000));

    let phone = "13800138124";
    let citizen = citizen_token(&server, "kill_user", phone);
    let vehicle = &demo::vehicles()[0];
    assert_eq!(vehicle.class, "small");

    // Stage 1: apply with the code the outbox holds.
    server.step(
        "apply code",
        "POST",
        "/v1/sms",
        Some(&citizen),
        Some(json!({"purpose": "apply"})),
        200,
    );
    let code = sms_code(&server, phone, "apply");
    let app = server.step(
        "applying",
        "POST",
        "/v1/applications",
        Some(&citizen),
        Some(json!({
            "office": "maoming", "vin": vehicle.vin, "voucher": vehicle.voucher,
            "notice_version": demo::NOTICE_VERSION, "sms_code": code,
        })),
        201,
    );
    assert_eq!(app["state"], "confirmed", "{app}");
    let id = app["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {app}"))
        .to_string();
    let app_path = format!("/v1/applications/{id}");

    // Identity: the code may be submitted once `confirm_after_ms` (the office's delay) is over.
    let sent = server.step(
        "identity code",
        "POST",
        "/v1/sms",
        Some(&citizen),
        Some(json!({"purpose": "identity", "application": id})),
        200,
    );
    let wait = sent["confirm_after_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("no confirm_after_ms in {sent}"));
    assert!(wait <= 10_000, "the demo office's delay is 5 s: {sent}");
    std::thread::sleep(Duration::from_millis(wait + 100));
    let code = sms_code(&server, phone, "identity");
    server.step(
        "identity",
        "POST",
        &format!("{app_path}/identity"),
        Some(&citizen),
        Some(json!({"sms_code": code})),
        200,
    );

    // Stage 2: one random draw, a candidate, the claim.
    let draw = server.step(
        "drawing",
        "POST",
        &format!("{app_path}/draws"),
        Some(&citizen),
        Some(json!({"exclude_four": true})),
        201,
    );
    assert_eq!(draw["random_left"], 4, "{draw}");
    let plates: Vec<String> = draw["batch"]["plates"]
        .as_array()
        .unwrap_or_else(|| panic!("no batch in {draw}"))
        .iter()
        .map(serial_of)
        .collect();
    assert_eq!(plates.len(), 10, "{draw}");
    assert!(plates.iter().all(|p| !p.contains('4')), "{plates:?}");
    // A number a custom check may name (no three identical digits), for the check after the
    // restart.
    let pick = plates
        .iter()
        .find(|p| longest_digit_run(p) < 3)
        .unwrap_or_else(|| panic!("every drawn number has three identical digits: {plates:?}"))
        .clone();
    server.step(
        "picking a candidate",
        "POST",
        &format!("{app_path}/candidates"),
        Some(&citizen),
        Some(json!({"serial": pick})),
        200,
    );
    let claimed = server.step(
        "claiming",
        "POST",
        &format!("{app_path}/claim"),
        Some(&citizen),
        Some(json!({"serial": pick})),
        201,
    );
    // Killed the moment the claim is acknowledged: whatever the restart shows was on disk then.
    let status = server.kill();
    assert_eq!(status.signal(), Some(9), "killed by SIGKILL: {status}");

    let claim = &claimed["claim"];
    assert_eq!(claim["serial"], json!(pick), "{claimed}");
    assert_eq!(claim["plate"], json!(format!("粤K·{pick}")), "{claimed}");
    assert_eq!(claimed["state"], "claimed", "{claimed}");
    let voucher_serial = claim["voucher"]["serial"].clone();
    let voucher_code = claim["voucher"]["code"].clone();
    assert!(
        voucher_serial.as_str().is_some_and(|s| !s.is_empty())
            && voucher_code.as_str().is_some_and(|s| !s.is_empty()),
        "a claim carries its voucher's serial and code: {claimed}"
    );

    // Restarted on the same folder: the demo is not seeded again and the claim is there.
    let server = Server::start(dir.path(), &[]);
    let banner = server.banner();
    assert!(banner.contains("already there"), "{banner}");

    // The citizen's view.
    let seen = server.step(
        "the citizen's application after the restart",
        "GET",
        &app_path,
        Some(&citizen),
        None,
        200,
    );
    assert_eq!(seen["id"], json!(id), "{seen}");
    assert_eq!(seen["state"], "claimed", "{seen}");
    assert_eq!(seen["claim"]["serial"], json!(pick), "{seen}");
    assert_eq!(seen["claim"]["plate"], claim["plate"], "{seen}");
    assert_eq!(seen["claim"]["voucher"]["serial"], voucher_serial, "{seen}");
    assert_eq!(seen["claim"]["voucher"]["code"], voucher_code, "{seen}");
    assert_eq!(seen["claim"]["claimed_at"], claim["claimed_at"], "{seen}");
    assert_eq!(seen["claim"]["register_by"], claim["register_by"], "{seen}");
    assert_eq!(
        (&seen["random_left"], &seen["custom_left"]),
        (&json!(4), &json!(20)),
        "one draw debited, no custom check: {seen}"
    );

    // The operator's look-ups, by VIN and by serial.
    let by_vin = server.step(
        "operator look-up by VIN",
        "GET",
        &format!("/v1/admin/applications?vin={}", vehicle.vin),
        Some(OP),
        None,
        200,
    );
    let by_serial = server.step(
        "operator look-up by serial",
        "GET",
        &format!("/v1/admin/applications?serial={pick}&office=maoming"),
        Some(OP),
        None,
        200,
    );
    for found in [&by_vin, &by_serial] {
        let list = found
            .as_array()
            .unwrap_or_else(|| panic!("not a list: {found}"));
        assert_eq!(list.len(), 1, "{found}");
        let a = &list[0];
        assert_eq!(a["id"], json!(id), "{found}");
        assert_eq!(a["state"], "claimed", "{found}");
        assert_eq!(a["vin"], json!(vehicle.vin), "{found}");
        assert_eq!(a["claim"]["serial"], json!(pick), "{found}");
        assert_eq!(a["claim"]["voucher"]["serial"], voucher_serial, "{found}");
        assert_eq!(a["claim"]["voucher"]["code"], voucher_code, "{found}");
        assert_eq!(
            (&a["random_left"], &a["custom_left"]),
            (&json!(4), &json!(20))
        );
    }

    // The number is out of the pool: one fewer small number available, none held (the draw's
    // other nine went back at the claim), and a check of it finds it taken.
    assert_eq!(pool_counts(&server), small_counts(19_999));
    let stats = server.step(
        "office stats",
        "GET",
        "/v1/admin/offices/maoming/stats",
        Some(OP),
        None,
        200,
    );
    let small = stats["classes"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["class"] == "small"))
        .unwrap_or_else(|| panic!("no small class in {stats}"));
    assert_eq!(
        (&small["available"], &small["held"], &small["claimed"]),
        (&json!(19_999), &json!(0), &json!(1)),
        "{stats}"
    );
    let practice = server.step(
        "a practice application",
        "POST",
        "/v1/practice",
        Some(&citizen),
        Some(json!({"office": "maoming", "class": "small"})),
        201,
    );
    let practice_id = practice["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {practice}"));
    let check = server.step(
        "a custom check of the claimed number",
        "POST",
        &format!("/v1/applications/{practice_id}/custom"),
        Some(&citizen),
        Some(json!({"plates": [pick]})),
        409,
    );
    assert_eq!(check["error"]["code"], "not_available", "{check}");
    let results = check["error"]["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {check}"));
    assert_eq!(results.len(), 1, "{check}");
    assert_eq!(
        (&results[0]["serial"], &results[0]["reason"]),
        (&json!(pick), &json!("taken")),
        "{check}"
    );

    assert_eq!(
        server.terminate(),
        Some(0),
        "SIGTERM must end the restarted server with exit code 0"
    );
}

#[test]
fn sigterm_flushes_and_exits_0_and_a_restart_keeps_the_state() {
    let dir = tempfile::tempdir().unwrap();
    // With `none` no acknowledgement waits for a flush (sled writes its buffers every 500 ms):
    // a change made just before SIGTERM is on disk after the restart only because the stop
    // flushed it (or the timer happened to).
    let server = Server::start(dir.path(), &["--durability", "none"]);

    // The banner: the operator token and a citizen token for the demo.
    let banner = server.banner();
    assert!(banner.contains(OP), "{banner}");
    assert!(banner.contains("citizen token"), "{banner}");
    assert!(banner.contains("seeded now"), "{banner}");
    let vehicles = demo::vehicles();
    assert!(banner.contains(&vehicles[0].vin), "{banner}");

    // The web pages the binary serves from itself, and the banner saying where to open them.
    assert!(banner.contains("/console/"), "{banner}");
    let page = server.step("citizen page", "GET", "/", None, None, 200);
    assert!(
        page.as_str().is_some_and(|h| h.contains("app.js")),
        "{page}"
    );
    server.step("console page", "GET", "/console/", None, None, 200);

    // Public pages.
    server.step("healthz", "GET", "/healthz", None, None, 200);
    let b = server.step("offices", "GET", "/v1/offices", None, None, 200);
    assert_eq!(b[0]["id"], "maoming", "{b}");
    assert_eq!(b[0]["prefix"], "粤K", "{b}");
    let b = server.step(
        "notice",
        "GET",
        "/v1/offices/maoming/notice",
        None,
        None,
        200,
    );
    assert_eq!(b["version"].as_str(), Some(demo::NOTICE_VERSION), "{b}");
    let before = pool_counts(&server);
    assert_eq!(before, small_counts(20_000));
    let b = server.step(
        "VIN check",
        "POST",
        "/v1/vin/check",
        None,
        Some(json!({"vin": vehicles[0].vin})),
        200,
    );
    assert_eq!(b["valid"].as_bool(), Some(true), "{b}");

    // The operator API: no token 401, a citizen token 403.
    let (s, b) = server.get("/v1/admin/blacklist", None);
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let citizen = citizen_token(&server, "term_user", "13800138123");
    let (s, b) = server.get("/v1/admin/blacklist", Some(&citizen));
    assert_eq!((s, b["error"]["code"].as_str()), (403, Some("forbidden")));

    // An operator change, and SIGTERM the moment it is acknowledged.
    server.step(
        "withdrawing B0007",
        "DELETE",
        "/v1/admin/offices/maoming/plates/B0007",
        Some(OP),
        Some(json!({})),
        200,
    );
    assert_eq!(
        server.terminate(),
        Some(0),
        "SIGTERM must end the server with exit code 0"
    );

    // Restarted on the same folder: nothing seeded again, the withdrawal still there.
    let server = Server::start(dir.path(), &["--durability", "none"]);
    let banner = server.banner();
    assert!(banner.contains("already there"), "{banner}");
    assert_eq!(pool_counts(&server), small_counts(19_999));
    let b = server.step(
        "audit",
        "GET",
        "/v1/admin/audit?office=maoming&limit=1000",
        Some(OP),
        None,
        200,
    );
    assert!(
        b["entries"]
            .as_array()
            .unwrap_or_else(|| panic!("no entries in {b}"))
            .iter()
            .any(|e| e["action"] == "withdraw_number" && e["serial"] == "B0007"),
        "{b}"
    );
    let b = server.step(
        "withdrawing B0007 again",
        "DELETE",
        "/v1/admin/offices/maoming/plates/B0007",
        Some(OP),
        Some(json!({})),
        409,
    );
    assert_eq!(b["error"]["code"], "conflict", "still withdrawn: {b}");
    assert_eq!(server.terminate(), Some(0));
}
