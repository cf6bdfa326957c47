//! GET /v1/me: the citizen, their applications and where to resume (R4.9).

use actix_web::HttpResponse;
use platepool_engine::calendar::{local_datetime, rfc3339};
use platepool_engine::AppState;
use serde::Serialize;

use super::render::{application_answer, state_message};
use super::request::Gw;
use crate::auth::Citizen;
use crate::error::ApiResult;
use crate::openapi::{json_answer, Answer, Doc};
use crate::routes::answers::{ms_left, ApplicationAnswer, ApplicationState};
use crate::routes::table::{Access, Route, Shed, Verb};

/// The routes this file serves.
pub(crate) const ROUTES: &[Route] = &[Route::new(
    Verb::Get,
    "/v1/me",
    Access::Citizen,
    |r| r.to(me),
    Doc {
        summary: "The citizen, their applications and where to resume (R4.9)",
        request: None,
        query: None,
        response: Answer::Json(json_answer::<MeAnswer>),
        codes: &[200, 401, 503],
    },
)
.shed(Shed::Lag)];

/// `GET /v1/me`: the citizen, their applications (newest first) and where to resume.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Me)]
struct MeAnswer {
    user: String,
    /// Until when the citizen may not select online (R4.11), if blacklisted.
    #[schema(format = DateTime)]
    blacklisted_until: Option<String>,
    blacklisted_until_in_ms: Option<u64>,
    applications: Vec<ApplicationAnswer>,
    resume: Option<Resume>,
    /// Why there is nothing to resume, in words.
    message: Option<MeMessage>,
}

/// Where the flow resumes (R4.9): a valid pre-selection (stage 2 step 3) first, then a live
/// application that may still select (stage 1 step 3, with its quotas).
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Resume {
    application: String,
    stage: u8,
    step: u8,
    state: ApplicationState,
    #[serde(skip_serializing_if = "Option::is_none")]
    custom_left: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    random_left: Option<u32>,
}

/// A message to show: `blacklisted`, or the state that ended the newest application.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct MeMessage {
    code: &'static str,
    text: String,
}

pub(super) async fn me(gw: Gw, citizen: Citizen) -> ApiResult<HttpResponse> {
    let now = gw.engine.now_ms();
    let mut apps = gw.engine.user_applications(&citizen.user).await?;
    apps.sort_by(|a, b| {
        b.1.record
            .created_at_ms
            .cmp(&a.1.record.created_at_ms)
            .then(b.0.cmp(&a.0))
    });
    let blacklisted = gw.engine.blacklisted_until(&citizen.user);
    // A valid pre-selection first (stage 2 step 3), then a live application that may still
    // select (stage 1 step 3); the newest of each kind.
    let claimed = apps.iter().find(|(_, v)| {
        v.record.state == AppState::Claimed
            && v.record
                .claim
                .as_ref()
                .is_some_and(|c| c.register_by_ms > now)
    });
    let selecting = apps
        .iter()
        .find(|(_, v)| v.record.state.selecting())
        .filter(|_| blacklisted.is_none());
    let resume = match (claimed, selecting) {
        (Some((id, v)), _) => Some(Resume {
            application: id.to_string(),
            stage: 2,
            step: 3,
            state: v.record.state.into(),
            custom_left: None,
            random_left: None,
        }),
        (None, Some((id, v))) => Some(Resume {
            application: id.to_string(),
            stage: 1,
            step: 3,
            state: v.record.state.into(),
            custom_left: Some(v.record.custom_left),
            random_left: Some(v.record.random_left),
        }),
        (None, None) => None,
    };
    let message = if let Some(until) = blacklisted {
        Some(MeMessage {
            code: "blacklisted",
            text: format!(
                "您因预选号牌逾期未办理注册登记已被列入黑名单，{} 自动解除，期间不能网上选号。",
                local_datetime(until).format("%Y年%m月%d日 %H:%M")
            ),
        })
    } else if resume.is_none() {
        apps.first().and_then(|(_, v)| {
            state_message(v.record.state).map(|text| MeMessage {
                code: v.record.state.as_str(),
                text: text.to_string(),
            })
        })
    } else {
        None
    };
    let applications = apps
        .iter()
        .map(|(id, v)| application_answer(&gw, id, v, now))
        .collect();
    Ok(HttpResponse::Ok().json(MeAnswer {
        user: citizen.user.clone(),
        blacklisted_until: blacklisted.map(rfc3339),
        blacklisted_until_in_ms: blacklisted.map(|u| ms_left(u, now)),
        applications,
        resume,
        message,
    }))
}
