//! Office configuration (SPEC §3): every value per office, with the published defaults.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::calendar::ServiceHours;
use crate::class::PlateClass;
use crate::pattern::Pattern;
use crate::rules::{CompositionRules, DenyRule};

/// Most numbers one custom check may name (an office may set fewer).
pub const CUSTOM_PER_CHECK_MAX: u32 = 10;
/// Most numbers one random draw may offer.
pub const RANDOM_BATCH_MAX: u32 = 50;
/// Largest quota of either kind an office may give a vehicle.
pub const QUOTA_MAX: u32 = 1_000;
/// Longest any hold may last.
pub const HOLD_TTL_MAX_MS: u64 = 24 * 3_600_000;
/// Longest an opening window may last.
pub const OPENING_WINDOW_MAX_MS: u64 = 60_000;
/// Longest least time between two draws: longer than a batch lives would leave a citizen
/// waiting with nothing to choose from.
pub const RANDOM_MIN_INTERVAL_MAX_MS: u64 = 60_000;
/// Most working days a pre-selection may stay valid.
pub const VALIDITY_WORKING_DAYS_MAX: u32 = 60;
/// Longest blacklist.
pub const BLACKLIST_DAYS_MAX: u32 = 3_650;
/// Longest office id: ids appear in URLs and storage keys.
pub const OFFICE_ID_LEN_MAX: usize = 32;

/// Checks an office id: 1..=32 of `a-z 0-9 _`, so it is safe in URLs, keys and application ids.
pub fn validate_office_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > OFFICE_ID_LEN_MAX {
        return Err(format!(
            "office id must have 1 to {OFFICE_ID_LEN_MAX} characters"
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        return Err(format!(
            "office id may contain only a-z, 0-9 and '_', not '{c}'"
        ));
    }
    Ok(())
}

/// The rules of SPEC §3. Field names are the API's; omitted fields take the defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OfficeRules {
    /// Numbers a vehicle may check by custom selection (剩余自编号牌个数).
    pub custom_quota: u32,
    /// Most numbers entered in one custom check.
    pub custom_per_check: u32,
    /// Least time between two custom checks of one application.
    pub custom_min_interval_ms: u64,
    /// Random draws per vehicle.
    pub random_quota: u32,
    /// Numbers offered per draw.
    pub random_batch: u32,
    /// Life of a drawn batch.
    pub random_ttl_ms: u64,
    /// Life of the candidate list, restarted on each draw and each pick.
    pub candidate_ttl_ms: u64,
    /// Wait before an identity SMS code may be submitted.
    pub sms_confirm_delay_ms: u64,
    /// Working days to register, not counting the selection day.
    pub validity_working_days: u32,
    /// Dates (office local) that are not working days; weekends never are.
    pub holidays: BTreeSet<NaiveDate>,
    pub blacklist_days: u32,
    /// `None`: always open.
    pub service_hours: Option<ServiceHours>,
    /// Selection closed for maintenance.
    pub maintenance: bool,
    /// Requests for a release in its first milliseconds are served in random order (0: off).
    pub opening_window_ms: u64,
    /// Least time between two random draws of one application, started by every draw that
    /// passes validation whether or not it finds numbers (R4.14): polling for numbers that come
    /// back from expired holds gains a script nothing over a person clicking (0: off).
    pub random_min_interval_ms: u64,
    /// Allowed custom shapes per class name; a class not named uses its class defaults.
    pub custom_patterns: BTreeMap<String, Vec<Pattern>>,
    pub deny: Vec<DenyRule>,
}

impl Default for OfficeRules {
    fn default() -> Self {
        OfficeRules {
            custom_quota: 20,
            custom_per_check: 5,
            custom_min_interval_ms: 8_000,
            random_quota: 5,
            random_batch: 10,
            random_ttl_ms: 90_000,
            candidate_ttl_ms: 180_000,
            sms_confirm_delay_ms: 5_000,
            validity_working_days: 3,
            holidays: BTreeSet::new(),
            blacklist_days: 730,
            service_hours: None,
            maintenance: false,
            opening_window_ms: 1_000,
            random_min_interval_ms: 1_000,
            custom_patterns: BTreeMap::new(),
            deny: Vec::new(),
        }
    }
}

/// The business notice (业务须知) a citizen accepts before applying.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Notice {
    pub version: String,
    pub text: String,
}

/// One office: its public identity, the classes it serves, its rules and notice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfficeConfig {
    pub name: String,
    /// Province character and office letter, e.g. "粤K".
    pub prefix: String,
    pub classes: Vec<String>,
    #[serde(default)]
    pub rules: OfficeRules,
    #[serde(default)]
    pub notice: Notice,
}

/// A configuration field that is out of range, with the JSON path at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

