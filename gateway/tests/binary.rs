//! The real `platepool` binary: `serve --demo` on a free port and a temporary folder, the demo
//! office over HTTP, the citizen flow as far as it goes, SIGTERM with exit code 0, and a restart
//! on the same folder that finds everything again.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use platepool_gateway::demo;
use serde_json::{json, Value};

const OP: &str = "binary-test-operator-token";
const SECRET: &str = "binary-test-citizen-secret";

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
    fn start(dir: &std::path::Path) -> Server {
        let port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_platepool"))
            .args([
                "serve",
                "--demo",
                "--addr",
                &format!("127.0.0.1:{port}"),
                "--durability",
                "flush",
            ])
            .arg("--data-dir")
            .arg(dir)
            .env("PLATEPOOL_OPERATOR_TOKEN", OP)
            .env("PLATEPOOL_TOKEN_SECRET", SECRET)
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
        let server = Server {
            child,
            port,
            stdout,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok((200, _)) = http(self.port, "GET", "/readyz", None, None) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "the server never became ready; stdout:\n{}",
            self.stdout.lock().unwrap()
        );
    }

    fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        http(self.port, "GET", path, token, None).unwrap()
    }

    fn send(&self, method: &str, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        http(self.port, method, path, token, Some(&body)).unwrap()
    }

    /// SIGTERM, then the exit code.
    fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
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
}

/// The newest SMS code sent to `phone` for `purpose`, from the operator's outbox.
fn sms_code(server: &Server, phone: &str, purpose: &str) -> String {
    let (s, b) = server.get(&format!("/v1/admin/sms/outbox?phone={phone}"), Some(OP));
    assert_eq!(s, 200, "{b}");
    let text = b
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|m| m["purpose"] == purpose)
        .and_then(|m| m["text"].as_str())
        .unwrap_or_else(|| panic!("no {purpose} message for {phone}: {b}"))
        .to_string();
    text.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap_or_else(|| panic!("no 6-digit code in {text}"))
        .to_string()
}

fn serial_of(plate: &Value) -> String {
    plate
        .as_str()
        .or_else(|| plate["serial"].as_str())
        .unwrap_or_else(|| panic!("no serial in {plate}"))
        .to_string()
}

