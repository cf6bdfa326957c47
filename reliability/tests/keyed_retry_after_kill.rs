//! A keyed claim retried after a kill -9 gets its answer as soon as the node is ready: the
//! binary is killed at staggered moments right after a claim with an `Idempotency-Key` was
//! sent, restarted on the same folder, and the same request (same key) is sent again — first by
//! a caller that gives up at once, then for its answer. It must be answered — the claim, or a
//! refusal that says what happened — within a second of `/readyz`, never with 409
//! `in_progress` (nothing of the killed run, nor of the abandoned retry, is still being handled).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use platepool_reliability::http::Conn;
use platepool_reliability::power_loss::flow::{send, Flow};
use platepool_reliability::server::{free_port, Options, Server};
use platepool_reliability::storage;
use serde_json::{json, Value};

fn binary() -> std::path::PathBuf {
    storage::binary(false)
        .ok()
        .filter(|b| storage::binary_is_fresh(b))
        .map_or_else(|| storage::binary(true), Ok)
        .unwrap_or_else(|e| panic!("no platepool binary: {e}"))
}

fn keyed_claim(port: u16, token: &str, app: &str, serial: &str, key: &str) -> (u16, Value) {
    let mut conn = Conn::open(port).unwrap();
    let bearer = format!("Bearer {token}");
    let body = json!({ "serial": serial }).to_string();
    let a = conn
        .send(
            "POST",
            &format!("/v1/applications/{app}/claim"),
            &[
                ("Authorization", &bearer),
                ("Content-Type", "application/json"),
                ("Idempotency-Key", key),
            ],
            Some(body.as_bytes()),
        )
        .unwrap();
    (a.status, a.json())
}

/// Sends the keyed claim and closes the connection without reading the answer.
fn impatient_claim(port: u16, token: &str, app: &str, serial: &str, key: &str) {
    use std::io::Write;
    let body = json!({ "serial": serial }).to_string();
    let request = format!(
        "POST /v1/applications/{app}/claim HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Idempotency-Key: {key}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    drop(stream);
}

#[test]
fn a_keyed_claim_retried_after_kill_9_is_answered_at_once() {
    let bin = binary();
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::new(bin, dir.path().join("data"));
    let (mut server, _) = Server::start(&opts, free_port()).unwrap();
    let mut flow = Flow::default();
    flow.operator_setup(server.port, 8).unwrap();
    let mut answers = Vec::new();
    for round in 0..6u32 {
        let c = flow.citizen(server.port, round + 1).unwrap();
        let path = format!("/v1/applications/{}", c.app);
        let (draw, _) = send(
            server.port,
            &c.token,
            "POST",
            &format!("{path}/draws"),
            Some(&json!({"exclude_four": false})),
        )
        .unwrap();
        assert_eq!(draw.status, 201, "{}", draw.text());
        let first = &draw.json()["batch"]["plates"][0];
        let plate = first
            .as_str()
            .or_else(|| first["serial"].as_str())
            .unwrap()
            .to_string();
        let serial = plate.rsplit('·').next().unwrap().to_string();
        let (pick, _) = send(
            server.port,
            &c.token,
            "POST",
            &format!("{path}/candidates"),
            Some(&json!({ "serial": serial })),
        )
        .unwrap();
        assert_eq!(pick.status, 200, "{}", pick.text());
        // The claim goes out; the node dies a few milliseconds later (staggered by round: before,
        // during and after its group commit).
        let key = format!("claim-{round}");
        let (port, token, app, s, k) = (
            server.port,
            c.token.clone(),
            c.app.clone(),
            serial.clone(),
            key.clone(),
        );
        let first = std::thread::spawn(move || {
            let mut conn = Conn::open(port).ok()?;
            let bearer = format!("Bearer {token}");
            let body = json!({ "serial": s }).to_string();
            conn.send(
                "POST",
                &format!("/v1/applications/{app}/claim"),
                &[
                    ("Authorization", &bearer),
                    ("Content-Type", "application/json"),
                    ("Idempotency-Key", &k),
                ],
                Some(body.as_bytes()),
            )
            .ok()
        });
        std::thread::sleep(Duration::from_millis(u64::from(round) * 3));
        server.kill9().unwrap();
        let _ = first.join();
        let (restarted, _) = Server::start(&opts, free_port()).unwrap();
        server = restarted;
        let ready = Instant::now();
        // A first retry whose caller gives up at once (a closed tab, a client's timeout): its
        // request is read and its handler dropped mid-way.
        impatient_claim(server.port, &c.token, &c.app, &serial, &key);
        std::thread::sleep(Duration::from_millis(100));
        let (status, body) = keyed_claim(server.port, &c.token, &c.app, &serial, &key);
        let took = ready.elapsed();
        assert!(
            !(status == 409 && body["error"]["reason"] == "in_progress"),
            "round {round}: the retry after the restart got 409 in_progress: {body}"
        );
        assert!(
            status < 500,
            "round {round}: the retry got {status}: {body}"
        );
        assert!(
            took < Duration::from_secs(1),
            "round {round}: answered {took:?} after the node was ready"
        );
        if status == 201 {
            assert_eq!(body["claim"]["serial"], json!(serial), "{body}");
        }
        answers.push(status);
    }
    println!("answers to the retries after each kill: {answers:?}");
}
