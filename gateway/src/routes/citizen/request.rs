//! Request plumbing shared by the citizen handlers: bodies, the application in the path,
//! rate limits, answers.

use actix_web::http::header::{self};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use platepool_engine::{AppId, Caller, Refusal};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::auth::Citizen;
use crate::error::{ApiError, ApiResult};
use crate::extract::{parse_json, read_body, BODY_LEN_MAX};
use crate::Gateway;

pub(super) type Gw = web::Data<Gateway>;

/// Reads a JSON body (64 KiB at most). With `empty`, an empty body means that value.
pub(super) async fn body<T: DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    empty: Option<T>,
) -> ApiResult<T> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !(mime.is_empty() || mime.eq_ignore_ascii_case("application/json")) {
        return Err(ApiError::bad_request(format!(
            "Content-Type must be application/json, not {mime}"
        )));
    }
    let mut payload = payload.into_inner();
    let bytes = read_body(req, &mut payload, BODY_LEN_MAX).await?;
    if let Some(default) = empty {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(default);
        }
    }
    parse_json(&bytes)
}

/// The application named in the path; a malformed id is as unknown as someone else's (404).
pub(super) fn app_id(req: &HttpRequest) -> ApiResult<AppId> {
    req.match_info()
        .get("id")
        .and_then(|s| s.parse::<AppId>().ok())
        .ok_or_else(|| ApiError::from(Refusal::UnknownApplication))
}

/// What a debiting call changes, read before a keyed request runs (see
/// `Idempotency::run_guarded`): state and both quotas left. `None` when it cannot be read.
pub(super) async fn quotas_of(gw: &Gateway, id: &AppId, user: &str) -> Option<String> {
    let v = gw
        .engine
        .application(id, Caller::Citizen(user))
        .await
        .ok()?;
    Some(format!(
        "{}/{}/{}",
        v.record.state.as_str(),
        v.record.random_left,
        v.record.custom_left
    ))
}

/// 429 `too_many_requests` before any rule (SPEC S3).
pub(super) fn limit(gw: &Gateway, req: &HttpRequest, citizen: &Citizen) -> ApiResult<()> {
    gw.limits.check(req, Some(&citizen.user))
}

pub(super) fn respond((status, body): (StatusCode, Value)) -> HttpResponse {
    HttpResponse::build(status).json(body)
}

pub(super) fn ms_left(at_ms: u64, now_ms: u64) -> u64 {
    at_ms.saturating_sub(now_ms)
}
