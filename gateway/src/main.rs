//! `platepool`: the standalone gateway.
//!
//! `platepool serve --addr 127.0.0.1:8080 --data-dir DIR [--demo] [--config FILE]` opens (and
//! recovers) the engine in DIR and serves the HTTP API of `docs/API.md`. SIGTERM or Ctrl-C
//! stops accepting, lets in-flight requests finish, flushes the engine and exits 0.
//! `platepool config check FILE` prints the effective configuration (file < environment), secrets
//! masked, or why it is not valid. Configuration layering lives in `settings.rs`.

use std::path::PathBuf;
use std::process::ExitCode;

use actix_web::{web, App, HttpServer};
use clap::{Args, Parser, Subcommand, ValueEnum};
use platepool_engine::{Durability, Engine, EngineConfig};
use platepool_gateway::auth::{sign_token, TokenClaims};
use platepool_gateway::settings::{self, DurabilityName, LogFormat};
use platepool_gateway::{demo, Gateway, GatewayConfig};
use serde::Serialize;

/// mimalloc: glibc's malloc serialises the frees that the writer thread makes of records the
/// office actor allocated; with mimalloc durable draws ran 35–70 % faster in the same run.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ENV_HELP: &str = "\
Configuration: defaults < the --config TOML file < PLATEPOOL_<KEY> environment variables < these flags.
platepool.example.toml (repository root) lists every key with its default and meaning; each key is also
an environment variable, upper-cased after PLATEPOOL_ (PLATEPOOL_RATE_LIMIT_IP_PER_S, PLATEPOOL_TRUSTED_PROXIES
as comma-separated CIDR ranges, …). `platepool config check FILE` prints the effective configuration.
  PLATEPOOL_OPERATOR_TOKEN / PLATEPOOL_TOKEN_SECRET   random and printed when unset
  RUST_LOG   log filter (default info), e.g. RUST_LOG=info,platepool::access=off silences the access log";

