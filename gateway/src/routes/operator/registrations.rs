//! POST /v1/admin/registrations: a pre-selected number registered (R4.10).

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::shared::{application_answer, parse_serial, with_serial_field};
use crate::auth::Operator;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::openapi::{json_answer, json_body, Answer, Doc};
use crate::routes::answers::OperatorApplication;
use crate::routes::table::{Access, Route, Verb};
use crate::Gateway;

/// The routes this file serves.
pub(crate) const ROUTES: &[Route] = &[Route::new(
    Verb::Post,
    "/v1/admin/registrations",
    Access::Operator,
    |r| r.to(register),
    Doc {
        summary: "Confirms the registration of a pre-selected number (R4.10)",
        request: Some(json_body::<RegistrationBody>),
        query: None,
        response: Answer::Json(json_answer::<OperatorApplication>),
        codes: &[200, 400, 401, 403, 404, 409, 413, 503],
    },
)];

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RegistrationBody {
    office: String,
    serial: String,
}

pub(super) async fn register(
    gw: web::Data<Gateway>,
    op: Operator,
    body: ApiJson<RegistrationBody>,
) -> ApiResult<HttpResponse> {
    let body = body.0;
    op.require_office(&body.office)?;
    let config = gw
        .engine
        .office_config(&body.office)
        .map_err(|e| ApiError::from(e).field("office"))?;
    let serial = parse_serial(&body.serial, &config.prefix, "serial")?;
    let id = gw
        .engine
        .register(&body.office, &serial.to_string(), &op.who)
        .await
        .map_err(|e| with_serial_field(e, "serial"))?;
    tracing::info!(office = %body.office, who = %op.who, application = %id, serial = %serial, "registered");
    Ok(HttpResponse::Ok().json(application_answer(&gw.engine, &id).await?))
}
