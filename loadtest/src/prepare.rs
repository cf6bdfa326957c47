//! Preparing the office through the operator API: rules, certificate records for every virtual
//! vehicle, citizen tokens, and last the release, opening a set time ahead.

use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use awc::http::Method;
use platepool_gateway::auth::{sign_token, TokenClaims};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::api::Api;
use crate::identity::identity;
use crate::report::{ClientPool, Cpu, RunFacts};
use crate::scenario::{BuyerPlan, Scenario};

/// Certificate records per import request.
const CERTIFICATES_PER_IMPORT: usize = 5_000;
/// Citizen tokens live this long (a rehearsal is shorter).
const TOKEN_TTL_S: u64 = 6 * 3_600;

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Runs `f` over `items` with at most `limit` in flight on the current actix system; answers in
/// the items' order.
pub async fn for_each_concurrent<T, R, F, Fut>(items: Vec<T>, limit: usize, f: F) -> Vec<R>
where
    T: 'static,
    R: 'static,
    F: Fn(T) -> Fut + 'static,
    Fut: Future<Output = R> + 'static,
{
    let sem = Arc::new(Semaphore::new(limit.max(1)));
    let f = Rc::new(f);
    let mut handles = Vec::with_capacity(items.len());
    for item in items {
        let permit = sem.clone().acquire_owned().await;
        let f = f.clone();
        handles.push(actix_rt::spawn(async move {
            let out = f(item).await;
            drop(permit);
            out
        }));
    }
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        match h.await {
            Ok(r) => out.push(r),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    out
}

/// What preparation made.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub office: String,
    pub notice_version: String,
    pub release_id: String,
    pub release_total: u64,
    pub opens_at_ms: u64,
    /// The opening on this machine's monotonic clock.
    pub opening: Instant,
    /// When the load starts (arrival offsets count from here).
    pub load_start: Instant,
    pub tokens: Vec<String>,
    pub seconds: f64,
}

impl Prepared {
    /// The report's facts about this run's office and release; the caller adds what it
    /// measured (CPU, connections) and its limits.
    pub fn facts(
        &self,
        target: String,
        embedded: bool,
        run_tag: u32,
        started_at: String,
        load_secs: f64,
    ) -> RunFacts {
        RunFacts {
            target,
            embedded,
            run_tag,
            office: self.office.clone(),
            release_id: self.release_id.clone(),
            release_total: self.release_total,
            started_at,
            opens_at: platepool_engine::calendar::rfc3339(self.opens_at_ms),
            opening_at_secs: self.opening.duration_since(self.load_start).as_secs_f64(),
            prepare_secs: self.seconds,
            load_secs,
            cpu: Cpu::default(),
            client: ClientPool::default(),
            max_p99_ms: None,
            max_error_rate: None,
        }
    }
}

pub fn office_id(s: &Scenario, tag: u32) -> String {
    if s.office.is_empty() {
        format!("lt_{tag:05}")
    } else {
        s.office.clone()
    }
}

/// Prepares the office, then opens the release at once: the single-process rehearsal.
pub async fn prepare(
    api: &Api,
    s: &Scenario,
    tag: u32,
    plans: &[BuyerPlan],
    token_secret: Option<&str>,
    say: &dyn Fn(&str),
) -> Result<Prepared, String> {
    let office = prepare_office(api, s, tag, plans, token_secret, say).await?;
    open_release(api, s, office, Duration::ZERO, say).await
}

/// The office before its release: configured, every vehicle's certificate imported, every
/// buyer's citizen token issued (token `i` is buyer `i`'s).
#[derive(Debug, Clone)]
pub struct PreparedOffice {
    pub tag: u32,
    pub office: String,
    pub notice_version: String,
    pub tokens: Vec<String>,
    pub started: Instant,
}

