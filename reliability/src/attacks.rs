//! Campaign 6: attacks on the gateway (SPEC §7), through a real `HttpServer` on 127.0.0.1:0
//! (loopback only) built from the app factory, with the default rate limits.
//!
//! Each attack states what API.md promises and checks the answer: forged, unsigned, expired,
//! replayed and wrong-version tokens; someone else's application on every application route
//! (IDOR); SMS code brute force and replay; operator routes without the operator credential;
//! a bot at ~1,000 requests/s against one application and against many (with spoofed
//! `X-Forwarded-For`), counted against what a person pressing buttons can get; path and header
//! tricks; the standalone login's session cookie ([`cookie`]: forged, expired, cross-site).

mod cookie;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpServer};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use platepool_engine::actor::Clock;
use platepool_engine::{AppId, OfficeRules};
use platepool_gateway::auth::{sign_token, TokenClaims};
use platepool_gateway::config::{RATE_LIMIT_IP_PER_S_DEFAULT, RATE_LIMIT_USER_PER_S_DEFAULT};

use crate::fuzz::http::{check_answer, token, World, AUDITOR, CLERK_ELSEWHERE, OFFICE, OPERATOR};
use crate::http::{once, Answer, Conn};
use crate::{thousands, Mode, Outcome};

/// An engine clock that runs `factor` times faster than real time, so a bot's minute of office
/// time takes 60/`factor` seconds. The gateway's rate limits keep real time, which only makes the
/// bot stronger against the office's own rules.
#[derive(Debug)]
pub struct FastClock {
    start: Instant,
    start_ms: u64,
    factor: u64,
}

impl Clock for FastClock {
    fn now_ms(&self) -> u64 {
        self.start_ms + self.start.elapsed().as_millis() as u64 * self.factor
    }
}

/// What the test server was set up with.
struct Setup {
    port: u16,
    victim: AppId,
    victim_token: String,
    other_token: String,
    bots: Vec<(AppId, String)>,
    now_ms: u64,
}

/// A gateway served on a free loopback port from its own thread.
struct Server {
    setup: Setup,
    handle: actix_web::dev::ServerHandle,
    thread: Option<thread::JoinHandle<()>>,
}

