//! POST /v1/applications (stage 1: R4.1, R4.2) and GET /v1/applications/{id}.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use platepool_engine::{AppId, ApplicationRequest, Caller, Refusal};
use serde::Deserialize;

use super::render::application_answer;
use super::request::{answer_once, app_id, body, limit, unguarded, Gw};
use crate::auth::Citizen;
use crate::error::{ApiError, ApiResult};
use crate::idempotency::request_key;
use crate::openapi::{json_answer, json_body, Answer, Doc};
use crate::routes::answers::ApplicationAnswer;
use crate::routes::table::{Access, Route, Shed, Verb};
use crate::sms::Purpose;
use crate::Gateway;

/// The routes this file serves.
pub(crate) const ROUTES: &[Route] = &[
    Route::new(
        Verb::Post,
        "/v1/applications",
        Access::Citizen,
        |r| r.to(apply),
        Doc {
            summary: "Opens an application (stage 1, R4.2)",
            request: Some(json_body::<ApplyBody>),
            query: None,
            response: Answer::Json(json_answer::<ApplicationAnswer>),
            codes: &[201, 400, 401, 403, 404, 409, 413, 422, 429, 503],
        },
    )
    .shed(Shed::Lag),
    Route::new(
        Verb::Get,
        "/v1/applications/{id}",
        Access::Citizen,
        |r| r.to(application),
        Doc {
            summary: "One of the citizen's applications",
            request: None,
            query: None,
            response: Answer::Json(json_answer::<ApplicationAnswer>),
            codes: &[200, 401, 404, 503],
        },
    )
    .shed(Shed::Lag),
];

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ApplyBody {
    office: String,
    /// 17 characters, checked with its check digit (400 `invalid_vin`).
    vin: String,
    voucher: String,
    /// The `version` of the office's notice the citizen accepted.
    notice_version: String,
    sms_code: String,
}

/// Names the request field a stage-1 refusal is about; a refused VIN also gets the 1-based
/// `position` at fault and the `reason`, as `POST /v1/vin/check` gives them.
fn apply_error(r: Refusal, vin: &str) -> ApiError {
    let field = match &r {
        Refusal::UnknownOffice => Some("office"),
        Refusal::VoucherMismatch => Some("voucher"),
        Refusal::ApplicationExists { .. } | Refusal::VinAlreadyUsed => Some("vin"),
        _ => None,
    };
    let invalid_vin = matches!(r, Refusal::InvalidVin(_));
    let mut e = ApiError::from(r);
    if invalid_vin {
        if let Err(v) = platepool_engine::vin::check_vin(vin) {
            e = e.extra(|x| x.reason = Some(v.reason_code().to_string()));
            if let Some(p) = v.position {
                e = e.position(Some(p));
            }
        }
    }
    match field {
        Some(f) if e.field.is_none() => e.field(f),
        _ => e,
    }
}

/// An existing application named in a refusal is shown to its owner only (I7: never reveal
/// someone else's application).
async fn hide_others(gw: &Gateway, user: &str, r: Refusal) -> Refusal {
    if let Refusal::ApplicationExists { application } = &r {
        let owned = match application.parse::<AppId>() {
            Ok(id) => gw
                .engine
                .application(&id, Caller::Citizen(user))
                .await
                .is_ok(),
            Err(_) => false,
        };
        if !owned {
            return Refusal::ApplicationExists {
                application: String::new(),
            };
        }
    }
    r
}

pub(super) async fn apply(
    gw: Gw,
    req: HttpRequest,
    citizen: Citizen,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    limit(&gw, &req, &citizen)?;
    let b: ApplyBody = body(&req, payload, None).await?;
    let key = request_key(&req, &citizen.user)?;
    let now = gw.engine.now_ms();
    let work = async {
        let request = ApplicationRequest {
            office: b.office.trim().to_string(),
            user: citizen.user.clone(),
            phone: citizen.phone.clone(),
            vin: b.vin.clone(),
            voucher: b.voucher.clone(),
            notice_version: b.notice_version.clone(),
        };
        // Every rule of R4.2 first (in the API's order); only then the code, which a refusal
        // above leaves untouched.
        if let Err(r) = gw.engine.check_application(request.clone()).await {
            return Err(apply_error(
                hide_others(&gw, &citizen.user, r).await,
                &b.vin,
            ));
        }
        let code = b.sms_code.trim();
        gw.sms
            .verify(
                &citizen.phone,
                Purpose::Apply,
                None,
                code,
                false,
                gw.engine.now_ms(),
            )
            .await?;
        let id = match gw.engine.create_application(request).await {
            Ok(id) => id,
            Err(r) => {
                return Err(apply_error(
                    hide_others(&gw, &citizen.user, r).await,
                    &b.vin,
                ))
            }
        };
        if let Err(e) = gw
            .sms
            .verify(
                &citizen.phone,
                Purpose::Apply,
                None,
                code,
                true,
                gw.engine.now_ms(),
            )
            .await
        {
            tracing::warn!(application = %id, error = %e, "apply code not consumed");
        }
        let view = gw
            .engine
            .application(&id, Caller::Citizen(&citizen.user))
            .await?;
        Ok((
            StatusCode::CREATED,
            application_answer(&gw, &id, &view, gw.engine.now_ms()),
        ))
    };
    answer_once(&gw, key, now, unguarded(), work).await
}

pub(super) async fn application(
    gw: Gw,
    req: HttpRequest,
    citizen: Citizen,
) -> ApiResult<HttpResponse> {
    let id = app_id(&req)?;
    let view = gw
        .engine
        .application(&id, Caller::Citizen(&citizen.user))
        .await?;
    Ok(HttpResponse::Ok().json(application_answer(&gw, &id, &view, gw.engine.now_ms())))
}
