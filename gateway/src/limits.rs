//! Per-user and per-IP rate limits on selection calls (SPEC S3), with `governor` (GCRA).
//!
//! A limited request gets 429 `too_many_requests` with `retry_after_ms` before any rule is
//! evaluated, so a script gains nothing over a person pressing buttons.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::HttpRequest;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;

use crate::config::GatewayConfig;
use crate::error::ApiError;

/// Checks between two sweeps of idle keys (keeps the limiters' memory bounded).
const SWEEP_EVERY: u64 = 100_000;

#[derive(Debug)]
pub struct RateLimits {
    user: Option<DefaultKeyedRateLimiter<String>>,
    ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    trusted_proxies: Vec<IpNet>,
    checks: AtomicU64,
    clock: DefaultClock,
}

/// A burst of one second's worth: a person double-clicking is never limited.
fn limiter<K: std::hash::Hash + Eq + Clone>(per_s: u32) -> Option<DefaultKeyedRateLimiter<K>> {
    NonZeroU32::new(per_s).map(|n| RateLimiter::keyed(Quota::per_second(n).allow_burst(n)))
}

impl RateLimits {
    pub fn new(config: &GatewayConfig) -> RateLimits {
        RateLimits {
            user: limiter(config.rate_limit_user_per_s),
            ip: limiter(config.rate_limit_ip_per_s),
            trusted_proxies: config.trusted_proxies.clone(),
            checks: AtomicU64::new(0),
            clock: DefaultClock::default(),
        }
    }

    /// The client's address: the peer's, or the first `X-Forwarded-For` hop from the right that
    /// is not a trusted proxy (`proxies.rs`).
    pub fn client_ip(&self, req: &HttpRequest) -> Option<IpAddr> {
        crate::proxies::client_ip(req, &self.trusted_proxies)
    }

    /// Counts one request of `user` (if known) from the request's IP.
    pub fn check(&self, req: &HttpRequest, user: Option<&str>) -> Result<(), ApiError> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            if let Some(l) = &self.user {
                l.retain_recent();
            }
            if let Some(l) = &self.ip {
                l.retain_recent();
            }
        }
        if let (Some(l), Some(ip)) = (&self.ip, self.client_ip(req)) {
            if let Err(not_until) = l.check_key(&ip) {
                let wait = not_until.wait_time_from(self.clock.now());
                return Err(ApiError::too_many_requests(wait.as_millis().max(1) as u64));
            }
        }
        if let (Some(l), Some(u)) = (&self.user, user) {
            if let Err(not_until) = l.check_key(&u.to_string()) {
                let wait = not_until.wait_time_from(self.clock.now());
                return Err(ApiError::too_many_requests(wait.as_millis().max(1) as u64));
            }
        }
        Ok(())
    }
}
