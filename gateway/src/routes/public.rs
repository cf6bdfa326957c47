//! Public routes (API.md "Public"): health, metrics, the OpenAPI document, offices, their notices
//! and pool notices, and the VIN check. No token needed.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix_web::http::header::{CacheControl, CacheDirective, ContentType};
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use platepool_engine::calendar::rfc3339;
use platepool_engine::pool::ClassStats;
use platepool_engine::vin::check_vin;
use platepool_engine::{Engine, OfficeConfig};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::openapi::{json_body, Doc};
use crate::routes::table::{Access, Route, Shed, Verb};
use crate::Gateway;

/// The routes this file serves.
pub(crate) const ROUTES: &[Route] = &[
    Route::new(
        Verb::Get,
        "/healthz",
        Access::Public,
        |r| r.to(healthz),
        Doc {
            summary: "Liveness: 200 while the process serves",
            request: None,
            query: None,
            response: "Health",
            codes: &[200],
        },
    ),
    Route::new(
        Verb::Get,
        "/readyz",
        Access::Public,
        |r| r.to(readyz),
        Doc {
            summary: "Readiness: 200 once every office is recovered (status degraded while the clock is), 503 while stopping or while an office has failed (named)",
            request: None,
            query: None,
            response: "Ready",
            codes: &[200, 503],
        },
    ),
    Route::new(
        Verb::Get,
        "/metrics",
        Access::Public,
        |r| r.to(metrics),
        Doc {
            summary:
                "Prometheus metrics: requests, latencies, pool counts per office, mailbox depth",
            request: None,
            query: None,
            response: "text",
            codes: &[200],
        },
    ),
    Route::new(
        Verb::Get,
        "/v1/openapi.json",
        Access::Public,
        |r| r.to(openapi),
        Doc {
            summary: "This document",
            request: None,
            query: None,
            response: "Object",
            codes: &[200, 503],
        },
    )
    .shed(Shed::Lag),
    Route::new(
        Verb::Get,
        "/v1/offices",
        Access::Public,
        |r| r.to(offices),
        Doc {
            summary: "The offices",
            request: None,
            query: None,
            response: "[OfficeSummary]",
            codes: &[200, 503],
        },
    )
    .shed(Shed::Lag),
    Route::new(
        Verb::Get,
        "/v1/offices/{office}",
        Access::Public,
        |r| r.to(office),
        Doc {
            summary: "An office with its public rules",
            request: None,
            query: None,
            response: "Office",
            codes: &[200, 404, 503],
        },
    )
    .shed(Shed::Lag),
    Route::new(
        Verb::Get,
        "/v1/offices/{office}/notice",
        Access::Public,
        |r| r.to(notice),
        Doc {
            summary: "The office's business notice (业务须知)",
            request: None,
            query: None,
            response: "Notice",
            codes: &[200, 404, 503],
        },
    )
    .shed(Shed::Lag),
    Route::new(
        Verb::Get,
        "/v1/offices/{office}/pool",
        Access::Public,
        |r| r.to(pool),
        Doc {
            summary: "The pool notice (号池公示): releases and available numbers per class",
            request: None,
            query: None,
            response: "PoolNotice",
            codes: &[200, 404, 503],
        },
    )
    .shed(Shed::Lag),
    Route::new(
        Verb::Post,
        "/v1/vin/check",
        Access::Public,
        |r| r.to(vin_check),
        Doc {
            summary: "Checks a VIN: length, characters, check digit",
            request: Some(json_body::<VinCheck>),
            query: None,
            response: "VinCheckResult",
            codes: &[200, 400, 413, 429, 503],
        },
    )
    .shed(Shed::Lag),
];

