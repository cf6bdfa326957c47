//! Campaign 3: storage faults through the real `platepool` binary (loopback only).
//!
//! - **Read-only data folder**: the data folder is an ext4 file system on a loop device mounted
//!   `errors=remount-ro`; after the gateway started and acknowledged claims, the kernel is told
//!   the file system has an error (`/sys/fs/ext4/<dev>/trigger_fs_error`), which turns it
//!   read-only under the running process — as a failing disk does. Writes must get 503
//!   `unavailable` with a message, never a 2xx; reads go on; no panic. Then the file system is
//!   checked and mounted again and the gateway restarted: every acknowledged claim is there,
//!   nothing refused is.
//! - **Disk full**: the data folder is a small tmpfs, filled to the last byte by another file.
//!   Writes get 503 (any 2xx must turn out durable); after the file is removed and the gateway
//!   restarted, everything acknowledged is there and writes are accepted again.
//! - **Corrupted or truncated database file**: a clean data folder whose sled `db` file is
//!   truncated, zeroed or has bytes overwritten: the binary must refuse to start with an
//!   explanation (non-zero exit, a message on stderr) — or, if it starts, hold every
//!   acknowledged claim; never silently start empty.
//!
//! Mounting needs root; where it is refused the part says "skipped: cannot mount".

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use platepool_engine::vin::Vin;
use serde_json::{json, Value};

use crate::fuzz::http::token;
use crate::http::{once, Answer};
use crate::{Mode, Outcome};

const OPERATOR: &str = crate::fuzz::http::OPERATOR;
const SECRET: &str = crate::fuzz::http::SECRET;
const OFFICE: &str = "rel";
/// How long the binary may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Finds (and, under cargo, rebuilds) the `platepool` binary of this build's profile.
pub fn binary(build: bool) -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("PLATEPOOL_BIN").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = exe.parent().ok_or("no folder for the current executable")?;
    // Test binaries live in target/<profile>/deps.
    let profile_dir = if dir.ends_with("deps") {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    };
    if build {
        if let Ok(cargo) = std::env::var("CARGO") {
            let mut cmd = Command::new(cargo);
            cmd.args([
                "build",
                "-q",
                "-p",
                "platepool-gateway",
                "--bin",
                "platepool",
            ]);
            if !cfg!(debug_assertions) {
                cmd.arg("--release");
            }
            let status = cmd.status().map_err(|e| format!("cargo build: {e}"))?;
            if !status.success() {
                return Err("cargo build of platepool failed".into());
            }
        }
    }
    let candidate = profile_dir.join("platepool");
    if candidate.exists() {
        return Ok(candidate);
    }
    Err(format!(
        "no platepool binary at {} (build it with `cargo build -p platepool-gateway`)",
        candidate.display()
    ))
}

/// A running gateway.
struct Gateway {
    child: Child,
    port: u16,
    stderr: PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(18_080)
}

