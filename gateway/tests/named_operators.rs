//! Named operators (SPEC S4) through the real app factory: a clerk acts only on its offices, an
//! auditor only reads, every audit entry names the credential (never a header), the legacy
//! operator token is an admin named `operator`, and credentials rotate while serving.
#![allow(clippy::unwrap_used)]

use actix_web::http::StatusCode;
use actix_web::test;
use actix_web::App;
use platepool_engine::OfficeRules;
use platepool_gateway::operators::{hash_token, Credentials, OperatorEntry, Role};
use serde_json::{json, Value};

mod support;
use support::{t0, OPERATOR};

const CLERK: &str = "clerk-token-of-li-0123456789abcdef";
const AUDITOR: &str = "auditor-token-of-wang-0123456789ab";

fn entry(name: &str, role: Role, offices: &[&str], token: &str) -> OperatorEntry {
    OperatorEntry {
        name: name.into(),
        role,
        offices: offices.iter().map(|s| s.to_string()).collect(),
        token_sha256: hash_token(token),
    }
}

macro_rules! call {
    ($app:expr, $method:ident, $uri:expr, $token:expr, $body:expr) => {{
        let mut req = test::TestRequest::$method()
            .uri($uri)
            .insert_header(("Authorization", format!("Bearer {}", $token)))
            .insert_header(("X-Operator", "someone_else"));
        if let Some(b) = $body {
            req = req.set_json(b);
        }
        let resp = test::call_service(&$app, req.to_request()).await;
        let status = resp.status();
        let bytes = test::read_body(resp).await;
        (
            status,
            serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
        )
    }};
}

/// A request by verb name; (status, JSON body).
macro_rules! send {
    ($app:expr, $verb:expr, $uri:expr, $token:expr, $body:expr) => {{
        let method = actix_web::http::Method::from_bytes($verb.as_bytes()).unwrap();
        let mut req = test::TestRequest::default()
            .method(method)
            .uri(&$uri)
            .insert_header(("Authorization", format!("Bearer {}", $token)));
        if let Some(b) = $body {
            req = req.set_json(b);
        }
        let resp = test::call_service(&$app, req.to_request()).await;
        let status = resp.status();
        let bytes = test::read_body(resp).await;
        (
            status,
            serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
        )
    }};
}

#[actix_rt::test]
async fn roles_limit_what_each_credential_does_and_the_trail_names_it() {
    let (_dir, engine) = support::engine(Some(3), Some(support::TestClock::at(t0()))).await;
    let rules = OfficeRules {
        opening_window_ms: 0,
        ..OfficeRules::default()
    };
    for id in ["maoming", "gaozhou"] {
        engine
            .put_office(id, support::office(id, &["small"], rules.clone()), "system")
            .await
            .unwrap();
    }
    let mut config = support::gateway_config();
    config.operators = vec![
        entry("li", Role::Clerk, &["maoming"], CLERK),
        entry("wang", Role::Auditor, &[], AUDITOR),
    ];
    let gw = support::gateway(&engine, config.clone());
    let app = test::init_service(App::new().service(gw.scope(""))).await;
    let release = |label: &str| {
        json!({"class": "small", "label": label, "patterns": ["B00##"],
               "opens_at": "2020-01-01T00:00:00Z"})
    };

    // The clerk releases numbers at its own office, and the trail says who: li, not the header.
    let (s, body) = call!(
        app,
        post,
        "/v1/admin/offices/maoming/releases",
        CLERK,
        Some(release("li's"))
    );
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (s, trail) = call!(
        app,
        get,
        "/v1/admin/audit?office=maoming",
        AUDITOR,
        None::<Value>
    );
    assert_eq!(s, StatusCode::OK, "{trail}");
    let text = trail.to_string();
    assert!(text.contains("operator:li"), "{text}");
    assert!(
        !text.contains("someone_else"),
        "a header never names the actor: {text}"
    );

    // Another office, a cross-office call, an office's configuration: refused, nothing changed.
    let (s, _) = call!(
        app,
        post,
        "/v1/admin/offices/gaozhou/releases",
        CLERK,
        Some(release("x"))
    );
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call!(
        app,
        get,
        "/v1/admin/audit?office=gaozhou",
        CLERK,
        None::<Value>
    );
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call!(app, get, "/v1/admin/blacklist", CLERK, None::<Value>);
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call!(
        app,
        post,
        "/v1/admin/registrations",
        CLERK,
        Some(json!({"office": "gaozhou", "serial": "B0001"}))
    );
    assert_eq!(s, StatusCode::FORBIDDEN);
    let office = json!({"name": "n", "prefix": "粤K", "classes": ["small"]});
    let (s, _) = call!(
        app,
        put,
        "/v1/admin/offices/maoming",
        CLERK,
        Some(office.clone())
    );
    assert_eq!(s, StatusCode::FORBIDDEN);
    let stats = engine.stats("gaozhou").await.unwrap();
    assert!(
        stats.iter().all(|c| c.releases.is_empty()),
        "gaozhou has no release"
    );

    // The auditor reads everything and writes nothing.
    let (s, _) = call!(
        app,
        get,
        "/v1/admin/offices/gaozhou/stats",
        AUDITOR,
        None::<Value>
    );
    assert_eq!(s, StatusCode::OK);
    let (s, body) = call!(
        app,
        post,
        "/v1/admin/offices/maoming/releases",
        AUDITOR,
        Some(release("w"))
    );
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");

    // PLATEPOOL_OPERATOR_TOKEN is an admin named operator.
    let (s, _) = call!(
        app,
        put,
        "/v1/admin/offices/maoming",
        OPERATOR,
        Some(office)
    );
    assert_eq!(s, StatusCode::OK);
    let (_, trail) = call!(
        app,
        get,
        "/v1/admin/audit?office=maoming",
        OPERATOR,
        None::<Value>
    );
    assert!(trail.to_string().contains("operator:operator"), "{trail}");

    // Rotation: the clerk's token is replaced while serving; the old one stops at once.
    config.operators[0] = entry(
        "li",
        Role::Clerk,
        &["maoming"],
        "a-new-token-for-li-0123456789",
    );
    gw.operators.replace(Credentials::new(&config).unwrap());
    let (s, _) = call!(
        app,
        get,
        "/v1/admin/offices/maoming/stats",
        CLERK,
        None::<Value>
    );
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = call!(
        app,
        get,
        "/v1/admin/offices/maoming/stats",
        "a-new-token-for-li-0123456789",
        None::<Value>
    );
    assert_eq!(s, StatusCode::OK);
}

