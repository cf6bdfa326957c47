//! Keyed retries after a kill -9 between "durable" and "answered", through the real binary.
//!
//! The node runs on a slow disk: under strace (Debian's package; the test fails when it is
//! missing), every `fsync` and `fdatasync` returns [`SLOW_SYNC`] after it is done
//! (`inject=…:delay_exit`). A keyed request sent to it is on the device that long before the
//! node can answer it, and the node is killed in the middle of that: the change is durable,
//! its answer never went out, and the key's marker says "pending". Then:
//!
//! - **a keyed claim** is retried after the restart, first by a caller that goes away (its
//!   connection reset) while the node re-marks the key for itself, then for its answer: it must
//!   be the claim (201), within a second of `/readyz`, never 409 `in_progress`;
//! - **a keyed draw** (a quota debit) is retried after the restart: it must get 409 `conflict`
//!   with `reason: "interrupted"` (it cannot know whether the first attempt debited), and the
//!   application must show the quota debited once, not twice.
//!
//! Each premise is checked, not assumed: the change is there after the restart and the killed
//! request got no answer.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::time::{Duration, Instant};

use platepool_reliability::power_loss::flow::{send, Citizen, Flow};
use platepool_reliability::power_loss::strace;
use platepool_reliability::server::{free_port, Options, Server};
use platepool_reliability::storage;
use serde_json::{json, Value};

/// How long after each sync of the slow disk the node learns it is done.
const SLOW_SYNC: Duration = Duration::from_millis(300);

fn binary() -> std::path::PathBuf {
    storage::binary(false)
        .ok()
        .filter(|b| storage::binary_is_fresh(b))
        .map_or_else(|| storage::binary(true), Ok)
        .unwrap_or_else(|e| panic!("no platepool binary: {e}"))
}

/// The node on a slow disk: strace delays the return of every sync.
fn on_slow_disk(opts: &Options) -> Options {
    let mut slow = opts.clone();
    slow.wrapper = [
        "strace",
        "-f",
        "--seccomp-bpf",
        "-o",
        "/dev/null",
        "-e",
        "trace=fsync,fdatasync",
        "-e",
        &format!(
            "inject=fsync,fdatasync:delay_exit={}",
            SLOW_SYNC.as_micros()
        ),
        "--",
    ]
    .map(String::from)
    .to_vec();
    slow
}

