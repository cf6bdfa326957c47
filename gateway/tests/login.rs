//! The standalone login (SPEC S1, S5; API.md "Citizen"): phone + SMS code → the gateway's token
//! and the `platepool_session` cookie; the cookie in place of the bearer header; logout; the
//! cross-site guard on cookie-authenticated state changes; bearer calls unaffected; the login
//! switched off.
#![allow(clippy::unwrap_used)]

use actix_web::http::{header, StatusCode};
use actix_web::test::{self, TestRequest};
use actix_web::{web, App};
use platepool_gateway::sms::Purpose;
use serde_json::{json, Value};

mod support;

const PHONE: &str = "13800138055";

macro_rules! app_of {
    ($gw:expr) => {
        test::init_service(
            App::new()
                .service($gw.scope(""))
                .default_service(web::to(platepool_gateway::not_found)),
        )
        .await
    };
}

fn post(uri: &str, body: Value) -> TestRequest {
    TestRequest::post().uri(uri).set_json(body)
}

/// Status, `Set-Cookie` and JSON body of an answer.
macro_rules! call {
    ($app:expr, $req:expr $(,)?) => {{
        let res = test::call_service($app, $req.to_request()).await;
        let status = res.status();
        let cookie = res
            .headers()
            .get(header::SET_COOKIE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = test::read_body(res).await;
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (status, cookie, json)
    }};
}

#[actix_rt::test]
async fn login_with_an_sms_code_sets_a_strict_cookie_that_authenticates() {
    let (_dir, engine) = support::engine(None, None).await;
    let gw = support::gateway(&engine, support::gateway_config());
    let app = app_of!(gw);

    // Bad phone: 400 on the field, nothing sent.
    let (s, _, b) = call!(&app, post("/v1/login/sms", json!({"phone": "12ab"})));
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["error"]["field"], "phone");

    let (s, _, b) = call!(
        &app,
        post("/v1/login/sms", json!({"phone": "+86 138-0013-8055"}))
    );
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["confirm_after_ms"], 0);
    assert!(b["expires_in_ms"].as_u64().unwrap() > 0);
    // S2: one code per phone and purpose per 60 s.
    let (s, _, b) = call!(&app, post("/v1/login/sms", json!({"phone": PHONE})));
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(b["error"]["code"], "sms_too_soon");

    let code = support::last_code(&gw, PHONE, Purpose::Login);
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let (s, cookie, b) = call!(
        &app,
        post("/v1/login", json!({"phone": PHONE, "sms_code": wrong})),
    );
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(b["error"]["code"], "sms_code_invalid");
    assert!(cookie.is_empty());

    let (s, cookie, b) = call!(
        &app,
        post("/v1/login", json!({"phone": PHONE, "sms_code": code})),
    );
    assert_eq!(s, StatusCode::OK, "{b}");
    let token = b["token"].as_str().unwrap().to_string();
    let user = b["user"].as_str().unwrap().to_string();
    assert!(user.starts_with("p_") && !user.contains(PHONE), "{user}");
    assert!(b["expires_at"].is_string());
    assert_eq!(
        cookie,
        format!(
            "platepool_session={token}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict",
            platepool_gateway::routes::login::SESSION_TTL_S
        )
    );
    // The code is used up.
    let (s, _, _) = call!(
        &app,
        post("/v1/login", json!({"phone": PHONE, "sms_code": code})),
    );
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // The cookie reads /v1/me as the bearer token does: the same user.
    let session = format!("platepool_session={token}");
    let (s, _, me) = call!(
        &app,
        TestRequest::get()
            .uri("/v1/me")
            .insert_header((header::COOKIE, session.as_str())),
    );
    assert_eq!(s, StatusCode::OK, "{me}");
    assert_eq!(me["user"], user.as_str());
    let (_, _, me) = call!(
        &app,
        TestRequest::get()
            .uri("/v1/me")
            .insert_header((header::AUTHORIZATION, format!("Bearer {token}"))),
    );
    assert_eq!(me["user"], user.as_str());

    // A state change by cookie: refused from another site or without any origin signal,
    // accepted from the page's own origin; nothing is sent by a refused one.
    let sms = json!({"purpose": "apply"});
    for extra in [
        ("origin", "http://evil.example"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
        ("accept", "*/*"),
    ] {
        let (s, _, b) = call!(
            &app,
            post("/v1/sms", sms.clone())
                .insert_header((header::COOKIE, session.as_str()))
                .insert_header(extra),
        );
        assert_eq!(s, StatusCode::FORBIDDEN, "{extra:?}: {b}");
        assert_eq!(b["error"]["code"], "forbidden");
    }
    assert!(gw
        .sms
        .outbox(Some(PHONE))
        .unwrap()
        .iter()
        .all(|m| m.purpose == Purpose::Login));
    let (s, _, b) = call!(
        &app,
        post("/v1/sms", sms.clone())
            .insert_header((header::COOKIE, session.as_str()))
            .insert_header(("sec-fetch-site", "same-origin")),
    );
    assert_eq!(s, StatusCode::OK, "{b}");
    // Bearer calls are not asked where they come from.
    let other = support::token("bearer_user", "13800138066", u64::MAX / 2);
    let (s, _, b) = call!(
        &app,
        post("/v1/sms", sms.clone())
            .insert_header((header::AUTHORIZATION, format!("Bearer {other}")))
            .insert_header(("origin", "http://evil.example")),
    );
    assert_eq!(s, StatusCode::OK, "{b}");

    // Forged and expired cookies: 401.
    let expired = support::token(&user, PHONE, 1);
    let forged = format!("{}x", &token[..token.len() - 1]);
    for bad in [expired, forged] {
        let (s, _, b) = call!(
            &app,
            TestRequest::get()
                .uri("/v1/me")
                .insert_header((header::COOKIE, format!("platepool_session={bad}"))),
        );
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    }

    // Logout clears the cookie; a cross-site logout or login is refused.
    let (s, cookie, _) = call!(
        &app,
        TestRequest::post()
            .uri("/v1/logout")
            .insert_header((header::COOKIE, session.as_str())),
    );
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(
        cookie.starts_with("platepool_session=;") && cookie.contains("Max-Age=0"),
        "{cookie}"
    );
    let (s, _, _) = call!(
        &app,
        TestRequest::post()
            .uri("/v1/logout")
            .insert_header(("origin", "http://evil.example")),
    );
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = call!(
        &app,
        post("/v1/login", json!({"phone": PHONE, "sms_code": "123456"}))
            .insert_header(("sec-fetch-site", "cross-site")),
    );
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[actix_rt::test]
async fn the_same_phone_is_the_same_user_and_tls_makes_the_cookie_secure() {
    let clock = support::TestClock::at(support::t0());
    let (_dir, engine) = support::engine(None, Some(clock.clone())).await;
    let gw = support::gateway(&engine, support::gateway_config());
    let app = app_of!(gw);
    let mut users = Vec::new();
    for round in 0..2 {
        let (s, _, _) = call!(&app, post("/v1/login/sms", json!({"phone": PHONE})));
        assert_eq!(s, StatusCode::OK);
        let code = support::last_code(&gw, PHONE, Purpose::Login);
        let (s, cookie, b) = call!(
            &app,
            post("/v1/login", json!({"phone": PHONE, "sms_code": code}))
                .insert_header(("x-forwarded-proto", "https")),
        );
        assert_eq!(s, StatusCode::OK, "round {round}: {b}");
        assert!(cookie.ends_with("; Secure"), "{cookie}");
        users.push(b["user"].as_str().unwrap().to_string());
        clock.advance(61_000);
    }
    assert_eq!(users[0], users[1]);
}

#[actix_rt::test]
async fn the_login_can_be_switched_off() {
    let (_dir, engine) = support::engine(None, None).await;
    let config = platepool_gateway::GatewayConfig {
        standalone_login: false,
        ..support::gateway_config()
    };
    let gw = support::gateway(&engine, config);
    let app = app_of!(gw);
    let (s, _, b) = call!(&app, post("/v1/login/sms", json!({"phone": PHONE})));
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    assert!(gw.sms.outbox(Some(PHONE)).unwrap().is_empty());
}
