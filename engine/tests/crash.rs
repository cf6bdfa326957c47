//! The crash test (I2, I9): a child process drives the engine hard and is killed with SIGKILL at
//! a random (seeded) moment; the parent reopens the data folder and checks that every result the
//! child heard "yes" to is there, that no number is claimed twice, that no hold survived and that
//! every release still adds up. Several rounds run on the same folder, each continuing from the
//! state the previous crash left.
//!
//! The child is this test binary run again with `--exact crash_child` and `PLATEPOOL_CRASH_CHILD`
//! set to the data folder; it prints one flushed `ACK …` line per acknowledged result.
//! `PLATEPOOL_CRASH_SEED` picks the kill moments (default: fixed); `PLATEPOOL_CRASH_ROUNDS` the
//! number of rounds (default 8).
#![allow(clippy::unwrap_used)]

mod common_engine;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common_engine::*;
use platepool_engine::actor::SystemClock;
use platepool_engine::record::NumberState;
use platepool_engine::{
    AppId, AppState, Caller, Check, Durability, Engine, NewRelease, Pattern, Refusal, ReleaseSource,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CHILD_ENV: &str = "PLATEPOOL_CRASH_CHILD";
const ROUND_ENV: &str = "PLATEPOOL_CRASH_ROUND";
const SEED_ENV: &str = "PLATEPOOL_CRASH_SEED";
const ROUNDS_ENV: &str = "PLATEPOOL_CRASH_ROUNDS";
const OFFICE: &str = "crash";
const OP: &str = "operator:crash";
/// The release: A0000–A0499.
const RELEASE: &str = "A0[0-4]##";
const RELEASE_SIZE: u64 = 500;
const APPS_PER_ROUND: u32 = 48;

// ---------------------------------------------------------------------------------------------
// The child

fn emit(line: String) {
    let mut out = std::io::stdout().lock();
    let mut text = line;
    text.push('\n');
    if out
        .write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        // The parent is gone: nobody to tell.
        std::process::exit(3);
    }
}

/// Runs only as the child (when `PLATEPOOL_CRASH_CHILD` names the data folder).
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let round: u32 = std::env::var(ROUND_ENV).unwrap().parse().unwrap();
    let seed: u64 = std::env::var(SEED_ENV).unwrap().parse().unwrap();
    let system = actix_rt::System::new();
    system.block_on(child_main(PathBuf::from(dir), round, seed));
    emit("DONE".into());
    // Wait to be killed, but never outlive a parent that forgot to.
    std::thread::sleep(Duration::from_secs(30));
    std::process::exit(2);
}

fn expected(e: &Refusal) -> bool {
    matches!(
        e,
        Refusal::NotAvailable
            | Refusal::QuotaSpent
            | Refusal::Exhausted
            | Refusal::WrongState { .. }
            | Refusal::HoldExpired
            | Refusal::NotHeld
    )
}

fn fail(what: &str, id: &AppId, e: &Refusal) {
    emit(format!("FAIL {what} {id}: {e:?}"));
}

