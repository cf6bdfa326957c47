//! Offices as the API writes them: the list, the office document (`GET /v1/offices/{office}`,
//! the answer to `PUT /v1/admin/offices/{office}`, whose body is [`OfficeSettings`]) and the pool
//! notice.
//!
//! [`OfficeSettings`] and [`OfficeRulesDoc`] are the engine's `OfficeConfig` and `OfficeRules`
//! as JSON: read from the engine's own serialization, so what is written is exactly what the
//! engine keeps, and refusing fields they do not list, so a field added to the engine without
//! them fails loudly (the tests below) instead of going undocumented.

use std::collections::BTreeMap;

use platepool_engine::calendar::rfc3339;
use platepool_engine::engine::OfficeSummary;
use platepool_engine::pool::ClassStats;
use platepool_engine::{Engine, OfficeConfig};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};

/// One office of `GET /v1/offices`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = OfficeSummary)]
pub struct OfficeSummaryAnswer {
    pub id: String,
    pub name: String,
    /// Province character and office letter, e.g. 粤K.
    pub prefix: String,
    pub classes: Vec<String>,
}

impl From<OfficeSummary> for OfficeSummaryAnswer {
    fn from(o: OfficeSummary) -> OfficeSummaryAnswer {
        OfficeSummaryAnswer {
            id: o.id,
            name: o.name,
            prefix: o.prefix,
            classes: o.classes,
        }
    }
}

/// An office's configuration: the body of `PUT /v1/admin/offices/{office}` (API.md
/// "Documents"). Omitted rules take the defaults of SPEC §3.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = OfficeConfig)]
pub struct OfficeSettings {
    pub name: String,
    pub prefix: String,
    pub classes: Vec<String>,
    #[serde(default)]
    pub rules: OfficeRulesDoc,
    #[serde(default)]
    pub notice: NoticeDoc,
}

/// The rules of SPEC §3; omitted rules take the defaults (written from the engine's rules, so
/// every one is present in an answer; the zeros of `Default` are never written).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
#[schema(as = OfficeRules)]
pub struct OfficeRulesDoc {
    pub custom_quota: u32,
    pub custom_per_check: u32,
    pub custom_min_interval_ms: u64,
    pub random_quota: u32,
    pub random_batch: u32,
    pub random_ttl_ms: u64,
    pub candidate_ttl_ms: u64,
    pub sms_confirm_delay_ms: u64,
    pub validity_working_days: u32,
    /// Dates (office local) that are not working days.
    #[schema(value_type = Vec<String>, format = Date)]
    pub holidays: Vec<String>,
    pub blacklist_days: u32,
    /// null: always open.
    pub service_hours: Option<ServiceHoursDoc>,
    pub maintenance: bool,
    pub opening_window_ms: u64,
    pub random_min_interval_ms: u64,
    /// Allowed custom shapes per class name.
    pub custom_patterns: BTreeMap<String, Vec<String>>,
    /// `three_identical_digits`, `four_identical_digits` or `pattern:<pattern>`.
    pub deny: Vec<String>,
}

/// Service hours in the office's local time (UTC+8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ServiceHours)]
pub struct ServiceHoursDoc {
    #[schema(example = "08:00")]
    pub open: String,
    #[schema(example = "20:00")]
    pub close: String,
}

/// The business notice (业务须知).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Notice)]
pub struct NoticeDoc {
    pub version: String,
    pub text: String,
}

/// The office document: the configuration (no secrets in it) with the office's id and, per
/// class, the custom-number shapes in force (the configured ones or the class defaults).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = Office)]
pub struct OfficeDocument {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub classes: Vec<String>,
    pub rules: OfficeRulesDoc,
    pub notice: NoticeDoc,
    pub class_details: Vec<ClassDetails>,
}

/// A class as the office serves it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ClassDetails {
    pub class: String,
    pub serial_length: usize,
    /// Every serial of the class matches this pattern.
    pub shape: String,
    pub custom_patterns: Vec<String>,
    pub deny: Vec<String>,
    pub groups: Vec<EnergyGroupDoc>,
}

/// Numbers of a class kept for some energies (the new-energy D/F groups).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = EnergyGroup)]
pub struct EnergyGroupDoc {
    pub name: String,
    pub pattern: String,
    #[schema(value_type = Vec<String>)]
    pub energies: Vec<&'static str>,
}

impl OfficeSettings {
    /// The engine's configuration as written (see the module's text).
    pub fn of(config: &OfficeConfig) -> ApiResult<OfficeSettings> {
        serde_json::to_value(config)
            .and_then(serde_json::from_value)
            .map_err(|e| ApiError::unavailable(format!("office document: {e}")))
    }
}

