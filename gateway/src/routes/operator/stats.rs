//! GET /v1/admin/offices/{office}/stats: an office's figures and the gateway's request rates.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Instant;

use actix_web::{web, HttpResponse};
use platepool_engine::calendar::rfc3339;
use platepool_engine::pool::Counts;
use platepool_engine::{CallSnapshot, OfficeCalls};
use serde::Serialize;

use crate::auth::Operator;
use crate::error::ApiResult;
use crate::openapi::{json_answer, Answer, Doc};
use crate::routes::table::{Access, Route, Verb};
use crate::Gateway;

/// The routes this file serves.
pub(crate) const ROUTES: &[Route] = &[
    Route::new(
        Verb::Get,
        "/v1/admin/offices/{office}/stats",
        Access::Operator,
        |r| r.to(stats),
        Doc {
            summary: "Figures per class and release, mailbox depth, the office's draws and checks per second and their latency (window and since start), and the gateway-wide request rates and latency under gateway",
            request: None,
            query: None,
            response: Answer::Json(json_answer::<StatsAnswer>),
            codes: &[200, 401, 403, 404, 503],
        },
    ),
];

/// Requests answered per (method, route).
type RouteCounts = HashMap<(&'static str, &'static str), u64>;

/// The figures one worker read last, to give rates and latency over the time since: the
/// gateway's requests per route, and each office's draws and checks. Each worker has its own
/// (app data built per worker), so no lock is shared by workers and nothing is added to the
/// requests measured.
#[derive(Debug)]
pub struct RateSampler {
    started: Instant,
    last: RefCell<(Instant, RouteCounts)>,
    offices: RefCell<HashMap<String, (Instant, OfficeCalls)>>,
}

impl RateSampler {
    pub(crate) fn new() -> RateSampler {
        let started = Instant::now();
        RateSampler {
            started,
            last: RefCell::new((started, HashMap::new())),
            offices: RefCell::new(HashMap::new()),
        }
    }
}

/// Shortest window a reading is kept for: figures are given over the time since the previous
/// reading, moved forward once it is this old.
const RATE_WINDOW_MIN_S: f64 = 1.0;

/// The window since `last` (seconds) and the reading it started with; `last` moves to `now`
/// and `current` once the window is [`RATE_WINDOW_MIN_S`] long.
fn sample<T: Clone>(last: &mut (Instant, T), now: Instant, current: &T) -> (f64, T) {
    let window = now.duration_since(last.0).as_secs_f64();
    let previous = last.1.clone();
    if window >= RATE_WINDOW_MIN_S {
        *last = (now, current.clone());
    }
    (window, previous)
}

fn per_s(count: u64, window_s: f64) -> f64 {
    if window_s > 0.0 {
        (count as f64 / window_s * 100.0).round() / 100.0
    } else {
        0.0
    }
}

/// A latency bound in µs as milliseconds.
fn us_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// One kind of office call (draws or checks) over a window or since the office started.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = OfficeCalls)]
struct CallFigures {
    count: u64,
    refused: u64,
    p50_ms: Option<f64>,
    p95_ms: Option<f64>,
    p99_ms: Option<f64>,
    mean_ms: Option<f64>,
}

impl From<&CallSnapshot> for CallFigures {
    fn from(c: &CallSnapshot) -> CallFigures {
        CallFigures {
            count: c.count(),
            refused: c.refused,
            p50_ms: c.quantile_us(0.50).map(us_to_ms),
            p95_ms: c.quantile_us(0.95).map(us_to_ms),
            p99_ms: c.quantile_us(0.99).map(us_to_ms),
            mean_ms: c.mean_us().map(|us| (us / 10.0).round() / 100.0),
        }
    }
}

/// `GET /v1/admin/offices/{office}/stats` (see [`stats`]).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Stats)]
struct StatsAnswer {
    office: String,
    #[schema(format = DateTime)]
    as_of: String,
    mailbox_depth: usize,
    classes: Vec<ClassFigures>,
    rates: OfficeRates,
    latency: OfficeLatency,
    totals: OfficeTotals,
    gateway: GatewayFigures,
}

/// Numbers of a class or release by status.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct StatusCounts {
    pending: u64,
    available: u64,
    held: u64,
    claimed: u64,
    issued: u64,
    withdrawn: u64,
}

impl From<&Counts> for StatusCounts {
    fn from(c: &Counts) -> StatusCounts {
        StatusCounts {
            pending: c.pending,
            available: c.available,
            held: c.held,
            claimed: c.claimed,
            issued: c.issued,
            withdrawn: c.withdrawn,
        }
    }
}

/// A class: its counts and its releases'.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ClassFigures {
    class: String,
    #[serde(flatten)]
    counts: StatusCounts,
    total: u64,
    releases: Vec<ReleaseFigures>,
}

/// A release: its counts, what it is and whether it was withdrawn.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ReleaseFigures {
    id: u32,
    label: String,
    #[schema(format = DateTime)]
    opens_at: String,
    #[schema(format = DateTime)]
    custom_from: String,
    withdrawn_release: bool,
    #[serde(flatten)]
    counts: StatusCounts,
    total: u64,
}

/// The office's own draws and checks per second over the window.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct OfficeRates {
    #[schema(value_type = String, pattern = "^office$")]
    scope: &'static str,
    window_s: f64,
    draws_per_s: f64,
    checks_per_s: f64,
}

/// The office's own draws and checks over the window: count, refused, latency.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct OfficeLatency {
    #[schema(value_type = String, pattern = "^office$")]
    scope: &'static str,
    /// What the latency spans.
    measured: &'static str,
    window_s: f64,
    draws: CallFigures,
    checks: CallFigures,
}