async fn child_main(dir: PathBuf, round: u32, seed: u64) {
    let clock = Arc::new(SystemClock);
    let engine = open_engine(engine_config(&dir, Durability::Fsync, clock, seed)).await;
    emit(format!("OPEN round {round}"));
    if engine.office_config(OFFICE).is_err() {
        let mut config = office_config("crash office");
        config.classes = vec!["small".into()];
        config.rules.custom_min_interval_ms = 0;
        // Rounds last a fraction of a second: a long opening window (calls held back, then served
        // in random order) would hold every draw and check of the first rounds until the kill.
        config.rules.opening_window_ms = 200;
        engine.put_office(OFFICE, config, OP).await.unwrap();
        emit("ACK office".into());
    }
    let stats = engine.stats(OFFICE).await.unwrap();
    if class_stats(&stats, "small").releases.is_empty() {
        let now = engine.now_ms();
        let release = NewRelease {
            class: "small".into(),
            label: "crash".into(),
            opens_at_ms: now,
            custom_from_ms: None,
            source: ReleaseSource::Patterns(vec![Pattern::parse(RELEASE).unwrap()]),
        };
        let (id, n) = engine.add_release(OFFICE, release, OP).await.unwrap();
        emit(format!("ACK release {id} {n}"));
    }
    let rows = (0..APPS_PER_ROUND)
        .map(|i| {
            cert(
                &vin(&format!("R{round}"), i),
                &format!("V{round}-{i}"),
                "small",
                "fuel",
            )
        })
        .collect();
    let report = engine
        .import_certificates(rows, "operator:test")
        .await
        .unwrap();
    emit(format!("ACK import {}", report.imported));

    let mut rng = StdRng::seed_from_u64(seed);
    let mut tasks = Vec::new();
    // Applications left by earlier rounds: continue the live ones, register or void some claims.
    for past in 0..round {
        for i in 0..APPS_PER_ROUND {
            let user = format!("u{past}-{i}");
            for (id, view) in engine.user_applications(&user).await.unwrap() {
                let rec = view.record;
                emit(format!("ACK resume {id} {user} {}", rec.vin));
                let engine = engine.clone();
                let user = user.clone();
                let task_seed = rng.random();
                if rec.state.selecting() {
                    tasks.push(actix_rt::spawn(async move {
                        drive(&engine, id, user, StdRng::seed_from_u64(task_seed)).await;
                    }));
                } else if rec.state == AppState::Claimed {
                    let serial = rec.claim.unwrap().serial.to_string();
                    tasks.push(actix_rt::spawn(async move {
                        settle(
                            &engine,
                            &id,
                            &serial,
                            &mut StdRng::seed_from_u64(task_seed),
                            0.5,
                        )
                        .await;
                    }));
                }
            }
        }
    }
    // New applications, all at once.
    for i in 0..APPS_PER_ROUND {
        let engine = engine.clone();
        let task_seed = rng.random();
        tasks.push(actix_rt::spawn(async move {
            let user = format!("u{round}-{i}");
            let v = vin(&format!("R{round}"), i);
            let req = request(OFFICE, &user, &v, &format!("V{round}-{i}"));
            match engine.create_application(req).await {
                Ok(id) => {
                    emit(format!("ACK app {id} {user} {v}"));
                    drive(&engine, id, user, StdRng::seed_from_u64(task_seed)).await;
                }
                Err(e) => emit(format!("FAIL create {user}: {e:?}")),
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// A claimed application: the office registers it or voids it, or nothing happens.
async fn settle(engine: &Engine, id: &AppId, serial: &str, rng: &mut StdRng, chance: f64) {
    if !rng.random_bool(chance) {
        return;
    }
    if rng.random_bool(0.7) {
        match engine.register(OFFICE, serial, OP).await {
            Ok(owner) if owner == *id => emit(format!("ACK register {id} {serial}")),
            Ok(owner) => emit(format!("FAIL register {id} {serial}: registered {owner}")),
            Err(e) => fail("register", id, &e),
        }
    } else {
        match engine.void(OFFICE, serial, "owner asked", OP).await {
            Ok(owner) if owner == *id => emit(format!("ACK void {id} {serial}")),
            Ok(owner) => emit(format!("FAIL void {id} {serial}: voided {owner}")),
            Err(e) => fail("void", id, &e),
        }
    }
}

/// One citizen selecting: draws, picks, claims and custom checks in a random order until the
/// application is claimed or exhausted.
async fn drive(engine: &Engine, id: AppId, user: String, mut rng: StdRng) {
    let me = Caller::Citizen(&user);
    match engine.verify_identity(&id, me).await {
        Ok(_) => emit(format!("ACK verify {id}")),
        Err(e) if expected(&e) => return,
        Err(e) => return fail("verify", &id, &e),
    }
    for _ in 0..30 {
        if rng.random_bool(0.3) {
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..4))).await;
        }
        let view = match engine.application(&id, me).await {
            Ok(v) => v,
            Err(e) => return fail("read", &id, &e),
        };
        let rec = &view.record;
        if !rec.state.selecting() {
            break;
        }
        if let Some(c) = view.candidates.as_ref().filter(|_| rng.random_bool(0.5)) {
            let serial = c.serials[rng.random_range(0..c.serials.len())].to_string();
            match engine.claim(&id, me, &serial).await {
                Ok(claim) => {
                    emit(format!("ACK claim {id} {}", claim.serial));
                    break;
                }
                Err(e) if expected(&e) => continue,
                Err(e) => return fail("claim", &id, &e),
            }
        }
        if let Some(b) = view
            .batch
            .as_ref()
            .filter(|b| !b.serials.is_empty() && !view.batch_picked && rng.random_bool(0.6))
        {
            let serial = b.serials[rng.random_range(0..b.serials.len())].to_string();
            match engine.pick_candidate(&id, me, &serial).await {
                Ok(_) => emit(format!("ACK pick {id} {serial}")),
                Err(e) if expected(&e) => {}
                Err(e) => return fail("pick", &id, &e),
            }
            continue;
        }
        if rec.random_left > 0 && (rec.custom_left == 0 || rng.random_bool(0.5)) {
            match engine.draw(&id, me, rng.random_bool(0.2)).await {
                Ok(d) => emit(format!(
                    "ACK draw {id} {} {}",
                    d.random_left,
                    d.batch.serials.len()
                )),
                Err(e) if expected(&e) => {
                    if rec.custom_left == 0 {
                        break;
                    }
                }
                Err(e) => return fail("draw", &id, &e),
            }
        } else if rec.custom_left > 0 {
            let k = rng.random_range(1..=rec.custom_left.min(3)) as usize;
            let mut plates: Vec<String> = Vec::new();
            while plates.len() < k {
                let p = if rng.random_bool(0.1) {
                    format!("B{:04}", rng.random_range(0..10_000))
                } else {
                    format!("A0{:03}", rng.random_range(0..RELEASE_SIZE))
                };
                if !plates.contains(&p) {
                    plates.push(p);
                }
            }
            match engine.custom_check(&id, me, plates).await {
                Ok(Check::Claimed(claim)) => {
                    let left = match engine.application(&id, me).await {
                        Ok(v) => v.record.custom_left,
                        Err(e) => return fail("read", &id, &e),
                    };
                    emit(format!("ACK custom {id} {left} claimed {}", claim.serial));
                    break;
                }
                Ok(Check::NoneAvailable { custom_left, .. }) => {
                    emit(format!("ACK custom {id} {custom_left} none"))
                }
                Err(e) if expected(&e) => {}
                Err(e) => return fail("custom", &id, &e),
            }
        } else {
            break;
        }
    }
    let view = match engine.application(&id, me).await {
        Ok(v) => v,
        Err(e) => return fail("read", &id, &e),
    };
    if view.record.state == AppState::Claimed {
        let serial = view.record.claim.unwrap().serial.to_string();
        settle(engine, &id, &serial, &mut rng, 0.2).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The parent

/// What the child was told about one application.
#[derive(Debug, Default, Clone)]
struct Acked {
    user: Option<String>,
    vin: Option<String>,
    random_left: Option<u32>,
    custom_left: Option<u32>,
    claim: Option<String>,
    registered: bool,
    voided: bool,
}

#[derive(Debug, Default)]
struct Model {
    apps: BTreeMap<String, Acked>,
    acks: usize,
}

impl Model {
    fn apply(&mut self, line: &str) {
        let words: Vec<&str> = line.split_whitespace().collect();
        self.acks += 1;
        let Some(&kind) = words.get(1) else {
            panic!("malformed line {line:?}");
        };
        if matches!(kind, "office" | "release" | "import") {
            return;
        }
        let app = self.apps.entry(words[2].to_string()).or_default();
        let claim = |app: &mut Acked, serial: &str| {
            if let Some(old) = &app.claim {
                assert_eq!(old, serial, "{line}: an application claimed twice");
            }
            app.claim = Some(serial.to_string());
        };
        match kind {
            "app" | "resume" => {
                app.user = Some(words[3].to_string());
                app.vin = Some(words[4].to_string());
            }
            "verify" | "pick" => {}
            "draw" => app.random_left = Some(words[3].parse().unwrap()),
            "claim" => claim(app, words[3]),
            "custom" => {
                app.custom_left = Some(words[3].parse().unwrap());
                if words[4] == "claimed" {
                    claim(app, words[5]);
                }
            }
            // The claim may have been durable without its acknowledgement reaching anyone.
            "register" => {
                claim(app, words[3]);
                app.registered = true;
            }
            "void" => {
                claim(app, words[3]);
                app.voided = true;
            }
            other => panic!("unknown acknowledgement {other:?} in {line:?}"),
        }
    }
}

/// Kills the child when the parent's test fails half-way.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs one child round; kills it with SIGKILL after `kill_after` acknowledgements (or when it is
/// done). Returns the lines it printed, complete lines only.
fn run_child(
    dir: &Path,
    round: u32,
    seed: u64,
    kill_after: usize,
    rng: &mut StdRng,
) -> (Vec<String>, bool) {
    let exe = std::env::current_exe().unwrap();
    let child = Command::new(exe)
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .env(ROUND_ENV, round.to_string())
        .env(SEED_ENV, seed.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut guard = ChildGuard(child);
    let stdout = guard.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                // A line cut off by the kill was never acknowledged to anyone.
                Ok(_) if !line.ends_with('\n') => break,
                Ok(_) => {
                    if tx.send(line.trim_end().to_string()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut lines = Vec::new();
    let mut acks = 0;
    let done = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(line) => line,
            Err(e) => {
                panic!("round {round}: the child went quiet ({e:?}) after {acks} acknowledgements")
            }
        };
        // Re-reading old applications is no progress: count only what changed something.
        let ack = line.starts_with("ACK ") && !line.starts_with("ACK resume ");
        let done = line == "DONE";
        lines.push(line);
        if ack {
            acks += 1;
        }
        if acks >= kill_after || done {
            break done;
        }
    };
    if rng.random_bool(0.5) {
        std::thread::sleep(Duration::from_micros(rng.random_range(0..3_000)));
    }
    guard.0.kill().unwrap();
    let status = guard.0.wait().unwrap();
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(9),
            "round {round}: the child was not killed: {status:?}"
        );
    }
    // Whatever it printed before it died was acknowledged too.
    lines.extend(rx.iter());
    reader.join().unwrap();
    (lines, done)
}

/// Reopens the folder in-process and checks the recovered state against what was acknowledged.
async fn verify(dir: PathBuf, model: Arc<Model>, round: u32) -> usize {
    let engine = open_engine(engine_config(
        &dir,
        Durability::Fsync,
        Arc::new(SystemClock),
        1,
    ))
    .await;
    let ctx = |what: &str| format!("round {round}: {what}");

    // Every acknowledged application, claim, registration and quota debit is there (I2, I9).
    for (text, acked) in &model.apps {
        let id: AppId = text.parse().unwrap();
        let view = engine
            .application(&id, Caller::Operator)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e:?}",
                    ctx(&format!("acknowledged application {id} is gone"))
                )
            });
        let rec = &view.record;
        assert!(
            view.batch.is_none() && view.candidates.is_none(),
            "{}",
            ctx(&format!("{id} holds after restart"))
        );
        if let Some(user) = &acked.user {
            assert_eq!(&rec.user, user, "{}", ctx(text));
            let mine = engine.user_applications(user).await.unwrap();
            assert!(
                mine.iter().any(|(i, _)| *i == id),
                "{}",
                ctx(&format!("{id} not in the user index"))
            );
        }
        if let Some(v) = &acked.vin {
            assert_eq!(&rec.vin, v, "{}", ctx(text));
            let by_vin = engine.vin_applications(v).await.unwrap();
            assert!(
                by_vin.iter().any(|(i, _)| *i == id),
                "{}",
                ctx(&format!("{id} not in the VIN index"))
            );
        }
        if let Some(left) = acked.random_left {
            assert!(
                rec.random_left <= left,
                "{}",
                ctx(&format!(
                    "{id} random_left {} > acknowledged {left}",
                    rec.random_left
                ))
            );
        }
        if let Some(left) = acked.custom_left {
            assert!(
                rec.custom_left <= left,
                "{}",
                ctx(&format!(
                    "{id} custom_left {} > acknowledged {left}",
                    rec.custom_left
                ))
            );
        }
        if let Some(serial) = &acked.claim {
            let claim = rec.claim.as_ref().unwrap_or_else(|| {
                panic!("{}", ctx(&format!("acknowledged claim of {id} is gone")))
            });
            assert_eq!(&claim.serial.to_string(), serial, "{}", ctx(text));
            let want: &[AppState] = if acked.registered {
                &[AppState::Issued]
            } else if acked.voided {
                &[AppState::Voided]
            } else {
                &[AppState::Claimed, AppState::Issued, AppState::Voided]
            };
            assert!(
                want.contains(&rec.state),
                "{}",
                ctx(&format!("{id} is {:?}, want one of {want:?}", rec.state))
            );
            if rec.state != AppState::Voided {
                let owner = engine
                    .serial_application(OFFICE, serial)
                    .await
                    .unwrap()
                    .map(|(i, _)| i);
                assert_eq!(
                    owner,
                    Some(id.clone()),
                    "{}",
                    ctx(&format!("owner of {serial}"))
                );
            }
        }
    }

    // No number is claimed or issued twice; number records and applications agree (I1, I9).
    let snapshot = engine.store().office(OFFICE).unwrap().load().unwrap();
    let mut taken: HashMap<String, u64> = HashMap::new();
    let (mut claimed, mut issued) = (0u64, 0u64);
    for rec in &snapshot.apps {
        if matches!(rec.state, AppState::Claimed | AppState::Issued) {
            let serial = rec.claim.as_ref().unwrap().serial.to_string();
            if let Some(other) = taken.insert(serial.clone(), rec.seq) {
                panic!(
                    "{}",
                    ctx(&format!(
                        "{serial} is claimed by applications {other} and {}",
                        rec.seq
                    ))
                );
            }
            if rec.state == AppState::Claimed {
                claimed += 1;
            } else {
                issued += 1;
            }
        }
        assert!(
            rec.random_left <= 5 && rec.custom_left <= 20,
            "{}",
            ctx("quota out of range")
        );
    }
    for (_, serial, state) in &snapshot.numbers {
        let (app, want) = match state {
            NumberState::Claimed { app } => (*app, AppState::Claimed),
            NumberState::Issued { app } => (*app, AppState::Issued),
            NumberState::Withdrawn => panic!("{}", ctx("nothing was withdrawn")),
        };
        let rec = snapshot.apps.iter().find(|r| r.seq == app).unwrap();
        assert_eq!(
            rec.state,
            want,
            "{}",
            ctx(&format!("number {serial} vs application {app}"))
        );
        assert_eq!(
            taken.get(&serial.to_string()),
            Some(&app),
            "{}",
            ctx(&format!("number {serial}"))
        );
    }
    assert_eq!(
        snapshot.numbers.len(),
        taken.len(),
        "{}",
        ctx("number records")
    );

    // No hold survived; every number of the release is in exactly one state.
    let stats = engine.stats(OFFICE).await.unwrap();
    let small = class_stats(&stats, "small");
    assert_eq!(
        small.counts.held,
        0,
        "{}",
        ctx("holds survived the restart")
    );
    assert_eq!(
        (small.counts.claimed, small.counts.issued),
        (claimed, issued),
        "{}",
        ctx("counts")
    );
    assert_eq!(small.releases.len(), 1, "{}", ctx("releases"));
    for r in &small.releases {
        assert_eq!(r.total, RELEASE_SIZE);
        assert_eq!(r.counts.total(), r.total, "{}", ctx("conservation"));
        assert_eq!(
            r.counts.pending + r.counts.withdrawn,
            0,
            "{}",
            ctx("release states")
        );
    }
    engine.recovery().applications
}

