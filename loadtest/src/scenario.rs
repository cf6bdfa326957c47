//! A scenario: who the virtual buyers are, how they arrive, how they behave, and the office and
//! release they meet. Read from a TOML file and/or flags; every field has a default, so a file
//! only names what it changes.
//!
//! This module also turns a scenario into the buyers' plans (kind, style, arrival instant), which
//! is pure and deterministic for a seed.

use std::time::Duration;

use platepool_engine::rules::{CompositionRules, DenyRule};
use platepool_engine::{Pattern, PlateClass};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// How load is offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Model {
    /// Buyers arrive on a schedule (rate with a ramp) whether or not the server keeps up: overload
    /// shows as queueing, and latency is measured from each request's intended send time.
    Open,
    /// A fixed number of buyers in flight; the next starts when one finishes (finds the maximum
    /// throughput).
    Closed,
}

/// Office rules the rehearsal puts on its office (SPEC §3). Hold lifetimes are short by default so
/// the audit, which waits for every hold to expire, runs soon after the load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rules {
    pub custom_quota: u32,
    pub custom_per_check: u32,
    pub custom_min_interval_ms: u64,
    pub random_quota: u32,
    pub random_batch: u32,
    pub random_ttl_ms: u64,
    pub candidate_ttl_ms: u64,
    pub sms_confirm_delay_ms: u64,
    pub opening_window_ms: u64,
    /// Least time between two draws of one application, found or not (R4.14).
    pub random_min_interval_ms: u64,
    /// Deny rules for custom numbers, e.g. `["three_identical_digits"]`.
    pub deny: Vec<String>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            custom_quota: 20,
            custom_per_check: 5,
            custom_min_interval_ms: 8_000,
            random_quota: 5,
            random_batch: 10,
            random_ttl_ms: 10_000,
            candidate_ttl_ms: 15_000,
            sms_confirm_delay_ms: 5_000,
            opening_window_ms: 1_000,
            random_min_interval_ms: 1_000,
            deny: Vec::new(),
        }
    }
}

impl Rules {
    /// The `rules` object of `PUT /v1/admin/offices/{office}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "custom_quota": self.custom_quota,
            "custom_per_check": self.custom_per_check,
            "custom_min_interval_ms": self.custom_min_interval_ms,
            "random_quota": self.random_quota,
            "random_batch": self.random_batch,
            "random_ttl_ms": self.random_ttl_ms,
            "candidate_ttl_ms": self.candidate_ttl_ms,
            "sms_confirm_delay_ms": self.sms_confirm_delay_ms,
            "opening_window_ms": self.opening_window_ms,
            "random_min_interval_ms": self.random_min_interval_ms,
            "deny": self.deny,
        })
    }

    /// The longest a hold can outlive the last call that made it.
    pub fn longest_hold_ms(&self) -> u64 {
        self.random_ttl_ms.max(self.candidate_ttl_ms)
    }

    /// The longest one application can keep numbers from others without claiming: a batch per
    /// draw while its draws last, then its candidates. A buyer who finds the pool empty for this
    /// long has seen every number held at the start either claimed or released.
    pub fn longest_holding_ms(&self) -> u64 {
        self.random_quota as u64 * self.random_ttl_ms + self.candidate_ttl_ms
    }
}

