//! Helpers shared by the pool tests: an office, applications, releases and office local time.
//!
//! Office time is UTC+8 (SPEC R4.8); the conversion here is written out on its own so the tests
//! do not take the engine's calendar on trust.
#![allow(dead_code)]

use chrono::{NaiveDate, NaiveDateTime};

use platepool_engine::pool::{NewApplication, NewRelease};
use platepool_engine::{
    Energy, Notice, OfficeConfig, OfficeRules, Pattern, PlateClass, ReleaseSource, Serial,
};

pub const DAY_MS: u64 = 86_400_000;
const OFFSET_MS: i64 = 8 * 3_600_000;
/// The notice version every test office publishes.
pub const NOTICE: &str = "v1";

/// Milliseconds of an office local time written `YYYY-MM-DDTHH:MM` or `YYYY-MM-DDTHH:MM:SS`.
pub fn local_ms(text: &str) -> u64 {
    let parsed = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M"))
        .unwrap_or_else(|e| panic!("bad local time {text}: {e}"));
    u64::try_from(parsed.and_utc().timestamp_millis() - OFFSET_MS).expect("after the epoch")
}

/// The office local time of an instant, `YYYY-MM-DDTHH:MM:SS` (milliseconds shown when not 0).
pub fn local_text(ms: u64) -> String {
    let dt = chrono::DateTime::from_timestamp_millis(ms as i64 + OFFSET_MS)
        .expect("in range")
        .naive_utc();
    if ms % 1000 == 0 {
        dt.format("%Y-%m-%dT%H:%M:%S").to_string()
    } else {
        dt.format("%Y-%m-%dT%H:%M:%S%.3f").to_string()
    }
}

/// Days since 1970-01-01 of the office local date of an instant.
pub fn local_day(ms: u64) -> u64 {
    (ms + OFFSET_MS as u64) / DAY_MS
}

/// Days since 1970-01-01 of a date.
pub fn day_of(date: NaiveDate) -> u64 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("date");
    (date - epoch).num_days() as u64
}

/// The registration deadline of a claim made at `claimed_at_ms` (R4.8), computed by counting days:
/// 23:59:59 local on the `working_days`-th working day after the claim day; weekends and
/// `holidays` (days since the epoch) do not count.
pub fn deadline_ms(claimed_at_ms: u64, working_days: u32, holidays: &[u64]) -> u64 {
    let mut day = local_day(claimed_at_ms);
    let mut counted = 0;
    while counted < working_days {
        day += 1;
        // 1970-01-01 was a Thursday: Monday = 0 … Sunday = 6.
        let weekday = (day + 3) % 7;
        if weekday < 5 && !holidays.contains(&day) {
            counted += 1;
        }
    }
    day * DAY_MS + (23 * 3600 + 59 * 60 + 59) * 1000 - OFFSET_MS as u64
}

pub fn catalog() -> Vec<PlateClass> {
    PlateClass::builtin()
}

/// An office serving both built-in classes with the published default rules.
pub fn office() -> OfficeConfig {
    OfficeConfig {
        name: "test office".into(),
        prefix: "粤K".into(),
        classes: vec!["small".into(), "small_new_energy".into()],
        // Draws back to back, as most scripts and models make them; draw pacing (R4.14) has
        // its own tests, which set the rule.
        rules: OfficeRules {
            random_min_interval_ms: 0,
            ..OfficeRules::default()
        },
        notice: Notice {
            version: NOTICE.into(),
            text: "terms".into(),
        },
    }
}

pub fn pattern(text: &str) -> Pattern {
    Pattern::parse(text).unwrap_or_else(|e| panic!("pattern {text}: {e:?}"))
}

pub fn serial(text: &str) -> Serial {
    Serial::parse(text).unwrap_or_else(|e| panic!("serial {text}: {e}"))
}

/// A release of the numbers the patterns name.
pub fn release(
    class: &str,
    patterns: &[&str],
    opens_at_ms: u64,
    custom_from_ms: Option<u64>,
) -> NewRelease {
    NewRelease {
        class: class.into(),
        label: String::new(),
        opens_at_ms,
        custom_from_ms,
        source: ReleaseSource::Patterns(patterns.iter().map(|p| pattern(p)).collect()),
    }
}

pub fn application(user: &str, class: &str, energy: Energy) -> NewApplication {
    NewApplication {
        user: user.into(),
        phone: format!("1380000{:04}", user.len()),
        vin: format!("VIN-{user}"),
        class: class.into(),
        energy,
        notice_version: NOTICE.into(),
    }
}

/// Does the serial contain the digit 4 (R2.5)? Written on the text, not the engine's codes.
pub fn has_four(serial: Serial) -> bool {
    serial.to_string().contains('4')
}
