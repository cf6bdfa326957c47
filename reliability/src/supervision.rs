//! Campaign 8: office supervision, in process (ARCHITECTURE.md, "Health").
//!
//! An office's actor panics (a fault no input can cause through the API: a call that panics is
//! sent to its actor directly), or its writer is marked failed (the flag a failed write or
//! fsync sets). Each time: the office is named unhealthy, the engine restarts it from its
//! durable state after its back-off, every acknowledged claim is there, no hold survived, and
//! the office accepts writes again (the next round's claim). Faults come in a row, so the
//! back-off doubles from 0.5 s; the figures show each restart's time.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use platepool_engine::actor::Call;
use platepool_engine::pool::OfficePool;
use platepool_engine::vin::Vin;
use platepool_engine::{
    AppId, AppState, ApplicationRequest, Caller, CertificateRow, Durability, Engine, EngineConfig,
    Notice, OfficeConfig, OfficeRules, Pattern, Refusal, ReleaseSource,
};

use crate::{Mode, Outcome};

const OFFICE: &str = "sup";
const WHO: &str = "operator:reliability";
/// The message of the panics this campaign injects.
const INJECTED: &str = "an injected fault inside the office";

pub fn campaign(mode: Mode) -> Outcome {
    let started = Instant::now();
    let mut out = Outcome::new(
        "supervision",
        "office supervision: failed and panicked offices restarted from their durable state",
    );
    let rounds = match mode {
        Mode::Short => 3,
        Mode::Long => 8,
    };
    // The injected panics are expected: keep their messages and backtraces out of the output.
    let previous = std::sync::Arc::new(std::panic::take_hook());
    let chained = previous.clone();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
        let injected = message.is_some_and(|m| m.contains(INJECTED));
        if !injected {
            chained(info);
        }
    }));
    let result = std::thread::spawn(move || {
        let system = actix_rt::System::new();
        let result = system.block_on(run(rounds));
        system.block_on(async { actix_rt::System::current().stop() });
        let _ = system.run();
        result
    })
    .join()
    .unwrap_or_else(|_| Err("the campaign's thread panicked".into()));
    let _ = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| previous(info)));
    match result {
        Ok(o) => {
            let (tried, held, violations, figures) = o;
            out.tried.extend(tried);
            out.held.extend(held);
            out.violations.extend(violations);
            out.figures.extend(figures);
        }
        Err(e) => out.violation(e),
    }
    out.elapsed = started.elapsed();
    out
}

type Parts = (Vec<String>, Vec<String>, Vec<String>, Vec<crate::Figure>);

fn vin(n: usize) -> Result<String, String> {
    let raw = format!("LSVSU{n:03}X12345678");
    Vin::with_check_digit(&raw)
        .map(|v| v.into_string())
        .ok_or_else(|| format!("no check digit makes {raw} a VIN"))
}

