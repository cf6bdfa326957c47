//! POST /v1/applications/{id}/identity: identity verified with an SMS code (R4.4).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use platepool_engine::calendar::rfc3339;
use platepool_engine::Caller;
use serde::Deserialize;
use serde_json::json;

use super::render::app_phone;
use super::request::{app_id, body, limit, ms_left, respond, Gw};
use crate::auth::Citizen;
use crate::error::ApiResult;
use crate::idempotency::request_key;
use crate::openapi::{json_body, Doc};
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
        response: "Verified",
        codes: &[200, 400, 401, 403, 404, 409, 413, 422, 429, 503],
    },
)
.shed(Shed::Office)];

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct IdentityBody {
    sms_code: String,
}

pub(super) async fn identity(
    gw: Gw,
    req: HttpRequest,
    citizen: Citizen,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    limit(&gw, &req, &citizen)?;
    let id = app_id(&req)?;
    let b: IdentityBody = body(&req, payload, None).await?;
    let key = request_key(&req, &citizen.user)?;
    let now = gw.engine.now_ms();
    let work = async {
        let caller = Caller::Citizen(&citizen.user);
        let view = gw.engine.application(&id, caller).await?;
        let phone = app_phone(&view, &citizen);
        let app = id.to_string();
        let code = b.sms_code.trim();
        gw.sms
            .verify(
                &phone,
                Purpose::Identity,
                Some(&app),
                code,
                false,
                gw.engine.now_ms(),
            )
            .await?;
        let until = gw.engine.verify_identity(&id, caller).await?;
        if let Err(e) = gw
            .sms
            .verify(
                &phone,
                Purpose::Identity,
                Some(&app),
                code,
                true,
                gw.engine.now_ms(),
            )
            .await
        {
            tracing::warn!(application = %id, error = %e, "identity code not consumed");
        }
        let now = gw.engine.now_ms();
        Ok((
            StatusCode::OK,
            json!({
                "application": app,
                "verified_until": rfc3339(until),
                "verified_until_in_ms": ms_left(until, now),
            }),
        ))
    };
    gw.idempotency.run(key, now, work).await.map(respond)
}