impl Server {
    fn start(clock: Arc<dyn Clock>, bots: u32) -> Result<Server, String> {
        let (tx, rx) = mpsc::channel::<Result<(Setup, actix_web::dev::ServerHandle), String>>();
        let thread = thread::spawn(move || {
            let sys = actix_rt::System::new();
            sys.block_on(async move {
                let rules = OfficeRules {
                    opening_window_ms: 0,
                    ..OfficeRules::default()
                };
                let limits = (RATE_LIMIT_USER_PER_S_DEFAULT, RATE_LIMIT_IP_PER_S_DEFAULT);
                let world = match World::with_clock(limits, rules, clock).await {
                    Ok(w) => w,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let mut bot_apps = Vec::new();
                for b in 0..bots {
                    match world
                        .verified_citizen(&format!("bot{b}"), &format!("1390000{b:04}"), 100 + b)
                        .await
                    {
                        Ok(x) => bot_apps.push(x),
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                }
                let gw = world.gw.clone();
                let server = HttpServer::new(move || {
                    App::new()
                        .service(gw.scope(""))
                        .default_service(web::to(platepool_gateway::not_found))
                })
                .workers(2)
                .bind(("127.0.0.1", 0));
                let server = match server {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let port = server.addrs().first().map(|a| a.port()).unwrap_or(0);
                let running = server.run();
                let setup = Setup {
                    port,
                    victim: world.app.clone(),
                    victim_token: world.citizen.clone(),
                    other_token: world.other.clone(),
                    bots: bot_apps,
                    now_ms: world.engine.now_ms(),
                };
                let _ = tx.send(Ok((setup, running.handle())));
                let _ = running.await;
                drop(world);
            });
        });
        let (setup, handle) = rx
            .recv_timeout(Duration::from_secs(120))
            .map_err(|e| format!("test server did not start: {e}"))??;
        Ok(Server {
            setup,
            handle,
            thread: Some(thread),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let h = self.handle.clone();
        let _ = futures_util::FutureExt::now_or_never(h.stop(false));
        // `stop` only signals; give the server thread a moment, then leave it.
        if let Some(t) = self.thread.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !t.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// Tallies attacks and their verdicts.
struct Ledger<'a> {
    out: &'a mut Outcome,
    tried: u64,
    refused: u64,
}

impl Ledger<'_> {
    /// One attack: `ok` when it was refused as documented.
    fn attack(
        &mut self,
        name: &str,
        expected: &str,
        answer: &std::io::Result<Answer>,
        ok: impl Fn(&Answer) -> bool,
    ) {
        self.tried += 1;
        match answer {
            Ok(a) if ok(a) => {
                self.refused += 1;
            }
            Ok(a) => self.out.violation(format!(
                "{name}: expected {expected}, got {} {}",
                a.status,
                a.text().chars().take(200).collect::<String>()
            )),
            Err(e) => self.out.violation(format!("{name}: no answer ({e})")),
        }
    }
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

fn is(status: u16, code: &'static str) -> impl Fn(&Answer) -> bool {
    move |a: &Answer| {
        a.status == status && a.code() == code && check_answer(a.status, &a.body).is_ok()
    }
}

/// The campaign for the `reliability` binary.
pub fn campaign(mode: Mode) -> Outcome {
    let started = Instant::now();
    let mut out = Outcome::new("attacks", "attacks on the gateway: tokens, IDOR, SMS, operator routes, bots, paths, headers (campaign 6)");
    match functional(&mut out) {
        Ok((tried, refused)) => {
            out.figure("attacks tried (functional)", tried);
            out.figure("refused as documented", refused);
        }
        Err(e) => out.violation(format!("cannot run the functional attacks: {e}")),
    }
    if let Err(e) = bots(&mut out, mode) {
        out.violation(format!("cannot run the bot attacks: {e}"));
    }
    out.figure(
        "what attackers gained",
        if out.violations.is_empty() {
            "nothing"
        } else {
            "see violations"
        },
    );
    out.elapsed = started.elapsed();
    out
}

/// The attacks without the bots (a few seconds; the tests run these).
pub fn functional_only() -> Outcome {
    let started = Instant::now();
    let mut out = Outcome::new("attacks", "attacks on the gateway (functional part)");
    if let Err(e) = functional(&mut out) {
        out.violation(format!("cannot run the functional attacks: {e}"));
    }
    out.elapsed = started.elapsed();
    out
}

fn functional(out: &mut Outcome) -> Result<(u64, u64), String> {
    let server = Server::start(Arc::new(platepool_engine::actor::SystemClock), 0)?;
    let s = &server.setup;
    let port = s.port;
    let app = s.victim.to_string();
    let me = |a: &str| once(port, "GET", "/v1/me", &[("Authorization", a)], None);
    let mut l = Ledger {
        out,
        tried: 0,
        refused: 0,
    };

    // ---- tokens (S1) ----
    let now_s = s.now_ms / 1000;
    let claims = TokenClaims {
        user: "u1".into(),
        phone: "13800000001".into(),
        exp: now_s + 3_600,
    };
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
    let good = s.victim_token.clone();
    let forged = sign_token("not-the-secret-0123456789abcdef", &claims);
    let expired = token("u1", "13800000001", now_s - 1);
    let admin_payload =
        URL_SAFE_NO_PAD.encode(br#"{"user":"u2","phone":"13800000002","exp":9999999999}"#);
    let sig = good.rsplit('.').next().unwrap_or("").to_string();
    let cases: Vec<(&str, String)> = vec![
        ("no Authorization header", String::new()),
        (
            "unsigned token (payload only)",
            format!("Bearer v1.{payload}"),
        ),
        (
            "unsigned token (empty signature)",
            format!("Bearer v1.{payload}."),
        ),
        ("token signed with another secret", bearer(&forged)),
        (
            "payload swapped under a valid signature",
            format!("Bearer v1.{admin_payload}.{sig}"),
        ),
        ("expired token", bearer(&expired)),
        (
            "wrong version (v2)",
            bearer(&good.replacen("v1.", "v2.", 1)),
        ),
        (
            "wrong version (v0, re-signed)",
            bearer(&format!("v0.{payload}.{sig}")),
        ),
        ("token 10 KB long", bearer(&"a".repeat(10_000))),
        ("Basic instead of Bearer", "Basic dTE6cGFzcw==".into()),
        ("the operator token as a citizen token", bearer(OPERATOR)),
        (
            "a token with a trailing extra part",
            bearer(&format!("{good}.x")),
        ),
    ];
    for (name, auth) in &cases {
        let answer = if auth.is_empty() {
            once(port, "GET", "/v1/me", &[], None)
        } else {
            me(auth)
        };
        l.attack(name, "401 unauthorized", &answer, is(401, "unauthorized"));
    }
    // Replay: a captured token works until it expires and never after; a replayed state change
    // with the same Idempotency-Key is answered from the first time and debits nothing twice.
    let ok = me(&bearer(&good));
    l.attack("the genuine token (control)", "200", &ok, |a| {
        a.status == 200
    });
    let before = app_view(port, &app, &good)?;
    let mut replays = Vec::new();
    for _ in 0..20 {
        replays.push(once(
            port,
            "POST",
            &format!("/v1/applications/{app}/draws"),
            &[
                ("Authorization", &bearer(&good)),
                ("Content-Type", "application/json"),
                ("Idempotency-Key", "replay-1"),
            ],
            Some(b"{}"),
        ));
        thread::sleep(Duration::from_millis(120));
    }
    let after = app_view(port, &app, &good)?;
    let first = replays
        .first()
        .and_then(|r| r.as_ref().ok())
        .map(|a| a.body.clone());
    let same = replays
        .iter()
        .all(|r| r.as_ref().is_ok_and(|a| Some(&a.body) == first.as_ref()));
    let debited =
        before["random_left"].as_u64().unwrap_or(0) - after["random_left"].as_u64().unwrap_or(0);
    l.tried += 1;
    if same && debited == 1 {
        l.refused += 1;
        l.out.held("a draw replayed 20 times with one Idempotency-Key got the first answer each time and debited one draw");
    } else {
        l.out.violation(format!(
            "replayed draw: answers identical {same}, draws debited {debited} (expected 1)"
        ));
    }

    // ---- IDOR (I7): u2 on u1's application, every route ----
    let other = bearer(&s.other_token);
    let routes: Vec<(&str, String, Option<&[u8]>)> = vec![
        ("GET", format!("/v1/applications/{app}"), None),
        (
            "POST",
            format!("/v1/applications/{app}/identity"),
            Some(br#"{"sms_code":"123456"}"#),
        ),
        (
            "GET",
            format!("/v1/applications/{app}/keyboard?entered=A1"),
            None,
        ),
        (
            "POST",
            format!("/v1/applications/{app}/custom"),
            Some(br#"{"plates":["A1234"]}"#),
        ),
        ("POST", format!("/v1/applications/{app}/draws"), Some(b"{}")),
        (
            "POST",
            format!("/v1/applications/{app}/candidates"),
            Some(br#"{"serial":"A1234"}"#),
        ),
        (
            "POST",
            format!("/v1/applications/{app}/claim"),
            Some(br#"{"serial":"A1234"}"#),
        ),
        ("GET", format!("/v1/applications/{app}/voucher"), None),
    ];
    let before = app_view(port, &app, &good)?;
    for (method, path, body) in &routes {
        let a = once(
            port,
            method,
            path,
            &[
                ("Authorization", &other),
                ("Content-Type", "application/json"),
            ],
            *body,
        );
        l.attack(
            &format!("IDOR {method} {path}"),
            "404 not_found",
            &a,
            is(404, "not_found"),
        );
    }
    let a = once(
        port,
        "POST",
        "/v1/sms",
        &[
            ("Authorization", &other),
            ("Content-Type", "application/json"),
        ],
        Some(format!(r#"{{"purpose":"identity","application":"{app}"}}"#).as_bytes()),
    );
    l.attack(
        "IDOR: an identity code for someone else's application",
        "404 not_found",
        &a,
        is(404, "not_found"),
    );
    let after = app_view(port, &app, &good)?;
    l.tried += 1;
    if before["random_left"] == after["random_left"]
        && before["custom_left"] == after["custom_left"]
        && before["state"] == after["state"]
    {
        l.refused += 1;
        l.out.held("IDOR: another user got 404 on every application route and the application did not change");
    } else {
        l.out
            .violation("IDOR attempts changed the victim's application");
    }

    // ---- SMS codes (S2) ----
    sms_attacks(&mut l, port)?;

    // ---- the standalone login's session cookie (S5) ----
    cookie::cookie_attacks(&mut l, port)?;

    // ---- operator routes without the operator credential ----
    let citizen = bearer(&good);
    let admin: Vec<(&str, &str, Option<&[u8]>)> = vec![
        (
            "PUT",
            "/v1/admin/offices/evil",
            Some(r#"{"name":"x","prefix":"粤K","classes":["small"]}"#.as_bytes()),
        ),
        (
            "POST",
            "/v1/admin/offices/maoming/releases",
            Some(br#"{"class":"small","patterns":["B####"]}"#),
        ),
        ("DELETE", "/v1/admin/offices/maoming/releases/1", None),
        ("DELETE", "/v1/admin/offices/maoming/plates/A0001", None),
        ("POST", "/v1/admin/certificates", Some(b"[]")),
        (
            "POST",
            "/v1/admin/registrations",
            Some(br#"{"office":"maoming","serial":"A0001"}"#),
        ),
        (
            "POST",
            "/v1/admin/offices/maoming/claims/A0001/void",
            Some(br#"{"reason":"x"}"#),
        ),
        ("GET", "/v1/admin/applications?user=u1", None),
        ("GET", "/v1/admin/offices/maoming/stats", None),
        ("GET", "/v1/admin/blacklist", None),
        (
            "DELETE",
            "/v1/admin/blacklist/u1",
            Some(br#"{"reason":"x"}"#),
        ),
        ("GET", "/v1/admin/audit?office=maoming", None),
        (
            "POST",
            "/v1/admin/tokens",
            Some(br#"{"user":"evil","phone":"13800000009"}"#),
        ),
        ("GET", "/v1/admin/sms/outbox", None),
    ];
    // A clerk of another office, and an auditor writing (SPEC S4): 403, nothing changed.
    for (method, path, body) in &admin {
        let headers = |token: &'static str| {
            [
                ("Authorization", bearer(token)),
                ("Content-Type", "application/json".to_string()),
            ]
        };
        let clerk = headers(CLERK_ELSEWHERE);
        let clerk: Vec<(&str, &str)> = clerk.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let a = once(port, method, path, &clerk, *body);
        l.attack(
            &format!("clerk of another office: {method} {path}"),
            "403 forbidden",
            &a,
            is(403, "forbidden"),
        );
        if *method != "GET" {
            let auditor = headers(AUDITOR);
            let auditor: Vec<(&str, &str)> =
                auditor.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let a = once(port, method, path, &auditor, *body);
            l.attack(
                &format!("auditor writing: {method} {path}"),
                "403 forbidden",
                &a,
                is(403, "forbidden"),
            );
        }
    }
    for (method, path, body) in &admin {
        let none = once(
            port,
            method,
            path,
            &[("Content-Type", "application/json")],
            *body,
        );
        l.attack(
            &format!("no credential: {method} {path}"),
            "401 unauthorized",
            &none,
            is(401, "unauthorized"),
        );
        let cit = once(
            port,
            method,
            path,
            &[
                ("Authorization", &citizen),
                ("Content-Type", "application/json"),
            ],
            *body,
        );
        l.attack(
            &format!("citizen token: {method} {path}"),
            "403 forbidden",
            &cit,
            is(403, "forbidden"),
        );
        let wrong = once(
            port,
            method,
            path,
            &[
                (
                    "Authorization",
                    "Bearer reliability-operator-token-0123456780",
                ),
                ("Content-Type", "application/json"),
            ],
            *body,
        );
        l.attack(
            &format!("wrong operator token: {method} {path}"),
            "401 unauthorized",
            &wrong,
            is(401, "unauthorized"),
        );
    }
    let evil = once(port, "GET", "/v1/offices/evil", &[], None);
    l.attack(
        "the office PUT without credentials does not exist",
        "404",
        &evil,
        |a| a.status == 404,
    );

    // ---- path tricks ----
    let long_id = format!("maoming-{}", "9".repeat(10_000));
    let paths: Vec<String> = vec![
        format!("/v1/applications/{app}/../../admin/blacklist"),
        "/v1/applications/..%2F..%2Fadmin%2Fblacklist".into(),
        "/v1/admin/../admin/blacklist".into(),
        "/v1/admin%2Fblacklist".into(),
        "/v1/applications/%2e%2e/%2e%2e/admin/blacklist".into(),
        format!("/v1/applications/{}", app.replace('-', "%2D")),
        format!("/v1/applications/{}%00", app),
        format!("/v1/applications/{}", app.to_uppercase()),
        "/v1/applications/maoming-01".into(),
        "/v1/applications/maoming-+1".into(),
        "/v1/applications/maoming--1".into(),
        "/v1/applications/maoming-18446744073709551616".into(),
        "/v1/applications/maoming-%D9%A1".into(),
        "/v1/applications/%E8%8C%82%E5%90%8D-1".into(),
        format!("/v1/applications/{long_id}"),
        "/v1/applications/maoming-p0".into(),
        "/v1/applications/".into(),
        "//v1//applications//maoming-1".into(),
    ];
    for p in &paths {
        let a = once(port, "GET", p, &[("Authorization", &other)], None);
        let shown: String = p.chars().take(80).collect();
        l.attack(
            &format!("path trick {shown}"),
            "a 4xx that reveals nothing (404 for ids)",
            &a,
            |a| {
                (400..500).contains(&a.status)
                    && a.status != 200
                    && (a.body.is_empty()
                        || check_answer(a.status, &a.body).is_ok()
                        || a.json().is_null())
                    && !a.text().contains("\"vin\"")
            },
        );
    }
    let huge_path = format!("/v1/applications/{}", "a".repeat(200_000));
    let a = once(port, "GET", &huge_path, &[("Authorization", &other)], None);
    l.attack(
        "a 200 KB path",
        "refused by the HTTP layer (4xx) or closed, no 5xx",
        &a,
        |a| (400..500).contains(&a.status),
    );

    // ---- header tricks ----
    let a = Conn::open(port).map_err(|e| e.to_string())?.send(
        "GET",
        &format!("/v1/applications/{app}"),
        &[("Authorization", &other), ("Authorization", &citizen)],
        None,
    );
    l.attack(
        "duplicate Authorization (attacker's first, victim's second)",
        "404 (only the first is read)",
        &a,
        is(404, "not_found"),
    );
    let a = Conn::open(port).map_err(|e| e.to_string())?.send(
        "GET",
        "/v1/admin/blacklist",
        &[
            ("Authorization", &citizen),
            (
                "Authorization",
                "Bearer reliability-operator-token-0123456780",
            ),
        ],
        None,
    );
    l.attack(
        "duplicate Authorization on an operator route",
        "403 (the citizen token is read, never promoted)",
        &a,
        is(403, "forbidden"),
    );
    let big = "x".repeat(64 * 1024);
    let a = once(
        port,
        "GET",
        "/v1/me",
        &[("Authorization", &citizen), ("X-Junk", &big)],
        None,
    );
    l.attack(
        "a 64 KB header",
        "served normally or refused by the HTTP layer, never 5xx",
        &a,
        |a| a.status < 500,
    );
    let huge = "x".repeat(1024 * 1024);
    let a = once(
        port,
        "GET",
        "/v1/me",
        &[("Authorization", &citizen), ("X-Junk", &huge)],
        None,
    );
    l.tried += 1;
    match a {
        Ok(a) if a.status >= 500 => {
            l.out
                .violation(format!("a 1 MB header: {} {}", a.status, a.text()))
        }
        Ok(a) if a.status < 400 => l
            .out
            .violation(format!("a 1 MB header was served: {}", a.status)),
        _ => l.refused += 1,
    }
    let many: Vec<(String, String)> = (0..200)
        .map(|i| (format!("X-H{i}"), "v".to_string()))
        .collect();
    let many_refs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let a = once(port, "GET", "/v1/me", &many_refs, None);
    l.attack("200 headers", "431 or 400 from the HTTP layer", &a, |a| {
        matches!(a.status, 400 | 431)
    });
    let smuggle = format!(
        "POST /v1/applications/{app}/draws HTTP/1.1\r\nHost: x\r\nAuthorization: {citizen}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    );
    let a = Conn::open(port)
        .map_err(|e| e.to_string())?
        .raw(smuggle.as_bytes());
    l.attack(
        "Content-Length with Transfer-Encoding (request smuggling)",
        "400 from the HTTP layer",
        &a,
        |a| a.status == 400,
    );
    let a = once(
        port,
        "POST",
        &format!("/v1/applications/{app}/draws"),
        &[
            ("Authorization", &citizen),
            ("Content-Type", "application/json"),
        ],
        Some(&vec![b' '; 70 * 1024]),
    );
    l.attack(
        "a 70 KB body on a 64 KB route",
        "413 payload_too_large",
        &a,
        is(413, "payload_too_large"),
    );
    let after = app_view(port, &app, &good)?;
    l.tried += 1;
    if after["random_left"].as_u64() == Some(4) {
        l.refused += 1;
    } else {
        l.out.violation(format!("after every attack the victim's application shows random_left {} (expected 4: the one replayed draw)", after["random_left"]));
    }
    l.out.tried(format!(
        "{} functional attacks: {} token forgeries and misuses, idempotent replay, IDOR on {} application routes, SMS brute force and replay, {} operator routes × 3 credentials, {} path tricks, 6 header tricks",
        l.tried,
        cases.len(),
        routes.len() + 1,
        admin.len(),
        paths.len() + 1
    ));
    if l.out.violations.is_empty() {
        l.out.held("every token forgery, expiry, version and misuse answered 401 unauthorized; no operator route answered anything but 401/403 without the operator token (S1); a clerk of another office and an auditor writing got 403 on every operator route (S4)");
        l.out.held("path and header tricks never reached another user's data or an operator route; oversize input was refused by the HTTP layer or with 413; no 5xx");
    }
    let (tried, refused) = (l.tried, l.refused);
    drop(server);
    Ok((tried, refused))
}

fn app_view(port: u16, app: &str, token: &str) -> Result<serde_json::Value, String> {
    let a = once(
        port,
        "GET",
        &format!("/v1/applications/{app}"),
        &[("Authorization", &bearer(token))],
        None,
    )
    .map_err(|e| e.to_string())?;
    if a.status != 200 {
        return Err(format!("cannot read {app}: {} {}", a.status, a.text()));
    }
    Ok(a.json())
}

/// The last 6-digit code sent to `phone`, from the operator's outbox.
fn last_code(port: u16, phone: &str) -> Option<String> {
    let a = once(
        port,
        "GET",
        &format!("/v1/admin/sms/outbox?phone={phone}"),
        &[("Authorization", &bearer(OPERATOR))],
        None,
    )
    .ok()?;
    let v = a.json();
    let text = v.as_array()?.last()?["text"].as_str()?.to_string();
    let chars: Vec<char> = text.chars().collect();
    chars
        .windows(6)
        .map(|w| w.iter().collect::<String>())
        .find(|w| w.chars().all(|c| c.is_ascii_digit()))
}

fn sms_attacks(l: &mut Ledger, port: u16) -> Result<(), String> {
    let now_s = platepool_engine::calendar::now_ms() / 1000;
    let victim = token("sms_victim", "13700000001", now_s + 3_600);
    let auth = bearer(&victim);
    let h = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let sent = once(port, "POST", "/v1/sms", &h, Some(br#"{"purpose":"apply"}"#));
    l.attack("send an apply code (control)", "200", &sent, |a| {
        a.status == 200
    });
    let again = once(port, "POST", "/v1/sms", &h, Some(br#"{"purpose":"apply"}"#));
    l.attack(
        "a second code within 60 s",
        "429 sms_too_soon",
        &again,
        is(429, "sms_too_soon"),
    );
    let code = last_code(port, "13700000001").ok_or("no apply code in the outbox")?;
    let body = |c: &str| {
        format!(
            r#"{{"office":"{OFFICE}","vin":"{}","voucher":"WDZ0000050","notice_version":"v1","sms_code":"{c}"}}"#,
            crate::fuzz::http::vin(50)
        )
    };
    // Brute force: wrong codes (never the right one), then the right one.
    let mut tries = 0;
    let mut wrong_answers = Vec::new();
    let mut guess = 0u32;
    while tries < 5 {
        let g = format!("{guess:06}");
        guess += 1;
        if g == code {
            continue;
        }
        tries += 1;
        wrong_answers.push(once(
            port,
            "POST",
            "/v1/applications",
            &h,
            Some(body(&g).as_bytes()),
        ));
    }
    for (i, a) in wrong_answers.iter().enumerate() {
        l.attack(
            &format!("brute force: wrong code {}", i + 1),
            "422 sms_code_invalid",
            a,
            is(422, "sms_code_invalid"),
        );
    }
    let right = once(
        port,
        "POST",
        "/v1/applications",
        &h,
        Some(body(&code).as_bytes()),
    );
    l.attack(
        "the right code after 5 wrong ones",
        "422 sms_code_invalid (the code is dead)",
        &right,
        is(422, "sms_code_invalid"),
    );
    l.out.held(format!(
        "SMS brute force: after 5 wrong tries the code is dead, even the right one is refused; a guesser wins with probability 5/1,000,000 per code and may ask for one code per 60 s ({} codes a day at most)",
        24 * 60
    ));
    // Replay of an identity code: verify once, then replay the same code.
    let cit = token("sms_replay", "13700000002", now_s + 3_600);
    let auth = bearer(&cit);
    let h = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let _ = once(port, "POST", "/v1/sms", &h, Some(br#"{"purpose":"apply"}"#));
    let code = last_code(port, "13700000002").ok_or("no apply code")?;
    let created = once(
        port,
        "POST",
        "/v1/applications",
        &h,
        Some(
            body(&code)
                .replace("WDZ0000050", "WDZ0000051")
                .replace(&crate::fuzz::http::vin(50), &crate::fuzz::http::vin(51))
                .as_bytes(),
        ),
    );
    let created = created.map_err(|e| e.to_string())?;
    if created.status != 201 {
        return Err(format!(
            "cannot apply for the replay test: {} {}",
            created.status,
            created.text()
        ));
    }
    let replayed = once(
        port,
        "POST",
        "/v1/applications",
        &h,
        Some(
            body(&code)
                .replace("WDZ0000050", "WDZ0000052")
                .replace(&crate::fuzz::http::vin(50), &crate::fuzz::http::vin(52))
                .as_bytes(),
        ),
    );
    l.attack(
        "an apply code replayed for a second vehicle",
        "422 sms_code_invalid or sms_code_expired",
        &replayed,
        |a| a.status == 422 && matches!(a.code().as_str(), "sms_code_invalid" | "sms_code_expired"),
    );
    Ok(())
}

/// What one bot run counted.
#[derive(Debug, Default)]
struct BotCount {
    sent: AtomicU64,
    rate_limited: AtomicU64,
    checks: AtomicU64,
    draws: AtomicU64,
    too_soon: AtomicU64,
    other: AtomicU64,
    errors: AtomicU64,
}

/// Runs a bot: `threads` connections sending alternately a custom check (of a number not in the
/// pool, so it never claims) and a draw, round-robin over `apps`, at `rate` requests/s in all,
/// for `real`; `spoof` rotates `X-Forwarded-For`.
fn run_bot(
    port: u16,
    apps: &[(AppId, String)],
    rate: u64,
    real: Duration,
    spoof: bool,
) -> BotCount {
    let count = BotCount::default();
    let real = Duration::from_millis(real.as_millis() as u64);
    let threads = 16u64;
    let next = AtomicU64::new(0);
    let started = Instant::now();
    thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let Ok(mut conn) = Conn::open(port) else {
                    count.errors.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let due = Duration::from_micros(n * 1_000_000 / rate);
                    if due >= real {
                        break;
                    }
                    let elapsed = started.elapsed();
                    if due > elapsed {
                        thread::sleep(due - elapsed);
                    }
                    let (app, token) = &apps[(n as usize / 2) % apps.len()];
                    let auth = bearer(token);
                    let xff = format!("10.{}.{}.{}", n % 250, (n / 250) % 250, 1 + n % 200);
                    let mut h = vec![
                        ("Authorization", auth.as_str()),
                        ("Content-Type", "application/json"),
                    ];
                    if spoof {
                        h.push(("X-Forwarded-For", xff.as_str()));
                    }
                    let check = n % 2 == 0;
                    let (path, body): (String, &[u8]) = if check {
                        (
                            format!("/v1/applications/{app}/custom"),
                            br#"{"plates":["B1234"]}"#,
                        )
                    } else {
                        (format!("/v1/applications/{app}/draws"), b"{}")
                    };
                    count.sent.fetch_add(1, Ordering::Relaxed);
                    match conn.send("POST", &path, &h, Some(body)) {
                        Ok(a) => {
                            let code = a.code();
                            let slot = match (a.status, code.as_str()) {
                                (429, "too_many_requests") => &count.rate_limited,
                                (429, "too_soon") => &count.too_soon,
                                (409, "not_available") if check => &count.checks,
                                (200, _) if check => &count.checks,
                                (201, _) if !check => &count.draws,
                                _ => &count.other,
                            };
                            slot.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            count.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    count
}

fn bots(out: &mut Outcome, mode: Mode) -> Result<(), String> {
    // One office minute per scenario: 60 s of real time in long mode, 10 s (clock 6x) in short.
    let factor = match mode {
        Mode::Short => 6,
        Mode::Long => 1,
    };
    let real = Duration::from_secs(60 / factor);
    let rate = 1_000;
    let rules = OfficeRules::default();
    let interval_ms = rules.custom_min_interval_ms;
    let person_checks = 60_000 / interval_ms + 1;
    let person_draws = rules.random_quota as u64;
    let bots_many = 100u32;
    let clock = Arc::new(FastClock {
        start: Instant::now(),
        start_ms: platepool_engine::calendar::now_ms(),
        factor,
    });
    let server = Server::start(clock.clone(), bots_many + 1)?;
    let port = server.setup.port;
    let one = vec![server.setup.bots[0].clone()];
    let many: Vec<(AppId, String)> = server.setup.bots[1..].to_vec();
    out.tried(format!(
        "bots at {rate} requests/s for one office minute ({} s real, office clock ×{factor}), default rate limits ({RATE_LIMIT_USER_PER_S_DEFAULT}/s per user, {RATE_LIMIT_IP_PER_S_DEFAULT}/s per IP), half custom checks, half draws",
        real.as_secs()
    ));
    out.tried(format!(
        "a person pressing buttons gets at most {person_checks} custom checks per minute (one per {} s) and {person_draws} draws (the quota)",
        interval_ms / 1000
    ));
    for (name, apps, spoof) in [
        ("one application", &one, false),
        (
            "100 applications from one address, X-Forwarded-For spoofed",
            &many,
            true,
        ),
    ] {
        let office_start = clock.now_ms();
        let real_start = Instant::now();
        let c = run_bot(port, apps, rate, real, spoof);
        let took = real_start.elapsed();
        let office_ms = clock.now_ms() - office_start;
        let office_min = office_ms as f64 / 60_000.0;
        let sent = c.sent.load(Ordering::Relaxed);
        let checks = c.checks.load(Ordering::Relaxed);
        let draws = c.draws.load(Ordering::Relaxed);
        let limited = c.rate_limited.load(Ordering::Relaxed);
        let too_soon = c.too_soon.load(Ordering::Relaxed);
        let n = apps.len() as u64;
        // What a person can get over the same office time: one check at the start and one per
        // interval after it, and the draw quota.
        let person_checks_window = office_ms / interval_ms + 1;
        out.figure(
            format!("bot on {name}: sent / rate-limited (429 too_many_requests) / interval-refused (429 too_soon)"),
            format!(
                "{} / {} / {} in {:.1} s real = {:.2} office minutes (achieved {:.0} req/s)",
                thousands(sent),
                thousands(limited),
                thousands(too_soon),
                took.as_secs_f64(),
                office_min,
                sent as f64 / took.as_secs_f64()
            ),
        );
        out.figure(
            format!("bot on {name}: accepted checks / draws per application per office minute (person: ≤ {person_checks} / ≤ {person_draws})"),
            format!(
                "{:.1} / {:.1} ({checks} checks and {draws} draws over {n} applications)",
                checks as f64 / n as f64 / office_min.max(1.0),
                draws as f64 / n as f64 / office_min.max(1.0)
            ),
        );
        let ok = checks <= person_checks_window * n
            && draws <= person_draws * n
            && c.errors.load(Ordering::Relaxed) < sent / 100 + 5;
        out.check(
            ok,
            format!(
                "bot on {name}: {} requests gained no more checks or draws per application than a person over the same {:.1} office minutes ({checks} checks ≤ {} and {draws} draws ≤ {})",
                thousands(sent),
                office_min,
                person_checks_window * n,
                person_draws * n
            ),
            format!(
                "bot on {name}: {checks} checks and {draws} draws over {n} applications exceed a person's {person_checks_window}/{person_draws} each"
            ),
        );
        if spoof {
            let passed = sent - limited;
            let cap = (RATE_LIMIT_IP_PER_S_DEFAULT as f64 * took.as_secs_f64() * 1.05) as u64
                + RATE_LIMIT_IP_PER_S_DEFAULT as u64;
            out.check(
                passed <= cap,
                format!(
                    "spoofed X-Forwarded-For from an untrusted peer did not lift the per-IP limit ({} of {} requests passed it; the cap over {:.1} s is {})",
                    thousands(passed),
                    thousands(sent),
                    took.as_secs_f64(),
                    thousands(cap)
                ),
                format!("spoofed X-Forwarded-For: {passed} of {sent} requests passed the per-IP limit (cap ≈ {cap})"),
            );
        }
    }
    drop(server);
    Ok(())
}
