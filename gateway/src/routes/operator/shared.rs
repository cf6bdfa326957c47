//! What several operator handlers share: query strings, required text, serials and times,
//! applications as operators see them.

use actix_web::{web, HttpRequest};
use platepool_engine::calendar::parse_rfc3339;
use platepool_engine::{AppId, Caller, Engine, Refusal, Serial};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::error::{ApiError, ApiResult};
use crate::routes::answers::OperatorApplication;

/// Longest reason an operator may give for a void or a blacklist lift.
pub const REASON_LEN_MAX: usize = 500;

/// Parses the query string into `T`, refusing it with 400 naming the problem.
pub(super) fn query<T: DeserializeOwned>(req: &HttpRequest) -> ApiResult<T> {
    web::Query::<T>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))
}

pub(super) fn required_text(value: Option<String>, field: &str, max: usize) -> ApiResult<String> {
    let text = value.unwrap_or_default().trim().to_string();
    if text.is_empty() || text.chars().count() > max {
        return Err(
            ApiError::bad_request(format!("{field} must have 1 to {max} characters")).field(field),
        );
    }
    Ok(text)
}

/// The operator view of one application, after an operator changed it.
pub(super) async fn application_answer(
    engine: &Engine,
    id: &AppId,
) -> ApiResult<OperatorApplication> {
    let view = engine.application(id, Caller::Operator).await?;
    let prefix = engine.office_config(&id.office)?.prefix.clone();
    Ok(OperatorApplication::new(
        id,
        &view,
        &prefix,
        engine.now_ms(),
    ))
}

/// A serial typed in a path or body, checked so the error names the field.
pub(super) fn parse_serial(text: &str, prefix: &str, field: &str) -> ApiResult<Serial> {
    Serial::parse_with_prefix(text, prefix).map_err(|e| ApiError::invalid_plate(&e, field))
}

pub(super) fn parse_time(text: &str, field: &str) -> ApiResult<u64> {
    parse_rfc3339(text).map_err(|e| ApiError::bad_request(format!("{field}: {e}")).field(field))
}

pub(super) fn with_serial_field(r: Refusal, field: &str) -> ApiError {
    match r {
        Refusal::UnknownNumber | Refusal::NumberBusy { .. } => ApiError::from(r).field(field),
        other => ApiError::from(other),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ReasonBody {
    /// 1 to [`REASON_LEN_MAX`] characters, not all spaces.
    #[schema(min_length = 1, max_length = 500, pattern = r"\S")]
    pub(super) reason: String,
}
