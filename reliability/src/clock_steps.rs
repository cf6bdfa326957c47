//! Campaign 7: wall-clock steps through the real `platepool` binary (SPEC T1, I4).
//!
//! The binary runs under libfaketime (Debian's `faketime`; `.ci/install-faketime.sh`): its wall
//! clock is offset by what a file says, re-read at every reading (`FAKETIME_NO_CACHE`), while
//! its monotonic clock stays real (`DONT_FAKE_MONOTONIC=1`). One citizen holds a claim, another
//! a fresh 90-second batch; then, while the node serves:
//!
//! - −1 hour: the batch does not gain the hour, `/readyz` says `degraded`, `/metrics` counts
//!   the step; the wall clock set right again ends it, with nothing to confirm;
//! - +30 days: no claim lapses, nobody is blacklisted, the batch still expires on time; the
//!   operator confirms the time (`POST /v1/admin/clock/confirm`, in the audit trail): the batch
//!   keeps what it had left, the claim lapses and its citizen is blacklisted;
//! - −1 hour from there, confirmed: engine time goes back, the batch still keeps its length.
//!
//! Long mode repeats the cycle with more citizens. Without libfaketime the campaign fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::http::once;
use crate::{Mode, Outcome};

const OP: &str = crate::fuzz::http::OPERATOR;
const SECRET: &str = crate::fuzz::http::SECRET;
const DAY_H: i64 = 24;
const BATCH_TTL_MS: u64 = 90_000;
/// How far a figure read over HTTP may be off what was set (two readings, a busy machine).
const SLACK_MS: i64 = 5_000;

pub fn campaign(mode: Mode) -> Outcome {
    let started = Instant::now();
    let mut out = Outcome::new(
        "clock",
        "clock steps: the wall clock stepped under the running binary (libfaketime)",
    );
    if let Err(e) = run(mode, &mut out) {
        out.violation(e);
    }
    out.elapsed = started.elapsed();
    out
}

fn libfaketime() -> Result<PathBuf, String> {
    [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib",
    ]
    .iter()
    .map(|d| Path::new(d).join("faketime/libfaketime.so.1"))
    .find(|p| p.exists())
    .ok_or_else(|| {
        "libfaketime is missing: install Debian's faketime (.ci/install-faketime.sh)".into()
    })
}

