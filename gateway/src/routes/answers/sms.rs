//! A sent SMS code (`POST /v1/sms`, `POST /v1/login/sms`).

use platepool_engine::calendar::rfc3339;
use serde::Serialize;

use crate::sms::{Purpose, Sent};

/// When the code went out, and from and until when it may be submitted.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SmsSent {
    pub sent_at: String,
    /// Authoritative: a code submitted earlier gets 429 `sms_too_soon`.
    pub confirm_after_ms: u64,
    #[schema(format = DateTime)]
    pub confirm_at: String,
    pub expires_in_ms: u64,
    #[schema(format = DateTime)]
    pub expires_at: String,
    #[schema(value_type = String, pattern = "^(apply|identity|login)$")]
    pub purpose: &'static str,
    /// The application an identity code is for (`POST /v1/sms`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub application: Option<Option<String>>,
    /// The phone it went to, masked (`POST /v1/sms`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

impl SmsSent {
    /// A code for `purpose` sent at `now_ms`.
    pub fn new(sent: Sent, purpose: Purpose, now_ms: u64) -> SmsSent {
        SmsSent {
            confirm_at: rfc3339(now_ms + sent.confirm_after_ms),
            expires_at: rfc3339(now_ms + sent.expires_in_ms),
            sent_at: sent.sent_at,
            confirm_after_ms: sent.confirm_after_ms,
            expires_in_ms: sent.expires_in_ms,
            purpose: purpose.as_str(),
            application: None,
            phone: None,
        }
    }
}
