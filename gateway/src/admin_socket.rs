//! Where a data folder's backup socket is (`backup.rs`).
//!
//! A Unix socket's path holds at most [`SOCKET_PATH_MAX`] bytes. The socket is
//! [`SOCKET_FILE`] inside the data folder when that path fits; for a folder deeper than that, it
//! is `platepool-<hash>.sock` in a private folder of the user's — `$XDG_RUNTIME_DIR` when set,
//! else `platepool-<uid>` in the temporary folder, created mode 0700 and refused unless it is
//! the user's own and closed to others — with `<hash>` the first 16 bytes (hex) of the SHA-256
//! of the data folder's canonical path. `serve` and the CLI both derive it from the canonical
//! path, so they meet however the folder was written on their command lines.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The backup socket's name inside the data folder.
pub const SOCKET_FILE: &str = "platepool-admin.sock";
/// Longest Unix socket path (`sun_path` is 108 bytes, its last a NUL).
pub const SOCKET_PATH_MAX: usize = 107;

/// The backup socket of `data_dir` (which must exist).
pub fn socket_path(data_dir: &Path) -> Result<PathBuf, String> {
    let canonical =
        std::fs::canonicalize(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    let inside = canonical.join(SOCKET_FILE);
    if inside.as_os_str().len() <= SOCKET_PATH_MAX {
        return Ok(inside);
    }
    let digest = Sha256::digest(canonical.as_os_str().as_encoded_bytes());
    let hash: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    let path = private_dir()?.join(format!("platepool-{hash}.sock"));
    if path.as_os_str().len() > SOCKET_PATH_MAX {
        return Err(format!(
            "no backup socket path fits in {SOCKET_PATH_MAX} bytes for {} (set XDG_RUNTIME_DIR \
             to a shorter folder)",
            canonical.display()
        ));
    }
    Ok(path)
}

/// The user's private folder for sockets of deep data folders, created if missing.
fn private_dir() -> Result<PathBuf, String> {
    let uid = std::fs::metadata("/proc/self")
        .map_err(|e| format!("/proc/self: {e}"))?
        .uid();
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir().join(format!("platepool-{uid}")),
    };
    let err = |e: std::io::Error| format!("{}: {e}", dir.display());
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(err(e)),
        _ => {}
    }
    let meta = std::fs::symlink_metadata(&dir).map_err(err)?;
    if !meta.is_dir() || meta.uid() != uid || meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "{} is not a folder of this user closed to others: it cannot hold the backup socket",
            dir.display()
        ));
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shallow_folder_keeps_its_socket_inside() {
        let dir = tempfile::tempdir().expect("dir");
        let path = socket_path(dir.path()).expect("path");
        let canonical = std::fs::canonicalize(dir.path()).expect("canonical");
        assert_eq!(path, canonical.join(SOCKET_FILE));
    }

    #[test]
    fn a_deep_folder_gets_a_short_private_socket_path_however_it_is_written() {
        let dir = tempfile::tempdir().expect("dir");
        let deep = dir.path().join("d".repeat(60)).join("e".repeat(60));
        std::fs::create_dir_all(&deep).expect("deep");
        let path = socket_path(&deep).expect("path");
        assert!(
            path.as_os_str().len() <= SOCKET_PATH_MAX,
            "{}",
            path.display()
        );
        assert!(!path.starts_with(&deep));
        let other_spelling = deep.join("..").join("e".repeat(60));
        assert_eq!(socket_path(&other_spelling).expect("path"), path);
        let holder = path.parent().expect("parent");
        let mode = std::fs::metadata(holder)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{} is open to others", holder.display());
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        drop(listener);
        std::fs::remove_file(&path).expect("remove");
    }
}
