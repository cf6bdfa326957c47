//! platepool behind real nginx (Debian's package, `.ci/install-nginx.sh`) running
//! `deploy/nginx/platepool.conf` (its ports and certificate paths replaced), with a self-signed
//! certificate made by openssl at test time. Over HTTPS through nginx:
//!
//! - the per-IP rate limit sees each client's address, walked from the right of the
//!   `X-Forwarded-For` chain nginx extends (the test client plays a trusted CDN in front of
//!   nginx): two clients behind the same proxies are limited apart;
//! - a request id sent by the client comes back and is in the binary's JSON log lines (the
//!   access line with the client's address among them);
//! - plain HTTP is redirected to HTTPS;
//! - the SMS webhook client speaks HTTPS: through nginx terminating TLS in front of a stand-in
//!   SMS service, a message arrives (signed) when the certificate's CA is configured, and is
//!   refused when it is not (the certificate is verified).
//!
//! Fails when nginx or openssl is missing.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use serde_json::Value;

mod process;
use process::{free_port, require, Platepool};

struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A self-signed certificate for 127.0.0.1 and localhost: (certificate, key) paths.
fn certificate(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let openssl = require("openssl", "apt-get install openssl");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new(openssl)
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        // Not a CA: the client trusts it as the server's own certificate.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// `deploy/nginx/platepool.conf` with the test's ports and files; each replaced line must be
/// there, so a change to the file that the test no longer covers fails here.
fn site_config(upstream: u16, https: u16, http: u16, cert: &Path, key: &Path) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nginx/platepool.conf");
    let mut text = std::fs::read_to_string(path).expect("read deploy/nginx/platepool.conf");
    let replacements = [
        (
            "server 127.0.0.1:8080;",
            format!("server 127.0.0.1:{upstream};"),
        ),
        ("listen 443 ssl;", format!("listen 127.0.0.1:{https} ssl;")),
        ("listen 80;", format!("listen 127.0.0.1:{http};")),
        (
            "/etc/ssl/platepool/fullchain.pem",
            cert.display().to_string(),
        ),
        ("/etc/ssl/platepool/privkey.pem", key.display().to_string()),
    ];
    for (from, to) in replacements {
        assert!(text.contains(from), "platepool.conf no longer has {from:?}");
        text = text.replace(from, &to);
    }
    text
}

/// nginx terminating TLS on `https` in front of plain HTTP on `upstream` (not the deployment's
/// site: the stand-in SMS service's).
fn tls_front(https: u16, upstream: u16, cert: &Path, key: &Path) -> String {
    format!(
        "server {{\n  listen 127.0.0.1:{https} ssl;\n  ssl_certificate {};\n  ssl_certificate_key {};\n\
           location / {{ proxy_pass http://127.0.0.1:{upstream}; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n}}\n",
        cert.display(),
        key.display()
    )
}

fn start_nginx(dir: &Path, site: &str, https: u16) -> Nginx {
    let nginx = require("nginx", ".ci/install-nginx.sh");
    std::fs::write(dir.join("platepool.conf"), site).expect("write site");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let d = dir.display();
    let conf = format!(
        "{user}worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
           include {d}/platepool.conf;\n}}\n",
        user = if root { "user root;\n" } else { "" },
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).expect("write nginx.conf");
    let child = Command::new(nginx)
        .arg("-c")
        .arg(&conf_path)
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start nginx");
    let nginx = Nginx(child);
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", https)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "nginx did not start: {}",
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    nginx
}

fn https_client(cert: &Path) -> awc::Client {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert).expect("read cert") {
        roots.add(c.expect("a certificate")).expect("add root");
    }
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    awc::Client::builder()
        .connector(awc::Connector::new().rustls_0_23(Arc::new(config)))
        .timeout(Duration::from_secs(30))
        .finish()
}

/// `POST /v1/vin/check` (limited per client address) through nginx as `forwarded_for`.
async fn vin_check(client: &awc::Client, https: u16, forwarded_for: Option<&str>) -> u16 {
    let mut req = client.post(format!("https://127.0.0.1:{https}/v1/vin/check"));
    if let Some(ip) = forwarded_for {
        req = req.insert_header(("X-Forwarded-For", ip));
    }
    let resp = req
        .send_json(&serde_json::json!({"vin": "LSVAU2180N2183294"}))
        .await
        .expect("request through nginx");
    resp.status().as_u16()
}

