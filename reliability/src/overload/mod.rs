//! Campaign 4: overload at 3× the measured maximum, through the real `platepool` binary.
//!
//! 1. **Setup**: the loadtest crate's preparation makes an office (no opening window, 1,000
//!    draws per application (the most an office allows), a 50,000-number release open at once), certificate records and
//!    tokens; each application is then walked through SMS, application and identity.
//! 2. **Maximum**: a closed loop (a fixed number of draws in flight, each sent when the last
//!    answered) for a few seconds: the throughput it reaches is the maximum the binary sustains
//!    on this machine with this client beside it. By `wrk` when it is installed ([`flood`]),
//!    otherwise by this process's own client.
//! 3. **Baseline**: an open model (draws sent on a schedule, latency from each one's intended
//!    send time) at half the maximum: its p99 and errors are "normal".
//! 4. **Overload** at 3× the maximum. The gateway's rate limits are off (each application
//!    stands for many people), so nothing but the service's own bounds (503 once calls wait
//!    over `SHED_QUEUE_DELAY` in an office, once `IN_FLIGHT_MAX` requests are in flight, or
//!    while a worker's event loop runs late) stands between the load and the office. With two
//!    CPUs or more, server and client are pinned apart.
//!    - With `wrk` ([`flood`]): wrk floods the draw route over thousands of connections, and a
//!      low-rate open-model **probe** beside it measures what an accepted draw waits. The
//!      factor held is wrk's answers per second over the maximum.
//!    - Without it: this client's open model at 3× the maximum, over enough connections for a
//!      quarter of a second of the offered load (see [`connections_for`]); on one core it
//!      falls behind its own schedule at high rates, and its lag is reported.
//!
//!    Sampled every 100 ms: the server's RSS (`/proc/<pid>/status`) and the office's mailbox
//!    depth (`/metrics`). Measured: refused answers (503/429) and their latency, the accepted
//!    draws' latency, whether RSS levels off.
//! 5. **Recovery**: once the overload's last request is answered, the open model at half the
//!    maximum again, judged per 100 ms window against the baseline's: no errors, back within
//!    the bound (3× the baseline's median window p99 + 50 ms) within [`RECOVERY_MAX`], and
//!    from then on no more windows over it than the baseline had, plus one. Windows, because
//!    one stall decides a 2 s phase's p99 alone: this VM has stalls of 60–160 ms at the normal
//!    rate, baselines included, which runs with the data folder on tmpfs never had (its disk).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use awc::http::Method;
use platepool_loadtest::api::{list, Api, Call};
use platepool_loadtest::buyer::sms_code;
use platepool_loadtest::identity::{identity, run_tag, Identity};
use platepool_loadtest::prepare::{for_each_concurrent, now_ms, prepare};
use platepool_loadtest::scenario::{plans, Rules, Scenario};
use serde_json::{json, Value};

mod flood;

use crate::server::{free_port, ms, percentile, rss_bytes, Options, Server, OPERATOR, SECRET};
use crate::{thousands, Mode, Outcome};

/// The engine's bound on requests in flight per office (engine/src/actor.rs).
pub const IN_FLIGHT_MAX: usize = platepool_engine::actor::IN_FLIGHT_MAX;
/// The engine's load shedding by queue delay (engine/src/actor.rs).
pub const SHED_QUEUE_DELAY: Duration = platepool_engine::actor::SHED_QUEUE_DELAY;
/// Draws per application: the most an office allows.
const QUOTA_MAX: u32 = platepool_engine::config::QUOTA_MAX;

/// During the overload the client keeps enough connections for this much of the offered load
/// to be outstanding at once, so that the excess reaches the server (which must refuse it)
/// instead of waiting in the client's connection pool, where no server can see it. People at
/// an opening each have their own connection; a pool of a fixed size would hide the overload.
const OUTSTANDING_SECS: f64 = 0.25;
/// The most connections the client opens: past this, setting connections up costs the server
/// more than the requests on them (measured: 19k connections cut a release build's accepted
/// draws from 18.8k/s to 3.8k/s).
const CONNECTIONS_MAX: usize = 8_192;
/// The probe beside wrk's flood: this share of the maximum, within these bounds (draws/s).
/// Low enough that this process keeps its schedule on a CPU shared with wrk, high enough for a
/// p99 of a few thousand draws.
const PROBE_SHARE: f64 = 0.02;
const PROBE_RATE_MIN: f64 = 50.0;
const PROBE_RATE_MAX: f64 = 400.0;
/// The probe is an open model: a draw due is sent at once, on a connection of its own if every
/// other is busy, so its pool must not run dry while answers are slow (a dry pool would make
/// its draws wait in this process and count that as the server's latency). Enough connections
/// for this many seconds of the probe's rate.
const PROBE_OUTSTANDING_SECS: f64 = 2.0;
/// How long the ceiling (the cheapest answer over the flood's connections) is measured.
const CEILING_SECS: f64 = 3.0;
/// Recovery is judged over windows of this length of the phase after the overload.
const RECOVERY_WINDOW: Duration = Duration::from_millis(100);
/// "Recovers at once": the first window of the normal rate back within the baseline's bound
/// begins no later than this after the load drops. A person retrying after a 503 does not notice a second;
/// the server does need part of one to close the flood's thousands of connections (measured:
/// ~0.1 s for the last 1,800 of 8,192 in the test-profile build on a 2-core VM).
const RECOVERY_MAX: Duration = Duration::from_secs(1);
/// Memory an open client connection may cost the server (its buffers and state).
const CONNECTION_BUDGET: u64 = 64 * 1024;
/// File descriptors the client keeps free for everything else.
const FD_SPARE: usize = 1_024;

/// Connections for an open load at `rate`: at least the plan's, enough for
/// [`OUTSTANDING_SECS`] of the load, at most what the open-files limit allows.
fn connections_for(rate: f64, plan_connections: usize) -> usize {
    let want = ((rate * OUTSTANDING_SECS).ceil() as usize)
        .min(CONNECTIONS_MAX)
        .max(plan_connections);
    match open_files_limit() {
        Some(limit) => want.min(
            limit
                .saturating_sub(FD_SPARE)
                .max(plan_connections.min(limit)),
        ),
        None => want,
    }
}

/// Pins every thread of process `pid` to `cpus` (a `taskset` list such as "0" or "0-1").
fn pin(pid: u32, cpus: &str) -> bool {
    std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The soft open-files limit of this process (`/proc/self/limits`).
fn open_files_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub apps: u32,
    /// Draws in flight while measuring the maximum.
    pub closed_in_flight: usize,
    pub max_secs: f64,
    pub baseline_secs: f64,
    pub overload_secs: f64,
    pub factor: f64,
    /// Client connections (the most requests the server can see at once).
    pub connections: usize,
}

