//! The gateway's JSON bodies through the real app factory (`Gateway::scope`): every answer must
//! be a 2xx or a documented 4xx (API.md "Conventions"), never a 5xx, never a panic, and a 4xx must
//! be JSON whose `error.code` is one of [`platepool_gateway::error::CODES`] with that code's status.

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use actix_web::http::Method;
use actix_web::test::{self, TestRequest};
use actix_web::App;
use futures_util::FutureExt as _;
use platepool_engine::vin::Vin;
use platepool_engine::{
    AppId, ApplicationRequest, Caller, CertificateRow, Durability, Engine, EngineConfig,
    NewRelease, Notice, OfficeConfig, OfficeRules, Pattern, ReleaseSource,
};
use platepool_gateway::auth::{sign_token, TokenClaims};
use platepool_gateway::routes::Access;
use platepool_gateway::{Gateway, GatewayConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use super::{load_corpus, next_input, panic_text, save_crash, Stats, SLOW_EXEC};

pub const TARGET: &str = "json_bodies";
pub const WHAT: &str = "random and mutated JSON bodies on every JSON route of the gateway's route table, through the app factory: 2xx or a documented 4xx, never 5xx";

pub const OPERATOR: &str = "reliability-operator-token-0123456789";
/// A clerk of another office than [`OFFICE`], and an auditor (SPEC S4).
pub const CLERK_ELSEWHERE: &str = "reliability-clerk-of-gaozhou-0123456789";
pub const AUDITOR: &str = "reliability-auditor-token-0123456789";
pub const SECRET: &str = "reliability-citizen-secret-0123456789";
pub const OFFICE: &str = "maoming";

/// Executions between two fresh worlds (so quotas and numbers do not run out).
const WORLD_EXECS: u64 = 1_500;

/// The status each error code has in API.md.
pub fn status_of(code: &str) -> Option<u16> {
    Some(match code {
        "bad_request" | "invalid_plate" | "invalid_vin" => 400,
        "unauthorized" => 401,
        "forbidden" | "blacklisted" => 403,
        "not_found" => 404,
        "conflict"
        | "application_exists"
        | "vin_already_used"
        | "not_available"
        | "quota_spent"
        | "hold_expired"
        | "not_held"
        | "exhausted"
        | "identity_not_verified"
        | "selection_closed" => 409,
        "payload_too_large" => 413,
        "voucher_mismatch"
        | "vehicle_not_eligible"
        | "notice_not_accepted"
        | "sms_code_invalid"
        | "sms_code_expired" => 422,
        "too_soon" | "sms_too_soon" | "too_many_requests" => 429,
        "unavailable" => 503,
        _ => return None,
    })
}

/// Checks one answer against the contract; `Err` says what is wrong.
pub fn check_answer(status: u16, body: &[u8]) -> Result<String, String> {
    if (200..300).contains(&status) {
        return Ok(format!("{status}"));
    }
    if status >= 500 {
        return Err(format!(
            "answered {status}: {}",
            String::from_utf8_lossy(body)
        ));
    }
    let v: Value = serde_json::from_slice(body).map_err(|_| {
        format!(
            "{status} with a body that is not JSON: {:?}",
            String::from_utf8_lossy(body)
        )
    })?;
    let code = v["error"]["code"]
        .as_str()
        .ok_or_else(|| format!("{status} without error.code: {v}"))?;
    if !platepool_gateway::error::CODES.contains(&code) {
        return Err(format!("{status} with undocumented code {code:?}"));
    }
    if status_of(code) != Some(status) {
        return Err(format!(
            "code {code} answered with {status}, API.md says {:?}",
            status_of(code)
        ));
    }
    if v["error"]["message"].as_str().is_none_or(str::is_empty) {
        return Err(format!("{status} {code} without a message"));
    }
    Ok(format!("{status}:{code}"))
}

/// A world: the engine on a temporary folder, one office, certificates, one citizen with a
/// verified application.
pub struct World {
    _dir: tempfile::TempDir,
    pub gw: Gateway,
    pub engine: Engine,
    pub app: AppId,
    pub citizen: String,
    pub other: String,
}

impl World {
    /// Another citizen with a verified application (vehicle `n` of the imported certificates).
    pub async fn verified_citizen(
        &self,
        user: &str,
        phone: &str,
        n: u32,
    ) -> Result<(AppId, String), String> {
        let app = self
            .engine
            .create_application(ApplicationRequest {
                office: OFFICE.into(),
                user: user.into(),
                phone: phone.into(),
                vin: vin(n),
                voucher: format!("WDZ{n:07}"),
                notice_version: "v1".into(),
            })
            .await
            .map_err(|e| e.to_string())?;
        self.engine
            .verify_identity(&app, Caller::Citizen(user))
            .await
            .map_err(|e| e.to_string())?;
        Ok((
            app,
            token(user, phone, self.engine.now_ms() / 1000 + 7 * 86_400),
        ))
    }
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World").field("app", &self.app).finish()
    }
}