fn spawn(bin: &Path, data: &Path, log: &Path) -> Result<(Child, u16), String> {
    let port = free_port();
    let err = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let child = Command::new(bin)
        .args([
            "serve",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--workers",
            "2",
        ])
        .arg("--data-dir")
        .arg(data)
        .env("PLATEPOOL_OPERATOR_TOKEN", OPERATOR)
        .env("PLATEPOOL_TOKEN_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::from(err))
        .spawn()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    Ok((child, port))
}

/// Starts the binary and waits for /readyz; `Err` with its stderr if it exits first.
fn start(bin: &Path, data: &Path, log: &Path) -> Result<(Gateway, Duration), String> {
    let started = Instant::now();
    let (child, port) = spawn(bin, data, log)?;
    let mut gw = Gateway {
        child,
        port,
        stderr: log.to_path_buf(),
    };
    while started.elapsed() < READY_TIMEOUT {
        if let Ok(Some(status)) = gw.child.try_wait() {
            return Err(format!("exited with {status}: {}", read(&gw.stderr)));
        }
        if once(port, "GET", "/readyz", &[], None).is_ok_and(|a| a.status == 200) {
            return Ok((gw, started.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "not ready after {READY_TIMEOUT:?}: {}",
        read(&gw.stderr)
    ))
}

fn read(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    s.trim().chars().take(600).collect()
}

fn op(port: u16, method: &str, path: &str, body: Option<&Value>) -> std::io::Result<Answer> {
    let text = body.map(|b| b.to_string());
    once(
        port,
        method,
        path,
        &[
            ("Authorization", &format!("Bearer {OPERATOR}")),
            ("Content-Type", "application/json"),
        ],
        text.as_deref().map(str::as_bytes),
    )
}

fn citizen(
    port: u16,
    tok: &str,
    method: &str,
    path: &str,
    body: &Value,
) -> std::io::Result<Answer> {
    once(
        port,
        method,
        path,
        &[
            ("Authorization", &format!("Bearer {tok}")),
            ("Content-Type", "application/json"),
        ],
        Some(body.to_string().as_bytes()),
    )
}

fn vin(n: u32) -> String {
    Vin::with_check_digit(&format!("LSVRE{n:03}X12345678"))
        .map(Vin::into_string)
        .unwrap_or_default()
}

/// Sets up an office with a release and certificates (operator calls).
fn setup(port: u16) -> Result<(), String> {
    let office = json!({
        "name": "reliability office", "prefix": "粤K", "classes": ["small"],
        "rules": {"sms_confirm_delay_ms": 0, "opening_window_ms": 0, "custom_min_interval_ms": 0},
        "notice": {"version": "v1", "text": "terms"}
    });
    let a = op(
        port,
        "PUT",
        &format!("/v1/admin/offices/{OFFICE}"),
        Some(&office),
    )
    .map_err(|e| e.to_string())?;
    if a.status >= 300 {
        return Err(format!("office: {} {}", a.status, a.text()));
    }
    let rel = json!({"class": "small", "label": "A", "patterns": ["A####"]});
    let a = op(
        port,
        "POST",
        &format!("/v1/admin/offices/{OFFICE}/releases"),
        Some(&rel),
    )
    .map_err(|e| e.to_string())?;
    if a.status >= 300 {
        return Err(format!("release: {} {}", a.status, a.text()));
    }
    let rows: Vec<Value> = (1..=300)
        .map(|n| json!({"vin": vin(n), "voucher": format!("RV{n:06}"), "class": "small", "energy": "fuel"}))
        .collect();
    let a = op(
        port,
        "POST",
        "/v1/admin/certificates",
        Some(&Value::Array(rows)),
    )
    .map_err(|e| e.to_string())?;
    if a.status >= 300 {
        return Err(format!("certificates: {} {}", a.status, a.text()));
    }
    Ok(())
}

fn last_code(port: u16, phone: &str) -> Option<String> {
    let a = op(
        port,
        "GET",
        &format!("/v1/admin/sms/outbox?phone={phone}"),
        None,
    )
    .ok()?;
    let text = a.json().as_array()?.last()?["text"].as_str()?.to_string();
    let chars: Vec<char> = text.chars().collect();
    chars
        .windows(6)
        .map(|w| w.iter().collect::<String>())
        .find(|w| w.chars().all(|c| c.is_ascii_digit()))
}

/// A citizen's whole flow to a claim: apply (SMS), verify (SMS), one custom check of `serial`.
/// Returns the last answer (the check) or the first refusal on the way.
fn claim(port: u16, n: u32, serial: &str) -> Result<Answer, String> {
    let user = format!("rc{n}");
    let phone = format!("1360000{n:04}");
    let now_s = platepool_engine::calendar::now_ms() / 1000;
    let tok = token(&user, &phone, now_s + 3_600);
    let e = |e: std::io::Error| e.to_string();
    let a = citizen(port, &tok, "POST", "/v1/sms", &json!({"purpose": "apply"})).map_err(e)?;
    if a.status != 200 {
        return Ok(a);
    }
    let code = last_code(port, &phone).ok_or("no apply code")?;
    let body = json!({"office": OFFICE, "vin": vin(n), "voucher": format!("RV{n:06}"), "notice_version": "v1", "sms_code": code});
    let a = citizen(port, &tok, "POST", "/v1/applications", &body).map_err(e)?;
    if a.status != 201 {
        return Ok(a);
    }
    let id = a.json()["id"].as_str().unwrap_or("").to_string();
    let a = citizen(
        port,
        &tok,
        "POST",
        "/v1/sms",
        &json!({"purpose": "identity", "application": id}),
    )
    .map_err(e)?;
    if a.status != 200 {
        return Ok(a);
    }
    let code = last_code(port, &phone).ok_or("no identity code")?;
    let a = citizen(
        port,
        &tok,
        "POST",
        &format!("/v1/applications/{id}/identity"),
        &json!({"sms_code": code}),
    )
    .map_err(e)?;
    if a.status != 200 {
        return Ok(a);
    }
    citizen(
        port,
        &tok,
        "POST",
        &format!("/v1/applications/{id}/custom"),
        &json!({"plates": [serial]}),
    )
    .map_err(e)
}

/// Who holds `serial` now, per the operator's look-up (the user id), if anyone.
fn holder(port: u16, serial: &str) -> Option<String> {
    let a = op(
        port,
        "GET",
        &format!("/v1/admin/applications?serial={serial}&office={OFFICE}"),
        None,
    )
    .ok()?;
    let v = a.json();
    let list = v
        .as_array()
        .cloned()
        .or_else(|| v["applications"].as_array().cloned())?;
    list.iter()
        .find(|x| matches!(x["state"].as_str(), Some("claimed") | Some("issued")))
        .and_then(|x| x["user"].as_str().map(str::to_string))
}

fn sh(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A write that must not be acknowledged on a broken disk: (what, answer).
fn writes_while_broken(
    port: u16,
    first: u32,
    count: u32,
) -> Vec<(String, std::io::Result<Answer>)> {
    let mut out = Vec::new();
    for i in 0..count {
        let n = first + i;
        let serial = format!("A{:04}", 5_000 + n);
        out.push((
            format!("citizen flow {n} to claim {serial}"),
            claim(port, n, &serial).map_err(std::io::Error::other),
        ));
        let rel =
            json!({"class": "small", "label": format!("B{n}"), "serials": [format!("B{:04}", n)]});
        out.push((
            format!("release B{n:04}"),
            op(
                port,
                "POST",
                &format!("/v1/admin/offices/{OFFICE}/releases"),
                Some(&rel),
            ),
        ));
        out.push((
            format!("withdraw A{:04}", 9_000 + n),
            op(
                port,
                "DELETE",
                &format!("/v1/admin/offices/{OFFICE}/plates/A{:04}", 9_000 + n),
                None,
            ),
        ));
    }
    out
}

/// The campaign for the `reliability` binary: rebuilds the `platepool` binary first when run
/// under cargo.
pub fn campaign(mode: Mode) -> Outcome {
    campaign_with(mode, true)
}

/// Is the binary at least as new as every source file of the engine and the gateway?
pub fn binary_is_fresh(bin: &Path) -> bool {
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return false;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    fn newest(dir: &Path, acc: &mut Option<std::time::SystemTime>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                newest(&p, acc);
            } else if let Ok(t) = e.metadata().and_then(|m| m.modified()) {
                if acc.is_none_or(|a| t > a) {
                    *acc = Some(t);
                }
            }
        }
    }
    let mut latest = None;
    newest(&root.join("engine/src"), &mut latest);
    newest(&root.join("gateway/src"), &mut latest);
    latest.is_none_or(|l| l <= built)
}

/// The campaign; `build` rebuilds the binary under cargo (tests pass false and skip a stale one).
pub fn campaign_with(mode: Mode, build: bool) -> Outcome {
    let started = Instant::now();
    let mut out = Outcome::new("storage", "storage faults through the real binary: read-only, disk full, corrupted database (campaign 3)");
    let bin = match binary(build) {
        Ok(b) if build || binary_is_fresh(&b) => b,
        Ok(b) => {
            out.skipped = Some(format!(
                "{} is older than the sources: build it first",
                b.display()
            ));
            out.elapsed = started.elapsed();
            return out;
        }
        Err(e) => {
            out.skipped = Some(format!("no platepool binary: {e}"));
            out.elapsed = started.elapsed();
            return out;
        }
    };
    out.tried(format!("binary {}", bin.display()));
    let rounds = match mode {
        Mode::Short => 3,
        Mode::Long => 20,
    };
    let mut skipped = Vec::new();
    if let Err(e) = read_only(&bin, &mut out, rounds) {
        if e.starts_with("skipped") {
            skipped.push(format!("read-only folder {e}"));
        } else {
            out.violation(format!("read-only folder: {e}"));
        }
    }
    if let Err(e) = disk_full(&bin, &mut out, rounds) {
        if e.starts_with("skipped") {
            skipped.push(format!("disk full {e}"));
        } else {
            out.violation(format!("disk full: {e}"));
        }
    }
    if let Err(e) = corrupted(&bin, &mut out) {
        out.violation(format!("corrupted database: {e}"));
    }
    if !skipped.is_empty() {
        out.skipped = Some(skipped.join("; "));
    }
    out.figure(
        "acknowledged data lost",
        if out.violations.is_empty() {
            "none"
        } else {
            "see violations"
        },
    );
    out.elapsed = started.elapsed();
    out
}

/// Claims `count` numbers A0000+; returns the serials acknowledged (2xx).
fn acknowledged_claims(port: u16, first: u32, count: u32) -> Result<Vec<(String, String)>, String> {
    let mut acked = Vec::new();
    for n in first..first + count {
        let serial = format!("A{:04}", n);
        let a = claim(port, n, &serial)?;
        if a.status == 200 {
            acked.push((serial, format!("rc{n}")));
        } else {
            return Err(format!(
                "claim of {serial} before the fault: {} {}",
                a.status,
                a.text()
            ));
        }
    }
    Ok(acked)
}

fn check_refusals(
    out: &mut Outcome,
    what: &str,
    answers: &[(String, std::io::Result<Answer>)],
) -> Vec<String> {
    let mut acked_during = Vec::new();
    let mut unavailable = 0;
    for (name, a) in answers {
        match a {
            Ok(a)
                if a.status == 503
                    && a.code() == "unavailable"
                    && !a.json()["error"]["message"]
                        .as_str()
                        .unwrap_or("")
                        .is_empty() =>
            {
                unavailable += 1
            }
            Ok(a) if a.status < 300 => acked_during.push(name.clone()),
            Ok(a) if a.status >= 500 => {
                out.violation(format!("{what}: {name}: {} {}", a.status, a.text()))
            }
            Ok(_) => {}
            Err(e) => out.violation(format!(
                "{what}: {name}: no answer ({e}) — did the process die?"
            )),
        }
    }
    out.figure(
        format!("{what}: writes tried / answered 503 unavailable / acknowledged"),
        format!("{} / {unavailable} / {}", answers.len(), acked_during.len()),
    );
    acked_during
}

fn read_only(bin: &Path, out: &mut Outcome, rounds: u32) -> Result<(), String> {
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let image = work.path().join("ext4.img");
    let mnt = work.path().join("mnt");
    std::fs::create_dir_all(&mnt).map_err(|e| e.to_string())?;
    sh("truncate", &["-s", "256M", &image.to_string_lossy()])?;
    sh("mkfs.ext4", &["-q", "-F", &image.to_string_lossy()])
        .map_err(|e| format!("skipped: cannot make ext4 ({e})"))?;
    sh(
        "mount",
        &[
            "-o",
            "loop,errors=remount-ro",
            &image.to_string_lossy(),
            &mnt.to_string_lossy(),
        ],
    )
    .map_err(|e| format!("skipped: cannot mount ({e})"))?;
    let _guard = Unmount(mnt.clone());
    let data = mnt.join("data");
    let log = work.path().join("ro.log");
    let (gw, _) = start(bin, &data, &log)?;
    setup(gw.port)?;
    let acked = acknowledged_claims(gw.port, 1, 3 * rounds)?;
    let dev = sh("findmnt", &["-n", "-o", "SOURCE", &mnt.to_string_lossy()])?;
    let name = Path::new(&dev)
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    std::fs::write(format!("/sys/fs/ext4/{name}/trigger_fs_error"), "1")
        .map_err(|e| format!("skipped: cannot trigger an ext4 error ({e})"))?;
    if std::fs::write(mnt.join("probe"), "x").is_ok() {
        return Err("skipped: the file system did not turn read-only".into());
    }
    out.tried(format!(
        "read-only: gateway on ext4 (loop device, errors=remount-ro); {} claims acknowledged, then the kernel turned the file system read-only under it; {} rounds of writes (citizen flow to a claim, a release, a withdrawal)",
        acked.len(),
        rounds
    ));
    let answers = writes_while_broken(gw.port, 100, rounds);
    let during = check_refusals(out, "read-only", &answers);
    // The office whose commit failed answers nothing of its state (its memory may be ahead of
    // the disk): 503 with an explanation; what does not depend on it is still served.
    let pool = once(
        gw.port,
        "GET",
        &format!("/v1/offices/{OFFICE}/pool"),
        &[],
        None,
    );
    let pool_ok = pool
        .as_ref()
        .is_ok_and(|a| a.status == 200 || (a.status == 503 && a.code() == "unavailable"));
    let listed = once(gw.port, "GET", "/v1/offices", &[], None).is_ok_and(|a| a.status == 200);
    out.check(
        pool_ok && listed,
        "read-only: the office list still served; the failed office's pool notice answered 503 unavailable (fail-stop: nothing the disk may not hold is shown)",
        format!(
            "read-only: office list served {listed}; pool notice {:?}",
            pool.map(|a| (a.status, a.text()))
        ),
    );
    let alive = matches!(gw_alive(&gw), Ok(true));
    let panicked = read(&gw.stderr).contains("panicked");
    out.check(
        alive && !panicked,
        "read-only: the process stayed up, no panic",
        format!(
            "read-only: process alive {alive}, panic in log {panicked}: {}",
            read(&gw.stderr)
        ),
    );
    drop(gw);
    // Repair: unmount, fsck, mount again, restart.
    sh("umount", &[&mnt.to_string_lossy()])?;
    let _ = Command::new("e2fsck")
        .args(["-fy", &image.to_string_lossy()])
        .output();
    sh(
        "mount",
        &[
            "-o",
            "loop,errors=remount-ro",
            &image.to_string_lossy(),
            &mnt.to_string_lossy(),
        ],
    )?;
    let (gw, took) = start(bin, &data, &log)?;
    out.figure(
        "read-only: recovery (restart to ready after fsck)",
        format!("{:.2} s", took.as_secs_f64()),
    );
    verify_after(out, "read-only", gw.port, &acked, &during)?;
    let again = claim(gw.port, 200, "A7000")?;
    out.check(
        again.status == 200,
        "read-only: after repair and restart, writes are accepted again",
        format!(
            "read-only: after repair a claim got {} {}",
            again.status,
            again.text()
        ),
    );
    Ok(())
}

fn gw_alive(gw: &Gateway) -> Result<bool, String> {
    Ok(once(gw.port, "GET", "/healthz", &[], None).is_ok_and(|a| a.status == 200))
}

/// After a restart: every acknowledged claim is held by its owner; what was refused is absent.
fn verify_after(
    out: &mut Outcome,
    what: &str,
    port: u16,
    acked: &[(String, String)],
    acked_during: &[String],
) -> Result<(), String> {
    let mut lost = Vec::new();
    for (serial, user) in acked {
        if holder(port, serial).as_deref() != Some(user.as_str()) {
            lost.push(serial.clone());
        }
    }
    out.check(
        lost.is_empty(),
        format!(
            "{what}: after restart all {} acknowledged claims are there (I2, I9)",
            acked.len()
        ),
        format!("{what}: acknowledged claims lost after restart: {lost:?}"),
    );
    // Releases refused during the fault must not exist; ones acknowledged must.
    let stats = op(port, "GET", &format!("/v1/offices/{OFFICE}/pool"), None)
        .map_err(|e| e.to_string())?
        .json();
    let labels: Vec<String> = stats["classes"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["releases"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["label"].as_str().map(str::to_string))
        .collect();
    let extra: Vec<&String> = labels
        .iter()
        .filter(|l| {
            l.starts_with('B')
                && !acked_during
                    .iter()
                    .any(|a| a == &format!("release B{:04}", l[1..].parse::<u32>().unwrap_or(0)))
        })
        .collect();
    let missing: Vec<&String> = acked_during
        .iter()
        .filter(|a| a.starts_with("release "))
        .filter(|a| {
            !labels
                .iter()
                .any(|l| format!("release B{:04}", l[1..].parse::<u32>().unwrap_or(0)) == **a)
        })
        .collect();
    out.check(
        missing.is_empty(),
        format!("{what}: no 2xx for anything that was not persisted"),
        format!("{what}: acknowledged during the fault but absent after restart: {missing:?}"),
    );
    if !extra.is_empty() {
        out.held(format!("{what}: {} refused releases turned out persisted (a 503 means 'not acknowledged', see notes)", extra.len()));
    }
    Ok(())
}

struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

fn disk_full(bin: &Path, out: &mut Outcome, rounds: u32) -> Result<(), String> {
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mnt = work.path().join("mnt");
    std::fs::create_dir_all(&mnt).map_err(|e| e.to_string())?;
    sh(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            "size=64m",
            "tmpfs",
            &mnt.to_string_lossy(),
        ],
    )
    .map_err(|e| format!("skipped: cannot mount ({e})"))?;
    let _guard = Unmount(mnt.clone());
    let data = mnt.join("data");
    let log = work.path().join("full.log");
    let (gw, _) = start(bin, &data, &log)?;
    setup(gw.port)?;
    let acked = acknowledged_claims(gw.port, 1, 3 * rounds)?;
    // Fill the file system to the last byte.
    let filler = mnt.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).map_err(|e| e.to_string())?;
        let block = vec![0xa5u8; 1 << 16];
        while f.write_all(&block).is_ok() {}
        let _ = f.flush();
    }
    out.tried(format!(
        "disk full: gateway on a 64 MiB tmpfs; {} claims acknowledged, then the file system filled to the last byte; {rounds} rounds of writes",
        acked.len()
    ));
    let answers = writes_while_broken(gw.port, 100, rounds);
    let during = check_refusals(out, "disk full", &answers);
    let panicked = read(&gw.stderr).contains("panicked");
    let alive = matches!(gw_alive(&gw), Ok(true));
    out.check(
        alive && !panicked,
        "disk full: the process stayed up, no panic",
        format!("disk full: process alive {alive}, panic in log {panicked}"),
    );
    std::fs::remove_file(&filler).map_err(|e| e.to_string())?;
    let after_free = claim(gw.port, 300, "A7100")?;
    out.tried(format!(
        "disk full: space freed without a restart: a write got {} {} (the office refuses writes until it restarts)",
        after_free.status,
        after_free.code()
    ));
    drop(gw);
    let (gw, took) = start(bin, &data, &log)?;
    out.figure(
        "disk full: recovery (restart to ready after freeing space)",
        format!("{:.2} s", took.as_secs_f64()),
    );
    let mut acked_all = acked.clone();
    if after_free.status == 200 {
        acked_all.push(("A7100".into(), "rc300".into()));
    }
    for d in &during {
        if let Some(rest) = d.strip_prefix("citizen flow ") {
            let n: u32 = rest
                .split_whitespace()
                .next()
                .and_then(|x| x.parse().ok())
                .unwrap_or(0);
            acked_all.push((format!("A{:04}", 5_000 + n), format!("rc{n}")));
        }
    }
    verify_after(out, "disk full", gw.port, &acked_all, &during)?;
    let again = claim(gw.port, 201, "A7001")?;
    out.check(
        again.status == 200,
        "disk full: after freeing space and a restart, writes are accepted again",
        format!(
            "disk full: after recovery a claim got {} {}",
            again.status,
            again.text()
        ),
    );
    Ok(())
}

