//! Gateway configuration: secrets, rate limits, proxies, SMS. Values come from the embedding
//! program, or for the binary from a TOML file and `PLATEPOOL_*` environment variables.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Default per-user limit: no person pressing buttons reaches it (API.md: ≥ 5/s).
pub const RATE_LIMIT_USER_PER_S_DEFAULT: u32 = 10;
/// Default per-IP limit: a busy NAT of people stays under it (API.md: ≥ 200/s).
pub const RATE_LIMIT_IP_PER_S_DEFAULT: u32 = 500;
/// Default limit on how late a worker's event loop may run before selection requests are
/// refused with 503 (see `lag.rs`).
pub const SHED_LOOP_LAG_MS_DEFAULT: u64 = 100;
/// How long an `Idempotency-Key` makes a retry a retry (24 h).
pub const IDEMPOTENCY_TTL_S_DEFAULT: u64 = 86_400;
/// How long the built-in SMS outbox keeps messages unless told otherwise (7 days).
pub const OUTBOX_RETENTION_S_DEFAULT: u64 = 7 * 86_400;
/// Seconds between two sweeps of expired state (`expiry.rs`).
pub const SWEEP_INTERVAL_S_DEFAULT: u64 = 60;
/// Shortest secret accepted for signing citizen tokens.
pub const TOKEN_SECRET_LEN_MIN: usize = 16;
/// Default slack on a JWT's `exp` and `iat`, for clocks a little apart.
pub const JWT_LEEWAY_S_DEFAULT: u64 = 30;
/// Largest slack accepted on a JWT's `exp` and `iat`.
pub const JWT_LEEWAY_S_MAX: u64 = 300;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// The operator credential (`Authorization: Bearer <token>` on `/v1/admin/…`).
    #[serde(deserialize_with = "crate::settings::text")]
    pub operator_token: String,
    /// The HMAC-SHA256 secret the embedding platform signs citizen tokens with (`v1.` tokens
    /// and HS256 JWTs).
    #[serde(deserialize_with = "crate::settings::text")]
    pub token_secret: String,
    /// The platform's public key for JWTs signed with RS256/EdDSA/ES256: PEM text, or the path
    /// of a PEM file. `None`: only HS256 JWTs and `v1.` tokens.
    pub jwt_public_key: Option<String>,
    /// Seconds a JWT is still accepted after its `exp` (and may be issued ahead of our clock).
    pub jwt_leeway_s: u64,
    /// Requests per second per citizen on selection calls; 0 turns the limit off.
    pub rate_limit_user_per_s: u32,
    /// Requests per second per client IP; 0 turns the limit off.
    pub rate_limit_ip_per_s: u32,
    /// Proxies (CIDR ranges, or single addresses) whose `X-Forwarded-For` is believed; the
    /// header is walked from the right through trusted hops (see `limits.rs`). A string of
    /// comma-separated ranges is accepted too (the environment variable).
    #[serde(deserialize_with = "crate::proxies::deserialize_ranges")]
    pub trusted_proxies: Vec<IpNet>,
    /// Where a real deployment's SMS go (`POST` JSON `{"phone","purpose","text","sent_at"}`,
    /// signed, see docs/sms-webhook.md); `None` keeps them in the built-in outbox.
    pub sms_webhook: Option<String>,
    /// The HMAC-SHA256 key each webhook request is signed with (required with `sms_webhook`).
    #[serde(deserialize_with = "crate::settings::text")]
    pub sms_webhook_secret: String,
    /// PEM file of extra root certificates for an `https://` webhook (a private CA); the public
    /// roots (webpki-roots) are always trusted.
    pub sms_webhook_ca_file: Option<String>,
    /// Standalone mode: `POST /v1/admin/tokens` issues citizen tokens (demo, tests, load tests).
    pub allow_token_issue: bool,
    /// While a worker's event loop runs later than this (ms), selection and public requests
    /// get 503 `unavailable` at once instead of queueing (overload); 0 turns it off.
    pub shed_loop_lag_ms: u64,
    /// Named operator credentials (SPEC S4, `operators.rs`); `operator_token` is one more, an
    /// admin named `operator`.
    pub operators: Vec<crate::operators::OperatorEntry>,
    /// Seconds an `Idempotency-Key` is remembered (a retry after it runs again).
    pub idempotency_ttl_s: u64,
    /// Seconds the built-in outbox keeps a message; 0 keeps them all; unset: 7 days (the
    /// binary's `--demo` keeps them).
    pub outbox_retention_s: Option<u64>,
    /// Seconds between two sweeps of expired keys, messages and codes.
    pub sweep_interval_s: u64,
    /// Standalone mode: citizens sign in with phone + SMS code (`POST /v1/login`, SPEC S5) and
    /// get the gateway's own token, also as the `platepool_session` cookie.
    pub standalone_login: bool,
    /// Always mark the session cookie `Secure` (it is whenever the request came over TLS).
    pub cookie_secure: bool,
    /// The key user ids of the standalone login are derived from phones with (HMAC-SHA256);
    /// empty: `token_secret`. Set it before rotating `token_secret`, or every signed-in
    /// citizen becomes a new user.
    #[serde(deserialize_with = "crate::settings::text")]
    pub login_user_key: String,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            operator_token: String::new(),
            token_secret: String::new(),
            jwt_public_key: None,
            jwt_leeway_s: JWT_LEEWAY_S_DEFAULT,
            rate_limit_user_per_s: RATE_LIMIT_USER_PER_S_DEFAULT,
            rate_limit_ip_per_s: RATE_LIMIT_IP_PER_S_DEFAULT,
            trusted_proxies: Vec::new(),
            sms_webhook: None,
            sms_webhook_secret: String::new(),
            sms_webhook_ca_file: None,
            allow_token_issue: true,
            shed_loop_lag_ms: SHED_LOOP_LAG_MS_DEFAULT,
            operators: Vec::new(),
            idempotency_ttl_s: IDEMPOTENCY_TTL_S_DEFAULT,
            outbox_retention_s: None,
            sweep_interval_s: SWEEP_INTERVAL_S_DEFAULT,
            standalone_login: true,
            cookie_secure: false,
            login_user_key: String::new(),
        }
    }
}

impl GatewayConfig {
    /// The outbox retention in force (seconds; 0 keeps every message).
    pub fn outbox_retention_s(&self) -> Option<u64> {
        Some(
            self.outbox_retention_s
                .unwrap_or(OUTBOX_RETENTION_S_DEFAULT),
        )
    }

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
        crate::operators::Credentials::new(self)?;
        if self.idempotency_ttl_s == 0 {
            return Err("idempotency_ttl_s must be at least 1 second".into());
        }
        if self.sweep_interval_s == 0 {
            return Err("sweep_interval_s must be at least 1 second".into());
        }
        if self.jwt_leeway_s > JWT_LEEWAY_S_MAX {
            return Err(format!(
                "jwt_leeway_s must be at most {JWT_LEEWAY_S_MAX} seconds"
            ));
        }
        if let Some(url) = self.sms_webhook() {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err("sms_webhook must be an http:// or https:// URL".into());
            }
            if self.sms_webhook_secret.len() < TOKEN_SECRET_LEN_MIN {
                return Err(format!(
                    "sms_webhook_secret (the key webhook requests are signed with) must have at least {TOKEN_SECRET_LEN_MIN} characters"
                ));
            }
        }
        Ok(())
    }

    /// The webhook URL, if one is set (an empty setting is none).
    pub fn sms_webhook(&self) -> Option<&str> {
        self.sms_webhook
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
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