pub fn vin(n: u32) -> String {
    Vin::with_check_digit(&format!("LSVAA{n:03}X12345678"))
        .map(Vin::into_string)
        .unwrap_or_default()
}

pub fn office(rules: OfficeRules) -> OfficeConfig {
    OfficeConfig {
        name: "茂名市车辆管理所".into(),
        prefix: "粤K".into(),
        classes: vec!["small".into(), "small_new_energy".into()],
        rules,
        notice: Notice {
            version: "v1".into(),
            text: "业务须知".into(),
        },
    }
}

pub fn token(user: &str, phone: &str, exp_s: u64) -> String {
    sign_token(
        SECRET,
        &TokenClaims {
            user: user.into(),
            phone: phone.into(),
            exp: exp_s,
        },
    )
}

impl World {
    /// Opens a world; `limits` = (per user, per IP) requests per second (0: off).
    pub async fn new(limits: (u32, u32), rules: OfficeRules) -> Result<World, String> {
        World::with_clock(
            limits,
            rules,
            std::sync::Arc::new(platepool_engine::actor::SystemClock),
        )
        .await
    }

    /// Same, with the engine on `clock` (an accelerated one for the bot campaign).
    pub async fn with_clock(
        limits: (u32, u32),
        rules: OfficeRules,
        clock: std::sync::Arc<dyn platepool_engine::actor::Clock>,
    ) -> Result<World, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut config = EngineConfig::new(dir.path());
        config.durability = Durability::None;
        config.seed = Some(7);
        config.clock = clock;
        // The harness's loop is the offices' caller too: time it spends on its own steps is no
        // overload (nor is the loop lag, below).
        config.shed_queue_delay = None;
        let engine = Engine::open(config).await.map_err(|e| e.to_string())?;
        let who = "operator:reliability";
        engine
            .put_office(OFFICE, office(rules), who)
            .await
            .map_err(|e| e.to_string())?;
        let now = engine.now_ms();
        engine
            .add_release(
                OFFICE,
                NewRelease {
                    class: "small".into(),
                    label: "A".into(),
                    opens_at_ms: now - 60_000,
                    custom_from_ms: None,
                    source: ReleaseSource::Patterns(vec![
                        Pattern::parse("A####").map_err(|e| format!("{e:?}"))?
                    ]),
                },
                who,
            )
            .await
            .map_err(|e| e.to_string())?;
        let rows = (1..=200)
            .map(|n| CertificateRow {
                vin: vin(n),
                voucher: format!("WDZ{n:07}"),
                class: "small".into(),
                energy: "fuel".into(),
            })
            .collect();
        engine
            .import_certificates(rows, "system")
            .await
            .map_err(|e| e.to_string())?;
        let app = engine
            .create_application(ApplicationRequest {
                office: OFFICE.into(),
                user: "u1".into(),
                phone: "13800000001".into(),
                vin: vin(1),
                voucher: "WDZ0000001".into(),
                notice_version: "v1".into(),
            })
            .await
            .map_err(|e| e.to_string())?;
        engine
            .verify_identity(&app, Caller::Citizen("u1"))
            .await
            .map_err(|e| e.to_string())?;
        let gw = Gateway::new(
            engine.clone(),
            GatewayConfig {
                operator_token: OPERATOR.into(),
                token_secret: SECRET.into(),
                rate_limit_user_per_s: limits.0,
                rate_limit_ip_per_s: limits.1,
                // This world runs in the harness's own loop, which its synchronous steps block:
                // that is not a server worker running late (the long fuzz run got 503s here).
                shed_loop_lag_ms: 0,
                operators: vec![
                    platepool_gateway::operators::OperatorEntry {
                        name: "clerk_gaozhou".into(),
                        role: platepool_gateway::operators::Role::Clerk,
                        offices: vec!["gaozhou".into()],
                        token_sha256: platepool_gateway::operators::hash_token(CLERK_ELSEWHERE),
                    },
                    platepool_gateway::operators::OperatorEntry {
                        name: "auditor".into(),
                        role: platepool_gateway::operators::Role::Auditor,
                        offices: Vec::new(),
                        token_sha256: platepool_gateway::operators::hash_token(AUDITOR),
                    },
                ],
                ..GatewayConfig::default()
            },
        )?;
        let exp = now / 1000 + 7 * 86_400;
        Ok(World {
            _dir: dir,
            gw,
            engine,
            app,
            citizen: token("u1", "13800000001", exp),
            other: token("u2", "13800000002", exp),
        })
    }
}