/// Everything a rehearsal needs. Field names are the TOML keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    /// Virtual buyers in all (people and bots).
    pub buyers: u32,
    /// Share of buyers that are bots (0..=1): no think times, requests at the limits.
    pub bots: f64,
    /// Share of people who start with custom selection (the rest draw at random).
    pub custom_share: f64,
    /// Share of bots that start with custom selection.
    pub bot_custom_share: f64,

    pub model: Model,
    /// Open model: arrivals spread over this many seconds (rate = buyers / arrival_secs) unless
    /// `rate` is given.
    pub arrival_secs: f64,
    /// Open model: arrivals per second at full rate.
    pub rate: Option<f64>,
    /// Open model: the rate climbs linearly from 0 to full over this many seconds.
    pub ramp_secs: f64,
    /// Open model: exponential gaps (a Poisson process) instead of even spacing.
    pub poisson: bool,
    /// Closed model: buyers in flight at once.
    pub concurrency: u32,

    /// The release opens this many seconds after the first buyer arrives.
    pub opens_in_secs: f64,
    /// People's think time between two actions, uniform in [min, max] ms.
    pub think_min_ms: u64,
    pub think_max_ms: u64,
    /// People start selecting between `reaction_min_ms` and this many ms after the opening
    /// instant (bots: `bot_reaction_ms` after it).
    pub reaction_ms: u64,
    /// People start selecting no sooner than this many ms after the opening instant.
    pub reaction_min_ms: u64,
    /// Bots start selecting this many ms after the opening instant.
    pub bot_reaction_ms: u64,
    /// Bots resend a refused request (429) after this many ms, whatever `retry_after_ms` says.
    pub bot_retry_ms: u64,
    /// Bots send their next custom check this many ms before `next_check_in_ms` says they may.
    pub bot_early_ms: u64,
    /// A bot gives up after this many requests.
    pub bot_max_requests: u32,

    /// Probability that a number a person wishes for is a "lucky" one (88, 666, 8888, …).
    pub lucky_preference: f64,
    /// Probability that a person drawing at random settles for the best candidate after a draw.
    pub settle_probability: f64,
    /// Share of random draws asked with the digit-4 filter.
    pub exclude_four_share: f64,

    /// Office id; empty: `lt_<run tag>`, a fresh office per run.
    pub office: String,
    pub class: String,
    /// The release: patterns of SPEC R2.4 (`[ABCDE]####` is 50,000 numbers).
    pub patterns: Vec<String>,
    pub rules: Rules,

    /// HTTP connections the load keeps open (keep-alive pool), over all workers.
    pub connections: usize,
    /// Load-generating threads, each with its own actix system and client.
    pub workers: usize,
    pub timeout_ms: u64,
    /// Send `Idempotency-Key` on state-changing calls and retry transport failures with it.
    pub idempotency_keys: bool,
    /// How often a request that got no answer (connection refused or reset, timeout) is sent
    /// again before the buyer gives up; the pause grows by 200 ms per try, up to 1 s.
    pub transport_retries: u32,
    /// Send `X-Forwarded-For` with one address per person (bots share `bot_ips` addresses), so a
    /// gateway that trusts the loadtest as a proxy applies its per-IP limit per virtual buyer.
    pub spoof_ips: bool,
    pub bot_ips: u32,
    pub seed: u64,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            name: "default".into(),
            buyers: 500,
            bots: 0.1,
            custom_share: 0.4,
            bot_custom_share: 0.5,
            model: Model::Open,
            arrival_secs: 5.0,
            rate: None,
            ramp_secs: 1.0,
            poisson: false,
            concurrency: 200,
            opens_in_secs: 8.0,
            think_min_ms: 300,
            think_max_ms: 2_000,
            reaction_ms: 500,
            reaction_min_ms: 0,
            bot_reaction_ms: 0,
            bot_retry_ms: 50,
            bot_early_ms: 200,
            bot_max_requests: 400,
            lucky_preference: 0.5,
            settle_probability: 0.4,
            exclude_four_share: 0.3,
            office: String::new(),
            class: "small".into(),
            patterns: vec!["A####".into()],
            rules: Rules::default(),
            connections: 2_048,
            workers: 1,
            timeout_ms: 60_000,
            idempotency_keys: true,
            transport_retries: 3,
            spoof_ips: true,
            bot_ips: 8,
            seed: 1,
        }
    }
}

/// Built-in scenarios (`--preset`).
pub const PRESETS: &[(&str, &str)] = &[
    (
        "smoke",
        "300 buyers over 2 s against 200 numbers, short rules: a rehearsal in ~20 s",
    ),
    (
        "opening",
        "20,000 buyers over 10 s against a 50,000-number release (the issue's figure)",
    ),
    (
        "bots",
        "2,000 buyers, half of them bots, racing for 1,000 numbers: what limits do to bots",
    ),
    (
        "closed",
        "closed model: 500 buyers in flight until 5,000 have finished",
    ),
];

