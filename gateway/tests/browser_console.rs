//! The operator console (`/console/`) in headless Chromium, against the real app served on a
//! loopback port: the operator-token gate, a release whose previewed count is the count saved,
//! the opening dashboard moving as draws are made through the API, and a certificate import
//! with a bad row (its error shown, the good rows imported — checked through the API).
//! Screenshots go to `target/screenshots/console-*.png` at 1366×768 (desktop) and 390×844.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::test;
use platepool_engine::{AppId, ApplicationRequest, Caller, Engine};
use platepool_gateway::sms::Purpose;
use platepool_gateway::Gateway;
use serde_json::{json, Value};

mod browser;
mod support;
use browser::Browser;
use support::{app, certificate, vin, voucher_no, OPERATOR as OP};

const OFFICE: &str = "maoming";

macro_rules! call {
    ($app:expr, $req:expr) => {{
        let resp = test::call_service(&$app, $req.to_request()).await;
        let status = resp.status();
        let bytes = test::read_body(resp).await;
        (
            status,
            serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
        )
    }};
}

fn op(req: test::TestRequest) -> test::TestRequest {
    req.insert_header(("Authorization", format!("Bearer {OP}")))
}

/// The phone of a test user (each user its own, so SMS limits per phone do not meet).
fn phone_of(user: &str) -> String {
    let n: u32 = user.bytes().map(u32::from).sum();
    format!("1390000{n:04}")
}

fn citizen(req: test::TestRequest, user: &str, engine: &Engine) -> test::TestRequest {
    let token = support::token(user, &phone_of(user), engine.now_ms() / 1000 + 3_600);
    req.insert_header(("Authorization", format!("Bearer {token}")))
}

/// A gateway on real time (the page polls in real time) with the Maoming office: small and
/// new-energy classes, no waits between SMS codes or checks.
async fn world() -> (tempfile::TempDir, Gateway) {
    let (dir, engine) = support::engine(Some(11), None).await;
    let mut rules = platepool_engine::OfficeRules {
        sms_confirm_delay_ms: 0,
        opening_window_ms: 0,
        ..Default::default()
    };
    rules.custom_min_interval_ms = 0;
    engine
        .put_office(
            OFFICE,
            support::office("茂名市车辆管理所", &["small", "small_new_energy"], rules),
            "test",
        )
        .await
        .unwrap();
    let gw = support::gateway(&engine, support::gateway_config());
    (dir, gw)
}

/// A browser on the console, signed in with the operator token (as the gate stores it).
async fn console(server: &browser::Served, width: u32, height: u32) -> Browser {
    let b = Browser::start(width, height).await;
    b.goto(&server.url("/console/")).await;
    b.wait("#operator-token").await;
    b.exec(
        "sessionStorage.setItem('platepool.console.operator_token', arguments[0]);",
        vec![json!(OP)],
    )
    .await;
    b.refresh().await;
    b.wait("#office-select").await;
    b
}

/// The `data-*` attribute `attr` of the first element matching `css`.
async fn data(b: &Browser, css: &str, attr: &str) -> String {
    let sel = serde_json::to_string(css).unwrap();
    b.exec(
        &format!("return document.querySelector({sel})?.getAttribute('{attr}') ?? ''"),
        vec![],
    )
    .await
    .as_str()
    .unwrap_or_default()
    .to_string()
}

/// Every release's (id, total) in the office's figures, read through the API.
macro_rules! release_totals {
    ($app:expr) => {{
        let (s, stats) = call!(
            $app,
            op(test::TestRequest::get().uri("/v1/admin/offices/maoming/stats"))
        );
        assert_eq!(s, StatusCode::OK, "{stats}");
        stats["classes"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["releases"].as_array().unwrap().clone())
            .map(|r| (r["id"].as_u64().unwrap(), r["total"].as_u64().unwrap()))
            .collect::<Vec<(u64, u64)>>()
    }};
}

