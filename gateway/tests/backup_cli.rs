//! `platepool backup` and `platepool verify` against the real binary (SPEC D1): a backup of a
//! folder the node serves is made through the node, verifies sound and serves; `verify` of the
//! serving folder refuses with the reason; a backup into an existing folder is refused.
#![allow(clippy::unwrap_used)]

mod process;

use std::path::Path;
use std::process::{Command, Output};

use process::{get, Platepool};

fn platepool(args: &[&str], dirs: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_platepool"));
    cmd.args(args);
    for (flag, dir) in dirs {
        cmd.arg(flag).arg(dir);
    }
    cmd.output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_backup_of_a_serving_node_verifies_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let copy = dir.path().join("copy");
    let server = Platepool::start(dir.path(), &[], &[]);
    assert!(
        data.join("platepool-admin.sock").exists(),
        "the backup socket"
    );

    let out = platepool(&["backup"], &[("--data-dir", &data), ("--to", &copy)]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("writes paused"), "{}", text(&out));
    let again = platepool(&["backup"], &[("--data-dir", &data), ("--to", &copy)]);
    assert!(!again.status.success());
    assert!(text(&again).contains("already exists"), "{}", text(&again));

    let refused = platepool(&["verify"], &[("--data-dir", &data)]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("a node is serving"),
        "{}",
        text(&refused)
    );
    drop(server);

    let verified = platepool(&["verify"], &[("--data-dir", &copy)]);
    assert!(verified.status.success(), "{}", text(&verified));
    assert!(text(&verified).contains("sound"), "{}", text(&verified));
    let nothing = platepool(&["verify"], &[("--data-dir", &dir.path().join("none"))]);
    assert!(!nothing.status.success());
    assert!(
        text(&nothing).contains("no data folder"),
        "{}",
        text(&nothing)
    );

    // The copy serves the demo office the original had (the demo leaves it as it is).
    let restored = dir.path().join("restored");
    std::fs::create_dir(&restored).unwrap();
    std::fs::rename(&copy, restored.join("data")).unwrap();
    let server = Platepool::start(&restored, &[], &[]);
    let (status, _, body) = get(server.port, "/v1/offices").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("maoming"), "{body}");
}

/// A data folder too deep for a socket path inside it (107 bytes) gets its socket in the
/// user's private folder; the CLI finds the node there (the folder itself is locked by it).
#[test]
fn a_node_serving_a_deep_folder_is_backed_up_through_its_socket() {
    let dir = tempfile::tempdir().unwrap();
    let deep = dir.path().join("d".repeat(60)).join("e".repeat(60));
    std::fs::create_dir_all(&deep).unwrap();
    let data = deep.join("data");
    let copy = dir.path().join("copy");
    let server = Platepool::start(&deep, &[], &[]);
    assert!(!data.join("platepool-admin.sock").exists());
    let socket = platepool_gateway::admin_socket::socket_path(&data).unwrap();
    assert!(socket.exists(), "{}", socket.display());

    let out = platepool(&["backup"], &[("--data-dir", &data), ("--to", &copy)]);
    assert!(out.status.success(), "{}", text(&out));
    let refused = platepool(&["verify"], &[("--data-dir", &data)]);
    assert!(
        text(&refused).contains("a node is serving"),
        "{}",
        text(&refused)
    );
    drop(server);
    // Killed, the node leaves its socket file; nothing answers there any more.
    for folder in [&data, &copy] {
        let verified = platepool(&["verify"], &[("--data-dir", folder)]);
        assert!(verified.status.success(), "{}", text(&verified));
    }
}