impl Plan {
    pub fn for_mode(mode: Mode) -> Plan {
        match mode {
            Mode::Short => Plan {
                apps: 400,
                closed_in_flight: 256,
                max_secs: 3.0,
                baseline_secs: 2.0,
                overload_secs: 4.0,
                factor: 3.0,
                connections: 1_024,
            },
            Mode::Long => Plan {
                apps: 2_000,
                closed_in_flight: 512,
                max_secs: 10.0,
                baseline_secs: 10.0,
                overload_secs: 20.0,
                factor: 3.0,
                connections: 4_096,
            },
        }
    }
}

/// One application ready to draw.
#[derive(Debug, Clone)]
struct App {
    id: String,
    token: String,
    ip: String,
}

/// One request's fate.
#[derive(Debug, Clone)]
struct Sample {
    intended: Instant,
    /// When the client got round to issuing it: later than `intended` when the client itself
    /// cannot keep up with the schedule.
    issued: Instant,
    done: Instant,
    /// 0: no answer.
    status: u16,
    code: String,
}

impl Sample {
    fn latency(&self) -> Duration {
        self.done.saturating_duration_since(self.intended)
    }
    /// How late the client issued it.
    fn client_lag(&self) -> Duration {
        self.issued.saturating_duration_since(self.intended)
    }
    fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }
    /// Refused for load: 503 or 429.
    fn refused(&self) -> bool {
        self.status == 503 || self.status == 429
    }
}

/// Latency figures of a phase.
#[derive(Debug, Clone, Default)]
struct Phase {
    sent: u64,
    accepted: u64,
    refused: u64,
    /// Other answers (4xx business refusals such as quota_spent) and no answers.
    other: u64,
    no_answer: u64,
    accepted_p50: Duration,
    accepted_p99: Duration,
    accepted_max: Duration,
    refused_p50: Duration,
    refused_p99: Duration,
    /// How late the client issued requests (p99): the client's own share of the latency.
    client_lag_p99: Duration,
    secs: f64,
    codes: std::collections::BTreeMap<String, u64>,
    /// Per [`RECOVERY_WINDOW`] of intended send times from the phase's first: the p99 of the
    /// window's accepted draws and whether any of its requests was not accepted.
    windows: Vec<Window>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Window {
    p99: Duration,
    errors: bool,
}

/// The windows of `samples` (see [`Phase::windows`]); a window with no request is empty and
/// counts as good.
fn windows_of(samples: &[Sample], window: Duration) -> Vec<Window> {
    let Some(t0) = samples.iter().map(|s| s.intended).min() else {
        return Vec::new();
    };
    let mut by: Vec<(Vec<Duration>, bool)> = Vec::new();
    for s in samples {
        let i = (s.intended.duration_since(t0).as_nanos() / window.as_nanos().max(1)) as usize;
        if by.len() <= i {
            by.resize_with(i + 1, || (Vec::new(), false));
        }
        if s.accepted() {
            by[i].0.push(s.latency());
        } else {
            by[i].1 = true;
        }
    }
    by.into_iter()
        .map(|(mut lat, errors)| {
            lat.sort();
            Window {
                p99: percentile(&lat, 0.99),
                errors,
            }
        })
        .collect()
}

/// Seconds with one decimal.
fn secs1(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64())
}

/// Windows over `bound` or with an error.
fn is_bad(w: &Window, bound: Duration) -> bool {
    w.errors || w.p99 > bound
}

/// The index of the first window within `bound` with no error.
fn first_good(windows: &[Window], bound: Duration) -> Option<usize> {
    windows.iter().position(|w| !is_bad(w, bound))
}

/// The median of the windows' p99: a phase's typical latency, which one stall does not move.
fn median_window_p99(windows: &[Window]) -> Duration {
    let mut v: Vec<Duration> = windows.iter().map(|w| w.p99).collect();
    v.sort();
    percentile(&v, 0.5)
}

/// Recovery after an overload, judged window by window against the baseline: back within the
/// bound no later than [`RECOVERY_MAX`], and from then on no more windows over it than the
/// baseline had (stalls the machine has at the normal rate too) plus one.
#[derive(Debug, Clone, PartialEq)]
struct Recovery {
    /// 3× the baseline's median window p99, plus 50 ms.
    bound: Duration,
    /// When the first window within the bound began, from the start of the phase after.
    back_after: Option<Duration>,
    /// Where each window over the bound from then on began, and how many windows that was.
    bad_at: Vec<Duration>,
    later: usize,
    /// Windows over the bound in the baseline, of how many.
    bad_baseline: usize,
    baseline: usize,
}

impl Recovery {
    fn judge(baseline: &[Window], after: &[Window], window: Duration) -> Recovery {
        let bound = median_window_p99(baseline) * 3 + Duration::from_millis(50);
        let first = first_good(after, bound);
        let from = first.unwrap_or(after.len());
        let bad_at: Vec<Duration> = (from..after.len())
            .filter(|&i| is_bad(&after[i], bound))
            .map(|i| window * i as u32)
            .collect();
        Recovery {
            bound,
            back_after: first.map(|i| window * i as u32),
            bad_at,
            later: after.len() - from,
            bad_baseline: baseline.iter().filter(|w| is_bad(w, bound)).count(),
            baseline: baseline.len(),
        }
    }

    fn recovered(&self) -> bool {
        self.back_after.is_some_and(|d| d <= RECOVERY_MAX)
            && self.bad_at.len() <= self.bad_baseline + 1
    }
}

impl Phase {
    fn of(samples: &[Sample], secs: f64) -> Phase {
        let mut acc: Vec<Duration> = samples
            .iter()
            .filter(|s| s.accepted())
            .map(Sample::latency)
            .collect();
        let mut refd: Vec<Duration> = samples
            .iter()
            .filter(|s| s.refused())
            .map(Sample::latency)
            .collect();
        acc.sort();
        refd.sort();
        let mut lag: Vec<Duration> = samples.iter().map(Sample::client_lag).collect();
        lag.sort();
        let mut codes = std::collections::BTreeMap::new();
        for s in samples.iter().filter(|s| !s.accepted()) {
            *codes
                .entry(format!("{} {}", s.status, s.code))
                .or_insert(0u64) += 1;
        }
        Phase {
            sent: samples.len() as u64,
            accepted: acc.len() as u64,
            refused: refd.len() as u64,
            other: samples
                .iter()
                .filter(|s| !s.accepted() && !s.refused())
                .count() as u64,
            no_answer: samples.iter().filter(|s| s.status == 0).count() as u64,
            accepted_p50: percentile(&acc, 0.5),
            accepted_p99: percentile(&acc, 0.99),
            accepted_max: percentile(&acc, 1.0),
            refused_p50: percentile(&refd, 0.5),
            refused_p99: percentile(&refd, 0.99),
            client_lag_p99: percentile(&lag, 0.99),
            secs,
            codes,
            windows: windows_of(samples, RECOVERY_WINDOW),
        }
    }

