//! GET /v1/admin/offices/{office}/stats: an office's figures and the gateway's request rates.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Instant;

use actix_web::{web, HttpResponse};
use platepool_engine::calendar::rfc3339;
use platepool_engine::{CallSnapshot, OfficeCalls};
use serde_json::{json, Value};

use crate::auth::Operator;
use crate::error::ApiResult;
use crate::openapi::Doc;
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
            response: "Stats",
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

/// One kind of office call over a window or since the office started.
fn calls_json(c: &CallSnapshot) -> Value {
    json!({
        "count": c.count(),
        "refused": c.refused,
        "p50_ms": c.quantile_us(0.50).map(us_to_ms),
        "p95_ms": c.quantile_us(0.95).map(us_to_ms),
        "p99_ms": c.quantile_us(0.99).map(us_to_ms),
        "mean_ms": c.mean_us().map(|us| (us / 10.0).round() / 100.0),
    })
}

/// The routes whose rates operators watch during an opening (SPEC R5.5), gateway-wide.
const RATE_ROUTES: [(&str, &str, &str); 6] = [
    ("draws", "POST", "/v1/applications/{id}/draws"),
    ("checks", "POST", "/v1/applications/{id}/custom"),
    ("claims", "POST", "/v1/applications/{id}/claim"),
    ("candidates", "POST", "/v1/applications/{id}/candidates"),
    ("applications", "POST", "/v1/applications"),
    ("keyboard", "GET", "/v1/applications/{id}/keyboard"),
];

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
    let counts_json = |c: &platepool_engine::pool::Counts| {
        json!({
            "pending": c.pending,
            "available": c.available,
            "held": c.held,
            "claimed": c.claimed,
            "issued": c.issued,
            "withdrawn": c.withdrawn,
            "total": c.total(),
        })
    };
    let classes: Vec<Value> = classes
        .iter()
        .map(|c| {
            let mut v = counts_json(&c.counts);
            if let Value::Object(map) = &mut v {
                map.insert("class".into(), json!(c.class));
                map.insert(
                    "releases".into(),
                    Value::Array(
                        c.releases
                            .iter()
                            .map(|r| {
                                let mut rv = counts_json(&r.counts);
                                if let Value::Object(m) = &mut rv {
                                    m.insert("id".into(), json!(r.id));
                                    m.insert("label".into(), json!(r.label));
                                    m.insert("opens_at".into(), json!(rfc3339(r.opens_at_ms)));
                                    m.insert(
                                        "custom_from".into(),
                                        json!(rfc3339(r.custom_from_ms)),
                                    );
                                    m.insert("withdrawn_release".into(), json!(r.withdrawn));
                                    m.insert("total".into(), json!(r.total));
                                }
                                rv
                            })
                            .collect(),
                    ),
                );
            }
            v
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
    let mut rates = serde_json::Map::new();
    for (name, method, route) in RATE_ROUTES {
        let now_count = current.get(&(method, route)).copied().unwrap_or(0);
        let before = previous.get(&(method, route)).copied().unwrap_or(0);
        rates.insert(
            format!("{name}_per_s"),
            json!(per_s(now_count.saturating_sub(before), window_s)),
        );
    }
    let latency: Vec<Value> = figures
        .iter()
        .filter(|f| f.count > 0)
        .map(|f| {
            json!({
                "method": f.method,
                "route": f.route,
                "count": f.count,
                "errors_4xx": f.errors_4xx,
                "errors_5xx": f.errors_5xx,
                "p50_ms": f.p50_ms,
                "p95_ms": f.p95_ms,
                "p99_ms": f.p99_ms,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "office": office,
        "as_of": rfc3339(as_of),
        "mailbox_depth": depth,
        "classes": classes,
        "rates": {
            "scope": "office",
            "window_s": (office_window_s * 1000.0).round() / 1000.0,
            "draws_per_s": per_s(window.draws.count(), office_window_s),
            "checks_per_s": per_s(window.checks.count(), office_window_s),
        },
        "latency": {
            "scope": "office",
            "measured": "engine call to answer: mailbox wait, the office's step, durable commit",
            "window_s": (office_window_s * 1000.0).round() / 1000.0,
            "draws": calls_json(&window.draws),
            "checks": calls_json(&window.checks),
        },
        "totals": {
            "scope": "office",
            "since": "the office started in this process",
            "draws": calls_json(&calls.draws),
            "checks": calls_json(&calls.checks),
        },
        "gateway": {
            "scope": "gateway",
            "window_s": (window_s * 1000.0).round() / 1000.0,
            "rates": rates,
            "latency": latency,
        },
    })))
}
