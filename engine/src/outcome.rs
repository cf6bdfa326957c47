//! Outcomes: what the engine answers when it will not do what was asked.
//!
//! Business outcomes are values named like sentences (`QuotaSpent`, `HoldExpired`); the gateway
//! maps each to one HTTP status and error code in one place. A refusal never changes state.
//! Bugs are not outcomes: they are assertions.

use serde::Serialize;

use crate::plate::PlateError;

/// Why one number of a failed custom check could not be taken (R4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unavailable {
    /// Pre-selected or registered by someone.
    Taken,
    /// Held in someone's random batch or candidate list.
    Held,
    /// Never released, not opened yet, withdrawn, or still in its random-only period.
    NotInPool,
}

impl Unavailable {
    pub fn as_str(self) -> &'static str {
        match self {
            Unavailable::Taken => "taken",
            Unavailable::Held => "held",
            Unavailable::NotInPool => "not_in_pool",
        }
    }
}

/// A refused request. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    // ---- input (400) ----
    #[error("{0}")]
    BadRequest(String),
    #[error("plate number {index}: {error}")]
    InvalidPlate {
        /// 0-based index of the number in the request.
        index: usize,
        error: PlateError,
    },
    #[error("plate number {index} ({serial}) is not allowed for custom selection: {reason}")]
    NotAllowed {
        index: usize,
        serial: String,
        reason: String,
    },
    #[error("a check takes at most {max} numbers")]
    TooManyNumbers { max: u32 },
    #[error("{0}")]
    InvalidVin(String),
    #[error("{field}: {message}")]
    InvalidConfig { field: String, message: String },
    #[error("release: {0}")]
    InvalidRelease(String),

    // ---- missing (404) ----
    #[error("no such office")]
    UnknownOffice,
    #[error("no such application")]
    UnknownApplication,
    #[error("no such release")]
    UnknownRelease,
    #[error("no such number in this office's pool")]
    UnknownNumber,
    #[error("the office does not serve class {0}")]
    UnknownClass(String),

    // ---- state (409) ----
    #[error("the quota for this kind of selection is spent")]
    QuotaSpent,
    #[error("both quotas are spent: select at the office counter")]
    Exhausted,
    #[error("no number is available")]
    NotAvailable,
    #[error("the hold has expired")]
    HoldExpired,
    #[error("this number is not held for the application")]
    NotHeld,
    #[error("one number per random batch may become a candidate")]
    AlreadyPicked,
    #[error("identity not verified: verify the SMS code first")]
    IdentityNotVerified,
    #[error("selection is closed now")]
    SelectionClosed { reopens_at_ms: Option<u64> },
    #[error("the application is {state}")]
    WrongState { state: &'static str },
    #[error("the number is {status}")]
    NumberBusy { status: &'static str },
    #[error("the vehicle already has a live application")]
    ApplicationExists { application: String },
    #[error("this vehicle has already pre-selected a number online")]
    VinAlreadyUsed,
    #[error("{0}")]
    Conflict(String),

    // ---- business (403/422) ----
    #[error("the user is blacklisted until {until_ms}")]
    Blacklisted { until_ms: u64 },
    #[error("the VIN and selection voucher do not match a certificate record")]
    VoucherMismatch,
    #[error("{0}")]
    VehicleNotEligible(String),
    #[error("the business notice version {expected} must be accepted")]
    NoticeNotAccepted { expected: String },

    // ---- timing (429) ----
    #[error("too soon: wait {retry_after_ms} ms")]
    TooSoon { retry_after_ms: u64 },

    // ---- storage (503) ----
    #[error("storage cannot persist: {0}")]
    Unavailable(String),
}

impl Refusal {
    /// The stable snake_case name of the outcome (the API's error code where one exists).
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::BadRequest(_) | Refusal::TooManyNumbers { .. } => "bad_request",
            Refusal::InvalidConfig { .. } | Refusal::InvalidRelease(_) => "bad_request",
            Refusal::InvalidPlate { .. } | Refusal::NotAllowed { .. } => "invalid_plate",
            Refusal::InvalidVin(_) => "invalid_vin",
            Refusal::UnknownOffice
            | Refusal::UnknownApplication
            | Refusal::UnknownRelease
            | Refusal::UnknownNumber
            | Refusal::UnknownClass(_) => "not_found",
            Refusal::QuotaSpent => "quota_spent",
            Refusal::Exhausted => "exhausted",
            Refusal::NotAvailable => "not_available",
            Refusal::HoldExpired => "hold_expired",
            Refusal::NotHeld => "not_held",
            Refusal::AlreadyPicked => "conflict",
            Refusal::IdentityNotVerified => "identity_not_verified",
            Refusal::SelectionClosed { .. } => "selection_closed",
            Refusal::WrongState { .. } | Refusal::NumberBusy { .. } | Refusal::Conflict(_) => {
                "conflict"
            }
            Refusal::ApplicationExists { .. } => "application_exists",
            Refusal::VinAlreadyUsed => "vin_already_used",
            Refusal::Blacklisted { .. } => "blacklisted",
            Refusal::VoucherMismatch => "voucher_mismatch",
            Refusal::VehicleNotEligible(_) => "vehicle_not_eligible",
            Refusal::NoticeNotAccepted { .. } => "notice_not_accepted",
            Refusal::TooSoon { .. } => "too_soon",
            Refusal::Unavailable(_) => "unavailable",
        }
    }
}