/// The binary under libfaketime; killed when dropped.
struct Node {
    child: Child,
    port: u16,
    spec: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    fn start(bin: &Path, dir: &Path) -> Result<Node, String> {
        let spec = dir.join("faketime-offset");
        std::fs::write(&spec, "+0h\n").map_err(|e| e.to_string())?;
        let port = crate::server::free_port();
        let child = Command::new(bin)
            .args(["serve", "--demo", "--addr", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .env("PLATEPOOL_OPERATOR_TOKEN", OP)
            .env("PLATEPOOL_TOKEN_SECRET", SECRET)
            .env_remove("PLATEPOOL_CLOCK_STEP_BOUND_MS")
            .env("RUST_LOG", "error")
            .env("LD_PRELOAD", libfaketime()?)
            .env("FAKETIME_TIMESTAMP_FILE", &spec)
            .env("FAKETIME_NO_CACHE", "1")
            .env("DONT_FAKE_MONOTONIC", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut node = Node { child, port, spec };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if node
                .call("GET", "/readyz", None, None)
                .is_ok_and(|(s, _)| s == 200)
            {
                return Ok(node);
            }
            if let Ok(Some(status)) = node.child.try_wait() {
                return Err(format!("the binary exited under libfaketime: {status}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err("the binary was not ready within 60 s under libfaketime".into())
    }

    /// Offsets the node's wall clock `hours` from the real one.
    fn set_offset_hours(&self, hours: i64) -> Result<(), String> {
        std::fs::write(&self.spec, format!("{hours:+}h\n")).map_err(|e| e.to_string())?;
        std::thread::sleep(Duration::from_millis(300));
        Ok(())
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        let body = body.map(|b| b.to_string());
        let a = once(
            self.port,
            method,
            path,
            &headers,
            body.as_deref().map(str::as_bytes),
        )
        .map_err(|e| format!("{method} {path}: {e}"))?;
        let text = String::from_utf8_lossy(&a.body).to_string();
        Ok((
            a.status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    fn expect(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        want: u16,
    ) -> Result<Value, String> {
        let (status, answer) = self.call(method, path, token, body)?;
        if status != want {
            return Err(format!("{method} {path}: {status}, not {want}: {answer}"));
        }
        Ok(answer)
    }

    fn sms_code(&self, phone: &str, purpose: &str) -> Result<String, String> {
        let b = self.expect(
            "GET",
            &format!("/v1/admin/sms/outbox?phone={phone}"),
            Some(OP),
            None,
            200,
        )?;
        let text = b
            .as_array()
            .and_then(|l| l.iter().rev().find(|m| m["purpose"] == purpose))
            .and_then(|m| m["text"].as_str())
            .ok_or_else(|| format!("no {purpose} code for {phone}: {b}"))?
            .to_string();
        text.split(|c: char| !c.is_ascii_digit())
            .find(|w| w.len() == 6)
            .map(str::to_string)
            .ok_or_else(|| format!("no code in {text:?}"))
    }

    fn application(&self, vin: &str) -> Result<Value, String> {
        let list = self.expect(
            "GET",
            &format!("/v1/admin/applications?vin={vin}"),
            Some(OP),
            None,
            200,
        )?;
        list.get(0)
            .cloned()
            .ok_or_else(|| format!("no application of {vin}"))
    }

    fn batch_left(&self, vin: &str) -> Result<Option<u64>, String> {
        Ok(self.application(vin)?["batch"]["expires_in_ms"].as_u64())
    }

    fn ready(&self) -> Result<Value, String> {
        self.expect("GET", "/readyz", None, None, 200)
    }

    fn metric(&self, name: &str) -> Result<f64, String> {
        let (_, text) = self.call("GET", "/metrics", None, None)?;
        text.as_str()
            .and_then(|t| t.lines().find_map(|l| l.strip_prefix(&format!("{name} "))))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("no {name} in /metrics"))
    }
}

/// Citizens `n` with verified identity, each `(vin, token, application id)`.
fn citizens(node: &Node, first: usize, n: usize) -> Result<Vec<(String, String, String)>, String> {
    let vehicles = platepool_gateway::demo::vehicles();
    let mut out = Vec::new();
    for i in first..first + n {
        let vehicle = vehicles.get(i).ok_or("not enough demo vehicles")?;
        let (user, phone) = (format!("clock_{i}"), format!("139{:08}", 700 + i));
        let b = node.expect(
            "POST",
            "/v1/admin/tokens",
            Some(OP),
            Some(json!({"user": user, "phone": phone, "ttl_s": 3600})),
            200,
        )?;
        let token = b["token"].as_str().ok_or("no token")?.to_string();
        node.expect(
            "POST",
            "/v1/sms",
            Some(&token),
            Some(json!({"purpose": "apply"})),
            200,
        )?;
        let code = node.sms_code(&phone, "apply")?;
        let app = node.expect(
            "POST",
            "/v1/applications",
            Some(&token),
            Some(json!({
            "office": "maoming", "vin": vehicle.vin, "voucher": vehicle.voucher,
            "notice_version": platepool_gateway::demo::NOTICE_VERSION, "sms_code": code})),
            201,
        )?;
        let id = app["id"].as_str().ok_or("no id")?.to_string();
        node.expect(
            "POST",
            "/v1/sms",
            Some(&token),
            Some(json!({"purpose": "identity", "application": id})),
            200,
        )?;
        out.push((vehicle.vin.clone(), token, id));
    }
    std::thread::sleep(Duration::from_millis(5_300));
    for (i, (_, token, id)) in out.iter().enumerate() {
        let code = node.sms_code(&format!("139{:08}", 700 + first + i), "identity")?;
        node.expect(
            "POST",
            &format!("/v1/applications/{id}/identity"),
            Some(token),
            Some(json!({"sms_code": code})),
            200,
        )?;
    }
    Ok(out)
}

fn run(mode: Mode, out: &mut Outcome) -> Result<(), String> {
    let bin = crate::storage::binary(true)?;
    let cycles = match mode {
        Mode::Short => 1,
        Mode::Long => 4,
    };
    let mut steps_seen = 0.0;
    for cycle in 0..cycles {
        let work = tempfile::tempdir().map_err(|e| e.to_string())?;
        let node = Node::start(&bin, work.path())?;
        one_cycle(&node, cycle, out)?;
        steps_seen += node.metric("platepool_clock_steps_total")?;
    }
    // Each cycle checks the same promises: keep one line of each.
    let mut seen = std::collections::HashSet::new();
    out.held.retain(|line| seen.insert(line.clone()));
    out.figure("cycles (fresh node each)", cycles);
    out.figure("steps counted by the nodes", steps_seen);
    Ok(())
}

fn one_cycle(node: &Node, cycle: usize, out: &mut Outcome) -> Result<(), String> {
    let people = citizens(node, 2 * cycle, 2)?;
    let (vin_a, token_a, app_a) = &people[0];
    let (vin_b, token_b, app_b) = &people[1];
    let draw = node.expect(
        "POST",
        &format!("/v1/applications/{app_a}/draws"),
        Some(token_a),
        Some(json!({"exclude_four": false})),
        201,
    )?;
    let serial = draw["batch"]["plates"][0]["serial"]
        .as_str()
        .ok_or("no serial")?
        .to_string();
    node.expect(
        "POST",
        &format!("/v1/applications/{app_a}/candidates"),
        Some(token_a),
        Some(json!({"serial": serial})),
        200,
    )?;
    node.expect(
        "POST",
        &format!("/v1/applications/{app_a}/claim"),
        Some(token_a),
        Some(json!({"serial": serial})),
        201,
    )?;
    node.expect(
        "POST",
        &format!("/v1/applications/{app_b}/draws"),
        Some(token_b),
        Some(json!({"exclude_four": false})),
        201,
    )?;
    if cycle == 0 {
        out.tried("a claim and a fresh 90 s batch; steps of −1 h (undone), +30 days (confirmed), −1 h (confirmed) while serving");
    }

    // −1 hour, then set right again.
    node.set_offset_hours(-1)?;
    let ready = node.ready()?;
    let left = node.batch_left(vin_b)?.unwrap_or(0);
    out.check(
        ready["status"] == "degraded" && node.metric("platepool_clock_degraded")? == 1.0,
        "−1 h: /readyz says degraded, platepool_clock_degraded is 1",
        format!("−1 h: not reported: {ready}"),
    );
    out.check(
        left > 0 && left <= BATCH_TTL_MS,
        "−1 h: the live batch does not gain the hour",
        format!("−1 h: the batch shows {left} ms left"),
    );
    node.set_offset_hours(0)?;
    let (confirm_status, _) = node.call("POST", "/v1/admin/clock/confirm", Some(OP), None)?;
    out.check(
        node.ready()?["status"] == "ready" && confirm_status == 409,
        "the wall clock set right again ends the degraded state; nothing to confirm (409)",
        format!("after the clock was set right: confirm answered {confirm_status}"),
    );

    // +30 days: nothing lapses until confirmed.
    node.set_offset_hours(30 * DAY_H)?;
    let claim_state = node.application(vin_a)?["state"].clone();
    let blacklist = node.expect("GET", "/v1/admin/blacklist", Some(OP), None, 200)?;
    let before = node.batch_left(vin_b)?.unwrap_or(0);
    out.check(
        claim_state == "claimed" && blacklist == json!([]),
        "+30 days: no claim lapses and nobody is blacklisted before the operator confirms",
        format!("+30 days: claim {claim_state}, blacklist {blacklist}"),
    );
    out.check(
        before > 0 && before <= BATCH_TTL_MS,
        "+30 days: the batch runs on the monotonic clock",
        format!("+30 days: the batch shows {before} ms left"),
    );
    let confirmed = node.expect("POST", "/v1/admin/clock/confirm", Some(OP), None, 200)?;
    let jump = confirmed["jump_ms"].as_i64().unwrap_or(0);
    let after = node.batch_left(vin_b)?.unwrap_or(0);
    let lapsed = node.application(vin_a)?["state"] == "lapsed";
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut blacklisted = false;
    while !blacklisted && Instant::now() < deadline {
        let list = node.expect("GET", "/v1/admin/blacklist", Some(OP), None, 200)?;
        blacklisted = list.as_array().is_some_and(|l| !l.is_empty());
        std::thread::sleep(Duration::from_millis(100));
    }
    let audited = node
        .expect("GET", "/v1/admin/audit", Some(OP), None, 200)?
        .to_string()
        .contains("confirm_clock");
    out.check(
        (jump - 30 * DAY_H * 3_600_000).abs() < SLACK_MS
            && after <= before
            && (before - after) < SLACK_MS as u64,
        "confirmed: engine time jumps 30 days, the batch keeps what it had left",
        format!("confirmed: jump {jump} ms, batch {before} → {after} ms left"),
    );
    out.figure(
        format!("cycle {cycle}: batch ms left before/after the +30 days confirmation"),
        format!("{before}/{after}"),
    );
    out.check(
        lapsed && blacklisted && audited,
        "confirmed: the claim lapses, its citizen is blacklisted, the confirmation is in the audit trail",
        format!("confirmed: lapsed {lapsed}, blacklisted {blacklisted}, audited {audited}"),
    );

    // −1 hour from there, confirmed: engine time goes back, holds keep their length.
    node.set_offset_hours(30 * DAY_H - 1)?;
    let before = node.batch_left(vin_b)?.unwrap_or(0);
    let confirmed = node.expect("POST", "/v1/admin/clock/confirm", Some(OP), None, 200)?;
    let jump = confirmed["jump_ms"].as_i64().unwrap_or(0);
    let after = node.batch_left(vin_b)?.unwrap_or(0);
    out.check(
        (jump + 3_600_000).abs() < SLACK_MS
            && after <= before
            && (before - after) < SLACK_MS as u64,
        "−1 h confirmed: engine time goes back an hour, the batch is not stretched",
        format!("−1 h confirmed: jump {jump} ms, batch {before} → {after} ms left"),
    );
    let steps = node.metric("platepool_clock_steps_total")?;
    out.check(
        steps == 3.0,
        "each step beyond the bound is counted once (platepool_clock_steps_total = 3)",
        format!("platepool_clock_steps_total = {steps}, 3 expected"),
    );
    Ok(())
}
