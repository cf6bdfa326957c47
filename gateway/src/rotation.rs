//! Operator credentials rotated without a restart (SPEC S4): the binary re-reads its
//! configuration file when the file changes (looked at every [`POLL`]) and on SIGHUP, and puts
//! the new `[[operators]]` in force for every later request. A file that does not load (bad
//! TOML, an invalid credential) changes nothing: the credentials in force stay, and the error
//! is logged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use crate::operators::{Credentials, OperatorSet};

/// How often the file's modification time and size are looked at.
pub const POLL: Duration = Duration::from_secs(1);

/// Loads `path` (with the environment over it) and puts its credentials in force; the operator
/// token in force at start (`operator_token`, perhaps a random one) is kept when the file and
/// environment name none. Answers how many credentials are in force.
pub fn reload(path: &Path, set: &OperatorSet, operator_token: &str) -> Result<usize, String> {
    let config = crate::settings::load(Some(path), &BTreeMap::<String, String>::new())?;
    let mut gateway = config.gateway;
    if gateway.operator_token.is_empty() {
        gateway.operator_token = operator_token.to_string();
    }
    let credentials = Credentials::new(&gateway)?;
    let n = credentials.len();
    set.replace(credentials);
    Ok(n)
}

/// Reloads and logs the outcome.
pub fn reload_logged(path: &Path, set: &OperatorSet, operator_token: &str, why: &str) {
    match reload(path, set, operator_token) {
        Ok(n) => {
            tracing::info!(file = %path.display(), credentials = n, why, "operator credentials reloaded")
        }
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, why, "operator credentials not reloaded; the previous ones stay in force")
        }
    }
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Watches `path` on a thread of its own until `set` is dropped.
pub fn watch(path: PathBuf, set: Weak<OperatorSet>, operator_token: String) {
    let spawned = std::thread::Builder::new()
        .name("pp-credentials".into())
        .spawn(move || {
            let mut seen = stamp(&path);
            loop {
                std::thread::sleep(POLL);
                let Some(set) = set.upgrade() else {
                    return;
                };
                let now = stamp(&path);
                if now != seen && now.is_some() {
                    seen = now;
                    reload_logged(&path, &set, &operator_token, "file changed");
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot watch the configuration file for credential changes");
    }
}

/// Keeps `set` alive for the watcher as long as the gateway holds it.
pub fn shared(set: &Arc<OperatorSet>) -> Weak<OperatorSet> {
    Arc::downgrade(set)
}