async fn setup(engine: &Engine, people: usize) -> Result<(), String> {
    let config = OfficeConfig {
        name: "supervision".into(),
        prefix: "粤K".into(),
        classes: vec!["small".into()],
        rules: OfficeRules::default(),
        notice: Notice {
            version: "v1".into(),
            text: "notice".into(),
        },
    };
    let e = |e: Refusal| e.to_string();
    engine.put_office(OFFICE, config, WHO).await.map_err(e)?;
    let release = platepool_engine::NewRelease {
        class: "small".into(),
        label: String::new(),
        opens_at_ms: engine.now_ms().saturating_sub(10_000),
        custom_from_ms: None,
        source: ReleaseSource::Patterns(vec![Pattern::parse("A0###").map_err(|e| e.to_string())?]),
    };
    engine.add_release(OFFICE, release, WHO).await.map_err(e)?;
    let rows = (0..people)
        .map(|n| {
            Ok(CertificateRow {
                vin: vin(n)?,
                voucher: format!("V{n}"),
                class: "small".into(),
                energy: "fuel".into(),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    engine.import_certificates(rows, WHO).await.map_err(e)?;
    Ok(())
}

/// A citizen's application, identity verified.
async fn applicant(engine: &Engine, n: usize) -> Result<AppId, String> {
    let user = format!("sup_{n}");
    let id = engine
        .create_application(ApplicationRequest {
            office: OFFICE.into(),
            user: user.clone(),
            phone: format!("139{n:08}"),
            vin: vin(n)?,
            voucher: format!("V{n}"),
            notice_version: "v1".into(),
        })
        .await
        .map_err(|e| e.to_string())?;
    engine
        .verify_identity(&id, Caller::Citizen(&user))
        .await
        .map_err(|e| e.to_string())?;
    Ok(id)
}

async fn claim(engine: &Engine, n: usize) -> Result<(AppId, String), String> {
    let id = applicant(engine, n).await?;
    let user = format!("sup_{n}");
    let who = Caller::Citizen(&user);
    let e = |e: Refusal| e.to_string();
    let draw = engine.draw(&id, who, false).await.map_err(e)?;
    let serial = draw
        .batch
        .serials
        .first()
        .ok_or("an empty batch")?
        .to_string();
    engine.pick_candidate(&id, who, &serial).await.map_err(e)?;
    let claim = engine.claim(&id, who, &serial).await.map_err(e)?;
    Ok((id, claim.serial.to_string()))
}

async fn run(rounds: usize) -> Result<Parts, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut config = EngineConfig::new(dir.path());
    config.durability = Durability::Flush;
    let engine = Engine::open(config).await.map_err(|e| e.to_string())?;
    setup(&engine, 2 * rounds + 1).await?;
    let (mut tried, mut held, mut violations, mut figures) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    tried.push(format!("{rounds} faults in a row (actor panics and failed writers, alternately), each with acknowledged claims and a live batch"));
    let mut claims: Vec<(AppId, String)> = Vec::new();
    let mut worst = Duration::ZERO;
    for round in 0..rounds {
        claims.push(claim(&engine, 2 * round).await?);
        let holder = applicant(&engine, 2 * round + 1).await?;
        let holder_user = format!("sup_{}", 2 * round + 1);
        engine
            .draw(&holder, Caller::Citizen(&holder_user), false)
            .await
            .map_err(|e| e.to_string())?;
        let handle = engine.office_handle(OFFICE).map_err(|e| e.to_string())?;
        let fault = if round % 2 == 0 {
            let answer = handle
                .call(Call::write(
                    |_: &mut OfficePool, _, _| -> Result<(), Refusal> { panic!("{INJECTED}") },
                ))
                .await;
            if !matches!(answer, Err(Refusal::Unavailable(_))) {
                violations.push(format!(
                    "round {round}: a panicking call answered {answer:?}"
                ));
            }
            "actor panic"
        } else {
            handle.health.failed.store(true, Ordering::SeqCst);
            "failed writer"
        };
        let faulted = Instant::now();
        let mut named = false;
        let back = loop {
            let c = engine.office_conditions().pop().ok_or("no office")?;
            named |= !c.healthy;
            if c.healthy && c.restarts == round as u64 + 1 {
                break Some(faulted.elapsed());
            }
            if faulted.elapsed() > Duration::from_secs(60) {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let Some(back) = back else {
            violations.push(format!(
                "round {round} ({fault}): the office did not come back within 60 s"
            ));
            break;
        };
        worst = worst.max(back);
        figures.push(crate::Figure {
            what: format!("round {round} ({fault}): back after"),
            value: format!("{} ms", back.as_millis()),
        });
        if !named {
            violations.push(format!(
                "round {round}: the office was never named unhealthy"
            ));
        }
        let mut lost = Vec::new();
        for (id, serial) in &claims {
            let view = engine
                .application(id, Caller::Operator)
                .await
                .map_err(|e| e.to_string())?;
            let kept = view.record.state == AppState::Claimed
                && view
                    .record
                    .claim
                    .as_ref()
                    .is_some_and(|c| c.serial.to_string() == *serial);
            if !kept {
                lost.push(id.to_string());
            }
        }
        let stats = engine.stats(OFFICE).await.map_err(|e| e.to_string())?;
        let counts = stats.first().map(|s| s.counts).ok_or("no class")?;
        if !lost.is_empty() {
            violations.push(format!("round {round}: acknowledged claims lost: {lost:?}"));
        }
        if counts.held != 0 || counts.claimed != claims.len() as u64 {
            violations.push(format!(
                "round {round}: after the restart {} held and {} claimed, 0 and {} expected",
                counts.held,
                counts.claimed,
                claims.len()
            ));
        }
    }
    if violations.is_empty() {
        // The office restarted last accepts writes too.
        claim(&engine, 2 * rounds).await?;
        held.push(
            "each fault: the office named unhealthy, then restarted from its durable state".into(),
        );
        held.push(
            "every acknowledged claim is there after each restart; no hold survives (I9)".into(),
        );
        held.push("the restarted office accepts writes (the next round's claim)".into());
    }
    figures.push(crate::Figure {
        what: "longest time back (back-off doubling from 0.5 s)".into(),
        value: format!("{} ms", worst.as_millis()),
    });
    Ok((tried, held, violations, figures))
}
