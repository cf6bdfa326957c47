//! The OpenAPI 3.1 document served at `GET /v1/openapi.json`.
//!
//! The operations come from the route table ([`crate::routes::all`]): each route's method, path,
//! access and [`Doc`] (summary, request body's schema, query parameters, the answer's schema and
//! the status codes), so a route cannot be served undocumented.

use std::sync::OnceLock;

use serde_json::{json, Map, Value};

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
    /// Schema of the successful answer; `[Name]` is an array of `Name`; `text` is plain text and
    /// `html` an HTML page.
    pub response: &'static str,
    /// Status codes, the successful one first.
    pub codes: &'static [u16],
}

fn to_json<T: serde::Serialize>(value: T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// A JSON request body of the handler's body type `T`: its schema (with the constraints the
/// handler enforces, and `additionalProperties: false` where the type refuses unknown fields)
/// and those it refers to become components.
pub fn json_body<T: utoipa::ToSchema>(schemas: &mut Schemas) -> Value {
    let mut parts = Vec::new();
    T::schemas(&mut parts);
    for (name, schema) in parts {
        schemas.insert(name, to_json(schema));
    }
    let name = T::name();
    schemas.insert(name.to_string(), to_json(T::schema()));
    json!({"application/json": {"schema": reference(&name)}})
}

/// The query parameters of the handler's query type `T`.
pub fn query_params<T: utoipa::IntoParams>() -> Vec<Value> {
    T::into_params(|| Some(utoipa::openapi::path::ParameterIn::Query))
        .into_iter()
        .map(to_json)
        .collect()
}

/// The office configuration (`PUT /v1/admin/offices/{office}`), the engine's `OfficeConfig`.
pub fn office_config(_: &mut Schemas) -> Value {
    json!({"application/json": {"schema": reference("OfficeConfig")}})
}

/// Certificate records: CSV, or a JSON array of rows.
pub fn certificate_import(_: &mut Schemas) -> Value {
    json!({
        "text/csv": {"schema": {"type": "string", "description": "header vin,voucher,class,energy, then one record per line"}},
        "application/json": {"schema": {"type": "array", "items": reference("CertificateRow")}},
    })
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn schema_of(name: &str) -> Value {
    match name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        Some(item) => json!({"type": "array", "items": reference(item)}),
        None if name == "Object" => json!({"type": "object"}),
        None => reference(name),
    }
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
    let mut responses = Map::new();
    for &code in d.codes {
        let body = if code < 300 {
            match d.response {
                "text" => json!({"text/plain; version=0.0.4": {"schema": {"type": "string"}}}),
                "html" => json!({
                    "text/html": {"schema": {"type": "string"}},
                    "application/json": {"schema": reference("VoucherDocument")},
                }),
                "empty" => Value::Null,
                name => json!({"application/json": {"schema": schema_of(name)}}),
            }
        } else {
            json!({"application/json": {"schema": reference("Error")}})
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

fn string() -> Value {
    json!({"type": "string"})
}
fn time() -> Value {
    json!({"type": "string", "format": "date-time"})
}
fn int() -> Value {
    json!({"type": "integer", "minimum": 0})
}
fn number() -> Value {
    json!({"type": "number", "minimum": 0})
}
fn boolean() -> Value {
    json!({"type": "boolean"})
}
fn object(required: &[&str], properties: Value) -> Value {
    json!({"type": "object", "required": required, "properties": properties})
}
fn array(item: Value) -> Value {
    json!({"type": "array", "items": item})
}
/// An object that refuses properties it does not list (`deny_unknown_fields`).
fn strict(mut v: Value) -> Value {
    v["additionalProperties"] = json!(false);
    v
}
fn nullable(v: Value) -> Value {
    json!({"anyOf": [v, {"type": "null"}]})
}

fn schemas() -> Schemas {
    let plate = object(
        &["serial", "plate"],
        json!({"serial": string(), "plate": string()}),
    );
    let hold = object(
        &["plates", "expires_at", "expires_in_ms"],
        json!({"plates": array(plate.clone()), "expires_at": time(), "expires_in_ms": int()}),
    );
    let claim = object(
        &["serial", "plate", "claimed_at", "register_by", "voucher"],
        json!({
            "serial": string(), "plate": string(), "claimed_at": time(), "register_by": time(),
            "voucher": object(&["serial", "code"], json!({"serial": string(), "code": string()})),
        }),
    );
    let counts = json!({
        "pending": int(), "available": int(), "held": int(), "claimed": int(), "issued": int(),
        "withdrawn": int(), "total": int(),
    });
    let rules = json!({
        "type": "object",
        "description": "SPEC §3; omitted rules take the defaults",
        "properties": {
            "custom_quota": int(), "custom_per_check": int(), "custom_min_interval_ms": int(),
            "random_quota": int(), "random_batch": int(), "random_ttl_ms": int(), "candidate_ttl_ms": int(),
            "sms_confirm_delay_ms": int(), "validity_working_days": int(),
            "holidays": array(json!({"type": "string", "format": "date"})),
            "blacklist_days": int(),
            "service_hours": nullable(object(&["open", "close"], json!({"open": string(), "close": string()}))),
            "maintenance": boolean(), "opening_window_ms": int(), "random_min_interval_ms": int(),
            "custom_patterns": {"type": "object", "additionalProperties": array(string())},
            "deny": array(string()),
        },
    });
    let mut all = Map::new();
    let part = json!({
        "Error": object(&["error"], json!({
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "additionalProperties": true,
                "properties": {
                    "code": {"type": "string", "enum": crate::error::CODES},
                    "message": string(),
                    "field": string(),
                    "position": nullable(int()),
                    "retry_after_ms": int(),
                    "results": array(object(&["serial", "reason"], json!({"serial": string(), "reason": {"type": "string", "enum": ["taken", "held", "not_in_pool"]}}))),
                    "custom_left": int(),
                    "next_check_in_ms": int(),
                },
            },
        })),
        "Health": object(&["status"], json!({"status": string()})),
        "Ready": object(&["status"], json!({"status": string(), "offices": int()})),
        "OfficeSummary": object(&["id", "name", "prefix", "classes"], json!({
            "id": string(), "name": string(), "prefix": string(), "classes": array(string()),
        })),
        "OfficeRules": strict(rules),
        "Notice": object(&["version", "text"], json!({"version": string(), "text": string()})),
        "OfficeConfig": strict(object(&["name", "prefix", "classes"], json!({
            "name": string(), "prefix": string(), "classes": array(string()),
            "rules": reference("OfficeRules"),
            "notice": strict(object(&["version", "text"], json!({"version": string(), "text": string()}))),
        }))),
        "Office": object(&["name", "prefix", "classes"], json!({
            "id": string(), "name": string(), "prefix": string(), "classes": array(string()),
            "rules": reference("OfficeRules"), "notice": reference("Notice"),
        })),
        "PoolNotice": object(&["office", "as_of", "classes"], json!({
            "office": string(), "as_of": time(),
            "classes": array(object(&["class", "available", "releases"], json!({
                "class": string(), "available": int(),
                "releases": array(object(&["id", "label", "opens_at", "custom_from", "total", "available"], json!({
                    "id": int(), "label": string(), "opens_at": time(), "custom_from": time(),
                    "total": int(), "available": int(),
                }))),
            }))),
        })),
    });
    if let Value::Object(m) = part {
        all.extend(m);
    }
    let part = json!({
        "VinCheckResult": object(&["valid"], json!({
            "valid": boolean(), "reason": string(), "message": string(), "position": nullable(int()),
        })),
        "Me": object(&["user", "blacklisted_until", "applications"], json!({
            "user": string(), "blacklisted_until": nullable(time()),
            "applications": array(reference("Application")),
            "resume": nullable(object(&["application", "stage", "step"], json!({"application": string(), "stage": int(), "step": int()}))),
        })),
        "Login": object(&["token", "user", "expires_at"], json!({"token": string(), "user": string(), "expires_at": time(), "expires_in_ms": int()})),
        "SmsSent": object(&["sent_at", "confirm_after_ms", "expires_in_ms"], json!({"sent_at": time(), "confirm_after_ms": int(), "expires_in_ms": int()})),
        "Hold": hold,
        "Claim": claim,
    });
    if let Value::Object(m) = part {
        all.extend(m);
    }
    let part = json!({
        "Application": object(&["id", "office", "class", "vin", "state", "custom_left", "random_left"], json!({
            "id": string(), "office": string(), "class": string(), "vin": string(),
            "state": {"type": "string", "enum": ["confirmed", "selecting", "claimed", "exhausted", "issued", "lapsed", "voided"]},
            "custom_left": int(), "random_left": int(),
            "batch": nullable(reference("Hold")), "candidates": nullable(reference("Hold")), "claim": nullable(reference("Claim")),
        })),
        "Verified": object(&["verified_until"], json!({"verified_until": time()})),
        "Keyboard": object(&["length", "positions"], json!({
            "length": int(),
            "positions": array(object(&["index", "enabled"], json!({"index": int(), "enabled": string()}))),
        })),
        "DrawResult": object(&["batch", "random_left"], json!({
            "batch": reference("Hold"), "candidates": nullable(reference("Hold")), "random_left": int(),
        })),
    });
    if let Value::Object(m) = part {
        all.extend(m);
    }
    let part = json!({
        "Candidates": object(&["candidates"], json!({"candidates": reference("Hold")})),
        "ClaimResult": object(&["claim"], json!({"claim": reference("Claim")})),
        "VoucherDocument": object(&["voucher"], json!({"voucher": object(&["serial", "code", "plate", "office", "register_by"], json!({
            "serial": string(), "code": string(), "plate": string(), "office": string(), "register_by": time(),
        }))})),
        "ReleaseCreated": object(&["id", "total"], json!({
            "id": int(), "total": int(), "label": string(), "opens_at": time(), "custom_from": time(),
        })),
        "ReleasePreview": object(&["total", "named"], json!({
            "office": string(), "class": string(), "total": int(), "named": int(), "already_in_pool": int(),
            "sample": array(object(&["serial", "plate"], json!({"serial": string(), "plate": string()}))),
            "last": nullable(object(&["serial", "plate"], json!({"serial": string(), "plate": string()}))),
            "opens_at": time(), "custom_from": time(),
        })),
        "ReleaseWithdrawn": object(&["withdrawn"], json!({"id": int(), "withdrawn": int()})),
        "PlateWithdrawn": object(&["serial", "plate"], json!({"serial": string(), "plate": string(), "withdrawn": int()})),
    });
    if let Value::Object(m) = part {
        all.extend(m);
    }
    let part = json!({
        "CertificateRow": object(&["vin", "voucher", "class", "energy"], json!({
            "vin": string(), "voucher": string(), "class": string(),
            "energy": {"type": "string", "enum": ["fuel", "bev", "phev", "fcev"]},
        })),
        "ImportReport": object(&["imported", "rejected"], json!({
            "imported": int(),
            "rejected": array(object(&["row", "reason"], json!({"row": int(), "reason": string(), "line": int()}))),
        })),
        "OperatorApplication": object(&["id", "office", "class", "vin", "user", "phone", "state"], json!({
            "id": string(), "office": string(), "class": string(), "energy": string(), "vin": string(),
            "user": string(), "phone": string(), "state": string(), "practice": boolean(),
            "notice_version": string(), "created_at": time(), "custom_left": int(), "random_left": int(),
            "verified_until": nullable(time()), "batch": nullable(reference("Hold")),
            "candidates": nullable(reference("Hold")), "claim": nullable(reference("Claim")),
            "closed_at": nullable(time()),
        })),
        "Stats": object(&["office", "as_of", "classes", "mailbox_depth", "rates", "latency", "totals", "gateway"], json!({
            "office": string(), "as_of": time(), "mailbox_depth": int(),
            "classes": array(json!({"type": "object", "properties": counts})),
            "rates": object(&["scope", "window_s", "draws_per_s", "checks_per_s"], json!({
                "scope": {"type": "string", "enum": ["office"]},
                "window_s": number(), "draws_per_s": number(), "checks_per_s": number(),
            })),
            "latency": object(&["scope", "window_s", "draws", "checks"], json!({
                "scope": {"type": "string", "enum": ["office"]},
                "measured": string(), "window_s": number(),
                "draws": reference("OfficeCalls"), "checks": reference("OfficeCalls"),
            })),
            "totals": object(&["scope", "draws", "checks"], json!({
                "scope": {"type": "string", "enum": ["office"]},
                "since": string(),
                "draws": reference("OfficeCalls"), "checks": reference("OfficeCalls"),
            })),
            "gateway": object(&["scope", "window_s", "rates", "latency"], json!({
                "scope": {"type": "string", "enum": ["gateway"]},
                "window_s": number(),
                "rates": {"type": "object", "additionalProperties": number()},
                "latency": array(object(&["method", "route", "count"], json!({
                    "method": string(), "route": string(), "count": int(),
                    "errors_4xx": int(), "errors_5xx": int(),
                    "p50_ms": nullable(number()), "p95_ms": nullable(number()), "p99_ms": nullable(number()),
                }))),
            })),
        })),
        "OfficeCalls": object(&["count", "refused"], json!({
            "count": int(), "refused": int(),
            "p50_ms": nullable(number()), "p95_ms": nullable(number()), "p99_ms": nullable(number()),
            "mean_ms": nullable(number()),
        })),
        "BlacklistEntry": object(&["user", "since", "until"], json!({
            "user": string(), "since": time(), "until": time(), "office": string(), "application": string(),
        })),
        "Clock": object(&["now", "wall", "bound_ms", "steps", "degraded"], json!({"now": string(), "wall": string(), "bound_ms": int(), "steps": int(), "degraded": boolean(), "offset_ms": nullable(int()), "step_seen_at": nullable(string())})),
        "ClockConfirmed": object(&["confirmed", "from", "to", "jump_ms"], json!({"confirmed": boolean(), "from": string(), "to": string(), "jump_ms": int()})),
        "Lifted": object(&["user", "lifted"], json!({"user": string(), "lifted": boolean()})),
    });
    if let Value::Object(m) = part {
        all.extend(m);
    }
    let part = json!({
        "AuditPage": object(&["entries", "next_after", "more"], json!({
            "office": nullable(string()),
            "entries": array(object(&["id", "at", "who", "action"], json!({
                "id": int(), "at": time(), "who": string(), "action": string(),
                "application": nullable(string()), "serial": nullable(string()), "detail": string(),
            }))),
            "next_after": int(), "more": boolean(),
        })),
        "Token": object(&["token"], json!({"token": string(), "user": string(), "phone": string(), "expires_at": time()})),
        "OutboxMessage": object(&["phone", "purpose", "text", "sent_at"], json!({
            "phone": string(), "purpose": string(), "text": string(), "sent_at": time(),
        })),

    });
    if let Value::Object(m) = part {
        all.extend(m);
    }
    all
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
    let mut components = schemas();
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
