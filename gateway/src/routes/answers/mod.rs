//! The answers the API's handlers return, as types: each is `Serialize` for the wire and
//! `utoipa::ToSchema` for the OpenAPI document ([`crate::openapi`]), so the document's response
//! schemas are those of the values the handlers really send. Answers one handler alone gives
//! live beside it; those several share live here: plates, holds and claims ([`selection`]),
//! applications ([`application`]), offices ([`office`]), the clock ([`clock`]) and a sent SMS
//! code ([`sms`]).

pub mod application;
pub mod clock;
pub mod office;
pub mod selection;
pub mod sms;

pub use application::{ApplicationAnswer, ApplicationState, OperatorApplication};
pub use clock::ClockAnswer;
pub use office::{NoticeDoc, OfficeDocument, OfficeSettings, OfficeSummaryAnswer, PoolNotice};
pub use selection::{ClaimAnswer, HoldAnswer, PlateAnswer};
pub use sms::SmsSent;

/// A value written into the answer with its `Display`, without an intermediate `String` (its
/// schema is a string: `#[schema(value_type = String)]` where it is a field).
#[derive(Debug, Clone, Copy)]
pub struct Shown<T>(pub T);

impl<T: std::fmt::Display> serde::Serialize for Shown<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// Milliseconds from `now_ms` until `at_ms` (0 once passed): every `…_in_ms` of the API.
pub fn ms_left(at_ms: u64, now_ms: u64) -> u64 {
    at_ms.saturating_sub(now_ms)
}