#[derive(Debug, Parser)]
#[command(
    name = "platepool",
    version,
    about = "Online licence-plate pre-selection (互联网预选号牌): engine and HTTP gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serves the HTTP API (docs/API.md) over the engine in --data-dir.
    #[command(after_help = ENV_HELP)]
    Serve(ServeArgs),
    /// Prints a citizen token signed with PLATEPOOL_TOKEN_SECRET (for scripts and load tests).
    Token(TokenArgs),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Makes a fresh operator token (32 random bytes) and prints it with the SHA-256 an
    /// `[[operators]]` entry keeps (SPEC S4).
    OperatorToken,
    /// Copies a data folder into a new folder, while a node serves it or not (SPEC D1).
    #[cfg(unix)]
    Backup(platepool_gateway::backup::BackupArgs),
    /// Checks a data folder: generation, every record decodes, invariants I1, I3, I9; exit 1
    /// and each problem printed when it is not sound.
    #[cfg(unix)]
    Verify(platepool_gateway::backup::VerifyArgs),
    /// Cluster mode (docs/cluster.md).
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Prints each office's owner, epoch and lease ages, and the primary's standbys.
    Status(platepool_gateway::cluster_status::StatusArgs),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validates FILE with the PLATEPOOL_* environment over it and prints the effective
    /// configuration, secrets masked; exits 1 when it is not valid.
    Check {
        /// The TOML file (see platepool.example.toml).
        file: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DurabilityArg {
    /// fdatasync before every acknowledgement: survives power loss (the default).
    Fsync,
    /// flush to the OS before every acknowledgement: survives a process crash.
    Flush,
    /// no flush per acknowledgement (benchmarks of the logic only; loses recent changes on a crash).
    None,
}

impl From<DurabilityArg> for DurabilityName {
    fn from(d: DurabilityArg) -> DurabilityName {
        match d {
            DurabilityArg::Fsync => DurabilityName::Fsync,
            DurabilityArg::Flush => DurabilityName::Flush,
            DurabilityArg::None => DurabilityName::None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormatArg {
    /// Human-readable lines, the request's span (with its id) in front.
    Text,
    /// One JSON object per line.
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(f: LogFormatArg) -> LogFormat {
        match f {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, value_name = "HOST:PORT")]
    addr: Option<String>,
    /// Folder of the engine's data (created when missing) [default: ./platepool-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Seeds the Maoming demo office, releases and vehicles on first start, and prints tokens,
    /// demo VINs and vouchers and example curl commands.
    #[arg(long)]
    demo: bool,
    /// TOML file with any of the keys of platepool.example.toml.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// When a change is durable before it is acknowledged [default: fsync].
    #[arg(long, value_enum)]
    durability: Option<DurabilityArg>,
    /// HTTP worker threads [default: the number of cores].
    #[arg(long)]
    workers: Option<usize>,
    /// Seconds in-flight requests get to finish after SIGTERM or Ctrl-C [default: 30].
    #[arg(long)]
    shutdown_timeout_s: Option<u64>,
    /// A wall-clock step larger than this (ms) is not followed until an operator confirms the
    /// time (POST /v1/admin/clock/confirm) or the wall clock agrees again [default: 2000].
    #[arg(long)]
    clock_step_bound_ms: Option<u64>,
    /// Log lines as text or JSON [default: text].
    #[arg(long, value_enum)]
    log_format: Option<LogFormatArg>,
}

/// The flags that were given, as the top layer of the configuration.
#[derive(Debug, Default, Serialize)]
struct Flags {
    #[serde(skip_serializing_if = "Option::is_none")]
    addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    durability: Option<DurabilityName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    workers: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shutdown_timeout_s: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    clock_step_bound_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_format: Option<LogFormat>,
}

impl From<&ServeArgs> for Flags {
    fn from(a: &ServeArgs) -> Flags {
        Flags {
            addr: a.addr.clone(),
            data_dir: a.data_dir.clone(),
            durability: a.durability.map(DurabilityName::from),
            workers: a.workers,
            shutdown_timeout_s: a.shutdown_timeout_s,
            clock_step_bound_ms: a.clock_step_bound_ms,
            log_format: a.log_format.map(LogFormat::from),
        }
    }
}

#[derive(Debug, Args)]
struct TokenArgs {
    /// The citizen's user id.
    #[arg(long)]
    user: String,
    /// The citizen's phone.
    #[arg(long)]
    phone: String,
    /// Life of the token in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl_s: u64,
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        // The current span's fields (the request id) on every line, flattened beside the event's.
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let s = match settings(&args) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("platepool: {e}");
                    return ExitCode::FAILURE;
                }
            };
            init_logs(s.log_format);
            match serve(s) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("platepool: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Token(args) => match token(args) {
            Ok(t) => {
                println!("{t}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("platepool: {e}");
                ExitCode::FAILURE
            }
        },
        Command::OperatorToken => {
            let token = platepool_gateway::operators::new_token();
            println!("token = \"{token}\"   # give it to the operator, keep it nowhere else");
            println!(
                "token_sha256 = \"{}\"   # put this in the [[operators]] entry",
                platepool_gateway::operators::hash_token(&token)
            );
            ExitCode::SUCCESS
        }
        #[cfg(unix)]
        Command::Backup(args) => platepool_gateway::backup::run_backup(&args),
        #[cfg(unix)]
        Command::Verify(args) => platepool_gateway::backup::run_verify(&args),
        Command::Cluster(ClusterCommand::Status(args)) => {
            platepool_gateway::cluster_status::run_status(&args)
        }
        Command::Config(ConfigCommand::Check { file }) => {
            match settings::load(Some(&file), &Flags::default()) {
                Ok(config) => {
                    println!(
                        "# {}: valid; the effective configuration (file < environment):",
                        file.display()
                    );
                    print!("{}", config.masked_toml());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("platepool: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn token(args: TokenArgs) -> Result<String, String> {
    let secret = env_var("PLATEPOOL_TOKEN_SECRET").ok_or("PLATEPOOL_TOKEN_SECRET is not set")?;
    platepool_gateway::auth::validate_user(&args.user)?;
    platepool_gateway::auth::validate_phone(&args.phone)?;
    let now_s = platepool_engine::calendar::now_ms() / 1000;
    Ok(sign_token(
        &secret,
        &TokenClaims {
            user: args.user,
            phone: args.phone,
            exp: now_s + args.ttl_s,
        },
    ))
}

/// Everything `serve` needs, resolved from flags, environment, file and defaults.
#[derive(Debug)]
struct Settings {
    /// The configuration file, re-read for credential changes.
    config_file: Option<PathBuf>,
    addr: String,
    data_dir: PathBuf,
    durability: Durability,
    workers: usize,
    shutdown_timeout_s: u64,
    clock_step_bound: std::time::Duration,
    log_format: LogFormat,
    demo: bool,
    gateway: GatewayConfig,
    /// Which secrets were made up here (to print them).
    random_operator_token: bool,
    random_token_secret: bool,
}

fn settings(args: &ServeArgs) -> Result<Settings, String> {
    let config = settings::load(args.config.as_deref(), &Flags::from(args))?;
    let mut config = config;
    if args.demo {
        // The demo shows every code it sent, and issues citizen tokens.
        if config.gateway.outbox_retention_s.is_none() {
            config.gateway.outbox_retention_s = Some(0);
        }
        config.gateway.allow_token_issue = true;
    }
    let random_operator_token = config.gateway.operator_token.is_empty();
    let random_token_secret = config.gateway.token_secret.is_empty();
    let gateway = config.gateway.with_random_secrets();
    gateway.validate()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(Settings {
        addr: config.addr,
        data_dir: config.data_dir,
        durability: config.durability.into(),
        workers: match config.workers {
            0 => cores,
            n => n,
        },
        shutdown_timeout_s: config.shutdown_timeout_s,
        clock_step_bound: match config.clock_step_bound_ms {
            0 => return Err("clock_step_bound_ms must be at least 1".into()),
            ms => std::time::Duration::from_millis(ms),
        },
        log_format: config.log_format,
        demo: args.demo,
        config_file: args.config.clone(),
        gateway,
        random_operator_token,
        random_token_secret,
    })
}

/// Re-reads the operator credentials on every SIGHUP.
fn reload_on_hangup(
    path: PathBuf,
    set: std::sync::Arc<platepool_gateway::operators::OperatorSet>,
    token: String,
) {
    #[cfg(unix)]
    actix_rt::spawn(async move {
        use actix_rt::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; credentials reload when the file changes");
            return;
        };
        while hup.recv().await.is_some() {
            platepool_gateway::rotation::reload_logged(&path, &set, &token, "SIGHUP");
        }
    });
    #[cfg(not(unix))]
    let _ = (path, set, token);
}

/// Resolves when SIGTERM or Ctrl-C (SIGINT) arrives.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use actix_rt::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM: stopping"),
                    _ = actix_rt::signal::ctrl_c() => tracing::info!("Ctrl-C: stopping"),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
                let _ = actix_rt::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = actix_rt::signal::ctrl_c().await;
    }
}

#[actix_web::main]
async fn serve(s: Settings) -> Result<(), String> {
    std::fs::create_dir_all(&s.data_dir).map_err(|e| format!("{}: {e}", s.data_dir.display()))?;
    let mut engine_config = EngineConfig::new(&s.data_dir);
    engine_config.durability = s.durability;
    engine_config.clock_step_bound = s.clock_step_bound;
    let engine = Engine::open(engine_config)
        .await
        .map_err(|e| format!("cannot open {}: {e}", s.data_dir.display()))?;
    let recovery = engine.recovery().clone();
    tracing::info!(
        data_dir = %s.data_dir.display(),
        offices = recovery.offices,
        applications = recovery.applications,
        millis = recovery.millis as u64,
        "engine open"
    );

    #[cfg(unix)]
    let backup_socket = platepool_gateway::backup::listen(engine.store().clone())
        .inspect_err(
            |e| tracing::warn!(error = %e, "no backup socket: back up with the node stopped"),
        )
        .ok();

    let demo_info = if s.demo {
        Some(demo::seed(&engine, "operator:demo").await?)
    } else {
        None
    };

    let gw = Gateway::new(engine.clone(), s.gateway.clone())?;
    if let Some(path) = &s.config_file {
        let token = s.gateway.operator_token.clone();
        platepool_gateway::rotation::watch(
            path.clone(),
            platepool_gateway::rotation::shared(&gw.operators),
            token.clone(),
        );
        reload_on_hangup(path.clone(), gw.operators.clone(), token);
    }
    let app_gw = gw.clone();
    let server = HttpServer::new(move || {
        App::new()
            // The pages answer only their own paths; the API's scope answers everything else.
            .service(app_gw.pages_scope(""))
            .service(app_gw.scope(""))
            .default_service(web::to(platepool_gateway::not_found))
    })
    .workers(s.workers)
    .shutdown_timeout(s.shutdown_timeout_s)
    .shutdown_signal({
        let gw = gw.clone();
        async move {
            stop_signal().await;
            // Balancers see /readyz turn 503 while in-flight requests finish.
            gw.set_ready(false);
        }
    })
    .bind(&s.addr)
    .map_err(|e| format!("cannot listen on {}: {e}", s.addr))?;
    let bound = server
        .addrs()
        .first()
        .map_or_else(|| s.addr.clone(), ToString::to_string);

    print_banner(&s, &bound, demo_info.as_ref(), &engine);
    tracing::info!(addr = %bound, workers = s.workers, "serving");

    let result = server.run().await;
    tracing::info!("server stopped; stopping the offices and flushing the engine");
    drop(gw);
    #[cfg(unix)]
    drop(backup_socket);
    engine
        .shutdown()
        .await
        .map_err(|e| format!("flush failed: {e}"))?;
    result.map_err(|e| format!("server: {e}"))?;
    tracing::info!("stopped cleanly");
    Ok(())
}

fn print_banner(s: &Settings, bound: &str, demo: Option<&demo::DemoInfo>, engine: &Engine) {
    let base = format!("http://{bound}");
    let mut out = String::new();
    out.push_str(&format!(
        "platepool serving on {base} (data in {})\n",
        s.data_dir.display()
    ));
    out.push_str(&format!(
        "open {base}/ (the citizen's page) or {base}/console/ (the operator console)\n"
    ));
    if s.random_operator_token {
        out.push_str(&format!(
            "operator token (random, set PLATEPOOL_OPERATOR_TOKEN to keep one): {}\n",
            s.gateway.operator_token
        ));
    }
    if s.random_token_secret {
        out.push_str(&format!(
            "citizen token secret (random, set PLATEPOOL_TOKEN_SECRET to keep one): {}\n",
            s.gateway.token_secret
        ));
    }
    if let Some(info) = demo {
        let now_s = engine.now_ms() / 1000;
        let citizen = sign_token(
            &s.gateway.token_secret,
            &TokenClaims {
                user: "demo_citizen".into(),
                phone: "13800138000".into(),
                exp: now_s + 7 * 86_400,
            },
        );
        out.push_str(&format!(
            "\n== demo: office {} ({}) ==\n",
            info.office,
            if info.seeded {
                "seeded now"
            } else {
                "already there, left as it is"
            }
        ));
        out.push_str(&format!("operator token: {}\n", s.gateway.operator_token));
        out.push_str(&format!(
            "citizen token (user demo_citizen, phone 13800138000, 7 days): {citizen}\n"
        ));
        out.push_str(&format!("notice version: {}\n", info.notice_version));
        out.push_str("demo vehicles (VIN  voucher  class  energy):\n");
        for v in &info.vehicles {
            out.push_str(&format!(
                "  {}  {}  {}  {}\n",
                v.vin, v.voucher, v.class, v.energy
            ));
        }
        let first = info.vehicles.first();
        let (vin, voucher) = first.map_or(("", ""), |v| (v.vin.as_str(), v.voucher.as_str()));
        out.push_str(&format!(
            "\nexamples:\n\
             curl {base}/v1/offices/maoming/pool\n\
             curl -X POST {base}/v1/vin/check -H 'Content-Type: application/json' -d '{{\"vin\":\"{vin}\"}}'\n\
             export CITIZEN='{citizen}'\n\
             curl -X POST {base}/v1/sms -H \"Authorization: Bearer $CITIZEN\" -H 'Content-Type: application/json' -d '{{\"purpose\":\"apply\"}}'\n\
             curl '{base}/v1/admin/sms/outbox?phone=13800138000' -H 'Authorization: Bearer {op}'\n\
             curl -X POST {base}/v1/applications -H \"Authorization: Bearer $CITIZEN\" -H 'Content-Type: application/json' \\\n  \
             -d '{{\"office\":\"maoming\",\"vin\":\"{vin}\",\"voucher\":\"{voucher}\",\"notice_version\":\"{nv}\",\"sms_code\":\"<code from the outbox>\"}}'\n\
             curl {base}/v1/admin/offices/maoming/stats -H 'Authorization: Bearer {op}'\n",
            op = s.gateway.operator_token,
            nv = info.notice_version,
        ));
    }
    print!("{out}");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
}
