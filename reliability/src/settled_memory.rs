//! The `memory` campaign's second part (issue 18, bounded state): an office's memory follows
//! its live applications, not its history.
//!
//! An in-process engine (durable in a temporary folder) serves one office; each round opens
//! [`Plan::per_round`] applications and settles all but a few: issued (a custom check claims a
//! number, the office registers it), voided (claimed, then voided), exhausted (the one custom
//! check finds nothing, no draw left); one in [`LIVE_EVERY`] stays claimed. After each round the
//! office is asked how many applications it keeps in memory
//! ([`Engine::office_resident_applications`]): it must be the live ones, whatever the rounds
//! before settled, and a settled application of the first round must still read back as it
//! did when it settled. The process's RSS is printed beside it (not judged: sled's page cache
//! grows with the data it holds).

use std::time::{Duration, Instant};

use platepool_engine::vin::Vin;
use platepool_engine::{
    AppId, AppView, ApplicationRequest, Caller, CertificateRow, Check, Durability, Engine,
    EngineConfig, Notice, OfficeConfig, OfficeRules, Pattern, Refusal, ReleaseSource,
};

use crate::{thousands, Mode, Outcome};

const OFFICE: &str = "settled";
const WHO: &str = "operator:memory";
/// One application in this many stays claimed (live).
const LIVE_EVERY: u32 = 10;

#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub rounds: u32,
    pub per_round: u32,
}

impl Plan {
    pub fn for_mode(mode: Mode) -> Plan {
        match mode {
            Mode::Short => Plan {
                rounds: 4,
                per_round: 200,
            },
            Mode::Long => Plan {
                rounds: 8,
                per_round: 2_000,
            },
        }
    }
}

/// How an application ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Issued,
    Voided,
    Exhausted,
    Live,
}

fn end_of(k: u32) -> End {
    if k % LIVE_EVERY == LIVE_EVERY - 1 {
        return End::Live;
    }
    match k % 3 {
        0 => End::Issued,
        1 => End::Voided,
        _ => End::Exhausted,
    }
}

/// One round's figures.
#[derive(Debug, Clone, Copy)]
struct Round {
    settled: u64,
    live: u64,
    resident: usize,
    rss: u64,
    took: Duration,
}

fn vin(k: u32) -> Result<String, String> {
    let raw = format!("LSM{k:05}X12345678");
    Vin::with_check_digit(&raw)
        .map(|v| v.into_string())
        .ok_or_else(|| format!("no check digit makes {raw} a VIN"))
}

/// The number application `k` claims: one of its own, so that no two contend.
fn plate(k: u32) -> String {
    let prefix = if k < 10_000 { 'A' } else { 'C' };
    format!("{prefix}{:04}", k % 10_000)
}

fn office() -> OfficeConfig {
    OfficeConfig {
        name: "settled".into(),
        prefix: "粤K".into(),
        classes: vec!["small".into()],
        rules: OfficeRules {
            custom_quota: 1,
            random_quota: 0,
            custom_min_interval_ms: 0,
            ..OfficeRules::default()
        },
        notice: Notice {
            version: "v1".into(),
            text: "notice".into(),
        },
    }
}

async fn setup(engine: &Engine) -> Result<(), String> {
    let e = |e: Refusal| e.to_string();
    engine.put_office(OFFICE, office(), WHO).await.map_err(e)?;
    let patterns = ["A####", "C####"]
        .iter()
        .map(|p| Pattern::parse(p).map_err(|e| format!("{e:?}")))
        .collect::<Result<Vec<_>, String>>()?;
    let release = platepool_engine::NewRelease {
        class: "small".into(),
        label: String::new(),
        opens_at_ms: engine.now_ms().saturating_sub(10_000),
        custom_from_ms: None,
        source: ReleaseSource::Patterns(patterns),
    };
    engine.add_release(OFFICE, release, WHO).await.map_err(e)?;
    Ok(())
}

/// Opens application `k` and takes it to its end.
async fn live_out(engine: &Engine, k: u32) -> Result<(AppId, End), String> {
    let e = |e: Refusal| format!("application {k}: {e}");
    let user = format!("mem_{k}");
    let who = Caller::Citizen(&user);
    let id = engine
        .create_application(ApplicationRequest {
            office: OFFICE.into(),
            user: user.clone(),
            phone: format!("137{k:08}"),
            vin: vin(k)?,
            voucher: format!("V{k}"),
            notice_version: "v1".into(),
        })
        .await
        .map_err(e)?;
    engine.verify_identity(&id, who).await.map_err(e)?;
    let end = end_of(k);
    let wanted = match end {
        End::Exhausted => "B0000".to_string(),
        _ => plate(k),
    };
    let check = engine
        .custom_check(&id, who, vec![wanted.clone()])
        .await
        .map_err(e)?;
    match (end, check) {
        (End::Exhausted, Check::NoneAvailable { .. }) | (End::Live, Check::Claimed(_)) => {}
        (End::Issued, Check::Claimed(_)) => {
            engine.register(OFFICE, &wanted, WHO).await.map_err(e)?;
        }
        (End::Voided, Check::Claimed(_)) => {
            engine
                .void(OFFICE, &wanted, "asked", WHO)
                .await
                .map_err(e)?;
        }
        (end, check) => return Err(format!("application {k} ({end:?}): {check:?}")),
    }
    Ok((id, end))
}

