//! The OpenAPI 3.1 document served at `GET /v1/openapi.json`.
//!
//! The operations come from the route table ([`crate::routes::all`]): each route's method, path,
//! access and [`Doc`] (summary, request body's schema, query parameters, the answer's schema and
//! the status codes), so a route cannot be served undocumented. Every schema comes from a Rust
//! type (`utoipa::ToSchema`): the handlers' body and query types, the answer types they return
//! (`crate::routes::answers` and beside each handler) and [`ErrorBody`] for every error.

use std::sync::OnceLock;

use serde_json::{json, Map, Value};

use crate::error::ErrorBody;
use crate::routes::{Access, Route};

/// The schemas of the document's components, by name.
pub type Schemas = Map<String, Value>;

/// What the document says about a route beside its method, path and access.
#[derive(Debug, Clone, Copy)]
pub struct Doc {
    pub summary: &'static str,
    /// The request body's content (see [`json_body`]), its schemas registered in the components.
    pub request: Option<fn(&mut Schemas) -> Value>,
    /// The query parameters, from the handler's query type (see [`query_params`]).
    pub query: Option<fn() -> Vec<Value>>,
    /// The successful answer.
    pub response: Answer,
    /// Status codes, the successful one first.
    pub codes: &'static [u16],
}

/// What a route answers when it succeeds.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    /// A JSON body, its schema from the handler's answer type (see [`json_answer`],
    /// [`json_list`]).
    Json(fn(&mut Schemas) -> Value),
    /// An HTML page, or the JSON body of this schema with `Accept: application/json`.
    Page(fn(&mut Schemas) -> Value),
    /// Prometheus text.
    Metrics,
    /// No body.
    Empty,
}

fn to_json<T: serde::Serialize>(value: T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// A JSON request body of the handler's body type `T`: its schema (with the constraints the
/// handler enforces, and `additionalProperties: false` where the type refuses unknown fields)
/// and those it refers to become components.
pub fn json_body<T: utoipa::ToSchema>(schemas: &mut Schemas) -> Value {
    json!({"application/json": {"schema": register::<T>(schemas)}})
}

/// Registers `T`'s schema and those it refers to as components; answers a reference to it.
/// Two types of one name would share a component: the second one registered is refused (in
/// debug builds, which the tests are) rather than silently replacing the first.
pub fn register<T: utoipa::ToSchema>(schemas: &mut Schemas) -> Value {
    let mut parts = Vec::new();
    T::schemas(&mut parts);
    let name = T::name();
    parts.push((name.to_string(), T::schema()));
    for (name, schema) in parts {
        let schema = to_json(schema);
        if let Some(before) = schemas.get(&name) {
            debug_assert_eq!(before, &schema, "two schemas named {name}");
        }
        schemas.insert(name, schema);
    }
    reference(&name)
}

/// The schema of a JSON answer of the handler's answer type `T`.
pub fn json_answer<T: utoipa::ToSchema>(schemas: &mut Schemas) -> Value {
    register::<T>(schemas)
}

/// The schema of a JSON answer that is an array of `T`.
pub fn json_list<T: utoipa::ToSchema>(schemas: &mut Schemas) -> Value {
    json!({"type": "array", "items": register::<T>(schemas)})
}

/// Any JSON object (the OpenAPI document itself).
pub fn any_object(_: &mut Schemas) -> Value {
    json!({"type": "object"})
}

/// The query parameters of the handler's query type `T`.
pub fn query_params<T: utoipa::IntoParams>() -> Vec<Value> {
    T::into_params(|| Some(utoipa::openapi::path::ParameterIn::Query))
        .into_iter()
        .map(to_json)
        .collect()
}

/// Certificate records: CSV, or a JSON array of rows of type `T`.
pub fn certificate_import<T: utoipa::ToSchema>(schemas: &mut Schemas) -> Value {
    json!({
        "text/csv": {"schema": {"type": "string", "description": "header vin,voucher,class,energy, then one record per line"}},
        "application/json": {"schema": json_list::<T>(schemas)},
    })
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn status_text(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        400 => "Bad input: bad_request, invalid_plate (with position and field) or invalid_vin",
        401 => "unauthorized: missing, malformed, forged or expired token",
        403 => "forbidden (a citizen token on the operator API) or blacklisted",
        404 => "not_found",
        409 => "a state conflict: conflict, application_exists, vin_already_used, not_available, quota_spent, hold_expired, not_held, exhausted, identity_not_verified, selection_closed",
        413 => "payload_too_large",
        422 => "voucher_mismatch, vehicle_not_eligible, notice_not_accepted, sms_code_invalid, sms_code_expired",
        429 => "too_soon, sms_too_soon or too_many_requests, with retry_after_ms",
        503 => "unavailable (storage cannot persist, or overload; with retry_after_ms when shed for load): nothing was changed",
        _ => "See the error code",
    }
}

fn operation(route: &Route, schemas: &mut Schemas) -> Value {
    let d = &route.doc;
    let mut params: Vec<Value> = route
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "minLength": 1}}))
        .collect();
    params.extend(d.query.map(|f| f()).unwrap_or_default());
    let success = match d.response {
        Answer::Metrics => json!({"text/plain; version=0.0.4": {"schema": {"type": "string"}}}),
        Answer::Page(schema) => json!({
            "text/html": {"schema": {"type": "string"}},
            "application/json": {"schema": schema(schemas)},
        }),
        Answer::Empty => Value::Null,
        Answer::Json(schema) => json!({"application/json": {"schema": schema(schemas)}}),
    };
    let error = json!({"application/json": {"schema": register::<ErrorBody>(schemas)}});
    let mut responses = Map::new();
    for &code in d.codes {
        let body = if code < 300 {
            success.clone()
        } else {
            error.clone()
        };
        let mut response = json!({"description": status_text(code)});
        if !body.is_null() {
            response["content"] = body;
        }
        responses.insert(code.to_string(), response);
    }
    let mut op = json!({
        "operationId": format!("{} {}", route.verb.as_str().to_ascii_lowercase(), route.path),
        "summary": d.summary,
        "tags": [tag(route.access)],
        "parameters": params,
        "responses": responses,
        "security": match route.access {
            Access::Public => json!([]),
            Access::Citizen => json!([{"citizen": []}, {"session": []}]),
            Access::Operator => json!([{"operator": []}]),
        },
    });
    if let (Some(content), Value::Object(map)) = (d.request, &mut op) {
        map.insert(
            "requestBody".into(),
            json!({"required": true, "content": content(schemas)}),
        );
    }
    op
}

