//! The overload offered by `wrk`, a load generator written in C, when it is installed.
//!
//! This process's own client (awc, one core) cannot offer three times what a release build of
//! the server does: at that rate it falls behind its own schedule by seconds, and the wait it
//! measures is its own, not the server's. `wrk` can: one event loop keeps thousands of
//! connections busy at hundreds of thousands of requests per second. It is a closed loop (each
//! connection sends its next request when the last is answered), so with `C` connections it
//! offers `C / answer time`: as long as the server refuses its excess quickly, the offered rate
//! is far above the maximum, and if the server queued instead of refusing, the offered rate
//! would fall and the campaign says so.
//!
//! What a person sees meanwhile is measured apart from the flood: a **probe**, this process's
//! open-model client at a low rate, sends draws on a schedule beside wrk and times each from
//! its intended send. Its accepted draws' latency is the latency of accepted requests under
//! overload; wrk's own latency mixes refusals and acceptances and is reported as such.
//!
//! The server's own counts (`platepool_http_requests_total` for the draw route, by status class,
//! read before and after) say how many of the flood's answers were draws, refusals (5xx: the
//! 503 of load shedding; the probe's answers say which) and other 4xx.

use std::time::Duration;

use platepool_bench::wrk::{self, Load, Request, WrkResult};

use super::{open_load, App, Sample, Watch};

/// The route label of draws in `/metrics`.
const DRAW_ROUTE: &str = "route=\"/v1/applications/{id}/draws\"";

/// The version line of the `wrk` on the `PATH`, if there is one.
pub fn available() -> Option<String> {
    wrk::version(wrk::WRK_BINARY_DEFAULT).ok()
}

/// wrk's requests: one draw per application, round robin.
fn draws(apps: &[App]) -> Vec<Request> {
    apps.iter()
        .map(|a| {
            Request::post_json(
                &format!("/v1/applications/{}/draws", a.id),
                r#"{"exclude_four":false}"#,
            )
            .bearer(&a.token)
            .header("X-Forwarded-For", &a.ip)
        })
        .collect()
}

/// One wrk thread keeping `connections` of `requests` in flight for `secs`, on `cpus` if given.
fn load(
    base: &str,
    requests: Vec<Request>,
    connections: usize,
    secs: f64,
    cpus: Option<&str>,
) -> Load {
    let load = Load::new(base, requests)
        .threads(1)
        .connections(connections)
        .duration(Duration::from_secs_f64(secs))
        .timeout(Duration::from_secs(10));
    match cpus {
        Some(c) => load.cpus(c),
        None => load,
    }
}

/// A closed loop of `connections` draws in flight for `secs`, by wrk: the maximum.
pub fn closed(
    base: &str,
    apps: &[App],
    connections: usize,
    secs: f64,
    cpus: Option<&str>,
) -> Result<WrkResult, String> {
    wrk::run(&load(base, draws(apps), connections, secs.max(1.0), cpus))
        .map_err(|e| format!("wrk: {e}"))
}

/// The most answers per second the server gives over `connections` connections to its
/// cheapest request (`GET /healthz`: no body, no token, no office), by wrk for `secs`: the
/// ceiling of any answer, refusals included, with this many connections on these CPUs.
pub fn ceiling(
    base: &str,
    connections: usize,
    secs: f64,
    cpus: Option<&str>,
) -> Result<WrkResult, String> {
    let healthz = vec![Request::get("/healthz")];
    wrk::run(&load(base, healthz, connections, secs.max(1.0), cpus))
        .map_err(|e| format!("wrk: {e}"))
}

/// Answers the server counted on the draw route, by status class (2xx, 4xx, 5xx), and its
/// histogram of the server's own time to answer them (from the gateway's middleware to the
/// answer: `(upper bound in seconds, answers within it)`, cumulative, `+Inf` left out).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counted {
    pub ok: u64,
    pub client_error: u64,
    pub server_error: u64,
    pub within: Vec<(f64, u64)>,
}

impl Counted {
    pub fn read(port: u16) -> Option<Counted> {
        let a = crate::http::once(port, "GET", "/metrics", &[], None).ok()?;
        Some(Counted::parse(&a.text()))
    }

    fn parse(text: &str) -> Counted {
        let mut c = Counted::default();
        for line in text.lines().filter(|l| {
            l.starts_with("platepool_http_requests_total{")
                && l.contains(DRAW_ROUTE)
                && l.contains("method=\"POST\"")
        }) {
            let Some(n) = line.rsplit(' ').next().and_then(|v| v.parse::<u64>().ok()) else {
                continue;
            };
            if line.contains("status=\"2xx\"") {
                c.ok += n;
            } else if line.contains("status=\"4xx\"") {
                c.client_error += n;
            } else if line.contains("status=\"5xx\"") {
                c.server_error += n;
            }
        }
        for line in text.lines().filter(|l| {
            l.starts_with("platepool_http_request_duration_seconds_bucket{")
                && l.contains(DRAW_ROUTE)
                && l.contains("method=\"POST\"")
        }) {
            let bound = line
                .split_once("le=\"")
                .and_then(|(_, rest)| rest.split_once('"'))
                .and_then(|(le, _)| le.parse::<f64>().ok());
            let n = line.rsplit(' ').next().and_then(|v| v.parse::<u64>().ok());
            // `+Inf` parses as infinity: it is the total, kept in the status counts.
            if let (Some(bound), Some(n)) = (bound.filter(|b| b.is_finite()), n) {
                c.within.push((bound, n));
            }
        }
        c
    }

