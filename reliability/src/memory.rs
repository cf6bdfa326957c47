//! Campaign `memory` (issue 18, bounded state): does a node that serves new clients for a long
//! time keep a bounded memory?
//!
//! The binary serves with short lifetimes (idempotency keys and outbox messages kept seconds,
//! swept every second) so that the run reaches the steady state where as much expires as
//! arrives. Client threads send requests as ever new citizens: a unique user and phone (in the
//! token), `Idempotency-Key`, and client address in `X-Forwarded-For` (loopback is a trusted
//! proxy). A sampler reads the process's resident memory (`VmRSS`) from the moment it is ready.
//!
//! - **Long mode** sends `POST /v1/sms`: each request adds an idempotency key with its index
//!   entry, an SMS code, an outbox message with its index entry, and per-user and per-IP
//!   rate-limit keys. SMS codes live five minutes (SPEC S2, not configurable), so the run lasts
//!   twenty.
//! - **Short mode** (CI, 40 s, shorter than a code's life) sends keyed `POST /v1/applications`
//!   for an office that does not exist: each request adds an idempotency key (its 404 answer is
//!   stored) with its index entry and per-user and per-IP rate-limit keys, and no code.
//!
//! A second part (`settled_memory.rs`) checks that an office's memory follows its live
//! applications, not the settled ones.
//!
//! Judged on the curve's shape, not a number: the samples are cut in quarters and each
//! quarter's median taken; the growth from the third quarter to the fourth must be at most
//! [`LEVEL_RATIO`] of the growth from the first to the second, or within the curve's own noise
//! in the last quarter (three median absolute deviations). The report prints the curve.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use platepool_gateway::auth::{sign_token, TokenClaims};

use crate::http::Conn;
use crate::server::{free_port, rss_bytes, Options, Server, SECRET};
use crate::{thousands, Mode, Outcome};

/// Last quarters' growth over the first quarters', at most.
pub const LEVEL_RATIO: f64 = 0.35;

/// What each request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    /// `POST /v1/sms` (purpose `apply`).
    Sms,
    /// `POST /v1/applications` for an office that does not exist (404, stored for the key).
    UnknownOffice,
}

#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub traffic: Traffic,
    /// Load while sampling (from the moment the binary is ready).
    pub measured: Duration,
    pub sample_every: Duration,
    pub clients: u32,
    /// Idempotency keys and outbox messages kept (s).
    pub ttl_s: u64,
}

impl Plan {
    pub fn for_mode(mode: Mode) -> Plan {
        match mode {
            Mode::Short => Plan {
                traffic: Traffic::UnknownOffice,
                measured: Duration::from_secs(40),
                sample_every: Duration::from_millis(250),
                clients: 4,
                ttl_s: 8,
            },
            Mode::Long => Plan {
                traffic: Traffic::Sms,
                measured: Duration::from_secs(20 * 60),
                sample_every: Duration::from_secs(5),
                clients: 4,
                ttl_s: 60,
            },
        }
    }
}

/// One reading: seconds since the measured part began, requests answered so far, RSS bytes.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at_s: f64,
    pub requests: u64,
    pub rss: u64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The curve judged: medians of its quarters, the first and last growth, the last quarter's
/// noise (bytes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Levels {
    pub medians: [f64; 4],
    pub first_growth: f64,
    pub last_growth: f64,
    pub noise: f64,
}

impl Levels {
    pub fn of(samples: &[Sample]) -> Levels {
        let quarter = (samples.len() / 4).max(1);
        let mut medians = [0.0; 4];
        let mut last = Vec::new();
        for (q, m) in medians.iter_mut().enumerate() {
            let part: Vec<f64> = samples
                .iter()
                .skip(q * quarter)
                .take(quarter)
                .map(|s| s.rss as f64)
                .collect();
            *m = median(part.clone());
            last = part;
        }
        let noise = 3.0 * median(last.iter().map(|x| (x - medians[3]).abs()).collect());
        Levels {
            medians,
            first_growth: medians[1] - medians[0],
            last_growth: medians[3] - medians[2],
            noise,
        }
    }

