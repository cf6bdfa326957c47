//! Public routes (API.md "Public"): health, metrics, the OpenAPI document, offices, their notices
//! and pool notices, and the VIN check. No token needed.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix_web::http::header::{CacheControl, CacheDirective, ContentType};
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use platepool_engine::vin::check_vin;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult, FailedOffice};
use crate::extract::ApiJson;
use crate::openapi::{any_object, json_answer, json_body, json_list, Answer, Doc};
use crate::routes::answers::{
    ClockAnswer, NoticeDoc, OfficeDocument, OfficeSummaryAnswer, PoolNotice,
};
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
            response: Answer::Json(json_answer::<Health>),
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
            response: Answer::Json(json_answer::<Ready>),
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
            response: Answer::Metrics,
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
            response: Answer::Json(any_object),
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
            response: Answer::Json(json_list::<OfficeSummaryAnswer>),
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
            response: Answer::Json(json_answer::<OfficeDocument>),
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
            response: Answer::Json(json_answer::<NoticeDoc>),
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
            response: Answer::Json(json_answer::<PoolNotice>),
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
            response: Answer::Json(json_answer::<VinCheckResult>),
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

/// `GET /healthz`: `{"status": "ok"}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Health {
    status: &'static str,
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// `GET /readyz` while every office serves.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Ready {
    /// `ready`, or `degraded` while the wall clock has stepped (SPEC T1).
    #[schema(value_type = String, pattern = "^(ready|degraded)$")]
    status: &'static str,
    clock: ClockAnswer,
    offices: usize,
    recovered: Recovered,
}

/// What the engine recovered at start-up.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Recovered {
    offices: usize,
    applications: usize,
    #[schema(value_type = u64)]
    millis: u128,
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
    let failed: Vec<FailedOffice> = gw
        .engine
        .office_conditions()
        .into_iter()
        .filter(|c| !c.healthy)
        .map(|c| FailedOffice {
            office: c.office,
            reason: c.reason,
            restarts: c.restarts,
        })
        .collect();
    if !failed.is_empty() {
        let names: Vec<&str> = failed.iter().map(|f| f.office.as_str()).collect();
        let message = format!(
            "not ready: office {} cannot serve; restarting it from its durable state",
            names.join(", ")
        );
        return Err(ApiError::unavailable(message).extra(|x| {
            x.failed_offices = Some(failed);
            x.clock = Some(ClockAnswer::from(&clock));
        }));
    }
    let recovery = gw.engine.recovery();
    Ok(HttpResponse::Ok().json(Ready {
        status: if clock.degraded.is_some() {
            "degraded"
        } else {
            "ready"
        },
        clock: ClockAnswer::from(&clock),
        offices: gw.engine.offices().len(),
        recovered: Recovered {
            offices: recovery.offices,
            applications: recovery.applications,
            millis: recovery.millis,
        },
    }))
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
    let offices: Vec<OfficeSummaryAnswer> =
        gw.engine.offices().into_iter().map(Into::into).collect();
    HttpResponse::Ok().json(offices)
}

async fn office(gw: web::Data<Gateway>, path: web::Path<String>) -> ApiResult<HttpResponse> {
    let id = path.into_inner();
    let config = gw.engine.office_config(&id)?;
    Ok(HttpResponse::Ok().json(OfficeDocument::new(&gw.engine, &id, &config)?))
}

async fn notice(gw: web::Data<Gateway>, path: web::Path<String>) -> ApiResult<HttpResponse> {
    let config = gw.engine.office_config(&path.into_inner())?;
    Ok(HttpResponse::Ok().json(NoticeDoc {
        version: config.notice.version.clone(),
        text: config.notice.text.clone(),
    }))
}

/// One worker's recent pool notices, per office, as the JSON bytes sent: a cached answer costs
/// a reference count, not a copy and a serialisation of the document.
#[derive(Debug, Default)]
pub struct PoolNoticeCache {
    entries: RefCell<HashMap<String, (Instant, Bytes)>>,
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
                serde_json::to_vec(&PoolNotice::new(&office, as_of_ms, &stats))
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

/// `POST /v1/vin/check`: valid, or why not.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = VinCheckResult)]
struct VinCheckResult {
    valid: bool,
    /// The VIN as read (valid ones).
    #[serde(skip_serializing_if = "Option::is_none")]
    vin: Option<String>,
    /// Why not, in a word (invalid ones).
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    /// 1-based position at fault (invalid ones; null when the VIN is wrong as a whole).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u64>)]
    position: Option<Option<usize>>,
}

async fn vin_check(
    gw: web::Data<Gateway>,
    req: HttpRequest,
    body: ApiJson<VinCheck>,
) -> ApiResult<HttpResponse> {
    gw.limits.check(&req, None)?;
    let answer = match check_vin(&body.0.vin) {
        Ok(vin) => VinCheckResult {
            valid: true,
            vin: Some(vin.as_str().to_string()),
            reason: None,
            message: None,
            position: None,
        },
        Err(e) => VinCheckResult {
            valid: false,
            vin: None,
            reason: Some(e.reason_code()),
            message: Some(e.to_string()),
            position: Some(e.position),
        },
    };
    Ok(HttpResponse::build(StatusCode::OK).json(answer))
}
