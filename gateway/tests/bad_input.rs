//! I10 (SPEC §6): bad input gets a clear 4xx error and changes nothing.
//!
//! A catalogue of bad requests through the real app factory (`Gateway::scope`), each with the
//! status and error code API.md ("Conventions") gives it, and `field` / `position` / other error
//! fields where the contract names them. Around every request the state is read back — every
//! application as its owner sees it (quotas, state, batch, candidates, claim), each user's
//! applications, every pool's counts per class and release, the audit trails, the office
//! configurations, the blacklist, the SMS outbox and a certificate probe — and must be the same
//! afterwards. The engine runs on a test clock that stands still unless a test moves it.

#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::ServiceResponse;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::test::{self, TestRequest};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use platepool_engine::actor::Clock;
use platepool_engine::rules::DenyRule;
use platepool_engine::{ApplicationRequest, Engine, OfficeRules};
use platepool_gateway::auth::{sign_token, TokenClaims};
use platepool_gateway::sms::Purpose;
use platepool_gateway::Gateway;
use serde_json::{json, Map, Value};

mod support;
use support::{certificate, t0, vin, voucher_no, TestClock, OPERATOR, SECRET};

/// Serves `small` and `small_new_energy`; denies three identical digits in custom numbers.
const OFFICE: &str = "maoming";
/// Serves `small` only, with tiny quotas (custom 2, per check 2, random 1).
const QUOTA: &str = "quota";
const OFFICES: [&str; 2] = [OFFICE, QUOTA];
/// Certificates 1..=20 are small fuel cars, 21..=25 battery-electric, 26..=28 plug-in hybrids;
/// 29 is never imported (the probe that shows no import happened).
const PROBE_VIN: u32 = 29;

// ---------------------------------------------------------------------------------------------
// The world: an engine on a temp folder and a test clock, two offices, certificates, people.

/// `vin(n)` with character `position` (1-based) replaced by `c`.
fn vin_with(n: u32, position: usize, c: char) -> String {
    vin(n)
        .chars()
        .enumerate()
        .map(|(i, x)| if i + 1 == position { c } else { x })
        .collect()
}

/// A six-digit code that is not `code`.
fn wrong(code: &str) -> String {
    if code == "000000" { "000001" } else { "000000" }.to_string()
}

#[derive(Debug, Clone)]
struct Person {
    user: String,
    phone: String,
    token: String,
}

struct Fixture {
    _dir: tempfile::TempDir,
    gw: Gateway,
    engine: Engine,
    clock: Arc<TestClock>,
    people: Vec<(&'static str, Person)>,
    /// Applications read back around each request: (placeholder name, owner).
    apps: Vec<(&'static str, &'static str)>,
    /// `{name}` placeholders in paths, bodies and headers.
    vars: Vec<(String, String)>,
}

/// One answer.
struct Resp {
    status: StatusCode,
    body: Value,
    text: String,
}

impl std::fmt::Debug for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text: String = self.text.chars().take(400).collect();
        write!(f, "{} {}", self.status.as_u16(), text)
    }
}

impl Fixture {
    async fn new() -> Fixture {
        let clock = TestClock::at(t0());
        let (dir, engine) = support::engine(Some(7), Some(clock.clone())).await;
        let who = "operator:setup";
        let rules = OfficeRules {
            opening_window_ms: 0,
            random_min_interval_ms: 0,
            deny: vec![DenyRule::ThreeIdenticalDigits],
            ..OfficeRules::default()
        };
        let tiny = OfficeRules {
            opening_window_ms: 0,
            random_min_interval_ms: 0,
            custom_quota: 2,
            custom_per_check: 2,
            random_quota: 1,
            ..OfficeRules::default()
        };
        engine
            .put_office(
                OFFICE,
                support::office("茂名市车辆管理所", &["small", "small_new_energy"], rules),
                who,
            )
            .await
            .unwrap();
        engine
            .put_office(
                QUOTA,
                support::office("小额测试车管所", &["small"], tiny),
                who,
            )
            .await
            .unwrap();
        let now = clock.now_ms();
        let release = |class: &str, patterns: &[&str]| {
            support::release(class, &patterns.join(" "), patterns, now - 60_000)
        };
        for office in OFFICES {
            engine
                .add_release(office, release("small", &["A####"]), who)
                .await
                .unwrap();
        }
        engine
            .add_release(
                OFFICE,
                release("small_new_energy", &["DA####", "FA####"]),
                who,
            )
            .await
            .unwrap();
        let rows = (1..=28)
            .map(|n| {
                let class = if n <= 20 { "small" } else { "small_new_energy" };
                let energy = match n {
                    1..=20 => "fuel",
                    21..=25 => "bev",
                    _ => "phev",
                };
                certificate(n, class, energy)
            })
            .collect();
        assert_eq!(
            engine
                .import_certificates(rows, "operator:test")
                .await
                .unwrap()
                .imported,
            28
        );
        let gw = support::gateway(&engine, support::gateway_config());
        let exp = clock.now_ms() / 1000 + 86_400 * 365;
        let people = [
            ("a", "13800000001"),
            ("b", "13800000002"),
            ("c", "13800000003"),
            ("d", "13800000004"),
            ("e", "13800000005"),
            ("f", "13800000006"),
            ("g", "13800000007"),
            ("h", "13800000008"),
            ("i", "13800000010"),
            ("x", "13800000009"),
        ]
        .into_iter()
        .map(|(name, phone)| {
            let user = format!("user_{name}");
            let token = support::token(&user, phone, exp);
            let phone = phone.into();
            (name, Person { user, phone, token })
        })
        .collect();
        let mut vars = vec![("op".to_string(), OPERATOR.to_string())];
        for n in 1..=PROBE_VIN {
            vars.push((format!("vin{n}"), vin(n)));
            vars.push((format!("voucher{n}"), voucher_no(n)));
        }
        Fixture {
            _dir: dir,
            gw,
            engine,
            clock,
            people,
            apps: Vec::new(),
            vars,
        }
    }

    fn person(&self, who: &str) -> &Person {
        &self
            .people
            .iter()
            .find(|(k, _)| *k == who)
            .unwrap_or_else(|| panic!("no person {who}"))
            .1
    }

    fn advance(&self, ms: u64) {
        self.clock.advance(ms);
    }

    fn set(&mut self, name: &str, value: impl Into<String>) {
        self.vars.push((name.to_string(), value.into()));
    }

    fn var(&self, name: &str) -> &str {
        &self
            .vars
            .iter()
            .find(|(k, _)| k == name)
            .unwrap_or_else(|| panic!("no variable {name}"))
            .1
    }

    fn fill(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (k, v) in &self.vars {
            out = out.replace(&format!("{{{k}}}"), v);
        }
        out
    }

    /// The last code sent to `who` for `purpose`.
    fn code(&self, who: &str, purpose: Purpose) -> String {
        support::last_code(&self.gw, &self.person(who).phone, purpose)
    }

    async fn send<F, Fut, B>(&self, s: &F, c: &Case) -> Resp
    where
        F: Fn(TestRequest) -> Fut,
        Fut: Future<Output = ServiceResponse<B>>,
        B: MessageBody,
    {
        self.send_to(s, c, &self.fill(&c.path)).await
    }

    async fn send_to<F, Fut, B>(&self, s: &F, c: &Case, path: &str) -> Resp
    where
        F: Fn(TestRequest) -> Fut,
        Fut: Future<Output = ServiceResponse<B>>,
        B: MessageBody,
    {
        let mut req = TestRequest::default().method(c.method.clone()).uri(path);
        let auth: Option<Vec<u8>> = match &c.auth {
            Auth::Nobody => None,
            Auth::Citizen(who) => Some(format!("Bearer {}", self.person(who).token).into_bytes()),
            Auth::Operator => Some(format!("Bearer {OPERATOR}").into_bytes()),
            Auth::Header(raw) => Some(raw.clone()),
        };
        if let Some(value) = auth {
            req = req.insert_header(("Authorization", HeaderValue::from_bytes(&value).unwrap()));
        }
        for (k, v) in &c.headers {
            let v = self.fill(&String::from_utf8_lossy(v));
            let value = HeaderValue::from_bytes(v.as_bytes()).unwrap();
            req = req.insert_header((HeaderName::from_static(k), value));
        }
        match &c.body {
            Body::Empty => {}
            Body::Json(text) => {
                req = req
                    .insert_header(("Content-Type", "application/json"))
                    .set_payload(self.fill(text));
            }
            Body::Raw(content_type, bytes) => {
                if let Some(ct) = content_type {
                    req = req.insert_header(("Content-Type", *ct));
                }
                req = req.set_payload(bytes.clone());
            }
        }
        let resp = s(req).await;
        let status = resp.status();
        let bytes = test::read_body(resp).await;
        Resp {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            text: String::from_utf8_lossy(&bytes).to_string(),
        }
    }

