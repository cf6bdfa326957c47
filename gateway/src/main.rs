//! `platepool`: the standalone gateway.
//!
//! `platepool serve --addr 127.0.0.1:8080 --data-dir DIR [--demo] [--config FILE]` opens (and
//! recovers) the engine in DIR and serves the HTTP API of `docs/API.md`. SIGTERM or Ctrl-C
//! stops accepting, lets in-flight requests finish, flushes the engine and exits 0.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use actix_web::{web, App, HttpServer};
use clap::{Args, Parser, Subcommand, ValueEnum};
use platepool_engine::{Durability, Engine, EngineConfig};
use platepool_gateway::auth::{sign_token, TokenClaims};
use platepool_gateway::{demo, Gateway, GatewayConfig};

/// mimalloc: glibc's malloc serialises the frees that the writer thread makes of records the
/// office actor allocated; with mimalloc durable draws ran 35–70 % faster in the same run.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ENV_HELP: &str = "\
Environment (overrides the --config file; command-line flags override both):
  PLATEPOOL_OPERATOR_TOKEN         the operator credential (Authorization: Bearer …); random and printed when unset
  PLATEPOOL_TOKEN_SECRET           HMAC-SHA256 secret citizen tokens are signed with; random and printed when unset
  PLATEPOOL_RATE_LIMIT_USER_PER_S  requests per second per citizen on selection calls (0: off; default 10)
  PLATEPOOL_RATE_LIMIT_IP_PER_S    requests per second per client IP (0: off; default 500)
  PLATEPOOL_TRUSTED_PROXIES        comma-separated proxy IPs whose X-Forwarded-For is believed
  PLATEPOOL_SMS_WEBHOOK            http:// URL SMS are posted to (default: the built-in outbox)
  PLATEPOOL_ALLOW_TOKEN_ISSUE      true/false: POST /v1/admin/tokens issues citizen tokens (default true)
  PLATEPOOL_SHED_LOOP_LAG_MS       while a worker's event loop runs this late (ms), selection calls get
                                   503 unavailable at once instead of queueing (0: off; default 100)
  PLATEPOOL_ADDR, PLATEPOOL_DATA_DIR, PLATEPOOL_DURABILITY, PLATEPOOL_WORKERS, PLATEPOOL_SHUTDOWN_TIMEOUT_S
                                   as the flags of the same names
  RUST_LOG                         log filter (default info), e.g. RUST_LOG=platepool_gateway=debug

Config file (TOML): addr, data_dir, durability, workers, shutdown_timeout_s, and the gateway fields
operator_token, token_secret, rate_limit_user_per_s, rate_limit_ip_per_s, trusted_proxies (array),
sms_webhook, allow_token_issue, shed_loop_lag_ms.";

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

impl From<DurabilityArg> for Durability {
    fn from(d: DurabilityArg) -> Durability {
        match d {
            DurabilityArg::Fsync => Durability::Fsync,
            DurabilityArg::Flush => Durability::Flush,
            DurabilityArg::None => Durability::None,
        }
    }
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "PLATEPOOL_ADDR", value_name = "HOST:PORT")]
    addr: Option<String>,
    /// Folder of the engine's data (created when missing) [default: ./platepool-data].
    #[arg(long, env = "PLATEPOOL_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Seeds the Maoming demo office, releases and vehicles on first start, and prints tokens,
    /// demo VINs and vouchers and example curl commands.
    #[arg(long)]
    demo: bool,
    /// TOML file with the settings below and the gateway's (see the end of this help).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// When a change is durable before it is acknowledged [default: fsync].
    #[arg(long, env = "PLATEPOOL_DURABILITY", value_enum)]
    durability: Option<DurabilityArg>,
    /// HTTP worker threads [default: the number of cores].
    #[arg(long, env = "PLATEPOOL_WORKERS")]
    workers: Option<usize>,
    /// Seconds in-flight requests get to finish after SIGTERM or Ctrl-C [default: 30].
    #[arg(long, env = "PLATEPOOL_SHUTDOWN_TIMEOUT_S")]
    shutdown_timeout_s: Option<u64>,
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

/// Settings of the binary that are not the gateway's.
#[derive(Debug, Default)]
struct FileSettings {
    addr: Option<String>,
    data_dir: Option<PathBuf>,
    durability: Option<Durability>,
    workers: Option<usize>,
    shutdown_timeout_s: Option<u64>,
}