    pub fn since(&self, before: &Counted) -> Counted {
        let earlier = |bound: f64| {
            before
                .within
                .iter()
                .find(|(b, _)| *b == bound)
                .map_or(0, |(_, n)| *n)
        };
        Counted {
            ok: self.ok.saturating_sub(before.ok),
            client_error: self.client_error.saturating_sub(before.client_error),
            server_error: self.server_error.saturating_sub(before.server_error),
            within: self
                .within
                .iter()
                .map(|&(b, n)| (b, n.saturating_sub(earlier(b))))
                .collect(),
        }
    }

    pub fn total(&self) -> u64 {
        self.ok + self.client_error + self.server_error
    }

    /// The upper bound (seconds) of the histogram bucket holding quantile `q` of the answers;
    /// `None` when it lies beyond the last bucket (or nothing was answered).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        platepool_gateway::metrics::bucket_quantile(self.within.iter().copied(), self.total(), q)
    }

    /// The share of answers the server took longer than `bound` seconds (a bucket bound) over.
    pub fn share_over(&self, bound: f64) -> f64 {
        let total = self.total();
        let within = self
            .within
            .iter()
            .find(|(b, _)| *b == bound)
            .map_or(0, |(_, n)| *n);
        if total == 0 {
            0.0
        } else {
            total.saturating_sub(within) as f64 / total as f64
        }
    }
}

/// What a flood measured.
pub struct Flood {
    pub wrk: WrkResult,
    /// The probe's draws, sent on a schedule during the flood.
    pub probe: Vec<Sample>,
    pub probe_secs: f64,
    /// RSS and office gauges sampled while the probe ran.
    pub watch: Watch,
    /// The server's count of draw answers during the flood (the probe's included).
    pub counted: Counted,
}

/// How the flood is run.
pub struct Plan<'a> {
    pub connections: usize,
    pub secs: f64,
    /// CPUs for wrk (a `taskset` list), when server and client are pinned apart.
    pub cpus: Option<&'a str>,
    pub probe_rate: f64,
    pub probe_connections: usize,
}

/// wrk with `plan.connections` connections for `plan.secs`, and the probe beside it from one
/// second in until one second before the end (so that it sees the flood, not its ramp).
pub fn run(
    base: &str,
    port: u16,
    pid: u32,
    apps: &[App],
    probe_apps: &[App],
    plan: &Plan<'_>,
) -> Result<Flood, String> {
    let before = Counted::read(port).ok_or("cannot read /metrics before the flood")?;
    let load = load(
        base,
        draws(apps),
        plan.connections,
        plan.secs.max(3.0),
        plan.cpus,
    );
    let flood = std::thread::spawn(move || wrk::run(&load));
    std::thread::sleep(Duration::from_secs(1));
    let probe_secs = (plan.secs - 2.0).max(1.0);
    let (probe, watch, _) = open_load(
        base,
        port,
        pid,
        probe_apps,
        plan.probe_rate,
        probe_secs,
        plan.probe_connections,
    );
    let wrk = flood
        .join()
        .map_err(|_| "the wrk thread panicked".to_string())?
        .map_err(|e| format!("wrk: {e}"))?;
    let after = Counted::read(port).ok_or("cannot read /metrics after the flood")?;
    Ok(Flood {
        wrk,
        probe,
        probe_secs,
        watch,
        counted: after.since(&before),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_the_draw_route_by_class() {
        let text = "\
platepool_http_requests_total{method=\"POST\",route=\"/v1/applications/{id}/draws\",status=\"2xx\"} 10
platepool_http_requests_total{method=\"POST\",route=\"/v1/applications/{id}/draws\",status=\"4xx\"} 3
platepool_http_requests_total{method=\"POST\",route=\"/v1/applications/{id}/draws\",status=\"5xx\"} 7
platepool_http_requests_total{method=\"GET\",route=\"/v1/offices/{office}/pool\",status=\"2xx\"} 99
platepool_http_requests_total{method=\"POST\",route=\"/v1/applications/{id}/claims\",status=\"5xx\"} 5
platepool_http_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/applications/{id}/draws\",le=\"0.5\"} 12
platepool_http_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/applications/{id}/draws\",le=\"1\"} 18
platepool_http_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/applications/{id}/draws\",le=\"2.5\"} 19
platepool_http_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/applications/{id}/draws\",le=\"+Inf\"} 20
platepool_http_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/offices/{office}/pool\",le=\"0.5\"} 99
";
        let c = Counted::parse(text);
        assert_eq!(
            c,
            Counted {
                ok: 10,
                client_error: 3,
                server_error: 7,
                within: vec![(0.5, 12), (1.0, 18), (2.5, 19)],
            }
        );
        assert_eq!(c.quantile(0.5), Some(0.5));
        assert_eq!(c.quantile(0.9), Some(1.0));
        assert_eq!(c.quantile(1.0), None);
        assert!((c.share_over(1.0) - 0.1).abs() < 1e-9);
        let later = Counted {
            ok: 15,
            client_error: 3,
            server_error: 27,
            within: vec![(0.5, 32), (1.0, 38), (2.5, 39)],
        };
        let during = later.since(&c);
        assert_eq!(during.total(), 25);
        assert_eq!(during.server_error, 20);
        assert_eq!(during.within, vec![(0.5, 20), (1.0, 20), (2.5, 20)]);
        assert_eq!(during.quantile(0.8), Some(0.5));
        assert_eq!(during.quantile(0.81), None);
    }
}