/// The office's own draws and checks since it started.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct OfficeTotals {
    #[schema(value_type = String, pattern = "^office$")]
    scope: &'static str,
    since: &'static str,
    draws: CallFigures,
    checks: CallFigures,
}

/// Gateway-wide (every office's) request rates and HTTP latency per route.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct GatewayFigures {
    #[schema(value_type = String, pattern = "^gateway$")]
    scope: &'static str,
    window_s: f64,
    rates: GatewayRates,
    latency: Vec<RouteLatency>,
}

/// Requests per second of the routes operators watch during an opening (SPEC R5.5).
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct GatewayRates {
    draws_per_s: f64,
    checks_per_s: f64,
    claims_per_s: f64,
    candidates_per_s: f64,
    applications_per_s: f64,
    keyboard_per_s: f64,
}

/// One route's requests and latency since the gateway started.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct RouteLatency {
    method: &'static str,
    route: &'static str,
    count: u64,
    errors_4xx: u64,
    errors_5xx: u64,
    p50_ms: Option<f64>,
    p95_ms: Option<f64>,
    p99_ms: Option<f64>,
}

/// An office's figures (SPEC R5.5): counts per class and release, mailbox depth, and the
/// office's own draws and checks per second and their latency (from the engine call to the
/// answer: mailbox, step, durable commit) over the window since this worker's previous
/// reading, and since the office started. The gateway's per-route request rates and HTTP
/// latency, which every office shares, are under `gateway`.
pub(super) async fn stats(
    gw: web::Data<Gateway>,
    op: Operator,
    sampler: web::Data<RateSampler>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let _ = op;
    let office = path.into_inner();
    let as_of = gw.engine.now_ms();
    let classes = gw.engine.stats(&office).await?;
    let depth = gw
        .engine
        .mailbox_depths()
        .into_iter()
        .find(|(o, _)| o == &office)
        .map_or(0, |(_, d)| d);
    let classes = classes
        .iter()
        .map(|c| ClassFigures {
            class: c.class.clone(),
            counts: (&c.counts).into(),
            total: c.counts.total(),
            releases: c
                .releases
                .iter()
                .map(|r| ReleaseFigures {
                    id: r.id,
                    label: r.label.clone(),
                    opens_at: rfc3339(r.opens_at_ms),
                    custom_from: rfc3339(r.custom_from_ms),
                    withdrawn_release: r.withdrawn,
                    counts: (&r.counts).into(),
                    total: r.total,
                })
                .collect(),
        })
        .collect();

    // The office's own figures.
    let calls = gw.engine.office_calls(&office)?;
    let now = Instant::now();
    let (office_window_s, office_before) = {
        let mut offices = sampler.offices.borrow_mut();
        let last = offices
            .entry(office.clone())
            .or_insert_with(|| (sampler.started, OfficeCalls::default()));
        sample(last, now, &calls)
    };
    let window = calls.since(&office_before);

    // The gateway's figures (every office's requests together).
    let figures = gw.metrics.figures();
    let current: RouteCounts = figures
        .iter()
        .map(|f| ((f.method, f.route), f.count))
        .collect();
    let (window_s, previous) = sample(&mut sampler.last.borrow_mut(), now, &current);
    let rate = |method: &'static str, route: &'static str| {
        let now_count = current.get(&(method, route)).copied().unwrap_or(0);
        let before = previous.get(&(method, route)).copied().unwrap_or(0);
        per_s(now_count.saturating_sub(before), window_s)
    };
    let rates = GatewayRates {
        draws_per_s: rate("POST", "/v1/applications/{id}/draws"),
        checks_per_s: rate("POST", "/v1/applications/{id}/custom"),
        claims_per_s: rate("POST", "/v1/applications/{id}/claim"),
        candidates_per_s: rate("POST", "/v1/applications/{id}/candidates"),
        applications_per_s: rate("POST", "/v1/applications"),
        keyboard_per_s: rate("GET", "/v1/applications/{id}/keyboard"),
    };
    let latency = figures
        .iter()
        .filter(|f| f.count > 0)
        .map(|f| RouteLatency {
            method: f.method,
            route: f.route,
            count: f.count,
            errors_4xx: f.errors_4xx,
            errors_5xx: f.errors_5xx,
            p50_ms: f.p50_ms,
            p95_ms: f.p95_ms,
            p99_ms: f.p99_ms,
        })
        .collect();
    let office_window_shown_s = (office_window_s * 1000.0).round() / 1000.0;
    Ok(HttpResponse::Ok().json(StatsAnswer {
        office,
        as_of: rfc3339(as_of),
        mailbox_depth: depth,
        classes,
        rates: OfficeRates {
            scope: "office",
            window_s: office_window_shown_s,
            draws_per_s: per_s(window.draws.count(), office_window_s),
            checks_per_s: per_s(window.checks.count(), office_window_s),
        },
        latency: OfficeLatency {
            scope: "office",
            measured: "engine call to answer: mailbox wait, the office's step, durable commit",
            window_s: office_window_shown_s,
            draws: (&window.draws).into(),
            checks: (&window.checks).into(),
        },
        totals: OfficeTotals {
            scope: "office",
            since: "the office started in this process",
            draws: (&calls.draws).into(),
            checks: (&calls.checks).into(),
        },
        gateway: GatewayFigures {
            scope: "gateway",
            window_s: (window_s * 1000.0).round() / 1000.0,
            rates,
            latency,
        },
    }))
}