impl Scenario {
    pub fn preset(name: &str) -> Option<Scenario> {
        let base = Scenario::default();
        let fast = Rules {
            custom_min_interval_ms: 1_000,
            random_ttl_ms: 2_000,
            candidate_ttl_ms: 3_000,
            sms_confirm_delay_ms: 500,
            opening_window_ms: 300,
            ..Rules::default()
        };
        Some(match name {
            "smoke" => Scenario {
                name: "smoke".into(),
                buyers: 300,
                arrival_secs: 2.0,
                ramp_secs: 0.5,
                opens_in_secs: 3.0,
                think_min_ms: 50,
                think_max_ms: 400,
                reaction_ms: 200,
                patterns: vec!["A0[01]##".into()],
                rules: fast,
                ..base
            },
            "opening" => Scenario {
                name: "opening".into(),
                buyers: 20_000,
                arrival_secs: 10.0,
                ramp_secs: 2.0,
                opens_in_secs: 16.0,
                patterns: vec!["[ABCDE]####".into()],
                // The published rules but for hold lifetimes of 10 s and 15 s, so the audit can
                // run soon after.
                rules: Rules::default(),
                think_min_ms: 200,
                think_max_ms: 1_500,
                // Every buyer waiting at the opening has a request parked in the opening window:
                // as many connections as the process's descriptors allow beside the embedded
                // gateway's own.
                connections: 8_000,
                ..base
            },
            "bots" => Scenario {
                name: "bots".into(),
                buyers: 2_000,
                bots: 0.5,
                arrival_secs: 4.0,
                opens_in_secs: 6.0,
                patterns: vec!["A0###".into()],
                rules: fast,
                think_min_ms: 100,
                think_max_ms: 800,
                ..base
            },
            "closed" => Scenario {
                name: "closed".into(),
                buyers: 5_000,
                model: Model::Closed,
                concurrency: 500,
                opens_in_secs: 2.0,
                patterns: vec!["[AB]####".into()],
                rules: fast,
                think_min_ms: 0,
                think_max_ms: 200,
                ..base
            },
            _ => return None,
        })
    }

    /// Parses a TOML scenario; unknown keys are errors (a typo must not silently do nothing).
    pub fn from_toml(text: &str) -> Result<Scenario, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    pub fn plate_class(&self) -> Result<PlateClass, String> {
        PlateClass::builtin()
            .into_iter()
            .find(|c| c.name == self.class)
            .ok_or_else(|| {
                format!(
                    "class {} is not a built-in class (small, small_new_energy)",
                    self.class
                )
            })
    }