fn config_error(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

impl OfficeConfig {
    /// Checks every value against its limit and resolves the class names against `catalog`.
    pub fn validate(&self, catalog: &[PlateClass]) -> Result<(), ConfigError> {
        if self.name.trim().is_empty() || self.name.chars().count() > 64 {
            return Err(config_error("name", "must have 1 to 64 characters"));
        }
        if self.prefix.trim().is_empty() || self.prefix.chars().count() > 4 {
            return Err(config_error(
                "prefix",
                "must have 1 to 4 characters, e.g. 粤K",
            ));
        }
        if self.classes.is_empty() {
            return Err(config_error(
                "classes",
                "an office serves at least one class",
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, name) in self.classes.iter().enumerate() {
            if !catalog.iter().any(|c| &c.name == name) {
                let known: Vec<&str> = catalog.iter().map(|c| c.name.as_str()).collect();
                return Err(config_error(
                    format!("classes[{i}]"),
                    format!("unknown class {name}; known: {}", known.join(", ")),
                ));
            }
            if !seen.insert(name) {
                return Err(config_error(format!("classes[{i}]"), "named twice"));
            }
        }
        let r = &self.rules;
        let ranges: [(&str, u64, u64, u64); 12] = [
            ("custom_quota", r.custom_quota as u64, 0, QUOTA_MAX as u64),
            (
                "custom_per_check",
                r.custom_per_check as u64,
                1,
                CUSTOM_PER_CHECK_MAX as u64,
            ),
            (
                "custom_min_interval_ms",
                r.custom_min_interval_ms,
                0,
                HOLD_TTL_MAX_MS,
            ),
            ("random_quota", r.random_quota as u64, 0, QUOTA_MAX as u64),
            (
                "random_batch",
                r.random_batch as u64,
                1,
                RANDOM_BATCH_MAX as u64,
            ),
            ("random_ttl_ms", r.random_ttl_ms, 1_000, HOLD_TTL_MAX_MS),
            (
                "candidate_ttl_ms",
                r.candidate_ttl_ms,
                1_000,
                HOLD_TTL_MAX_MS,
            ),
            ("sms_confirm_delay_ms", r.sms_confirm_delay_ms, 0, 300_000),
            (
                "validity_working_days",
                r.validity_working_days as u64,
                1,
                VALIDITY_WORKING_DAYS_MAX as u64,
            ),
            (
                "blacklist_days",
                r.blacklist_days as u64,
                0,
                BLACKLIST_DAYS_MAX as u64,
            ),
            (
                "opening_window_ms",
                r.opening_window_ms,
                0,
                OPENING_WINDOW_MAX_MS,
            ),
            (
                "random_min_interval_ms",
                r.random_min_interval_ms,
                0,
                RANDOM_MIN_INTERVAL_MAX_MS,
            ),
        ];
        for (field, value, lo, hi) in ranges {
            if value < lo || value > hi {
                return Err(config_error(
                    format!("rules.{field}"),
                    format!("{value} is outside {lo}..={hi}"),
                ));
            }
        }
        for (class, patterns) in &r.custom_patterns {
            let Some(def) = catalog.iter().find(|c| &c.name == class) else {
                return Err(config_error(
                    format!("rules.custom_patterns.{class}"),
                    "unknown class",
                ));
            };
            for (i, p) in patterns.iter().enumerate() {
                if p.len() != def.serial_len() {
                    return Err(config_error(
                        format!("rules.custom_patterns.{class}[{i}]"),
                        format!(
                            "{p} has {} characters, the class has {}",
                            p.len(),
                            def.serial_len()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The composition rules for custom numbers of one class.
    pub fn composition_rules(&self, class: &PlateClass) -> CompositionRules {
        let allowed = self
            .rules
            .custom_patterns
            .get(&class.name)
            .cloned()
            .unwrap_or_else(|| class.default_custom_patterns.clone());
        CompositionRules::new(allowed, self.rules.deny.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn office() -> OfficeConfig {
        OfficeConfig {
            name: "茂名市车辆管理所".into(),
            prefix: "粤K".into(),
            classes: vec!["small".into(), "small_new_energy".into()],
            rules: OfficeRules::default(),
            notice: Notice::default(),
        }
    }

    #[test]
    fn defaults_are_the_published_ones() {
        let r = OfficeRules::default();
        assert_eq!(
            (
                r.custom_quota,
                r.custom_per_check,
                r.random_quota,
                r.random_batch
            ),
            (20, 5, 5, 10)
        );
        assert_eq!((r.random_ttl_ms, r.candidate_ttl_ms), (90_000, 180_000));
        assert_eq!(r.random_min_interval_ms, 1_000);
        office().validate(&PlateClass::builtin()).expect("valid");
    }

    #[test]
    fn omitted_rules_take_defaults_and_unknown_fields_are_refused() {
        let json = r#"{"name":"n","prefix":"粤K","classes":["small"],"rules":{"custom_quota":7}}"#;
        let c: OfficeConfig = serde_json::from_str(json).expect("parses");
        assert_eq!(c.rules.custom_quota, 7);
        assert_eq!(c.rules.random_quota, 5);
        let bad = r#"{"name":"n","prefix":"粤K","classes":["small"],"rules":{"custom_qouta":7}}"#;
        assert!(serde_json::from_str::<OfficeConfig>(bad).is_err());
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        let catalog = PlateClass::builtin();
        let mut c = office();
        c.rules.random_batch = 0;
        assert_eq!(
            c.validate(&catalog).expect_err("bad").field,
            "rules.random_batch"
        );
        let mut c = office();
        c.rules.random_min_interval_ms = RANDOM_MIN_INTERVAL_MAX_MS + 1;
        assert_eq!(
            c.validate(&catalog).expect_err("bad").field,
            "rules.random_min_interval_ms"
        );
        let mut c = office();
        c.classes.push("truck".into());
        assert_eq!(c.validate(&catalog).expect_err("bad").field, "classes[2]");
        let mut c = office();
        c.rules
            .custom_patterns
            .insert("small".into(), vec![Pattern::parse("####").expect("p")]);
        assert_eq!(
            c.validate(&catalog).expect_err("bad").field,
            "rules.custom_patterns.small[0]"
        );
        assert!(validate_office_id("maoming").is_ok());
        assert!(validate_office_id("Mao-ming").is_err());
        assert!(validate_office_id("").is_err());
    }
}
