//! The `platepool` binary's configuration: the gateway's ([`GatewayConfig`]) and the server's own
//! keys, layered with `figment`: defaults < TOML file (`--config`) < `PLATEPOOL_<KEY>`
//! environment variables < command-line flags. `platepool.example.toml` at the repository root
//! lists every key with its default and meaning (a test keeps it complete).

use std::path::{Path, PathBuf};

use figment::providers::{Data, Env, Format as _, Serialized, Toml};
use figment::Figment;
use platepool_engine::Durability;
use serde::{Deserialize, Deserializer, Serialize};

use crate::config::GatewayConfig;

/// When a change is durable before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityName {
    /// fdatasync before every acknowledgement: survives power loss.
    #[default]
    Fsync,
    /// flush to the OS before every acknowledgement: survives a process crash.
    Flush,
    /// no flush per acknowledgement (benchmarks of the logic only).
    None,
}

impl From<DurabilityName> for Durability {
    fn from(d: DurabilityName) -> Durability {
        match d {
            DurabilityName::Fsync => Durability::Fsync,
            DurabilityName::Flush => Durability::Flush,
            DurabilityName::None => Durability::None,
        }
    }
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event, the request's span (with its id) in front.
    #[default]
    Text,
    /// One JSON object per line, with the request's span fields.
    Json,
}

/// Everything `platepool serve` is configured with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ServeConfig {
    /// Address to listen on.
    pub addr: String,
    /// Folder of the engine's data (created when missing).
    pub data_dir: PathBuf,
    pub durability: DurabilityName,
    /// HTTP worker threads; 0: the number of cores.
    pub workers: usize,
    /// Seconds in-flight requests get to finish after SIGTERM or Ctrl-C.
    pub shutdown_timeout_s: u64,
    /// A wall-clock step larger than this (ms) is not followed until an operator confirms the
    /// time or the wall clock agrees again (SPEC T1, engine `clock.rs`).
    pub clock_step_bound_ms: u64,
    /// Milliseconds a new connection gets to send its first request's head before it is
    /// answered 408 and closed.
    pub client_request_timeout_ms: u64,
    /// An office refuses new writes with 503 while calls wait in it longer than this (ms) and
    /// at least 64 are in flight (0: only past the in-flight limit).
    pub shed_queue_delay_ms: u64,
    pub log_format: LogFormat,
    #[serde(flatten)]
    pub gateway: GatewayConfig,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            addr: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("platepool-data"),
            durability: DurabilityName::Fsync,
            workers: 0,
            shutdown_timeout_s: 30,
            clock_step_bound_ms: 2_000,
            client_request_timeout_ms: 5_000,
            shed_queue_delay_ms: u64::try_from(
                platepool_engine::actor::SHED_QUEUE_DELAY.as_millis(),
            )
            .unwrap_or(u64::MAX),
            log_format: LogFormat::Text,
            // The binary issues citizen tokens only when told (or with --demo): an operator
            // token that can act as any citizen is not a default (SPEC S4).
            gateway: GatewayConfig {
                allow_token_issue: false,
                ..GatewayConfig::default()
            },
        }
    }
}

/// Every key of [`ServeConfig`] (a test checks the list against the struct).
pub const KEYS: &[&str] = &[
    "addr",
    "data_dir",
    "durability",
    "workers",
    "shutdown_timeout_s",
    "clock_step_bound_ms",
    "client_request_timeout_ms",
    "shed_queue_delay_ms",
    "log_format",
    "operator_token",
    "token_secret",
    "jwt_public_key",
    "jwt_leeway_s",
    "rate_limit_user_per_s",
    "rate_limit_ip_per_s",
    "trusted_proxies",
    "sms_webhook",
    "sms_webhook_secret",
    "sms_webhook_ca_file",
    "allow_token_issue",
    "shed_loop_lag_ms",
    "operators",
    "idempotency_ttl_s",
    "outbox_retention_s",
    "sweep_interval_s",
    "standalone_login",
    "cookie_secure",
    "login_user_key",
];

/// Keys whose values are secrets: masked when the configuration is printed.
pub const SECRET_KEYS: &[&str] = &[
    "operator_token",
    "token_secret",
    "sms_webhook_secret",
    "login_user_key",
];

/// The prefix of the environment variables (`PLATEPOOL_RATE_LIMIT_IP_PER_S`, …).
pub const ENV_PREFIX: &str = "PLATEPOOL_";