/// How long one worker serves a pool notice from its snapshot before asking the office again.
/// `as_of` is the snapshot's instant, so every change acknowledged before `as_of` is in it (the
/// contract allows 100 ms of lag). At an opening, thousands of citizens reload the notice: this
/// keeps them out of the office actor's mailbox, where the draws are.
pub const POOL_NOTICE_MAX_AGE: Duration = Duration::from_millis(100);

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// 200 once every office is recovered; 503 while stopping, or while an office has failed (its
/// writer failed or its actor stopped), naming it, until the engine has restarted it.
///
/// A stepped wall clock (SPEC T1) answers 200 with `"status": "degraded"` and the clock's
/// figures: the node still serves every office correctly — its engine time follows the
/// monotonic clock — so taking it out of rotation would turn a safe condition into an outage
/// of the offices it owns (each office has one owner). Balancers that read bodies can match
/// `degraded`; `platepool_clock_degraded` in `/metrics` is the alert.
async fn readyz(gw: web::Data<Gateway>) -> ApiResult<HttpResponse> {
    if !gw.is_ready() {
        return Err(ApiError::unavailable("not ready: the gateway is stopping"));
    }
    let clock = gw.engine.clock_status();
    let failed: Vec<Value> = gw
        .engine
        .office_conditions()
        .into_iter()
        .filter(|c| !c.healthy)
        .map(|c| json!({"office": c.office, "reason": c.reason, "restarts": c.restarts}))
        .collect();
    if !failed.is_empty() {
        let names: Vec<&str> = failed.iter().filter_map(|f| f["office"].as_str()).collect();
        return Err(ApiError::unavailable(format!(
            "not ready: office {} cannot serve; restarting it from its durable state",
            names.join(", ")
        ))
        .with("failed_offices", Value::Array(failed))
        .with("clock", crate::routes::clock::clock_json(&clock)));
    }
    let recovery = gw.engine.recovery();
    Ok(HttpResponse::Ok().json(json!({
        "status": if clock.degraded.is_some() { "degraded" } else { "ready" },
        "clock": crate::routes::clock::clock_json(&clock),
        "offices": gw.engine.offices().len(),
        "recovered": {
            "offices": recovery.offices,
            "applications": recovery.applications,
            "millis": recovery.millis,
        },
    })))
}

async fn metrics(gw: web::Data<Gateway>) -> HttpResponse {
    let mut text = gw.metrics.render(&gw.engine).await;
    gw.sms.stats().render(&mut text);
    text.push_str(concat!(
        "# HELP platepool_storage_failed 1 after a sync of the gateway's store (SMS codes, idempotency, outbox) failed: its durable writes are refused until restart.\n",
        "# TYPE platepool_storage_failed gauge\n",
    ));
    text.push_str(if gw.sms.storage_failed() {
        "platepool_storage_failed 1\n"
    } else {
        "platepool_storage_failed 0\n"
    });
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text)
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(crate::openapi::document_text())
}

async fn offices(gw: web::Data<Gateway>) -> HttpResponse {
    HttpResponse::Ok().json(gw.engine.offices())
}