    /// Energy of the virtual vehicles: what the class serves first.
    pub fn energy(&self) -> &'static str {
        if self.class == "small_new_energy" {
            "bev"
        } else {
            "fuel"
        }
    }

    pub fn release_patterns(&self) -> Result<Vec<Pattern>, String> {
        self.patterns
            .iter()
            .map(|p| Pattern::parse(p).map_err(|e| format!("pattern {p}: {e}")))
            .collect()
    }

    /// Numbers in the release (patterns may overlap only if the server merges them; count them
    /// as given).
    pub fn release_size(&self) -> u64 {
        self.release_patterns()
            .map(|ps| ps.iter().map(Pattern::count).sum())
            .unwrap_or(0)
    }

    /// The office's composition rules for custom numbers, as the server will apply them, so
    /// buyers only type numbers the office allows.
    pub fn composition(&self) -> Result<CompositionRules, String> {
        let class = self.plate_class()?;
        let deny = self
            .rules
            .deny
            .iter()
            .map(|d| DenyRule::parse(d).map_err(|e| format!("deny rule {d}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CompositionRules::new(
            class.default_custom_patterns.clone(),
            deny,
        ))
    }

    /// Full arrival rate (open model), buyers per second.
    pub fn full_rate(&self) -> f64 {
        match self.rate {
            Some(r) => r,
            None => {
                let d = self.arrival_secs.max(0.001);
                // With a ramp, the arrivals of `arrival_secs` hold buyers: solve for the rate.
                let ramp = self.ramp_secs.clamp(0.0, d);
                self.buyers as f64 / (d - ramp / 2.0)
            }
        }
    }

    /// Checks every value is usable; names the field at fault.
    pub fn validate(&self) -> Result<(), String> {
        let share = |name: &str, v: f64| -> Result<(), String> {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("{name} must be between 0 and 1, not {v}"))
            }
        };
        share("bots", self.bots)?;
        share("custom_share", self.custom_share)?;
        share("bot_custom_share", self.bot_custom_share)?;
        share("lucky_preference", self.lucky_preference)?;
        share("settle_probability", self.settle_probability)?;
        share("exclude_four_share", self.exclude_four_share)?;
        if self.buyers == 0 {
            return Err("buyers must be at least 1".into());
        }
        if self.buyers > 10_000_000 {
            return Err("buyers must be at most 10,000,000".into());
        }
        if self.model == Model::Open {
            if let Some(r) = self.rate {
                if !(r > 0.0 && r.is_finite()) {
                    return Err(format!("rate must be positive, not {r}"));
                }
            } else if !(self.arrival_secs > 0.0 && self.arrival_secs.is_finite()) {
                return Err("arrival_secs must be positive (or give rate)".into());
            }
            if !(self.ramp_secs >= 0.0 && self.ramp_secs.is_finite()) {
                return Err("ramp_secs must be 0 or more".into());
            }
        }
        if self.model == Model::Closed && self.concurrency == 0 {
            return Err("concurrency must be at least 1".into());
        }
        if !(self.opens_in_secs >= 0.0 && self.opens_in_secs.is_finite()) {
            return Err("opens_in_secs must be 0 or more".into());
        }
        if self.think_min_ms > self.think_max_ms {
            return Err("think_min_ms must not exceed think_max_ms".into());
        }
        if self.reaction_min_ms > self.reaction_ms {
            return Err("reaction_min_ms must not exceed reaction_ms".into());
        }
        if self.workers == 0 || self.workers > 64 {
            return Err("workers must be 1 to 64".into());
        }
        if self.connections == 0 {
            return Err("connections must be at least 1".into());
        }
        if self.timeout_ms == 0 {
            return Err("timeout_ms must be positive".into());
        }
        if self.bot_ips == 0 {
            return Err("bot_ips must be at least 1".into());
        }
        if self.patterns.is_empty() {
            return Err("patterns: the release needs at least one pattern".into());
        }
        let class = self.plate_class()?;
        for p in self.release_patterns()? {
            if p.len() != class.serial_len() {
                return Err(format!(
                    "pattern {p} has {} characters; class {} has {}",
                    p.len(),
                    class.name,
                    class.serial_len()
                ));
            }
        }
        self.composition()?;
        if !self.office.is_empty() {
            platepool_engine::config::validate_office_id(&self.office)
                .map_err(|e| format!("office: {e}"))?;
        }
        let r = &self.rules;
        if r.custom_per_check == 0 || r.random_batch == 0 {
            return Err("rules.custom_per_check and rules.random_batch must be at least 1".into());
        }
        if r.random_ttl_ms < 1_000 || r.candidate_ttl_ms < 1_000 {
            return Err(
                "rules.random_ttl_ms and rules.candidate_ttl_ms must be at least 1000".into(),
            );
        }
        Ok(())
    }
}

/// Who a virtual buyer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Person,
    Bot,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Person => "person",
            Kind::Bot => "bot",
        }
    }
}

/// How a buyer starts selecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Style {
    /// Types numbers guided by the keyboard; random draws once the custom quota is spent.
    Custom,
    /// Draws random batches, picks candidates, claims.
    Random,
}

/// One buyer's part in the scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct BuyerPlan {
    pub index: u32,
    pub kind: Kind,
    pub style: Style,
    /// Open model: when the buyer arrives, from the start of the load. Closed model: zero (a
    /// buyer starts when a slot frees).
    pub arrival: Duration,
    /// How long after the opening instant the buyer starts selecting.
    pub reaction: Duration,
    /// Seeds the buyer's own choices.
    pub seed: u64,
}

