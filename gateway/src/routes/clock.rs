//! The engine's clock for operators (SPEC T1): how it stands against the wall clock, and the
//! audited confirmation of the wall time after a step (`POST /v1/admin/clock/confirm`). Until
//! an operator confirms, or the wall clock agrees again, engine time follows the monotonic clock
//! and what a forward step would make due (claims lapsing, blacklist entries ending) waits.

use actix_web::{web, HttpResponse};
use platepool_engine::calendar::rfc3339;
use serde::Serialize;

use crate::auth::Operator;
use crate::error::ApiResult;
use crate::openapi::{json_answer, Answer, Doc};
use crate::routes::answers::ClockAnswer;
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
            response: Answer::Json(json_answer::<ClockAnswer>),
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
            response: Answer::Json(json_answer::<ClockConfirmed>),
            codes: &[200, 401, 403, 409, 503],
        },
    ),
];

async fn status(_op: Operator, gw: web::Data<Gateway>) -> HttpResponse {
    HttpResponse::Ok().json(ClockAnswer::from(&gw.engine.clock_status()))
}

/// The wall time confirmed: engine time went from `from` to `to`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ClockConfirmed {
    confirmed: bool,
    #[schema(format = DateTime)]
    from: String,
    #[schema(format = DateTime)]
    to: String,
    jump_ms: i64,
}

/// Engine time jumps to the wall clock; holds keep their length. 409 `conflict` when the clock
/// is not degraded (nothing to confirm).
async fn confirm(op: Operator, gw: web::Data<Gateway>) -> ApiResult<HttpResponse> {
    let confirmed = gw.engine.confirm_clock(&op.who).await?;
    tracing::warn!(who = %op.who, jump_ms = confirmed.jump_ms, "wall clock confirmed by an operator");
    Ok(HttpResponse::Ok().json(ClockConfirmed {
        confirmed: true,
        from: rfc3339(confirmed.from_ms),
        to: rfc3339(confirmed.to_ms),
        jump_ms: confirmed.jump_ms,
    }))
}