/// The office document of API.md "Documents" (`PUT /v1/admin/offices/{office}` body, with `id`).
/// An office configuration holds no secrets, so the public answer is the same document, plus the
/// custom-number shapes in force per class (the configured ones or the class defaults).
pub fn office_document(engine: &Engine, id: &str, config: &OfficeConfig) -> Value {
    let mut doc = serde_json::to_value(config).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut doc {
        map.insert("id".into(), json!(id));
        let classes: Vec<Value> = config
            .classes
            .iter()
            .filter_map(|name| engine.catalog().iter().find(|c| &c.name == name))
            .map(|class| {
                let rules = config.composition_rules(class);
                json!({
                    "class": class.name,
                    "serial_length": class.serial_len(),
                    "shape": class.shape.to_string(),
                    "custom_patterns": rules.allowed().iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "deny": rules.deny().iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "groups": class.groups.iter().map(|g| json!({
                        "name": g.name,
                        "pattern": g.pattern.to_string(),
                        "energies": g.energies,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        map.insert("class_details".into(), Value::Array(classes));
    }
    doc
}

async fn office(gw: web::Data<Gateway>, path: web::Path<String>) -> ApiResult<HttpResponse> {
    let id = path.into_inner();
    let config = gw.engine.office_config(&id)?;
    Ok(HttpResponse::Ok().json(office_document(&gw.engine, &id, &config)))
}

async fn notice(gw: web::Data<Gateway>, path: web::Path<String>) -> ApiResult<HttpResponse> {
    let config = gw.engine.office_config(&path.into_inner())?;
    Ok(HttpResponse::Ok().json(json!({
        "version": config.notice.version,
        "text": config.notice.text,
    })))
}

/// One worker's recent pool notices, per office, as the JSON bytes sent: a cached answer costs
/// a reference count, not a copy and a serialisation of the document.
#[derive(Debug, Default)]
pub struct PoolNoticeCache {
    entries: RefCell<HashMap<String, (Instant, Bytes)>>,
}

/// The pool notice of API.md from the office's figures at `as_of_ms`.
pub fn pool_notice(office: &str, as_of_ms: u64, stats: &[ClassStats]) -> Value {
    let classes: Vec<Value> = stats
        .iter()
        .map(|c| {
            let releases: Vec<Value> = c
                .releases
                .iter()
                .map(|r| {
                    let open = r.opens_at_ms <= as_of_ms;
                    // Before its opening a release's numbers are neither visible nor drawable.
                    let available = if open && !r.withdrawn {
                        r.counts.available
                    } else {
                        0
                    };
                    json!({
                        "id": r.id,
                        "label": r.label,
                        "opens_at": rfc3339(r.opens_at_ms),
                        "custom_from": rfc3339(r.custom_from_ms),
                        "total": r.total,
                        "available": available,
                        "open": open,
                        "withdrawn": r.withdrawn,
                    })
                })
                .collect();
            json!({
                "class": c.class,
                "available": c.counts.available,
                "releases": releases,
            })
        })
        .collect();
    json!({
        "office": office,
        "as_of": rfc3339(as_of_ms),
        "classes": classes,
    })
}

async fn pool(
    gw: web::Data<Gateway>,
    cache: web::Data<PoolNoticeCache>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let office = path.into_inner();
    let cached = cache
        .entries
        .borrow()
        .get(&office)
        .filter(|(at, _)| at.elapsed() < POOL_NOTICE_MAX_AGE)
        .map(|(_, body)| body.clone());
    let body = match cached {
        Some(body) => body,
        None => {
            let taken = Instant::now();
            let as_of_ms = gw.engine.now_ms();
            let stats = gw.engine.stats(&office).await?;
            let body = Bytes::from(
                serde_json::to_vec(&pool_notice(&office, as_of_ms, &stats))
                    .map_err(|e| ApiError::unavailable(format!("pool notice: {e}")))?,
            );
            let mut entries = cache.entries.borrow_mut();
            // Offices are few; a stray id never gets here (unknown offices are refused above).
            entries.insert(office, (taken, body.clone()));
            body
        }
    };
    Ok(HttpResponse::Ok()
        .insert_header(CacheControl(vec![CacheDirective::NoCache]))
        .content_type(ContentType::json())
        .body(body))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct VinCheck {
    vin: String,
}

async fn vin_check(
    gw: web::Data<Gateway>,
    req: HttpRequest,
    body: ApiJson<VinCheck>,
) -> ApiResult<HttpResponse> {
    gw.limits.check(&req, None)?;
    let answer = match check_vin(&body.0.vin) {
        Ok(vin) => json!({"valid": true, "vin": vin.as_str()}),
        Err(e) => json!({
            "valid": false,
            "reason": e.reason_code(),
            "message": e.to_string(),
            "position": e.position,
        }),
    };
    Ok(HttpResponse::build(StatusCode::OK).json(answer))
}