/// Is buyer `i` of `n` a bot? Bots are spread evenly through the arrivals.
pub fn is_bot(i: u32, share: f64) -> bool {
    let before = (i as f64 * share).floor();
    let after = ((i + 1) as f64 * share).floor();
    after > before
}

/// Arrival offsets of `n` buyers at full rate `rate` per second after a linear ramp of
/// `ramp_secs`: the i-th arrival is where the cumulative arrivals reach i (evenly spaced), or a
/// Poisson process's i-th point (`poisson`).
pub fn arrival_offsets(
    n: u32,
    rate: f64,
    ramp_secs: f64,
    poisson: bool,
    rng: &mut StdRng,
) -> Vec<Duration> {
    let ramp = ramp_secs.max(0.0);
    let in_ramp = rate * ramp / 2.0;
    let inverse = |x: f64| -> f64 {
        if ramp > 0.0 && x < in_ramp {
            (2.0 * ramp * x / rate).sqrt()
        } else {
            ramp + (x - in_ramp) / rate
        }
    };
    let mut x = 0.0f64;
    (0..n)
        .map(|i| {
            let at = if poisson {
                let u: f64 = rng.random::<f64>();
                x += -(1.0 - u).ln();
                inverse(x)
            } else {
                inverse(i as f64)
            };
            Duration::from_secs_f64(at.max(0.0))
        })
        .collect()
}

