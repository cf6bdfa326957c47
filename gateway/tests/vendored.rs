//! The patched crates of `vendor/` (vendor/README.md) are the ones built: a dependency upgrade
//! that needs a newer version would make cargo ignore a patch silently (a warning at most).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `[[package]]` entries of the workspace's Cargo.lock named `name`, as text.
fn locked(name: &str) -> Vec<String> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).expect("Cargo.lock");
    lock.split("[[package]]")
        .filter(|entry| {
            entry
                .lines()
                .any(|l| l.trim() == format!("name = \"{name}\""))
        })
        .map(str::to_string)
        .collect()
}

/// `name` is built once, from `vendor/`, and its `file` carries `change` `times` times.
fn assert_patched(name: &str, file: &str, change: &str, times: usize) {
    let entries = locked(name);
    assert_eq!(entries.len(), 1, "one {name} in the build: {entries:?}");
    // A package from crates.io carries a `source`; a path dependency does not.
    assert!(
        !entries[0].contains("source ="),
        "{name} comes from the registry, not vendor/{name}: {}",
        entries[0]
    );
    let source = std::fs::read_to_string(root().join("vendor").join(name).join(file))
        .unwrap_or_else(|e| panic!("vendor/{name}/{file}: {e}"));
    assert_eq!(
        source.matches(change).count(),
        times,
        "vendor/{name}/{file} should carry `{change}` {times} time(s)"
    );
}

#[test]
fn actix_server_is_the_patched_copy() {
    // Both spawns of the worker future are outside tokio's cooperative budget.
    assert_patched(
        "actix-server",
        "src/worker.rs",
        "tokio::task::unconstrained(ServerWorker",
        2,
    );
}

#[test]
fn sled_is_the_patched_copy() {
    // A job for the IO thread pool wakes one thread, not all of them.
    assert_patched("sled", "src/threadpool.rs", "self.cv.notify_one();", 1);
    assert_patched("sled", "src/threadpool.rs", "notify_all", 0);
    // The engine's writer threads write sled's log buffers themselves: sled knows them by name.
    assert_patched(
        "sled",
        "src/threadpool.rs",
        "pub const OWN_IO_THREAD_PREFIX: &str = \"pp-writer\";",
        1,
    );
    // A blob and its folder entry are on the device before the log item pointing to it.
    assert_patched(
        "sled",
        "src/pagecache/blob_io.rs",
        "f.sync_all()?;\n    std::fs::File::open(path.parent().unwrap_or(path.as_path()))?.sync_all()?;",
        1,
    );
    let writer = std::fs::read_to_string(root().join("engine/src/writer.rs")).expect("writer.rs");
    assert!(
        writer.contains(".name(format!(\"pp-writer-{i}\"))"),
        "the writer threads are no longer named pp-writer-…: vendor/sled would not know them"
    );
}
