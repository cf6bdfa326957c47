//! The standalone login's session (SPEC S5): the gateway's own citizen token carried in the
//! `platepool_session` cookie, and the cross-site request guard for calls it authenticates.
//!
//! The cookie holds the same signed token `POST /v1/login` returns (auth.rs's format), set
//! `HttpOnly` (no script reads it), `SameSite=Strict` (no other site's page sends it), `Path=/`,
//! and `Secure` when the request came over TLS (directly, or as a proxy's `X-Forwarded-Proto` /
//! `Forwarded` says) or `cookie_secure` is configured. A bearer header, when present, wins over
//! the cookie: embedded deployments keep their platform's tokens, and both work at once.
//!
//! Cross-site requests. `SameSite=Strict` alone already keeps the cookie off requests another
//! site starts; on top of it, a state-changing call (any method but GET, HEAD, OPTIONS)
//! authenticated by the cookie must show it comes from the gateway's own origin: the browser's
//! `Sec-Fetch-Site: same-origin`, or an `Origin` equal to the request's own host, or the
//! `X-Requested-With` header the reference page sends (a header another site's page cannot add
//! without a CORS preflight, which the gateway never grants). A request that says it is
//! cross-site (`Sec-Fetch-Site: cross-site`/`same-site`, or a foreign `Origin`) is refused
//! whatever else it carries. Refusals are 403 `forbidden` and change nothing. Bearer calls are
//! not affected: a browser never adds a bearer header by itself.

use actix_web::http::header::{self, HeaderMap};
use actix_web::http::Method;
use actix_web::HttpRequest;

use crate::error::ApiError;

/// The cookie's name (API.md).
pub const COOKIE_NAME: &str = "platepool_session";
/// The header the reference page sends on every call (see the module's text).
pub const REQUESTED_WITH: &str = "x-requested-with";

/// What a request says about where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The gateway's own origin says so (`Sec-Fetch-Site`, `Origin` or `X-Requested-With`).
    SameOrigin,
    /// Another site's page sent it.
    CrossSite,
    /// Nothing either way (a program, or a browser that sends neither header).
    Unknown,
}

/// Reads `Sec-Fetch-Site`, `Origin` and `X-Requested-With`.
pub fn origin_of(req: &HttpRequest) -> Origin {
    let headers = req.headers();
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let mut same = false;
    match text("sec-fetch-site") {
        Some("same-origin") => same = true,
        // `none`: the user typed the address or used a bookmark (a navigation, never a script).
        Some("none") | None => {}
        Some(_) => return Origin::CrossSite,
    }
    if let Some(origin) = text("origin") {
        if origin_matches_host(origin, headers) {
            same = true;
        } else {
            return Origin::CrossSite;
        }
    }
    if text(REQUESTED_WITH).is_some_and(|v| !v.is_empty()) {
        same = true;
    }
    if same {
        Origin::SameOrigin
    } else {
        Origin::Unknown
    }
}

/// `Origin: scheme://host[:port]` names the host the request was sent to (its `Host`).
fn origin_matches_host(origin: &str, headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    authority.is_some_and(|a| a.eq_ignore_ascii_case(host))
}

/// Does the method change state?
fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The token in the session cookie, if any.
pub fn cookie_token(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

/// The token of a request without a bearer header: the cookie's, if the request may use it.
pub fn token_from_cookie(req: &HttpRequest) -> Result<&str, ApiError> {
    let token = cookie_token(req).ok_or_else(|| {
        ApiError::unauthorized("missing Authorization: Bearer token or session cookie")
    })?;
    if changes_state(req.method()) && origin_of(req) != Origin::SameOrigin {
        return Err(ApiError::forbidden(
            "a state change authenticated by the session cookie must come from the page's own \
             origin (Sec-Fetch-Site: same-origin, a matching Origin, or X-Requested-With)",
        ));
    }
    Ok(token)
}

/// Refuses a login or logout another site's page sent (login CSRF: signing the victim into the
/// attacker's account). Programs that say nothing about their origin may log in.
pub fn refuse_cross_site(req: &HttpRequest) -> Result<(), ApiError> {
    if origin_of(req) == Origin::CrossSite {
        return Err(ApiError::forbidden("cross-site login requests are refused"));
    }
    Ok(())
}

/// Was the request made over TLS (as the connection or a proxy's header tells)?
fn over_tls(req: &HttpRequest) -> bool {
    req.connection_info().scheme().eq_ignore_ascii_case("https")
}

/// `Set-Cookie` for a new session lasting `max_age_s`.
pub fn set_cookie(req: &HttpRequest, token: &str, max_age_s: u64, secure: bool) -> String {
    let secure = if secure || over_tls(req) {
        "; Secure"
    } else {
        ""
    };
    format!("{COOKIE_NAME}={token}; Path=/; Max-Age={max_age_s}; HttpOnly; SameSite=Strict{secure}")
}

/// `Set-Cookie` that removes the session.
pub fn clear_cookie(req: &HttpRequest, secure: bool) -> String {
    set_cookie(req, "", 0, secure)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn req(method: Method, headers: &[(&str, &str)]) -> HttpRequest {
        let mut r = TestRequest::default()
            .method(method)
            .insert_header((header::HOST, "plates.example:8080"));
        for (k, v) in headers {
            r = r.insert_header((*k, *v));
        }
        r.to_http_request()
    }

    #[test]
    fn where_a_request_comes_from() {
        let same = [
            vec![("sec-fetch-site", "same-origin")],
            vec![("origin", "http://plates.example:8080")],
            vec![("x-requested-with", "platepool")],
        ];
        for h in same {
            assert_eq!(
                origin_of(&req(Method::POST, &h)),
                Origin::SameOrigin,
                "{h:?}"
            );
        }
        let cross = [
            vec![("sec-fetch-site", "cross-site")],
            vec![("sec-fetch-site", "same-site"), ("x-requested-with", "x")],
            vec![("origin", "http://evil.example")],
            vec![("origin", "null"), ("x-requested-with", "platepool")],
            vec![("origin", "http://plates.example:8080.evil.example")],
        ];
        for h in cross {
            assert_eq!(
                origin_of(&req(Method::POST, &h)),
                Origin::CrossSite,
                "{h:?}"
            );
        }
        assert_eq!(origin_of(&req(Method::POST, &[])), Origin::Unknown);
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_when_asked() {
        let r = req(Method::POST, &[]);
        let c = set_cookie(&r, "v1.a.b", 60, false);
        assert_eq!(
            c,
            "platepool_session=v1.a.b; Path=/; Max-Age=60; HttpOnly; SameSite=Strict"
        );
        assert!(set_cookie(&r, "t", 60, true).ends_with("; Secure"));
        let tls = req(Method::POST, &[("x-forwarded-proto", "https")]);
        assert!(set_cookie(&tls, "t", 60, false).ends_with("; Secure"));
        assert!(clear_cookie(&r, false).contains("Max-Age=0"));
    }
}
