//! The one place where engine outcomes become HTTP answers (API.md "Conventions").
//!
//! Every error is `{"error": {"code", "message", "field"?, …extra}}` with the one status its code
//! has in the contract.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use platepool_engine::calendar::rfc3339;
use platepool_engine::{PlateError, Refusal};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::routes::answers::ClockAnswer;

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// Fields beside `code` inside `error` (`results`, `retry_after_ms`, `position`, …); boxed,
    /// as most errors carry none and a `Result` should stay small.
    pub extra: Box<ErrorExtra>,
}

/// The body of every error answer: `{"error": {"code", "message", "field"?, …}}`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// `error` of an [`ErrorBody`].
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    #[schema(value_type = ErrorCode)]
    pub code: String,
    /// Human text.
    pub message: String,
    /// The JSON path of the request field at fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(flatten)]
    pub extra: ErrorExtra,
}

/// What an error may carry beside its code, each present only where it says something.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorExtra {
    /// 1-based position of the character at fault (a plate, a pattern, a VIN; null when a VIN
    /// is wrong as a whole).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    #[schema(value_type = Option<u64>)]
    pub position: Option<Option<u64>>,
    /// Milliseconds to wait before trying again (429, and 503 when shed for load).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// A custom check that found nothing: what each number was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<Vec<CheckResult>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_left: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random_left: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_check_in_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub next_check_at: Option<String>,
    /// The application's state, where the refusal depends on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Why, in a word (`not_allowed`, a VIN's reason, an Idempotency-Key's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The rule a well-formed serial breaks (`reason: "not_allowed"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub blacklisted_until: Option<String>,
    /// When selection opens again (`selection_closed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub reopens_at: Option<String>,
    /// The caller's own live application (`application_exists`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    /// The notice version in force (`notice_not_accepted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice_version: Option<String>,
    /// Wrong codes an SMS code still takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tries_left: Option<u32>,
    /// `/readyz`: the offices that cannot serve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_offices: Option<Vec<FailedOffice>>,
    /// `/readyz`: the engine's clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<ClockAnswer>,
    /// A certificate import cut off after some parts: records kept so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts_done: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<usize>,
    /// What to do next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<String>,
}

/// A present value, even `null` (`Some(None)`), as opposed to an absent one (`None`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// One number of a custom check that found nothing available.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckResult {
    pub serial: String,
    pub plate: String,
    pub reason: CheckReason,
}

/// Why a checked number was not available.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckReason {
    Taken,
    Held,
    NotInPool,
}

/// An office that cannot serve (`/readyz`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FailedOffice {
    pub office: String,
    pub reason: Option<String>,
    pub restarts: u64,
}

impl ErrorExtra {
    /// Sets the field named `key` from `value` (an answer read back from storage, or a caller
    /// naming the field); a key this type does not have, or a value of the wrong type, is left
    /// out and logged.
    pub fn insert(&mut self, key: String, value: Value) {
        let mut fields = match serde_json::to_value(&*self) {
            Ok(Value::Object(fields)) => fields,
            _ => Map::new(),
        };
        let null = value.is_null();
        fields.insert(key.clone(), value);
        let read = serde_json::from_value::<ErrorExtra>(Value::Object(fields))
            .map_err(|e| e.to_string())
            .and_then(|extra| match serde_json::to_value(&extra) {
                // A field this type does not have is dropped by the round trip.
                Ok(Value::Object(m)) if null || m.contains_key(&key) => Ok(extra),
                _ => Err("not a field of an error".into()),
            });
        match read {
            Ok(extra) => *self = extra,
            Err(e) => {
                debug_assert!(false, "error field {key}: {e}");
                tracing::warn!(field = %key, error = %e, "error field left out");
            }
        }
    }
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            extra: Box::default(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 405: the path is served, not with this method (the caller adds `Allow`).
    pub fn method_not_allowed(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            message,
        )
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than {limit} bytes"),
        )
    }

    pub fn too_many_requests(retry_after_ms: u64) -> ApiError {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "too many requests: slow down",
        )
        .retry_after_ms(retry_after_ms)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    pub fn field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }

    /// Sets the extra field `key` (see [`ErrorExtra::insert`]); the typed setters below are the
    /// usual way.
    pub fn with(mut self, key: &str, value: Value) -> ApiError {
        self.extra.insert(key.to_string(), value);
        self
    }

    /// Sets the extra fields with `f`.
    pub fn extra(mut self, f: impl FnOnce(&mut ErrorExtra)) -> ApiError {
        f(&mut self.extra);
        self
    }

    pub fn retry_after_ms(mut self, ms: u64) -> ApiError {
        self.extra.retry_after_ms = Some(ms);
        self
    }

    /// The 1-based position at fault (`None`: the value as a whole).
    pub fn position(mut self, position: Option<usize>) -> ApiError {
        self.extra.position = Some(position.map(|p| p as u64));
        self
    }

    /// The answer's body.
    pub fn answer(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message.clone(),
                field: self.field.clone(),
                extra: (*self.extra).clone(),
            },
        }
    }

    /// The answer's body as JSON (kept by the idempotency store).
    pub fn body(&self) -> Value {
        serde_json::to_value(self.answer()).unwrap_or(Value::Null)
    }

    /// An invalid plate number at `field` (e.g. `plates[2]`).
    pub fn invalid_plate(err: &PlateError, field: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_plate", err.to_string())
            .field(field)
            .position(Some(err.position()))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status);
        if let Some(ms) = self.extra.retry_after_ms {
            resp.insert_header(("Retry-After", ms.div_ceil(1000).max(1).to_string()));
        }
        resp.json(self.answer())
    }
}

