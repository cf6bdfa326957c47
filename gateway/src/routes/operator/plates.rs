//! DELETE /v1/admin/offices/{office}/plates/{serial}: withdraws one available number.

use actix_web::{web, HttpResponse};
use platepool_engine::plate::full_plate;
use serde::Serialize;

use super::shared::parse_serial;
use crate::auth::Operator;
use crate::error::ApiResult;
use crate::openapi::{json_answer, Answer, Doc};
use crate::routes::table::{Access, Route, Verb};
use crate::Gateway;

/// The routes this file serves.
pub(crate) const ROUTES: &[Route] = &[Route::new(
    Verb::Delete,
    "/v1/admin/offices/{office}/plates/{serial}",
    Access::Operator,
    |r| r.to(withdraw_plate),
    Doc {
        summary: "Withdraws one available number",
        request: None,
        query: None,
        response: Answer::Json(json_answer::<PlateWithdrawn>),
        codes: &[200, 400, 401, 403, 404, 409, 503],
    },
)];

/// The number withdrawn.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct PlateWithdrawn {
    serial: String,
    plate: String,
    withdrawn: u64,
}

pub(super) async fn withdraw_plate(
    gw: web::Data<Gateway>,
    op: Operator,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (office, serial) = path.into_inner();
    let config = gw.engine.office_config(&office)?;
    let parsed = parse_serial(&serial, &config.prefix, "serial")?;
    gw.engine
        .withdraw_number(&office, &parsed.to_string(), &op.who)
        .await?;
    Ok(HttpResponse::Ok().json(PlateWithdrawn {
        serial: parsed.to_string(),
        plate: full_plate(&config.prefix, parsed),
        withdrawn: 1,
    }))
}