/// Reads the TOML file: the binary's own keys, the rest is the gateway configuration.
fn read_config_file(path: &Path) -> Result<(FileSettings, GatewayConfig), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut table: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let bad = |key: &str, what: &str| format!("{}: {key} must be {what}", path.display());
    let mut settings = FileSettings::default();
    if let Some(v) = table.remove("addr") {
        settings.addr = Some(
            v.as_str()
                .ok_or_else(|| bad("addr", "a string"))?
                .to_string(),
        );
    }
    if let Some(v) = table.remove("data_dir") {
        settings.data_dir = Some(PathBuf::from(
            v.as_str().ok_or_else(|| bad("data_dir", "a string"))?,
        ));
    }
    if let Some(v) = table.remove("durability") {
        let d = match v.as_str() {
            Some("fsync") => Durability::Fsync,
            Some("flush") => Durability::Flush,
            Some("none") => Durability::None,
            _ => return Err(bad("durability", "\"fsync\", \"flush\" or \"none\"")),
        };
        settings.durability = Some(d);
    }
    if let Some(v) = table.remove("workers") {
        let n = v
            .as_integer()
            .filter(|n| *n > 0)
            .ok_or_else(|| bad("workers", "a positive integer"))?;
        settings.workers = Some(n as usize);
    }
    if let Some(v) = table.remove("shutdown_timeout_s") {
        let n = v
            .as_integer()
            .filter(|n| *n >= 0)
            .ok_or_else(|| bad("shutdown_timeout_s", "a whole number of seconds"))?;
        settings.shutdown_timeout_s = Some(n as u64);
    }
    let gateway: GatewayConfig = toml::Value::Table(table)
        .try_into()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((settings, gateway))
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Applies the `PLATEPOOL_*` variables of the gateway configuration.
fn apply_env(config: &mut GatewayConfig) -> Result<(), String> {
    if let Some(v) = env_var("PLATEPOOL_OPERATOR_TOKEN") {
        config.operator_token = v;
    }
    if let Some(v) = env_var("PLATEPOOL_TOKEN_SECRET") {
        config.token_secret = v;
    }
    let number = |name: &str| -> Result<Option<u32>, String> {
        env_var(name)
            .map(|v| {
                v.trim()
                    .parse::<u32>()
                    .map_err(|_| format!("{name} must be a whole number, not {v:?}"))
            })
            .transpose()
    };
    if let Some(n) = number("PLATEPOOL_RATE_LIMIT_USER_PER_S")? {
        config.rate_limit_user_per_s = n;
    }
    if let Some(n) = number("PLATEPOOL_RATE_LIMIT_IP_PER_S")? {
        config.rate_limit_ip_per_s = n;
    }
    if let Some(n) = number("PLATEPOOL_SHED_LOOP_LAG_MS")? {
        config.shed_loop_lag_ms = u64::from(n);
    }
    if let Some(v) = env_var("PLATEPOOL_TRUSTED_PROXIES") {
        config.trusted_proxies = v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpAddr>()
                    .map_err(|_| format!("PLATEPOOL_TRUSTED_PROXIES: {s:?} is not an IP address"))
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(v) = env_var("PLATEPOOL_SMS_WEBHOOK") {
        config.sms_webhook = Some(v);
    }
    if let Some(v) = env_var("PLATEPOOL_ALLOW_TOKEN_ISSUE") {
        config.allow_token_issue = match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            _ => {
                return Err(format!(
                    "PLATEPOOL_ALLOW_TOKEN_ISSUE must be true or false, not {v:?}"
                ))
            }
        };
    }
    Ok(())
}

fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            init_logs();
            match serve(args) {
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
    addr: String,
    data_dir: PathBuf,
    durability: Durability,
    workers: usize,
    shutdown_timeout_s: u64,
    demo: bool,
    gateway: GatewayConfig,
    /// Which secrets were made up here (to print them).
    random_operator_token: bool,
    random_token_secret: bool,
}

fn settings(args: ServeArgs) -> Result<Settings, String> {
    let (file, mut gateway) = match &args.config {
        Some(path) => read_config_file(path)?,
        None => (FileSettings::default(), GatewayConfig::default()),
    };
    apply_env(&mut gateway)?;
    let random_operator_token = gateway.operator_token.is_empty();
    let random_token_secret = gateway.token_secret.is_empty();
    let gateway = gateway.with_random_secrets();
    gateway.validate()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(Settings {
        addr: args
            .addr
            .or(file.addr)
            .unwrap_or_else(|| "127.0.0.1:8080".into()),
        data_dir: args
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("platepool-data")),
        durability: args
            .durability
            .map(Durability::from)
            .or(file.durability)
            .unwrap_or_default(),
        workers: args.workers.or(file.workers).unwrap_or(cores).max(1),
        shutdown_timeout_s: args
            .shutdown_timeout_s
            .or(file.shutdown_timeout_s)
            .unwrap_or(30),
        demo: args.demo,
        gateway,
        random_operator_token,
        random_token_secret,
    })
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
async fn serve(args: ServeArgs) -> Result<(), String> {
    let s = settings(args)?;
    std::fs::create_dir_all(&s.data_dir).map_err(|e| format!("{}: {e}", s.data_dir.display()))?;
    let mut engine_config = EngineConfig::new(&s.data_dir);
    engine_config.durability = s.durability;
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

    let demo_info = if s.demo {
        Some(demo::seed(&engine, "operator:demo").await?)
    } else {
        None
    };

    let gw = Gateway::new(engine.clone(), s.gateway.clone())?;
    let app_gw = gw.clone();
    let server = HttpServer::new(move || {
        App::new()
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
