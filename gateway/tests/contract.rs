//! The OpenAPI document against the server and against `docs/API.md`.
//!
//! `docs_api_md_has_a_section_per_operation`: every operation of the document is a `### METHOD
//! /path` section of docs/API.md and every such section is an operation; every error code is
//! named there.
//!
//! `requests_generated_from_the_document`: for every operation, requests generated from the
//! document's own schemas (bodies and query parameters; proptest strategies built from the
//! JSON schemas, a seeded run of a bounded number of cases) are sent to the real app with
//! operator and citizen credentials. Every answer must be a status the operation lists with a
//! body matching its schema, never a 5xx. A schema-valid request is never refused as malformed
//! (400 `bad_request`) where the schema describes every rule of the body; `invalid_plate` and
//! `invalid_vin` are content checks beyond a schema (check digits, an office's patterns). Bodies
//! made invalid — a required field dropped, a field of the wrong JSON type, an unknown field
//! where the schema forbids them — are refused with 400 `bad_request` and change nothing.
//!
//! `PLATEPOOL_CONTRACT_SEED` picks the run (printed on failure); `PLATEPOOL_CONTRACT_CASES` the
//! cases per operation (default 24).

use std::collections::BTreeSet;

use actix_web::test;
use platepool_engine::OfficeRules;
use platepool_gateway::routes::Access;
use platepool_gateway::sms::Purpose;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{json, Map, Value};

mod support;
use support::openapi::contract;
use support::{certificate, voucher_no, OPERATOR};

const OFFICE: &str = "maoming";
const PHONE: &str = "13800138000";

/// Operations whose schema describes every rule the handler applies to the body's shape:
/// a request valid by the schema is never 400 `bad_request`. The others have rules across
/// fields or set by the office (`application` with an identity code, patterns or serials in a
/// release, `custom_per_check`, the look-up's combinations, an office's rules).
const FULLY_DESCRIBED: &[(&str, &str)] = &[
    ("POST", "/v1/vin/check"),
    ("POST", "/v1/applications"),
    ("POST", "/v1/applications/{id}/identity"),
    ("POST", "/v1/applications/{id}/draws"),
    ("POST", "/v1/applications/{id}/candidates"),
    ("POST", "/v1/applications/{id}/claim"),
    ("POST", "/v1/practice"),
    ("POST", "/v1/admin/registrations"),
    ("POST", "/v1/admin/offices/{office}/claims/{serial}/void"),
    ("DELETE", "/v1/admin/blacklist/{user}"),
    ("GET", "/v1/admin/audit"),
    ("POST", "/v1/admin/tokens"),
    ("GET", "/v1/admin/sms/outbox"),
];

#[actix_web::test]
async fn docs_api_md_has_a_section_per_operation() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/API.md");
    let text = std::fs::read_to_string(path).expect("docs/API.md is in the repository");
    let sections: BTreeSet<(String, String)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .filter_map(|h| {
            let (method, path) = h.split_once(' ')?;
            ["GET", "POST", "PUT", "DELETE", "PATCH"]
                .contains(&method)
                .then(|| (method.to_string(), path.trim().to_string()))
        })
        .collect();
    let doc = &contract().doc;
    let mut operations = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            operations.insert((method.to_ascii_uppercase(), path.clone()));
        }
    }
    let missing: Vec<_> = operations.difference(&sections).collect();
    let extra: Vec<_> = sections.difference(&operations).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "docs/API.md lacks a section for {missing:?}; sections that are no operation: {extra:?}"
    );
    for code in platepool_gateway::error::CODES {
        assert!(text.contains(&format!("`{code}`")), "docs/API.md: `{code}`");
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies from the document's schemas

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.trim_start_matches("#/components/schemas/");
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => schema,
    }
}

