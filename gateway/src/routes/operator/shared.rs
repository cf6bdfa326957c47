//! What several operator handlers share: query strings, required text, serials and times,
//! applications as operators see them.

use actix_web::{web, HttpRequest};
use platepool_engine::calendar::{parse_rfc3339, rfc3339};
use platepool_engine::plate::full_plate;
use platepool_engine::pool::HoldView;
use platepool_engine::{AppId, AppView, Caller, Claim, Engine, Refusal, Serial};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};

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

fn hold_json(hold: &Option<HoldView>, prefix: &str, now_ms: u64) -> Value {
    match hold {
        None => Value::Null,
        Some(h) => json!({
            "plates": h.serials.iter().map(|s| json!({
                "serial": s.to_string(),
                "plate": full_plate(prefix, *s),
            })).collect::<Vec<_>>(),
            "expires_at": rfc3339(h.expires_at_ms),
            "expires_in_ms": h.expires_at_ms.saturating_sub(now_ms),
        }),
    }
}

fn claim_json(claim: &Option<Claim>, prefix: &str) -> Value {
    match claim {
        None => Value::Null,
        Some(c) => json!({
            "serial": c.serial.to_string(),
            "plate": full_plate(prefix, c.serial),
            "claimed_at": rfc3339(c.claimed_at_ms),
            "register_by": rfc3339(c.register_by_ms),
            "voucher": {"serial": c.voucher_serial, "code": c.voucher_code},
            "void": c.void,
        }),
    }
}

/// An application as operators see it: everything, the VIN and phone unmasked.
pub fn application_json(id: &AppId, view: &AppView, prefix: &str, now_ms: u64) -> Value {
    let r = &view.record;
    json!({
        "id": id.to_string(),
        "office": id.office,
        "class": r.class,
        "energy": r.energy,
        "vin": r.vin,
        "user": r.user,
        "phone": r.phone,
        "state": r.state.as_str(),
        "practice": view.practice,
        "notice_version": r.notice_version,
        "created_at": rfc3339(r.created_at_ms),
        "custom_left": r.custom_left,
        "random_left": r.random_left,
        "verified_until": r.verified_until_ms.map(rfc3339),
        "batch": hold_json(&view.batch, prefix, now_ms),
        "candidates": hold_json(&view.candidates, prefix, now_ms),
        "claim": claim_json(&r.claim, prefix),
        "closed_at": r.closed_at_ms.map(rfc3339),
    })
}

/// The operator view of one application, after an operator changed it.
pub(super) async fn application_answer(engine: &Engine, id: &AppId) -> ApiResult<Value> {
    let view = engine.application(id, Caller::Operator).await?;
    let prefix = engine.office_config(&id.office)?.prefix.clone();
    Ok(application_json(id, &view, &prefix, engine.now_ms()))
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
