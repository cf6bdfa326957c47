//! Numbers returning from expired holds (SPEC R4.14): who gets them, bots or people?
//!
//! Hoarders draw every number of a small release one by one and never claim, so the numbers come
//! back one at a time as their holds expire. Contenders poll for them with draws: bots as fast as
//! the office lets them (every 50 ms, and at the exact end of `retry_after_ms` when told
//! `too_soon`), people like someone pressing 换一批 every 1 to 1.5 s. The first draw after a
//! number comes back takes it; its contender claims it and a fresh contender of the same kind
//! takes its place, so the field stays the same size. Run through the real engine (office actor,
//! pool, store) on a virtual clock that jumps from one draw to the next, so a round of many
//! seconds of office time takes milliseconds and the same seed gives the same answer.
//!
//! Run with the office's `random_min_interval_ms` at its default (1,000 ms) and at 0: with the
//! rule the bots' share of the returning numbers is what their draw rate — one a second, a
//! person's fastest — entitles them to; without it they take nearly all.

use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use platepool_engine::actor::Clock;
use platepool_engine::vin::Vin;
use platepool_engine::{
    AppId, ApplicationRequest, Caller, CertificateRow, Durability, Engine, EngineConfig,
    NewRelease, Notice, OfficeConfig, OfficeRules, Pattern, Refusal, ReleaseSource,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::Mode;

/// A bot's pause between two draws when the office does not stop it.
pub const BOT_POLL_MS: u64 = 50;
/// A person's pause between two draws: pressing 换一批 again after a look.
pub const PERSON_POLL_MS: (u64, u64) = (1_000, 1_500);
/// Numbers the hoarders hold; they come back [`RETURN_GAP_MS`] apart on average (at random
/// instants: numbers coming back on a beat would let a bot's one-a-second pace lock onto it or
/// miss it for good).
pub const NUMBERS: u32 = 40;
pub const RETURN_GAP_MS: u64 = 250;
/// Life of a hoarder's hold: longer than the hoarders take to hold every number, so that the
/// contenders, who start once they have, find the pool empty until the first comes back.
const HOLD_MS: u64 = NUMBERS as u64 * 2 * RETURN_GAP_MS + 5_000;
pub const BOTS: u32 = 10;
pub const PEOPLE: u32 = 30;
const OP: &str = "operator:reliability";

/// Rounds per configuration.
pub fn rounds(mode: Mode) -> u32 {
    match mode {
        Mode::Short => 3,
        Mode::Long => 25,
    }
}

/// A clock the driver sets: office time jumps to each next draw.
#[derive(Debug)]
struct VirtualClock(AtomicU64);

impl Clock for VirtualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Hoarder,
    Bot,
    Person,
}

/// Who took the returning numbers under one configuration, over every round.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    pub bot_wins: u64,
    pub person_wins: u64,
    /// Draws sent by bots and by people (refused ones included).
    pub bot_draws: u64,
    pub person_draws: u64,
    /// Draws refused with `too_soon`.
    pub too_soon: u64,
}

impl Tally {
    pub fn wins(&self) -> u64 {
        self.bot_wins + self.person_wins
    }

    /// The bots' share of the returning numbers.
    pub fn bot_share(&self) -> f64 {
        self.bot_wins as f64 / self.wins().max(1) as f64
    }

    /// How many times more numbers a bot got than a person.
    pub fn advantage(&self) -> f64 {
        let bot = self.bot_wins as f64 / BOTS as f64;
        let person = self.person_wins as f64 / PEOPLE as f64;
        if person == 0.0 {
            f64::INFINITY
        } else {
            bot / person
        }
    }

    /// Three binomial standard errors of [`Tally::bot_share`] around `p`.
    pub fn margin(&self, p: f64) -> f64 {
        3.0 * (p * (1.0 - p) / self.wins().max(1) as f64).sqrt()
    }
}