fn tag(access: Access) -> &'static str {
    match access {
        Access::Public => "public",
        Access::Citizen => "citizen",
        Access::Operator => "operator",
    }
}

/// The document: every route of the route table, in its order.
pub fn document() -> Value {
    let mut paths = Map::new();
    let mut components = Schemas::new();
    for route in crate::routes::all() {
        let entry = paths
            .entry(route.path.to_string())
            .or_insert_with(|| json!({}));
        if let Value::Object(m) = entry {
            m.insert(
                route.verb.as_str().to_ascii_lowercase(),
                operation(route, &mut components),
            );
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "platepool gateway",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Online licence-plate pre-selection (互联网预选号牌): the citizen flow, the operator API and public pages. Errors are {\"error\": {\"code\", \"message\", \"field\"?, …}}.",
        },
        "tags": [
            {"name": "public", "description": "No token"},
            {"name": "citizen", "description": "A citizen token signed by the embedding platform"},
            {"name": "operator", "description": "The operator token"},
        ],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "citizen": {"type": "http", "scheme": "bearer", "description": "a citizen token signed by the embedding platform: v1.<payload>.<HMAC-SHA256 signature>, or a JWT where configured"},
                "session": {"type": "apiKey", "in": "cookie", "name": "platepool_session", "description": "the session cookie the gateway's own login sets (standalone mode), in place of the citizen header; state changes then only from the page's own origin"},
                "operator": {"type": "http", "scheme": "bearer", "description": "the configured operator token"},
            },
            "schemas": components,
        },
    })
}

/// The document as served (built once).
pub fn document_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| serde_json::to_string(&document()).unwrap_or_else(|_| "{}".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_an_operation_and_nothing_else() {
        let doc = document();
        let mut operations = 0;
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                operations += 1;
                assert!(
                    crate::routes::all()
                        .iter()
                        .any(|r| r.path == path && r.verb.as_str().eq_ignore_ascii_case(method)),
                    "{method} {path} is documented but not served"
                );
            }
        }
        assert_eq!(operations, crate::routes::all().len());
    }

    #[test]
    fn every_route_lists_the_statuses_its_handler_can_answer() {
        // Routes that never reach the engine nor a store and are never shed for load.
        let no_engine = [
            ("GET", "/healthz"),
            ("GET", "/metrics"),
            ("GET", "/v1/admin/blacklist"),
            ("POST", "/v1/admin/tokens"),
            ("GET", "/v1/admin/clock"),
            ("POST", "/v1/logout"),
        ];
        for route in crate::routes::all() {
            let d = &route.doc;
            let (method, path) = route.key();
            let has = |code| d.codes.contains(&code);
            if d.request.is_some() {
                assert!(has(413), "{method} {path} takes a body: 413");
            }
            if !no_engine.contains(&(method, path)) {
                assert!(has(503), "{method} {path} can answer 503");
            }
            let mut sorted = d.codes[1..].to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted, d.codes[1..], "{method} {path}: in order, once");
        }
        let sms = crate::routes::all()
            .iter()
            .find(|r| r.path == "/v1/sms")
            .expect("documented");
        assert!(sms.doc.codes.contains(&403) && sms.doc.codes.contains(&409));
        let lookup = &document()["paths"]["/v1/admin/applications"]["get"];
        let names: Vec<&str> = lookup["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert!(
            names.contains(&"voucher") && names.contains(&"code"),
            "{names:?}"
        );
        assert!(lookup["responses"]["404"].is_object());
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let schemas = doc["components"]["schemas"]
            .as_object()
            .expect("schemas")
            .clone();
        fn walk(v: &Value, schemas: &Map<String, Value>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        let name = r.trim_start_matches("#/components/schemas/");
                        assert!(schemas.contains_key(name), "dangling {r}");
                    }
                    m.values().for_each(|x| walk(x, schemas));
                }
                Value::Array(a) => a.iter().for_each(|x| walk(x, schemas)),
                _ => {}
            }
        }
        walk(&doc, &schemas);
        assert_eq!(
            doc["paths"]["/v1/offices/{office}/pool"]["get"]["parameters"][0]["name"],
            "office"
        );
    }
}
