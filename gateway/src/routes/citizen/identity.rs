//! POST /v1/applications/{id}/identity: identity verified with an SMS code (R4.4).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use platepool_engine::calendar::rfc3339;
use platepool_engine::Caller;
use serde::{Deserialize, Serialize};

use super::render::app_phone;
use super::request::{answer_once, unguarded, AppCall, Gw};
use crate::auth::Citizen;
use crate::error::ApiResult;
use crate::openapi::{json_answer, json_body, Answer, Doc};
use crate::routes::answers::ms_left;
use crate::routes::table::{Access, Route, Shed, Verb};
use crate::sms::Purpose;

/// The routes this file serves.
pub(crate) const ROUTES: &[Route] = &[Route::new(
    Verb::Post,
    "/v1/applications/{id}/identity",
    Access::Citizen,
    |r| r.to(identity),
    Doc {
        summary: "Verifies identity with an SMS code (R4.4)",
        request: Some(json_body::<IdentityBody>),
        query: None,
        response: Answer::Json(json_answer::<VerifiedAnswer>),
        codes: &[200, 400, 401, 403, 404, 409, 413, 422, 429, 503],
    },
)
.shed(Shed::Office)];

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct IdentityBody {
    sms_code: String,
}

/// Identity verified: until when (R4.4: 30 minutes).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Verified)]
struct VerifiedAnswer {
    application: String,
    #[schema(format = DateTime)]
    verified_until: String,
    verified_until_in_ms: u64,
}

pub(super) async fn identity(
    gw: Gw,
    req: HttpRequest,
    citizen: Citizen,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let call: AppCall<IdentityBody> = AppCall::read(&gw, &req, &citizen, payload, None).await?;
    let id = &call.id;
    let work = async {
        let caller = Caller::Citizen(&citizen.user);
        let view = gw.engine.application(id, caller).await?;
        let phone = app_phone(&view, &citizen);
        let app = id.to_string();
        let code = call.body.sms_code.trim();
        let verify = |consume| {
            gw.sms.verify(
                &phone,
                Purpose::Identity,
                Some(&app),
                code,
                consume,
                gw.engine.now_ms(),
            )
        };
        verify(false).await?;
        let until = gw.engine.verify_identity(id, caller).await?;
        if let Err(e) = verify(true).await {
            tracing::warn!(application = %id, error = %e, "identity code not consumed");
        }
        let now = gw.engine.now_ms();
        Ok((
            StatusCode::OK,
            VerifiedAnswer {
                verified_until: rfc3339(until),
                verified_until_in_ms: ms_left(until, now),
                application: app.clone(),
            },
        ))
    };
    answer_once(&gw, call.key.clone(), call.now_ms, unguarded(), work).await
}
