//! Answers checked against the OpenAPI document the gateway serves: the status must be one the
//! operation lists, and a JSON answer must match the schema the document gives for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

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
