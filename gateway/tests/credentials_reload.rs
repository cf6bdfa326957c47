//! Operator credentials rotated through the real binary by SIGHUP (SPEC S4): the file is
//! rewritten with its modification time and size kept, so the file watcher cannot see it and
//! only the signal can put the new credential in force; a broken file then changes nothing.
#![allow(clippy::unwrap_used)]

mod process;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use platepool_gateway::operators::hash_token;
use process::{http, Platepool};

// Same length, so the rewritten file keeps its size.
const OLD: &str = "reload-test-clerk-token-old-0123456789";
const NEW: &str = "reload-test-clerk-token-new-0123456789";

fn config(token: &str) -> String {
    format!(
        "[[operators]]\nname = \"li\"\nrole = \"clerk\"\noffices = [\"maoming\"]\ntoken_sha256 = \"{}\"\n",
        hash_token(token)
    )
}

/// Rewrites `path` keeping its modification time (and, with same-length text, its size).
fn rewrite_unseen(path: &Path, text: &str) {
    let modified = std::fs::metadata(path).unwrap().modified().unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(modified)
        .unwrap();
}

/// The status of the clerk's read of its own office's stats with `token`.
fn status(port: u16, token: &str) -> u16 {
    let request = format!(
        "GET /v1/admin/offices/maoming/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    http(port, &request).unwrap().0
}

fn hangup(server: &Platepool) {
    let ok = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -HUP");
}

fn until(what: &str, server: &Platepool, mut f: impl FnMut() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what}: {}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sighup_puts_a_rewritten_credential_in_force_and_a_broken_file_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("platepool.toml");
    std::fs::write(&file, config(OLD)).unwrap();
    let server = Platepool::start(dir.path(), &["--config", file.to_str().unwrap()], &[]);
    let port = server.port;
    assert_eq!(status(port, OLD), 200, "{}", server.log_text());
    assert_eq!(status(port, NEW), 401);

    // Rewritten where the watcher cannot see it: nothing changes over three of its polls.
    rewrite_unseen(&file, &config(NEW));
    std::thread::sleep(platepool_gateway::rotation::POLL * 3);
    assert_eq!(status(port, OLD), 200, "the watcher did not see the change");
    assert_eq!(status(port, NEW), 401);

    hangup(&server);
    until("the new token in force after SIGHUP", &server, || {
        status(port, NEW) == 200
    });
    assert_eq!(status(port, OLD), 401, "the old token stops at once");

    // A broken file and SIGHUP: the credentials in force stay.
    let broken = "[[operators]]\nname = \"li\"\nrole = \"emperor\"\n";
    rewrite_unseen(&file, broken);
    hangup(&server);
    until("the refusal logged", &server, || {
        server.log_text().contains("not reloaded")
    });
    assert_eq!(status(port, NEW), 200);
    assert_eq!(status(port, OLD), 401);
}
