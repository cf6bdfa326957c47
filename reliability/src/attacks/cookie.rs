//! The standalone login's session cookie under attack (SPEC S5): forged, tampered and expired
//! cookies, the operator credential as a cookie, and cross-site state changes (CSRF) and logins
//! with a valid cookie. Each refused attack is also checked to have sent nothing.

use super::{bearer, is, last_code, Ledger};
use crate::fuzz::http::{token, OPERATOR};
use crate::http::once;
use platepool_gateway::auth::{sign_token, TokenClaims};

const PHONE: &str = "13700000077";
const JSON: (&str, &str) = ("Content-Type", "application/json");

/// Messages in the outbox for `phone`.
fn outbox_len(port: u16, phone: &str) -> usize {
    once(
        port,
        "GET",
        &format!("/v1/admin/sms/outbox?phone={phone}"),
        &[("Authorization", &bearer(OPERATOR))],
        None,
    )
    .ok()
    .and_then(|a| a.json().as_array().map(Vec::len))
    .unwrap_or(0)
}

/// Signs in `PHONE` through the login routes; the `platepool_session` cookie's value.
fn sign_in(l: &mut Ledger, port: u16) -> Result<String, String> {
    let body = format!(r#"{{"phone":"{PHONE}"}}"#);
    let sent = once(
        port,
        "POST",
        "/v1/login/sms",
        &[JSON],
        Some(body.as_bytes()),
    );
    l.attack("send a login code (control)", "200", &sent, |a| {
        a.status == 200
    });
    let code = last_code(port, PHONE).ok_or("no login code in the outbox")?;
    let body = format!(r#"{{"phone":"{PHONE}","sms_code":"{code}"}}"#);
    let cross = once(
        port,
        "POST",
        "/v1/login",
        &[JSON, ("Origin", "http://evil.example")],
        Some(body.as_bytes()),
    );
    l.attack(
        "login CSRF: a login posted from another site",
        "403 forbidden",
        &cross,
        is(403, "forbidden"),
    );
    let login = once(port, "POST", "/v1/login", &[JSON], Some(body.as_bytes()))
        .map_err(|e| format!("login: {e}"))?;
    if login.status != 200 {
        return Err(format!("login: {} {}", login.status, login.text()));
    }
    let set_cookie = login
        .headers
        .iter()
        .find(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.clone())
        .ok_or("login set no cookie")?;
    l.tried += 1;
    if set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict") {
        l.refused += 1;
    } else {
        l.out.violation(format!(
            "the session cookie is not HttpOnly and SameSite=Strict: {set_cookie}"
        ));
    }
    let value = set_cookie
        .split(';')
        .next()
        .and_then(|pair| pair.strip_prefix("platepool_session="))
        .ok_or("login set another cookie")?;
    Ok(value.to_string())
}

pub(super) fn cookie_attacks(l: &mut Ledger, port: u16) -> Result<(), String> {
    let session = sign_in(l, port)?;
    let now_s = platepool_engine::calendar::now_ms() / 1000;
    let cookie = |t: &str| format!("platepool_session={t}");

    // Forged, tampered and expired cookies: 401 on a read.
    let forged = sign_token(
        "not-the-gateway-secret-0123456789",
        &TokenClaims {
            user: "p_000000000000000000000000".into(),
            phone: PHONE.into(),
            exp: now_s + 3_600,
        },
    );
    let (head, sig) = session.rsplit_once('.').ok_or("malformed session token")?;
    let (version, _) = head.split_once('.').ok_or("malformed session token")?;
    let other_payload = token("someone_else", "13700000078", now_s + 3_600);
    let other_payload = other_payload.split('.').nth(1).unwrap_or_default();
    let tampered = format!("{version}.{other_payload}.{sig}");
    let expired = token("cookie_user", PHONE, now_s.saturating_sub(1));
    for (name, value) in [
        ("a cookie signed with another secret", forged.as_str()),
        ("a cookie whose payload was swapped", tampered.as_str()),
        ("an expired cookie", expired.as_str()),
        ("the operator credential as a cookie", OPERATOR),
        ("an empty cookie", ""),
    ] {
        let c = cookie(value);
        let a = once(port, "GET", "/v1/me", &[("Cookie", c.as_str())], None);
        l.attack(name, "401 unauthorized", &a, is(401, "unauthorized"));
    }
    let c = cookie(&session);
    let me = once(port, "GET", "/v1/me", &[("Cookie", c.as_str())], None);
    l.attack(
        "the session cookie reads /v1/me (control)",
        "200",
        &me,
        |a| a.status == 200,
    );

    // Cross-site state changes with the valid cookie: refused, nothing sent.
    let before = outbox_len(port, PHONE);
    let sms = br#"{"purpose":"apply"}"#;
    for (name, extra) in [
        (
            "CSRF: Origin of another site",
            ("Origin", "http://evil.example"),
        ),
        (
            "CSRF: Sec-Fetch-Site cross-site",
            ("Sec-Fetch-Site", "cross-site"),
        ),
        (
            "CSRF: Sec-Fetch-Site same-site",
            ("Sec-Fetch-Site", "same-site"),
        ),
        (
            "CSRF: no origin at all (a plain form post)",
            ("Accept", "*/*"),
        ),
    ] {
        let a = once(
            port,
            "POST",
            "/v1/sms",
            &[("Cookie", c.as_str()), JSON, extra],
            Some(sms),
        );
        l.attack(name, "403 forbidden", &a, is(403, "forbidden"));
    }
    l.tried += 1;
    if outbox_len(port, PHONE) == before {
        l.refused += 1;
    } else {
        l.out
            .violation("a cross-site request authenticated by the cookie sent an SMS");
    }
    let same = once(
        port,
        "POST",
        "/v1/sms",
        &[
            ("Cookie", c.as_str()),
            JSON,
            ("Sec-Fetch-Site", "same-origin"),
        ],
        Some(sms),
    );
    l.attack(
        "same-origin state change with the cookie (control)",
        "200",
        &same,
        |a| a.status == 200,
    );
    l.out.held(
        "session cookie: forged, swapped, expired and operator cookies get 401; cross-site state \
         changes and logins get 403 and send nothing; the cookie is HttpOnly and SameSite=Strict",
    );
    Ok(())
}