/// Where a refusal about plates puts its `field`: the request's array and index.
pub fn refusal_with_field(refusal: Refusal, plates_field: &str) -> ApiError {
    match &refusal {
        Refusal::InvalidPlate { index, error } => {
            ApiError::invalid_plate(error, indexed(plates_field, *index))
        }
        Refusal::NotAllowed { index, .. } => {
            ApiError::from(refusal.clone()).field(indexed(plates_field, *index))
        }
        _ => ApiError::from(refusal),
    }
}

fn indexed(field: &str, index: usize) -> String {
    if field.ends_with(']') || !field.contains("plates") {
        field.to_string()
    } else {
        format!("{field}[{index}]")
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        let message = r.to_string();
        let code = r.code();
        let status = match &r {
            Refusal::BadRequest(_)
            | Refusal::TooManyNumbers { .. }
            | Refusal::InvalidConfig { .. }
            | Refusal::InvalidRelease(_)
            | Refusal::InvalidPlate { .. }
            | Refusal::NotAllowed { .. }
            | Refusal::InvalidVin(_) => StatusCode::BAD_REQUEST,
            Refusal::UnknownOffice
            | Refusal::UnknownApplication
            | Refusal::UnknownRelease
            | Refusal::UnknownNumber
            | Refusal::UnknownClass(_) => StatusCode::NOT_FOUND,
            Refusal::QuotaSpent
            | Refusal::Exhausted
            | Refusal::NotAvailable
            | Refusal::HoldExpired
            | Refusal::NotHeld
            | Refusal::AlreadyPicked
            | Refusal::IdentityNotVerified
            | Refusal::SelectionClosed { .. }
            | Refusal::WrongState { .. }
            | Refusal::NumberBusy { .. }
            | Refusal::ApplicationExists { .. }
            | Refusal::VinAlreadyUsed
            | Refusal::Conflict(_) => StatusCode::CONFLICT,
            Refusal::Blacklisted { .. } => StatusCode::FORBIDDEN,
            Refusal::VoucherMismatch
            | Refusal::VehicleNotEligible(_)
            | Refusal::NoticeNotAccepted { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Refusal::TooSoon { .. } => StatusCode::TOO_MANY_REQUESTS,
            Refusal::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let e = ApiError::new(status, code, message);
        match r {
            Refusal::InvalidPlate { error, .. } => {
                e.position(Some(error.position())).field("serial")
            }
            Refusal::NotAllowed { serial, reason, .. } => e.position(Some(1)).extra(|x| {
                x.reason = Some("not_allowed".into());
                x.detail = Some(reason);
                x.serial = Some(serial);
            }),
            Refusal::InvalidConfig { field, .. } => e.field(field),
            Refusal::InvalidVin(_) => e.field("vin"),
            Refusal::TooSoon { retry_after_ms } => e.retry_after_ms(retry_after_ms),
            Refusal::Blacklisted { until_ms } => {
                e.extra(|x| x.blacklisted_until = Some(rfc3339(until_ms)))
            }
            Refusal::SelectionClosed {
                reopens_at_ms: Some(at),
            } => e.extra(|x| x.reopens_at = Some(rfc3339(at))),
            Refusal::ApplicationExists { application } if !application.is_empty() => {
                e.extra(|x| x.application = Some(application))
            }
            Refusal::NoticeNotAccepted { expected } => e
                .extra(|x| x.notice_version = Some(expected))
                .field("notice_version"),
            Refusal::Unavailable(_) => e.retry_after_ms(1000),
            _ => e,
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Declares the error codes once: [`ErrorCode`] for the document, [`CODES`] for code.
macro_rules! error_codes {
    ($($variant:ident = $text:tt,)*) => {
        /// Every error code of the contract (API.md "Conventions").
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
        pub enum ErrorCode {
            $(#[serde(rename = $text)] $variant,)*
        }

        /// Every error code of the contract.
        pub const CODES: &[&str] = &[$($text,)*];
    };
}

error_codes! {
    BadRequest = "bad_request",
    InvalidPlate = "invalid_plate",
    InvalidVin = "invalid_vin",
    Unauthorized = "unauthorized",
    Forbidden = "forbidden",
    Blacklisted = "blacklisted",
    NotFound = "not_found",
    MethodNotAllowed = "method_not_allowed",
    Conflict = "conflict",
    ApplicationExists = "application_exists",
    VinAlreadyUsed = "vin_already_used",
    NotAvailable = "not_available",
    QuotaSpent = "quota_spent",
    HoldExpired = "hold_expired",
    NotHeld = "not_held",
    Exhausted = "exhausted",
    IdentityNotVerified = "identity_not_verified",
    SelectionClosed = "selection_closed",
    PayloadTooLarge = "payload_too_large",
    VoucherMismatch = "voucher_mismatch",
    VehicleNotEligible = "vehicle_not_eligible",
    NoticeNotAccepted = "notice_not_accepted",
    SmsCodeInvalid = "sms_code_invalid",
    SmsCodeExpired = "sms_code_expired",
    TooSoon = "too_soon",
    SmsTooSoon = "sms_too_soon",
    TooManyRequests = "too_many_requests",
    Unavailable = "unavailable",
}

/// The static code equal to `code` (for answers read back from storage).
pub fn static_code(code: &str) -> &'static str {
    CODES
        .iter()
        .find(|c| **c == code)
        .copied()
        .unwrap_or("conflict")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_bodies_carry_code_message_field_and_only_the_extras_set() {
        assert_eq!(
            ApiError::too_many_requests(1_500).body(),
            json!({"error": {
                "code": "too_many_requests",
                "message": "too many requests: slow down",
                "retry_after_ms": 1_500,
            }})
        );
        let e = ApiError::bad_request("vin: too short")
            .field("vin")
            .position(None);
        assert_eq!(
            e.body(),
            json!({"error": {
                "code": "bad_request", "message": "vin: too short", "field": "vin", "position": null,
            }})
        );
        let e = ApiError::from(Refusal::TooSoon {
            retry_after_ms: 700,
        });
        assert_eq!(e.body()["error"]["retry_after_ms"], 700);
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
    }

    #[test]
    fn extras_named_by_key_are_typed_and_read_back() {
        let e = ApiError::conflict("x")
            .with("reason", json!("in_progress"))
            .with("tries_left", json!(3))
            .with("position", Value::Null);
        assert_eq!(e.extra.reason.as_deref(), Some("in_progress"));
        assert_eq!(e.extra.tries_left, Some(3));
        assert_eq!(e.extra.position, Some(None));
        // An answer read back from storage (the idempotency store) is the same error.
        let body = e.body();
        let mut again = ApiError::conflict("x");
        for (k, v) in body["error"].as_object().expect("error").clone() {
            if !matches!(k.as_str(), "code" | "message" | "field") {
                again.extra.insert(k, v);
            }
        }
        assert_eq!(again.extra, e.extra);
        let back: ErrorBody = serde_json::from_value(body.clone()).expect("an error body");
        assert_eq!(serde_json::to_value(back).expect("json"), body);
    }

    #[test]
    fn every_code_is_one_of_the_documented_enumeration() {
        for code in CODES {
            let parsed: ErrorCode =
                serde_json::from_value(json!(code)).expect("a code of the enumeration");
            assert_eq!(serde_json::to_value(parsed).expect("json"), json!(code));
        }
        assert_eq!(static_code("not_held"), "not_held");
        let schema =
            serde_json::to_value(<ErrorCode as utoipa::PartialSchema>::schema()).expect("schema");
        assert_eq!(schema["enum"], json!(CODES), "{schema}");
    }
}
