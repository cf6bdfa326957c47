//! PUT /v1/admin/offices/{office}: creates or reconfigures an office.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use platepool_engine::OfficeConfig;

use crate::auth::Operator;
use crate::error::ApiResult;
use crate::extract::ApiJson;
use crate::openapi::{json_answer, json_body, Answer, Doc};
use crate::routes::answers::{OfficeDocument, OfficeSettings};
use crate::routes::table::{Access, Route, Verb};
use crate::Gateway;

/// The routes this file serves.
pub(crate) const ROUTES: &[Route] = &[Route::new(
    Verb::Put,
    "/v1/admin/offices/{office}",
    Access::Operator,
    |r| r.to(put_office),
    Doc {
        summary: "Creates (201) or reconfigures (200) an office",
        request: Some(json_body::<OfficeSettings>),
        query: None,
        response: Answer::Json(json_answer::<OfficeDocument>),
        codes: &[200, 201, 400, 401, 403, 413, 503],
    },
)];

pub(super) async fn put_office(
    gw: web::Data<Gateway>,
    op: Operator,
    path: web::Path<String>,
    body: ApiJson<OfficeConfig>,
) -> ApiResult<HttpResponse> {
    let id = path.into_inner();
    let created = gw.engine.put_office(&id, body.0, &op.who).await?;
    let config = gw.engine.office_config(&id)?;
    tracing::info!(office = %id, who = %op.who, created, "office configured");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(HttpResponse::build(status).json(OfficeDocument::new(&gw.engine, &id, &config)?))
}