#[actix_rt::test]
async fn a_wrong_token_gets_a_clear_screen_and_a_release_saves_its_previewed_count() {
    let (_dir, gw) = world().await;
    let api = app!(gw);
    let server = browser::serve(&gw);
    let b = Browser::start(1366, 768).await;
    b.goto(&server.url("/console/")).await;

    // The gate: a citizen's token and a wrong one are refused with words, on the field.
    let citizen_token = support::token("u1", &phone_of("u1"), gw.engine.now_ms() / 1000 + 600);
    b.type_into("#operator-token", &citizen_token).await;
    b.click("#token-submit").await;
    b.wait_text(".field-error", "市民令牌").await;
    b.type_into("#operator-token", "not-the-operator-token")
        .await;
    b.click("#token-submit").await;
    b.wait_text(".field-error", "令牌不正确").await;
    assert_eq!(data(&b, "#operator-token", "aria-invalid").await, "true");
    b.screenshot("console-gate-refused").await;
    b.type_into("#operator-token", OP).await;
    b.click("#token-submit").await;
    b.wait("#office-select").await;

    // A bad pattern: the API's message on the patterns field, nothing saved, no save button.
    b.goto(&server.url("/console/#/releases")).await;
    b.wait_js(
        "document.querySelector('#release-class option[value=small]')",
        "the office's classes in the class list",
    )
    .await;
    b.type_into("#release-patterns", "A####\nA[12").await;
    b.click("#release-preview").await;
    b.wait_js(
        "document.querySelector('#release-patterns').getAttribute('aria-invalid') === 'true'",
        "the patterns field marked invalid",
    )
    .await;
    b.wait_text(".field.has-error .field-error", "第 2 项")
        .await;
    b.wait_text(".error-summary", "A[12").await;
    assert_eq!(
        b.exec(
            "return document.querySelector('#release-save').disabled",
            vec![]
        )
        .await,
        json!(true)
    );
    assert!(release_totals!(api).is_empty());

    // A good body: the preview's count, then the saved release's, equal to the API's total.
    b.type_into("#release-label", "粤K·A0000–A9999 与 B12")
        .await;
    b.type_into("#release-patterns", "A####, B12##").await;
    b.click("#release-preview").await;
    b.wait("#release-preview-total").await;
    let previewed = data(&b, "#release-preview-total", "data-total").await;
    assert_eq!(previewed, "10100");
    assert!(release_totals!(api).is_empty(), "a preview saves nothing");
    b.screenshot("console-release-preview").await;
    b.click("#release-save").await;
    b.wait("#release-saved-total").await;
    assert_eq!(
        data(&b, "#release-saved-total", "data-total").await,
        previewed
    );
    assert_eq!(release_totals!(api), vec![(1, 10_100)]);
    b.wait("[data-withdraw='1']").await;
    b.screenshot("console-releases").await;

    // The same numbers again: the preview and the release refuse them alike.
    b.type_into("#release-patterns", "A####").await;
    b.click("#release-preview").await;
    b.wait_text(".error-summary", "already in the pool").await;
    assert_eq!(release_totals!(api), vec![(1, 10_100)]);
    b.quit().await;
    server.stop().await;
}

/// Stage 1 and identity done for `user` with certificate `n`, through the engine.
async fn applicant(engine: &Engine, user: &str, n: u32) -> AppId {
    engine
        .import_certificates(vec![certificate(n, "small", "fuel")], "test")
        .await
        .unwrap();
    let id = engine
        .create_application(ApplicationRequest {
            office: OFFICE.into(),
            user: user.into(),
            phone: phone_of(user),
            vin: vin(n),
            voucher: voucher_no(n),
            notice_version: "v1".into(),
        })
        .await
        .unwrap();
    engine
        .verify_identity(&id, Caller::Citizen(user))
        .await
        .unwrap();
    id
}