    fn rate(&self) -> f64 {
        self.accepted as f64 / self.secs.max(0.001)
    }

    fn line(&self) -> String {
        format!(
            "{} sent, {} accepted ({:.0}/s), {} refused 503/429, {} other; accepted p50 {} p99 {} max {}",
            thousands(self.sent),
            thousands(self.accepted),
            self.rate(),
            thousands(self.refused),
            thousands(self.other),
            ms(self.accepted_p50),
            ms(self.accepted_p99),
            ms(self.accepted_max)
        )
    }
}

fn draw_call<'a>(app: &'a App, path: &'a str, body: &'a Value) -> Call<'a> {
    Call {
        method: Method::POST,
        path,
        token: &app.token,
        body: Some(body),
        ip: Some(&app.ip),
        key: None,
    }
}

async fn send_draw(api: &Api, app: &App, intended: Instant) -> Sample {
    let issued = Instant::now();
    let path = format!("/v1/applications/{}/draws", app.id);
    let body = json!({"exclude_four": false});
    let r = api.send(&draw_call(app, &path, &body)).await;
    let done = Instant::now();
    match r {
        Ok(a) => Sample {
            intended,
            issued,
            done,
            status: a.status,
            code: a.code().unwrap_or("").to_string(),
        },
        Err(kind) => Sample {
            intended,
            issued,
            done,
            status: 0,
            code: kind,
        },
    }
}

/// Closed loop: `in_flight` draws at a time for `secs`.
fn closed_loop(base: &str, apps: &[App], in_flight: usize, secs: f64) -> Vec<Sample> {
    let apps: Vec<App> = apps.to_vec();
    let base = base.to_string();
    actix_rt::System::new().block_on(async move {
        let api = Api::new(&base, OPERATOR, in_flight, Duration::from_secs(30));
        let end = Instant::now() + Duration::from_secs_f64(secs);
        let apps = Rc::new(apps);
        let mut handles = Vec::new();
        for w in 0..in_flight {
            let api = api.clone();
            let apps = apps.clone();
            handles.push(actix_rt::spawn(async move {
                let mut out = Vec::new();
                let mut i = w;
                while Instant::now() < end {
                    let app = &apps[i % apps.len()];
                    out.push(send_draw(&api, app, Instant::now()).await);
                    i += in_flight;
                }
                out
            }));
        }
        let mut all = Vec::new();
        for h in handles {
            if let Ok(mut v) = h.await {
                all.append(&mut v);
            }
        }
        all
    })
}

/// What the sampler saw while a phase ran.
#[derive(Debug, Clone, Default)]
struct Watch {
    /// (seconds since start, RSS bytes).
    rss: Vec<(f64, u64)>,
    max_depth: u64,
    depth_reads: u64,
    /// Largest mailbox and commit delays seen, in seconds.
    max_queue_delay: f64,
    max_commit_delay: f64,
    /// Largest time from send to answer of a write (`platepool_office_sojourn_seconds`).
    max_sojourn: f64,
    /// The offices' count of calls shed, at its last reading.
    shed: u64,
}

/// Open model: `rate` draws per second for `secs`, each from the next application; waits for
/// every answer. Samples RSS and the mailbox depth every 100 ms meanwhile.
fn open_load(
    base: &str,
    port: u16,
    pid: u32,
    apps: &[App],
    rate: f64,
    secs: f64,
    connections: usize,
) -> (Vec<Sample>, Watch, Duration) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let started = Instant::now();
    let watcher = std::thread::spawn(move || {
        let mut w = Watch::default();
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            if let Some(r) = rss_bytes(pid) {
                w.rss.push((started.elapsed().as_secs_f64(), r));
            }
            if let Some(g) = read_gauges(port) {
                w.max_depth = w.max_depth.max(g.depth);
                w.max_queue_delay = w.max_queue_delay.max(g.queue_delay);
                w.max_commit_delay = w.max_commit_delay.max(g.commit_delay);
                w.max_sojourn = w.max_sojourn.max(g.sojourn);
                w.shed = w.shed.max(g.shed);
                w.depth_reads += 1;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        w
    });
    let apps: Vec<App> = apps.to_vec();
    let base = base.to_string();
    let n = (rate * secs).round().max(1.0) as usize;
    let samples = actix_rt::System::new().block_on(async move {
        let api = Api::new(&base, OPERATOR, connections, Duration::from_secs(60));
        let out: Rc<RefCell<Vec<Sample>>> = Rc::new(RefCell::new(Vec::with_capacity(n)));
        let apps = Rc::new(apps);
        let t0 = Instant::now();
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let intended = t0 + Duration::from_secs_f64(i as f64 / rate);
            actix_rt::time::sleep_until(intended.into()).await;
            let api = api.clone();
            let apps = apps.clone();
            let out = out.clone();
            handles.push(actix_rt::spawn(async move {
                let s = send_draw(&api, &apps[i % apps.len()], intended).await;
                out.borrow_mut().push(s);
            }));
        }
        for h in handles {
            let _ = h.await;
        }
        let v = out.borrow().clone();
        v
    });
    let drained = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let watch = watcher.join().unwrap_or_default();
    (samples, watch, drained)
}

/// One reading of the offices' load gauges in `/metrics`: the largest of each over offices.
#[derive(Debug, Clone, Copy, Default)]
struct Gauges {
    depth: u64,
    queue_delay: f64,
    commit_delay: f64,
    sojourn: f64,
    shed: u64,
}

fn read_gauges(port: u16) -> Option<Gauges> {
    let a = crate::http::once(port, "GET", "/metrics", &[], None).ok()?;
    let text = a.text();
    let max = |metric: &str| -> f64 {
        let prefix = format!("{metric}{{");
        text.lines()
            .filter(|l| l.starts_with(&prefix))
            .filter_map(|l| l.rsplit(' ').next()?.trim().parse::<f64>().ok())
            .fold(0.0, f64::max)
    };
    Some(Gauges {
        depth: max("platepool_office_mailbox_depth") as u64,
        queue_delay: max("platepool_office_queue_delay_seconds"),
        commit_delay: max("platepool_office_commit_delay_seconds"),
        sojourn: max("platepool_office_sojourn_seconds"),
        shed: max("platepool_office_shed_total") as u64,
    })
}