    /// Levelled off: the last growth is at most [`LEVEL_RATIO`] of the first, or within the
    /// last quarter's own noise.
    pub fn levelled(&self) -> bool {
        self.last_growth <= (LEVEL_RATIO * self.first_growth).max(self.noise)
    }
}

/// Sends requests as new citizens until `stop`; counts the expected answers and the others.
fn client(
    port: u16,
    id: u32,
    traffic: Traffic,
    stop: &AtomicBool,
    ok: &AtomicU64,
    other: &AtomicU64,
) {
    let Ok(mut conn) = Conn::open(port) else {
        other.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let exp = platepool_engine::calendar::now_ms() / 1000 + 86_400;
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let serial = ((id as u64) << 40) | n;
        let token = sign_token(
            SECRET,
            &TokenClaims {
                user: format!("mem{serial}"),
                phone: format!("1{:010}", serial % 10_000_000_000),
                exp,
            },
        );
        let ip = format!("fd00::{:x}:{:x}:{:x}", id, (n >> 16) & 0xffff, n & 0xffff);
        let (path, body, expected): (&str, &[u8], u16) = match traffic {
            Traffic::Sms => ("/v1/sms", br#"{"purpose":"apply"}"#, 200),
            Traffic::UnknownOffice => ("/v1/applications", UNKNOWN_OFFICE_BODY, 404),
        };
        let answer = conn.send(
            "POST",
            path,
            &[
                ("Authorization", &format!("Bearer {token}")),
                ("Content-Type", "application/json"),
                ("Idempotency-Key", &format!("mem-{serial}")),
                ("X-Forwarded-For", &ip),
            ],
            Some(body),
        );
        match answer {
            Ok(a) if a.status == expected => ok.fetch_add(1, Ordering::Relaxed),
            _ => other.fetch_add(1, Ordering::Relaxed),
        };
    }
}

const UNKNOWN_OFFICE_BODY: &[u8] = br#"{"office":"nowhere","vin":"LSVAU2180N2100001","voucher":"V1","notice_version":"v1","sms_code":"123456"}"#;

pub fn campaign(mode: Mode) -> Outcome {
    let started = Instant::now();
    let mut out = Outcome::new("memory", "memory of a node serving ever new clients");
    if let Err(e) = campaign_into(&Plan::for_mode(mode), &mut out) {
        out.violation(e);
    }
    crate::settled_memory::phase(mode, &mut out);
    out.elapsed = started.elapsed();
    out
}

fn campaign_into(plan: &Plan, out: &mut Outcome) -> Result<(), String> {
    let bin = crate::storage::binary(true)?;
    let temp = tempfile::Builder::new()
        .prefix("platepool-memory-")
        .tempdir()
        .map_err(|e| format!("temporary folder: {e}"))?;
    let mut opts = Options::new(bin, temp.path().join("data"));
    let ttl = plan.ttl_s.to_string();
    opts.env = vec![
        ("PLATEPOOL_IDEMPOTENCY_TTL_S".into(), ttl.clone()),
        ("PLATEPOOL_OUTBOX_RETENTION_S".into(), ttl),
        ("PLATEPOOL_SWEEP_INTERVAL_S".into(), "1".into()),
    ];
    opts.user_limit = Some(1_000_000);
    opts.ip_limit = Some(1_000_000);
    let port = free_port();
    let (server, _) = Server::start(&opts, port)?;
    let pid = server.pid();
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let other = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..plan.clients)
        .map(|id| {
            let (stop, ok, other) = (stop.clone(), ok.clone(), other.clone());
            let traffic = plan.traffic;
            std::thread::spawn(move || client(port, id, traffic, &stop, &ok, &other))
        })
        .collect();
    let rss_before = rss_bytes(pid).unwrap_or(0);
    let begin = Instant::now();
    let mut samples = Vec::new();
    while begin.elapsed() < plan.measured {
        std::thread::sleep(plan.sample_every);
        let Some(rss) = rss_bytes(pid) else {
            stop.store(true, Ordering::Relaxed);
            return Err("the server is gone (no /proc status)".into());
        };
        samples.push(Sample {
            at_s: begin.elapsed().as_secs_f64(),
            requests: ok.load(Ordering::Relaxed) + other.load(Ordering::Relaxed),
            rss,
        });
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }
    drop(server);
    let (ok, other) = (ok.load(Ordering::Relaxed), other.load(Ordering::Relaxed));
    report(plan, &samples, rss_before, ok, other, out);
    Ok(())
}