/// The available count per class from the pool notice.
fn pool_counts(server: &Server) -> Vec<(String, u64)> {
    std::thread::sleep(Duration::from_millis(150));
    let (s, b) = server.get("/v1/offices/maoming/pool", None);
    assert_eq!(s, 200, "{b}");
    b["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["class"].as_str().unwrap().to_string(),
                c["available"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_binary_serves_the_demo_stops_cleanly_and_keeps_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());

    // The banner: the operator token and a citizen token for the demo.
    let banner = server.stdout.lock().unwrap().clone();
    assert!(banner.contains(OP), "{banner}");
    assert!(banner.contains("citizen token"), "{banner}");
    let vehicles = demo::vehicles();
    assert!(banner.contains(&vehicles[0].vin), "{banner}");

    // Public pages.
    let (s, b) = server.get("/healthz", None);
    assert_eq!(s, 200, "{b}");
    let (s, b) = server.get("/v1/offices", None);
    assert_eq!(s, 200);
    assert_eq!(b[0]["id"], "maoming");
    assert_eq!(b[0]["prefix"], "粤K");
    let (s, b) = server.get("/v1/offices/maoming/notice", None);
    assert_eq!(
        (s, b["version"].as_str()),
        (200, Some(demo::NOTICE_VERSION))
    );
    let counts = pool_counts(&server);
    assert_eq!(
        counts,
        vec![
            ("small".to_string(), 20_000),
            ("small_new_energy".to_string(), 30_000)
        ]
    );
    let (s, b) = server.send(
        "POST",
        "/v1/vin/check",
        None,
        json!({"vin": vehicles[0].vin}),
    );
    assert_eq!((s, b["valid"].as_bool()), (200, Some(true)));
    let (s, b) = server.get("/v1/admin/blacklist", None);
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );

    // A citizen token minted by the operator API.
    let phone = "13800138123";
    let (s, b) = server.send(
        "POST",
        "/v1/admin/tokens",
        Some(OP),
        json!({"user": "bin_user", "phone": phone, "ttl_s": 3600}),
    );
    assert_eq!(s, 200, "{b}");
    let citizen = b["token"].as_str().unwrap().to_string();
    let (s, _) = server.get("/v1/admin/blacklist", Some(&citizen));
    assert_eq!(s, 403);

    // The citizen flow over real HTTP, as far as the citizen routes exist.
    let vehicle = &vehicles[0];
    let mut claimed: Option<String> = None;
    let (s, sent) = server.send(
        "POST",
        "/v1/sms",
        Some(&citizen),
        json!({"purpose": "apply"}),
    );
    if s == 404 {
        // The citizen routes are not there yet: the rest of the flow is for when they are.
        eprintln!("POST /v1/sms answered 404: citizen routes missing, flow skipped");
    } else {
        assert_eq!(s, 200, "{sent}");
        let code = sms_code(&server, phone, "apply");
        let (s, app) = server.send(
            "POST",
            "/v1/applications",
            Some(&citizen),
            json!({
                "office": "maoming", "vin": vehicle.vin, "voucher": vehicle.voucher,
                "notice_version": demo::NOTICE_VERSION, "sms_code": code,
            }),
        );
        assert_eq!(s, 201, "{app}");
        let id = app["id"].as_str().unwrap().to_string();
        assert_eq!(app["state"], "confirmed");

        let (s, sent) = server.send(
            "POST",
            "/v1/sms",
            Some(&citizen),
            json!({"purpose": "identity", "application": id}),
        );
        assert_eq!(s, 200, "{sent}");
        let wait = sent["confirm_after_ms"].as_u64().unwrap_or(5_000);
        std::thread::sleep(Duration::from_millis(wait + 100));
        let code = sms_code(&server, phone, "identity");
        let (s, b) = server.send(
            "POST",
            &format!("/v1/applications/{id}/identity"),
            Some(&citizen),
            json!({"sms_code": code}),
        );
        assert_eq!(s, 200, "{b}");

        let (s, draw) = server.send(
            "POST",
            &format!("/v1/applications/{id}/draws"),
            Some(&citizen),
            json!({"exclude_four": true}),
        );
        assert_eq!(s, 201, "{draw}");
        let plates = draw["batch"]["plates"].as_array().unwrap();
        assert_eq!(plates.len(), 10);
        let pick = serial_of(&plates[3]);
        assert!(!pick.contains('4'));
        let (s, b) = server.send(
            "POST",
            &format!("/v1/applications/{id}/candidates"),
            Some(&citizen),
            json!({"serial": pick}),
        );
        assert_eq!(s, 200, "{b}");
        let (s, b) = server.send(
            "POST",
            &format!("/v1/applications/{id}/claim"),
            Some(&citizen),
            json!({"serial": pick}),
        );
        assert_eq!(s, 201, "{b}");
        assert_eq!(b["claim"]["serial"], json!(pick));
        assert_eq!(b["claim"]["plate"], json!(format!("粤K·{pick}")));

        let (s, b) = server.send(
            "POST",
            "/v1/admin/registrations",
            Some(OP),
            json!({"office": "maoming", "serial": pick}),
        );
        assert_eq!((s, b["state"].as_str()), (200, Some("issued")), "{b}");
        claimed = Some(pick);
    }

    // An operator change that must survive the restart.
    let (s, b) = server.send(
        "DELETE",
        "/v1/admin/offices/maoming/plates/B0007",
        Some(OP),
        json!({}),
    );
    assert_eq!(s, 200, "{b}");
    let before = pool_counts(&server);
    let expected_small = 20_000 - 1 - u64::from(claimed.is_some());
    assert_eq!(before[0], ("small".to_string(), expected_small));

    assert_eq!(
        server.terminate(),
        Some(0),
        "SIGTERM must end the server with exit code 0"
    );

    // Restarted on the same folder: nothing seeded again, everything still there.
    let server = Server::start(dir.path());
    let banner = server.stdout.lock().unwrap().clone();
    assert!(banner.contains("already there"), "{banner}");
    assert_eq!(pool_counts(&server), before);
    let (s, b) = server.get("/v1/admin/audit?office=maoming&limit=1000", Some(OP));
    assert_eq!(s, 200);
    assert!(
        b["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "withdraw_number" && e["serial"] == "B0007"),
        "{b}"
    );
    if let Some(serial) = claimed {
        let (s, b) = server.get(
            &format!("/v1/admin/applications?vin={}", vehicle.vin),
            Some(OP),
        );
        assert_eq!(s, 200, "{b}");
        assert_eq!(b[0]["state"], "issued");
        assert_eq!(b[0]["claim"]["serial"], json!(serial));
    }
    let (s, b) = server.send(
        "DELETE",
        "/v1/admin/offices/maoming/plates/B0007",
        Some(OP),
        json!({}),
    );
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (409, Some("conflict")),
        "still withdrawn"
    );
    assert_eq!(server.terminate(), Some(0));
}
