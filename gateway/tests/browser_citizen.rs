//! The citizen's page in a real browser (headless Chromium through WebDriver, see
//! `browser/mod.rs`), against the real app on a loopback port: login by SMS, practice mode with a
//! winning custom check, then the real flow — office and pool notice, business notice, VIN error
//! on its field, apply by SMS, identity, keyboard keys matching the pool (which has holes), a
//! failed custom check with its reasons, a draw with 不包含4, a candidate, the claim, the
//! voucher page, re-entry after a reload — with screenshots at phone and desktop sizes.
#![allow(clippy::unwrap_used)]

use platepool_engine::{ApplicationRequest, Caller, Check, Engine, OfficeRules};
use platepool_gateway::sms::Purpose;
use platepool_gateway::Gateway;

mod browser;
mod support;

use browser::Browser;

const OFFICE: &str = "maoming";
const PHONE: &str = "13800138077";
const PHONE_SIZE: (u32, u32) = (390, 844);
const DESKTOP_SIZE: (u32, u32) = (1366, 768);

/// An office with short intervals (a test waits for real countdowns) and a pool with holes:
/// A1 followed by an even digit, and B2: the keyboard must enable exactly these.
async fn world() -> (tempfile::TempDir, Engine, Gateway) {
    let (dir, engine) = support::engine(None, None).await;
    let rules = OfficeRules {
        custom_quota: 4,
        custom_per_check: 2,
        custom_min_interval_ms: 1_500,
        random_quota: 3,
        sms_confirm_delay_ms: 1_000,
        opening_window_ms: 0,
        ..OfficeRules::default()
    };
    let who = "operator:test";
    engine
        .put_office(
            OFFICE,
            support::office("茂名市车辆管理所", &["small", "small_new_energy"], rules),
            who,
        )
        .await
        .unwrap();
    let now = engine.now_ms();
    let release = support::release(
        "small",
        "粤K·A1x/B2",
        &["A1[02468]##", "B2###"],
        now - 1_000,
    );
    engine.add_release(OFFICE, release, who).await.unwrap();
    let rows = (1..=3)
        .map(|n| support::certificate(n, "small", "fuel"))
        .collect();
    engine.import_certificates(rows, who).await.unwrap();
    let gw = support::gateway(&engine, support::gateway_config());
    (dir, engine, gw)
}

fn code(gw: &Gateway, phone: &str, purpose: Purpose) -> String {
    support::last_code(gw, phone, purpose)
}

/// Another citizen takes `serial` (the failed check's "taken").
async fn someone_claims(engine: &Engine, serial: &str) {
    let user = "rival";
    let id = engine
        .create_application(ApplicationRequest {
            office: OFFICE.into(),
            user: user.into(),
            phone: "13900000001".into(),
            vin: support::vin(3),
            voucher: support::voucher_no(3),
            notice_version: "v1".into(),
        })
        .await
        .unwrap();
    engine
        .verify_identity(&id, Caller::Citizen(user))
        .await
        .unwrap();
    // The first check waits the office's interval after the verification.
    actix_rt::time::sleep(std::time::Duration::from_millis(1_600)).await;
    let check = engine
        .custom_check(&id, Caller::Citizen(user), vec![serial.into()])
        .await
        .unwrap();
    assert!(matches!(check, Check::Claimed(_)), "{check:?}");
}

/// The enabled keys of the virtual keyboard once it has answered for `entered`.
async fn keys_for(b: &Browser, entered: &str) -> String {
    b.wait_js(
        &format!("document.querySelector('#keyboard')?.dataset.entered === '{entered}' && document.querySelector('#keyboard').dataset.ready === '1'"),
        &format!("the keyboard for {entered:?}"),
    )
    .await;
    b.exec(
        "return [...document.querySelectorAll('#keyboard .key[data-key]:not([disabled])')].map(k => k.dataset.key).join('')",
        vec![],
    )
    .await
    .as_str()
    .unwrap()
    .to_string()
}

/// Screenshots of the screen from its top, at phone and desktop sizes.
async fn both_sizes(b: &Browser, name: &str) {
    b.exec("window.scrollTo(0, 0)", vec![]).await;
    b.screenshot(&format!("{name}-phone")).await;
    b.set_size(DESKTOP_SIZE.0, DESKTOP_SIZE.1).await;
    b.screenshot(&format!("{name}-desktop")).await;
    b.set_size(PHONE_SIZE.0, PHONE_SIZE.1).await;
}

async fn login(b: &Browser, gw: &Gateway) {
    b.type_into("#login-phone", PHONE).await;
    b.click("#login-send").await;
    b.wait_text("#app", "验证码已发送").await;
    b.type_into("#login-code", &code(gw, PHONE, Purpose::Login))
        .await;
    b.click("#login-submit").await;
    b.wait("#start").await;
}

