//! POST /v1/applications/{id}/custom: a custom check of up to `custom_per_check` numbers (R4.5).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use platepool_engine::calendar::rfc3339;
use platepool_engine::outcome::Unavailable;
use platepool_engine::plate::full_plate;
use platepool_engine::{Caller, Check};
use serde::{Deserialize, Serialize};

use super::claim::after_claim;
use super::render::prefix_of;
use super::request::{answer_once, quotas_of, AppCall, Gw};
use crate::auth::Citizen;
use crate::error::{refusal_with_field, ApiError, ApiResult, CheckReason, CheckResult};
use crate::openapi::{json_answer, json_body, Answer, Doc};
use crate::routes::answers::{ms_left, ApplicationState, ClaimAnswer};
use crate::routes::table::{Access, Route, Shed, Verb};

/// The routes this file serves.
pub(crate) const ROUTES: &[Route] = &[Route::new(
    Verb::Post,
    "/v1/applications/{id}/custom",
    Access::Citizen,
    |r| r.to(custom),
    Doc {
        summary: "A custom check of 1 to custom_per_check numbers (R4.5)",
        request: Some(json_body::<CustomBody>),
        query: None,
        response: Answer::Json(json_answer::<CustomClaimAnswer>),
        codes: &[200, 400, 401, 403, 404, 409, 413, 429, 503],
    },
)
.shed(Shed::Office)];

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CustomBody {
    /// Serials, 1 to the office's `custom_per_check` (more: 400 `bad_request`).
    #[schema(min_items = 1)]
    plates: Vec<String>,
}

/// A custom check that took a number: the claim and the application after it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = CustomClaim)]
pub(super) struct CustomClaimAnswer {
    claim: ClaimAnswer,
    custom_left: Option<u32>,
    random_left: Option<u32>,
    state: Option<ApplicationState>,
}

pub(super) async fn custom(
    gw: Gw,
    req: HttpRequest,
    citizen: Citizen,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let AppCall {
        id,
        body: CustomBody { plates },
        key,
        now_ms,
    } = AppCall::read(&gw, &req, &citizen, payload, None).await?;
    let id = &id;
    let work = async {
        let caller = Caller::Citizen(&citizen.user);
        let check = gw
            .engine
            .custom_check(id, caller, plates)
            .await
            .map_err(|r| {
                let e = refusal_with_field(r, "plates");
                if e.code == "bad_request" && e.field.is_none() {
                    e.field("plates")
                } else {
                    e
                }
            })?;
        let prefix = prefix_of(&gw, &id.office);
        match check {
            Check::Claimed(claim) => {
                let view = after_claim(&gw, id, &citizen, &claim).await;
                let now = gw.engine.now_ms();
                Ok((
                    StatusCode::OK,
                    CustomClaimAnswer {
                        claim: ClaimAnswer::for_citizen(&prefix, &claim, now),
                        custom_left: view.as_ref().map(|v| v.record.custom_left),
                        random_left: view.as_ref().map(|v| v.record.random_left),
                        state: view.as_ref().map(|v| v.record.state.into()),
                    },
                ))
            }
            Check::NoneAvailable {
                results,
                custom_left,
                next_check_at_ms,
            } => {
                let now = gw.engine.now_ms();
                let results = results
                    .iter()
                    .map(|(s, reason)| CheckResult {
                        serial: s.to_string(),
                        plate: full_plate(&prefix, *s),
                        reason: match reason {
                            Unavailable::Taken => CheckReason::Taken,
                            Unavailable::Held => CheckReason::Held,
                            Unavailable::NotInPool => CheckReason::NotInPool,
                        },
                    })
                    .collect();
                let mut e = ApiError::new(
                    StatusCode::CONFLICT,
                    "not_available",
                    "none of the numbers is available; each one checked was debited",
                )
                .extra(|x| {
                    x.results = Some(results);
                    x.custom_left = Some(custom_left);
                    x.next_check_in_ms = Some(ms_left(next_check_at_ms, now));
                    x.next_check_at = Some(rfc3339(next_check_at_ms));
                });
                if custom_left == 0 {
                    // Custom quota spent: say where the flow goes next (R4.5, R4.7).
                    if let Ok(v) = gw.engine.application(id, caller).await {
                        e = e.extra(|x| {
                            x.random_left = Some(v.record.random_left);
                            x.state = Some(v.record.state.as_str().to_string());
                        });
                    }
                }
                Err(e)
            }
        }
    };
    let state = quotas_of(&gw, id, &citizen.user);
    answer_once(&gw, key, now_ms, state, work).await
}
