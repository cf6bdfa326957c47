//! GET /v1/admin/blacklist and DELETE /v1/admin/blacklist/{user}.

use actix_web::{web, HttpResponse};
use platepool_engine::calendar::rfc3339;
use serde::Serialize;

use super::shared::{required_text, ReasonBody, REASON_LEN_MAX};
use crate::auth::{validate_user, Operator};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::openapi::{json_answer, json_body, json_list, Answer, Doc};
use crate::routes::table::{Access, Route, Verb};
use crate::Gateway;

/// The routes this file serves.
pub(crate) const ROUTES: &[Route] = &[
    Route::new(
        Verb::Get,
        "/v1/admin/blacklist",
        Access::Operator,
        |r| r.to(blacklist),
        Doc {
            summary: "Blacklisted users",
            request: None,
            query: None,
            response: Answer::Json(json_list::<BlacklistEntry>),
            codes: &[200, 401, 403],
        },
    ),
    Route::new(
        Verb::Delete,
        "/v1/admin/blacklist/{user}",
        Access::Operator,
        |r| r.to(lift_blacklist),
        Doc {
            summary: "Lifts a blacklist entry, with a reason",
            request: Some(json_body::<ReasonBody>),
            query: None,
            response: Answer::Json(json_answer::<Lifted>),
            codes: &[200, 400, 401, 403, 404, 409, 413, 503],
        },
    ),
];

/// A blacklisted user: since when, until when, and the lapsed pre-selection that caused it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct BlacklistEntry {
    user: String,
    #[schema(format = DateTime)]
    since: String,
    #[schema(format = DateTime)]
    until: String,
    office: String,
    application: String,
}

/// A blacklist entry lifted, with the reason given.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Lifted {
    user: String,
    lifted: bool,
    reason: String,
}

pub(super) async fn blacklist(gw: web::Data<Gateway>, op: Operator) -> HttpResponse {
    let _ = op;
    let list: Vec<BlacklistEntry> = gw
        .engine
        .blacklist()
        .into_iter()
        .map(|e| BlacklistEntry {
            user: e.user,
            since: rfc3339(e.since_ms),
            until: rfc3339(e.until_ms),
            office: e.office,
            application: e.application,
        })
        .collect();
    HttpResponse::Ok().json(list)
}

pub(super) async fn lift_blacklist(
    gw: web::Data<Gateway>,
    op: Operator,
    path: web::Path<String>,
    body: ApiJson<ReasonBody>,
) -> ApiResult<HttpResponse> {
    let user = path.into_inner();
    if validate_user(&user).is_err() || gw.engine.blacklisted_until(&user).is_none() {
        return Err(ApiError::not_found(format!("{user} is not blacklisted")));
    }
    let reason = required_text(Some(body.0.reason), "reason", REASON_LEN_MAX)?;
    gw.engine.lift_blacklist(&user, &op.who, &reason).await?;
    tracing::info!(user = %user, who = %op.who, reason = %reason, "blacklist lifted");
    Ok(HttpResponse::Ok().json(Lifted {
        user,
        lifted: true,
        reason,
    }))
}
