//! What the pool asks the store to persist: the durable part of its state, as records.
//!
//! A step of the pool returns records; the store writes them in one atomic batch with the records
//! of every other step since the last flush (group commit), and only then are the steps' replies
//! sent. Holds are never persisted: after a restart they are back in the pool (I9).

use serde::{Deserialize, Serialize};

use crate::class::Energy;
use crate::config::OfficeConfig;
use crate::pattern::Pattern;
use crate::plate::Serial;

/// An application's life (API `state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppState {
    /// Stage 1 done: the application exists, nothing selected yet.
    Confirmed,
    /// A check or draw has been made.
    Selecting,
    /// A number is pre-selected and the deadline has not passed.
    Claimed,
    /// Both quotas spent and no hold left (R4.7).
    Exhausted,
    /// Registered at the office (R4.10).
    Issued,
    /// The deadline passed without registration (R4.11).
    Lapsed,
    /// Voided by the office at the owner's request (R4.11).
    Voided,
}

impl AppState {
    pub fn as_str(self) -> &'static str {
        match self {
            AppState::Confirmed => "confirmed",
            AppState::Selecting => "selecting",
            AppState::Claimed => "claimed",
            AppState::Exhausted => "exhausted",
            AppState::Issued => "issued",
            AppState::Lapsed => "lapsed",
            AppState::Voided => "voided",
        }
    }

    /// May the citizen still select?
    pub fn selecting(self) -> bool {
        matches!(self, AppState::Confirmed | AppState::Selecting)
    }

    /// Does the application still occupy its VIN (I7)? Voided ones free it.
    pub fn live(self) -> bool {
        matches!(
            self,
            AppState::Confirmed | AppState::Selecting | AppState::Claimed
        )
    }

    /// Has the VIN succeeded online (R4.12)?
    pub fn used_vin(self) -> bool {
        matches!(
            self,
            AppState::Claimed | AppState::Issued | AppState::Lapsed | AppState::Exhausted
        )
    }
}

/// A pre-selection (R4.8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub serial: Serial,
    pub claimed_at_ms: u64,
    /// End of the last working day on which the car may be registered.
    pub register_by_ms: u64,
    /// The printable voucher's serial and the code the office checks it with.
    pub voucher_serial: String,
    pub voucher_code: String,
    /// Practice mode: a void number that was never taken.
    #[serde(default)]
    pub void: bool,
}

/// The durable part of an application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRecord {
    pub seq: u64,
    pub user: String,
    pub phone: String,
    pub vin: String,
    pub class: String,
    pub energy: Energy,
    pub notice_version: String,
    pub created_at_ms: u64,
    pub custom_left: u32,
    pub random_left: u32,
    /// When the last custom check that passed validation and the interval was made.
    pub last_check_at_ms: Option<u64>,
    /// When the last random draw that passed validation and the interval was made, whether or
    /// not it found numbers (R4.14).
    #[serde(default)]
    pub last_draw_at_ms: Option<u64>,
    /// When identity was last verified (R4.4), and until when it holds.
    pub verified_at_ms: Option<u64>,
    pub verified_until_ms: Option<u64>,
    pub state: AppState,
    pub claim: Option<Claim>,
    /// When the state last changed to a final one (issued, lapsed, voided, exhausted).
    pub closed_at_ms: Option<u64>,
}

/// The fields of an application that selection steps change. A draw, a failed custom check, an
/// identity verification and exhaustion write only these ([`Record::Progress`]), not the whole
/// record with its strings: they are the hottest writes of an opening.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppProgress {
    pub custom_left: u32,
    pub random_left: u32,
    pub last_check_at_ms: Option<u64>,
    pub verified_at_ms: Option<u64>,
    pub verified_until_ms: Option<u64>,
    pub state: AppState,
    pub closed_at_ms: Option<u64>,
    /// Last: progress written before draws were paced is read as [`AppProgressV1`].
    pub last_draw_at_ms: Option<u64>,
}

