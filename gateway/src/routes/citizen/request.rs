//! Request plumbing shared by the citizen handlers: bodies, the application in the path,
//! rate limits, the steps every call on an application opens with ([`AppCall`]), and typed
//! answers run once per `Idempotency-Key` ([`answer_once`]).

use std::future::Future;

use actix_web::http::header::{self};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use platepool_engine::{AppId, Caller, Refusal};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::auth::Citizen;
use crate::error::{ApiError, ApiResult};
use crate::extract::{parse_json, read_body, BODY_LEN_MAX};
use crate::idempotency::request_key;
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

/// A state-changing call on an application, read the same way by every such handler: the
/// rate limit first (429 before any rule), then the application in the path (404), the body,
/// the `Idempotency-Key` and the time the call came in.
#[derive(Debug)]
pub(super) struct AppCall<B> {
    pub(super) id: AppId,
    pub(super) body: B,
    pub(super) key: Option<String>,
    pub(super) now_ms: u64,
}

impl<B: DeserializeOwned> AppCall<B> {
    /// Reads the call; with `empty`, an empty body means that value.
    pub(super) async fn read(
        gw: &Gateway,
        req: &HttpRequest,
        citizen: &Citizen,
        payload: web::Payload,
        empty: Option<B>,
    ) -> ApiResult<AppCall<B>> {
        limit(gw, req, citizen)?;
        let id = app_id(req)?;
        let body = body(req, payload, empty).await?;
        let key = request_key(req, &citizen.user)?;
        Ok(AppCall {
            id,
            body,
            key,
            now_ms: gw.engine.now_ms(),
        })
    }

    /// Whether the call carries an `Idempotency-Key`.
    pub(super) fn keyed(&self) -> bool {
        self.key.is_some()
    }
}

/// A typed answer and its status.
pub(super) type Answered<T> = ApiResult<(StatusCode, T)>;

/// Runs `work` once per `key` (see [`crate::idempotency`]; `state` as in `run_guarded`, or
/// `None`) and answers with what it gave. Without a key the answer is written straight from its
/// type; with one it is kept as JSON first, to be given again to a retry.
pub(super) async fn answer_once<T, S, F>(
    gw: &Gateway,
    key: Option<String>,
    now_ms: u64,
    state: S,
    work: F,
) -> ApiResult<HttpResponse>
where
    T: Serialize,
    S: Future<Output = Option<String>>,
    F: Future<Output = Answered<T>>,
{
    if key.is_none() {
        let (status, answer) = work.await?;
        return Ok(json_response(status, &answer));
    }
    let kept = async {
        let (status, answer) = work.await?;
        let json = serde_json::to_value(answer)
            .map_err(|e| ApiError::unavailable(format!("answer not written: {e}")))?;
        Ok((status, json))
    };
    let (status, json) = gw.idempotency.run_guarded(key, now_ms, state, kept).await?;
    Ok(HttpResponse::build(status).json(json))
}

/// Bytes reserved for a JSON answer before it is written: a draw's (ten plates and the
/// candidate list) fits, so the buffer is not grown while writing.
const ANSWER_CAPACITY: usize = 1024;

/// `HttpResponse::json` written into a buffer sized once rather than grown while writing.
fn json_response<T: Serialize>(status: StatusCode, answer: &T) -> HttpResponse {
    let mut body = Vec::with_capacity(ANSWER_CAPACITY);
    match serde_json::to_writer(&mut body, answer) {
        Ok(()) => HttpResponse::build(status)
            .content_type("application/json")
            .body(body),
        Err(e) => HttpResponse::from_error(actix_web::error::JsonPayloadError::Serialize(e)),
    }
}

/// No state to guard a keyed retry with (`answer_once`'s `state`).
pub(super) async fn unguarded() -> Option<String> {
    None
}