async fn round(engine: &Engine, plan: &Plan, r: u32) -> Result<Vec<(AppId, End)>, String> {
    let first = r * plan.per_round;
    let rows = (first..first + plan.per_round)
        .map(|k| {
            Ok(CertificateRow {
                vin: vin(k)?,
                voucher: format!("V{k}"),
                class: "small".into(),
                energy: "fuel".into(),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    engine
        .import_certificates(rows, WHO)
        .await
        .map_err(|e| e.to_string())?;
    let mut made = Vec::with_capacity(plan.per_round as usize);
    for k in first..first + plan.per_round {
        made.push(live_out(engine, k).await?);
    }
    Ok(made)
}

async fn run(plan: Plan) -> Result<(Vec<Round>, Vec<String>), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut config = EngineConfig::new(dir.path());
    config.durability = Durability::Flush;
    let engine = Engine::open(config).await.map_err(|e| e.to_string())?;
    setup(&engine).await?;
    let mut rounds = Vec::new();
    let mut violations = Vec::new();
    let (mut settled, mut live) = (0u64, 0u64);
    let mut first_settled: Option<(AppId, AppView)> = None;
    for r in 0..plan.rounds {
        let started = Instant::now();
        for (id, end) in round(&engine, &plan, r).await? {
            if end == End::Live {
                live += 1;
                continue;
            }
            settled += 1;
            if first_settled.is_none() {
                let view = engine
                    .application(&id, Caller::Operator)
                    .await
                    .map_err(|e| e.to_string())?;
                first_settled = Some((id, view));
            }
        }
        let resident = engine
            .office_resident_applications(OFFICE)
            .await
            .map_err(|e| e.to_string())?;
        if resident as u64 != live {
            violations.push(format!(
                "after round {r} ({settled} settled) the office keeps {resident} applications in \
                 memory, {live} are live"
            ));
        }
        if let Some((id, then)) = &first_settled {
            let now = engine.application(id, Caller::Operator).await;
            if now.as_ref() != Ok(then) {
                violations.push(format!("after round {r}, {id} reads {now:?}, not {then:?}"));
            }
        }
        rounds.push(Round {
            settled,
            live,
            resident,
            rss: crate::server::rss_bytes(std::process::id()).unwrap_or(0),
            took: started.elapsed(),
        });
    }
    engine.shutdown().await.map_err(|e| e.to_string())?;
    Ok((rounds, violations))
}

/// Runs the part on an actix system of its own and reports it into `out`.
pub fn phase(mode: Mode, out: &mut Outcome) {
    let plan = Plan::for_mode(mode);
    out.tried(format!(
        "in-process engine, one office: {} rounds of {} applications, each issued, voided or \
         exhausted but one in {LIVE_EVERY} left claimed; after each round the office's resident \
         applications counted (Engine::office_resident_applications) and a first-round settled \
         application read back",
        plan.rounds, plan.per_round
    ));
    let result = std::thread::spawn(move || {
        let system = actix_rt::System::new();
        let result = system.block_on(run(plan));
        system.block_on(async { actix_rt::System::current().stop() });
        let _ = system.run();
        result
    })
    .join()
    .unwrap_or_else(|_| Err("the settled-applications part panicked".into()));
    let (rounds, violations) = match result {
        Ok(r) => r,
        Err(e) => return out.violation(e),
    };
    let curve: Vec<String> = rounds
        .iter()
        .map(|r| {
            format!(
                "{} settled: {} in memory ({} live), RSS {:.1} MiB, {:.1} s",
                thousands(r.settled),
                r.resident,
                r.live,
                r.rss as f64 / 1_048_576.0,
                r.took.as_secs_f64()
            )
        })
        .collect();
    out.figure(
        "settled applications: resident per round (RSS of the whole process)",
        curve.join(" · "),
    );
    let last = rounds.last().map_or(0, |r| r.settled);
    out.check(
        violations.is_empty() && !rounds.is_empty(),
        format!(
            "the office keeps only its live applications in memory after {} settled, and a \
             settled one reads back unchanged",
            thousands(last)
        ),
        violations.join("; "),
    );
}