/// Practice: marked on every screen, a winning custom check, a void result.
async fn practice(b: &Browser) {
    b.click("#practice").await;
    b.wait_text("#practice-banner", "模拟选号").await;
    b.click("#office-next").await;
    b.wait("#keyboard").await;
    // A reload stays in practice.
    b.refresh().await;
    b.wait("#keyboard").await;
    assert!(b.text("#practice-banner").await.contains("模拟选号"));
    assert_eq!(keys_for(b, "").await, "AB");
    for key in ["B", "2", "3", "5", "7"] {
        b.click(&format!("#keyboard .key[data-key='{key}']")).await;
    }
    assert_eq!(
        keys_for(b, "B2357").await,
        "",
        "a complete number enables no key"
    );
    b.click("#custom-confirm").await;
    b.wait_text("#done-plate", "粤K·B2357").await;
    assert!(b.text("#app").await.contains("模拟"));
    assert!(b.text("#practice-banner").await.contains("模拟选号"));
    b.screenshot("citizen-practice-done-phone").await;
    b.click("#practice-exit").await;
    b.wait("#start").await;
    b.wait_js(
        "document.querySelector('#practice-banner').hidden",
        "the practice banner gone",
    )
    .await;
}

/// Stage 1: office, pool notice, business notice, VIN error, apply by SMS.
async fn apply(b: &Browser, gw: &Gateway) {
    b.click("#start").await;
    b.click("#pool-maoming").await;
    b.wait_text("#pool-notice", "粤K·A1x/B2").await;
    b.screenshot("citizen-pool-notice-phone").await;
    b.click("#pool-close").await;
    b.click("#office-next").await;
    b.wait_text("#notice-text", "业务须知").await;
    b.click("#notice-agree").await;
    // A VIN whose check digit (position 9) is wrong: the reason and the position on the field.
    let good = support::vin(1);
    let mut bad: Vec<char> = good.chars().collect();
    bad[8] = if bad[8] == '0' { '1' } else { '0' };
    let bad: String = bad.into_iter().collect();
    b.type_into("#vin", &bad).await;
    b.type_into("#voucher", &support::voucher_no(1)).await;
    b.click("#confirm-submit").await;
    b.wait_text("#vin-error", "第9位").await;
    assert_eq!(
        b.text(".vin-marker .bad").await,
        bad.chars().nth(8).unwrap().to_string()
    );
    b.click("#vin-help-btn").await;
    b.wait_text("#vin-help", "合格证").await;
    both_sizes(b, "citizen-vin-error").await;
    b.type_into("#vin", &good).await;
    b.click("#confirm-submit").await;
    b.click("#apply-send").await;
    b.wait_text("dialog", "验证码已发送").await;
    b.type_into("#apply-code", &code(gw, PHONE, Purpose::Apply))
        .await;
    b.click("#apply-submit").await;
    b.wait_text("#service-custom-left", "4").await;
    b.screenshot("citizen-service-phone").await;
}

#[actix_rt::test]
async fn the_whole_citizen_flow_in_a_browser() {
    let (_dir, engine, gw) = world().await;
    let server = browser::serve(&gw);
    let b = Browser::start(PHONE_SIZE.0, PHONE_SIZE.1).await;
    b.goto(&server.url("/")).await;
    b.wait("#login-phone").await;
    b.screenshot("citizen-login-phone").await;
    login(&b, &gw).await;
    both_sizes(&b, "citizen-start").await;
    practice(&b).await;
    apply(&b, &gw).await;

    // Identity: the confirm button counts the office's delay down before it can be pressed.
    b.click("#start-selection").await;
    b.click("#identity-send").await;
    b.wait_text("#identity-submit", "确认(").await;
    b.type_into("#identity-code", &code(&gw, PHONE, Purpose::Identity))
        .await;
    b.click("#identity-submit").await;

    // 自编: the keys follow the pool's holes, on screen and from the physical keyboard.
    assert_eq!(keys_for(&b, "").await, "AB");
    b.click("#keyboard .key[data-key='A']").await;
    assert_eq!(keys_for(&b, "A").await, "1");
    b.keys("1").await;
    assert_eq!(keys_for(&b, "A1").await, "02468");
    b.keys("3").await; // not enabled: nothing is typed
    b.keys("2").await;
    assert_eq!(keys_for(&b, "A12").await, "0123456789");
    b.keys("00").await;
    keys_for(&b, "A1200").await;
    b.wait_text("#custom-confirm", "确认选号").await;
    b.screenshot("citizen-custom-phone").await;
    // Someone else takes it meanwhile: the check fails with the reason, debiting one.
    someone_claims(&engine, "A1200").await;
    b.click("#custom-confirm").await;
    b.wait_text("#check-reasons", "粤K·A1200").await;
    assert!(b.text("#check-reasons").await.contains("已被预选"));
    assert!(b.text("#custom-left").await.contains("3"));
    // The interval counts down on the button.
    b.wait_text("#custom-confirm", "确认选号(").await;
    both_sizes(&b, "citizen-custom-failed").await;

    // 随机 with 不包含4: ten numbers without a 4, a countdown, one kept, then claimed.
    b.click("#tab-random").await;
    b.click("#exclude-four").await;
    b.wait_text("#draw", "随机一次(3)").await;
    b.click("#draw").await;
    b.wait_text("#batch-countdown", "距失效").await;
    let plates = b.texts("#batch-plates .plate").await;
    assert_eq!(plates.len(), 10, "{plates:?}");
    assert!(plates.iter().all(|p| !p.contains('4')), "{plates:?}");
    b.wait_text("#draw", "换一批(2)").await;
    assert!(
        b.text("#random-left").await.contains('2'),
        "the quota left follows the draw"
    );
    b.click("#batch-plates button").await;
    b.wait_text("#cand-countdown", "距失效").await;
    let kept = b.text("#cand-plates .plate").await;
    assert_eq!(kept, plates[0]);
    assert!(
        b.exec(
            "return document.querySelectorAll('#batch-plates button:not([disabled])').length",
            vec![]
        )
        .await
            == 0,
        "one pick per batch"
    );
    both_sizes(&b, "citizen-random").await;
    b.click("#claim").await;
    b.wait_text("#done-plate", &kept).await;
    assert!(b
        .text("#register-by")
        .await
        .contains("前到 茂名市车辆管理所"));
    both_sizes(&b, "citizen-done").await;

    // The printable voucher (the API's page, reached with the session cookie).
    let voucher = b
        .exec(
            "return document.querySelector('#print-voucher').href",
            vec![],
        )
        .await;
    let done_url = server.url("/");
    b.goto(voucher.as_str().unwrap()).await;
    b.wait_text("body", &kept).await;
    b.screenshot("citizen-voucher-phone").await;

    // Re-entry: a reload resumes at the done page.
    b.goto(&done_url).await;
    b.wait_text("#done-plate", &kept).await;
    b.refresh().await;
    b.wait_text("#done-plate", &kept).await;
    assert!(b.text("#steps").await.contains("完成号牌预选"));

    // English toggle.
    b.click("#lang").await;
    b.wait_text("h1", "Pre-selection complete").await;
    b.click("#lang").await;
    b.wait_text("h1", "完成号牌预选").await;
    b.quit().await;
    server.stop().await;
}