/// Who calls a route: the credential the fuzzer sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Nobody,
    Citizen,
    Operator,
}

/// The JSON routes, from the gateway's route table: every route that takes a body, in the
/// table's order, as (method, path pattern, who calls).
pub fn routes() -> Vec<(&'static str, &'static str, Who)> {
    platepool_gateway::routes::all()
        .iter()
        .filter(|r| r.doc.request.is_some())
        .map(|r| {
            let who = match r.access {
                Access::Public => Who::Nobody,
                Access::Citizen => Who::Citizen,
                Access::Operator => Who::Operator,
            };
            (r.verb.as_str(), r.path, who)
        })
        .collect()
}

/// The path sent for a route pattern: the citizen's application, the world's office (a new one,
/// `fz`, where an office is configured, so the world's own stays as it was), a number of its
/// pool, a citizen.
fn concrete(method: &str, pattern: &str, app: &AppId) -> String {
    let office = if method == "PUT" && pattern == "/v1/admin/offices/{office}" {
        "fz"
    } else {
        OFFICE
    };
    pattern
        .replace("{id}", &app.to_string())
        .replace("{office}", office)
        .replace("{serial}", "A0001")
        .replace("{user}", "u1")
}

/// Numbers a fuzzed release may name before the input is skipped (large releases take seconds
/// and say nothing new about parsing).
const FUZZ_RELEASE_MAX: u64 = 100_000;

fn too_big_release(body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    let total: u64 = v["patterns"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(Value::as_str)
                .filter_map(|p| Pattern::parse(p).ok())
                .map(|p| p.count())
                .sum()
        })
        .unwrap_or(0);
    total > FUZZ_RELEASE_MAX
}

/// Runs the target: `execs` requests from `seed`.
pub fn fuzz(execs: u64, seed: u64) -> Stats {
    let result = actix_rt::System::new().block_on(fuzz_async(execs, seed));
    result.unwrap_or_else(|e| Stats {
        violations: vec![format!("{TARGET}: cannot set up: {e}")],
        ..Stats::default()
    })
}