impl OfficeDocument {
    pub fn new(engine: &Engine, id: &str, config: &OfficeConfig) -> ApiResult<OfficeDocument> {
        let settings = OfficeSettings::of(config)?;
        let class_details = config
            .classes
            .iter()
            .filter_map(|name| engine.catalog().iter().find(|c| &c.name == name))
            .map(|class| {
                let rules = config.composition_rules(class);
                ClassDetails {
                    class: class.name.clone(),
                    serial_length: class.serial_len(),
                    shape: class.shape.to_string(),
                    custom_patterns: rules.allowed().iter().map(ToString::to_string).collect(),
                    deny: rules.deny().iter().map(ToString::to_string).collect(),
                    groups: class
                        .groups
                        .iter()
                        .map(|g| EnergyGroupDoc {
                            name: g.name.clone(),
                            pattern: g.pattern.to_string(),
                            energies: g.energies.iter().map(|e| e.as_str()).collect(),
                        })
                        .collect(),
                }
            })
            .collect();
        Ok(OfficeDocument {
            id: id.to_string(),
            name: settings.name,
            prefix: settings.prefix,
            classes: settings.classes,
            rules: settings.rules,
            notice: settings.notice,
            class_details,
        })
    }
}

/// The pool notice (号池公示): per class, the numbers a draw or check could take.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PoolNotice<'a> {
    pub office: &'a str,
    /// Every change acknowledged more than 100 ms before this is in the figures.
    #[schema(format = DateTime)]
    pub as_of: String,
    pub classes: Vec<PoolClass<'a>>,
}

/// One class of a pool notice.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PoolClass<'a> {
    pub class: &'a str,
    pub available: u64,
    pub releases: Vec<PoolRelease<'a>>,
}

/// One release of a pool notice; not yet open: `available` 0.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PoolRelease<'a> {
    pub id: u32,
    pub label: &'a str,
    #[schema(format = DateTime)]
    pub opens_at: String,
    #[schema(format = DateTime)]
    pub custom_from: String,
    pub total: u64,
    pub available: u64,
    pub open: bool,
    pub withdrawn: bool,
}

impl<'a> PoolNotice<'a> {
    /// The notice from the office's figures at `as_of_ms`.
    pub fn new(office: &'a str, as_of_ms: u64, stats: &'a [ClassStats]) -> PoolNotice<'a> {
        let classes = stats
            .iter()
            .map(|c| PoolClass {
                class: &c.class,
                available: c.counts.available,
                releases: c
                    .releases
                    .iter()
                    .map(|r| {
                        let open = r.opens_at_ms <= as_of_ms;
                        // Before its opening a release's numbers are neither visible nor
                        // drawable.
                        let available = if open && !r.withdrawn {
                            r.counts.available
                        } else {
                            0
                        };
                        PoolRelease {
                            id: r.id,
                            label: &r.label,
                            opens_at: rfc3339(r.opens_at_ms),
                            custom_from: rfc3339(r.custom_from_ms),
                            total: r.total,
                            available,
                            open,
                            withdrawn: r.withdrawn,
                        }
                    })
                    .collect(),
            })
            .collect();
        PoolNotice {
            office,
            as_of: rfc3339(as_of_ms),
            classes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use platepool_engine::{Notice, OfficeRules};

    /// Every field the engine writes is one the document lists, and written back unchanged.
    #[test]
    fn office_settings_are_the_engines_configuration_as_written() {
        let mut rules: OfficeRules = serde_json::from_value(serde_json::json!({
            "holidays": ["2026-10-01"],
            "service_hours": {"open": "08:00", "close": "20:00"},
            "custom_patterns": {"small": ["#####", "@####"]},
            "deny": ["three_identical_digits"],
        }))
        .expect("rules");
        rules.maintenance = true;
        for rules in [OfficeRules::default(), rules] {
            let config = OfficeConfig {
                name: "茂名市车辆管理所".into(),
                prefix: "粤K".into(),
                classes: vec!["small".into()],
                rules,
                notice: Notice {
                    version: "v1".into(),
                    text: "须知".into(),
                },
            };
            let settings = OfficeSettings::of(&config).expect("the engine's fields are listed");
            assert_eq!(
                serde_json::to_value(&settings).expect("json"),
                serde_json::to_value(&config).expect("json")
            );
            let back: OfficeConfig =
                serde_json::from_value(serde_json::to_value(&settings).expect("json"))
                    .expect("the engine reads it");
            assert_eq!(back, config);
        }
    }
}
