//! I5: random draws are uniform over the available numbers that pass the filter.
//!
//! Many draws with fixed seeds on a pool of a few hundred numbers; each new draw releases the
//! previous batch, so the population stays the same. Pearson's chi-squared statistic over the
//! per-number counts is compared with the critical value at the 1% level (SPEC asks for 0.1%),
//! from the Wilson–Hilferty approximation. Drawing ten without replacement per batch makes the
//! counts slightly less spread than independent draws, so the test errs on the side of passing
//! a fair sampler; `the_test_rejects_a_biased_sampler` shows it still catches a small bias.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use common::{has_four, local_ms};
use platepool_engine::pool::OfficePool;
use platepool_engine::{Energy, Serial};

/// Upper 1% point of the standard normal distribution.
const Z_1_PERCENT: f64 = 2.326_347_874;
const SEEDS: [u64; 2] = [5, 6];
const DRAWS_PER_APP: u32 = 1_000;
const BATCH: u32 = 10;

/// The chi-squared critical value for `df` degrees of freedom at the upper tail point `z`
/// (Wilson–Hilferty).
fn critical(df: usize, z: f64) -> f64 {
    let k = df as f64;
    let a = 2.0 / (9.0 * k);
    k * (1.0 - a + z * a.sqrt()).powi(3)
}

/// Pearson's statistic of the counts of every member of the population, all equally likely.
fn chi_squared(population: &[Serial], counts: &HashMap<Serial, u64>) -> f64 {
    let total: u64 = population
        .iter()
        .map(|s| counts.get(s).copied().unwrap_or(0))
        .sum();
    let expected = total as f64 / population.len() as f64;
    population
        .iter()
        .map(|s| {
            let d = counts.get(s).copied().unwrap_or(0) as f64 - expected;
            d * d / expected
        })
        .sum()
}

fn assert_uniform(what: &str, population: &[Serial], counts: &HashMap<Serial, u64>) {
    let stray: Vec<&Serial> = counts.keys().filter(|s| !population.contains(s)).collect();
    assert!(
        stray.is_empty(),
        "{what}: drew numbers outside the population: {stray:?}"
    );
    let stat = chi_squared(population, counts);
    let crit = critical(population.len() - 1, Z_1_PERCENT);
    println!(
        "{what}: chi2 = {stat:.1}, critical (1%, df {}) = {crit:.1}",
        population.len() - 1
    );
    assert!(
        stat < crit,
        "{what}: chi-squared {stat:.1} ≥ {crit:.1}: not uniform (I5)"
    );
}

/// An office whose vehicles may draw a thousand times, with `patterns` released in `class`.
fn pool_with(class: &str, patterns: &[&str]) -> (OfficePool, u64) {
    let mut config = common::office();
    config.rules.random_quota = DRAWS_PER_APP;
    config.rules.random_batch = BATCH;
    let mut pool = OfficePool::new("uniform", config, common::catalog()).unwrap();
    let now = local_ms("2024-03-04T09:00");
    pool.add_release(
        common::release(class, patterns, now, None),
        "operator:test",
        now,
    )
    .unwrap();
    (pool, now)
}

/// `apps` applications each draw `DRAWS_PER_APP` times at one instant; between applications the
/// clock moves past the hold so the last batch goes back. Returns (all numbers, first numbers of
/// each batch) counted.
#[allow(clippy::too_many_arguments)]
fn draw_many(
    pool: &mut OfficePool,
    now: &mut u64,
    rng: &mut StdRng,
    class: &str,
    energy: Energy,
    exclude_four: bool,
    apps: usize,
    practice: bool,
) -> (HashMap<Serial, u64>, HashMap<Serial, u64>) {
    let mut all = HashMap::new();
    let mut first = HashMap::new();
    for a in 0..apps {
        let seq = if practice {
            pool.create_practice(&format!("p{a}"), class, energy, *now)
                .unwrap()
        } else {
            let seq = pool
                .create_application(common::application(&format!("u{a}"), class, energy), *now)
                .unwrap();
            pool.verify_identity(seq, *now).unwrap();
            seq
        };
        for _ in 0..DRAWS_PER_APP {
            let d = pool.draw(seq, exclude_four, *now, rng).unwrap();
            assert_eq!(d.batch.serials.len(), BATCH as usize);
            let mut distinct = d.batch.serials.clone();
            distinct.sort();
            distinct.dedup();
            assert_eq!(
                distinct.len(),
                BATCH as usize,
                "a number twice in one batch"
            );
            *first.entry(d.batch.serials[0]).or_insert(0) += 1;
            for s in d.batch.serials {
                *all.entry(s).or_insert(0) += 1;
            }
        }
        pool.take_effects();
        *now += pool.config().rules.random_ttl_ms;
        pool.tick(*now);
        pool.check_invariants(*now);
        let counts = pool.stats()[0].counts;
        assert_eq!(counts.held, 0, "every batch went back");
    }
    (all, first)
}

fn population(pattern: &str, keep: impl Fn(Serial) -> bool) -> Vec<Serial> {
    common::pattern(pattern)
        .iter()
        .filter(|s| keep(*s))
        .collect()
}

