//! The setup every in-process gateway test shares: an engine in a temp folder on a test clock,
//! offices, releases, certificates, citizen tokens, SMS codes read from the outbox, and the app
//! as the binary mounts it.

// Each test file uses its own part of this module.
#![allow(dead_code)]

pub mod openapi;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use platepool_engine::actor::Clock;
use platepool_engine::calendar::parse_rfc3339;
use platepool_engine::vin::Vin;
use platepool_engine::{
    CertificateRow, Durability, Engine, EngineConfig, NewRelease, Notice, OfficeConfig,
    OfficeRules, Pattern, ReleaseSource,
};
use platepool_gateway::auth::{sign_token, TokenClaims};
use platepool_gateway::sms::Purpose;
use platepool_gateway::{Gateway, GatewayConfig};

pub const SECRET: &str = "gateway-tests-token-secret-0123456789";
pub const OPERATOR: &str = "gateway-tests-operator-token-0123456789";

/// A clock that stands still until the test moves it.
#[derive(Debug)]
pub struct TestClock(pub AtomicU64);

impl TestClock {
    pub fn at(now_ms: u64) -> Arc<TestClock> {
        Arc::new(TestClock(AtomicU64::new(now_ms)))
    }

    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A Tuesday morning in the office's time zone.
pub fn t0() -> u64 {
    parse_rfc3339("2026-11-24T02:00:00Z").expect("time")
}

/// The VIN of certificate `n` (`n` < 1000), with its check digit.
pub fn vin(n: u32) -> String {
    Vin::with_check_digit(&format!("LSVAA{n:03}X12345678"))
        .expect("valid VIN")
        .into_string()
}

/// The voucher of certificate `n`.
pub fn voucher_no(n: u32) -> String {
    format!("WDZ{n:07}")
}

/// Certificate `n` for `class` and `energy`.
pub fn certificate(n: u32, class: &str, energy: &str) -> CertificateRow {
    CertificateRow {
        vin: vin(n),
        voucher: voucher_no(n),
        class: class.into(),
        energy: energy.into(),
    }
}

/// An office in 粤K serving `classes`, notice `v1`.
pub fn office(name: &str, classes: &[&str], rules: OfficeRules) -> OfficeConfig {
    OfficeConfig {
        name: name.to_string(),
        prefix: "粤K".into(),
        classes: classes.iter().map(|c| c.to_string()).collect(),
        rules,
        notice: Notice {
            version: "v1".into(),
            text: "业务须知".into(),
        },
    }
}

/// A release of `class` from `patterns`, open from `opens_at_ms`.
pub fn release(class: &str, label: &str, patterns: &[&str], opens_at_ms: u64) -> NewRelease {
    NewRelease {
        class: class.into(),
        label: label.into(),
        opens_at_ms,
        custom_from_ms: None,
        source: ReleaseSource::Patterns(
            patterns
                .iter()
                .map(|p| Pattern::parse(p).expect("pattern"))
                .collect(),
        ),
    }
}

/// An engine in a fresh temp folder (no fsync), on `clock` if given.
pub async fn engine(
    seed: Option<u64>,
    clock: Option<Arc<dyn Clock>>,
) -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = EngineConfig::new(dir.path());
    config.durability = Durability::None;
    config.seed = seed;
    // Offices shed writes only at the in-flight cap, not by time: a test's client shares the
    // machine (and in `concurrency.rs` the process) with the server, so in a debug build on a
    // busy machine a burst of 200 clients waits long enough to look like overload.
    config.shed_queue_delay = None;
    if let Some(clock) = clock {
        config.clock = clock;
    }
    let engine = Engine::open(config).await.expect("engine opens");
    (dir, engine)
}

/// [`OPERATOR`] and [`SECRET`], no rate limits, no shedding by loop lag (a test's runtime is
/// not a server worker: a slow step of the test itself would look like overload; `overload.rs`
/// turns it on).
pub fn gateway_config() -> GatewayConfig {
    GatewayConfig {
        operator_token: OPERATOR.into(),
        token_secret: SECRET.into(),
        rate_limit_user_per_s: 0,
        rate_limit_ip_per_s: 0,
        shed_loop_lag_ms: 0,
        ..GatewayConfig::default()
    }
}

pub fn gateway(engine: &Engine, config: GatewayConfig) -> Gateway {
    Gateway::new(engine.clone(), config).expect("gateway")
}

/// A citizen token signed with [`SECRET`], expiring at `exp_s` (Unix seconds).
pub fn token(user: &str, phone: &str, exp_s: u64) -> String {
    sign_token(
        SECRET,
        &TokenClaims {
            user: user.into(),
            phone: phone.into(),
            exp: exp_s,
        },
    )
}

/// The last code sent to `phone` for `purpose`, read from the outbox.
pub fn last_code(gw: &Gateway, phone: &str, purpose: Purpose) -> String {
    let messages = gw.sms.outbox(Some(phone)).expect("outbox");
    let text = &messages
        .iter()
        .rev()
        .find(|m| m.purpose == purpose)
        .expect("a code was sent")
        .text;
    let chars: Vec<char> = text.chars().collect();
    chars
        .windows(6)
        .map(|w| w.iter().collect::<String>())
        .find(|w| w.chars().all(|c| c.is_ascii_digit()))
        .expect("six digits in the message")
}

/// The app as the binary mounts it: the API at the root, the JSON 404 for anything else.
#[allow(unused_macros)]
macro_rules! app {
    ($gw:expr) => {
        actix_web::test::init_service(
            actix_web::App::new()
                .service($gw.scope(""))
                .default_service(actix_web::web::to(platepool_gateway::not_found)),
        )
        .await
    };
}
#[allow(unused_imports)]
pub(crate) use app;
