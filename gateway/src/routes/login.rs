//! The standalone login (SPEC S1, S5; API.md "Citizen"): a citizen signs in with phone number and
//! an SMS code and gets the gateway's own signed token, in the answer and as the
//! `platepool_session` cookie (session.rs). Embedded deployments keep their platform's bearer
//! tokens; both work at once. Off with `standalone_login = false` (the routes answer 404).
//!
//! User ids. A citizen signed in here is `p_` + the first 12 bytes, in hex, of
//! HMAC-SHA256(`login_user_key` or else `token_secret`, `"platepool-login-user:" + phone`), with
//! the phone normalised (spaces and dashes dropped, a `+86`/`0086` before an 11-digit mobile
//! number dropped). The same phone is always the same user, so a citizen who signs in again finds
//! their applications; the id does not give the phone back (a plain hash would: the phone
//! numbers are few enough to try them all, a keyed one needs the key), and the `p_` prefix keeps
//! these ids apart from the embedding platform's own.

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use hmac::{Hmac, Mac};
use platepool_engine::calendar::rfc3339;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::auth::{sign_token, validate_phone, TokenClaims};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::openapi::{json_answer, json_body, Answer, Doc};
use crate::routes::answers::SmsSent;
use crate::routes::table::{Access, Route, Shed, Verb};
use crate::session;
use crate::sms::Purpose;
use crate::Gateway;

type Gw = web::Data<Gateway>;

/// How long a login lasts: the token's life and the cookie's `Max-Age`.
pub const SESSION_TTL_S: u64 = 12 * 3600;

/// The routes this file serves.
pub(crate) const ROUTES: &[Route] = &[
    Route::new(
        Verb::Post,
        "/v1/login/sms",
        Access::Public,
        |r| r.to(send_code),
        Doc {
            summary: "Sends a login code to a phone (standalone login, SPEC S5; no token needed)",
            request: Some(json_body::<PhoneBody>),
            query: None,
            response: Answer::Json(json_answer::<SmsSent>),
            codes: &[200, 400, 403, 404, 413, 429, 503],
        },
    )
    .shed(Shed::Lag),
    Route::new(
        Verb::Post,
        "/v1/login",
        Access::Public,
        |r| r.to(login),
        Doc {
            summary: "Signs a citizen in with phone and SMS code: the gateway's token, also set as the HttpOnly, SameSite=Strict platepool_session cookie",
            request: Some(json_body::<LoginBody>),
            query: None,
            response: Answer::Json(json_answer::<LoginAnswer>),
            codes: &[200, 400, 403, 404, 413, 422, 429, 503],
        },
    )
    .shed(Shed::Lag),
    Route::new(
        Verb::Post,
        "/v1/logout",
        Access::Public,
        |r| r.to(logout),
        Doc {
            summary: "Clears the session cookie",
            request: None,
            query: None,
            response: Answer::Empty,
            codes: &[204, 403, 404],
        },
    ),
];

/// The phone as the login keys it: spaces and dashes dropped, the `+86`/`0086` country code
/// before an 11-digit mainland mobile number dropped; then auth.rs's rule (5 to 20 digits).
pub fn normalise_phone(raw: &str) -> Result<String, String> {
    let compact: String = raw
        .trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '-'))
        .collect();
    let national = compact
        .strip_prefix("+86")
        .or_else(|| compact.strip_prefix("0086"))
        .filter(|rest| rest.len() == 11 && rest.starts_with('1'));
    let phone = national.map_or(compact.clone(), str::to_string);
    validate_phone(&phone)?;
    Ok(phone)
}

/// The user id of a phone signed in here (see the module's text).
pub fn login_user_id(key: &str, phone: &str) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(key.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(b"platepool-login-user:");
    mac.update(phone.as_bytes());
    let digest = mac.finalize().into_bytes();
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("p_{hex}")
}

fn enabled(gw: &Gateway) -> ApiResult<()> {
    if gw.config.standalone_login {
        Ok(())
    } else {
        Err(ApiError::not_found(
            "this gateway has no login of its own: the platform signs citizens in",
        ))
    }
}