#[test]
fn draws_are_uniform_over_the_available_numbers() {
    for seed in SEEDS {
        let (mut pool, mut now) = pool_with("small", &["A0[0-3]##"]);
        let mut rng = StdRng::seed_from_u64(seed);
        let (all, first) = draw_many(
            &mut pool,
            &mut now,
            &mut rng,
            "small",
            Energy::Fuel,
            false,
            20,
            false,
        );
        let everyone = population("A0[0-3]##", |_| true);
        assert_eq!(everyone.len(), 400);
        assert_uniform(&format!("seed {seed}: every number drawn"), &everyone, &all);
        assert_uniform(
            &format!("seed {seed}: first number of a batch"),
            &everyone,
            &first,
        );
        // Both digit-4 buckets are drawn from, in proportion.
        let fours: u64 = all
            .iter()
            .filter(|(s, _)| has_four(**s))
            .map(|(_, n)| n)
            .sum();
        let total: u64 = all.values().sum();
        let share = fours as f64 / total as f64;
        assert!(
            (share - 76.0 / 400.0).abs() < 0.01,
            "numbers with a 4 drawn {share:.3} of the time"
        );
    }
}

#[test]
fn the_digit_four_filter_draws_uniformly_from_numbers_without_four() {
    for seed in SEEDS {
        let (mut pool, mut now) = pool_with("small", &["A0[0-3]##"]);
        let mut rng = StdRng::seed_from_u64(seed);
        let (all, _) = draw_many(
            &mut pool,
            &mut now,
            &mut rng,
            "small",
            Energy::Fuel,
            true,
            16,
            false,
        );
        if let Some(s) = all.keys().find(|s| has_four(**s)) {
            panic!("drew {s} despite the digit-4 filter (R2.5)");
        }
        let no_four = population("A0[0-3]##", |s| !has_four(s));
        assert_eq!(no_four.len(), 324);
        assert_uniform(&format!("seed {seed}: without 4"), &no_four, &all);
    }
}

#[test]
fn energy_groups_draw_only_their_own_numbers_uniformly() {
    for seed in SEEDS {
        let (mut pool, mut now) = pool_with("small_new_energy", &["DA1[0-2]##", "FA1[0-2]##"]);
        let mut rng = StdRng::seed_from_u64(seed);
        let (bev, _) = draw_many(
            &mut pool,
            &mut now,
            &mut rng,
            "small_new_energy",
            Energy::Bev,
            false,
            10,
            false,
        );
        assert_uniform(
            &format!("seed {seed}: battery electric"),
            &population("DA1[0-2]##", |_| true),
            &bev,
        );
        let (phev, _) = draw_many(
            &mut pool,
            &mut now,
            &mut rng,
            "small_new_energy",
            Energy::Phev,
            false,
            10,
            false,
        );
        assert_uniform(
            &format!("seed {seed}: plug-in hybrid"),
            &population("FA1[0-2]##", |_| true),
            &phev,
        );
    }
}

#[test]
fn practice_draws_are_uniform_too() {
    let (mut pool, mut now) = pool_with("small", &["A0[0-3]##"]);
    let mut rng = StdRng::seed_from_u64(SEEDS[0]);
    let (all, _) = draw_many(
        &mut pool,
        &mut now,
        &mut rng,
        "small",
        Energy::Fuel,
        false,
        20,
        true,
    );
    assert_uniform("practice", &population("A0[0-3]##", |_| true), &all);
}

/// Numbers held by someone else are never drawn, and the rest stay uniform.
#[test]
fn held_numbers_are_not_drawn() {
    let (mut pool, now) = pool_with("small", &["A0[0-3]##"]);
    let mut rng = StdRng::seed_from_u64(SEEDS[0]);
    let mut app = |user: &str| {
        let seq = pool
            .create_application(common::application(user, "small", Energy::Fuel), now)
            .unwrap();
        pool.verify_identity(seq, now).unwrap();
        seq
    };
    let (other, me) = (app("other"), app("me"));
    let held = pool
        .draw(other, false, now, &mut rng)
        .unwrap()
        .batch
        .serials;
    let mut counts = HashMap::new();
    for _ in 0..DRAWS_PER_APP {
        for s in pool.draw(me, false, now, &mut rng).unwrap().batch.serials {
            assert!(
                !held.contains(&s),
                "drew {s}, held by another application (I1)"
            );
            *counts.entry(s).or_insert(0) += 1;
        }
    }
    pool.check_invariants(now);
    let rest = population("A0[0-3]##", |s| !held.contains(&s));
    assert_uniform("around a held batch", &rest, &counts);
}

/// The statistical test has power: the same number of draws from a sampler that favours a tenth
/// of the numbers by 10% is rejected.
#[test]
fn the_test_rejects_a_biased_sampler() {
    let everyone = population("A0[0-3]##", |_| true);
    let mut rng = StdRng::seed_from_u64(SEEDS[0]);
    let mut counts = HashMap::new();
    let n = everyone.len();
    // A mixture: now and then one of the first 40 numbers, else any; the first 40 come out
    // 1.1 times as often as the others.
    let favoured = 0.1 / 10.1;
    for _ in 0..(20 * DRAWS_PER_APP * BATCH) {
        let i = if rng.random_bool(favoured) {
            rng.random_range(0..40)
        } else {
            rng.random_range(0..n)
        };
        *counts.entry(everyone[i]).or_insert(0u64) += 1;
    }
    let stat = chi_squared(&everyone, &counts);
    let crit = critical(n - 1, Z_1_PERCENT);
    assert!(
        stat > crit,
        "a 10% bias went unnoticed: {stat:.1} < {crit:.1}"
    );
    // and the critical value agrees with the table (χ²(0.99, 399) ≈ 467.6)
    assert!((crit - 467.6).abs() < 1.0, "critical value {crit}");
}