/// Prepares the office and walks `n` applications to a verified identity.
fn setup(base: &str, n: u32) -> Result<Vec<App>, String> {
    let s = Scenario {
        name: "overload".into(),
        buyers: n,
        bots: 0.0,
        opens_in_secs: 0.0,
        patterns: vec!["[ABCDE]####".into()],
        rules: Rules {
            random_quota: QUOTA_MAX,
            random_ttl_ms: 60_000,
            candidate_ttl_ms: 60_000,
            sms_confirm_delay_ms: 0,
            opening_window_ms: 0,
            custom_min_interval_ms: 0,
            // The flood measures the gateway's ceiling, not the office's pacing of one buyer.
            random_min_interval_ms: 0,
            ..Rules::default()
        },
        ..Scenario::default()
    };
    s.validate()?;
    let tag = run_tag(s.seed, now_ms());
    let plans = plans(&s);
    let base = base.to_string();
    actix_rt::System::new().block_on(async move {
        let api = Api::new(&base, OPERATOR, 64, Duration::from_secs(30));
        let p = prepare(&api, &s, tag, &plans, Some(SECRET), &|_| {}).await?;
        let items: Vec<(Identity, String)> = plans
            .iter()
            .zip(p.tokens.iter())
            .map(|(pl, t)| (identity(tag, pl.index, pl.kind, s.bot_ips), t.clone()))
            .collect();
        let office = p.office.clone();
        let notice = p.notice_version.clone();
        let api2 = api.clone();
        let apps = for_each_concurrent(items, 16, move |(id, token)| {
            let api = api2.clone();
            let office = office.clone();
            let notice = notice.clone();
            async move { walk(&api, &office, &notice, &id, &token).await }
        })
        .await;
        apps.into_iter().collect::<Result<Vec<App>, String>>()
    })
}

async fn code(api: &Api, phone: &str, purpose: &str) -> Result<String, String> {
    let path = format!("/v1/admin/sms/outbox?phone={phone}");
    let a = api.operator(Method::GET, &path, None).await?;
    list(&a.body, &["messages", "outbox"])
        .iter()
        .rev()
        .find(|m| m.get("purpose").and_then(Value::as_str) == Some(purpose))
        .and_then(|m| m.get("text").and_then(Value::as_str))
        .and_then(sms_code)
        .ok_or_else(|| format!("no {purpose} code for {phone}"))
}

async fn citizen(
    api: &Api,
    id: &Identity,
    token: &str,
    path: &str,
    body: Value,
) -> Result<Value, String> {
    let call = Call {
        method: Method::POST,
        path,
        token,
        body: Some(&body),
        ip: Some(&id.ip),
        key: None,
    };
    match api.send(&call).await {
        Ok(a) if a.ok() => Ok(a.body),
        Ok(a) => Err(format!("{path}: {}", a.describe())),
        Err(k) => Err(format!("{path}: no answer ({k})")),
    }
}

async fn walk(
    api: &Api,
    office: &str,
    notice: &str,
    id: &Identity,
    token: &str,
) -> Result<App, String> {
    citizen(api, id, token, "/v1/sms", json!({"purpose": "apply"})).await?;
    let c = code(api, &id.phone, "apply").await?;
    let app = citizen(
        api,
        id,
        token,
        "/v1/applications",
        json!({"office": office, "vin": id.vin, "voucher": id.voucher, "notice_version": notice, "sms_code": c}),
    )
    .await?;
    let app_id = app
        .get("id")
        .and_then(Value::as_str)
        .ok_or("application without id")?
        .to_string();
    citizen(
        api,
        id,
        token,
        "/v1/sms",
        json!({"purpose": "identity", "application": app_id}),
    )
    .await?;
    let c = code(api, &id.phone, "identity").await?;
    citizen(
        api,
        id,
        token,
        &format!("/v1/applications/{app_id}/identity"),
        json!({"sms_code": c}),
    )
    .await?;
    Ok(App {
        id: app_id,
        token: token.to_string(),
        ip: id.ip.clone(),
    })
}

fn mib(b: u64) -> String {
    format!("{:.0} MiB", b as f64 / 1_048_576.0)
}

pub fn campaign(mode: Mode) -> Outcome {
    campaign_with(Plan::for_mode(mode))
}

pub fn campaign_with(plan: Plan) -> Outcome {
    let started = Instant::now();
    let mut out = Outcome::new(
        "overload",
        "overload at 3x the measured maximum (campaign 4)",
    );
    if let Err(e) = run_campaign(&plan, &mut out) {
        out.violation(e);
    }
    out.elapsed = started.elapsed();
    out
}