fn mib(bytes: f64) -> String {
    format!("{:.1}", bytes / 1_048_576.0)
}

fn report(
    plan: &Plan,
    samples: &[Sample],
    rss_before: u64,
    ok: u64,
    other: u64,
    out: &mut Outcome,
) {
    let what = match plan.traffic {
        Traffic::Sms => "POST /v1/sms (a code, an outbox message, a key)",
        Traffic::UnknownOffice => {
            "keyed POST /v1/applications to an unknown office (a stored 404 per key)"
        }
    };
    out.tried(format!(
        "{} clients sending {what} as new citizens (unique user, phone, Idempotency-Key, X-Forwarded-For) for {} s from ready; keys and outbox messages kept {} s, swept every second; VmRSS every {} ms",
        plan.clients,
        plan.measured.as_secs(),
        plan.ttl_s,
        plan.sample_every.as_millis()
    ));
    out.figure(
        "requests answered as expected / otherwise",
        format!("{} / {}", thousands(ok), thousands(other)),
    );
    let step = (samples.len() / 12).max(1);
    let curve: Vec<String> = samples
        .iter()
        .step_by(step)
        .chain(samples.last())
        .map(|s| {
            format!(
                "{:.0} s {} req {} MiB",
                s.at_s,
                thousands(s.requests),
                mib(s.rss as f64)
            )
        })
        .collect();
    out.figure(
        format!("RSS curve (ready: {} MiB)", mib(rss_before as f64)),
        curve.join(" · "),
    );
    let l = Levels::of(samples);
    out.figure("quarters' median RSS (MiB)", l.medians.map(mib).join(" / "));
    out.figure(
        "growth first → second quarter / third → fourth / last quarter's noise (MiB)",
        format!(
            "{} / {} / {}",
            mib(l.first_growth),
            mib(l.last_growth),
            mib(l.noise)
        ),
    );
    if other > ok / 100 {
        out.violation(format!(
            "{other} requests were not answered as expected (of {})",
            ok + other
        ));
    }
    out.check(
        samples.len() >= 8 && l.levelled(),
        format!(
            "memory levels off: {} MiB from the third quarter to the fourth, against {} MiB from the first to the second (at most {:.0} % of it, or the last quarter's noise of {} MiB)",
            mib(l.last_growth),
            mib(l.first_growth),
            LEVEL_RATIO * 100.0,
            mib(l.noise)
        ),
        format!(
            "memory does not level off: {} MiB from the third quarter to the fourth against {} MiB from the first to the second (noise {} MiB, {} samples)",
            mib(l.last_growth),
            mib(l.first_growth),
            mib(l.noise),
            samples.len()
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(rss: impl Fn(u64) -> u64) -> Vec<Sample> {
        (0..40)
            .map(|i| Sample {
                at_s: i as f64,
                requests: i * 1_000,
                rss: rss(i),
            })
            .collect()
    }

    #[test]
    fn a_curve_that_flattens_levels_off_and_a_straight_one_does_not() {
        let flat = curve(|i| 50_000_000 + 1_000_000 * i.min(12) + (i % 3) * 300_000);
        assert!(Levels::of(&flat).levelled(), "{:?}", Levels::of(&flat));
        let leak = curve(|i| 50_000_000 + 500_000 * i + (i % 3) * 300_000);
        let l = Levels::of(&leak);
        assert!(!l.levelled(), "{l:?}");
        assert!((l.last_growth - 5_000_000.0).abs() < 400_000.0, "{l:?}");
    }
}