/// The bots' share if each took numbers in proportion to how often it may draw: a bot once per
/// interval, a person once per mean pause (what the rule promises: a script gains nothing over
/// a person pressing as fast as the office lets anyone).
pub fn paced_share(interval_ms: u64) -> f64 {
    let bot_rate = 1.0 / interval_ms.max(BOT_POLL_MS) as f64;
    let person_rate = 2.0 / (PERSON_POLL_MS.0 + PERSON_POLL_MS.1) as f64;
    let bots = BOTS as f64 * bot_rate;
    bots / (bots + PEOPLE as f64 * person_rate)
}

fn vin(n: u32) -> String {
    Vin::with_check_digit(&format!("LSVRTAAAX{n:05}123"))
        .map(Vin::into_string)
        .unwrap_or_default()
}

fn office(interval_ms: u64) -> OfficeConfig {
    OfficeConfig {
        name: "returning numbers".into(),
        prefix: "粤K".into(),
        classes: vec!["small".into()],
        rules: OfficeRules {
            custom_quota: 0,
            random_batch: 1,
            random_ttl_ms: HOLD_MS,
            candidate_ttl_ms: HOLD_MS,
            opening_window_ms: 0,
            random_min_interval_ms: interval_ms,
            ..OfficeRules::default()
        },
        notice: Notice {
            version: "v1".into(),
            text: "terms".into(),
        },
    }
}

/// One round's world: the engine, the office and a supply of verified applications.
struct Round<'a> {
    engine: &'a Engine,
    office: String,
    next_vehicle: &'a mut u32,
}

impl Round<'_> {
    async fn applicant(&mut self, kind: Kind) -> Result<Contender, String> {
        let n = *self.next_vehicle;
        *self.next_vehicle += 1;
        let user = format!("r{n}");
        let row = CertificateRow {
            vin: vin(n),
            voucher: format!("RT{n:07}"),
            class: "small".into(),
            energy: "fuel".into(),
        };
        self.engine
            .import_certificates(vec![row], OP)
            .await
            .map_err(|e| e.to_string())?;
        let app = self
            .engine
            .create_application(ApplicationRequest {
                office: self.office.clone(),
                user: user.clone(),
                phone: format!("139{n:08}"),
                vin: vin(n),
                voucher: format!("RT{n:07}"),
                notice_version: "v1".into(),
            })
            .await
            .map_err(|e| e.to_string())?;
        self.engine
            .verify_identity(&app, Caller::Citizen(&user))
            .await
            .map_err(|e| e.to_string())?;
        Ok(Contender { kind, app, user })
    }
}

/// The next draw of one contender: (when, order of creation) first, smallest on top.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Turn {
    at: std::cmp::Reverse<(u64, u64)>,
    slot: usize,
}

struct Contender {
    kind: Kind,
    app: AppId,
    user: String,
}

