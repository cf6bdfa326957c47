//! The opening window's fairness (issue 6): with the window a bot that fires 50 ms after the
//! opening wins no larger share of lucky numbers than a person who clicks at 800 ms; without it
//! (`opening_window_ms = 0`) it does. Runs the loadtest's opening rush
//! ([`platepool_loadtest::fairness`]) against an embedded gateway, both configurations, several
//! seeds each, and compares the bots' share of the lucky numbers claimed from each buyer's first
//! draw (the one the opening's order decides) with their share of the buyers (margin: three
//! binomial standard errors). Lucky numbers from later draws are reported beside it. Every
//! rehearsal's audit must pass too. Then numbers returning from expired holds
//! ([`crate::returning`]): bots polling against people, with the draw interval (R4.14) and
//! without it.

use std::time::Instant;

use platepool_loadtest::embedded::{Embedded, EmbeddedOptions};
use platepool_loadtest::fairness::{compare, Side};
use platepool_loadtest::run::{run, Progress, RunOptions, Target};

use crate::{Mode, Outcome};

/// Rehearsals per configuration.
pub fn repeats(mode: Mode) -> u32 {
    match mode {
        Mode::Short => 4,
        Mode::Long => 10,
    }
}

fn share(s: &Side) -> String {
    format!(
        "{:.1} % of {} lucky numbers claimed from first draws (bots are {:.1} % of the buyers, margin ± {:.1} %), per-capita advantage {:.2}",
        s.bot_lucky_share() * 100.0,
        s.first_lucky(),
        s.bot_buyer_share() * 100.0,
        s.margin() * 100.0,
        s.advantage()
    )
}

fn all_share(s: &Side) -> String {
    format!(
        "{:.1} % of {} lucky numbers claimed from any draw",
        s.bot_all_lucky_share() * 100.0,
        s.bot_lucky + s.person_lucky,
    )
}

pub fn campaign(mode: Mode) -> Outcome {
    let started = Instant::now();
    let mut out = opening_window(mode);
    crate::returning::judge(&mut out, mode);
    out.elapsed = started.elapsed();
    out
}

fn opening_window(mode: Mode) -> Outcome {
    let started = Instant::now();
    let mut out = Outcome::new(
        "fairness",
        "fairness of the opening window (bots at +50 ms against people at +800 ms) and of numbers returning from expired holds (bots polling against people)",
    );
    let n = repeats(mode);
    let embedded = match Embedded::start(&EmbeddedOptions::default()) {
        Ok(e) => e,
        Err(e) => {
            out.violation(format!("embedded gateway: {e}"));
            out.elapsed = started.elapsed();
            return out;
        }
    };
    let target = Target {
        base: embedded.base.clone(),
        operator_token: embedded.operator_token.clone(),
        token_secret: Some(embedded.token_secret.clone()),
        embedded: true,
    };
    let opts = RunOptions {
        progress: Progress::Off,
        audit: true,
        max_p99_ms: None,
        max_error_rate: None,
    };
    let result = compare(1_000, n, 1, |s| {
        run(s, &target, &opts).map(|r| {
            let f = r
                .report
                .audit
                .as_ref()
                .map(|a| a.fairness.clone())
                .unwrap_or_default();
            println!(
                "   fairness: {} seed {}: bots {} / people {} lucky numbers from first draws ({} / {} from any)",
                s.name,
                s.seed,
                f.bots.first_draw_lucky,
                f.people.first_draw_lucky,
                f.bots.lucky_claims,
                f.people.lucky_claims
            );
            r.report
        })
    });
    embedded.stop();
    let c = match result {
        Ok(c) => c,
        Err(e) => {
            out.violation(format!("rehearsal: {e}"));
            out.elapsed = started.elapsed();
            return out;
        }
    };
    out.tried(format!(
        "the loadtest's opening rush (`platepool-loadtest --embedded --compare-window --repeats {n}`): 60 buyers, half bots drawing 50 ms after the opening, half people drawing at 800 ms, a 200-number release the first round of draws empties; {n} seeds with the 1,000 ms window and {n} without it, against an embedded gateway"
    ));
    out.tried(format!("with the window: {}", c.with_window.line()));
    out.tried(format!("without the window: {}", c.without_window.line()));
    out.figure(
        "bots' share of lucky numbers, with the window",
        share(&c.with_window),
    );
    out.figure(
        "bots' share of lucky numbers, without the window",
        share(&c.without_window),
    );
    out.figure(
        "bots' share of lucky numbers from later draws too (reported, not judged), with / without the window",
        format!(
            "{} / {}",
            all_share(&c.with_window),
            all_share(&c.without_window)
        ),
    );
    out.check(
        c.with_window.audits_failed + c.without_window.audits_failed == 0,
        format!("every rehearsal's audit passed ({} rehearsals)", 2 * n),
        format!(
            "{} rehearsals failed their audit",
            c.with_window.audits_failed + c.without_window.audits_failed
        ),
    );
    out.check(
        !c.with_window.bots_ahead(),
        format!(
            "with the window, bots firing at +50 ms won no larger share of the lucky numbers their first draws gave than people at +800 ms, beyond the margin: {}",
            share(&c.with_window)
        ),
        format!(
            "with the window the bots were still ahead: {}",
            share(&c.with_window)
        ),
    );
    out.check(
        c.without_window.bots_ahead(),
        format!(
            "without the window, the bots' head start showed (the comparison can tell): {}",
            share(&c.without_window)
        ),
        format!(
            "without the window the bots were not ahead beyond the margin, so the comparison cannot tell the window's effect: {}",
            share(&c.without_window)
        ),
    );
    out.elapsed = started.elapsed();
    out
}
