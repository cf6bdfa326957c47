//! Identity (SPEC S1): citizen tokens signed by the embedding platform with HMAC-SHA256, and the
//! operator credential. Citizen tokens may also be JWTs (`jwt.rs`, which dispatches between the
//! two formats).
//!
//! A citizen token is `v1.<payload>.<signature>`: the payload is base64url (no padding) of
//! `{"user","phone","exp"}` (`exp` in Unix seconds) and the signature is base64url of
//! HMAC-SHA256(secret, `v1.<payload>`). Anything else — missing, malformed, forged, expired — is
//! 401 `unauthorized`.

use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::Method;
use actix_web::{web, FromRequest, HttpRequest};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::ApiError;
use crate::operators::{Credential, Role};
use crate::Gateway;

type HmacSha256 = Hmac<Sha256>;

/// Longest token accepted (a guard against huge headers doing work).
pub const TOKEN_LEN_MAX: usize = 1_024;
/// Longest user id.
pub const USER_LEN_MAX: usize = 64;

const TOKEN_VERSION: &str = "v1";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenClaims {
    pub user: String,
    pub phone: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
}

/// Checks a user id: 1..=64 of letters, digits and `_ . @ -`.
pub fn validate_user(user: &str) -> Result<(), String> {
    if user.is_empty() || user.len() > USER_LEN_MAX {
        return Err(format!("user must have 1 to {USER_LEN_MAX} characters"));
    }
    if !user
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-'))
    {
        return Err("user may contain only letters, digits and _ . @ -".into());
    }
    Ok(())
}

/// Checks a phone number: an optional `+` and 5 to 20 digits.
pub fn validate_phone(phone: &str) -> Result<(), String> {
    let digits = phone.strip_prefix('+').unwrap_or(phone);
    if !(5..=20).contains(&digits.len()) || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err("phone must be 5 to 20 digits, optionally after +".into());
    }
    Ok(())
}

fn mac(secret: &[u8], signed: &str) -> HmacSha256 {
    // HMAC accepts keys of any length: this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(signed.as_bytes());
    mac
}

/// Signs a citizen token (what the embedding platform does; also `POST /v1/admin/tokens`).
pub fn sign_token(secret: &str, claims: &TokenClaims) -> String {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
    let signed = format!("{TOKEN_VERSION}.{payload}");
    let sig = URL_SAFE_NO_PAD.encode(mac(secret.as_bytes(), &signed).finalize().into_bytes());
    format!("{signed}.{sig}")
}

/// Verifies a citizen token at `now_s` (Unix seconds).
pub fn verify_token(secret: &str, token: &str, now_s: u64) -> Result<TokenClaims, ApiError> {
    if token.len() > TOKEN_LEN_MAX {
        return Err(ApiError::unauthorized("token too long"));
    }
    let mut parts = token.split('.');
    let (Some(version), Some(payload), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ApiError::unauthorized("malformed token"));
    };
    if version != TOKEN_VERSION {
        return Err(ApiError::unauthorized("unknown token version"));
    }
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| ApiError::unauthorized("malformed token signature"))?;
    // What was signed is `version.payload`: the token up to its last dot, as it came.
    let signed = &token[..version.len() + 1 + payload.len()];
    mac(secret.as_bytes(), signed)
        .verify_slice(&sig)
        .map_err(|_| ApiError::unauthorized("token signature does not verify"))?;
    let raw = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| ApiError::unauthorized("malformed token payload"))?;
    let claims: TokenClaims = serde_json::from_slice(&raw)
        .map_err(|_| ApiError::unauthorized("malformed token payload"))?;
    if claims.exp <= now_s {
        return Err(ApiError::unauthorized("token expired"));
    }
    validate_user(&claims.user).map_err(ApiError::unauthorized)?;
    validate_phone(&claims.phone).map_err(ApiError::unauthorized)?;
    Ok(claims)
}

fn bearer(req: &HttpRequest) -> Result<&str, ApiError> {
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer token"))?;
    let value = header
        .to_str()
        .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| ApiError::unauthorized("Authorization must be Bearer"))?;
    Ok(token.trim())
}

/// Constant-time equality, so the operator token cannot be guessed byte by byte from timing.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn gateway(req: &HttpRequest) -> Result<web::Data<Gateway>, ApiError> {
    req.app_data::<web::Data<Gateway>>()
        .cloned()
        .ok_or_else(|| ApiError::unavailable("gateway not configured"))
}

/// A verified citizen.
#[derive(Debug, Clone)]
pub struct Citizen {
    pub user: String,
    pub phone: String,
}

impl FromRequest for Citizen {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Citizen, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready((|| {
            let gw = gateway(req)?;
            // A bearer header wins; without one, the standalone login's session cookie, which
            // state changes may use only from the page's own origin (session.rs).
            let token = if req
                .headers()
                .contains_key(actix_web::http::header::AUTHORIZATION)
            {
                bearer(req)?
            } else {
                crate::session::token_from_cookie(req)?
            };
            if gw.operators.current().find(token).is_some() {
                return Err(ApiError::unauthorized(
                    "an operator token is not a citizen token",
                ));
            }
            let now_s = gw.engine.now_ms() / 1000;
            let claims = gw.tokens.verify(token, now_s)?;
            Ok(Citizen {
                user: claims.user,
                phone: claims.phone,
            })
        })())
    }
}