#[actix_rt::test]
async fn per_ip_limits_see_the_clients_address_through_nginx() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = certificate(dir.path());
    let server = Platepool::start(
        dir.path(),
        &["--log-format", "json"],
        &[
            ("PLATEPOOL_TRUSTED_PROXIES", "127.0.0.1/32"),
            ("PLATEPOOL_RATE_LIMIT_IP_PER_S", "1"),
        ],
    );
    let (https, http) = (free_port(), free_port());
    let site = site_config(server.port, https, http, &cert, &key);
    let _nginx = start_nginx(dir.path(), &site, https);
    let client = https_client(&cert);

    // Client A: its first call passes, the second within the second is limited.
    assert_eq!(vin_check(&client, https, Some("203.0.113.7")).await, 200);
    assert_eq!(vin_check(&client, https, Some("203.0.113.7")).await, 429);
    // Client B, behind the same proxies, has its own limit.
    assert_eq!(vin_check(&client, https, Some("203.0.113.8")).await, 200);
    // A client that writes a fake address left of its real one gains nothing: the walk stops at
    // the first hop that is not a trusted proxy (its real address, as the CDN appended it).
    assert_eq!(
        vin_check(&client, https, Some("198.51.100.1, 203.0.113.7")).await,
        429
    );

    // The request id goes through nginx and back, and into every log line of the request.
    let resp = client
        .get(format!("https://127.0.0.1:{https}/v1/offices"))
        .insert_header(("X-Request-Id", "edge-req-42"))
        .insert_header(("X-Forwarded-For", "203.0.113.9"))
        .send()
        .await
        .expect("request through nginx");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("edge-req-42")
    );
    // nginx makes an id when the client sends none.
    let resp = client
        .get(format!("https://127.0.0.1:{https}/healthz"))
        .send()
        .await
        .expect("request through nginx");
    let made = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok());
    assert!(made.is_some_and(|id| id.len() >= 16), "{made:?}");

    // Plain HTTP is redirected to HTTPS.
    let (status, head, _) = process::get(http, "/v1/offices").expect("plain HTTP");
    assert_eq!(status, 301, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("location: https://"),
        "{head}"
    );

    drop(_nginx);
    let log = server.log_text();
    drop(server);
    let access: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["span"]["request_id"] == "edge-req-42")
        .collect();
    assert!(
        !access.is_empty(),
        "no log line with the request id:\n{log}"
    );
    let line = access
        .iter()
        .find(|v| v["target"] == "platepool::access")
        .unwrap_or_else(|| panic!("no access line for the request:\n{log}"));
    assert_eq!(line["fields"]["route"], "/v1/offices", "{line}");
    assert_eq!(line["fields"]["status"], 200, "{line}");
    assert_eq!(line["fields"]["client"], "203.0.113.9", "{line}");
    assert!(line["fields"]["latency_ms"].as_f64().is_some(), "{line}");
    let limited = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["status"] == 429 && v["fields"]["client"] == "203.0.113.7")
        .count();
    assert_eq!(limited, 2, "{log}");
}

/// What the stand-in SMS service received: (signature header, body).
type Received = Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>;

async fn receive(
    received: actix_web::web::Data<Received>,
    req: actix_web::HttpRequest,
    body: actix_web::web::Bytes,
) -> actix_web::HttpResponse {
    let signature = req
        .headers()
        .get(platepool_gateway::sms_webhook::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    received
        .lock()
        .expect("lock")
        .push((signature, body.to_vec()));
    actix_web::HttpResponse::Ok().finish()
}

#[actix_rt::test]
async fn the_sms_webhook_client_speaks_verified_https() {
    use platepool_gateway::sms::{OutboxMessage, Purpose, SmsSender as _};
    use platepool_gateway::sms_webhook::{signature, WebhookSender};

    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = certificate(dir.path());
    let received: Received = Arc::default();
    let data = actix_web::web::Data::new(received.clone());
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(data.clone())
            .route("/sms", actix_web::web::post().to(receive))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .expect("bind the receiver");
    let upstream = server.addrs()[0].port();
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    let https = free_port();
    let _nginx = start_nginx(dir.path(), &tls_front(https, upstream, &cert, &key), https);
    let url = format!("https://localhost:{https}/sms");
    let secret = "https-webhook-secret-0123";
    let message = OutboxMessage {
        phone: "13800000001".into(),
        purpose: Purpose::Claimed,
        text: "claim over TLS".into(),
        sent_at: "2026-12-01T02:00:00Z".into(),
    };

    // Without the CA the self-signed certificate is refused: nothing arrives.
    let untrusting = WebhookSender::start(&url, secret, None).expect("client");
    let refused = untrusting.send(message.clone()).await;
    assert!(refused.is_err(), "an unknown certificate must be refused");
    assert!(received.lock().expect("lock").is_empty());

    // With it, the message arrives, signed.
    let ca = cert.display().to_string();
    let sender = WebhookSender::start(&url, secret, Some(&ca)).expect("client");
    sender.send(message.clone()).await.expect("sent over HTTPS");
    sender
        .send(message.clone())
        .await
        .expect("sent again on the pooled client");
    let got = received.lock().expect("lock").clone();
    assert_eq!(got.len(), 2);
    let (header, body) = &got[0];
    let sent: OutboxMessage = serde_json::from_slice(body).expect("JSON body");
    assert_eq!(sent, message);
    let t: u64 = header
        .strip_prefix("t=")
        .and_then(|h| h.split(',').next())
        .and_then(|t| t.parse().ok())
        .expect("a timestamp in the signature");
    assert_eq!(header, &signature(secret.as_bytes(), t, body));
    handle.stop(false).await;
}
