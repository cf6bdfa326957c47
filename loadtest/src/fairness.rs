//! `--compare-window`: does the opening window take the bots' head start away?
//!
//! The test: with the window, a bot that fires 50 ms after the opening wins no larger
//! share of lucky numbers than a person who clicks at 800 ms; without it (`opening_window_ms =
//! 0`), it does. The rush scenario ([`rush`]): half bots (first draw at +50 ms), half people
//! (first draw at +800 ms), every buyer drawing at random, a 200-number release that the first
//! round of draws empties (so whoever is served first holds every lucky number), people who
//! claim the best number of their batch at once. The same scenario runs with the window and
//! without it, `repeats` times each on different seeds; the bots' share of the lucky numbers
//! claimed from their first draw (the one at +50 or +800 ms, whose order the window decides) is
//! compared with their share of the buyers, with a binomial margin of three standard errors over
//! those lucky numbers of the configuration.
//!
//! Lucky numbers claimed from later draws are counted and reported too, but not judged: they are
//! what first-round holders let go, found first come first served by whoever looks again
//! soonest, and bots look again every few milliseconds (RELIABILITY.md, "Bots and empty
//! draws"); nothing at the opening decides them.

use serde::{Deserialize, Serialize};

use crate::report::Report;
use crate::scenario::{Rules, Scenario};

/// The opening rush: bots at +`bot_ms`, people at +`person_ms`.
pub fn rush(window_ms: u64, seed: u64) -> Scenario {
    Scenario {
        name: format!("rush-window-{window_ms}"),
        buyers: 60,
        bots: 0.5,
        custom_share: 0.0,
        bot_custom_share: 0.0,
        arrival_secs: 0.5,
        ramp_secs: 0.0,
        opens_in_secs: 2.0,
        think_min_ms: 20,
        think_max_ms: 100,
        reaction_min_ms: 800,
        reaction_ms: 800,
        bot_reaction_ms: 50,
        settle_probability: 1.0,
        exclude_four_share: 0.0,
        patterns: vec!["A0[01]##".into()],
        rules: Rules {
            random_quota: 2,
            random_ttl_ms: 1_500,
            candidate_ttl_ms: 1_500,
            sms_confirm_delay_ms: 200,
            custom_min_interval_ms: 1_000,
            opening_window_ms: window_ms,
            ..Rules::default()
        },
        connections: 256,
        seed,
        ..Scenario::default()
    }
}

/// The lucky numbers one configuration's runs gave out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Side {
    pub window_ms: u64,
    pub runs: u32,
    pub bot_buyers: u64,
    pub person_buyers: u64,
    /// Lucky numbers claimed, from any draw.
    pub bot_lucky: u64,
    pub person_lucky: u64,
    /// Lucky numbers claimed from the buyer's first draw (what the opening decided).
    #[serde(default)]
    pub bot_first_lucky: u64,
    #[serde(default)]
    pub person_first_lucky: u64,
    pub bot_claims: u64,
    pub person_claims: u64,
    pub audits_failed: u32,
}

impl Side {
    pub fn add(&mut self, r: &Report) {
        self.runs += 1;
        if let Some(a) = &r.audit {
            let f = &a.fairness;
            self.bot_buyers += f.bots.buyers;
            self.person_buyers += f.people.buyers;
            self.bot_lucky += f.bots.lucky_claims;
            self.person_lucky += f.people.lucky_claims;
            self.bot_first_lucky += f.bots.first_draw_lucky;
            self.person_first_lucky += f.people.first_draw_lucky;
            self.bot_claims += f.bots.claims;
            self.person_claims += f.people.claims;
            if !a.passed {
                self.audits_failed += 1;
            }
        } else {
            self.audits_failed += 1;
        }
    }

    /// Bots' share of the buyers.
    pub fn bot_buyer_share(&self) -> f64 {
        ratio(self.bot_buyers, self.bot_buyers + self.person_buyers)
    }

    /// Bots' share of the lucky numbers claimed from first draws (what is judged).
    pub fn bot_lucky_share(&self) -> f64 {
        ratio(self.bot_first_lucky, self.first_lucky())
    }

    /// Lucky numbers claimed from first draws.
    pub fn first_lucky(&self) -> u64 {
        self.bot_first_lucky + self.person_first_lucky
    }

    /// Bots' share of all lucky numbers claimed, later draws included (reported, not judged).
    pub fn bot_all_lucky_share(&self) -> f64 {
        ratio(self.bot_lucky, self.bot_lucky + self.person_lucky)
    }

    /// Three standard errors of the first-draw lucky share if each of those lucky numbers went
    /// to a bot with the bots' buyer share (the fair null hypothesis): a fair window is called
    /// unfair by chance about once in 700 comparisons.
    pub fn margin(&self) -> f64 {
        let n = self.first_lucky() as f64;
        let p = self.bot_buyer_share();
        if n == 0.0 {
            return 1.0;
        }
        3.0 * (p * (1.0 - p) / n).sqrt()
    }

    /// First-draw lucky numbers per bot ÷ per person (1 is fair; ∞ when people got none).
    pub fn advantage(&self) -> f64 {
        let per_bot = ratio(self.bot_first_lucky, self.bot_buyers);
        let per_person = ratio(self.person_first_lucky, self.person_buyers);
        if per_person == 0.0 {
            if per_bot == 0.0 {
                1.0
            } else {
                f64::INFINITY
            }
        } else {
            per_bot / per_person
        }
    }