/// A text setting that the environment may have parsed as a number or a boolean (a secret of
/// digits, say): taken as the text it was.
pub fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        S(String),
        U(u64),
        I(i64),
        F(f64),
        B(bool),
    }
    Ok(match Text::deserialize(d)? {
        Text::S(s) => s,
        Text::U(n) => n.to_string(),
        Text::I(n) => n.to_string(),
        Text::F(n) => n.to_string(),
        Text::B(b) => b.to_string(),
    })
}

/// Reads the file's keys, refusing unknown ones (a misspelt key would otherwise be ignored).
fn file_provider(path: &Path) -> Result<Data<Toml>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(unknown) = table.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!(
            "{}: unknown key {unknown:?} (platepool.example.toml lists every key)",
            path.display()
        ));
    }
    Ok(Toml::string(&text))
}

/// The layered configuration: defaults, then `file`, then the environment, then `flags` (a
/// serializable value whose unset flags are left out).
pub fn load<F: Serialize>(file: Option<&Path>, flags: &F) -> Result<ServeConfig, String> {
    let mut figment = Figment::from(Serialized::defaults(ServeConfig::default()));
    if let Some(path) = file {
        figment = figment.merge(file_provider(path)?);
    }
    figment = figment
        .merge(
            Env::prefixed(ENV_PREFIX)
                .filter(|k| KEYS.iter().any(|key| k.as_str().eq_ignore_ascii_case(key))),
        )
        .merge(Serialized::defaults(flags));
    let config: ServeConfig = figment.extract().map_err(|e| {
        let source = match file {
            Some(p) => format!("{} or the environment", p.display()),
            None => "the environment".into(),
        };
        format!("configuration ({source}): {e}")
    })?;
    config.validate()?;
    Ok(config)
}

impl ServeConfig {
    /// Checks what does not depend on secrets being set (empty ones are made at start).
    pub fn validate(&self) -> Result<(), String> {
        let mut gateway = self.gateway.clone();
        for secret in [&mut gateway.operator_token, &mut gateway.token_secret] {
            if secret.is_empty() {
                *secret = "x".repeat(crate::config::TOKEN_SECRET_LEN_MIN);
            }
        }
        gateway.validate()?;
        crate::jwt::TokenVerifier::new(&gateway)?;
        if let Some(ca) = &gateway.sms_webhook_ca_file {
            crate::sms_webhook::load_roots(Some(ca))?;
        }
        Ok(())
    }

    /// The configuration as TOML with secrets masked, unset optional keys as comments: what
    /// `platepool config check` prints.
    pub fn masked_toml(&self) -> String {
        let table = match toml::Table::try_from(self) {
            Ok(t) => t,
            Err(e) => return format!("# cannot print the configuration: {e}\n"),
        };
        let mut out = String::new();
        for key in KEYS {
            match table.get(*key) {
                Some(toml::Value::String(s)) if SECRET_KEYS.contains(key) => {
                    if s.is_empty() && *key == "sms_webhook_secret" {
                        out.push_str(&format!(
                            "{key} = \"\"  # unset (required with sms_webhook)\n"
                        ));
                    } else if s.is_empty() && *key == "login_user_key" {
                        out.push_str(&format!(
                            "{key} = \"\"  # unset: login user ids are keyed with token_secret\n"
                        ));
                    } else if s.is_empty() {
                        out.push_str(&format!(
                            "{key} = \"\"  # unset: a random one is made at start\n"
                        ));
                    } else {
                        out.push_str(&format!(
                            "{key} = \"********\"  # set, {} characters\n",
                            s.chars().count()
                        ));
                    }
                }
                Some(value) => {
                    let mut one = toml::Table::new();
                    one.insert((*key).to_string(), value.clone());
                    out.push_str(&toml::to_string(&one).unwrap_or_default());
                }
                None => out.push_str(&format!("# {key}: unset\n")),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_list_every_field() {
        let mut full = ServeConfig::default();
        full.gateway.jwt_public_key = Some("k".into());
        full.gateway.sms_webhook = Some("https://sms.example".into());
        full.gateway.sms_webhook_ca_file = Some("ca.pem".into());
        full.gateway.outbox_retention_s = Some(0);
        let table = toml::Table::try_from(&full).expect("serializes");
        let mut fields: Vec<&str> = table.keys().map(String::as_str).collect();
        let mut keys = KEYS.to_vec();
        fields.sort_unstable();
        keys.sort_unstable();
        assert_eq!(fields, keys);
    }
}