#[actix_rt::test]
async fn the_dashboard_moves_as_draws_are_made() {
    let (_dir, gw) = world().await;
    let api = app!(gw);
    let (s, body) = call!(
        api,
        op(test::TestRequest::post().uri("/v1/admin/offices/maoming/releases"))
            .set_json(json!({"class": "small", "label": "粤K·A0000–A9999", "patterns": ["A####"]}))
    );
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let users = ["u1", "u2", "u3"];
    let mut apps = Vec::new();
    for (n, user) in users.iter().enumerate() {
        apps.push(applicant(&gw.engine, user, n as u32 + 1).await);
    }
    let server = browser::serve(&gw);
    let b = console(&server, 1366, 768).await;
    b.goto(&server.url("/console/#/dashboard")).await;
    b.wait_js(
        "document.querySelector('#dash-available')?.dataset.value === '10000'",
        "10 000 available before any draw",
    )
    .await;
    assert_eq!(data(&b, "#dash-held", "data-value").await, "0");
    assert_eq!(data(&b, "#dash-cards", "data-draws").await, "0");

    // Draws through the API: each holds a batch of ten numbers.
    for (user, id) in users.iter().zip(&apps) {
        let (s, body) = call!(
            api,
            citizen(
                test::TestRequest::post().uri(&format!("/v1/applications/{id}/draws")),
                user,
                &gw.engine
            )
            .set_json(json!({"exclude_four": false}))
        );
        assert_eq!(s, StatusCode::CREATED, "{body}");
    }
    b.wait_js(
        "document.querySelector('#dash-held')?.dataset.value === '30' \
         && document.querySelector('#dash-available')?.dataset.value === '9970' \
         && document.querySelector('#dash-cards')?.dataset.draws === '3' \
         && Number(document.querySelector('#dash-draws-per-s')?.dataset.value) > 0",
        "30 held, 9 970 available, 3 draws and a draw rate above zero after three draws",
    )
    .await;
    b.wait_js(
        "document.querySelector('#chart-rates path[data-series=draws]') !== null",
        "the draws line in the chart",
    )
    .await;
    assert_eq!(b.text("[data-release-available='1']").await, "9,970");

    // More draws keep it moving: another batch for u1 replaces its first (still 30 held).
    let (s, body) = call!(
        api,
        citizen(
            test::TestRequest::post().uri(&format!("/v1/applications/{}/draws", apps[0])),
            "u1",
            &gw.engine
        )
        .set_json(json!({"exclude_four": true}))
    );
    assert_eq!(s, StatusCode::CREATED, "{body}");
    b.wait_js(
        "document.querySelector('#dash-cards')?.dataset.draws === '4'",
        "4 draws on the dashboard",
    )
    .await;
    // A few seconds of an opening for the charts and the screenshots: six more applicants
    // draw and check once a second (every check names a number outside the pool: 409).
    b.exec(
        "const s = document.querySelector('#dash-window'); s.value = '1'; \
         s.dispatchEvent(new Event('change'));",
        vec![],
    )
    .await;
    let mut more = Vec::new();
    for n in 4..=9 {
        let user = format!("u{n}");
        let id = applicant(&gw.engine, &user, n).await;
        more.push((user, id));
    }
    for round in 0..4 {
        for (user, id) in &more {
            let (s, body) = call!(
                api,
                citizen(
                    test::TestRequest::post().uri(&format!("/v1/applications/{id}/draws")),
                    user,
                    &gw.engine
                )
                .set_json(json!({"exclude_four": round % 2 == 1}))
            );
            assert_eq!(s, StatusCode::CREATED, "{body}");
            let (s, body) = call!(
                api,
                citizen(
                    test::TestRequest::post().uri(&format!("/v1/applications/{id}/custom")),
                    user,
                    &gw.engine
                )
                .set_json(json!({"plates": [format!("B000{round}")]}))
            );
            assert_eq!(s, StatusCode::CONFLICT, "{body}");
        }
        actix_rt::time::sleep(Duration::from_millis(1_000)).await;
    }
    b.wait_js(
        "document.querySelector('#dash-cards')?.dataset.draws === '28' \
         && document.querySelector('#dash-cards')?.dataset.checks === '24'",
        "28 draws and 24 checks on the dashboard",
    )
    .await;
    // The reading that showed the last round: its rates and latency are on the page.
    b.screenshot("console-dashboard").await;
    b.set_size(390, 844).await;
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    b.screenshot("console-dashboard-phone").await;
    b.quit().await;
    server.stop().await;
}

#[actix_rt::test]
async fn a_certificate_import_shows_the_bad_row_and_keeps_the_good_ones() {
    let (dir, gw) = world().await;
    let api = app!(gw);
    let server = browser::serve(&gw);
    let b = console(&server, 1366, 768).await;
    b.goto(&server.url("/console/#/certificates")).await;
    b.wait("#cert-file").await;

    let csv = format!(
        "vin,voucher,class,energy\n{},{},small,fuel\n{},{},small_new_energy,diesel\n{},{},small_new_energy,bev\n",
        vin(21),
        voucher_no(21),
        vin(22),
        voucher_no(22),
        vin(23),
        voucher_no(23),
    );
    let path = dir.path().join("certificates.csv");
    std::fs::write(&path, csv).unwrap();
    let input = b.find("#cert-file").await.unwrap();
    b.cmd(
        "POST",
        &format!("/element/{input}/value"),
        Some(json!({"text": path.display().to_string()})),
    )
    .await;
    b.wait_text("#cert-chosen", "certificates.csv").await;
    b.click("#cert-import").await;
    b.wait("#cert-imported").await;
    assert_eq!(data(&b, "#cert-imported", "data-value").await, "2");
    assert_eq!(data(&b, "#cert-rejected", "data-value").await, "1");
    let reason = b.text("[data-row-error='2']").await;
    assert!(
        reason.contains("diesel"),
        "the bad row's reason: {reason:?}"
    );
    b.screenshot("console-certificates").await;

    // Through the API: the good rows' vehicles may apply, the bad row's may not.
    for (user, n, ok) in [("c21", 21, true), ("c22", 22, false), ("c23", 23, true)] {
        let (s, body) = call!(
            api,
            citizen(test::TestRequest::post().uri("/v1/sms"), user, &gw.engine)
                .set_json(json!({"purpose": "apply"}))
        );
        assert_eq!(s, StatusCode::OK, "{body}");
        let code = support::last_code(&gw, &phone_of(user), Purpose::Apply);
        let (s, body) = call!(
            api,
            citizen(
                test::TestRequest::post().uri("/v1/applications"),
                user,
                &gw.engine
            )
            .set_json(json!({
                "office": OFFICE, "vin": vin(n), "voucher": voucher_no(n),
                "notice_version": "v1", "sms_code": code,
            }))
        );
        if ok {
            assert_eq!(s, StatusCode::CREATED, "row of certificate {n}: {body}");
        } else {
            assert_eq!(
                s,
                StatusCode::UNPROCESSABLE_ENTITY,
                "certificate {n} was rejected: {body}"
            );
        }
    }
    b.quit().await;
    server.stop().await;
}