fn types(schema: &Value) -> Vec<&str> {
    match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Values valid by `schema`.
fn valid(doc: &Value, schema: &Value) -> BoxedStrategy<Value> {
    let schema = resolve(doc, schema);
    if let Some(values) = schema["enum"].as_array() {
        return proptest::sample::select(values.clone()).boxed();
    }
    if let Some(options) = schema["anyOf"].as_array().or(schema["oneOf"].as_array()) {
        let options: Vec<_> = options.iter().map(|s| valid(doc, s)).collect();
        return proptest::strategy::Union::new(options).boxed();
    }
    let types = types(schema);
    let mut options: Vec<BoxedStrategy<Value>> = Vec::new();
    for t in &types {
        options.push(match *t {
            "null" => Just(Value::Null).boxed(),
            "boolean" => any::<bool>().prop_map(Value::from).boxed(),
            "integer" => {
                let min = schema["minimum"].as_u64().unwrap_or(0);
                let max = schema["maximum"].as_u64().unwrap_or(min + 100_000);
                (min..=max).prop_map(Value::from).boxed()
            }
            "number" => (0.0..1e6f64).prop_map(Value::from).boxed(),
            "string" => string(schema),
            "array" => {
                let min = schema["minItems"].as_u64().unwrap_or(0) as usize;
                let max = schema["maxItems"].as_u64().map_or(min + 3, |m| m as usize);
                proptest::collection::vec(valid(doc, &schema["items"]), min..=max)
                    .prop_map(Value::Array)
                    .boxed()
            }
            _ => object(doc, schema),
        });
    }
    match options.len() {
        0 => object(doc, schema),
        1 => options.pop().expect("one"),
        _ => proptest::strategy::Union::new(options).boxed(),
    }
}

fn string(schema: &Value) -> BoxedStrategy<Value> {
    if schema["format"] == "date-time" {
        return proptest::sample::select(vec![
            "2026-11-24T02:00:00Z",
            "2026-11-24T10:30:00.250+08:00",
            "2027-01-01T00:00:00Z",
        ])
        .prop_map(Value::from)
        .boxed();
    }
    let min = schema["minLength"].as_u64().unwrap_or(0) as usize;
    let max = schema["maxLength"]
        .as_u64()
        .map_or(usize::MAX, |m| m as usize);
    let pattern = match schema["pattern"].as_str() {
        Some(p) => p.trim_start_matches('^').trim_end_matches('$').to_string(),
        None => format!(
            "[A-Za-z0-9]{{{},{}}}",
            min.max(1),
            max.clamp(min.max(1), 12)
        ),
    };
    proptest::string::string_regex(&pattern)
        .unwrap_or_else(|e| panic!("pattern {pattern}: {e}"))
        .prop_filter("within the lengths", move |s| {
            (min..=max).contains(&s.chars().count())
        })
        .prop_map(Value::from)
        .boxed()
}

fn object(doc: &Value, schema: &Value) -> BoxedStrategy<Value> {
    let required: Vec<String> = schema["required"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let properties = schema["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut fields: Vec<BoxedStrategy<Option<(String, Value)>>> = Vec::new();
    for (name, property) in properties {
        let value = valid(doc, &property);
        let key = name.clone();
        let present = value.prop_map(move |v| Some((key.clone(), v)));
        fields.push(if required.contains(&name) {
            present.boxed()
        } else {
            prop_oneof![Just(None), present].boxed()
        });
    }
    fields
        .prop_map(|fields| Value::Object(fields.into_iter().flatten().collect::<Map<_, _>>()))
        .boxed()
}

/// One value of `strategy`.
fn draw<T: std::fmt::Debug>(runner: &mut TestRunner, strategy: &BoxedStrategy<T>) -> T {
    strategy
        .new_tree(runner)
        .expect("a value from the schema")
        .current()
}

/// Ways to break a valid body, by its schema: `(what, the broken body)`.
fn broken(doc: &Value, schema: &Value, body: &Value) -> Vec<(String, Value)> {
    let schema = resolve(doc, schema);
    let mut out = Vec::new();
    let Value::Object(fields) = body else {
        return out;
    };
    if schema["additionalProperties"] == false {
        let mut b = fields.clone();
        b.insert("not_a_field".into(), json!(1));
        out.push(("an unknown field".into(), Value::Object(b)));
    }
    for name in schema["required"].as_array().into_iter().flatten() {
        let name = name.as_str().unwrap_or_default();
        let mut b = fields.clone();
        b.remove(name);
        out.push((format!("without `{name}`"), Value::Object(b)));
    }
    for (name, property) in schema["properties"].as_object().into_iter().flatten() {
        let property = resolve(doc, property);
        let t = types(property);
        let wrong = if t.contains(&"string") || property["enum"].is_array() {
            json!({"an": "object"})
        } else if t.contains(&"boolean") || t.contains(&"integer") || t.contains(&"array") {
            json!("text")
        } else {
            continue;
        };
        let mut b = fields.clone();
        b.insert(name.clone(), wrong);
        out.push((format!("`{name}` of the wrong type"), Value::Object(b)));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The app

/// How a request says who sends it.
#[derive(Debug, Clone, Copy)]
enum Credential<'a> {
    /// `Authorization: Bearer` (a citizen's or the operator's token).
    Bearer(&'a str),
    /// The standalone login's session cookie (SPEC S5) with the token, sent as the citizen's
    /// page sends it: from its own origin (`Sec-Fetch-Site: same-origin`).
    Session(&'a str),
}

/// Sends a request with a [`Credential`]; panics unless the answer matches the document and is
/// no 5xx. Answers (status, JSON body or Null).
macro_rules! send {
    ($app:expr, $method:expr, $path:expr, $credential:expr, $body:expr) => {{
        let (method, path, body): (&str, &str, Option<&Value>) = ($method, $path, $body);
        let verb = actix_web::http::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = test::TestRequest::default().method(verb).uri(path);
        req = match $credential {
            Credential::Bearer(token) => {
                req.insert_header(("Authorization", format!("Bearer {token}")))
            }
            Credential::Session(token) => req
                .insert_header((
                    "Cookie",
                    format!("{}={token}", platepool_gateway::session::COOKIE_NAME),
                ))
                .insert_header(("Sec-Fetch-Site", "same-origin")),
        };
        if let Some(body) = body {
            req = req.set_json(body);
        }
        let resp = test::call_service(&$app, req.to_request()).await;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = test::read_body(resp).await;
        assert!(
            status < 500 || status == 503,
            "{method} {path} {body:?}: {status} {}",
            String::from_utf8_lossy(&bytes)
        );
        support::openapi::check(method, path, status, &content_type, &bytes);
        (
            status,
            serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
        )
    }};
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

fn query_string(params: &Map<String, Value>) -> String {
    let pairs: Vec<String> = params
        .iter()
        .filter_map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Null => return None,
                other => other.to_string(),
            };
            let encoded: String = text
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            Some(format!("{k}={encoded}"))
        })
        .collect();
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

/// The query parameters of an operation as one object schema.
fn query_schema(op: &Value) -> Option<Value> {
    let params: Vec<&Value> = op["parameters"]
        .as_array()?
        .iter()
        .filter(|p| p["in"] == "query")
        .collect();
    if params.is_empty() {
        return None;
    }
    let mut properties = Map::new();
    let mut required = Vec::new();
    for p in params {
        let name = p["name"].as_str().unwrap_or_default().to_string();
        if p["required"] == true {
            required.push(json!(name));
        }
        properties.insert(name, p["schema"].clone());
    }
    Some(json!({"type": "object", "properties": properties, "required": required}))
}

#[actix_web::test]
async fn requests_generated_from_the_document() {
    let seed: u64 = std::env::var("PLATEPOOL_CONTRACT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_124);
    let cases: usize = std::env::var("PLATEPOOL_CONTRACT_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    println!("contract run: PLATEPOOL_CONTRACT_SEED={seed} PLATEPOOL_CONTRACT_CASES={cases}");
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );

    // An office with numbers and certificates, a citizen with a verified application.
    let (_dir, engine) = support::engine(Some(seed), None).await;
    let rules = OfficeRules {
        opening_window_ms: 0,
        sms_confirm_delay_ms: 0,
        custom_min_interval_ms: 0,
        custom_quota: 1_000,
        random_quota: 1_000,
        ..OfficeRules::default()
    };
    let who = "operator:test";
    engine
        .put_office(
            OFFICE,
            support::office("茂名市车辆管理所", &["small"], rules),
            who,
        )
        .await
        .expect("office");
    let release = support::release("small", "粤K·A0000–A9999", &["A####"], 0);
    engine
        .add_release(OFFICE, release, who)
        .await
        .expect("release");
    let rows = (1..=3).map(|n| certificate(n, "small", "fuel")).collect();
    engine.import_certificates(rows, who).await.expect("import");
    let gw = support::gateway(&engine, support::gateway_config());
    let app = support::app!(gw);
    let token = support::token("citizen-1", PHONE, engine.now_ms() / 1000 + 3_600);
    let citizen = Credential::Bearer(&token);

    let (s, _) = send!(
        app,
        "POST",
        "/v1/sms",
        &citizen,
        Some(&json!({"purpose": "apply"}))
    );
    assert_eq!(s, 200);
    let apply = json!({
        "office": OFFICE, "vin": support::vin(1), "voucher": voucher_no(1),
        "notice_version": "v1", "sms_code": support::last_code(&gw, PHONE, Purpose::Apply),
    });
    let (s, app_body) = send!(app, "POST", "/v1/applications", citizen, Some(&apply));
    assert_eq!(s, 201, "{app_body}");
    let id = app_body["id"].as_str().expect("id").to_string();
    let sms = json!({"purpose": "identity", "application": id});
    let (s, _) = send!(app, "POST", "/v1/sms", citizen, Some(&sms));
    assert_eq!(s, 200);
    let code_body = json!({"sms_code": support::last_code(&gw, PHONE, Purpose::Identity)});
    let identity = format!("/v1/applications/{id}/identity");
    let (s, b) = send!(app, "POST", &identity, citizen, Some(&code_body));
    assert_eq!(s, 200, "{b}");

    let doc = contract().doc.clone();
    let (mut sent, mut sessions) = (0, 0);
    for route in platepool_gateway::routes::all() {
        let (method, pattern) = route.key();
        let op = &doc["paths"][pattern][method.to_ascii_lowercase()];
        // Citizen routes alternate the bearer token and the session cookie, case by case.
        let credentials = match route.access {
            Access::Operator => vec![Credential::Bearer(OPERATOR)],
            Access::Citizen => vec![citizen, Credential::Session(&token)],
            Access::Public => vec![citizen],
        };
        let application = if pattern.contains("/releases/") {
            "1"
        } else {
            &id
        };
        let path = pattern
            .replace("{office}", OFFICE)
            .replace("{id}", application)
            .replace("{serial}", "A0001")
            .replace("{user}", "citizen-1");
        let body_schema = op["requestBody"]["content"]["application/json"]["schema"].clone();
        let has_body = body_schema.is_object() && route.path != "/v1/admin/certificates";
        let bodies = has_body.then(|| valid(&doc, &body_schema));
        let queries = query_schema(op).map(|q| valid(&doc, &q));
        let strict = FULLY_DESCRIBED.contains(&(method, pattern));
        for case in 0..cases {
            let credential = credentials[case % credentials.len()];
            let query = queries
                .as_ref()
                .map(|q| query_string(draw(&mut runner, q).as_object().expect("object")))
                .unwrap_or_default();
            let body = bodies.as_ref().map(|b| draw(&mut runner, b));
            let target = format!("{path}{query}");
            let (status, answer) = send!(app, method, &target, credential, body.as_ref());
            sent += 1;
            if let Credential::Session(_) = credential {
                sessions += 1;
                assert!(
                    status != 401 && code(&answer) != "forbidden",
                    "seed {seed}: {method} {target} with the session cookie: {answer}"
                );
            }
            if strict {
                assert!(
                    !(status == 400 && code(&answer) == "bad_request"),
                    "seed {seed}: {method} {target} {body:?}: a schema-valid request refused: \
                     {answer}"
                );
            }
            let Some(body) = body else { continue };
            for (what, bad) in broken(&doc, &body_schema, &body) {
                let (status, answer) = send!(app, method, &path, credential, Some(&bad));
                sent += 1;
                assert_eq!(
                    (status, code(&answer)),
                    (400, "bad_request"),
                    "seed {seed}: {method} {path} with {what}: {bad} → {answer}"
                );
            }
        }
    }
    assert!(sent > 35 * cases, "{sent} requests");
    assert!(
        sessions >= 10 * (cases / 2),
        "{sessions} with the session cookie"
    );
}