    /// The bots won a larger share of the first draws' lucky numbers than their buyer share,
    /// beyond the margin.
    pub fn bots_ahead(&self) -> bool {
        self.bot_lucky_share() > self.bot_buyer_share() + self.margin()
    }

    pub fn line(&self) -> String {
        format!(
            "window {} ms, {} runs: bots {} / people {} buyers; lucky numbers from first draws bots {} / people {} → bots' share {:.1} % (their buyer share {:.1} % ± {:.1} %), per-capita advantage {:.2}; lucky numbers from any draw bots {} / people {} ({:.1} %); all claims bots {} / people {}",
            self.window_ms,
            self.runs,
            self.bot_buyers,
            self.person_buyers,
            self.bot_first_lucky,
            self.person_first_lucky,
            self.bot_lucky_share() * 100.0,
            self.bot_buyer_share() * 100.0,
            self.margin() * 100.0,
            self.advantage(),
            self.bot_lucky,
            self.person_lucky,
            self.bot_all_lucky_share() * 100.0,
            self.bot_claims,
            self.person_claims
        )
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Both configurations side by side.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub with_window: Side,
    pub without_window: Side,
}

impl Comparison {
    /// With the window the bots are not ahead beyond the margin; without it they are.
    pub fn window_levels(&self) -> bool {
        !self.with_window.bots_ahead() && self.without_window.bots_ahead()
    }

    pub fn text(&self) -> String {
        let mut o = String::from(
            "Opening rush: bots draw 50 ms after the opening, people 800 ms after; lucky numbers (88, 666, 8888 patterns) won with each buyer's first draw\n",
        );
        o.push_str(&format!(
            "  with the window:    {}\n",
            self.with_window.line()
        ));
        o.push_str(&format!(
            "  without the window: {}\n",
            self.without_window.line()
        ));
        o.push_str(&format!(
            "Verdict: {}\n",
            if self.window_levels() {
                "with the window the bots' share of the first draws' lucky numbers is within the margin of their buyer share; without it they are ahead beyond the margin"
            } else if self.with_window.bots_ahead() {
                "the bots are ahead even with the window"
            } else {
                "without the window the bots were not ahead beyond the margin (too few lucky numbers to tell?)"
            }
        ));
        o
    }
}

/// Runs the rush `repeats` times with the window (`window_ms`) and without it; `run_one` runs
/// one rehearsal (with its audit).
pub fn compare(
    window_ms: u64,
    repeats: u32,
    first_seed: u64,
    mut run_one: impl FnMut(&Scenario) -> Result<Report, String>,
) -> Result<Comparison, String> {
    let mut c = Comparison {
        with_window: Side {
            window_ms,
            ..Side::default()
        },
        without_window: Side::default(),
    };
    for i in 0..repeats {
        let seed = first_seed + i as u64;
        // Alternate the order so drift of the machine's load hits both alike.
        let order: [u64; 2] = if i % 2 == 0 {
            [window_ms, 0]
        } else {
            [0, window_ms]
        };
        for w in order {
            let r = run_one(&rush(w, seed))?;
            if w == 0 {
                c.without_window.add(&r);
            } else {
                c.with_window.add(&r);
            }
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(window: u64, bot_first: u64, person_first: u64) -> Side {
        Side {
            window_ms: window,
            runs: 2,
            bot_buyers: 60,
            person_buyers: 60,
            bot_first_lucky: bot_first,
            person_first_lucky: person_first,
            // Later draws add lucky numbers too; bots find more of them.
            bot_lucky: bot_first + 20,
            person_lucky: person_first + 2,
            ..Side::default()
        }
    }

    #[test]
    fn the_rush_validates_and_times_bots_and_people() {
        let s = rush(1_000, 3);
        s.validate().expect("valid");
        let p = crate::scenario::plans(&s);
        for b in &p {
            match b.kind {
                crate::scenario::Kind::Bot => assert_eq!(b.reaction.as_millis(), 50),
                crate::scenario::Kind::Person => assert_eq!(b.reaction.as_millis(), 800),
            }
        }
        assert_eq!(rush(0, 3).rules.opening_window_ms, 0);
        // The first round of draws (10 per buyer) empties the release.
        assert!(s.release_size() < s.buyers as u64 * s.rules.random_batch as u64);
    }

    #[test]
    fn the_margin_tells_noise_from_a_head_start() {
        // 40 lucky numbers, bots half the buyers: 3 SE = 3·√(0.25/40) ≈ 23.7 %.
        let fair = side(1_000, 23, 17);
        assert!((fair.margin() - 0.237).abs() < 0.001);
        assert!(!fair.bots_ahead(), "57.5 % is within the margin");
        assert!(
            fair.bot_all_lucky_share() > 0.69,
            "later draws are reported, not judged"
        );
        assert!(side(1_000, 31, 9).bots_ahead(), "77.5 % is beyond it");
        let ahead = side(0, 38, 2);
        assert!(ahead.bots_ahead());
        assert!(ahead.advantage() > 10.0);
        let c = Comparison {
            with_window: fair.clone(),
            without_window: ahead.clone(),
        };
        assert!(c.window_levels());
        assert!(c.text().contains("within the margin"));
        let reversed = Comparison {
            with_window: ahead,
            without_window: fair,
        };
        assert!(!reversed.window_levels());
        assert!(reversed.text().contains("even with the window"));
        assert!(side(0, 0, 0).margin() >= 1.0);
        assert_eq!(side(0, 5, 0).advantage(), f64::INFINITY);
    }
}
