//! POST /v1/admin/offices/{office}/claims/{serial}/void: a live pre-selection voided (R4.11).

use actix_web::{web, HttpResponse};

use super::shared::{
    application_answer, parse_serial, required_text, with_serial_field, ReasonBody, REASON_LEN_MAX,
};
use crate::auth::Operator;
use crate::error::ApiResult;
use crate::extract::ApiJson;
use crate::openapi::{json_answer, json_body, Answer, Doc};
use crate::routes::answers::OperatorApplication;
use crate::routes::table::{Access, Route, Verb};
use crate::Gateway;

/// The routes this file serves.
pub(crate) const ROUTES: &[Route] = &[Route::new(
    Verb::Post,
    "/v1/admin/offices/{office}/claims/{serial}/void",
    Access::Operator,
    |r| r.to(void),
    Doc {
        summary: "Voids a live pre-selection at the owner's request (R4.11)",
        request: Some(json_body::<ReasonBody>),
        query: None,
        response: Answer::Json(json_answer::<OperatorApplication>),
        codes: &[200, 400, 401, 403, 404, 409, 413, 503],
    },
)];

pub(super) async fn void(
    gw: web::Data<Gateway>,
    op: Operator,
    path: web::Path<(String, String)>,
    body: ApiJson<ReasonBody>,
) -> ApiResult<HttpResponse> {
    let (office, serial) = path.into_inner();
    let config = gw.engine.office_config(&office)?;
    let serial = parse_serial(&serial, &config.prefix, "serial")?;
    let reason = required_text(Some(body.0.reason), "reason", REASON_LEN_MAX)?;
    let id = gw
        .engine
        .void(&office, &serial.to_string(), &reason, &op.who)
        .await
        .map_err(|e| with_serial_field(e, "serial"))?;
    tracing::info!(office = %office, who = %op.who, application = %id, serial = %serial, "claim voided");
    Ok(HttpResponse::Ok().json(application_answer(&gw.engine, &id).await?))
}