/// Runs one round on a fresh office and adds who took what to `tally`.
#[allow(clippy::too_many_lines)]
async fn round(
    engine: &Engine,
    clock: &VirtualClock,
    office_id: &str,
    interval_ms: u64,
    rng: &mut StdRng,
    next_vehicle: &mut u32,
    tally: &mut Tally,
) -> Result<(), String> {
    let t0 = clock.now_ms();
    engine
        .put_office(office_id, office(interval_ms), OP)
        .await
        .map_err(|e| e.to_string())?;
    let pattern = Pattern::parse("A00##").map_err(|e| format!("{e:?}"))?;
    let serials: Vec<_> = pattern.iter().take(NUMBERS as usize).collect();
    engine
        .add_release(
            office_id,
            NewRelease {
                class: "small".into(),
                label: "returning".into(),
                opens_at_ms: t0,
                custom_from_ms: None,
                source: ReleaseSource::Serials(serials),
            },
            OP,
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut world = Round {
        engine,
        office: office_id.to_string(),
        next_vehicle,
    };
    let mut contenders: Vec<Contender> = Vec::new();
    let mut turns = BinaryHeap::new();
    let mut order = 0u64;
    let mut push = |turns: &mut BinaryHeap<Turn>, at: u64, slot: usize| {
        order += 1;
        turns.push(Turn {
            at: std::cmp::Reverse((at, order)),
            slot,
        });
    };
    let kinds = std::iter::repeat_n(Kind::Hoarder, NUMBERS as usize)
        .chain(std::iter::repeat_n(Kind::Bot, BOTS as usize))
        .chain(std::iter::repeat_n(Kind::Person, PEOPLE as usize));
    let mut hoarding = t0;
    let hoards: Vec<u64> = (0..NUMBERS)
        .map(|_| {
            hoarding += rng.random_range(0..=2 * RETURN_GAP_MS);
            hoarding
        })
        .collect();
    let start = hoarding + 1;
    for (i, kind) in kinds.enumerate() {
        contenders.push(world.applicant(kind).await?);
        let at = match kind {
            Kind::Hoarder => hoards[i],
            // Spread over a second, as a bot army would be, so the bots' pace does not lock
            // onto the instants the numbers come back.
            Kind::Bot => start + rng.random_range(0..PERSON_POLL_MS.0),
            Kind::Person => start + rng.random_range(0..PERSON_POLL_MS.1),
        };
        push(&mut turns, at, i);
    }
    let end = start + HOLD_MS + 10 * PERSON_POLL_MS.1;
    let mut won = 0u32;
    while let Some(Turn {
        at: std::cmp::Reverse((at, _)),
        slot,
    }) = turns.pop()
    {
        if at > end || won == NUMBERS {
            break;
        }
        clock.0.store(at, Ordering::SeqCst);
        let Contender { kind, app, user } = &contenders[slot];
        let (kind, app, user) = (*kind, app.clone(), user.clone());
        let me = Caller::Citizen(&user);
        let drawn = engine.draw(&app, me, false).await;
        match kind {
            Kind::Bot => tally.bot_draws += 1,
            Kind::Person => tally.person_draws += 1,
            Kind::Hoarder => {}
        }
        let pause = match kind {
            Kind::Bot => BOT_POLL_MS,
            _ => rng.random_range(PERSON_POLL_MS.0..=PERSON_POLL_MS.1),
        };
        match drawn {
            Ok(draw) if kind == Kind::Hoarder => {
                if draw.batch.serials.len() != 1 {
                    return Err(format!("a hoarder drew {:?}", draw.batch.serials));
                }
            }
            Ok(draw) => {
                let serial = draw
                    .batch
                    .serials
                    .first()
                    .ok_or("a draw with an empty batch")?
                    .to_string();
                engine
                    .pick_candidate(&app, me, &serial)
                    .await
                    .map_err(|e| format!("pick {serial}: {e}"))?;
                engine
                    .claim(&app, me, &serial)
                    .await
                    .map_err(|e| format!("claim {serial}: {e}"))?;
                won += 1;
                match kind {
                    Kind::Bot => tally.bot_wins += 1,
                    _ => tally.person_wins += 1,
                }
                // A fresh contender of the same kind takes the winner's place.
                contenders[slot] = world.applicant(kind).await?;
                push(&mut turns, at + pause, slot);
            }
            Err(Refusal::NotAvailable) if kind != Kind::Hoarder => {
                push(&mut turns, at + pause, slot)
            }
            Err(Refusal::TooSoon { retry_after_ms }) if kind != Kind::Hoarder => {
                tally.too_soon += 1;
                push(&mut turns, at + pause.max(retry_after_ms), slot);
            }
            Err(e) => return Err(format!("{kind:?} draw: {e}")),
        }
    }
    if won != NUMBERS {
        return Err(format!(
            "only {won} of {NUMBERS} returning numbers were claimed"
        ));
    }
    Ok(())
}

/// Runs `rounds` rounds with the office's interval at `interval_ms`.
pub fn measure(interval_ms: u64, rounds: u32, seed: u64) -> Result<Tally, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().to_path_buf();
    actix_rt::System::new().block_on(async move {
        let start = platepool_engine::calendar::now_ms();
        let clock = Arc::new(VirtualClock(AtomicU64::new(start)));
        let mut config = EngineConfig::new(&path);
        config.durability = Durability::None;
        config.seed = Some(seed);
        config.clock = clock.clone();
        config.shed_queue_delay = None;
        let engine = Engine::open(config).await.map_err(|e| e.to_string())?;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut tally = Tally::default();
        let mut next_vehicle = 1u32;
        for r in 0..rounds {
            let now = clock.now_ms();
            clock.0.store(now + 60_000, Ordering::SeqCst);
            round(
                &engine,
                &clock,
                &format!("ret{r}"),
                interval_ms,
                &mut rng,
                &mut next_vehicle,
                &mut tally,
            )
            .await?;
        }
        engine.shutdown().await.map_err(|e| e.to_string())?;
        Ok(tally)
    })
}