#[actix_rt::test]
async fn office_rules_are_edited_with_errors_on_the_field_and_a_claim_is_found_and_voided() {
    let (_dir, gw) = world().await;
    let api = app!(gw);
    let server = browser::serve(&gw);
    let b = console(&server, 1366, 768).await;

    // An out-of-range rule: the API's message beside that field; then a good value is saved.
    b.goto(&server.url("/console/#/offices")).await;
    b.click("[data-edit-office=maoming]").await;
    b.type_into("#rule-custom_per_check", "99").await;
    b.click("#office-save").await;
    b.wait_js(
        "document.querySelector('#rule-custom_per_check').getAttribute('aria-invalid') === 'true'",
        "custom_per_check marked invalid",
    )
    .await;
    b.wait_text(".field.has-error .field-error", "99").await;
    b.screenshot("console-office-error").await;
    let (_, office) = call!(api, test::TestRequest::get().uri("/v1/offices/maoming"));
    assert_eq!(office["rules"]["custom_per_check"], 5, "nothing changed");
    b.type_into("#rule-custom_per_check", "4").await;
    b.click("#office-save").await;
    b.wait("#office-new").await;
    b.wait_js(
        "document.querySelector('#office-form-box').children.length === 0",
        "the form closed after saving",
    )
    .await;
    let (_, office) = call!(api, test::TestRequest::get().uri("/v1/offices/maoming"));
    assert_eq!(office["rules"]["custom_per_check"], 4, "{office}");
    assert_eq!(office["notice"]["version"], "v1", "the rest kept");

    // A claim made through the API: found by VIN in the console, then voided there.
    let (s, _) = call!(
        api,
        op(test::TestRequest::post().uri("/v1/admin/offices/maoming/releases"))
            .set_json(json!({"class": "small", "patterns": ["A####"]}))
    );
    assert_eq!(s, StatusCode::CREATED);
    let id = applicant(&gw.engine, "w1", 31).await;
    let post = |path: String, body: Value| {
        citizen(test::TestRequest::post().uri(&path), "w1", &gw.engine).set_json(body)
    };
    let (s, drawn) = call!(api, post(format!("/v1/applications/{id}/draws"), json!({})));
    assert_eq!(s, StatusCode::CREATED, "{drawn}");
    let serial = drawn["batch"]["plates"][0]["serial"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, body) = call!(
        api,
        post(
            format!("/v1/applications/{id}/candidates"),
            json!({ "serial": serial })
        )
    );
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, body) = call!(
        api,
        post(
            format!("/v1/applications/{id}/claim"),
            json!({ "serial": serial })
        )
    );
    assert_eq!(s, StatusCode::CREATED, "{body}");

    b.goto(&server.url("/console/#/lookup")).await;
    b.type_into("#lookup-value", &vin(31)).await;
    b.click("#lookup-submit").await;
    b.wait_text("#lookup-result", &format!("粤K·{serial}"))
        .await;
    b.screenshot("console-lookup").await;

    b.goto(&server.url("/console/#/registrations")).await;
    b.type_into("#void-serial", &serial).await;
    b.click("#void-submit").await;
    b.wait_text(".field.has-error .field-error", "reason").await;
    b.type_into("#void-reason", "车主申请作废").await;
    b.click("#void-submit").await;
    b.wait_text("[role=status]", "已作废").await;
    let (s, apps) = call!(
        api,
        op(test::TestRequest::get().uri(&format!("/v1/admin/applications?vin={}", vin(31))))
    );
    assert_eq!(s, StatusCode::OK);
    assert_eq!(apps[0]["state"], "voided", "{apps}");
    b.quit().await;
    server.stop().await;
}
