//! Office time (SPEC R4.8, §3 `service_hours`, API.md "Dates").
//!
//! The engine keeps every instant as `u64` milliseconds since the Unix epoch (names end in `_ms`),
//! which is cheap to store, compare and send. People, though, live in office local time: the
//! registration deadline is the end of a *working day* and service hours are wall-clock times.
//! Offices are in China (UTC+8 all year, no daylight saving), so local time is a fixed offset and
//! needs no time-zone database. [`now_ms`] is the only function here that reads the clock; the
//! rest are pure, so tests and the engine's actors can pass in any instant.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, Weekday};
use serde::{Deserialize, Serialize};

/// Office local time is UTC+8 (China Standard Time, no daylight saving).
pub const OFFICE_UTC_OFFSET_S: i32 = 8 * 3600;

/// The offset in milliseconds.
const OFFSET_MS: i64 = OFFICE_UTC_OFFSET_S as i64 * 1000;

/// Why a date, time or timestamp text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("'{text}' is not an RFC 3339 timestamp such as 2026-11-25T08:00:00Z: {reason}")]
    BadTimestamp { text: String, reason: String },
    #[error("'{text}' is before 1970-01-01T00:00:00Z, the earliest instant accepted")]
    BeforeEpoch { text: String },
    #[error("'{text}' is not a date in the form YYYY-MM-DD: {reason}")]
    BadDate { text: String, reason: String },
    #[error("'{text}' is not a time of day in the form HH:MM (00:00 to 23:59): {reason}")]
    BadTime { text: String, reason: String },
    #[error("service hours must close after they open: open {open}, close {close}")]
    CloseNotAfterOpen { open: String, close: String },
}

/// Office local wall-clock time of an instant. Instants past chrono's range (about year 262000)
/// are clamped to its end rather than failing: no real input gets there, and every caller gets
/// an answer.
pub fn local_datetime(ms: u64) -> NaiveDateTime {
    let local_ms = i64::try_from(ms)
        .unwrap_or(i64::MAX)
        .saturating_add(OFFSET_MS);
    DateTime::from_timestamp_millis(local_ms)
        .map(|d| d.naive_utc())
        .unwrap_or(NaiveDateTime::MAX)
}

/// The instant of an office local wall-clock time; times before the epoch give 0.
pub fn local_to_ms(local: NaiveDateTime) -> u64 {
    let utc_ms = local.and_utc().timestamp_millis().saturating_sub(OFFSET_MS);
    u64::try_from(utc_ms).unwrap_or(0)
}

/// The office local date of an instant.
pub fn local_date(ms: u64) -> NaiveDate {
    local_datetime(ms).date()
}

/// Weekends are never working days; neither are the office's holidays.
pub fn is_working_day(date: NaiveDate, holidays: &BTreeSet<NaiveDate>) -> bool {
    !matches!(date.weekday(), Weekday::Sat | Weekday::Sun) && !holidays.contains(&date)
}

/// The last second of the registration period (SPEC R4.8): 23:59:59.000 office local time of the
/// `validity_working_days`-th working day after the claim's local date, as UTC milliseconds.
/// The claim day itself never counts, even when it is a working day; with 0 days the deadline is
/// the end of the claim day.
pub fn register_by_ms(
    claimed_at_ms: u64,
    validity_working_days: u32,
    holidays: &BTreeSet<NaiveDate>,
) -> u64 {
    let mut date = local_date(claimed_at_ms);
    let mut counted = 0u32;
    while counted < validity_working_days {
        // At the end of chrono's calendar there is no next day: stop there instead of looping.
        let Some(next) = date.succ_opt() else { break };
        date = next;
        if is_working_day(date, holidays) {
            counted += 1;
        }
    }
    local_to_ms(date.and_time(end_of_day()))
}

/// 23:59:59.000, the end of a deadline day as the API shows it.
fn end_of_day() -> NaiveTime {
    NaiveTime::from_hms_opt(23, 59, 59).unwrap_or(NaiveTime::MIN)
}

