//! POST /v1/practice: a practice application (模拟选号, R4.13).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use platepool_engine::{Caller, Energy, Refusal};
use serde::Deserialize;

use super::render::application_answer;
use super::request::{answer_once, body, limit, unguarded, Gw};
use crate::auth::Citizen;
use crate::error::{ApiError, ApiResult};
use crate::idempotency::request_key;
use crate::openapi::{json_answer, json_body, Answer, Doc};
use crate::routes::answers::ApplicationAnswer;
use crate::routes::table::{Access, Route, Shed, Verb};

/// The routes this file serves.
pub(crate) const ROUTES: &[Route] = &[Route::new(
    Verb::Post,
    "/v1/practice",
    Access::Citizen,
    |r| r.to(practice),
    Doc {
        summary: "Opens a practice application (模拟选号, R4.13)",
        request: Some(json_body::<PracticeBody>),
        query: None,
        response: Answer::Json(json_answer::<ApplicationAnswer>),
        codes: &[201, 400, 401, 404, 409, 413, 429, 503],
    },
)
.shed(Shed::Lag)];

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PracticeBody {
    office: String,
    class: String,
    #[serde(default)]
    #[schema(pattern = "^(fuel|bev|phev|fcev)$")]
    energy: Option<String>,
}

pub(super) async fn practice(
    gw: Gw,
    req: HttpRequest,
    citizen: Citizen,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    limit(&gw, &req, &citizen)?;
    let b: PracticeBody = body(&req, payload, None).await?;
    let energy = match b.energy.as_deref() {
        Some(text) => Energy::parse(text).ok_or_else(|| {
            ApiError::bad_request("energy must be one of fuel, bev, phev, fcev").field("energy")
        })?,
        // The first kind of vehicle the class serves (fuel for small, bev for new energy).
        None => gw
            .engine
            .catalog()
            .iter()
            .find(|c| c.name == b.class)
            .and_then(|c| c.groups.first())
            .and_then(|g| g.energies.first())
            .copied()
            .unwrap_or(Energy::Fuel),
    };
    let key = request_key(&req, &citizen.user)?;
    let now = gw.engine.now_ms();
    let work = async {
        let id = gw
            .engine
            .create_practice(b.office.trim(), &citizen.user, &b.class, energy)
            .await
            .map_err(|r| {
                let field = match &r {
                    Refusal::UnknownOffice => "office",
                    Refusal::VehicleNotEligible(_) | Refusal::UnknownClass(_) => "class",
                    _ => "",
                };
                let e = ApiError::from(r);
                if field.is_empty() {
                    e
                } else {
                    e.field(field)
                }
            })?;
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
