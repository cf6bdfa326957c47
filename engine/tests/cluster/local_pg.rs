//! PostgreSQL primaries with a synchronous standby for the tests, started and stopped with the
//! project's own script (deploy/postgres/local-cluster.sh) on free loopback ports.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use platepool_engine::cluster::PgStore;
use tempfile::TempDir;

/// Every call of a test's store gives up after this long (a commit waiting for a stopped
/// standby fails with a timeout instead of hanging the test).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/postgres/local-cluster.sh")
}

fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new("bash")
        .arg(script())
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script().display()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "local-cluster.sh {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let b = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = |l: &TcpListener| l.local_addr().expect("bound").port();
    (port(&a), port(&b))
}

/// A primary and its synchronous standby, stopped and removed on drop.
#[derive(Debug)]
pub struct LocalPostgres {
    _root: TempDir,
    dir: String,
    pub primary: String,
    pub primary_port: u16,
    pub standby_port: u16,
}

impl LocalPostgres {
    pub fn start() -> LocalPostgres {
        let mut last = String::new();
        // A port taken between choosing it and PostgreSQL binding it: try other ports.
        for _ in 0..3 {
            let root = tempfile::tempdir().expect("temporary folder");
            // PostgreSQL runs as its own user when the tests run as root: it must reach DIR.
            std::fs::set_permissions(
                root.path(),
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            )
            .expect("chmod");
            let dir = root.path().join("pg").display().to_string();
            let (p, s) = free_ports();
            match run(&["start", &dir, &p.to_string(), &s.to_string()]) {
                Ok(_) => {
                    let url = |port: u16| {
                        format!("host=127.0.0.1 port={port} user=postgres dbname=platepool")
                    };
                    return LocalPostgres {
                        _root: root,
                        dir,
                        primary: url(p),
                        primary_port: p,
                        standby_port: s,
                    };
                }
                Err(e) => {
                    let _ = run(&["stop", &dir]);
                    last = e;
                }
            }
        }
        panic!("no PostgreSQL cluster could be started: {last}");
    }

    pub fn stop_standby(&self) {
        run(&["stop-standby", &self.dir]).expect("stop the standby");
    }

    pub fn start_standby(&self) {
        run(&["start-standby", &self.dir]).expect("start the standby");
    }

    pub fn kill_primary(&self) {
        run(&["kill-primary", &self.dir]).expect("kill the primary");
    }

    pub fn promote(&self) {
        run(&["promote", &self.dir]).expect("promote the standby");
    }

    /// Both servers, the primary first, for a client that must find whichever is writable.
    pub fn both_hosts(&self) -> String {
        format!(
            "host=127.0.0.1,127.0.0.1 port={},{} user=postgres dbname=platepool \
             target_session_attrs=read-write",
            self.primary_port, self.standby_port
        )
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        if let Err(e) = run(&["stop", &self.dir]) {
            eprintln!("{e}");
        }
    }
}

/// One cluster for the tests that only need a primary with its standby and keep to their own
/// offices: started by the first, stopped when the last one running lets it go.
pub fn shared() -> Arc<LocalPostgres> {
    static SHARED: Mutex<Weak<LocalPostgres>> = Mutex::new(Weak::new());
    let mut slot = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(pg) = slot.upgrade() {
        return pg;
    }
    let pg = Arc::new(LocalPostgres::start());
    *slot = Arc::downgrade(&pg);
    pg
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

pub async fn connect(url: &str) -> PgStore {
    PgStore::connect(url, CALL_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// A plain client, for what a test does behind the nodes' backs (time passing).
pub async fn raw_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

/// Time passes for a lease: it is now expired (as if its owner had stopped renewing it).
pub async fn expire(client: &tokio_postgres::Client, office: &str) {
    let n = client
        .execute(
            "UPDATE platepool_lease SET expires_at = now() - interval '1 millisecond' \
             WHERE office = $1 AND node IS NOT NULL",
            &[&office],
        )
        .await
        .expect("expire the lease");
    assert_eq!(n, 1, "{office} had no holder to expire");
}