/// Both quotas spent and no live hold: re-entry shows the exhausted page (R4.7, R4.9).
#[actix_rt::test]
async fn an_exhausted_application_shows_the_counter_page() {
    let (_dir, engine) = support::engine(None, None).await;
    let rules = OfficeRules {
        custom_quota: 1,
        custom_per_check: 1,
        custom_min_interval_ms: 1_000,
        random_quota: 1,
        random_ttl_ms: 1_000,
        candidate_ttl_ms: 1_000,
        opening_window_ms: 0,
        ..OfficeRules::default()
    };
    let who = "operator:test";
    let office = support::office("茂名市车辆管理所", &["small"], rules);
    engine.put_office(OFFICE, office, who).await.unwrap();
    let now = engine.now_ms();
    let release = support::release("small", "粤K·B2", &["B2###"], now - 1_000);
    engine.add_release(OFFICE, release, who).await.unwrap();
    let rows = vec![support::certificate(1, "small", "fuel")];
    engine.import_certificates(rows, who).await.unwrap();
    let gw = support::gateway(&engine, support::gateway_config());
    // The user the page's login makes of PHONE spends both quotas.
    let user = platepool_gateway::routes::login::login_user_id(support::SECRET, PHONE);
    let id = engine
        .create_application(ApplicationRequest {
            office: OFFICE.into(),
            user: user.clone(),
            phone: PHONE.into(),
            vin: support::vin(1),
            voucher: support::voucher_no(1),
            notice_version: "v1".into(),
        })
        .await
        .unwrap();
    let me = Caller::Citizen(&user);
    engine.verify_identity(&id, me).await.unwrap();
    actix_rt::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let check = engine
        .custom_check(&id, me, vec!["A1234".into()])
        .await
        .unwrap();
    assert!(matches!(check, Check::NoneAvailable { .. }), "{check:?}");
    engine.draw(&id, me, false).await.unwrap();
    // The batch expires after 1 s; then the application is exhausted.
    actix_rt::time::sleep(std::time::Duration::from_millis(2_500)).await;

    let server = browser::serve(&gw);
    let b = Browser::start(PHONE_SIZE.0, PHONE_SIZE.1).await;
    b.goto(&server.url("/")).await;
    login_only(&b, &gw).await;
    b.wait_text("h1", "无法继续网上选号").await;
    assert!(b.text("#app").await.contains("请到车管所窗口现场选号"));
    b.screenshot("citizen-exhausted-phone").await;
    b.quit().await;
    server.stop().await;
}

/// Signs in without waiting for the start page.
async fn login_only(b: &Browser, gw: &Gateway) {
    b.type_into("#login-phone", PHONE).await;
    b.click("#login-send").await;
    b.wait_text("#app", "验证码已发送").await;
    b.type_into("#login-code", &code(gw, PHONE, Purpose::Login))
        .await;
    b.click("#login-submit").await;
}