/// [`AppProgress`] as it was written before draws were paced (R4.14).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct AppProgressV1 {
    pub custom_left: u32,
    pub random_left: u32,
    pub last_check_at_ms: Option<u64>,
    pub verified_at_ms: Option<u64>,
    pub verified_until_ms: Option<u64>,
    pub state: AppState,
    pub closed_at_ms: Option<u64>,
}

impl From<AppProgressV1> for AppProgress {
    fn from(p: AppProgressV1) -> AppProgress {
        AppProgress {
            custom_left: p.custom_left,
            random_left: p.random_left,
            last_check_at_ms: p.last_check_at_ms,
            verified_at_ms: p.verified_at_ms,
            verified_until_ms: p.verified_until_ms,
            state: p.state,
            closed_at_ms: p.closed_at_ms,
            last_draw_at_ms: None,
        }
    }
}

impl AppRecord {
    pub fn progress(&self) -> AppProgress {
        AppProgress {
            custom_left: self.custom_left,
            random_left: self.random_left,
            last_check_at_ms: self.last_check_at_ms,
            verified_at_ms: self.verified_at_ms,
            verified_until_ms: self.verified_until_ms,
            state: self.state,
            closed_at_ms: self.closed_at_ms,
            last_draw_at_ms: self.last_draw_at_ms,
        }
    }

    pub fn apply_progress(&mut self, p: &AppProgress) {
        self.custom_left = p.custom_left;
        self.random_left = p.random_left;
        self.last_check_at_ms = p.last_check_at_ms;
        self.verified_at_ms = p.verified_at_ms;
        self.verified_until_ms = p.verified_until_ms;
        self.state = p.state;
        self.closed_at_ms = p.closed_at_ms;
        self.last_draw_at_ms = p.last_draw_at_ms;
    }
}

/// How a release names its numbers (SPEC R2.4, R5.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseSource {
    Patterns(Vec<Pattern>),
    Serials(Vec<Serial>),
}

/// A release, stored as its specification, not number by number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRecord {
    pub id: u32,
    pub class: String,
    pub label: String,
    pub opens_at_ms: u64,
    /// Custom checks may take its numbers from this instant; before it, only draws may.
    pub custom_from_ms: u64,
    pub source: ReleaseSource,
    pub created_at_ms: u64,
    /// Withdrawn as a whole; numbers coming back from holders leave the pool.
    pub withdrawn: bool,
}

/// A number whose state differs from what its release says (available once open).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NumberState {
    Claimed { app: u64 },
    Issued { app: u64 },
    Withdrawn,
}

/// One line of the append-only audit trail (R5.6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at_ms: u64,
    /// `user:<id>`, `operator:<id>` or `system`.
    pub who: String,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// One durable change, as the store writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Record {
    Config(Box<OfficeConfig>),
    Release(Box<ReleaseRecord>),
    /// The whole application (creation, claim, registration, lapse, void).
    App(Box<AppRecord>),
    /// Only the selection fields of an application already stored; a later [`Record::App`] of
    /// the same application replaces it.
    Progress {
        seq: u64,
        progress: AppProgress,
    },
    /// `None`: the number is back to what its release says.
    Number {
        class: String,
        serial: Serial,
        state: Option<NumberState>,
    },
    Audit(Box<AuditEntry>),
}

#[cfg(test)]
impl AppRecord {
    /// A confirmed application of a small fuel car, nothing drawn or claimed: the tests' base,
    /// changed with struct-update syntax.
    pub(crate) fn sample(seq: u64) -> AppRecord {
        AppRecord {
            seq,
            user: format!("u{seq}"),
            phone: "13800000000".into(),
            vin: format!("LSVAU2180N21{seq:05}"),
            class: "small".into(),
            energy: Energy::Fuel,
            notice_version: "1".into(),
            created_at_ms: 1,
            custom_left: 5,
            random_left: 3,
            last_check_at_ms: None,
            last_draw_at_ms: None,
            verified_at_ms: None,
            verified_until_ms: None,
            state: AppState::Confirmed,
            claim: None,
            closed_at_ms: None,
        }
    }
}
