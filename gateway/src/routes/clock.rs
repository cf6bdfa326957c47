//! The engine's clock for operators (SPEC T1): how it stands against the wall clock, and the
//! audited confirmation of the wall time after a step (`POST /v1/admin/clock/confirm`). Until
//! an operator confirms, or the wall clock agrees again, engine time follows the monotonic clock
//! and what a forward step would make due (claims lapsing, blacklist entries ending) waits.

use actix_web::{web, HttpResponse};
use platepool_engine::calendar::rfc3339;
use platepool_engine::clock::ClockStatus;
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
        "/v1/admin/clock",
        Access::Operator,
        |r| r.to(status),
        Doc {
            summary: "The engine's clock against the wall clock (SPEC T1): steps seen, whether degraded",
            request: None,
            query: None,
            response: "Clock",
            codes: &[200, 401, 403],
        },
    ),
    Route::new(
        Verb::Post,
        "/v1/admin/clock/confirm",
        Access::Operator,
        |r| r.to(confirm),
        Doc {
            summary: "Confirms the wall time after a step (audited): engine time jumps to it, holds keep their length",
            request: None,
            query: None,
            response: "ClockConfirmed",
            codes: &[200, 401, 403, 409, 503],
        },
    ),
];

/// The clock as `/readyz` and `GET /v1/admin/clock` show it.
pub fn clock_json(status: &ClockStatus) -> Value {
    json!({
        "now": rfc3339(status.now_ms),
        "wall": rfc3339(status.wall_ms),
        "bound_ms": status.bound_ms,
        "steps": status.steps,
        "degraded": status.degraded.is_some(),
        "offset_ms": status.degraded.map(|s| s.offset_ms),
        "step_seen_at": status.degraded.map(|s| rfc3339(s.seen_at_ms)),
    })
}

async fn status(_op: Operator, gw: web::Data<Gateway>) -> HttpResponse {
    HttpResponse::Ok().json(clock_json(&gw.engine.clock_status()))
}

/// Engine time jumps to the wall clock; holds keep their length. 409 `conflict` when the clock
/// is not degraded (nothing to confirm).
async fn confirm(op: Operator, gw: web::Data<Gateway>) -> ApiResult<HttpResponse> {
    let confirmed = gw.engine.confirm_clock(&op.who).await?;
    tracing::warn!(who = %op.who, jump_ms = confirmed.jump_ms, "wall clock confirmed by an operator");
    Ok(HttpResponse::Ok().json(json!({
        "confirmed": true,
        "from": rfc3339(confirmed.from_ms),
        "to": rfc3339(confirmed.to_ms),
        "jump_ms": confirmed.jump_ms,
    })))
}
