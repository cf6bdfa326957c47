//! The SMS webhook client (`sms_webhook`): one HTTP client for the whole process, on its own
//! thread (`pp-sms`), keeping its connections to the SMS service open between messages; `http://`
//! or `https://` (rustls with ring; the public webpki roots, plus `sms_webhook_ca_file` for a
//! private CA). Every request is signed (docs/sms-webhook.md):
//!
//! `X-Platepool-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(sms_webhook_secret, "<t>.<body>")>`
//!
//! so the SMS service can refuse requests that are not the gateway's, or that are replayed late.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::LocalBoxFuture;
use hmac::{Hmac, Mac};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use sha2::Sha256;
use tokio::sync::{mpsc, oneshot};

use crate::sms::{OutboxMessage, SmsSender};

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "X-Platepool-Signature";
/// How long the SMS service may take to answer one request.
pub const WEBHOOK_TIMEOUT_MS: u64 = 5_000;

/// The signature header's value for `body` sent at `timestamp_s`.
pub fn signature(secret: &[u8], timestamp_s: u64, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(timestamp_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={timestamp_s},v1={hex}")
}

/// The public roots, and those of `ca_file` (PEM) when given.
pub fn load_roots(ca_file: Option<&str>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("sms_webhook_ca_file {path}: {e}"))?;
        let mut added = 0;
        for cert in certs {
            let cert = cert.map_err(|e| format!("sms_webhook_ca_file {path}: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("sms_webhook_ca_file {path}: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!("sms_webhook_ca_file {path}: no certificate in it"));
        }
    }
    Ok(roots)
}

/// rustls over ring: ring is in the tree already (jsonwebtoken); aws-lc-rs, rustls's choice for
/// post-quantum key exchange, would add a large C build for the one webhook connection.
#[allow(deprecated)]
fn tls_config(ca_file: Option<&str>) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(load_roots(ca_file)?)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// One message to post, and where its outcome goes.
struct Job {
    body: Vec<u8>,
    outcome: oneshot::Sender<Result<(), String>>,
}

/// Posts every message as JSON `{"phone","purpose","text","sent_at"}`, signed; any 2xx answer
/// counts as sent. Cheap to share: messages go to the client thread over a channel, which ends
/// when the last sender is dropped.
#[derive(Debug, Clone)]
pub struct WebhookSender {
    jobs: mpsc::UnboundedSender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("bytes", &self.body.len())
            .finish()
    }
}

impl WebhookSender {
    /// Starts the client thread.
    pub fn start(url: &str, secret: &str, ca_file: Option<&str>) -> Result<WebhookSender, String> {
        let tls = tls_config(ca_file)?;
        let (jobs, queue) = mpsc::unbounded_channel();
        let url = url.to_string();
        let secret = secret.as_bytes().to_vec();
        std::thread::Builder::new()
            .name("pp-sms".into())
            .spawn(move || {
                let system = actix_rt::System::new();
                system.block_on(run(queue, url, secret, tls));
            })
            .map_err(|e| format!("cannot start the SMS client thread: {e}"))?;
        Ok(WebhookSender { jobs })
    }
}

async fn run(
    mut queue: mpsc::UnboundedReceiver<Job>,
    url: String,
    secret: Vec<u8>,
    tls: Arc<ClientConfig>,
) {
    let client = awc::Client::builder()
        .connector(awc::Connector::new().rustls_0_23(tls))
        .timeout(Duration::from_millis(WEBHOOK_TIMEOUT_MS))
        .finish();
    let client = std::rc::Rc::new(client);
    let url: std::rc::Rc<str> = url.into();
    let secret: std::rc::Rc<[u8]> = secret.into();
    while let Some(job) = queue.recv().await {
        let (client, url, secret) = (client.clone(), url.clone(), secret.clone());
        actix_rt::spawn(async move {
            let outcome = post(&client, &url, &secret, job.body).await;
            let _ = job.outcome.send(outcome);
        });
    }
}

async fn post(client: &awc::Client, url: &str, secret: &[u8], body: Vec<u8>) -> Result<(), String> {
    let now_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let resp = client
        .post(url)
        .insert_header(("Content-Type", "application/json"))
        .insert_header((SIGNATURE_HEADER, signature(secret, now_s, &body)))
        .send_body(body)
        .await
        .map_err(|e| format!("webhook {url}: {e}"))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("webhook {url} answered {}", resp.status()))
    }
}

impl SmsSender for WebhookSender {
    fn send(&self, message: OutboxMessage) -> LocalBoxFuture<'static, Result<(), String>> {
        let (outcome, answer) = oneshot::channel();
        let queued = serde_json::to_vec(&message)
            .map_err(|e| e.to_string())
            .and_then(|body| {
                self.jobs
                    .send(Job { body, outcome })
                    .map_err(|_| "the SMS client thread has stopped".to_string())
            });
        Box::pin(async move {
            queued?;
            answer
                .await
                .map_err(|_| "the SMS client thread has stopped".to_string())?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_of_timestamp_dot_body() {
        // Known answer computed independently: HMAC-SHA256("key", "1700000000.{}").
        let got = signature(b"key", 1_700_000_000, b"{}");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key").expect("key");
        mac.update(b"1700000000.{}");
        let want: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(got, format!("t=1700000000,v1={want}"));
        assert_ne!(signature(b"key", 1_700_000_001, b"{}"), got);
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").expect("write");
        assert!(load_roots(path.to_str()).is_err());
        assert!(load_roots(Some("/nonexistent/ca.pem")).is_err());
        assert!(load_roots(None).expect("public roots").len() > 50);
    }
}
