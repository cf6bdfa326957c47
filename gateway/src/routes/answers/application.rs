//! An application as its citizen sees it (`GET /v1/applications/{id}`, `GET /v1/me`, the
//! answers that open one) and as operators see it (unmasked, the look-up and the calls that
//! change one).

use platepool_engine::calendar::rfc3339;
use platepool_engine::{AppId, AppState, AppView, HoldView};
use serde::Serialize;

use super::selection::{ClaimAnswer, HoldAnswer};

/// Where an application stands (API.md: `state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApplicationState {
    /// Stage 1 done.
    Confirmed,
    Selecting,
    Claimed,
    Exhausted,
    Issued,
    Lapsed,
    Voided,
}

impl From<AppState> for ApplicationState {
    fn from(state: AppState) -> ApplicationState {
        match state {
            AppState::Confirmed => ApplicationState::Confirmed,
            AppState::Selecting => ApplicationState::Selecting,
            AppState::Claimed => ApplicationState::Claimed,
            AppState::Exhausted => ApplicationState::Exhausted,
            AppState::Issued => ApplicationState::Issued,
            AppState::Lapsed => ApplicationState::Lapsed,
            AppState::Voided => ApplicationState::Voided,
        }
    }
}

/// The citizen's view: the VIN masked, countdowns, where the flow stands.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = Application)]
pub struct ApplicationAnswer {
    pub id: String,
    pub office: String,
    pub class: String,
    pub energy: &'static str,
    /// Masked (`LSV**********1234`); null for practice (no vehicle).
    pub vin: Option<String>,
    pub state: ApplicationState,
    pub practice: bool,
    pub custom_left: u32,
    pub random_left: u32,
    pub batch: Option<HoldAnswer>,
    pub candidates: Option<HoldAnswer>,
    pub claim: Option<ClaimAnswer>,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub notice_version: String,
    pub identity_verified: bool,
    #[schema(format = DateTime)]
    pub verified_until: Option<String>,
    pub verified_until_in_ms: Option<u64>,
    /// When the next custom check may be made; null before the interval has a start.
    #[schema(format = DateTime)]
    pub next_check_at: Option<String>,
    pub next_check_in_ms: Option<u64>,
    #[schema(format = DateTime)]
    pub closed_at: Option<String>,
    /// Where to resume: stage 1 or 2, null when the flow is over.
    pub stage: Option<u8>,
    /// Step 1 to 3 of the stage.
    pub step: Option<u8>,
    /// Why the flow is over, in words.
    pub message: Option<&'static str>,
}

/// The operator's view: everything, the VIN and phone unmasked.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OperatorApplication {
    pub id: String,
    pub office: String,
    pub class: String,
    pub energy: &'static str,
    pub vin: String,
    pub user: String,
    pub phone: String,
    pub state: ApplicationState,
    pub practice: bool,
    pub notice_version: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub custom_left: u32,
    pub random_left: u32,
    #[schema(format = DateTime)]
    pub verified_until: Option<String>,
    pub batch: Option<HoldAnswer>,
    pub candidates: Option<HoldAnswer>,
    pub claim: Option<ClaimAnswer>,
    #[schema(format = DateTime)]
    pub closed_at: Option<String>,
}

impl OperatorApplication {
    pub fn new(id: &AppId, view: &AppView, prefix: &str, now_ms: u64) -> OperatorApplication {
        let r = &view.record;
        let hold = |h: &Option<HoldView>| h.as_ref().map(|h| HoldAnswer::new(prefix, h, now_ms));
        OperatorApplication {
            id: id.to_string(),
            office: id.office.clone(),
            class: r.class.clone(),
            energy: r.energy.as_str(),
            vin: r.vin.clone(),
            user: r.user.clone(),
            phone: r.phone.clone(),
            state: r.state.into(),
            practice: view.practice,
            notice_version: r.notice_version.clone(),
            created_at: rfc3339(r.created_at_ms),
            custom_left: r.custom_left,
            random_left: r.random_left,
            verified_until: r.verified_until_ms.map(rfc3339),
            batch: hold(&view.batch),
            candidates: hold(&view.candidates),
            claim: r.claim.as_ref().map(|c| ClaimAnswer::new(prefix, c)),
            closed_at: r.closed_at_ms.map(rfc3339),
        }
    }
}
