//! POST /v1/admin/tokens: citizen tokens for demos, tests and load tests.

use actix_web::{web, HttpResponse};
use platepool_engine::calendar::rfc3339;
use serde::{Deserialize, Serialize};

use crate::auth::{sign_token, validate_phone, validate_user, Operator, TokenClaims};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::openapi::{json_answer, json_body, Answer, Doc};
use crate::routes::table::{Access, Route, Verb};
use crate::Gateway;

/// The routes this file serves.
pub(crate) const ROUTES: &[Route] = &[Route::new(
    Verb::Post,
    "/v1/admin/tokens",
    Access::Operator,
    |r| r.to(issue_token),
    Doc {
        summary: "Issues a citizen token (demo, tests, load tests; when allow_token_issue)",
        request: Some(json_body::<TokenBody>),
        query: None,
        response: Answer::Json(json_answer::<TokenAnswer>),
        codes: &[200, 400, 401, 403, 413],
    },
)];

/// Citizen tokens issued here: default and longest life.
pub const TOKEN_TTL_DEFAULT_S: u64 = 3_600;
pub const TOKEN_TTL_MAX_S: u64 = 30 * 86_400;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenBody {
    #[schema(min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9_.@-]+$")]
    user: String,
    #[schema(pattern = r"^\+?[0-9]{5,20}$")]
    phone: String,
    /// Seconds, default 3600.
    #[schema(minimum = 1, maximum = 2592000)]
    ttl_s: Option<u64>,
}

/// A citizen token and whom it names.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Token)]
struct TokenAnswer {
    token: String,
    user: String,
    phone: String,
    #[schema(format = DateTime)]
    expires_at: String,
}

pub(super) async fn issue_token(
    gw: web::Data<Gateway>,
    op: Operator,
    body: ApiJson<TokenBody>,
) -> ApiResult<HttpResponse> {
    if !gw.config.allow_token_issue {
        return Err(ApiError::forbidden(
            "this gateway does not issue citizen tokens (allow_token_issue is off)",
        ));
    }
    let body = body.0;
    validate_user(&body.user).map_err(|m| ApiError::bad_request(m).field("user"))?;
    validate_phone(&body.phone).map_err(|m| ApiError::bad_request(m).field("phone"))?;
    let ttl_s = body.ttl_s.unwrap_or(TOKEN_TTL_DEFAULT_S);
    if !(1..=TOKEN_TTL_MAX_S).contains(&ttl_s) {
        return Err(
            ApiError::bad_request(format!("ttl_s must be 1 to {TOKEN_TTL_MAX_S}")).field("ttl_s"),
        );
    }
    let exp = gw.engine.now_ms() / 1000 + ttl_s;
    let claims = TokenClaims {
        user: body.user,
        phone: body.phone,
        exp,
    };
    let token = sign_token(&gw.config.token_secret, &claims);
    tracing::info!(who = %op.who, user = %claims.user, ttl_s, "citizen token issued");
    Ok(HttpResponse::Ok().json(TokenAnswer {
        token,
        user: claims.user,
        phone: claims.phone,
        expires_at: rfc3339(exp * 1000),
    }))
}