/// Configures the office, imports the certificates and issues the tokens. `token_secret`: sign
/// citizen tokens locally (a known secret); otherwise ask `POST /v1/admin/tokens` for each.
pub async fn prepare_office(
    api: &Api,
    s: &Scenario,
    tag: u32,
    plans: &[BuyerPlan],
    token_secret: Option<&str>,
    say: &dyn Fn(&str),
) -> Result<PreparedOffice, String> {
    let started = Instant::now();
    let office = office_id(s, tag);
    let notice_version = format!("lt-{tag:05}");
    let body = json!({
        "name": format!("预选号牌演练 {tag:05}"),
        "prefix": "粤K",
        "classes": [s.class],
        "rules": s.rules.to_json(),
        "notice": {"version": notice_version, "text": "platepool-loadtest rehearsal office"},
    });
    api.operator(
        Method::PUT,
        &format!("/v1/admin/offices/{office}"),
        Some(&body),
    )
    .await?;
    say(&format!("office {office} configured"));

    let energy = s.energy();
    let rows: Vec<Value> = plans
        .iter()
        .map(|p| {
            let id = identity(tag, p.index, p.kind, s.bot_ips);
            json!({"vin": id.vin, "voucher": id.voucher, "class": s.class, "energy": energy})
        })
        .collect();
    let mut imported = 0u64;
    for chunk in rows.chunks(CERTIFICATES_PER_IMPORT) {
        let body = Value::Array(chunk.to_vec());
        let a = api
            .operator(Method::POST, "/v1/admin/certificates", Some(&body))
            .await?;
        let rejected = a
            .body
            .get("rejected")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if rejected > 0 {
            return Err(format!(
                "certificate import rejected rows: {}",
                a.describe()
            ));
        }
        imported += a
            .body
            .get("imported")
            .and_then(Value::as_u64)
            .unwrap_or(chunk.len() as u64);
    }
    say(&format!("{imported} certificate records imported"));

    let exp = now_ms() / 1_000 + TOKEN_TTL_S;
    let tokens: Vec<String> = match token_secret {
        Some(secret) => plans
            .iter()
            .map(|p| {
                let id = identity(tag, p.index, p.kind, s.bot_ips);
                sign_token(
                    secret,
                    &TokenClaims {
                        user: id.user,
                        phone: id.phone,
                        exp,
                    },
                )
            })
            .collect(),
        None => {
            let api = api.clone();
            let bot_ips = s.bot_ips;
            let items: Vec<(u32, crate::scenario::Kind)> =
                plans.iter().map(|p| (p.index, p.kind)).collect();
            let answers = for_each_concurrent(items, 32, move |(index, kind)| {
                let api = api.clone();
                async move {
                    let id = identity(tag, index, kind, bot_ips);
                    let body = json!({"user": id.user, "phone": id.phone, "ttl_s": TOKEN_TTL_S});
                    let a = api
                        .operator(Method::POST, "/v1/admin/tokens", Some(&body))
                        .await?;
                    a.body
                        .get("token")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .ok_or_else(|| {
                            format!("POST /v1/admin/tokens: no token in {}", a.describe())
                        })
                }
            })
            .await;
            answers.into_iter().collect::<Result<Vec<_>, _>>()?
        }
    };
    say(&format!("{} citizen tokens ready", tokens.len()));

    Ok(PreparedOffice {
        tag,
        office,
        notice_version,
        tokens,
        started,
    })
}

/// Opens the release: the load starts `lead` from now (time for other processes to receive the
/// start) and the release opens `opens_in_secs` after that.
pub async fn open_release(
    api: &Api,
    s: &Scenario,
    prepared: PreparedOffice,
    lead: Duration,
    say: &dyn Fn(&str),
) -> Result<Prepared, String> {
    let PreparedOffice {
        tag,
        office,
        notice_version,
        tokens,
        started,
    } = prepared;
    let opens_in = Duration::from_secs_f64(s.opens_in_secs) + lead;
    let opens_at_ms = now_ms() + opens_in.as_millis() as u64;
    let body = json!({
        "class": s.class,
        "label": format!("演练 {tag:05}: {}", s.patterns.join(" ")),
        "opens_at": platepool_engine::calendar::rfc3339(opens_at_ms),
        "patterns": s.patterns,
    });
    let a = api
        .operator(
            Method::POST,
            &format!("/v1/admin/offices/{office}/releases"),
            Some(&body),
        )
        .await?;
    let release_id = match a.body.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(v @ Value::Number(_)) => v.to_string(),
        _ => return Err(format!("release: no id in {}", a.describe())),
    };
    let release_total = a.body.get("total").and_then(Value::as_u64).unwrap_or(0);
    // The load starts `lead` from now; the opening is where the wall clock says it is.
    let now = Instant::now();
    let load_start = now + lead;
    let opening = now + Duration::from_millis(opens_at_ms.saturating_sub(now_ms()));
    say(&format!(
        "release {release_id} of {release_total} numbers opens at {}",
        platepool_engine::calendar::rfc3339(opens_at_ms)
    ));
    Ok(Prepared {
        office,
        notice_version,
        release_id,
        release_total,
        opens_at_ms,
        opening,
        load_start,
        tokens,
        seconds: started.elapsed().as_secs_f64(),
    })
}