fn corrupted(bin: &Path, out: &mut Outcome) -> Result<(), String> {
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let clean = work.path().join("clean");
    let log = work.path().join("clean.log");
    let (mut gw, _) = start(bin, &clean, &log)?;
    setup(gw.port)?;
    let acked = acknowledged_claims(gw.port, 1, 5)?;
    // A clean stop (SIGTERM): everything flushed.
    let _ = Command::new("kill")
        .args(["-TERM", &gw.child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while gw.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(gw);
    let db = clean.join("db");
    let len = std::fs::metadata(&db)
        .map_err(|e| format!("{}: {e}", db.display()))?
        .len();
    type Damage = fn(&Path, u64) -> std::io::Result<()>;
    let cases: Vec<(&str, Damage)> = vec![
        ("db truncated to half", |p, len| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(p)?
                .set_len(len / 2)
        }),
        ("db truncated to 0 bytes", |p, _| {
            std::fs::OpenOptions::new().write(true).open(p)?.set_len(0)
        }),
        ("db truncated by 100 bytes", |p, len| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(p)?
                .set_len(len.saturating_sub(100))
        }),
        ("4 KiB of db overwritten in the middle", |p, len| {
            use std::io::{Seek, SeekFrom, Write};
            let mut f = std::fs::OpenOptions::new().write(true).open(p)?;
            f.seek(SeekFrom::Start(len / 2))?;
            f.write_all(&vec![0x5a; 4096])
        }),
        ("first 4 KiB of db zeroed", |p, _| {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().write(true).open(p)?;
            f.write_all(&vec![0; 4096])
        }),
        ("db deleted, conf left", |p, _| std::fs::remove_file(p)),
    ];
    out.tried(format!("corrupted database: {} kinds of damage to a {len}-byte sled db holding {} acknowledged claims", cases.len(), acked.len()));
    for (name, damage) in cases {
        let dir = work.path().join(name.replace(' ', "_"));
        copy_dir(&clean, &dir).map_err(|e| e.to_string())?;
        damage(&dir.join("db"), len).map_err(|e| format!("{name}: {e}"))?;
        let log = work.path().join(format!("{}.log", name.replace(' ', "_")));
        match start(bin, &dir, &log) {
            Err(e) => {
                let e = e.replace(&dir.display().to_string(), "DATA");
                let explained = e.contains("cannot open")
                    || e.contains("corrupt")
                    || e.contains("recovered")
                    || e.contains("storage");
                out.check(
                    explained && e.contains("exited"),
                    format!(
                        "{name}: refused to start, exit code non-zero, with an explanation ({})",
                        e.chars().take(240).collect::<String>()
                    ),
                    format!("{name}: did not start but without a clear explanation: {e}"),
                );
            }
            Ok((gw, _)) => {
                let kept = acked
                    .iter()
                    .filter(|(s, u)| holder(gw.port, s).as_deref() == Some(u.as_str()))
                    .count();
                out.check(
                    kept == acked.len(),
                    format!(
                        "{name}: started and every acknowledged claim is there ({kept}/{})",
                        acked.len()
                    ),
                    format!(
                        "{name}: STARTED SILENTLY with {kept} of {} acknowledged claims",
                        acked.len()
                    ),
                );
            }
        }
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), target)?;
        }
    }
    Ok(())
}