fn run_campaign(plan: &Plan, out: &mut Outcome) -> Result<(), String> {
    let bin = crate::storage::binary(true)?;
    let temp = tempfile::Builder::new()
        .prefix("platepool-overload-")
        .tempdir()
        .map_err(|e| format!("temporary folder: {e}"))?;
    let mut opts = Options::new(bin.clone(), temp.path().join("data"));
    opts.user_limit = Some(0);
    opts.ip_limit = Some(0);
    // A client sharing the server's CPUs cannot offer three times what the server can do:
    // with two or more CPUs, the server gets CPU 0 (one worker) and this client the rest.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let split = cpus >= 2;
    if split {
        opts.workers = 1;
    }
    let (mut server, _) = Server::start(&opts, free_port())?;
    let base = server.base();
    let port = server.port;
    let pid = server.pid();
    let pinned = split && pin(pid, "0") && pin(std::process::id(), &format!("1-{}", cpus - 1));
    // Whatever happens next, this process gets all CPUs back for the campaigns after this one.
    struct Unpin(usize);
    impl Drop for Unpin {
        fn drop(&mut self) {
            pin(std::process::id(), &format!("0-{}", self.0 - 1));
        }
    }
    let _unpin = pinned.then_some(Unpin(cpus));
    out.tried(if pinned {
        format!(
            "server (1 worker) pinned to CPU 0, this client to CPUs 1-{}",
            cpus - 1
        )
    } else {
        "server and client share the CPUs (taskset unavailable or one CPU)".to_string()
    });
    let apps = setup(&base, plan.apps)?;
    let rss_idle = rss_bytes(pid).unwrap_or(0);

    // The maximum: a closed loop, by wrk when it is installed (see `flood`).
    let wrk_version = flood::available();
    let client_cpus = pinned.then(|| format!("1-{}", cpus - 1));
    let (capacity, max_line, max_p99) = match &wrk_version {
        Some(_) => {
            let r = flood::closed(
                &base,
                &apps,
                plan.closed_in_flight,
                plan.max_secs,
                client_cpus.as_deref(),
            )?;
            let line = format!(
                "{} answers, {:.0} draws/s accepted, {} status ≥ 400, {} socket errors; p50 {} p99 {} (`{}`)",
                thousands(r.requests),
                r.good_per_s,
                thousands(r.errors.status),
                thousands(r.errors.socket()),
                ms(r.latency.p50),
                ms(r.latency.p99),
                r.command
            );
            (r.good_per_s, line, r.latency.p99)
        }
        None => {
            let closed = closed_loop(&base, &apps, plan.closed_in_flight, plan.max_secs);
            let max = Phase::of(&closed, plan.max_secs);
            (max.rate(), max.line(), max.accepted_p99)
        }
    };
    if capacity < 1.0 {
        return Err(format!("the closed loop accepted nothing: {max_line}"));
    }
    println!("   overload: maximum {capacity:.0} draws/s ({max_line})");

    // Baseline at half of it.
    let normal = capacity / 2.0;
    let at_normal_rate = || {
        let (samples, _, _) = open_load(
            &base,
            port,
            pid,
            &apps,
            normal,
            plan.baseline_secs,
            plan.connections,
        );
        Phase::of(&samples, plan.baseline_secs)
    };
    let base_phase = at_normal_rate();
    println!("   overload: baseline {normal:.0}/s: {}", base_phase.line());
    let rss_before = rss_bytes(pid).unwrap_or(0);

    // Overload: wrk's flood with the probe beside it, or this client's own open model.
    let offered = capacity * plan.factor;
    let over_connections = connections_for(offered, plan.connections);
    let probe_rate = (capacity * PROBE_SHARE).clamp(PROBE_RATE_MIN, PROBE_RATE_MAX);
    let (over, watch, drained, flooded) = match &wrk_version {
        Some(_) => {
            // The probe's applications are not wrk's, so its draws never wait on a quota.
            let split_at = apps.len() * 3 / 4;
            let f = flood::run(
                &base,
                port,
                pid,
                &apps[..split_at],
                &apps[split_at..],
                &flood::Plan {
                    connections: over_connections,
                    secs: plan.overload_secs,
                    cpus: client_cpus.as_deref(),
                    probe_rate,
                    probe_connections: (probe_rate * PROBE_OUTSTANDING_SECS).ceil() as usize,
                },
            )?;
            let probe = Phase::of(&f.probe, f.probe_secs);
            println!(
                "   overload: wrk at {:.0} answers/s ({:.0}/s accepted) for {} s over {} connections; probe at {probe_rate:.0}/s: {}",
                f.wrk.requests_per_s,
                f.wrk.good_per_s,
                plan.overload_secs,
                over_connections,
                probe.line()
            );
            let watch = f.watch.clone();
            (
                probe,
                watch,
                Duration::from_secs_f64(plan.overload_secs),
                Some(f),
            )
        }
        None => {
            let (o, watch, drained) = open_load(
                &base,
                port,
                pid,
                &apps,
                offered,
                plan.overload_secs,
                over_connections,
            );
            let over = Phase::of(&o, drained.as_secs_f64());
            println!(
                "   overload: {offered:.0}/s for {} s: {} (drained {:.1} s after the start)",
                plan.overload_secs,
                over.line(),
                drained.as_secs_f64()
            );
            (over, watch, drained, None)
        }
    };
    let watched_secs = flooded
        .as_ref()
        .map_or(plan.overload_secs, |f| f.probe_secs);
    let rss_max = watch.rss.iter().map(|r| r.1).max().unwrap_or(0);
    let half = watched_secs / 2.0;
    let rss_first_half = watch
        .rss
        .iter()
        .filter(|r| r.0 <= half)
        .map(|r| r.1)
        .max()
        .unwrap_or(0);
    let rss_second_half = watch
        .rss
        .iter()
        .filter(|r| r.0 > half)
        .map(|r| r.1)
        .max()
        .unwrap_or(0);
    if let Some(why) = server.exited() {
        out.violation(format!("the server exited under overload: {why}"));
    }

    // Recovery at once: the normal rate again.
    let counted_before_after = flood::Counted::read(port);
    let after = at_normal_rate();
    // The server's own time on the draw route during it (from its middleware to the answer):
    // tells a server that is slow from requests that waited before it read them.
    let after_server_p99 = match (counted_before_after, flood::Counted::read(port)) {
        (Some(b), Some(a)) => a.since(&b).quantile(0.99),
        _ => None,
    };
    println!("   overload: after, {normal:.0}/s: {}", after.line());
    let rss_after = rss_bytes(pid).unwrap_or(0);
    // When the flood fell short of the factor: how far any answer goes over its connections.
    let ceiling = flooded
        .as_ref()
        .filter(|f| f.wrk.requests_per_s < plan.factor * capacity)
        .map(|_| {
            flood::ceiling(
                &base,
                over_connections,
                CEILING_SECS,
                client_cpus.as_deref(),
            )
        });
    drop(server);

    out.tried(format!("binary {} with rate limits off (each of {} applications stands for many people), 50,000-number release, {QUOTA_MAX} draws per application", bin.display(), plan.apps));
    let max_how = match &wrk_version {
        Some(v) => format!("{v}, on this client's CPUs"),
        None => "this process's client".to_string(),
    };
    out.tried(format!(
        "maximum: {} draws in flight (closed loop, {max_how}) for {} s: {max_line}",
        plan.closed_in_flight, plan.max_secs,
    ));
    out.tried(format!(
        "baseline: open model at half the maximum ({normal:.0}/s) for {} s: {}",
        plan.baseline_secs,
        base_phase.line()
    ));
    match &flooded {
        Some(f) => {
            out.tried(format!(
                "overload: wrk's flood, {} connections for {} s (`{}`): {} answers ({:.0}/s, {:.1}× the maximum), {:.0}/s accepted; wrk's latency over all answers p50 {} p99 {} max {}; socket errors {:?}; the server counted {} answers on the draw route: {} 2xx, {} 4xx, {} 5xx",
                over_connections,
                plan.overload_secs,
                f.wrk.command,
                thousands(f.wrk.requests),
                f.wrk.requests_per_s,
                f.wrk.requests_per_s / capacity,
                f.wrk.good_per_s,
                ms(f.wrk.latency.p50),
                ms(f.wrk.latency.p99),
                ms(f.wrk.latency.max),
                f.wrk.errors,
                thousands(f.counted.total()),
                thousands(f.counted.ok),
                thousands(f.counted.client_error),
                thousands(f.counted.server_error),
            ));
            out.tried(format!(
                "probe beside the flood: open model at {probe_rate:.0} draws/s for {:.0} s from other applications, latency from each draw's intended send: {}; answers {:?}",
                f.probe_secs,
                over.line(),
                over.codes
            ));
        }
        None => out.tried(format!(
            "overload: open model at {:.0}× the maximum ({offered:.0}/s) for {} s over up to {} client connections: {}; answers {:?}",
            plan.factor,
            plan.overload_secs,
            over_connections,
            over.line(),
            over.codes
        )),
    }
    out.tried(format!(
        "after: open model at {normal:.0}/s for {} s right after the overload's last answer: {}",
        plan.baseline_secs,
        after.line()
    ));
    out.figure(
        "maximum (closed loop, draws/s)",
        format!("{capacity:.0} (p99 {})", ms(max_p99)),
    );
    match &flooded {
        Some(f) => {
            out.figure(
                "overload factor held",
                format!(
                    "{:.1}× (wrk: {:.0} answers/s for {} s over {} connections, {} in all; {:.0}× asked)",
                    f.wrk.requests_per_s / capacity,
                    f.wrk.requests_per_s,
                    plan.overload_secs,
                    over_connections,
                    thousands(f.wrk.requests),
                    plan.factor
                ),
            );
            out.figure(
                "under overload (server's count on the draw route): accepted / refused 5xx / other 4xx",
                format!(
                    "{} ({:.0}/s, {:.0} % of the maximum) / {} / {}",
                    thousands(f.counted.ok),
                    f.counted.ok as f64 / plan.overload_secs,
                    100.0 * f.counted.ok as f64 / plan.overload_secs / capacity,
                    thousands(f.counted.server_error),
                    thousands(f.counted.client_error)
                ),
            );
            let bucket = |q: f64| match f.counted.quantile(q) {
                Some(s) => format!("≤ {}", ms(Duration::from_secs_f64(s))),
                None => "beyond the last bucket".to_string(),
            };
            out.figure(
                "server's own time on the draw route under overload (its middleware to the answer, histogram bucket): p50 / p99 / share over 1 s",
                format!(
                    "{} / {} / {:.1} %",
                    bucket(0.50),
                    bucket(0.99),
                    100.0 * f.counted.share_over(1.0)
                ),
            );
            out.figure(
                "probe under overload: sent / accepted / refused 503-429 / other",
                format!(
                    "{} / {} / {} / {}",
                    thousands(over.sent),
                    thousands(over.accepted),
                    thousands(over.refused),
                    thousands(over.other)
                ),
            );
        }
        None => {
            out.figure(
                "overload factor held",
                format!(
                    "{:.1}× ({offered:.0} draws/s offered for {} s, {} sent)",
                    plan.factor,
                    plan.overload_secs,
                    thousands(over.sent)
                ),
            );
            out.figure(
                "under overload: accepted / refused 503-429 / other (of them no answer)",
                format!(
                    "{} ({:.0}/s) / {} / {} ({})",
                    thousands(over.accepted),
                    over.rate(),
                    thousands(over.refused),
                    thousands(over.other),
                    thousands(over.no_answer)
                ),
            );
        }
    }
    out.figure(
        "refused responses p50 / p99 (from intended send)",
        if over.refused > 0 {
            format!("{} / {}", ms(over.refused_p50), ms(over.refused_p99))
        } else {
            "none refused".into()
        },
    );
    out.figure(
        "accepted draws p50 / p99 / max (from intended send): baseline → overload",
        format!(
            "{} / {} / {} → {} / {} / {}",
            ms(base_phase.accepted_p50),
            ms(base_phase.accepted_p99),
            ms(base_phase.accepted_max),
            ms(over.accepted_p50),
            ms(over.accepted_p99),
            ms(over.accepted_max)
        ),
    );
    out.figure(
        "office mailbox depth, max under overload (bound IN_FLIGHT_MAX)",
        format!(
            "{} ({} reads; bound {})",
            watch.max_depth,
            watch.depth_reads,
            thousands(IN_FLIGHT_MAX as u64)
        ),
    );
    out.figure(
        "client's own lag issuing requests, p99: baseline → overload (part of every latency above)",
        format!(
            "{} → {}",
            ms(base_phase.client_lag_p99),
            ms(over.client_lag_p99)
        ),
    );
    out.figure(
        "office delays, max under overload: mailbox / writer queue + flush / a write's send to answer (shedding above SHED_QUEUE_DELAY)",
        format!(
            "{} / {} / {} (shedding at {}; {} calls shed by the office since start)",
            ms(Duration::from_secs_f64(watch.max_queue_delay)),
            ms(Duration::from_secs_f64(watch.max_commit_delay)),
            ms(Duration::from_secs_f64(watch.max_sojourn)),
            ms(SHED_QUEUE_DELAY),
            thousands(watch.shed)
        ),
    );
    out.figure(
        "server RSS: idle / before / max under overload (1st half, 2nd half) / after",
        format!(
            "{} / {} / {} ({}, {}) / {}",
            mib(rss_idle),
            mib(rss_before),
            mib(rss_max),
            mib(rss_first_half),
            mib(rss_second_half),
            mib(rss_after)
        ),
    );
    // Recovery: the normal rate right after, window by window, against the baseline.
    let recovery = Recovery::judge(&base_phase.windows, &after.windows, RECOVERY_WINDOW);
    let back_text = match recovery.back_after {
        Some(d) => format!("{} s", secs1(d)),
        None => format!("not within the {} s measured", plan.baseline_secs),
    };
    let server_text = after_server_p99.map_or("over the histogram".to_string(), |b| {
        format!("≤ {}", ms(Duration::from_secs_f64(b)))
    });
    let windows_text = format!(
        "{} of {} windows over it from then on{} (baseline: {} of {})",
        recovery.bad_at.len(),
        recovery.later,
        if recovery.bad_at.is_empty() {
            String::new()
        } else {
            let at: Vec<String> = recovery.bad_at.iter().take(10).map(|d| secs1(*d)).collect();
            format!(", starting at {} s", at.join(", "))
        },
        recovery.bad_baseline,
        recovery.baseline
    );
    out.figure(
        "recovery: last overload answer after the start / back within bound after (100 ms windows' p99) / p99 at the normal rate right after, whole phase / server's own p99 on the draw route then / this client's lag p99 then",
        format!(
            "{:.1} s for {} s of load / {back_text} (bound {}: 3× the baseline's median window p99 + 50 ms; {windows_text}) / {} (baseline {}) / {server_text} / {}; {} errors",
            drained.as_secs_f64(),
            plan.overload_secs,
            ms(recovery.bound),
            ms(after.accepted_p99),
            ms(base_phase.accepted_p99),
            ms(after.client_lag_p99),
            after.sent - after.accepted
        ),
    );

    // Verdicts.
    out.check(
        (watch.max_depth as usize) <= IN_FLIGHT_MAX,
        format!(
            "mailbox bounded: depth at most {} ≤ IN_FLIGHT_MAX {}",
            watch.max_depth, IN_FLIGHT_MAX
        ),
        format!(
            "mailbox depth reached {} > IN_FLIGHT_MAX {}",
            watch.max_depth, IN_FLIGHT_MAX
        ),
    );
    let grew_first = rss_first_half.saturating_sub(rss_before);
    let grew_second = rss_second_half.saturating_sub(rss_first_half);
    // Bounded: either it levels off (the second half adds at most half of the first plus
    // 32 MiB), or it stays within a budget per client connection (buffers and state of an open
    // HTTP/1 connection) — in a short run the client is still opening connections in the
    // second half, so the halves alone do not tell growth from set-up.
    let budget = rss_before + CONNECTION_BUDGET * over_connections as u64 + 64 * 1_048_576;
    out.check(
        grew_second <= grew_first / 2 + 32 * 1_048_576 || rss_max <= budget,
        format!(
            "memory bounded: RSS grew {} in the first half of the overload and {} more in the second, to {} (levels off, or within the budget of {} for {} connections)",
            mib(grew_first),
            mib(grew_second),
            mib(rss_max),
            mib(budget),
            over_connections
        ),
        format!(
            "memory did not level off: RSS grew {} in the first half of the overload and {} more in the second, to {} (budget {} for {} connections)",
            mib(grew_first),
            mib(grew_second),
            mib(rss_max),
            mib(budget),
            over_connections
        ),
    );
    let server_errors: u64 = over
        .codes
        .iter()
        .filter(|(k, _)| k.starts_with('5') && !k.starts_with("503"))
        .map(|(_, v)| *v)
        .sum();
    out.check(
        server_errors == 0,
        "no 5xx under overload but 503",
        format!("server errors under overload: {:?}", over.codes),
    );
    // Answers that are neither a draw, a documented refusal nor a business refusal: the client
    // gave up (timeout), could not connect, or the HTTP layer answered 408.
    let undocumented: u64 = over
        .codes
        .iter()
        .filter(|(k, _)| !(k.starts_with("409") || k.starts_with("503") || k.starts_with("429")))
        .map(|(_, v)| *v)
        .sum::<u64>()
        + flooded.as_ref().map_or(0, |f| f.wrk.errors.socket());
    let expected_excess = offered - capacity;
    let refused_rate = match &flooded {
        Some(f) => f.counted.server_error as f64 / plan.overload_secs,
        None => over.refused as f64 / plan.overload_secs,
    };
    if let Some(f) = &flooded {
        // A closed loop offers what the server lets it: at least the factor only if the excess
        // is answered quickly. Offering less is itself a sign that requests waited.
        let factor = f.wrk.requests_per_s / capacity;
        if factor >= plan.factor {
            out.held(format!(
                "{:.0}× the maximum offered and answered: wrk's {} connections got {:.0} answers/s against a maximum of {capacity:.0} draws/s ({factor:.1}×), {:.0}/s of them accepted",
                plan.factor, over_connections, f.wrk.requests_per_s, f.wrk.good_per_s
            ));
        } else {
            // How far any answer could go over these connections: a refusal costs about what
            // the cheapest answer does (1/ceiling of the server's CPU), a draw 1/capacity, so
            // answering `factor` × capacity leaves accepted draws at most
            // (1 − factor·ρ) / (1 − ρ) of the maximum, ρ = capacity / ceiling.
            let why = match &ceiling {
                Some(Ok(c)) => {
                    out.figure(
                        "ceiling: the cheapest answer (GET /healthz) over the same connections",
                        format!(
                            "{:.0}/s ({:.1}× the draw maximum; p99 {})",
                            c.requests_per_s,
                            c.requests_per_s / capacity,
                            ms(c.latency.p99)
                        ),
                    );
                    let rho = capacity / c.requests_per_s.max(1.0);
                    let room = ((1.0 - plan.factor * rho) / (1.0 - rho).max(f64::EPSILON)).max(0.0);
                    let accepted = f.counted.ok as f64 / plan.overload_secs / capacity;
                    let verdict = if room >= accepted {
                        "refusing sooner would have answered it and accepted as many: the excess queued".to_string()
                    } else {
                        format!(
                            "offering {:.0}× over these connections on {} trades goodput for refusals ({:.0} points of it), it is not a queue that a lower threshold removes",
                            plan.factor,
                            if pinned {
                                "the server's one CPU"
                            } else {
                                "CPUs the server shares with this client"
                            },
                            100.0 * (accepted - room)
                        )
                    };
                    format!(
                        "; the server's ceiling over the same {} connections, its cheapest answer (GET /healthz by wrk for {CEILING_SECS:.0} s), is {:.0}/s ({:.1}× the maximum): with a refusal costing about as much, answering {:.0}× the maximum leaves room for accepted draws of at most {:.0} % of the maximum, against {:.0} % accepted here by shedding at {} — {verdict}",
                        over_connections,
                        c.requests_per_s,
                        c.requests_per_s / capacity,
                        plan.factor,
                        100.0 * room,
                        100.0 * accepted,
                        ms(SHED_QUEUE_DELAY),
                    )
                }
                Some(Err(e)) => format!("; the ceiling could not be measured: {e}"),
                None => String::new(),
            };
            out.findings.push(format!(
                "could not offer {:.0}× the maximum: wrk's {} connections got only {:.0} answers/s against a maximum of {capacity:.0} draws/s ({factor:.1}×), so answers took {} on average (p99 {}): requests waited instead of being refused{why}",
                plan.factor,
                over_connections,
                f.wrk.requests_per_s,
                ms(f.wrk.latency.mean),
                ms(f.wrk.latency.p99)
            ));
        }
    }
    // Excess refused quickly: either it was refused (and faster than the accepted were
    // served), or the accepted latency stayed near the baseline's (nothing queued).
    // What an accepted draw may wait under any overload, however long: the engine sheds new
    // writes once calls wait over SHED_QUEUE_DELAY, so a queue of about that much work, plus
    // the client's and server's own delays at the normal rate.
    let accepted_bound =
        SHED_QUEUE_DELAY * 2 + base_phase.accepted_p99 * 10 + Duration::from_millis(200);
    let queued = over.accepted_p99 > accepted_bound;
    if over.refused > 0 {
        // Both are measured from the intended send, so a wait in the client's own connection
        // pool counts in both: a refusal should not take longer than a typical accepted draw.
        // Where it does, the wait was before the gateway could see the request (an open
        // defect of the setup, recorded; not a broken promise of the server).
        if over.refused_p50 <= over.accepted_p50 + Duration::from_millis(50) {
            out.held(format!(
                "excess refused no slower than accepted: {:.0} refusals/s, p50 {} p99 {} (accepted p50 {})",
                refused_rate,
                ms(over.refused_p50),
                ms(over.refused_p99),
                ms(over.accepted_p50)
            ));
        } else {
            out.findings.push(format!(
                "refusals were slow: p50 {} (p99 {}) while accepted p50 was {}: the refused requests had waited before the gateway read them (client lag p99 {})",
                ms(over.refused_p50),
                ms(over.refused_p99),
                ms(over.accepted_p50),
                ms(over.client_lag_p99)
            ));
        }
    }
    let finding = format!(
        "excess is queued, not refused: at {:.0}× the maximum ({:.0} draws/s beyond it offered for {} s over {} connections) {:.0}/s were refused and accepted p99 rose from {} to {} (max {}), above the bound of {} that shedding should keep; the office's mailbox depth reached {} (IN_FLIGHT_MAX {}) and its delays stayed at {} in the mailbox and {} for the commit (it sheds at {}), so the wait was before the office: answered {:.0}/s of {:.0}/s offered; the client itself issued requests up to {} late (p99), the rest waited before the gateway read them (the client's connection pool, socket buffers; client and server share this machine's two CPUs)",
        plan.factor,
        expected_excess,
        plan.overload_secs,
        over_connections,
        refused_rate,
        ms(base_phase.accepted_p99),
        ms(over.accepted_p99),
        ms(over.accepted_max),
        ms(accepted_bound),
        watch.max_depth,
        IN_FLIGHT_MAX,
        ms(Duration::from_secs_f64(watch.max_queue_delay)),
        ms(Duration::from_secs_f64(watch.max_commit_delay)),
        ms(SHED_QUEUE_DELAY),
        over.rate() + refused_rate,
        offered,
        ms(over.client_lag_p99),
    );
    if queued || undocumented > 0 {
        let mut f = finding;
        if undocumented > 0 {
            f.push_str(&format!(
                "; {} requests were not answered as documented (client timeout after 60 s, connection refused, or the HTTP layer's 408): {:?}",
                thousands(undocumented),
                over.codes
            ));
        }
        out.findings.push(f);
    } else {
        out.held(format!(
            "accepted p99 stayed bounded under {:.0}× load: {} (baseline {}; bound {}: twice the shedding delay of {} plus ten times the baseline p99 plus 200 ms), every request answered",
            plan.factor,
            ms(over.accepted_p99),
            ms(base_phase.accepted_p99),
            ms(accepted_bound),
            ms(SHED_QUEUE_DELAY)
        ));
    }
    let after_errors = after.sent - after.accepted;
    if after_errors == 0 && recovery.recovered() {
        out.held(format!(
            "recovered at once: at the normal rate right after, the 100 ms windows' p99 were back within {} after {back_text}, {windows_text}, no errors (p99 over the whole {} s: {}, baseline {})",
            ms(recovery.bound),
            plan.baseline_secs,
            ms(after.accepted_p99),
            ms(base_phase.accepted_p99)
        ));
    } else {
        out.findings.push(format!(
            "no quick recovery: at the normal rate right after the overload, the 100 ms windows' p99 were back within {} after {back_text} (at most {} s allowed), {windows_text}; p99 over the whole phase {} (baseline {}), the server's own p99 on the draw route {server_text}; {} requests not accepted {:?}",
            ms(recovery.bound),
            secs1(RECOVERY_MAX),
            ms(after.accepted_p99),
            ms(base_phase.accepted_p99),
            after_errors,
            after.codes
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ms_: u64, status: u16) -> Sample {
        let t = Instant::now();
        Sample {
            intended: t,
            issued: t,
            done: t + Duration::from_millis(ms_),
            status,
            code: String::new(),
        }
    }

    #[test]
    fn phases_split_accepted_refused_and_other() {
        let mut v: Vec<Sample> = (1..=100).map(|i| sample(i, 201)).collect();
        v.push(sample(2, 503));
        v.push(sample(3, 429));
        v.push(sample(4, 409));
        v.push(sample(5, 0));
        let p = Phase::of(&v, 2.0);
        assert_eq!((p.sent, p.accepted, p.refused, p.other), (104, 100, 2, 2));
        assert_eq!(p.no_answer, 1);
        assert_eq!(p.accepted_p99, Duration::from_millis(99));
        assert_eq!(p.refused_p99, Duration::from_millis(3));
        assert!((p.rate() - 50.0).abs() < 1e-9);
        assert_eq!(p.codes.values().sum::<u64>(), 4);
    }

    fn at(t: Instant, offset_ms: u64, latency_ms: u64, status: u16) -> Sample {
        Sample {
            intended: t + Duration::from_millis(offset_ms),
            issued: t + Duration::from_millis(offset_ms),
            done: t + Duration::from_millis(offset_ms + latency_ms),
            status,
            code: String::new(),
        }
    }

    fn windows(p99s_ms: &[u64]) -> Vec<Window> {
        p99s_ms
            .iter()
            .map(|&m| Window {
                p99: Duration::from_millis(m),
                errors: false,
            })
            .collect()
    }

    #[test]
    fn windows_take_the_p99_of_each_100_ms() {
        let w = Duration::from_millis(100);
        let t = Instant::now();
        // 1 s at one request per ms: slow for the first 250 ms, one slow request at 400 ms,
        // one refusal at 650 ms.
        let mut v: Vec<Sample> = (0..1_000)
            .map(|i| at(t, i, if i < 250 { 90 } else { 3 }, 201))
            .collect();
        v.push(at(t, 400, 200, 201));
        v.push(at(t, 650, 1, 503));
        let ws = windows_of(&v, w);
        assert_eq!(ws.len(), 10);
        assert_eq!(ws[0].p99, Duration::from_millis(90));
        assert_eq!(ws[2].p99, Duration::from_millis(90));
        assert_eq!(ws[3].p99, Duration::from_millis(3));
        // One slow request among 101 is not the window's p99 (nearest rank 100).
        assert_eq!(ws[4].p99, Duration::from_millis(3));
        assert!(ws[6].errors && !ws[5].errors);
        assert_eq!(first_good(&ws, Duration::from_millis(50)), Some(3));
    }

    #[test]
    fn recovery_is_judged_against_the_baseline() {
        let w = Duration::from_millis(100);
        // Baseline: typically 4 ms (bound 62 ms), one stall.
        let base = windows(&[4, 4, 5, 120, 4, 4, 3, 4, 4, 4]);
        // Back after 300 ms, one stall later: recovered.
        let r = Recovery::judge(&base, &windows(&[90, 80, 70, 5, 4, 4, 100, 4, 4, 4]), w);
        assert_eq!(r.bound, Duration::from_millis(62));
        assert_eq!(r.back_after, Some(Duration::from_millis(300)));
        assert_eq!((r.bad_at.len(), r.later, r.bad_baseline), (1, 7, 1));
        assert_eq!(r.bad_at, vec![Duration::from_millis(600)]);
        assert!(r.recovered());
        // Two stalls more than the baseline had: a service still struggling.
        let r = Recovery::judge(&base, &windows(&[5, 100, 100, 4, 100, 4, 4, 4, 4, 4]), w);
        assert_eq!(r.bad_at.len(), 3);
        assert!(!r.recovered());
        // Back only after 1.1 s.
        let slow: Vec<u64> = (0..20).map(|i| if i < 11 { 200 } else { 4 }).collect();
        let r = Recovery::judge(&base, &windows(&slow), w);
        assert_eq!(r.back_after, Some(Duration::from_millis(1_100)));
        assert!(!r.recovered());
        // Never back.
        let r = Recovery::judge(&base, &windows(&[200; 10]), w);
        assert_eq!((r.back_after, r.recovered()), (None, false));
        // Errors make a window bad even when fast.
        let mut e = windows(&[4; 10]);
        e[5].errors = true;
        e[7].errors = true;
        let r = Recovery::judge(&windows(&[4; 10]), &e, w);
        assert_eq!((r.bad_at.len(), r.recovered()), (2, false));
    }

    #[test]
    fn plans_overload_by_three() {
        for m in [Mode::Short, Mode::Long] {
            let p = Plan::for_mode(m);
            assert!(p.factor >= 3.0);
            assert!(p.overload_secs > p.baseline_secs);
        }
    }
}
