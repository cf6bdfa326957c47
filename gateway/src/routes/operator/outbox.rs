//! GET /v1/admin/sms/outbox: messages the built-in SMS outbox holds.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::shared::query;
use crate::auth::{validate_phone, Operator};
use crate::error::{ApiError, ApiResult};
use crate::openapi::{json_list, query_params, Answer, Doc};
use crate::routes::table::{Access, Route, Verb};
use crate::Gateway;

/// The routes this file serves.
pub(crate) const ROUTES: &[Route] = &[Route::new(
    Verb::Get,
    "/v1/admin/sms/outbox",
    Access::Operator,
    |r| r.to(outbox),
    Doc {
        summary: "Messages in the built-in SMS outbox, oldest first",
        request: None,
        query: Some(query_params::<OutboxQuery>),
        response: Answer::Json(json_list::<OutboxEntry>),
        codes: &[200, 400, 401, 403, 503],
    },
)];

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct OutboxQuery {
    /// Only this phone's messages.
    #[param(pattern = r"^\+?[0-9]{5,20}$")]
    phone: Option<String>,
}

/// One message of the outbox, as the phone would receive it (the code included).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = OutboxMessage)]
struct OutboxEntry {
    phone: String,
    #[schema(value_type = String, pattern = "^(apply|identity|login|claimed)$")]
    purpose: &'static str,
    text: String,
    #[schema(format = DateTime)]
    sent_at: String,
}

pub(super) async fn outbox(
    gw: web::Data<Gateway>,
    op: Operator,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let _ = op;
    let q: OutboxQuery = query(&req)?;
    let phone = q.phone.as_deref().map(str::trim).filter(|p| !p.is_empty());
    if let Some(p) = phone {
        validate_phone(p).map_err(|m| ApiError::bad_request(m).field("phone"))?;
    }
    let messages: Vec<OutboxEntry> = gw
        .sms
        .outbox(phone)?
        .into_iter()
        .map(|m| OutboxEntry {
            phone: m.phone,
            purpose: m.purpose.as_str(),
            text: m.text,
            sent_at: m.sent_at,
        })
        .collect();
    Ok(HttpResponse::Ok().json(messages))
}
