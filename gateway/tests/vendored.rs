//! The patched crates of `vendor/` (vendor/README.md) are the ones built: a dependency upgrade
//! that needs a newer version would make cargo ignore the patch silently (a warning at most).

use std::path::Path;

/// The `[[package]]` entries of the workspace's Cargo.lock named `name`, as text.
fn locked(name: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).expect("Cargo.lock");
    lock.split("[[package]]")
        .filter(|entry| {
            entry
                .lines()
                .any(|l| l.trim() == format!("name = \"{name}\""))
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn actix_server_is_the_patched_copy() {
    let entries = locked("actix-server");
    assert_eq!(
        entries.len(),
        1,
        "one actix-server in the build: {entries:?}"
    );
    // A package from crates.io carries a `source`; a path dependency does not.
    assert!(
        !entries[0].contains("source ="),
        "actix-server comes from the registry, not vendor/actix-server: {}",
        entries[0]
    );
    let worker = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vendor/actix-server/src/worker.rs");
    let source = std::fs::read_to_string(worker).expect("vendored worker.rs");
    assert_eq!(
        source
            .matches("tokio::task::unconstrained(ServerWorker")
            .count(),
        2,
        "both spawns of the worker future are unconstrained"
    );
}