/// When an office takes selections, in office local time: open from `open` (inclusive) to `close`
/// (exclusive) every day. JSON `{"open": "08:00", "close": "20:00"}`. Hours that run past
/// midnight are not supported (an office that is always open has no service hours at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "ServiceHoursText", into = "ServiceHoursText")]
pub struct ServiceHours {
    open: NaiveTime,
    close: NaiveTime,
}

/// The JSON shape of [`ServiceHours`].
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceHoursText {
    open: String,
    close: String,
}

impl TryFrom<ServiceHoursText> for ServiceHours {
    type Error = CalendarError;
    fn try_from(text: ServiceHoursText) -> Result<ServiceHours, CalendarError> {
        ServiceHours::parse(&text.open, &text.close)
    }
}

impl From<ServiceHours> for ServiceHoursText {
    fn from(hours: ServiceHours) -> ServiceHoursText {
        ServiceHoursText {
            open: format_hhmm(hours.open),
            close: format_hhmm(hours.close),
        }
    }
}

impl ServiceHours {
    /// Service hours from open to close; `close` must be later the same day.
    pub fn new(open: NaiveTime, close: NaiveTime) -> Result<ServiceHours, CalendarError> {
        if close <= open {
            return Err(CalendarError::CloseNotAfterOpen {
                open: format_hhmm(open),
                close: format_hhmm(close),
            });
        }
        Ok(ServiceHours { open, close })
    }

    /// Service hours from two "HH:MM" texts.
    pub fn parse(open: &str, close: &str) -> Result<ServiceHours, CalendarError> {
        ServiceHours::new(parse_hhmm(open)?, parse_hhmm(close)?)
    }

    pub fn open(&self) -> NaiveTime {
        self.open
    }

    pub fn close(&self) -> NaiveTime {
        self.close
    }

    /// Is selection open at this instant (office local time, open inclusive, close exclusive)?
    pub fn is_open(&self, now_ms: u64) -> bool {
        let time = local_datetime(now_ms).time();
        self.open <= time && time < self.close
    }

    /// The next instant, strictly after `now_ms`, at which selection opens or closes: so a page
    /// can count down to it and a scheduler can wake then.
    pub fn next_change_ms(&self, now_ms: u64) -> u64 {
        let now = local_datetime(now_ms);
        let (date, time) = (now.date(), now.time());
        let next = if time < self.open {
            date.and_time(self.open)
        } else if time < self.close {
            date.and_time(self.close)
        } else {
            match date.succ_opt() {
                Some(tomorrow) => tomorrow.and_time(self.open),
                None => NaiveDateTime::MAX,
            }
        };
        local_to_ms(next)
    }
}

impl fmt::Display for ServiceHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}–{}", format_hhmm(self.open), format_hhmm(self.close))
    }
}

fn format_hhmm(time: NaiveTime) -> String {
    time.format("%H:%M").to_string()
}

/// Parses exactly "HH:MM" (two digits each), as the office document writes service hours.
fn parse_hhmm(text: &str) -> Result<NaiveTime, CalendarError> {
    let bad = |reason: &str| CalendarError::BadTime {
        text: text.to_string(),
        reason: reason.to_string(),
    };
    let bytes = text.as_bytes();
    let shaped = bytes.len() == 5
        && bytes[2] == b':'
        && [0, 1, 3, 4].iter().all(|&i| bytes[i].is_ascii_digit());
    if !shaped {
        return Err(bad("expected two digits, a colon and two digits"));
    }
    let hour = u32::from(bytes[0] - b'0') * 10 + u32::from(bytes[1] - b'0');
    let minute = u32::from(bytes[3] - b'0') * 10 + u32::from(bytes[4] - b'0');
    if hour > 23 {
        return Err(bad("the hour must be 00 to 23"));
    }
    if minute > 59 {
        return Err(bad("the minutes must be 00 to 59"));
    }
    NaiveTime::from_hms_opt(hour, minute, 0).ok_or_else(|| bad("no such time"))
}

