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

/// One wrk thread keeping `connections` draws in flight for `secs`, on `cpus` if given.
fn load(base: &str, apps: &[App], connections: usize, secs: f64, cpus: Option<&str>) -> Load {
    let load = Load::new(base, draws(apps))
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
    wrk::run(&load(base, apps, connections, secs.max(1.0), cpus)).map_err(|e| format!("wrk: {e}"))
}

/// Answers the server counted on the draw route, by status class (2xx, 4xx, 5xx).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counted {
    pub ok: u64,
    pub client_error: u64,
    pub server_error: u64,
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
        c
    }

    pub fn since(self, before: Counted) -> Counted {
        Counted {
            ok: self.ok.saturating_sub(before.ok),
            client_error: self.client_error.saturating_sub(before.client_error),
            server_error: self.server_error.saturating_sub(before.server_error),
        }
    }

    pub fn total(self) -> u64 {
        self.ok + self.client_error + self.server_error
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
    let load = load(base, apps, plan.connections, plan.secs.max(3.0), plan.cpus);
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
        counted: after.since(before),
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
";
        let c = Counted::parse(text);
        assert_eq!(
            c,
            Counted {
                ok: 10,
                client_error: 3,
                server_error: 7
            }
        );
        let later = Counted {
            ok: 15,
            client_error: 3,
            server_error: 27,
        };
        assert_eq!(later.since(c).total(), 25);
        assert_eq!(later.since(c).server_error, 20);
    }
}
