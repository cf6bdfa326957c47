//! GET /v1/me: the citizen, their applications and where to resume (R4.9).

use actix_web::HttpResponse;
use platepool_engine::calendar::{local_datetime, rfc3339};
use platepool_engine::AppState;
use serde_json::{json, Value};

use super::render::{app_json, state_message};
use super::request::{ms_left, Gw};
use crate::auth::Citizen;
use crate::error::ApiResult;
use crate::openapi::Doc;
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
        response: "Me",
        codes: &[200, 401, 503],
    },
)
.shed(Shed::Lag)];

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
        (Some((id, v)), _) => Some(json!({
            "application": id.to_string(), "stage": 2, "step": 3, "state": v.record.state.as_str(),
        })),
        (None, Some((id, v))) => Some(json!({
            "application": id.to_string(), "stage": 1, "step": 3, "state": v.record.state.as_str(),
            "custom_left": v.record.custom_left, "random_left": v.record.random_left,
        })),
        (None, None) => None,
    };
    let message = if let Some(until) = blacklisted {
        Some(json!({
            "code": "blacklisted",
            "text": format!(
                "您因预选号牌逾期未办理注册登记已被列入黑名单，{} 自动解除，期间不能网上选号。",
                local_datetime(until).format("%Y年%m月%d日 %H:%M")
            ),
        }))
    } else if resume.is_none() {
        apps.first()
            .and_then(|(_, v)| state_message(v.record.state).map(|t| (v.record.state, t)))
            .map(|(state, text)| json!({ "code": state.as_str(), "text": text }))
    } else {
        None
    };
    let applications: Vec<Value> = apps
        .iter()
        .map(|(id, v)| app_json(&gw, id, v, now))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "user": citizen.user,
        "blacklisted_until": blacklisted.map(rfc3339),
        "blacklisted_until_in_ms": blacklisted.map(|u| ms_left(u, now)),
        "applications": applications,
        "resume": resume,
        "message": message,
    })))
}