/// Every buyer's plan, deterministic for the scenario's seed.
pub fn plans(s: &Scenario) -> Vec<BuyerPlan> {
    let mut rng = StdRng::seed_from_u64(s.seed);
    let arrivals = match s.model {
        Model::Open => arrival_offsets(s.buyers, s.full_rate(), s.ramp_secs, s.poisson, &mut rng),
        Model::Closed => vec![Duration::ZERO; s.buyers as usize],
    };
    arrivals
        .into_iter()
        .enumerate()
        .map(|(i, arrival)| {
            let i = i as u32;
            let kind = if is_bot(i, s.bots) {
                Kind::Bot
            } else {
                Kind::Person
            };
            let custom = match kind {
                Kind::Person => s.custom_share,
                Kind::Bot => s.bot_custom_share,
            };
            let style = if rng.random::<f64>() < custom {
                Style::Custom
            } else {
                Style::Random
            };
            let reaction = match kind {
                Kind::Bot => Duration::from_millis(s.bot_reaction_ms),
                Kind::Person => Duration::from_millis(
                    rng.random_range(s.reaction_min_ms.min(s.reaction_ms)..=s.reaction_ms),
                ),
            };
            BuyerPlan {
                index: i,
                kind,
                style,
                arrival,
                reaction,
                seed: rng.random(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_presets_validate() {
        Scenario::default().validate().expect("default");
        for (name, _) in PRESETS {
            let s = Scenario::preset(name).expect("preset exists");
            s.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert!(Scenario::preset("nope").is_none());
        assert_eq!(
            Scenario::preset("opening").expect("opening").release_size(),
            50_000
        );
    }

    #[test]
    fn toml_names_only_what_changes_and_typos_are_refused() {
        let s = Scenario::from_toml(
            "buyers = 42\nbots = 0.25\npatterns = [\"B####\"]\n[rules]\nrandom_ttl_ms = 1500\n",
        )
        .expect("parses");
        assert_eq!(s.buyers, 42);
        assert_eq!(s.rules.random_ttl_ms, 1_500);
        assert_eq!(s.rules.custom_quota, 20);
        assert_eq!(s.release_size(), 10_000);
        assert!(Scenario::from_toml("buyer = 3").is_err());
        assert!(Scenario::from_toml("[rules]\nrandom_tll_ms = 3").is_err());
    }

    #[test]
    fn validation_names_the_field() {
        let bad = |f: fn(&mut Scenario)| {
            let mut s = Scenario::default();
            f(&mut s);
            s.validate().expect_err("invalid")
        };
        assert!(bad(|s| s.bots = 1.5).contains("bots"));
        assert!(bad(|s| s.buyers = 0).contains("buyers"));
        assert!(bad(|s| s.patterns = vec!["A###".into()]).contains("pattern"));
        assert!(bad(|s| s.class = "truck".into()).contains("class"));
        assert!(bad(|s| s.rules.deny = vec!["no_such_rule".into()]).contains("deny"));
        assert!(bad(|s| s.office = "Bad-Office".into()).contains("office"));
        assert!(bad(|s| s.think_min_ms = 10_000).contains("think"));
    }

    #[test]
    fn bots_are_spread_evenly_and_count_exactly() {
        let n = 1_000;
        let bots = (0..n).filter(|&i| is_bot(i, 0.1)).count();
        assert_eq!(bots, 100);
        // No two bots next to each other at 10 %.
        assert!((0..n - 1).all(|i| !(is_bot(i, 0.1) && is_bot(i + 1, 0.1))));
        assert_eq!((0..n).filter(|&i| is_bot(i, 0.0)).count(), 0);
        assert_eq!((0..n).filter(|&i| is_bot(i, 1.0)).count(), n as usize);
    }

    #[test]
    fn open_arrivals_follow_the_ramp_then_the_rate() {
        let mut rng = StdRng::seed_from_u64(7);
        // 100/s after a 2 s ramp: 100 arrivals in the ramp, then one every 10 ms.
        let a = arrival_offsets(400, 100.0, 2.0, false, &mut rng);
        assert_eq!(a[0], Duration::ZERO);
        assert!(a.windows(2).all(|w| w[0] <= w[1]), "sorted");
        let in_ramp = a.iter().filter(|d| d.as_secs_f64() < 2.0).count();
        assert!(
            (99..=101).contains(&in_ramp),
            "{in_ramp} arrivals in the ramp"
        );
        // The first second of the ramp holds a quarter of the ramp's arrivals.
        let first = a.iter().filter(|d| d.as_secs_f64() < 1.0).count();
        assert!((24..=26).contains(&first), "{first}");
        let gap = a[300].as_secs_f64() - a[299].as_secs_f64();
        assert!((gap - 0.01).abs() < 1e-9, "{gap}");
        assert!((a[399].as_secs_f64() - 4.99).abs() < 1e-9);
        // Poisson: same mean rate, irregular gaps.
        let p = arrival_offsets(20_000, 100.0, 0.0, true, &mut rng);
        let span = p[19_999].as_secs_f64();
        assert!((span - 200.0).abs() < 10.0, "{span}");
    }

    #[test]
    fn the_rate_from_arrival_secs_spreads_every_buyer_over_it() {
        let s = Scenario {
            buyers: 20_000,
            arrival_secs: 10.0,
            ramp_secs: 2.0,
            ..Scenario::default()
        };
        let rate = s.full_rate();
        assert!((rate - 20_000.0 / 9.0).abs() < 1e-6);
        let p = plans(&s);
        let last = p.last().expect("buyers").arrival.as_secs_f64();
        assert!((9.9..=10.0).contains(&last), "last arrival at {last}");
    }

    #[test]
    fn plans_are_deterministic_and_mix_as_asked() {
        let s = Scenario {
            buyers: 2_000,
            bots: 0.25,
            custom_share: 0.5,
            ..Scenario::default()
        };
        let a = plans(&s);
        assert_eq!(a, plans(&s));
        assert_eq!(a.iter().filter(|p| p.kind == Kind::Bot).count(), 500);
        let people: Vec<_> = a.iter().filter(|p| p.kind == Kind::Person).collect();
        let custom = people.iter().filter(|p| p.style == Style::Custom).count();
        assert!(
            (600..=900).contains(&custom),
            "{custom} of 1500 people custom"
        );
        assert!(a
            .iter()
            .filter(|p| p.kind == Kind::Bot)
            .all(|p| p.reaction.is_zero()));
        assert!(people
            .iter()
            .all(|p| p.reaction <= Duration::from_millis(s.reaction_ms)));
        let closed = plans(&Scenario {
            model: Model::Closed,
            ..s.clone()
        });
        assert!(closed.iter().all(|p| p.arrival.is_zero()));
        let other_seed = plans(&Scenario { seed: 2, ..s });
        assert_ne!(a, other_seed);
    }
}
