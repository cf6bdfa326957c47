//! The one place where engine outcomes become HTTP answers (API.md "Conventions").
//!
//! Every error is `{"error": {"code", "message", "field"?, …extra}}` with the one status its code
//! has in the contract.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use platepool_engine::{PlateError, Refusal};
use serde_json::{json, Map, Value};

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// Fields beside `code` inside `error` (`results`, `retry_after_ms`, `position`, …).
    pub extra: Map<String, Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            extra: Map::new(),
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
        .with("retry_after_ms", json!(retry_after_ms))
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    pub fn field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }

    pub fn with(mut self, key: &str, value: Value) -> ApiError {
        self.extra.insert(key.to_string(), value);
        self
    }

    pub fn body(&self) -> Value {
        let mut error = Map::new();
        error.insert("code".into(), json!(self.code));
        error.insert("message".into(), json!(self.message));
        if let Some(f) = &self.field {
            error.insert("field".into(), json!(f));
        }
        for (k, v) in &self.extra {
            error.insert(k.clone(), v.clone());
        }
        json!({ "error": error })
    }

    /// An invalid plate number at `field` (e.g. `plates[2]`).
    pub fn invalid_plate(err: &PlateError, field: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_plate", err.to_string())
            .field(field)
            .with("position", json!(err.position()))
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
        if let Some(ms) = self.extra.get("retry_after_ms").and_then(Value::as_u64) {
            resp.insert_header(("Retry-After", ms.div_ceil(1000).max(1).to_string()));
        }
        resp.json(self.body())
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
        let mut e = ApiError::new(status, code, message);
        match r {
            Refusal::InvalidPlate { error, .. } => {
                e = e.with("position", json!(error.position())).field("serial");
            }
            Refusal::NotAllowed { serial, reason, .. } => {
                e = e
                    .with("reason", json!("not_allowed"))
                    .with("detail", json!(reason))
                    .with("serial", json!(serial))
                    .with("position", json!(1));
            }
            Refusal::InvalidConfig { field, .. } => e = e.field(field),
            Refusal::InvalidVin(_) => e = e.field("vin"),
            Refusal::TooSoon { retry_after_ms } => {
                e = e.with("retry_after_ms", json!(retry_after_ms))
            }
            Refusal::Blacklisted { until_ms } => {
                e = e.with(
                    "blacklisted_until",
                    json!(platepool_engine::calendar::rfc3339(until_ms)),
                )
            }
            Refusal::SelectionClosed {
                reopens_at_ms: Some(at),
            } => e = e.with("reopens_at", json!(platepool_engine::calendar::rfc3339(at))),
            Refusal::ApplicationExists { application } if !application.is_empty() => {
                e = e.with("application", json!(application))
            }
            Refusal::NoticeNotAccepted { expected } => {
                e = e
                    .with("notice_version", json!(expected))
                    .field("notice_version")
            }
            Refusal::Unavailable(_) => e = e.with("retry_after_ms", json!(1000)),
            _ => {}
        }
        e
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Every error code of the contract.
pub const CODES: &[&str] = &[
    "bad_request",
    "invalid_plate",
    "invalid_vin",
    "unauthorized",
    "forbidden",
    "blacklisted",
    "not_found",
    "method_not_allowed",
    "conflict",
    "application_exists",
    "vin_already_used",
    "not_available",
    "quota_spent",
    "hold_expired",
    "not_held",
    "exhausted",
    "identity_not_verified",
    "selection_closed",
    "payload_too_large",
    "voucher_mismatch",
    "vehicle_not_eligible",
    "notice_not_accepted",
    "sms_code_invalid",
    "sms_code_expired",
    "too_soon",
    "sms_too_soon",
    "too_many_requests",
    "unavailable",
];

/// The static code equal to `code` (for answers read back from storage).
pub fn static_code(code: &str) -> &'static str {
    CODES
        .iter()
        .find(|c| **c == code)
        .copied()
        .unwrap_or("conflict")
}