fn line(t: &Tally) -> String {
    format!(
        "bots took {} of {} returning numbers ({:.1} %; they are {:.1} % of the contenders), {:.2}× a person's each; {} bot draws, {} people's, {} refused too_soon",
        t.bot_wins,
        t.wins(),
        t.bot_share() * 100.0,
        BOTS as f64 * 100.0 / (BOTS + PEOPLE) as f64,
        t.advantage(),
        t.bot_draws,
        t.person_draws,
        t.too_soon
    )
}

/// Measures both configurations and adds what was tried, seen and judged to `out`.
pub fn judge(out: &mut crate::Outcome, mode: Mode) {
    let n = rounds(mode);
    let interval = platepool_engine::OfficeRules::default().random_min_interval_ms;
    let (paced, free) = match (measure(interval, n, 11), measure(0, n, 11)) {
        (Ok(p), Ok(f)) => (p, f),
        (Err(e), _) | (_, Err(e)) => {
            out.violation(format!("returning numbers: {e}"));
            return;
        }
    };
    out.tried(format!(
        "numbers returning from expired holds (R4.14): {n} rounds of {NUMBERS} numbers coming back from hoarders' holds at random instants {RETURN_GAP_MS} ms apart on average, {BOTS} bots polling every {BOT_POLL_MS} ms (and at the end of every retry_after_ms) against {PEOPLE} people pressing 换一批 every {}–{} ms; each winner claims and is replaced; through the engine on a virtual clock, with random_min_interval_ms = {interval} and = 0",
        PERSON_POLL_MS.0, PERSON_POLL_MS.1
    ));
    out.figure(
        format!("returning numbers, random_min_interval_ms = {interval}"),
        line(&paced),
    );
    out.figure("returning numbers, random_min_interval_ms = 0", line(&free));
    let expected = paced_share(interval);
    let bound = expected + paced.margin(expected);
    out.check(
        paced.bot_share() <= bound,
        format!(
            "with the interval, bots polling took no more of the returning numbers than one draw a second entitles anyone to ({:.1} % ≤ {:.1} % + 3 SE = {:.1} %)",
            paced.bot_share() * 100.0,
            expected * 100.0,
            bound * 100.0
        ),
        format!(
            "with the interval, bots still took {:.1} % of the returning numbers (bound {:.1} %)",
            paced.bot_share() * 100.0,
            bound * 100.0
        ),
    );
    out.check(
        free.bot_share() > bound,
        format!(
            "without it, polling paid: bots took {:.1} % (the comparison can tell the rule's effect)",
            free.bot_share() * 100.0
        ),
        format!(
            "without the interval bots took only {:.1} %: the comparison cannot tell the rule's effect",
            free.bot_share() * 100.0
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_takes_the_bots_polling_advantage_away() {
        let paced = measure(1_000, 1, 3).expect("paced");
        let free = measure(0, 1, 3).expect("free");
        assert_eq!(paced.wins(), NUMBERS as u64);
        assert!(paced.too_soon > 0, "bots met the interval: {paced:?}");
        assert_eq!(free.too_soon, 0);
        assert!(
            free.bot_share() > paced.bot_share() + 0.3,
            "without the rule bots take far more: {free:?} vs {paced:?}"
        );
    }
}