/// An instant as the API writes it: RFC 3339, UTC, milliseconds, "Z"
/// (`2026-11-25T08:00:00.000Z`).
pub fn rfc3339(ms: u64) -> String {
    let utc = i64::try_from(ms)
        .ok()
        .and_then(DateTime::from_timestamp_millis)
        .unwrap_or(DateTime::<chrono::Utc>::MAX_UTC);
    utc.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses an RFC 3339 timestamp with any offset (`Z`, `+08:00`, …) into epoch milliseconds.
/// Sub-millisecond digits are dropped. Instants before 1970 are refused: the engine never has a
/// reason to see one, so it is a typo.
pub fn parse_rfc3339(text: &str) -> Result<u64, CalendarError> {
    let trimmed = text.trim();
    let parsed =
        DateTime::parse_from_rfc3339(trimmed).map_err(|e| CalendarError::BadTimestamp {
            text: trimmed.to_string(),
            reason: e.to_string(),
        })?;
    u64::try_from(parsed.timestamp_millis()).map_err(|_| CalendarError::BeforeEpoch {
        text: trimmed.to_string(),
    })
}

/// Parses a date written exactly YYYY-MM-DD (holidays in office configuration).
pub fn parse_date(text: &str) -> Result<NaiveDate, CalendarError> {
    let trimmed = text.trim();
    let bad = |reason: &str| CalendarError::BadDate {
        text: trimmed.to_string(),
        reason: reason.to_string(),
    };
    let bytes = trimmed.as_bytes();
    let shaped = bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
    if !shaped {
        return Err(bad(
            "expected four digits, '-', two digits, '-', two digits",
        ));
    }
    NaiveDate::parse_from_str(trimmed, "%Y-%m-%d").map_err(|_| bad("there is no such day"))
}

/// The system clock as epoch milliseconds; a clock set before 1970 reads as 0.
pub fn now_ms() -> u64 {
    let now = chrono::Utc::now().timestamp_millis();
    u64::try_from(now).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> NaiveDate {
        parse_date(text).expect("valid date")
    }

    /// An office local wall-clock time as epoch ms, computed through an explicit "+08:00" offset
    /// so it does not rely on the module's own conversions.
    fn local_ms(text: &str) -> u64 {
        parse_rfc3339(&format!("{text}+08:00")).expect("valid local time")
    }

    fn holidays(list: &[&str]) -> BTreeSet<NaiveDate> {
        list.iter().map(|d| date(d)).collect()
    }

    #[test]
    fn rfc3339_formats_utc_with_millis() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        // 2026-11-25T08:00:00Z: 20782 days after the epoch, plus 8 h.
        let ms = (20_782u64 * 86_400 + 8 * 3600) * 1000;
        assert_eq!(rfc3339(ms), "2026-11-25T08:00:00.000Z");
        assert_eq!(rfc3339(ms + 7), "2026-11-25T08:00:00.007Z");
        assert!(!rfc3339(u64::MAX).is_empty());
    }

    #[test]
    fn parse_rfc3339_accepts_offsets_and_round_trips() {
        let ms = parse_rfc3339("2026-11-25T08:00:00Z").expect("valid");
        assert_eq!(ms, (20_782u64 * 86_400 + 8 * 3600) * 1000);
        assert_eq!(parse_rfc3339("2026-11-25T16:00:00+08:00"), Ok(ms));
        assert_eq!(parse_rfc3339("2026-11-25T03:00:00-05:00"), Ok(ms));
        assert_eq!(parse_rfc3339(" 2026-11-25T08:00:00.123456Z "), Ok(ms + 123));
        for sample in [0u64, 1, 999, ms, ms + 1, 4_102_444_800_000] {
            assert_eq!(parse_rfc3339(&rfc3339(sample)), Ok(sample));
        }
    }

    #[test]
    fn parse_rfc3339_errors_are_clear() {
        let before = parse_rfc3339("1969-12-31T23:59:59Z").expect_err("before epoch");
        assert!(matches!(before, CalendarError::BeforeEpoch { .. }));
        assert!(before.to_string().contains("1970"), "{before}");
        // The epoch itself, written in another zone, is fine; one ms before it is not.
        assert_eq!(parse_rfc3339("1970-01-01T08:00:00+08:00"), Ok(0));
        assert!(parse_rfc3339("1970-01-01T07:59:59.999+08:00").is_err());
        for bad in [
            "2026-11-25",
            "2026-11-25T08:00:00",
            "yesterday",
            "",
            "2026-13-01T00:00:00Z",
        ] {
            let e = parse_rfc3339(bad).expect_err(bad);
            assert!(
                matches!(e, CalendarError::BadTimestamp { .. }),
                "{bad}: {e:?}"
            );
            assert!(e.to_string().contains("RFC 3339"));
        }
    }

    #[test]
    fn local_date_uses_utc_plus_8() {
        // 15:59:59.999 UTC is 23:59:59.999 local, still the same day; 16:00 UTC is tomorrow.
        let ms = parse_rfc3339("2026-11-29T15:59:59.999Z").expect("valid");
        assert_eq!(local_date(ms), date("2026-11-29"));
        assert_eq!(local_date(ms + 1), date("2026-11-30"));
        assert_eq!(local_date(0), date("1970-01-01"));
        assert_eq!(local_to_ms(local_datetime(ms)), ms);
        assert_eq!(local_date(u64::MAX), NaiveDate::MAX);
    }

    #[test]
    fn parse_date_is_strict() {
        assert_eq!(
            parse_date("2026-10-01"),
            Ok(NaiveDate::from_ymd_opt(2026, 10, 1).expect("real date"))
        );
        for bad in [
            "2026-1-01",
            "2026/10/01",
            "26-10-01",
            "2026-10-01T00",
            "+2026-10-01",
            "",
        ] {
            let e = parse_date(bad).expect_err(bad);
            assert!(matches!(e, CalendarError::BadDate { .. }), "{bad}");
            assert!(e.to_string().contains("YYYY-MM-DD"));
        }
        let feb = parse_date("2026-02-29").expect_err("2026 is not a leap year");
        assert!(feb.to_string().contains("no such day"), "{feb}");
        assert!(parse_date("2028-02-29").is_ok());
    }

    #[test]
    fn register_by_skips_the_weekend() {
        // Friday 2026-11-27 10:00 local, 3 working days: Mon 30, Tue 1, Wed 2 December.
        let claim = local_ms("2026-11-27T10:00:00");
        assert_eq!(local_date(claim).weekday(), Weekday::Fri);
        let deadline = register_by_ms(claim, 3, &BTreeSet::new());
        assert_eq!(deadline, local_ms("2026-12-02T23:59:59"));
        assert_eq!(rfc3339(deadline), "2026-12-02T15:59:59.000Z");
    }

    #[test]
    fn register_by_never_counts_the_claim_day() {
        let no_holidays = BTreeSet::new();
        // Wednesday: Thu, Fri, Mon.
        let wed = local_ms("2026-11-25T00:00:00");
        assert_eq!(
            register_by_ms(wed, 3, &no_holidays),
            local_ms("2026-11-30T23:59:59")
        );
        // One ms before the end of Wednesday gives the same deadline.
        let late_wed = local_ms("2026-11-25T23:59:59.999");
        assert_eq!(
            register_by_ms(late_wed, 3, &no_holidays),
            register_by_ms(wed, 3, &no_holidays)
        );
        assert_eq!(
            register_by_ms(wed, 1, &no_holidays),
            local_ms("2026-11-26T23:59:59")
        );
        assert_eq!(
            register_by_ms(wed, 0, &no_holidays),
            local_ms("2026-11-25T23:59:59")
        );
        // 15 working days from Wednesday is three calendar weeks later.
        assert_eq!(
            register_by_ms(wed, 15, &no_holidays),
            local_ms("2026-12-16T23:59:59")
        );
    }

    #[test]
    fn register_by_uses_the_local_date_not_the_utc_date() {
        // Sunday 2026-11-29 23:30 local is still Sunday 15:30 UTC; Monday 00:30 local is
        // Sunday 16:30 UTC.
        let sunday_late = local_ms("2026-11-29T23:30:00");
        assert_eq!(rfc3339(sunday_late), "2026-11-29T15:30:00.000Z");
        assert_eq!(
            register_by_ms(sunday_late, 3, &BTreeSet::new()),
            local_ms("2026-12-02T23:59:59")
        );
        let monday_early = local_ms("2026-11-30T00:30:00");
        assert_eq!(rfc3339(monday_early), "2026-11-29T16:30:00.000Z");
        // The UTC date is still Sunday, but the claim day is Monday, which does not count.
        assert_eq!(
            register_by_ms(monday_early, 3, &BTreeSet::new()),
            local_ms("2026-12-03T23:59:59")
        );
    }

    #[test]
    fn register_by_skips_a_holiday_chain() {
        // 2026 National Day: October 1–7 off (a Thursday to the next Wednesday), and the
        // holidays of the set are exactly those seven days.
        let golden_week = holidays(&[
            "2026-10-01",
            "2026-10-02",
            "2026-10-03",
            "2026-10-04",
            "2026-10-05",
            "2026-10-06",
            "2026-10-07",
        ]);
        // Claim Wednesday 30 September: the next working days are Thu 8, Fri 9, Mon 12 October.
        let claim = local_ms("2026-09-30T09:00:00");
        assert_eq!(
            register_by_ms(claim, 3, &golden_week),
            local_ms("2026-10-12T23:59:59")
        );
        // Without the holidays it would be Mon 5 October.
        assert_eq!(
            register_by_ms(claim, 3, &BTreeSet::new()),
            local_ms("2026-10-05T23:59:59")
        );
        // A claim on a holiday: the holiday is the claim day and does not count either way.
        let on_holiday = local_ms("2026-10-03T11:00:00");
        assert_eq!(
            register_by_ms(on_holiday, 1, &golden_week),
            local_ms("2026-10-08T23:59:59")
        );
        assert_eq!(
            register_by_ms(on_holiday, 3, &golden_week),
            local_ms("2026-10-12T23:59:59")
        );
    }

    #[test]
    fn register_by_matches_a_day_by_day_count() {
        // Compare against a slow reference that walks calendar days and counts working ones,
        // for every claim day over two months and several validity periods.
        let hols = holidays(&["2026-12-25", "2027-01-01", "2026-12-31"]);
        let start = local_ms("2026-12-01T12:00:00");
        for day in 0..60u64 {
            let claim = start + day * 86_400_000;
            for n in [1u32, 3, 5, 15] {
                let deadline = register_by_ms(claim, n, &hols);
                let deadline_date = local_date(deadline);
                assert_eq!(local_datetime(deadline).time(), end_of_day());
                assert!(is_working_day(deadline_date, &hols));
                let working_between = local_date(claim)
                    .iter_days()
                    .skip(1)
                    .take_while(|d| *d <= deadline_date)
                    .filter(|d| {
                        let wd = d.weekday();
                        wd != Weekday::Sat && wd != Weekday::Sun && !hols.contains(d)
                    })
                    .count();
                assert_eq!(working_between, n as usize, "claim day {day}, n {n}");
            }
        }
    }

    fn hours(open: &str, close: &str) -> ServiceHours {
        ServiceHours::parse(open, close).expect("valid hours")
    }

    #[test]
    fn service_hours_open_inclusive_close_exclusive() {
        let h = hours("08:00", "20:00");
        assert!(!h.is_open(local_ms("2026-11-25T07:59:59.999")));
        assert!(h.is_open(local_ms("2026-11-25T08:00:00")));
        assert!(h.is_open(local_ms("2026-11-25T19:59:59.999")));
        assert!(!h.is_open(local_ms("2026-11-25T20:00:00")));
        assert!(!h.is_open(local_ms("2026-11-25T23:30:00")));
        // 00:30 UTC is 08:30 local: open, though the UTC clock says night.
        assert!(h.is_open(parse_rfc3339("2026-11-25T00:30:00Z").expect("valid")));
        // 13:00 UTC is 21:00 local: closed, though the UTC clock says afternoon.
        assert!(!h.is_open(parse_rfc3339("2026-11-25T13:00:00Z").expect("valid")));
    }

    #[test]
    fn service_hours_next_change() {
        let h = hours("08:00", "20:00");
        let cases = [
            ("2026-11-25T03:00:00", "2026-11-25T08:00:00"),
            ("2026-11-25T07:59:59.999", "2026-11-25T08:00:00"),
            ("2026-11-25T08:00:00", "2026-11-25T20:00:00"),
            ("2026-11-25T12:34:56", "2026-11-25T20:00:00"),
            ("2026-11-25T20:00:00", "2026-11-26T08:00:00"),
            ("2026-11-25T23:59:59.999", "2026-11-26T08:00:00"),
            ("2026-12-31T21:00:00", "2027-01-01T08:00:00"),
        ];
        for (now, next) in cases {
            let now_ms = local_ms(now);
            let next_ms = h.next_change_ms(now_ms);
            assert_eq!(next_ms, local_ms(next), "{now}");
            assert!(next_ms > now_ms);
            // The state flips exactly at the change and not a millisecond before.
            assert_eq!(h.is_open(next_ms - 1), h.is_open(now_ms), "{now}");
            assert_ne!(h.is_open(next_ms), h.is_open(now_ms), "{now}");
        }
    }

    #[test]
    fn service_hours_serde_and_validation() {
        let h: ServiceHours =
            serde_json::from_str(r#"{"open":"08:00","close":"20:00"}"#).expect("valid");
        assert_eq!(h.open(), NaiveTime::from_hms_opt(8, 0, 0).expect("time"));
        assert_eq!(h.close(), NaiveTime::from_hms_opt(20, 0, 0).expect("time"));
        assert_eq!(
            serde_json::to_string(&h).expect("serialize"),
            r#"{"open":"08:00","close":"20:00"}"#
        );
        assert_eq!(h.to_string(), "08:00–20:00");
        assert_eq!(hours("00:00", "23:59").open(), NaiveTime::MIN);

        for (open, close, needle) in [
            ("8:00", "20:00", "'8:00'"),
            ("08:00", "24:00", "00 to 23"),
            ("08:60", "20:00", "00 to 59"),
            ("08h00", "20:00", "HH:MM"),
            ("08:00:00", "20:00", "HH:MM"),
            ("", "20:00", "HH:MM"),
        ] {
            let e = ServiceHours::parse(open, close).expect_err(open);
            assert!(matches!(e, CalendarError::BadTime { .. }), "{open}-{close}");
            assert!(e.to_string().contains(needle), "{e}");
        }
        let backwards = ServiceHours::parse("20:00", "08:00").expect_err("backwards");
        assert_eq!(
            backwards,
            CalendarError::CloseNotAfterOpen {
                open: "20:00".into(),
                close: "08:00".into()
            }
        );
        assert!(ServiceHours::parse("08:00", "08:00").is_err());
        let json_err = serde_json::from_str::<ServiceHours>(r#"{"open":"20:00","close":"08:00"}"#)
            .expect_err("backwards");
        assert!(
            json_err.to_string().contains("close after they open"),
            "{json_err}"
        );
        assert!(serde_json::from_str::<ServiceHours>(r#"{"open":"08:00"}"#).is_err());
    }

    #[test]
    fn holidays_deserialize_as_dates() {
        let set: BTreeSet<NaiveDate> =
            serde_json::from_str(r#"["2026-10-01","2026-10-02"]"#).expect("dates");
        assert_eq!(set, holidays(&["2026-10-01", "2026-10-02"]));
    }

    #[test]
    fn now_is_after_2025() {
        let now = now_ms();
        assert!(now > parse_rfc3339("2025-01-01T00:00:00Z").expect("valid"));
        assert!(now < parse_rfc3339("2200-01-01T00:00:00Z").expect("valid"));
    }
}
