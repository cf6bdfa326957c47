//! POST /v1/sms: an SMS code for applying or for identity.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use platepool_engine::{AppId, AppState, Caller, Refusal};
use serde::Deserialize;

use super::render::app_phone;
use super::request::{answer_once, body, limit, unguarded, Gw};
use crate::auth::Citizen;
use crate::error::{ApiError, ApiResult};
use crate::idempotency::request_key;
use crate::openapi::{json_answer, json_body, Answer, Doc};
use crate::routes::answers::SmsSent;
use crate::routes::table::{Access, Route, Shed, Verb};
use crate::sms::Purpose;
use crate::Gateway;

/// The routes this file serves.
pub(crate) const ROUTES: &[Route] = &[Route::new(
    Verb::Post,
    "/v1/sms",
    Access::Citizen,
    |r| r.to(send_sms),
    Doc {
        summary: "Sends an SMS code for applying or for identity",
        request: Some(json_body::<SmsBody>),
        query: None,
        response: Answer::Json(json_answer::<SmsSent>),
        codes: &[200, 400, 401, 403, 404, 409, 413, 429, 503],
    },
)
.shed(Shed::Lag)];

#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum CodePurpose {
    Apply,
    Identity,
}

/// `application` (an application id) is required with `purpose: "identity"`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SmsBody {
    purpose: CodePurpose,
    #[serde(default)]
    application: Option<String>,
}

fn masked_phone(phone: &str) -> String {
    let n = phone.chars().count();
    phone
        .chars()
        .enumerate()
        .map(|(i, c)| if i >= 3 && i + 4 < n { '*' } else { c })
        .collect()
}

/// A retry with the same `Idempotency-Key` gets the first answer (its `sent_at`) and sends
/// nothing; a 429 or 503 is not kept, so a keyed retry after it sends for real.
pub(super) async fn send_sms(
    gw: Gw,
    req: HttpRequest,
    citizen: Citizen,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    limit(&gw, &req, &citizen)?;
    let b: SmsBody = body(&req, payload, None).await?;
    let key = request_key(&req, &citizen.user)?;
    let now = gw.engine.now_ms();
    let work = async {
        let sent = sms_work(&gw, &citizen, b, now).await?;
        Ok((StatusCode::OK, sent))
    };
    answer_once(&gw, key, now, unguarded(), work).await
}

/// Checks what a code is for and sends it: the work `send_sms` runs once per key.
async fn sms_work(gw: &Gateway, citizen: &Citizen, b: SmsBody, now: u64) -> ApiResult<SmsSent> {
    let (phone, purpose, application, delay) = match b.purpose {
        CodePurpose::Apply => (citizen.phone.clone(), Purpose::Apply, None, 0),
        CodePurpose::Identity => {
            let text = b.application.as_deref().ok_or_else(|| {
                ApiError::bad_request(
                    "an identity code is sent for an application: give `application`",
                )
                .field("application")
            })?;
            let id: AppId = text
                .parse()
                .map_err(|_| ApiError::from(Refusal::UnknownApplication).field("application"))?;
            let view = gw
                .engine
                .application(&id, Caller::Citizen(&citizen.user))
                .await
                .map_err(|r| ApiError::from(r).field("application"))?;
            if !view.practice {
                if let Some(until_ms) = gw.engine.blacklisted_until(&citizen.user) {
                    return Err(Refusal::Blacklisted { until_ms }.into());
                }
            }
            if !view.record.state.selecting() {
                let refusal = match view.record.state {
                    AppState::Exhausted => Refusal::Exhausted,
                    other => Refusal::WrongState {
                        state: other.as_str(),
                    },
                };
                return Err(refusal.into());
            }
            let delay = gw
                .engine
                .office_config(&id.office)?
                .rules
                .sms_confirm_delay_ms;
            (
                app_phone(&view, citizen),
                Purpose::Identity,
                Some(id.to_string()),
                delay,
            )
        }
    };
    let sent = gw
        .sms
        .send_code(&phone, purpose, application.clone(), delay, now)
        .await?;
    Ok(SmsSent {
        application: Some(application),
        phone: Some(masked_phone(&phone)),
        ..SmsSent::new(sent, purpose, now)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_are_masked() {
        assert_eq!(masked_phone("13800138000"), "138****8000");
    }
}
