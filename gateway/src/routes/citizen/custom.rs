//! POST /v1/applications/{id}/custom: a custom check of up to `custom_per_check` numbers (R4.5).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use platepool_engine::calendar::rfc3339;
use platepool_engine::plate::full_plate;
use platepool_engine::{Caller, Check};
use serde::Deserialize;
use serde_json::{json, Value};

use super::claim::after_claim;
use super::render::{claim_json, prefix_of};
use super::request::{app_id, body, limit, ms_left, quotas_of, respond, Gw};
use crate::auth::Citizen;
use crate::error::{refusal_with_field, ApiError, ApiResult};
use crate::idempotency::request_key;
use crate::openapi::{json_body, Doc};
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
        response: "ClaimResult",
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

pub(super) async fn custom(
    gw: Gw,
    req: HttpRequest,
    citizen: Citizen,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    limit(&gw, &req, &citizen)?;
    let id = app_id(&req)?;
    let b: CustomBody = body(&req, payload, None).await?;
    let key = request_key(&req, &citizen.user)?;
    let now = gw.engine.now_ms();
    let work = async {
        let caller = Caller::Citizen(&citizen.user);
        let check = gw
            .engine
            .custom_check(&id, caller, b.plates)
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
                let view = after_claim(&gw, &id, &citizen, &claim).await;
                let now = gw.engine.now_ms();
                Ok((
                    StatusCode::OK,
                    json!({
                        "claim": claim_json(&prefix, &claim, now),
                        "custom_left": view.as_ref().map(|v| v.record.custom_left),
                        "random_left": view.as_ref().map(|v| v.record.random_left),
                        "state": view.as_ref().map(|v| v.record.state.as_str()),
                    }),
                ))
            }
            Check::NoneAvailable {
                results,
                custom_left,
                next_check_at_ms,
            } => {
                let now = gw.engine.now_ms();
                let results: Vec<Value> = results
                    .iter()
                    .map(|(s, reason)| {
                        json!({
                            "serial": s.to_string(),
                            "plate": full_plate(&prefix, *s),
                            "reason": reason.as_str(),
                        })
                    })
                    .collect();
                let mut e = ApiError::new(
                    StatusCode::CONFLICT,
                    "not_available",
                    "none of the numbers is available; each one checked was debited",
                )
                .with("results", json!(results))
                .with("custom_left", json!(custom_left))
                .with("next_check_in_ms", json!(ms_left(next_check_at_ms, now)))
                .with("next_check_at", json!(rfc3339(next_check_at_ms)));
                if custom_left == 0 {
                    // Custom quota spent: say where the flow goes next (R4.5, R4.7).
                    if let Ok(v) = gw.engine.application(&id, caller).await {
                        e = e
                            .with("random_left", json!(v.record.random_left))
                            .with("state", json!(v.record.state.as_str()));
                    }
                }
                Err(e)
            }
        }
    };
    gw.idempotency
        .run_guarded(key, now, quotas_of(&gw, &id, &citizen.user), work)
        .await
        .map(respond)
}
