//! Prometheus metrics: requests and latency per route (the whole gateway), per-office pool
//! counts, holds, claims, mailbox depth, and each office's draws and checks with their latency.
//! Counters are atomics in a table fixed at start-up (one row per route), or in each office's
//! own health record in the engine, so recording a request takes no lock.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use platepool_engine::actor::OfficeHealth;
use platepool_engine::Engine;

/// An office figure in `/metrics`: name, type, help, how to read it.
type OfficeGauge = (
    &'static str,
    &'static str,
    &'static str,
    fn(&OfficeHealth) -> f64,
);

/// The histogram quantile of the engine's per-office figures, shared with the routes' figures
/// here and with histograms read back from `/metrics` (the reliability campaigns).
pub use platepool_engine::figures::bucket_quantile;

/// Upper bounds of the latency histogram buckets, in seconds.
pub const LATENCY_BUCKETS_S: [f64; 12] = [
    0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

#[derive(Debug, Default)]
struct RouteMetrics {
    by_status: [AtomicU64; 5],
    /// Requests whose latency falls in each bucket alone (above the bound before it): one
    /// increment per request, not one per bucket it is within.
    buckets: [AtomicU64; LATENCY_BUCKETS_S.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl RouteMetrics {
    /// Requests within each bucket's bound (Prometheus's cumulative `le` buckets).
    fn cumulative(&self) -> [u64; LATENCY_BUCKETS_S.len()] {
        let mut total = 0;
        std::array::from_fn(|i| {
            total += self.buckets[i].load(Ordering::Relaxed);
            total
        })
    }
}

/// One segment of a route pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(&'static str),
    /// `{name}`: any one non-empty segment.
    Any,
}

/// Most segments a served path has (`/v1/admin/offices/{office}/claims/{serial}/void`: 8).
const SEGMENTS_MAX: usize = 12;

/// One route's figures (see [`Metrics::figures`]).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RouteFigures {
    pub method: &'static str,
    pub route: &'static str,
    pub count: u64,
    pub errors_4xx: u64,
    pub errors_5xx: u64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Request metrics for a fixed set of routes.
#[derive(Debug)]
pub struct Metrics {
    routes: Vec<(&'static str, &'static str)>,
    /// Each route's pattern split at `/`, for [`Metrics::route_index`].
    patterns: Vec<Vec<Segment>>,
    rows: Vec<RouteMetrics>,
    other: RouteMetrics,
}

impl Metrics {
    /// `routes`: (method, path pattern) of every route the gateway serves.
    pub fn new(routes: &[(&'static str, &'static str)]) -> Metrics {
        debug_assert!(
            routes
                .iter()
                .all(|(_, p)| p.split('/').count() <= SEGMENTS_MAX),
            "a route longer than SEGMENTS_MAX would never be matched"
        );
        Metrics {
            routes: routes.to_vec(),
            patterns: routes
                .iter()
                .map(|(_, pattern)| {
                    pattern
                        .split('/')
                        .map(|w| {
                            if w.starts_with('{') && w.ends_with('}') {
                                Segment::Any
                            } else {
                                Segment::Literal(w)
                            }
                        })
                        .collect()
                })
                .collect(),
            rows: routes.iter().map(|_| RouteMetrics::default()).collect(),
            other: RouteMetrics::default(),
        }
    }

    /// The row of the route serving `method` `path` (relative to the gateway's mount point):
    /// segment by segment, `{name}` matching any one non-empty segment, as the router does.
    /// No allocation and no regular expression: it runs on every request. The path is split
    /// once; patterns were split at start-up, and those of another length are passed over.
    pub fn route_index(&self, method: &str, path: &str) -> Option<usize> {
        let mut segments = [""; SEGMENTS_MAX];
        let mut n = 0;
        for g in path.split('/') {
            *segments.get_mut(n)? = g;
            n += 1;
        }
        let segments = &segments[..n];
        self.patterns
            .iter()
            .zip(&self.routes)
            .position(|(p, (m, _))| {
                p.len() == n
                    && *m == method
                    && p.iter().zip(segments).all(|(w, g)| match w {
                        Segment::Literal(w) => w == g,
                        Segment::Any => !g.is_empty(),
                    })
            })
    }

    /// Records one answered request. `pattern` is the matched route pattern relative to the
    /// gateway's mount point (`None`: no route matched).
    pub fn observe(&self, method: &str, pattern: Option<&str>, status: u16, elapsed: Duration) {
        let route = pattern.and_then(|p| {
            self.routes
                .iter()
                .position(|(m, r)| *m == method && *r == p)
        });
        self.observe_route(route, status, elapsed);
    }

    /// Records one answered request of the route at `route` (from [`Metrics::route_index`];
    /// `None`: no route matched).
    pub fn observe_route(&self, route: Option<usize>, status: u16, elapsed: Duration) {
        let row = route.and_then(|i| self.rows.get(i)).unwrap_or(&self.other);
        let class = ((status / 100) as usize).clamp(1, 5) - 1;
        row.by_status[class].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS_S.iter().position(|&bound| secs <= bound) {
            row.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        row.count.fetch_add(1, Ordering::Relaxed);
        row.sum_us
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// Per-route figures for the operator's stats (requests answered so far and latency
    /// percentiles estimated from the histogram: the upper bound of the bucket that holds the
    /// percentile, `None` beyond the last bucket or without requests).
    pub fn figures(&self) -> Vec<RouteFigures> {
        self.routes
            .iter()
            .zip(&self.rows)
            .map(|(&(method, route), row)| {
                let count = row.count.load(Ordering::Relaxed);
                let buckets = row.cumulative();
                let quantile = |q: f64| {
                    let within = LATENCY_BUCKETS_S.into_iter().zip(buckets);
                    bucket_quantile(within, count, q).map(|bound| bound * 1000.0)
                };
                RouteFigures {
                    method,
                    route,
                    count,
                    errors_4xx: row.by_status[3].load(Ordering::Relaxed),
                    errors_5xx: row.by_status[4].load(Ordering::Relaxed),
                    p50_ms: quantile(0.50),
                    p95_ms: quantile(0.95),
                    p99_ms: quantile(0.99),
                }
            })
            .collect()
    }

    /// The Prometheus text exposition, with the engine's per-office figures.
    pub async fn render(&self, engine: &Engine) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let _ = writeln!(out, "# HELP platepool_http_requests_total HTTP requests answered, by route and status class.");
        let _ = writeln!(out, "# TYPE platepool_http_requests_total counter");
        let named = self
            .routes
            .iter()
            .map(|(m, r)| (*m, *r))
            .chain(std::iter::once(("ANY", "unmatched")));
        let rows: Vec<&RouteMetrics> = self
            .rows
            .iter()
            .chain(std::iter::once(&self.other))
            .collect();
        for ((method, route), row) in named.clone().zip(&rows) {
            for (class, c) in STATUS_CLASSES.iter().zip(&row.by_status) {
                let v = c.load(Ordering::Relaxed);
                if v > 0 {
                    let _ = writeln!(
                        out,
                        "platepool_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{class}\"}} {v}"
                    );
                }
            }
        }
        let _ = writeln!(
            out,
            "# HELP platepool_http_request_duration_seconds Time to answer, by route."
        );
        let _ = writeln!(
            out,
            "# TYPE platepool_http_request_duration_seconds histogram"
        );
        for ((method, route), row) in named.zip(&rows) {
            let count = row.count.load(Ordering::Relaxed);
            if count == 0 {
                continue;
            }
            let labels = format!("method=\"{method}\",route=\"{route}\"");
            let within = row.cumulative();
            // A request counts in its bucket just before the total: read in between, the
            // total may lag the last bucket, and a histogram's buckets must not decrease.
            let count = count.max(within[within.len() - 1]);
            for (within, bound) in within.into_iter().zip(LATENCY_BUCKETS_S) {
                let _ = writeln!(
                    out,
                    "platepool_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {within}"
                );
            }
            let _ = writeln!(
                out,
                "platepool_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "platepool_http_request_duration_seconds_sum{{{labels}}} {}",
                row.sum_us.load(Ordering::Relaxed) as f64 / 1e6
            );
            let _ = writeln!(
                out,
                "platepool_http_request_duration_seconds_count{{{labels}}} {count}"
            );
        }
        let mut health = engine.office_health();
        health.sort_by(|a, b| a.0.cmp(&b.0));
        let gauges: [OfficeGauge; 7] = [
            (
                "platepool_office_mailbox_depth",
                "gauge",
                "Requests sent to an office actor and not yet answered.",
                |h| h.in_flight.load(Ordering::Relaxed) as f64,
            ),
            (
                "platepool_office_queue_delay_seconds",
                "gauge",
                "How long the last call an office started had waited in its mailbox.",
                |h| h.queue_delay_us.load(Ordering::Relaxed) as f64 / 1e6,
            ),
            (
                "platepool_office_commit_delay_seconds",
                "gauge",
                "How long an office's last group of records took from its writer's queue to durable.",
                |h| h.commit_delay_us.load(Ordering::Relaxed) as f64 / 1e6,
            ),
            (
                "platepool_office_sojourn_seconds",
                "gauge",
                "How long an office's last write took from its caller sending it to its caller having the answer.",
                |h| h.sojourn_us.load(Ordering::Relaxed) as f64 / 1e6,
            ),
            (
                "platepool_office_shed_total",
                "counter",
                "Calls an office refused at once (503 unavailable) because it was overloaded.",
                |h| h.shed.load(Ordering::Relaxed) as f64,
            ),
            (
                "platepool_office_draws_total",
                "counter",
                "Random draws an office answered (drawn or refused for a business reason).",
                |h| h.draws.snapshot().count() as f64,
            ),
            (
                "platepool_office_checks_total",
                "counter",
                "Custom checks an office answered (claimed, none available, or refused).",
                |h| h.checks.snapshot().count() as f64,
            ),
        ];
        for (name, kind, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (office, h) in &health {
                let _ = writeln!(out, "{name}{{office=\"{office}\"}} {}", value(h));
            }
        }
        render_health(&mut out, engine);
        let _ = writeln!(
            out,
            "# HELP platepool_office_call_duration_seconds Time from the engine call to the office's answer (mailbox, step, durable commit), by office and call."
        );
        let _ = writeln!(
            out,
            "# TYPE platepool_office_call_duration_seconds histogram"
        );
        for (office, h) in &health {
            for (call, figures) in [("draw", &h.draws), ("check", &h.checks)] {
                let c = figures.snapshot();
                let count = c.count();
                if count == 0 {
                    continue;
                }
                let labels = format!("office=\"{office}\",call=\"{call}\"");
                for (bound, within) in c.cumulative() {
                    let _ = writeln!(
                        out,
                        "platepool_office_call_duration_seconds_bucket{{{labels},le=\"{}\"}} {within}",
                        bound as f64 / 1e6
                    );
                }
                let _ = writeln!(
                    out,
                    "platepool_office_call_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
                );
                let _ = writeln!(
                    out,
                    "platepool_office_call_duration_seconds_sum{{{labels}}} {}",
                    c.sum_us as f64 / 1e6
                );
                let _ = writeln!(
                    out,
                    "platepool_office_call_duration_seconds_count{{{labels}}} {count}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP platepool_pool_numbers Numbers per office, class and state."
        );
        let _ = writeln!(out, "# TYPE platepool_pool_numbers gauge");
        for (office, _) in &health {
            let Ok(stats) = engine.stats(office).await else {
                continue;
            };
            for c in stats {
                let n = &c.counts;
                for (state, v) in [
                    ("pending", n.pending),
                    ("available", n.available),
                    ("held", n.held),
                    ("claimed", n.claimed),
                    ("issued", n.issued),
                    ("withdrawn", n.withdrawn),
                ] {
                    let _ = writeln!(
                        out,
                        "platepool_pool_numbers{{office=\"{office}\",class=\"{}\",state=\"{state}\"}} {v}",
                        c.class
                    );
                }
            }
        }
        out
    }
}

/// Each office's health (healthy, restarts by the supervisor) and the engine's clock (SPEC T1).
fn render_health(out: &mut String, engine: &Engine) {
    let conditions = engine.office_conditions();
    let _ = writeln!(out, "# HELP platepool_office_healthy 1 while an office serves; 0 while its writer has failed or its actor has stopped (until it is restarted).");
    let _ = writeln!(out, "# TYPE platepool_office_healthy gauge");
    for c in &conditions {
        let _ = writeln!(
            out,
            "platepool_office_healthy{{office=\"{}\"}} {}",
            c.office,
            u8::from(c.healthy)
        );
    }
    let _ = writeln!(out, "# HELP platepool_office_restarts_total Restarts of an office from its durable state after it failed.");
    let _ = writeln!(out, "# TYPE platepool_office_restarts_total counter");
    for c in &conditions {
        let _ = writeln!(
            out,
            "platepool_office_restarts_total{{office=\"{}\"}} {}",
            c.office, c.restarts
        );
    }
    let clock = engine.clock_status();
    let _ = writeln!(out, "# HELP platepool_clock_steps_total Wall-clock steps beyond the bound seen since start (SPEC T1).");
    let _ = writeln!(out, "# TYPE platepool_clock_steps_total counter");
    let _ = writeln!(out, "platepool_clock_steps_total {}", clock.steps);
    let _ = writeln!(out, "# HELP platepool_clock_degraded 1 while a wall-clock step is not followed (engine time follows the monotonic clock until the wall clock agrees again or an operator confirms it).");
    let _ = writeln!(out, "# TYPE platepool_clock_degraded gauge");
    let _ = writeln!(
        out,
        "platepool_clock_degraded {}",
        u8::from(clock.degraded.is_some())
    );
    let _ = writeln!(
        out,
        "# HELP platepool_clock_offset_seconds Wall time minus engine time while degraded, else 0."
    );
    let _ = writeln!(out, "# TYPE platepool_clock_offset_seconds gauge");
    let _ = writeln!(
        out,
        "platepool_clock_offset_seconds {}",
        clock.degraded.map_or(0.0, |s| s.offset_ms as f64 / 1e3)
    );
}

/// Does `path` match the route `pattern` (`/v1/applications/{id}/draws`)?
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_find_their_route() {
        let m = Metrics::new(&[
            ("GET", "/v1/offices"),
            ("GET", "/v1/offices/{office}"),
            ("GET", "/v1/offices/{office}/pool"),
            ("POST", "/v1/applications/{id}/draws"),
        ]);
        assert_eq!(m.route_index("GET", "/v1/offices"), Some(0));
        assert_eq!(m.route_index("GET", "/v1/offices/maoming"), Some(1));
        assert_eq!(m.route_index("GET", "/v1/offices/maoming/pool"), Some(2));
        assert_eq!(m.route_index("POST", "/v1/applications/m-1/draws"), Some(3));
        assert_eq!(m.route_index("GET", "/v1/applications/m-1/draws"), None);
        assert_eq!(m.route_index("GET", "/v1/offices//pool"), None);
        assert_eq!(m.route_index("GET", "/v1/offices/maoming/pool/x"), None);
        assert_eq!(m.route_index("GET", "/v1/offices/"), None);
        assert_eq!(m.route_index("GET", "/v1"), None);
        assert_eq!(m.route_index("GET", "/v1/offices/maoming/"), None);
        assert_eq!(
            m.route_index("GET", &"/a".repeat(40)),
            None,
            "too many segments"
        );
    }

    #[test]
    fn observations_land_in_their_route_and_buckets() {
        let m = Metrics::new(&[("GET", "/a"), ("POST", "/b")]);
        m.observe("POST", Some("/b"), 201, Duration::from_micros(700));
        m.observe("POST", Some("/b"), 409, Duration::from_millis(30));
        m.observe("GET", Some("/zzz"), 404, Duration::from_millis(1));
        let b = &m.rows[1];
        assert_eq!(b.by_status[1].load(Ordering::Relaxed), 1);
        assert_eq!(b.by_status[3].load(Ordering::Relaxed), 1);
        let within = b.cumulative();
        assert_eq!(within[0], 0, "700 µs is above 0.5 ms");
        assert_eq!(within[1], 1, "700 µs is within 1 ms");
        assert_eq!(within[5], 1, "30 ms is above 25 ms");
        assert_eq!(within[6], 2, "both within 50 ms");
        assert_eq!(within[11], 2);
        // Beyond the last bound: only in the count (and `+Inf`).
        m.observe("POST", Some("/b"), 201, Duration::from_secs(3));
        assert_eq!(b.cumulative()[11], 2);
        assert_eq!(b.count.load(Ordering::Relaxed), 3);
        assert_eq!(m.other.count.load(Ordering::Relaxed), 1);
        assert_eq!(m.rows[0].count.load(Ordering::Relaxed), 0);
    }
}