    /// A request that must succeed (setting the world up).
    async fn ok<F, Fut, B>(
        &self,
        s: &F,
        who: &'static str,
        method: Method,
        path: &str,
        body: Value,
    ) -> Value
    where
        F: Fn(TestRequest) -> Fut,
        Fut: Future<Output = ServiceResponse<B>>,
        B: MessageBody,
    {
        let c = Case::new("setup", method, path)
            .by(who)
            .json(&body.to_string());
        let r = self.send(s, &c).await;
        assert!(r.status.is_success(), "setup {path}: {r:?}");
        r.body
    }

    /// Stage 1 through the API. Returns the application id and the (consumed) code.
    async fn apply<F, Fut, B>(
        &mut self,
        s: &F,
        who: &'static str,
        office: &str,
        n: u32,
    ) -> (String, String)
    where
        F: Fn(TestRequest) -> Fut,
        Fut: Future<Output = ServiceResponse<B>>,
        B: MessageBody,
    {
        self.ok(s, who, Method::POST, "/v1/sms", json!({"purpose": "apply"}))
            .await;
        let code = self.code(who, Purpose::Apply);
        let body = json!({"office": office, "vin": vin(n), "voucher": voucher_no(n),
                          "notice_version": "v1", "sms_code": code});
        let app = self
            .ok(s, who, Method::POST, "/v1/applications", body)
            .await;
        (app["id"].as_str().unwrap().to_string(), code)
    }