#[test]
fn kill9_keeps_every_acknowledged_result() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let seed: u64 = std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_c0de);
    let rounds: u32 = std::env::var(ROUNDS_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut model = Model::default();
    for round in 0..rounds {
        let kill_after = rng.random_range(10..=300);
        let (lines, done) = run_child(dir.path(), round, rng.random(), kill_after, &mut rng);
        let fails: Vec<&String> = lines.iter().filter(|l| l.starts_with("FAIL")).collect();
        assert!(
            fails.is_empty(),
            "round {round}: the child saw unexpected refusals: {fails:?}"
        );
        let before = model.acks;
        for line in lines.iter().filter(|l| l.starts_with("ACK ")) {
            model.apply(line);
        }
        let shared = Arc::new(std::mem::take(&mut model));
        let apps = {
            let (dir, shared) = (dir.path().to_path_buf(), shared.clone());
            in_own_system(move || verify(dir, shared, round))
        };
        model = Arc::try_unwrap(shared).unwrap();
        eprintln!(
            "crash round {round} (seed {seed}): killed after {} acknowledgements{}, {} applications recovered, {:.1} s so far",
            model.acks - before,
            if done { " (child had finished)" } else { "" },
            apps,
            started.elapsed().as_secs_f64()
        );
    }
    let claims = model.apps.values().filter(|a| a.claim.is_some()).count();
    let draws = model
        .apps
        .values()
        .filter(|a| a.random_left.is_some())
        .count();
    let checks = model
        .apps
        .values()
        .filter(|a| a.custom_left.is_some())
        .count();
    eprintln!("crash: {} applications, {claims} with a claim, {draws} with draws, {checks} with custom checks acknowledged", model.apps.len());
    assert!(
        claims > 0 && draws > 0 && checks > 0,
        "the child acknowledged too little: the test tested nothing"
    );
}