fn post(port: u16, c: &Citizen, what: &str, body: &Value, key: Option<&str>) -> (u16, Value) {
    let mut conn = platepool_reliability::http::Conn::open(port).unwrap();
    let bearer = format!("Bearer {}", c.token);
    let mut headers = vec![
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    if let Some(k) = key {
        headers.push(("Idempotency-Key", k));
    }
    let a = conn
        .send(
            "POST",
            &format!("/v1/applications/{}/{what}", c.app),
            &headers,
            Some(body.to_string().as_bytes()),
        )
        .unwrap();
    (a.status, a.json())
}

fn view(port: u16, c: &Citizen) -> Value {
    let (a, _) = send(
        port,
        &c.token,
        "GET",
        &format!("/v1/applications/{}", c.app),
        None,
    )
    .unwrap();
    assert_eq!(a.status, 200, "{}", a.text());
    a.json()
}

/// The raw request of a keyed call.
fn keyed_request(port: u16, c: &Citizen, what: &str, body: &Value, key: &str) -> String {
    let body = body.to_string();
    format!(
        "POST /v1/applications/{}/{what} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Idempotency-Key: {key}\r\nContent-Length: {}\r\n\r\n{body}",
        c.app,
        c.token,
        body.len()
    )
}

/// Sends a keyed call and kills the node `after` later, before its answer: returns what the
/// caller read (nothing, if the kill came first).
fn kill_mid_request(
    server: Server,
    c: &Citizen,
    what: &str,
    body: &Value,
    key: &str,
    after: Duration,
) -> Vec<u8> {
    use std::io::Read;
    let port = server.port;
    let request = keyed_request(port, c, what, body, key);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    std::thread::sleep(after);
    server.kill9().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    got
}

/// A caller that sends a keyed call and goes away `after` later: its connection is reset
/// (SO_LINGER 0), so the node drops the request's handler wherever it is.
fn gone_after(port: u16, c: &Citizen, what: &str, body: &Value, key: &str, after: Duration) {
    let request = keyed_request(port, c, what, body, key);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    std::thread::sleep(after);
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(stream);
}

/// Kills a node on the slow disk in the middle of a keyed call, after its change is durable and
/// before its answer: the call (body from `prepare`, on the fresh node) is sent and the node
/// killed half a slow sync later, then a slow sync later at each attempt, until `durable` finds
/// the change after a restart (on `restart`'s options). Every attempt's caller must have had
/// no answer: the answer waits for one more slow sync (its key's stored answer) than the
/// change, so the growing kill lands in that window before it passes it. Returns the
/// restarted node, the body and the key.
fn kill_between_durable_and_answered(
    slow: &Options,
    restart: &Options,
    (c, what): (&Citizen, &str),
    prepare: impl Fn(u16) -> Value,
    durable: impl Fn(u16, &Value) -> bool,
) -> (Server, Value, String) {
    for attempt in 0..12u32 {
        let after = SLOW_SYNC / 2 + SLOW_SYNC * attempt;
        let (server, _) = Server::start(slow, free_port()).unwrap();
        let body = prepare(server.port);
        let key = format!("{what}-{attempt}");
        let got = kill_mid_request(server, c, what, &body, &key, after);
        assert!(
            got.is_empty(),
            "{what} was answered before the kill {after:?} after it was sent: {}",
            String::from_utf8_lossy(&got)
        );
        let (server, _) = Server::start(restart, free_port()).unwrap();
        if durable(server.port, &body) {
            return (server, body, key);
        }
        server.kill9().unwrap();
    }
    panic!("{what} never became durable on the slow disk");
}

/// The serial of the first plate of a draw's answer.
fn first_serial(draw: &Value) -> String {
    let first = &draw["batch"]["plates"][0];
    let plate = first.as_str().or_else(|| first["serial"].as_str()).unwrap();
    plate.rsplit('·').next().unwrap().to_string()
}

#[test]
fn keyed_retries_after_a_kill_between_durable_and_answered() {
    strace::available().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::new(binary(), dir.path().join("data"));
    let slow = on_slow_disk(&opts);
    // Set-up on a normal disk: two citizens.
    let (server, _) = Server::start(&opts, free_port()).unwrap();
    let mut flow = Flow::default();
    flow.operator_setup(server.port, 2).unwrap();
    let claimer = flow.citizen(server.port, 1).unwrap();
    let drawer = flow.citizen(server.port, 2).unwrap();
    let quota = view(server.port, &drawer)["random_left"].as_u64().unwrap();
    server.kill9().unwrap();
    let draw = json!({"exclude_four": false});

    // The keyed claim of a number drawn and picked, killed after it is durable, unanswered.
    let pick_one = |port: u16| {
        let (status, drawn) = post(port, &claimer, "draws", &draw, None);
        assert_eq!(status, 201, "{drawn}");
        let pick = json!({ "serial": first_serial(&drawn) });
        let (status, picked) = post(port, &claimer, "candidates", &pick, None);
        assert_eq!(status, 200, "{picked}");
        pick
    };
    let claimed =
        |port: u16, pick: &Value| view(port, &claimer)["claim"]["serial"] == pick["serial"];
    let (server, pick, key) =
        kill_between_durable_and_answered(&slow, &slow, (&claimer, "claim"), pick_one, claimed);
    let ready = Instant::now();
    let serial = pick["serial"].clone();
    // A retry whose caller goes away while the node re-marks the key for itself (that sync
    // takes SLOW_SYNC), then the retry that waits for its answer.
    gone_after(server.port, &claimer, "claim", &pick, &key, SLOW_SYNC / 2);
    std::thread::sleep(SLOW_SYNC / 4);
    let (status, body) = post(server.port, &claimer, "claim", &pick, Some(&key));
    let took = ready.elapsed();
    assert!(
        !(status == 409 && body["error"]["reason"] == "in_progress"),
        "the retry after the restart got 409 in_progress: {body}"
    );
    assert_eq!(status, 201, "the retry gets the claim: {body}");
    assert_eq!(body["claim"]["serial"], serial, "{body}");
    // Within a second of ready, beyond the syncs the retries wait for on the slow disk (the
    // retry's marker, its answer; the one dropped re-marked the key too).
    let slow_syncs = SLOW_SYNC * 4;
    assert!(
        took < Duration::from_secs(1) + slow_syncs,
        "answered {took:?} after the node was ready (of which {slow_syncs:?} of slow syncs)"
    );
    server.kill9().unwrap();

    // The keyed draw, killed after its debit is durable, unanswered; retried on a normal disk.
    let debited =
        |port: u16, _: &Value| view(port, &drawer)["random_left"].as_u64() == Some(quota - 1);
    let (server, draw, key) = kill_between_durable_and_answered(
        &slow,
        &opts,
        (&drawer, "draws"),
        |_| draw.clone(),
        debited,
    );
    let ready = Instant::now();
    let (status, body) = post(server.port, &drawer, "draws", &draw, Some(&key));
    let took = ready.elapsed();
    assert_eq!(
        (status, body["error"]["reason"].as_str()),
        (409, Some("interrupted")),
        "the retry of a draw that may have debited: {body}"
    );
    assert_eq!(
        view(server.port, &drawer)["random_left"].as_u64(),
        Some(quota - 1),
        "the retry debited the quota a second time"
    );
    assert!(
        took < Duration::from_secs(1),
        "answered {took:?} after the node was ready"
    );
}
