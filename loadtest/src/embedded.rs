//! `--embedded`: the engine and the gateway started in this process, on a loopback port, over a
//! temporary data folder, so one command on a fresh machine rehearses a whole opening.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use platepool_engine::{Durability, Engine, EngineConfig};
use platepool_gateway::{Gateway, GatewayConfig};
use rand::Rng;

/// How to start the embedded gateway.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// HTTP worker threads.
    pub workers: usize,
    pub durability: Durability,
    /// Per-user and per-IP limits; `None` keeps the gateway's defaults.
    pub user_limit: Option<u32>,
    pub ip_limit: Option<u32>,
    /// Believe the loadtest's `X-Forwarded-For` (one address per virtual buyer).
    pub trust_loopback: bool,
    /// Keep the data here instead of a temporary folder.
    pub data_dir: Option<PathBuf>,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            workers: 2,
            durability: Durability::Fsync,
            user_limit: None,
            ip_limit: None,
            trust_loopback: true,
            data_dir: None,
        }
    }
}

/// A running in-process gateway.
#[derive(Debug)]
pub struct Embedded {
    pub base: String,
    pub operator_token: String,
    pub token_secret: String,
    pub data_dir: PathBuf,
    handle: ServerHandle,
    thread: Option<JoinHandle<()>>,
    _temp: Option<tempfile::TempDir>,
}

fn secret(rng: &mut impl Rng, n: usize) -> String {
    (0..n)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

impl Embedded {
    pub fn start(opts: &EmbeddedOptions) -> Result<Embedded, String> {
        let (temp, dir) = match &opts.data_dir {
            Some(d) => (None, d.clone()),
            None => {
                let t = tempfile::Builder::new()
                    .prefix("platepool-loadtest-")
                    .tempdir()
                    .map_err(|e| format!("temporary data folder: {e}"))?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let mut rng = rand::rng();
        let mut config = GatewayConfig {
            operator_token: format!("op-{}", secret(&mut rng, 16)),
            token_secret: secret(&mut rng, 32),
            allow_token_issue: true,
            // The load generator shares this process's CPUs: a worker running late here is the
            // generator's doing, and shedding on it would judge the rehearsal by the rehearser.
            shed_loop_lag_ms: 0,
            ..GatewayConfig::default()
        };
        if let Some(n) = opts.user_limit {
            config.rate_limit_user_per_s = n;
        }
        if let Some(n) = opts.ip_limit {
            config.rate_limit_ip_per_s = n;
        }
        if opts.trust_loopback {
            config.trusted_proxies = vec![IpAddr::V4(Ipv4Addr::LOCALHOST).into()];
        }
        let (operator_token, token_secret) =
            (config.operator_token.clone(), config.token_secret.clone());
        let (tx, rx) = std::sync::mpsc::channel::<Result<(SocketAddr, ServerHandle), String>>();
        let workers = opts.workers.max(1);
        let durability = opts.durability;
        let data = dir.clone();
        let thread = std::thread::Builder::new()
            .name("embedded-gateway".into())
            .spawn(move || run_gateway(&data, durability, config, workers, tx))
            .map_err(|e| format!("gateway thread: {e}"))?;
        let (addr, handle) = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(started)) => started,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("the embedded gateway did not start within 60 s".into()),
        };
        Ok(Embedded {
            base: format!("http://{addr}"),
            operator_token,
            token_secret,
            data_dir: dir,
            handle,
            thread: Some(thread),
            _temp: temp,
        })
    }

    /// Stops accepting, finishes in-flight requests, flushes the engine and ends the thread.
    pub fn stop(mut self) {
        let handle = self.handle.clone();
        actix_rt::System::new().block_on(handle.stop(true));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run_gateway(
    dir: &Path,
    durability: Durability,
    config: GatewayConfig,
    workers: usize,
    tx: std::sync::mpsc::Sender<Result<(SocketAddr, ServerHandle), String>>,
) {
    let system = actix_rt::System::new();
    system.block_on(async move {
        let mut ec = EngineConfig::new(dir);
        ec.durability = durability;
        // Nor by the offices' measure of time, which here includes the generator's share of
        // the CPUs (a write's answer waits for a thread the generator also needs).
        ec.shed_queue_delay = None;
        let engine = match Engine::open(ec).await {
            Ok(e) => e,
            Err(e) => {
                let _ = tx.send(Err(format!("engine: {e}")));
                return;
            }
        };
        let gateway = match Gateway::new(engine.clone(), config) {
            Ok(g) => g,
            Err(e) => {
                let _ = tx.send(Err(format!("gateway: {e}")));
                return;
            }
        };
        let server = HttpServer::new(move || {
            App::new()
                .service(gateway.scope(""))
                .default_service(web::to(platepool_gateway::not_found))
        })
        .workers(workers)
        .keep_alive(Duration::from_secs(30))
        .backlog(8_192)
        .max_connections(100_000)
        .disable_signals()
        .bind(("127.0.0.1", 0));
        let server = match server {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(Err(format!("bind 127.0.0.1: {e}")));
                return;
            }
        };
        let Some(addr) = server.addrs().first().copied() else {
            let _ = tx.send(Err("the gateway bound no address".into()));
            return;
        };
        let server = server.run();
        let _ = tx.send(Ok((addr, server.handle())));
        let _ = server.await;
        if let Err(e) = engine.flush() {
            eprintln!("embedded gateway: flush failed: {e}");
        }
        actix_rt::System::current().stop();
    });
}