/// A path of the route table with its `{…}` segments filled, naming `office` where it names one.
fn filled(path: &str, office: &str) -> String {
    path.replace("{office}", office)
        .replace("{serial}", "B0001")
        .replace("{id}", "1")
        .replace("{user}", "u1")
}

/// A body naming `office` for a write to `path` (a registration names its office in the body;
/// the other writes are refused by role before their body is read).
fn body_naming(path: &str, office: &str) -> Value {
    if path == "/v1/admin/registrations" {
        return json!({"office": office, "serial": "B0001"});
    }
    json!({"office": office, "serial": "B0001", "class": "small", "label": "x",
           "patterns": ["B00##"], "opens_at": "2020-01-01T00:00:00Z"})
}

/// Routes whose handler scopes its answer by the `office` query parameter.
fn scoped_by_query(path: &str) -> bool {
    matches!(path, "/v1/admin/audit" | "/v1/admin/applications")
}

#[actix_rt::test]
async fn every_operator_route_refuses_a_clerk_of_another_office_and_an_auditor_writing() {
    use platepool_gateway::routes::{all, Access, Verb};

    let (_dir, engine) = support::engine(Some(4), Some(support::TestClock::at(t0()))).await;
    for id in ["maoming", "gaozhou"] {
        engine
            .put_office(
                id,
                support::office(id, &["small"], OfficeRules::default()),
                "system",
            )
            .await
            .unwrap();
    }
    let mut config = support::gateway_config();
    config.allow_token_issue = true;
    config.operators = vec![
        entry("li", Role::Clerk, &["maoming"], CLERK),
        entry("wang", Role::Auditor, &[], AUDITOR),
    ];
    let gw = support::gateway(&engine, config);
    let app = test::init_service(App::new().service(gw.scope(""))).await;
    let routes: Vec<_> = all()
        .iter()
        .filter(|r| r.access == Access::Operator)
        .collect();
    assert!(routes.len() >= 15, "{} operator routes", routes.len());
    let mut wrong = Vec::new();
    for r in &routes {
        let (verb, write) = (r.verb.as_str(), r.verb != Verb::Get);
        let body = write.then(|| body_naming(r.path, "gaozhou"));
        // A clerk of maoming naming gaozhou: in the path, else in the query and the body.
        let uri = if r.path.contains("{office}") || r.path == "/v1/admin/registrations" {
            filled(r.path, "gaozhou")
        } else {
            format!("{}?office=gaozhou", filled(r.path, "gaozhou"))
        };
        let (s, answer) = send!(app, verb, &uri, CLERK, body.clone());
        if s != StatusCode::FORBIDDEN || answer["error"]["code"] != "forbidden" {
            wrong.push(format!("clerk of maoming: {verb} {uri} → {s} {answer}"));
        }
        // Naming its own office in the query of a route that is not scoped by it gains nothing.
        if !r.path.contains("{office}")
            && !scoped_by_query(r.path)
            && r.path != "/v1/admin/registrations"
        {
            let uri = format!("{}?office=maoming", filled(r.path, "maoming"));
            let (s, answer) = send!(
                app,
                verb,
                &uri,
                CLERK,
                write.then(|| body_naming(r.path, "maoming"))
            );
            if s != StatusCode::FORBIDDEN {
                wrong.push(format!(
                    "clerk of maoming, cross-office route: {verb} {uri} → {s} {answer}"
                ));
            }
        }
        // The auditor: every write refused as forbidden, every read let through its role check.
        let uri = filled(r.path, "maoming");
        let (s, answer) = send!(app, verb, &uri, AUDITOR, body);
        let refused = s == StatusCode::FORBIDDEN || s == StatusCode::UNAUTHORIZED;
        if write && (s != StatusCode::FORBIDDEN || answer["error"]["code"] != "forbidden") {
            wrong.push(format!("auditor writing: {verb} {uri} → {s} {answer}"));
        }
        if !write && refused {
            wrong.push(format!("auditor reading: {verb} {uri} → {s} {answer}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong answers:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    // Nothing of all that changed gaozhou, nor wrote anything in either trail.
    let stats = engine.stats("gaozhou").await.unwrap();
    assert!(stats.iter().all(|c| c.releases.is_empty()));
    for office in ["maoming", "gaozhou"] {
        let (_, trail) = send!(
            app,
            "GET",
            &format!("/v1/admin/audit?office={office}"),
            OPERATOR,
            None::<Value>
        );
        let text = trail["entries"].to_string();
        assert!(
            !text.contains("operator:li") && !text.contains("operator:wang"),
            "{text}"
        );
    }
}
