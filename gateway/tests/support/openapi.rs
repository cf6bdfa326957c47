//! Answers checked against the OpenAPI document the gateway serves: the status must be one the
//! operation lists, and a JSON answer must match the schema the document gives for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use actix_web::body::MessageBody;
use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use platepool_gateway::metrics::Metrics;
use platepool_gateway::route_keys;
use serde_json::{json, Value};

/// The document, the routes it describes and the schemas compiled so far.
pub struct Contract {
    pub doc: Value,
    routes: Vec<(&'static str, &'static str)>,
    matcher: Metrics,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

impl std::fmt::Debug for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contract").finish_non_exhaustive()
    }
}

/// The contract of this build of the gateway.
pub fn contract() -> &'static Contract {
    static CONTRACT: OnceLock<Contract> = OnceLock::new();
    CONTRACT.get_or_init(|| {
        let routes = route_keys();
        Contract {
            doc: platepool_gateway::openapi::document(),
            matcher: Metrics::new(&routes),
            routes,
            validators: Mutex::new(HashMap::new()),
        }
    })
}

/// Panics unless the answer matches the document (see [`Contract::check`]).
pub fn check(method: &str, path: &str, status: u16, content_type: &str, body: &[u8]) {
    contract().check(method, path, status, content_type, body);
}

/// An answer read by [`read_checked`].
#[derive(Debug)]
pub struct Read {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Bytes,
}

/// Reads `resp`, the answer to `method` `path`, and panics unless it matches the document (see
/// [`Contract::check`]). `mounts` are the paths the gateway's scope is mounted at in the app
/// (`""`: at the root); the answer to a path under none of them is the host app's own and is
/// not checked.
pub async fn read_checked<B: MessageBody>(
    mounts: &[&str],
    method: &str,
    path: &str,
    resp: ServiceResponse<B>,
) -> Read {
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = actix_web::test::read_body(resp).await;
    let below = mounts
        .iter()
        .find_map(|m| path.strip_prefix(m).filter(|rest| rest.starts_with('/')));
    if let Some(path) = below {
        check(method, path, status.as_u16(), &content_type, &body);
    }
    Read {
        status,
        content_type,
        body,
    }
}

impl Contract {
    /// The route pattern serving `method` `path` (the query string is ignored).
    pub fn route(&self, method: &str, path: &str) -> Option<(&'static str, &'static str)> {
        let path = path.split('?').next().unwrap_or(path);
        self.matcher
            .route_index(method, path)
            .and_then(|i| self.routes.get(i).copied())
    }

    /// Validates `instance` against `schema` (a schema of the document, its references into
    /// the document's components).
    pub fn validate(&self, schema: &Value, instance: &Value) -> Result<(), String> {
        let key = schema.to_string();
        let validator = {
            let mut cache = self.validators.lock().expect("validator cache");
            match cache.get(&key) {
                Some(v) => v.clone(),
                None => {
                    let mut rooted = schema.clone();
                    if let Value::Object(m) = &mut rooted {
                        m.insert("components".into(), self.doc["components"].clone());
                    }
                    let v = Arc::new(
                        jsonschema::draft202012::new(&rooted)
                            .unwrap_or_else(|e| panic!("schema {schema} does not compile: {e}")),
                    );
                    cache.insert(key, v.clone());
                    v
                }
            }
        };
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// Panics unless the answer `status` with `body` to `method` `path` is one the document
    /// gives: a status the operation lists, with a body matching its schema; on a path served
    /// with other methods, 405; elsewhere 404. Errors match the `Error` schema.
    pub fn check(&self, method: &str, path: &str, status: u16, content_type: &str, body: &[u8]) {
        let json: Option<Value> = serde_json::from_slice(body).ok();
        let schema = match self.route(method, path) {
            Some((_, pattern)) => {
                let op = &self.doc["paths"][pattern][method.to_ascii_lowercase()];
                let answer = &op["responses"][status.to_string()];
                assert!(
                    answer.is_object(),
                    "{method} {path} answered {status}, which the document does not list for \
                     {method} {pattern}: {}",
                    String::from_utf8_lossy(body)
                );
                if answer["content"].is_null() {
                    assert!(
                        body.is_empty(),
                        "{method} {path} answered {status} with a body the document does not give"
                    );
                    return;
                }
                if !content_type.starts_with("application/json") {
                    assert!(
                        answer["content"]
                            .as_object()
                            .is_some_and(|c| c.keys().any(|k| content_type
                                .starts_with(k.as_str())
                                || k.starts_with(content_type.split(';').next().unwrap_or("")))),
                        "{method} {path} answered {status} as {content_type}, not documented"
                    );
                    return;
                }
                answer["content"]["application/json"]["schema"].clone()
            }
            None => {
                let served_otherwise = ["GET", "POST", "PUT", "DELETE"]
                    .iter()
                    .any(|m| self.route(m, path).is_some());
                let expected = if served_otherwise { 405 } else { 404 };
                assert_eq!(status, expected, "{method} {path}: no route serves it");
                json!({"$ref": "#/components/schemas/Error"})
            }
        };
        let json = json.unwrap_or_else(|| {
            panic!(
                "{method} {path} answered {status} with a body that is not JSON: {}",
                String::from_utf8_lossy(body)
            )
        });
        if let Err(e) = self.validate(&schema, &json) {
            panic!("{method} {path} answered {status} off its schema: {e}\nbody: {json}");
        }
    }
}
