//! Gateway configuration: secrets, rate limits, proxies, SMS. Values come from the embedding
//! program, or for the binary from a TOML file and `PLATEPOOL_*` environment variables.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Default per-user limit: no person pressing buttons reaches it (API.md: ≥ 5/s).
pub const RATE_LIMIT_USER_PER_S_DEFAULT: u32 = 10;
/// Default per-IP limit: a busy NAT of people stays under it (API.md: ≥ 200/s).
pub const RATE_LIMIT_IP_PER_S_DEFAULT: u32 = 500;
/// Default limit on how late a worker's event loop may run before selection requests are
/// refused with 503 (see `lag.rs`).
pub const SHED_LOOP_LAG_MS_DEFAULT: u64 = 100;
/// Shortest secret accepted for signing citizen tokens.
pub const TOKEN_SECRET_LEN_MIN: usize = 16;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// The operator credential (`Authorization: Bearer <token>` on `/v1/admin/…`).
    pub operator_token: String,
    /// The HMAC-SHA256 secret the embedding platform signs citizen tokens with.
    pub token_secret: String,
    /// Requests per second per citizen on selection calls; 0 turns the limit off.
    pub rate_limit_user_per_s: u32,
    /// Requests per second per client IP; 0 turns the limit off.
    pub rate_limit_ip_per_s: u32,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpAddr>,
    /// Where a real deployment's SMS go (`POST` JSON `{"phone","purpose","text"}`); `None` keeps
    /// them in the built-in outbox.
    pub sms_webhook: Option<String>,
    /// Standalone mode: `POST /v1/admin/tokens` issues citizen tokens (demo, tests, load tests).
    pub allow_token_issue: bool,
    /// While a worker's event loop runs later than this (ms), selection and public requests
    /// get 503 `unavailable` at once instead of queueing (overload); 0 turns it off.
    pub shed_loop_lag_ms: u64,
    /// Standalone mode: citizens sign in with phone + SMS code (`POST /v1/login`, SPEC S5) and
    /// get the gateway's own token, also as the `platepool_session` cookie.
    pub standalone_login: bool,
    /// Always mark the session cookie `Secure` (it is whenever the request came over TLS).
    pub cookie_secure: bool,
    /// The key user ids of the standalone login are derived from phones with (HMAC-SHA256);
    /// empty: `token_secret`. Set it before rotating `token_secret`, or every signed-in
    /// citizen becomes a new user.
    pub login_user_key: String,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            operator_token: String::new(),
            token_secret: String::new(),
            rate_limit_user_per_s: RATE_LIMIT_USER_PER_S_DEFAULT,
            rate_limit_ip_per_s: RATE_LIMIT_IP_PER_S_DEFAULT,
            trusted_proxies: Vec::new(),
            sms_webhook: None,
            allow_token_issue: true,
            shed_loop_lag_ms: SHED_LOOP_LAG_MS_DEFAULT,
            standalone_login: true,
            cookie_secure: false,
            login_user_key: String::new(),
        }
    }
}

impl GatewayConfig {
    /// Checks the secrets are usable.
    pub fn validate(&self) -> Result<(), String> {
        if self.operator_token.len() < TOKEN_SECRET_LEN_MIN {
            return Err(format!(
                "operator_token must have at least {TOKEN_SECRET_LEN_MIN} characters"
            ));
        }
        if self.token_secret.len() < TOKEN_SECRET_LEN_MIN {
            return Err(format!(
                "token_secret must have at least {TOKEN_SECRET_LEN_MIN} characters"
            ));
        }
        if let Some(url) = &self.sms_webhook {
            // The gateway speaks plain HTTP to the SMS service; TLS ends at a local relay.
            if !url.starts_with("http://") {
                return Err(
                    "sms_webhook must be an http:// URL (terminate TLS at a local relay)".into(),
                );
            }
        }
        Ok(())
    }

    /// Random secrets, for a standalone start without configured ones.
    pub fn with_random_secrets(mut self) -> GatewayConfig {
        use rand::Rng;
        let mut rng = rand::rng();
        let mut hex = |n: usize| -> String {
            (0..n)
                .map(|_| format!("{:02x}", rng.random::<u8>()))
                .collect()
        };
        if self.operator_token.is_empty() {
            self.operator_token = format!("op-{}", hex(16));
        }
        if self.token_secret.is_empty() {
            self.token_secret = hex(32);
        }
        self
    }
}