fn phone_field(raw: &str) -> ApiResult<String> {
    normalise_phone(raw).map_err(|m| ApiError::bad_request(m).field("phone"))
}

/// What both login steps check first (login on, the per-address limit, the page's own origin),
/// then the phone and the time: (phone, now).
fn open_login(gw: &Gw, req: &HttpRequest, raw_phone: &str) -> ApiResult<(String, u64)> {
    enabled(gw)?;
    gw.limits.check(req, None)?;
    session::refuse_cross_site(req)?;
    Ok((phone_field(raw_phone)?, gw.engine.now_ms()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PhoneBody {
    phone: String,
}

/// `POST /v1/login/sms {"phone"}`: a login code (S2: one per phone per 60 s, 5 minutes, 5 tries).
async fn send_code(
    gw: Gw,
    req: HttpRequest,
    ApiJson(b): ApiJson<PhoneBody>,
) -> ApiResult<HttpResponse> {
    let (phone, now) = open_login(&gw, &req, &b.phone)?;
    let sent = gw
        .sms
        .send_code(&phone, Purpose::Login, None, 0, now)
        .await?;
    Ok(HttpResponse::Ok().json(SmsSent::new(sent, Purpose::Login, now)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    phone: String,
    sms_code: String,
}

/// A signed-in citizen: the token (also the session cookie) and until when it holds.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Login)]
struct LoginAnswer {
    token: String,
    user: String,
    #[schema(format = DateTime)]
    expires_at: String,
    expires_in_ms: u64,
}

/// `POST /v1/login {"phone","sms_code"}` → `{"token","user","expires_at"}` and the cookie.
async fn login(
    gw: Gw,
    req: HttpRequest,
    ApiJson(b): ApiJson<LoginBody>,
) -> ApiResult<HttpResponse> {
    let (phone, now) = open_login(&gw, &req, &b.phone)?;
    gw.sms
        .verify(&phone, Purpose::Login, None, b.sms_code.trim(), true, now)
        .await?;
    let key = match gw.config.login_user_key.as_str() {
        "" => gw.config.token_secret.as_str(),
        key => key,
    };
    let user = login_user_id(key, &phone);
    let exp = now / 1000 + SESSION_TTL_S;
    let token = sign_token(
        &gw.config.token_secret,
        &TokenClaims {
            user: user.clone(),
            phone,
            exp,
        },
    );
    let cookie = session::set_cookie(&req, &token, SESSION_TTL_S, gw.config.cookie_secure);
    Ok(HttpResponse::build(StatusCode::OK)
        .insert_header((header::SET_COOKIE, cookie))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(LoginAnswer {
            token,
            user,
            expires_at: rfc3339(exp * 1000),
            expires_in_ms: (exp * 1000).saturating_sub(now),
        }))
}

/// `POST /v1/logout`: clears the cookie (204). Tokens are stateless: a copy of the token kept
/// elsewhere stays valid until it expires.
async fn logout(gw: Gw, req: HttpRequest) -> ApiResult<HttpResponse> {
    enabled(&gw)?;
    session::refuse_cross_site(&req)?;
    Ok(HttpResponse::NoContent()
        .insert_header((
            header::SET_COOKIE,
            session::clear_cookie(&req, gw.config.cookie_secure),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_are_normalised_and_user_ids_are_stable_and_keyed() {
        assert_eq!(
            normalise_phone("+86 138-0013-8000").as_deref(),
            Ok("13800138000")
        );
        assert_eq!(
            normalise_phone("008613800138000").as_deref(),
            Ok("13800138000")
        );
        assert_eq!(
            normalise_phone("+4915112345678").as_deref(),
            Ok("+4915112345678")
        );
        assert!(normalise_phone("13800x").is_err());
        let a = login_user_id("key-one-0123456789", "13800138000");
        assert_eq!(a, login_user_id("key-one-0123456789", "13800138000"));
        assert_ne!(a, login_user_id("key-two-0123456789", "13800138000"));
        assert_ne!(a, login_user_id("key-one-0123456789", "13800138001"));
        assert!(a.starts_with("p_") && a.len() == 26, "{a}");
        assert!(crate::auth::validate_user(&a).is_ok());
        assert!(!a.contains("13800138000"));
    }
}