/// A caller holding a named operator credential (SPEC S4, `operators.rs`).
#[derive(Debug, Clone)]
pub struct Operator {
    /// Who, for the audit trail: `operator:<credential name>`.
    pub who: String,
    pub credential: Arc<Credential>,
}

impl Operator {
    /// Refuses (403) a clerk acting on an office not listed for it.
    pub fn require_office(&self, office: &str) -> Result<(), ApiError> {
        if self.credential.covers(office) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "operator {} may not act on office {office}",
                self.credential.name
            )))
        }
    }
}

/// What a role may do with this request, before the handler runs: an auditor only reads; a
/// clerk only acts on a request naming one of its offices (in the path, or in the `office` query
/// parameter of a route its handler scopes by it: [`SCOPED_BY_OFFICE_QUERY`]),
/// or on a registration (whose office is in the body: its handler checks it), and never
/// configures an office.
fn role_allows(req: &HttpRequest, c: &Credential) -> Result<(), ApiError> {
    let read = matches!(*req.method(), Method::GET | Method::HEAD);
    match c.role {
        Role::Admin => Ok(()),
        Role::Auditor if read => Ok(()),
        Role::Auditor => Err(ApiError::forbidden(format!(
            "operator {} is an auditor: read-only",
            c.name
        ))),
        Role::Clerk => {
            // Only where the handler scopes its answer by it does the query name an office.
            let query_office = SCOPED_BY_OFFICE_QUERY
                .iter()
                .any(|p| req.path().ends_with(p))
                .then(|| web::Query::<OfficeQuery>::from_query(req.query_string()).ok())
                .flatten()
                .and_then(|q| q.0.office);
            let office = req
                .match_info()
                .get("office")
                .map(str::to_string)
                .or(query_office);
            let registering =
                req.method() == Method::POST && req.path().ends_with("/v1/admin/registrations");
            // The operator API's one PUT: an office's configuration.
            let configuring = req.method() == Method::PUT;
            match office {
                _ if configuring => Err(ApiError::forbidden(format!(
                    "operator {} is a clerk: offices are configured by an admin",
                    c.name
                ))),
                Some(o) if c.covers(&o) => Ok(()),
                Some(o) => Err(ApiError::forbidden(format!(
                    "operator {} may not act on office {o}",
                    c.name
                ))),
                None if registering => Ok(()),
                None => Err(ApiError::forbidden(format!(
                    "operator {} is a clerk: a request names one of its offices",
                    c.name
                ))),
            }
        }
    }
}

/// Operator routes whose handlers scope their answer by the `office` query parameter; on any
/// other route a clerk naming its office in the query would reach cross-office state.
const SCOPED_BY_OFFICE_QUERY: &[&str] = &["/v1/admin/audit", "/v1/admin/applications"];

#[derive(Debug, Deserialize)]
struct OfficeQuery {
    office: Option<String>,
}

impl FromRequest for Operator {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Operator, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready((|| {
            let gw = gateway(req)?;
            let token = bearer(req)?;
            if let Some(credential) = gw.operators.current().find(token) {
                role_allows(req, &credential)?;
                return Ok(Operator {
                    who: format!("operator:{}", credential.name),
                    credential,
                });
            }
            let now_s = gw.engine.now_ms() / 1000;
            if gw.tokens.verify(token, now_s).is_ok() {
                return Err(ApiError::forbidden(
                    "a citizen token cannot use the operator API",
                ));
            }
            Err(ApiError::unauthorized("not an operator credential"))
        })())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn claims(exp: u64) -> TokenClaims {
        TokenClaims {
            user: "u1".into(),
            phone: "13800138000".into(),
            exp,
        }
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let t = sign_token(SECRET, &claims(2_000));
        assert_eq!(
            verify_token(SECRET, &t, 1_000).expect("valid"),
            claims(2_000)
        );
        assert_eq!(
            verify_token(SECRET, &t, 2_000).expect_err("expired").code,
            "unauthorized"
        );
    }

    #[test]
    fn forged_and_malformed_tokens_are_refused() {
        let t = sign_token(SECRET, &claims(2_000));
        assert!(verify_token("another-secret-0123456789", &t, 1).is_err());
        let (head, _) = t.rsplit_once('.').expect("three parts");
        let forged_payload =
            URL_SAFE_NO_PAD.encode(br#"{"user":"admin","phone":"13800138000","exp":9999999999}"#);
        let sig = t.rsplit('.').next().expect("sig");
        assert!(verify_token(SECRET, &format!("v1.{forged_payload}.{sig}"), 1).is_err());
        assert!(verify_token(SECRET, head, 1).is_err());
        assert!(verify_token(SECRET, "", 1).is_err());
        assert!(verify_token(SECRET, "v2.a.b", 1).is_err());
        assert!(verify_token(SECRET, &format!("{t}.x"), 1).is_err());
    }

    #[test]
    fn user_and_phone_rules() {
        assert!(validate_user("alice_01@x.cn").is_ok());
        assert!(validate_user("").is_err());
        assert!(validate_user("a/b").is_err());
        assert!(validate_phone("+8613800138000").is_ok());
        assert!(validate_phone("12ab5").is_err());
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
    }
}