async fn fuzz_async(execs: u64, seed: u64) -> Result<Stats, String> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x00b0_d1e5);
    let files = load_corpus(TARGET);
    let mut stats = Stats {
        corpus_files: files.len(),
        ..Stats::default()
    };
    let mut corpus = files.clone();
    let mut seen = std::collections::HashSet::new();
    let dict: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        "\"",
        ":",
        ",",
        "null",
        "true",
        "-1",
        "1e999",
        "18446744073709551616",
        "\"A1234\"",
        "\"plates\":",
        "\"serial\":",
        "\"sms_code\":",
        "\"purpose\":",
        "\"identity\"",
        "\"apply\"",
        "\"office\":",
        "\"maoming\"",
        "\"exclude_four\":",
        "\"application\":",
        "\"class\":",
        "\"small\"",
        "\"patterns\":",
        "\"serials\":",
        "\"opens_at\":",
        "\"2026-11-24T02:00:00Z\"",
        "\"vin\":",
        "\"reason\":",
        "\"user\":",
        "\"phone\":",
        "\"ttl_s\":",
        "\"rules\":",
        "\"prefix\":",
        "\"name\":",
        "\"classes\":",
        "\"energy\":",
        "\"bev\"",
        "\"ﬀ\"",
        "\\u0000",
        "\\ud800",
    ];
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut replay = files.into_iter();
    let mut world = World::new(
        (0, 0),
        OfficeRules {
            opening_window_ms: 0,
            ..OfficeRules::default()
        },
    )
    .await?;
    let mut app = test::init_service(App::new().service(world.gw.scope(""))).await;
    let routes = routes();
    if routes.is_empty() {
        return Err("the gateway's route table has no route with a JSON body".into());
    }
    for n in 0..execs {
        if n > 0 && n % WORLD_EXECS == 0 {
            // Stop the old engine's office actors, writer threads and sled before the next:
            // an engine only dropped keeps its threads (10M executions made 6,600 engines).
            world.engine.shutdown().await.map_err(|e| e.to_string())?;
            world = World::new(
                (0, 0),
                OfficeRules {
                    opening_window_ms: 0,
                    ..OfficeRules::default()
                },
            )
            .await?;
            app = test::init_service(App::new().service(world.gw.scope(""))).await;
        }
        let input = match replay.next() {
            Some(f) => f,
            None => next_input(&mut rng, dict, &corpus),
        };
        let Some((&sel, body)) = input.split_first() else {
            stats.execs = n + 1;
            continue;
        };
        let (method, pattern, who) = routes[(sel & 0x7f) as usize % routes.len()];
        let path = concrete(method, pattern, &world.app);
        if pattern.contains("/releases") && too_big_release(body) {
            stats.execs = n + 1;
            continue;
        }
        let mut req = TestRequest::default()
            .method(Method::from_bytes(method.as_bytes()).unwrap_or(Method::POST))
            .uri(&path)
            .insert_header((
                "Content-Type",
                if sel & 0x80 != 0 {
                    "text/plain"
                } else {
                    "application/json"
                },
            ))
            .set_payload(body.to_vec());
        match who {
            Who::Nobody => {}
            Who::Citizen => {
                req = req.insert_header(("Authorization", format!("Bearer {}", world.citizen)))
            }
            Who::Operator => {
                req = req.insert_header(("Authorization", format!("Bearer {OPERATOR}")))
            }
        }
        if rng.random_bool(0.1) {
            req = req.insert_header(("Idempotency-Key", format!("k{}", rng.random_range(0..20))));
        }
        let started = Instant::now();
        let answer = AssertUnwindSafe(async {
            let resp = test::call_service(&app, req.to_request()).await;
            let status = resp.status().as_u16();
            let bytes = test::read_body(resp).await;
            (status, bytes)
        })
        .catch_unwind()
        .await;
        let took = started.elapsed();
        stats.slowest = stats.slowest.max(took);
        stats.execs = n + 1;
        let problem = match answer {
            Ok((status, bytes)) => match check_answer(status, &bytes) {
                Ok(sig) => {
                    if status < 300 {
                        stats.accepted += 1;
                    }
                    if seen.insert(format!("{method} {path} {sig}")) && corpus.len() < 2_000 {
                        corpus.push(input.clone());
                    }
                    None
                }
                Err(e) => Some(e),
            },
            Err(p) => Some(format!("panic: {}", panic_text(&p))),
        };
        let problem = problem.or_else(|| (took > SLOW_EXEC).then(|| format!("took {took:?}")));
        if let Some(p) = problem {
            let saved = save_crash(TARGET, &input)
                .map(|p| format!(" (saved as {})", p.display()))
                .unwrap_or_default();
            stats.violations.push(format!(
                "{TARGET}: {method} {path} body {:?}: {p}{saved}",
                String::from_utf8_lossy(body)
            ));
            if stats.violations.len() >= 5 {
                break;
            }
        }
    }
    std::panic::set_hook(hook);
    stats.signatures = seen.len();
    drop(app);
    world.engine.shutdown().await.map_err(|e| e.to_string())?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_json_route_of_the_gateway_is_fuzzed_at_a_concrete_path() {
        let routes = routes();
        for route in [
            ("POST", "/v1/vin/check", Who::Nobody),
            ("POST", "/v1/applications/{id}/draws", Who::Citizen),
            ("PUT", "/v1/admin/offices/{office}", Who::Operator),
            ("POST", "/v1/admin/certificates", Who::Operator),
        ] {
            assert!(routes.contains(&route), "{route:?} in {routes:?}");
        }
        assert!(!routes.iter().any(|(m, _, _)| *m == "GET"), "{routes:?}");
        let app: AppId = "maoming-7".parse().expect("application id");
        for (method, pattern, _) in &routes {
            let path = concrete(method, pattern, &app);
            assert!(!path.contains(['{', '}']), "{method} {pattern} → {path}");
        }
        assert_eq!(
            concrete("PUT", "/v1/admin/offices/{office}", &app),
            "/v1/admin/offices/fz"
        );
        assert_eq!(
            concrete("POST", "/v1/applications/{id}/claim", &app),
            "/v1/applications/maoming-7/claim"
        );
    }
}