    /// Stage 2 step 1 through the API: an identity code, the confirm delay, the code.
    async fn verify<F, Fut, B>(&self, s: &F, who: &'static str, id: &str)
    where
        F: Fn(TestRequest) -> Fut,
        Fut: Future<Output = ServiceResponse<B>>,
        B: MessageBody,
    {
        let body = json!({"purpose": "identity", "application": id});
        self.ok(s, who, Method::POST, "/v1/sms", body).await;
        self.advance(5_000);
        let code = self.code(who, Purpose::Identity);
        let path = format!("/v1/applications/{id}/identity");
        self.ok(s, who, Method::POST, &path, json!({"sms_code": code}))
            .await;
    }

    /// Applications at every stage the catalogue needs, in an order that keeps the clock where
    /// each one needs it when the catalogue runs:
    /// - `fresh` (a): applied, identity not verified;
    /// - `claimed` (d): a custom check claimed A1357;
    /// - `issued` (i): claimed A2357, registered at the office;
    /// - `spent` (e, office `quota`): custom quota spent by a failed check, the one draw made
    ///   (its batch still live);
    /// - `bev` (c): a battery-electric car, verified;
    /// - `ready` (b): verified just now (a custom check is too soon), one draw made with
    ///   `Idempotency-Key: draw-1`, its first number `{cand}` moved to the candidates; `{other}`
    ///   is another number of the batch and `{free}` an available number nobody holds;
    /// - f has a fresh apply code `{f_code}`.
    async fn populate<F, Fut, B>(&mut self, s: &F)
    where
        F: Fn(TestRequest) -> Fut,
        Fut: Future<Output = ServiceResponse<B>>,
        B: MessageBody,
    {
        let (fresh, a_code) = self.apply(s, "a", OFFICE, 1).await;
        self.set("fresh", fresh);
        self.set("a_code", a_code);

        let (claimed, _) = self.apply(s, "d", OFFICE, 3).await;
        self.verify(s, "d", &claimed).await;
        self.advance(8_000);
        let path = format!("/v1/applications/{claimed}/custom");
        let r = self
            .ok(s, "d", Method::POST, &path, json!({"plates": ["A1357"]}))
            .await;
        assert_eq!(r["claim"]["serial"], "A1357");
        self.set("claimed", claimed);

        let (issued, _) = self.apply(s, "i", OFFICE, 10).await;
        self.verify(s, "i", &issued).await;
        self.advance(8_000);
        let path = format!("/v1/applications/{issued}/custom");
        self.ok(s, "i", Method::POST, &path, json!({"plates": ["A2357"]}))
            .await;
        self.engine
            .register(OFFICE, "A2357", "operator:setup")
            .await
            .unwrap();
        self.set("issued", issued);

        let (spent, _) = self.apply(s, "e", QUOTA, 4).await;
        self.verify(s, "e", &spent).await;
        self.advance(8_000);
        let c = Case::new(
            "setup",
            Method::POST,
            &format!("/v1/applications/{spent}/custom"),
        )
        .by("e")
        .json(r#"{"plates": ["B0001", "B0002"]}"#);
        let r = self.send(s, &c).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
        assert_eq!(r.body["error"]["custom_left"], 0);
        let path = format!("/v1/applications/{spent}/draws");
        let d = self.ok(s, "e", Method::POST, &path, json!({})).await;
        assert_eq!(d["random_left"], 0);
        self.set("spent", spent);

        let (bev, _) = self.apply(s, "c", OFFICE, 21).await;
        self.verify(s, "c", &bev).await;
        self.set("bev", bev);

        let (ready, _) = self.apply(s, "b", OFFICE, 2).await;
        self.verify(s, "b", &ready).await;
        let c = Case::new(
            "setup",
            Method::POST,
            &format!("/v1/applications/{ready}/draws"),
        )
        .by("b")
        .header("idempotency-key", "draw-1")
        .json(r#"{"exclude_four": false}"#);
        let d = self.send(s, &c).await;
        assert_eq!(d.status, StatusCode::CREATED, "{d:?}");
        let batch: Vec<String> = d.body["batch"]["plates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["serial"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(batch.len(), 10);
        let path = format!("/v1/applications/{ready}/candidates");
        self.ok(s, "b", Method::POST, &path, json!({"serial": batch[0]}))
            .await;
        let free = ["A9876", "A9875", "A9873", "A9872", "A9871"]
            .into_iter()
            .find(|f| !batch.iter().any(|b| b == f))
            .unwrap();
        self.set("ready", ready);
        self.set("cand", batch[0].clone());
        self.set("other", batch[1].clone());
        self.set("free", free);

        self.ok(s, "f", Method::POST, "/v1/sms", json!({"purpose": "apply"}))
            .await;
        let f_code = self.code("f", Purpose::Apply);
        self.set("f_wrong", wrong(&f_code));
        self.set("f_code", f_code);

        self.apps = vec![
            ("fresh", "a"),
            ("claimed", "d"),
            ("issued", "i"),
            ("spent", "e"),
            ("bev", "c"),
            ("ready", "b"),
        ];
    }

    /// Everything a bad request must leave alone, read back through the API and the engine.
    async fn state<F, Fut, B>(&self, s: &F) -> Value
    where
        F: Fn(TestRequest) -> Fut,
        Fut: Future<Output = ServiceResponse<B>>,
        B: MessageBody,
    {
        let mut apps = Map::new();
        for (name, owner) in &self.apps {
            let c = Case::new(
                "state",
                Method::GET,
                &format!("/v1/applications/{{{name}}}"),
            )
            .by(owner);
            let r = self.send(s, &c).await;
            assert_eq!(r.status, StatusCode::OK, "reading {name}: {r:?}");
            apps.insert(name.to_string(), r.body);
        }
        let mut users = Map::new();
        for (_, p) in &self.people {
            let mut ids: Vec<String> = self
                .engine
                .user_applications(&p.user)
                .await
                .unwrap()
                .into_iter()
                .map(|(id, v)| format!("{id} {}", v.record.state.as_str()))
                .collect();
            ids.sort();
            users.insert(p.user.clone(), json!(ids));
        }
        let mut offices = Map::new();
        for office in OFFICES {
            offices.insert(
                office.to_string(),
                json!({
                    "config": serde_json::to_value(&*self.engine.office_config(office).unwrap()).unwrap(),
                    "pool": serde_json::to_value(self.engine.stats(office).await.unwrap()).unwrap(),
                    "audit": self.engine.audit(office, 0, 1_000_000).unwrap().len(),
                }),
            );
        }
        let probe = self
            .engine
            .check_application(ApplicationRequest {
                office: OFFICE.into(),
                user: "probe".into(),
                phone: "13900000000".into(),
                vin: vin(PROBE_VIN),
                voucher: voucher_no(PROBE_VIN),
                notice_version: "v1".into(),
            })
            .await
            .err()
            .map(|r| r.code());
        json!({
            "applications": apps,
            "users": users,
            "offices": offices,
            "office_list": serde_json::to_value(self.engine.offices()).unwrap(),
            "registry_audit": self.engine.registry_audit().await.unwrap().len(),
            "blacklist": self.engine.blacklist().len(),
            "outbox": self.gw.sms.outbox(None).unwrap().len(),
            "certificate_probe": probe,
        })
    }

    /// Runs every case: the answer must be the expected one and the state read back the same.
    /// Returns the failures (all of them, not just the first).
    /// After a clock jump, the first read makes the offices expire what fell due and write
    /// that in the background. Reads until two readings agree, so that what the jump itself
    /// changed is not blamed on the next request.
    async fn settle<F, Fut, B>(&self, s: &F)
    where
        F: Fn(TestRequest) -> Fut,
        Fut: Future<Output = ServiceResponse<B>>,
        B: MessageBody,
    {
        let mut last = self.state(s).await;
        for _ in 0..200 {
            actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
            let now = self.state(s).await;
            if now == last {
                return;
            }
            last = now;
        }
        panic!("the state kept changing after the clock jump");
    }

    async fn run<F, Fut, B>(&self, s: &F, cases: &[Case]) -> Vec<String>
    where
        F: Fn(TestRequest) -> Fut,
        Fut: Future<Output = ServiceResponse<B>>,
        B: MessageBody,
    {
        let mut failures = Vec::new();
        for c in cases {
            let before = self.state(s).await;
            let r = self.send(s, c).await;
            for problem in c.check(&r) {
                failures.push(format!("{}: {problem}; got {r:?}", c.name));
            }
            if let Some(path) = &c.same_as {
                let other = self.send_to(s, c, &self.fill(path)).await;
                if (other.status, &other.body) != (r.status, &r.body) {
                    failures.push(format!(
                        "{}: answer differs from {path}'s: {r:?} vs {other:?}",
                        c.name
                    ));
                }
            }
            let after = self.state(s).await;
            if let Some(d) = diff("", &before, &after) {
                failures.push(format!("{}: the request changed {d}", c.name));
            }
        }
        failures
    }
}

/// Where two values first differ.
fn diff(path: &str, a: &Value, b: &Value) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => x.keys().chain(y.keys()).find_map(|k| {
            diff(
                &format!("{path}.{k}"),
                x.get(k).unwrap_or(&Value::Null),
                y.get(k).unwrap_or(&Value::Null),
            )
        }),
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| diff(&format!("{path}[{i}]"), p, q)),
        _ if a == b => None,
        _ => Some(format!("{path}: {a} -> {b}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Cases

#[derive(Debug, Clone)]
enum Auth {
    Nobody,
    /// A person of the fixture, with their valid token.
    Citizen(&'static str),
    Operator,
    /// The raw `Authorization` header value.
    Header(Vec<u8>),
}

#[derive(Debug, Clone)]
enum Body {
    Empty,
    /// JSON text (placeholders filled), sent as `application/json`.
    Json(String),
    /// Bytes as they are, with this Content-Type (or none).
    Raw(Option<&'static str>, Vec<u8>),
}

#[derive(Debug, Clone)]
struct Case {
    name: String,
    method: Method,
    path: String,
    auth: Auth,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Body,
    status: u16,
    /// The error code; empty for a success (a replay that must change nothing).
    code: &'static str,
    field: Option<String>,
    position: Option<u64>,
    /// Fields inside `error` with their exact values.
    with: Vec<(&'static str, Value)>,
    /// Fields inside `error` that must be there.
    has: Vec<&'static str>,
    /// Another path that must get the very same answer (someone else's application answers
    /// exactly like one that does not exist).
    same_as: Option<String>,
}

impl Case {
    fn new(name: &str, method: Method, path: &str) -> Case {
        Case {
            name: name.to_string(),
            method,
            path: path.to_string(),
            auth: Auth::Nobody,
            headers: Vec::new(),
            body: Body::Empty,
            status: 0,
            code: "",
            field: None,
            position: None,
            with: Vec::new(),
            has: Vec::new(),
            same_as: None,
        }
    }

    fn by(mut self, who: &'static str) -> Case {
        self.auth = Auth::Citizen(who);
        self
    }

    fn op(mut self) -> Case {
        self.auth = Auth::Operator;
        self
    }

    fn authz(mut self, raw: impl Into<Vec<u8>>) -> Case {
        self.auth = Auth::Header(raw.into());
        self
    }

    fn bearer(self, token: &str) -> Case {
        self.authz(format!("Bearer {token}"))
    }

    fn header(mut self, name: &'static str, value: impl Into<Vec<u8>>) -> Case {
        self.headers.push((name, value.into()));
        self
    }

    fn json(mut self, text: &str) -> Case {
        self.body = Body::Json(text.to_string());
        self
    }

    fn raw(mut self, content_type: Option<&'static str>, bytes: impl Into<Vec<u8>>) -> Case {
        self.body = Body::Raw(content_type, bytes.into());
        self
    }

    fn is(mut self, status: u16, code: &'static str) -> Case {
        self.status = status;
        self.code = code;
        self
    }

    fn field(mut self, field: &str) -> Case {
        self.field = Some(field.to_string());
        self
    }

    fn at(mut self, position: u64) -> Case {
        self.position = Some(position);
        self
    }

    fn with(mut self, key: &'static str, value: Value) -> Case {
        self.with.push((key, value));
        self
    }

    fn has(mut self, key: &'static str) -> Case {
        self.has.push(key);
        self
    }

    fn same_as(mut self, path: &str) -> Case {
        self.same_as = Some(path.to_string());
        self
    }

    /// What is wrong with the answer, if anything.
    fn check(&self, r: &Resp) -> Vec<String> {
        let mut problems = Vec::new();
        if r.status.as_u16() != self.status {
            problems.push(format!("status {} expected", self.status));
        }
        if self.code.is_empty() {
            return problems;
        }
        if !r.status.is_client_error() {
            problems.push("a 4xx status expected".into());
        }
        let e = &r.body["error"];
        if e["code"] != self.code {
            problems.push(format!("code {} expected", self.code));
        }
        if e["message"].as_str().is_none_or(str::is_empty) {
            problems.push("a message expected".into());
        }
        if let Some(f) = &self.field {
            if e["field"] != json!(f) {
                problems.push(format!("field {f} expected"));
            }
        }
        if let Some(p) = self.position {
            if e["position"] != json!(p) {
                problems.push(format!("position {p} expected"));
            }
        }
        for (k, v) in &self.with {
            if &e[*k] != v {
                problems.push(format!("{k} = {v} expected"));
            }
        }
        for k in &self.has {
            if e.get(*k).is_none_or(Value::is_null) {
                problems.push(format!("{k} expected"));
            }
        }
        problems
    }
}

fn get(name: &str, path: &str) -> Case {
    Case::new(name, Method::GET, path)
}

fn post(name: &str, path: &str, json: &str) -> Case {
    Case::new(name, Method::POST, path).json(json)
}

fn put(name: &str, path: &str, json: &str) -> Case {
    Case::new(name, Method::PUT, path).json(json)
}

fn delete(name: &str, path: &str) -> Case {
    Case::new(name, Method::DELETE, path)
}

/// A JSON body of `len` bytes: `{"plates": ["AAAA…"]}` (valid JSON, just too big).
fn big_json(len: usize) -> Vec<u8> {
    let head = br#"{"plates": [""#;
    let tail = br#""]}"#;
    let mut body = head.to_vec();
    body.resize(len - tail.len(), b'A');
    body.extend_from_slice(tail);
    assert_eq!(body.len(), len);
    body
}

const KIB_64: usize = 64 * 1024;
const MIB_16: usize = 16 * 1024 * 1024;

/// A token signed with the right secret whatever its claims hold (`sign_token` only takes
/// well-formed claims).
fn signed(claims: &Value) -> String {
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    raw_sign(SECRET, &format!("v1.{payload}"))
}

/// HMAC-SHA256 over `signed`, base64url: what `sign_token` does, for any payload.
fn raw_sign(secret: &str, signed: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(signed.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signed}.{sig}")
}

/// Every bad request that needs no time to pass.
fn catalogue(fx: &Fixture) -> Vec<Case> {
    let b = fx.person("b");
    let now_s = fx.clock.now_ms() / 1000;
    let claims = |exp: u64| TokenClaims {
        user: b.user.clone(),
        phone: b.phone.clone(),
        exp,
    };
    let token_parts: Vec<String> = b.token.split('.').map(str::to_string).collect();
    let expired = sign_token(SECRET, &claims(now_s));
    let forged = sign_token("another-secret-0123456789abcdef", &claims(now_s + 3_600));
    let tampered = {
        let payload = URL_SAFE_NO_PAD.encode(
            json!({"user": fx.person("a").user, "phone": b.phone, "exp": now_s + 3_600})
                .to_string(),
        );
        format!("v1.{payload}.{}", token_parts[2])
    };
    let unsigned = format!("v1.{}", token_parts[1]);
    let empty_sig = format!("v1.{}.", token_parts[1]);
    let v2 = raw_sign(SECRET, &format!("v2.{}", token_parts[1]));
    let bad_user = signed(&json!({"user": "b/../a", "phone": b.phone, "exp": now_s + 3_600}));
    let bad_phone = signed(&json!({"user": b.user, "phone": "call me", "exp": now_s + 3_600}));
    let not_json = raw_sign(SECRET, &format!("v1.{}", URL_SAFE_NO_PAD.encode("user=b")));
    let too_long = format!("{}{}", b.token, "A".repeat(1_100));

    let apply = |vin: &str, voucher: &str, code: &str| {
        format!(
            r#"{{"office": "maoming", "vin": "{vin}", "voucher": "{voucher}", "notice_version": "v1", "sms_code": "{code}"}}"#
        )
    };
    let f_apply = |vin: &str| apply(vin, &voucher_no(5), "{f_code}");
    let release = |extra: &str| format!(r#"{{"class": "small", "label": "B", {extra}}}"#);
    let big_release = {
        let serials: Vec<String> = (0..12_000)
            .map(|n| format!("\"B{:04}\"", n % 10_000))
            .collect();
        format!(
            r#"{{"class": "small", "serials": [{}]}}"#,
            serials.join(",")
        )
    };
    assert!(big_release.len() > KIB_64);
    let big_import = {
        let mut csv = format!(
            "vin,voucher,class,energy\n{},{},small,fuel\n",
            vin(PROBE_VIN),
            voucher_no(PROBE_VIN)
        );
        while csv.len() <= MIB_16 {
            csv.push_str(&format!(
                "{},{},small,fuel\n",
                vin(PROBE_VIN),
                voucher_no(PROBE_VIN)
            ));
        }
        csv.into_bytes()
    };
    let probe_csv = format!(
        "vin,voucher,class,energy\n{},{},small,fuel\n",
        vin(PROBE_VIN),
        voucher_no(PROBE_VIN)
    );
    let office_doc = |rules: &str| {
        format!(
            r#"{{"name": "茂名市车辆管理所", "prefix": "粤K", "classes": ["small", "small_new_energy"], "rules": {rules}, "notice": {{"version": "v2", "text": "新须知"}}}}"#
        )
    };
    let unknown = "/v1/applications/maoming-999999";

    vec![
        // ---- Body shape: malformed JSON, wrong types, missing fields, empty bodies ----
        post("custom: malformed JSON", "/v1/applications/{ready}/custom", r#"{"plates": ["A2468""#)
            .by("b").is(400, "bad_request"),
        post("claim: trailing garbage after the object", "/v1/applications/{ready}/claim", r#"{"serial": "{cand}"} x"#)
            .by("b").is(400, "bad_request"),
        post("claim: single quotes are not JSON", "/v1/applications/{ready}/claim", r#"{'serial': '{cand}'}"#)
            .by("b").is(400, "bad_request"),
        post("custom: plates is a string", "/v1/applications/{ready}/custom", r#"{"plates": "A2468"}"#)
            .by("b").is(400, "bad_request").field("plates"),
        post("custom: a plate is a number", "/v1/applications/{ready}/custom", r#"{"plates": ["A2468", 5]}"#)
            .by("b").is(400, "bad_request").field("plates[1]"),
        post("custom: plates is null", "/v1/applications/{ready}/custom", r#"{"plates": null}"#)
            .by("b").is(400, "bad_request").field("plates"),
        post("custom: plates missing", "/v1/applications/{ready}/custom", r#"{"plate": ["A2468"]}"#)
            .by("b").is(400, "bad_request"),
        post("custom: empty body", "/v1/applications/{ready}/custom", "")
            .by("b").is(400, "bad_request"),
        post("identity: whitespace body", "/v1/applications/{ready}/identity", " \n ")
            .by("b").is(400, "bad_request"),
        post("draws: exclude_four is a string", "/v1/applications/{ready}/draws", r#"{"exclude_four": "yes"}"#)
            .by("b").is(400, "bad_request").field("exclude_four"),
        post("draws: exclude_four is a number", "/v1/applications/{ready}/draws", r#"{"exclude_four": 1}"#)
            .by("b").is(400, "bad_request").field("exclude_four"),
        post("draws: an array, not an object", "/v1/applications/{ready}/draws", "[true]")
            .by("b").is(400, "bad_request"),
        post("candidates: serial is a number", "/v1/applications/{ready}/candidates", r#"{"serial": 1234}"#)
            .by("b").is(400, "bad_request").field("serial"),
        post("claim: empty object", "/v1/applications/{ready}/claim", "{}")
            .by("b").is(400, "bad_request"),
        post("sms: JSON null", "/v1/sms", "null")
            .by("f").is(400, "bad_request"),
        post("sms: unknown purpose", "/v1/sms", r#"{"purpose": "login"}"#)
            .by("f").is(400, "bad_request").field("purpose"),
        post("sms: identity without an application", "/v1/sms", r#"{"purpose": "identity"}"#)
            .by("b").is(400, "bad_request").field("application"),
        post("apply: sms_code missing", "/v1/applications", r#"{"office": "maoming", "vin": "{vin5}", "voucher": "{voucher5}", "notice_version": "v1"}"#)
            .by("f").is(400, "bad_request"),
        post("apply: vin is a number", "/v1/applications", r#"{"office": "maoming", "vin": 5, "voucher": "{voucher5}", "notice_version": "v1", "sms_code": "{f_code}"}"#)
            .by("f").is(400, "bad_request").field("vin"),
        post("apply: sms_code is a number", "/v1/applications", r#"{"office": "maoming", "vin": "{vin5}", "voucher": "{voucher5}", "notice_version": "v1", "sms_code": 123456}"#)
            .by("f").is(400, "bad_request").field("sms_code"),
        post("apply: a list of applications", "/v1/applications", &format!("[{}]", f_apply("{vin5}")))
            .by("f").is(400, "bad_request"),
        post("practice: class missing", "/v1/practice", r#"{"office": "maoming"}"#)
            .by("f").is(400, "bad_request"),
        post("practice: unknown energy", "/v1/practice", r#"{"office": "maoming", "class": "small", "energy": "diesel"}"#)
            .by("f").is(400, "bad_request").field("energy"),
        post("vin check: vin is a number", "/v1/vin/check", r#"{"vin": 12345678901234567}"#)
            .is(400, "bad_request").field("vin"),
        post("vin check: empty object", "/v1/vin/check", "{}")
            .is(400, "bad_request"),
        post("vin check: empty body", "/v1/vin/check", "")
            .is(400, "bad_request"),

        // ---- Content-Type ----
        post("custom: text/plain", "/v1/applications/{ready}/custom", "")
            .raw(Some("text/plain"), r#"{"plates": ["A2468"]}"#).by("b").is(400, "bad_request"),
        post("apply: a form", "/v1/applications", "")
            .raw(Some("application/x-www-form-urlencoded"), "office=maoming&vin=x").by("f").is(400, "bad_request"),
        post("identity: XML", "/v1/applications/{ready}/identity", "")
            .raw(Some("application/xml"), "<sms_code>123456</sms_code>").by("b").is(400, "bad_request"),
        post("vin check: text/plain", "/v1/vin/check", "")
            .raw(Some("text/plain"), format!(r#"{{"vin": "{}"}}"#, vin(1))).is(400, "bad_request"),
        post("certificates: XML", "/v1/admin/certificates", "")
            .raw(Some("application/xml"), probe_csv.clone()).op().is(400, "bad_request"),

        // ---- Oversize bodies ----
        post("custom: 64 KiB + 1", "/v1/applications/{ready}/custom", "")
            .raw(Some("application/json"), big_json(KIB_64 + 1)).by("b").is(413, "payload_too_large"),
        post("apply: 1 MiB", "/v1/applications", "")
            .raw(Some("application/json"), big_json(1 << 20)).by("f").is(413, "payload_too_large"),
        post("vin check: 64 KiB + 1", "/v1/vin/check", "")
            .raw(Some("application/json"), big_json(KIB_64 + 1)).is(413, "payload_too_large"),
        post("release: serials past 64 KiB", "/v1/admin/offices/maoming/releases", &big_release)
            .op().is(413, "payload_too_large"),
        post("certificates: 16 MiB + a bit", "/v1/admin/certificates", "")
            .raw(Some("text/csv"), big_import).op().is(413, "payload_too_large"),

        // ---- Plates in a custom check (fuel car at maoming unless said) ----
        post("custom: a character no plate has", "/v1/applications/{ready}/custom", r#"{"plates": ["A12#4"]}"#)
            .by("b").is(400, "invalid_plate").field("plates[0]").at(4),
        post("custom: I in the second number", "/v1/applications/{ready}/custom", r#"{"plates": ["A2468", "AI234"]}"#)
            .by("b").is(400, "invalid_plate").field("plates[1]").at(2),
        post("custom: O in the third number", "/v1/applications/{ready}/custom", r#"{"plates": ["A2468", "A2469", "A12O5"]}"#)
            .by("b").is(400, "invalid_plate").field("plates[2]").at(4),
        post("custom: another province", "/v1/applications/{ready}/custom", r#"{"plates": ["京A1234"]}"#)
            .by("b").is(400, "invalid_plate").field("plates[0]").at(1),
        post("custom: too short", "/v1/applications/{ready}/custom", r#"{"plates": ["A123"]}"#)
            .by("b").is(400, "invalid_plate").field("plates[0]").at(5),
        post("custom: too long for the class", "/v1/applications/{ready}/custom", r#"{"plates": ["A12356"]}"#)
            .by("b").is(400, "invalid_plate").field("plates[0]").at(6),
        post("custom: longer than any plate", "/v1/applications/{ready}/custom", r#"{"plates": ["A1235678"]}"#)
            .by("b").is(400, "invalid_plate").field("plates[0]").at(7),
        post("custom: an empty number", "/v1/applications/{ready}/custom", r#"{"plates": [""]}"#)
            .by("b").is(400, "invalid_plate").field("plates[0]").at(1),
        post("custom: a new-energy number for a fuel car", "/v1/applications/{ready}/custom", r#"{"plates": ["DA1235"]}"#)
            .by("b").is(400, "invalid_plate").field("plates[0]").at(6),
        post("custom: six numbers, five per check", "/v1/applications/{ready}/custom", r#"{"plates": ["A2461", "A2462", "A2463", "A2465", "A2467", "A2468"]}"#)
            .by("b").is(400, "bad_request").field("plates"),
        post("custom: no numbers", "/v1/applications/{ready}/custom", r#"{"plates": []}"#)
            .by("b").is(400, "bad_request").field("plates"),
        post("custom: one number twice", "/v1/applications/{ready}/custom", r#"{"plates": ["A2468", "a·2468"]}"#)
            .by("b").is(400, "bad_request"),
        post("custom: three identical digits (deny rule)", "/v1/applications/{ready}/custom", r#"{"plates": ["A1112"]}"#)
            .by("b").is(400, "invalid_plate").field("plates[0]").with("reason", json!("not_allowed")),
        post("custom: a shape the office does not allow", "/v1/applications/{ready}/custom", r#"{"plates": ["A2468", "ABC12"]}"#)
            .by("b").is(400, "invalid_plate").field("plates[1]").with("reason", json!("not_allowed")),
        post("custom: F number for a battery-electric car", "/v1/applications/{bev}/custom", r#"{"plates": ["DA1235", "FA1235"]}"#)
            .by("c").is(400, "invalid_plate").field("plates[1]").with("reason", json!("not_allowed")),
        post("custom: letter where new energy has digits", "/v1/applications/{bev}/custom", r#"{"plates": ["DAB123"]}"#)
            .by("c").is(400, "invalid_plate").field("plates[0]").at(3),
        post("custom: a small-car number for a new-energy car", "/v1/applications/{bev}/custom", r#"{"plates": ["A1235"]}"#)
            .by("c").is(400, "invalid_plate").field("plates[0]").at(6),
        post("candidates: I in the serial", "/v1/applications/{ready}/candidates", r#"{"serial": "AI234"}"#)
            .by("b").is(400, "invalid_plate").field("serial").at(2),
        post("claim: a character no plate has", "/v1/applications/{ready}/claim", r#"{"serial": "A1%34"}"#)
            .by("b").is(400, "invalid_plate").field("serial").at(3),

        // ---- Keyboard ----
        get("keyboard: I entered", "/v1/applications/{ready}/keyboard?entered=A1I")
            .by("b").is(400, "invalid_plate").field("entered").at(3),
        get("keyboard: # entered", "/v1/applications/{ready}/keyboard?entered=A%231")
            .by("b").is(400, "invalid_plate").field("entered").at(2),
        get("keyboard: a Chinese character entered", "/v1/applications/{ready}/keyboard?entered=%E7%B2%A4")
            .by("b").is(400, "invalid_plate").field("entered").at(1),
        get("keyboard: more characters than the class has", "/v1/applications/{ready}/keyboard?entered=A12345")
            .by("b").is(400, "bad_request").field("entered"),

        // ---- VINs at stage 1 ----
        post("apply: VIN of 16 characters", "/v1/applications", &f_apply(&vin(5)[..16]))
            .by("f").is(400, "invalid_vin").field("vin"),
        post("apply: VIN of 18 characters", "/v1/applications", &f_apply(&format!("{}1", vin(5))))
            .by("f").is(400, "invalid_vin").field("vin"),
        post("apply: I in the VIN", "/v1/applications", &f_apply(&vin_with(5, 5, 'I')))
            .by("f").is(400, "invalid_vin").field("vin").at(5),
        post("apply: O in the VIN", "/v1/applications", &f_apply(&vin_with(5, 12, 'O')))
            .by("f").is(400, "invalid_vin").field("vin").at(12),
        post("apply: Q in the VIN", "/v1/applications", &f_apply(&vin_with(5, 17, 'Q')))
            .by("f").is(400, "invalid_vin").field("vin").at(17),
        post("apply: a dash in the VIN", "/v1/applications", &f_apply(&vin_with(5, 3, '-')))
            .by("f").is(400, "invalid_vin").field("vin").at(3),
        post("apply: wrong check digit", "/v1/applications", &f_apply(&{
            let v = vin(5);
            let c = if v.as_bytes()[8] == b'0' { '1' } else { '0' };
            vin_with(5, 9, c)
        }))
            .by("f").is(400, "invalid_vin").field("vin").at(9),

        // ---- Stage 1 rules, in the API's order ----
        post("apply: unknown office", "/v1/applications", r#"{"office": "nowhere", "vin": "{vin5}", "voucher": "{voucher5}", "notice_version": "v1", "sms_code": "{f_code}"}"#)
            .by("f").is(404, "not_found").field("office"),
        post("apply: office id with capitals", "/v1/applications", r#"{"office": "MAOMING", "vin": "{vin5}", "voucher": "{voucher5}", "notice_version": "v1", "sms_code": "{f_code}"}"#)
            .by("f").is(404, "not_found").field("office"),
        post("apply: an old notice version", "/v1/applications", r#"{"office": "maoming", "vin": "{vin5}", "voucher": "{voucher5}", "notice_version": "v0", "sms_code": "{f_code}"}"#)
            .by("f").is(422, "notice_not_accepted").field("notice_version"),
        post("apply: voucher of another car", "/v1/applications", &apply("{vin5}", "{voucher6}", "{f_code}"))
            .by("f").is(422, "voucher_mismatch").field("voucher"),
        post("apply: a VIN without a certificate", "/v1/applications", &apply(&vin(PROBE_VIN), &voucher_no(PROBE_VIN), "{f_code}"))
            .by("f").is(422, "voucher_mismatch"),
        post("apply: new-energy car at a small-car office", "/v1/applications", r#"{"office": "quota", "vin": "{vin22}", "voucher": "{voucher22}", "notice_version": "v1", "sms_code": "{f_code}"}"#)
            .by("f").is(422, "vehicle_not_eligible"),
        post("apply: the VIN has someone's live application", "/v1/applications", &apply("{vin1}", "{voucher1}", "{f_code}"))
            .by("f").is(409, "application_exists").field("vin").with("application", Value::Null),
        post("apply: the VIN has my live application", "/v1/applications", &apply("{vin1}", "{voucher1}", "{a_code}"))
            .by("a").is(409, "application_exists").field("vin").with("application", json!(fx.var("fresh"))),
        post("apply: the VIN has a live claim", "/v1/applications", &apply("{vin3}", "{voucher3}", "{f_code}"))
            .by("f").is(409, "application_exists").field("vin").with("application", Value::Null),
        post("apply: the VIN's number was registered", "/v1/applications", &apply("{vin10}", "{voucher10}", "{f_code}"))
            .by("f").is(409, "vin_already_used").field("vin"),
        post("apply: wrong SMS code", "/v1/applications", &apply("{vin5}", "{voucher5}", "{f_wrong}"))
            .by("f").is(422, "sms_code_invalid").field("sms_code").with("tries_left", json!(4)),
        post("apply: SMS code already used", "/v1/applications", &apply("{vin7}", "{voucher7}", "{a_code}"))
            .by("a").is(422, "sms_code_invalid").field("sms_code"),
        post("apply: letters for a code", "/v1/applications", &apply("{vin5}", "{voucher5}", "abcdef"))
            .by("f").is(422, "sms_code_invalid").field("sms_code"),
        post("sms: a second apply code within 60 s", "/v1/sms", r#"{"purpose": "apply"}"#)
            .by("f").is(429, "sms_too_soon").has("retry_after_ms"),
        post("identity: a code already used", "/v1/applications/{ready}/identity", r#"{"sms_code": "{a_code}"}"#)
            .by("b").is(422, "sms_code_invalid"),
        post("identity: no code was ever sent", "/v1/applications/{fresh}/identity", r#"{"sms_code": "123456"}"#)
            .by("a").is(422, "sms_code_invalid"),

        // ---- Unknown offices ----
        get("office: unknown", "/v1/offices/nowhere").is(404, "not_found"),
        get("office notice: unknown", "/v1/offices/nowhere/notice").is(404, "not_found"),
        get("pool notice: unknown office", "/v1/offices/nowhere/pool").is(404, "not_found"),
        get("pool notice: not an office id", "/v1/offices/Mao%20Ming/pool").is(404, "not_found"),
        post("practice: unknown office", "/v1/practice", r#"{"office": "nowhere", "class": "small"}"#)
            .by("f").is(404, "not_found").field("office"),
        get("no such route", "/v1/nothing-here").is(404, "not_found"),

        // ---- Someone else's application, malformed ids: 404, never revealing ----
        get("other's application", "/v1/applications/{ready}").by("x").is(404, "not_found").same_as(unknown),
        get("other's keyboard", "/v1/applications/{ready}/keyboard?entered=A").by("x").is(404, "not_found")
            .same_as(&format!("{unknown}/keyboard?entered=A")),
        get("other's voucher", "/v1/applications/{claimed}/voucher").by("x").is(404, "not_found")
            .same_as(&format!("{unknown}/voucher")),
        post("other's custom check", "/v1/applications/{ready}/custom", r#"{"plates": ["A2468"]}"#)
            .by("x").is(404, "not_found").same_as(&format!("{unknown}/custom")),
        post("other's draw", "/v1/applications/{ready}/draws", "{}")
            .by("x").is(404, "not_found").same_as(&format!("{unknown}/draws")),
        post("other's candidate", "/v1/applications/{ready}/candidates", r#"{"serial": "{other}"}"#)
            .by("x").is(404, "not_found").same_as(&format!("{unknown}/candidates")),
        post("other's claim", "/v1/applications/{ready}/claim", r#"{"serial": "{cand}"}"#)
            .by("x").is(404, "not_found").same_as(&format!("{unknown}/claim")),
        post("other's identity", "/v1/applications/{ready}/identity", r#"{"sms_code": "123456"}"#)
            .by("x").is(404, "not_found").same_as(&format!("{unknown}/identity")),
        post("identity code for another's application", "/v1/sms", r#"{"purpose": "identity", "application": "{ready}"}"#)
            .by("x").is(404, "not_found").field("application"),
        get("id without a number", "/v1/applications/maoming").by("b").is(404, "not_found"),
        get("id with an empty number", "/v1/applications/maoming-").by("b").is(404, "not_found"),
        get("id with letters", "/v1/applications/maoming-abc").by("b").is(404, "not_found"),
        get("id with a leading zero", "/v1/applications/maoming-01").by("b").is(404, "not_found"),
        get("id with a plus", "/v1/applications/maoming-+1").by("b").is(404, "not_found"),
        get("id with capitals", "/v1/applications/MAOMING-1").by("b").is(404, "not_found"),
        get("id past u64", "/v1/applications/maoming-18446744073709551616").by("b").is(404, "not_found"),
        get("id of an unknown office", "/v1/applications/nowhere-1").by("b").is(404, "not_found"),
        post("draw on a malformed id", "/v1/applications/maoming-p/draws", "{}").by("b").is(404, "not_found"),

        // ---- Tokens ----
        get("no Authorization", "/v1/me").is(401, "unauthorized"),
        post("draw without Authorization", "/v1/applications/{ready}/draws", "{}").is(401, "unauthorized"),
        post("draw with Basic auth", "/v1/applications/{ready}/draws", "{}").authz("Basic dXNlcjpwYXNz").is(401, "unauthorized"),
        post("draw with an empty bearer", "/v1/applications/{ready}/draws", "{}").authz("Bearer ").is(401, "unauthorized"),
        post("draw with an expired token", "/v1/applications/{ready}/draws", "{}").bearer(&expired).is(401, "unauthorized"),
        post("draw with a forged token", "/v1/applications/{ready}/draws", "{}").bearer(&forged).is(401, "unauthorized"),
        post("draw with a tampered payload", "/v1/applications/{ready}/draws", "{}").bearer(&tampered).is(401, "unauthorized"),
        post("draw with an unsigned token", "/v1/applications/{ready}/draws", "{}").bearer(&unsigned).is(401, "unauthorized"),
        post("draw with an empty signature", "/v1/applications/{ready}/draws", "{}").bearer(&empty_sig).is(401, "unauthorized"),
        post("draw with token version v2", "/v1/applications/{ready}/draws", "{}").bearer(&v2).is(401, "unauthorized"),
        post("draw with a token of junk", "/v1/applications/{ready}/draws", "{}").bearer("not-a-token").is(401, "unauthorized"),
        post("draw with a bad user id in the token", "/v1/applications/{ready}/draws", "{}").bearer(&bad_user).is(401, "unauthorized"),
        post("draw with a bad phone in the token", "/v1/applications/{ready}/draws", "{}").bearer(&bad_phone).is(401, "unauthorized"),
        post("draw with a payload that is not JSON", "/v1/applications/{ready}/draws", "{}").bearer(&not_json).is(401, "unauthorized"),
        post("draw with an over-long token", "/v1/applications/{ready}/draws", "{}").bearer(&too_long).is(401, "unauthorized"),
        post("draw with a non-ASCII header", "/v1/applications/{ready}/draws", "{}").authz(b"Bearer \xff\xfe".to_vec()).is(401, "unauthorized"),
        post("draw with the operator token", "/v1/applications/{ready}/draws", "{}").op().is(401, "unauthorized"),
        get("me with the operator token", "/v1/me").op().is(401, "unauthorized"),

        // ---- Operator API: credentials ----
        get("stats with a citizen token", "/v1/admin/offices/maoming/stats").by("b").is(403, "forbidden"),
        post("release with a citizen token", "/v1/admin/offices/maoming/releases", &release(r#""patterns": ["B####"]"#))
            .by("b").is(403, "forbidden"),
        put("office with a citizen token", "/v1/admin/offices/maoming", &office_doc("{}")).by("b").is(403, "forbidden"),
        post("certificates with a citizen token", "/v1/admin/certificates", "")
            .raw(Some("text/csv"), probe_csv.clone()).by("b").is(403, "forbidden"),
        post("void with a citizen token", "/v1/admin/offices/maoming/claims/A1357/void", r#"{"reason": "owner asked"}"#)
            .by("d").is(403, "forbidden"),
        post("token issue with a citizen token", "/v1/admin/tokens", r#"{"user": "user_b", "phone": "13800000002"}"#)
            .by("b").is(403, "forbidden"),
        get("outbox with a citizen token", "/v1/admin/sms/outbox").by("b").is(403, "forbidden"),
        post("release without a token", "/v1/admin/offices/maoming/releases", &release(r#""patterns": ["B####"]"#))
            .is(401, "unauthorized"),
        post("release with a forged operator token", "/v1/admin/offices/maoming/releases", &release(r#""patterns": ["B####"]"#))
            .bearer("bad-input-operator-token-0123456788").is(401, "unauthorized"),
        get("stats with an expired citizen token", "/v1/admin/offices/maoming/stats").bearer(&expired).is(401, "unauthorized"),

        // ---- Operator API: bad documents ----
        put("office: a misspelt rule", "/v1/admin/offices/maoming", &office_doc(r#"{"custom_qouta": 5}"#))
            .op().is(400, "bad_request"),
        put("office: a quota as a string", "/v1/admin/offices/maoming", &office_doc(r#"{"custom_quota": "5"}"#))
            .op().is(400, "bad_request"),
        put("office: 99 numbers per check", "/v1/admin/offices/maoming", &office_doc(r#"{"custom_per_check": 99}"#))
            .op().is(400, "bad_request").field("rules.custom_per_check"),
        put("office: an unknown deny rule", "/v1/admin/offices/maoming", &office_doc(r#"{"deny": ["two_identical_digits"]}"#))
            .op().is(400, "bad_request"),
        put("office: an id with capitals", "/v1/admin/offices/NewOffice", &office_doc("{}"))
            .op().is(400, "bad_request"),
        post("release: an unknown field", "/v1/admin/offices/maoming/releases", &release(r#""patterns": ["B####"], "colour": "red""#))
            .op().is(400, "bad_request"),
        post("release: an unknown class", "/v1/admin/offices/maoming/releases", r#"{"class": "truck", "patterns": ["B####"]}"#)
            .op().is(400, "bad_request").field("class"),
        post("release: I in a pattern", "/v1/admin/offices/maoming/releases", &release(r#""patterns": ["B##I#"]"#))
            .op().is(400, "bad_request").field("patterns[0]").at(4),
        post("release: patterns and serials", "/v1/admin/offices/maoming/releases", &release(r#""patterns": ["B####"], "serials": ["B0001"]"#))
            .op().is(400, "bad_request"),
        post("release: neither patterns nor serials", "/v1/admin/offices/maoming/releases", &release(r#""opens_at": "2026-11-24T02:00:00Z""#))
            .op().is(400, "bad_request").field("patterns"),
        post("release: opens tomorrow-ish", "/v1/admin/offices/maoming/releases", &release(r#""patterns": ["B####"], "opens_at": "tomorrow""#))
            .op().is(400, "bad_request").field("opens_at"),
        post("release: a bad serial", "/v1/admin/offices/maoming/releases", &release(r#""serials": ["B0001", "B12#4"]"#))
            .op().is(400, "invalid_plate").field("serials[1]").at(4),
        post("release: unknown office", "/v1/admin/offices/nowhere/releases", &release(r#""patterns": ["B####"]"#))
            .op().is(404, "not_found"),
        post("certificates: CSV without the energy column", "/v1/admin/certificates", "")
            .raw(Some("text/csv"), format!("vin,voucher,class\n{},{},small\n", vin(PROBE_VIN), voucher_no(PROBE_VIN)))
            .op().is(400, "bad_request").field("header"),
        post("certificates: JSON object, not an array", "/v1/admin/certificates", &format!(r#"{{"vin": "{}", "voucher": "{}", "class": "small", "energy": "fuel"}}"#, vin(PROBE_VIN), voucher_no(PROBE_VIN)))
            .op().is(400, "bad_request"),
        post("tokens: an unknown field", "/v1/admin/tokens", r#"{"user": "user_b", "phone": "13800000002", "role": "admin"}"#)
            .op().is(400, "bad_request"),
        post("tokens: a bad user id", "/v1/admin/tokens", r#"{"user": "a/b", "phone": "13800000002"}"#)
            .op().is(400, "bad_request").field("user"),
        post("tokens: no lifetime", "/v1/admin/tokens", r#"{"user": "user_b", "phone": "13800000002", "ttl_s": 0}"#)
            .op().is(400, "bad_request").field("ttl_s"),
        post("void: no reason", "/v1/admin/offices/maoming/claims/A1357/void", r#"{"reason": "  "}"#)
            .op().is(400, "bad_request").field("reason"),
        post("void: a bad serial", "/v1/admin/offices/maoming/claims/AI357/void", r#"{"reason": "owner asked"}"#)
            .op().is(400, "invalid_plate").field("serial").at(2),
        post("registration: unknown office", "/v1/admin/registrations", r#"{"office": "nowhere", "serial": "A1357"}"#)
            .op().is(404, "not_found").field("office"),
        post("registration: a bad serial", "/v1/admin/registrations", r#"{"office": "maoming", "serial": "A13#7"}"#)
            .op().is(400, "invalid_plate").field("serial").at(4),
        delete("withdraw: a bad serial", "/v1/admin/offices/maoming/plates/AI234")
            .op().is(400, "invalid_plate").at(2),
        delete("withdraw: a release id of letters", "/v1/admin/offices/maoming/releases/abc")
            .op().is(404, "not_found"),
        delete("withdraw: no such release", "/v1/admin/offices/maoming/releases/999")
            .op().is(404, "not_found"),
        delete("blacklist: lift for someone not on it", "/v1/admin/blacklist/user_b")
            .json(r#"{"reason": "why not"}"#).op().is(404, "not_found"),
        get("look-up: serial without office", "/v1/admin/applications?serial=A1357").op().is(400, "bad_request").field("office"),
        get("look-up: a bad VIN", &format!("/v1/admin/applications?vin={}", vin_with(5, 5, 'O'))).op().is(400, "invalid_vin").at(5),
        get("look-up: a bad serial", "/v1/admin/applications?serial=AI357&office=maoming").op().is(400, "invalid_plate").field("serial").at(2),
        get("look-up: an unknown parameter", "/v1/admin/applications?colour=red").op().is(400, "bad_request"),
        get("look-up: two keys", "/v1/admin/applications?user=user_b&vin={vin2}").op().is(400, "bad_request"),
        get("stats: unknown office", "/v1/admin/offices/nowhere/stats").op().is(404, "not_found"),
        get("audit: a limit of 0", "/v1/admin/audit?office=maoming&limit=0").op().is(400, "bad_request").field("limit"),
        get("audit: since is not a time", "/v1/admin/audit?office=maoming&since=yesterday").op().is(400, "bad_request").field("since"),
        get("outbox: a phone of letters", "/v1/admin/sms/outbox?phone=abc").op().is(400, "bad_request").field("phone"),

        // ---- Calls out of order, spent quotas ----
        post("draw before identity", "/v1/applications/{fresh}/draws", "{}")
            .by("a").is(409, "identity_not_verified"),
        post("custom check before identity", "/v1/applications/{fresh}/custom", r#"{"plates": ["A2468"]}"#)
            .by("a").is(409, "identity_not_verified"),
        post("candidate before identity", "/v1/applications/{fresh}/candidates", r#"{"serial": "A2468"}"#)
            .by("a").is(409, "identity_not_verified"),
        post("claim before identity", "/v1/applications/{fresh}/claim", r#"{"serial": "A2468"}"#)
            .by("a").is(409, "identity_not_verified"),
        get("voucher before a claim", "/v1/applications/{fresh}/voucher")
            .by("a").is(409, "conflict"),
        post("claim: a batch number that is not a candidate", "/v1/applications/{ready}/claim", r#"{"serial": "{other}"}"#)
            .by("b").is(409, "not_held"),
        post("claim: an available number nobody holds", "/v1/applications/{ready}/claim", r#"{"serial": "{free}"}"#)
            .by("b").is(409, "not_held"),
        post("candidate: a second number from one batch", "/v1/applications/{ready}/candidates", r#"{"serial": "{other}"}"#)
            .by("b").is(409, "conflict"),
        post("candidate: the candidate again", "/v1/applications/{ready}/candidates", r#"{"serial": "{cand}"}"#)
            .by("b").is(409, "conflict"),
        post("candidate: a number not in the batch", "/v1/applications/{ready}/candidates", r#"{"serial": "{free}"}"#)
            .by("b").is(409, "not_held"),
        post("candidate: someone's claimed number", "/v1/applications/{ready}/candidates", r#"{"serial": "A1357"}"#)
            .by("b").is(409, "not_held"),
        post("custom check too soon after identity", "/v1/applications/{ready}/custom", r#"{"plates": ["A2468"]}"#)
            .by("b").is(429, "too_soon").with("retry_after_ms", json!(8_000)),
        post("custom check with the custom quota spent", "/v1/applications/{spent}/custom", r#"{"plates": ["A2468"]}"#)
            .by("e").is(409, "quota_spent"),
        post("draw with the random quota spent", "/v1/applications/{spent}/draws", "{}")
            .by("e").is(409, "quota_spent"),
        post("draw after the claim", "/v1/applications/{claimed}/draws", "{}")
            .by("d").is(409, "conflict"),
        post("custom check after the claim", "/v1/applications/{claimed}/custom", r#"{"plates": ["A2468"]}"#)
            .by("d").is(409, "conflict"),
        post("identity code after the claim", "/v1/sms", r#"{"purpose": "identity", "application": "{claimed}"}"#)
            .by("d").is(409, "conflict"),

        // ---- Idempotency-Key ----
        post("draw: empty Idempotency-Key", "/v1/applications/{ready}/draws", "{}")
            .by("b").header("idempotency-key", "").is(400, "bad_request").field("Idempotency-Key"),
        post("draw: Idempotency-Key of 129 characters", "/v1/applications/{ready}/draws", "{}")
            .by("b").header("idempotency-key", "k".repeat(129)).is(400, "bad_request").field("Idempotency-Key"),
        post("draw: a space inside the Idempotency-Key", "/v1/applications/{ready}/draws", "{}")
            .by("b").header("idempotency-key", "draw 2").is(400, "bad_request").field("Idempotency-Key"),
        post("draw: a non-ASCII Idempotency-Key", "/v1/applications/{ready}/draws", "{}")
            .by("b").header("idempotency-key", "ключ".as_bytes().to_vec()).is(400, "bad_request").field("Idempotency-Key"),
        post("draw: replay of a done draw", "/v1/applications/{ready}/draws", r#"{"exclude_four": false}"#)
            .by("b").header("idempotency-key", "draw-1").is(201, ""),
    ]
}

#[actix_rt::test]
async fn bad_requests_get_a_clear_4xx_and_change_nothing() {
    let mut fx = Fixture::new().await;
    let app = support::app!(fx.gw);
    let s = |r: TestRequest| test::call_service(&app, r.to_request());
    fx.populate(&s).await;

    let cases = catalogue(&fx);
    assert!(cases.len() >= 60, "{} cases", cases.len());
    let mut names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "case names are unique");
    let failures = fx.run(&s, &cases).await;
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[actix_rt::test]
async fn bad_codes_and_late_calls_over_time_change_nothing() {
    let mut fx = Fixture::new().await;
    let app = support::app!(fx.gw);
    let s = |r: TestRequest| test::call_service(&app, r.to_request());
    fx.populate(&s).await;
    let mut failures = Vec::new();

    // Brute force: five wrong codes, each counted, then the right one is dead too (S2).
    fx.ok(
        &s,
        "g",
        Method::POST,
        "/v1/sms",
        json!({"purpose": "apply"}),
    )
    .await;
    let g_code = fx.code("g", Purpose::Apply);
    let g_apply = |code: &str| {
        format!(
            r#"{{"office": "maoming", "vin": "{}", "voucher": "{}", "notice_version": "v1", "sms_code": "{code}"}}"#,
            vin(8),
            voucher_no(8)
        )
    };
    let mut cases: Vec<Case> = (0..5u64)
        .map(|n| {
            post(
                &format!("apply: wrong code, try {}", n + 1),
                "/v1/applications",
                &g_apply(&wrong(&g_code)),
            )
            .by("g")
            .is(422, "sms_code_invalid")
            .field("sms_code")
            .with("tries_left", json!(4 - n))
        })
        .collect();
    cases.push(
        post(
            "apply: the right code after five wrong ones",
            "/v1/applications",
            &g_apply(&g_code),
        )
        .by("g")
        .is(422, "sms_code_invalid")
        .field("sms_code")
        .with("tries_left", json!(0)),
    );

    // An identity code submitted before its countdown, and a resend within 60 s.
    let fresh = fx.var("fresh").to_string();
    fx.ok(
        &s,
        "a",
        Method::POST,
        "/v1/sms",
        json!({"purpose": "identity", "application": fresh}),
    )
    .await;
    let a_identity = fx.code("a", Purpose::Identity);
    fx.set("a_identity_wrong", wrong(&a_identity));
    fx.set("a_identity", a_identity);
    cases.extend([
        post(
            "identity: the right code before the countdown",
            "/v1/applications/{fresh}/identity",
            r#"{"sms_code": "{a_identity}"}"#,
        )
        .by("a")
        .is(429, "sms_too_soon")
        .with("retry_after_ms", json!(5_000)),
        post(
            "identity: a second code within 60 s",
            "/v1/sms",
            r#"{"purpose": "identity", "application": "{fresh}"}"#,
        )
        .by("a")
        .is(429, "sms_too_soon")
        .has("retry_after_ms"),
        post(
            "identity: a wrong code before the countdown",
            "/v1/applications/{fresh}/identity",
            r#"{"sms_code": "{a_identity_wrong}"}"#,
        )
        .by("a")
        .is(429, "sms_too_soon"),
    ]);
    failures.extend(fx.run(&s, &cases).await);

    // Five minutes and a second later: codes are expired; batch and candidates too.
    fx.ok(
        &s,
        "h",
        Method::POST,
        "/v1/sms",
        json!({"purpose": "apply"}),
    )
    .await;
    let h_code = fx.code("h", Purpose::Apply);
    fx.set("h_code", h_code);
    fx.advance(300_001);
    fx.settle(&s).await;
    let cases = vec![
        post("apply: an expired code", "/v1/applications", r#"{"office": "maoming", "vin": "{vin9}", "voucher": "{voucher9}", "notice_version": "v1", "sms_code": "{h_code}"}"#)
            .by("h").is(422, "sms_code_expired").field("sms_code"),
        post("apply: an expired code, sent before the catalogue", "/v1/applications", r#"{"office": "maoming", "vin": "{vin5}", "voucher": "{voucher5}", "notice_version": "v1", "sms_code": "{f_code}"}"#)
            .by("f").is(422, "sms_code_expired").field("sms_code"),
        post("identity: an expired code", "/v1/applications/{fresh}/identity", r#"{"sms_code": "{a_identity}"}"#)
            .by("a").is(422, "sms_code_expired").field("sms_code"),
        post("candidate: from an expired batch", "/v1/applications/{ready}/candidates", r#"{"serial": "{other}"}"#)
            .by("b").is(409, "hold_expired"),
        post("claim: an expired candidate", "/v1/applications/{ready}/claim", r#"{"serial": "{cand}"}"#)
            .by("b").is(409, "hold_expired"),
        post("draw: both quotas spent, holds gone", "/v1/applications/{spent}/draws", "{}")
            .by("e").is(409, "exhausted"),
        post("custom check: both quotas spent, holds gone", "/v1/applications/{spent}/custom", r#"{"plates": ["A2468"]}"#)
            .by("e").is(409, "exhausted"),
    ];
    failures.extend(fx.run(&s, &cases).await);
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
