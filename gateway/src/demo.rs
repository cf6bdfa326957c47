//! Demo data for `platepool serve --demo`: the Maoming office (茂名市车辆管理所, 粤K) with
//! published-looking rules and notice, two releases opening at once, and certificate records for
//! twenty demo vehicles. Seeded only into an engine that has no office yet, so a restart keeps
//! what the demo did.

use platepool_engine::vin::Vin;
use platepool_engine::{CertificateRow, Engine, NewRelease, OfficeConfig, Pattern, ReleaseSource};
use serde::Serialize;
use serde_json::json;

/// The demo office's id.
pub const OFFICE: &str = "maoming";
/// The demo office's notice version (what a citizen accepts).
pub const NOTICE_VERSION: &str = "2026-11";

/// One demo vehicle: what a citizen types in stage 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DemoVehicle {
    pub vin: String,
    pub voucher: String,
    pub class: String,
    pub energy: String,
}

/// What `seed` did, for the binary to print.
#[derive(Debug, Clone, Serialize)]
pub struct DemoInfo {
    /// False when the engine already had offices (nothing was changed).
    pub seeded: bool,
    pub office: String,
    pub notice_version: String,
    pub vehicles: Vec<DemoVehicle>,
    /// (release id, numbers) of the releases made.
    pub releases: Vec<(u32, u64)>,
}

const NOTICE_TEXT: &str = "茂名市车辆管理所互联网预选号牌业务须知\n\
一、互联网预选号牌适用于在本市购买新车、需在茂名市车辆管理所办理注册登记的机动车所有人，一辆车只能预选一次号牌号码。\n\
二、每辆车可自编号牌20个、随机选号5次（每次从10个号码中选取1个）。自编号牌每次最多可同时输入5个号码，两次确认操作间隔不少于8秒。\n\
三、自编号牌须符合本所公布的编码规则，不得含有三个连续相同的数字。\n\
四、号牌号码预选成功后，须在3个工作日内（节假日顺延）携带车辆及相关资料到车辆管理所办理注册登记；逾期未办理的，预选号牌号码作废并收回，两年内不得通过互联网预选号牌。\n\
五、号牌号码一经预选不得更改或转让；禁止使用软件等非正常手段选号，违者取消选号资格。\n\
六、本人已阅读并同意遵守上述须知，对所提交信息的真实性负责。";

/// The demo office document (the body of `PUT /v1/admin/offices/maoming`).
pub fn office_config() -> Result<OfficeConfig, String> {
    serde_json::from_value(json!({
        "name": "茂名市车辆管理所",
        "prefix": "粤K",
        "classes": ["small", "small_new_energy"],
        "rules": {
            "custom_quota": 20, "custom_per_check": 5, "custom_min_interval_ms": 8000,
            "random_quota": 5, "random_batch": 10, "random_ttl_ms": 90000, "candidate_ttl_ms": 180000,
            "sms_confirm_delay_ms": 5000, "validity_working_days": 3,
            "holidays": ["2026-10-01", "2026-10-02", "2026-10-05", "2026-10-06", "2026-10-07", "2027-01-01"],
            "blacklist_days": 730, "service_hours": null, "maintenance": false, "opening_window_ms": 1000,
            "random_min_interval_ms": 1000,
            "custom_patterns": {
                "small": ["#####", "@####", "#@###", "##@##", "###@#", "####@", "@@###"],
                "small_new_energy": ["[DF]#####", "[DF]@####"]
            },
            "deny": ["three_identical_digits"]
        },
        "notice": {"version": NOTICE_VERSION, "text": NOTICE_TEXT}
    }))
    .map_err(|e| format!("demo office: {e}"))
}

/// The twenty demo vehicles: ten petrol cars, six battery-electric and four plug-in hybrids.
/// Always the same, so a restarted demo can print them again.
pub fn vehicles() -> Vec<DemoVehicle> {
    // (maker code and descriptor, energy, class)
    let kinds: [(&str, &str, &str, usize); 3] = [
        ("LFV2A21K", "fuel", "small", 10),
        ("LGXCE4C4", "bev", "small_new_energy", 6),
        ("LGXDF4A5", "phev", "small_new_energy", 4),
    ];
    let mut out = Vec::new();
    let mut n = 0u64;
    for (head, energy, class, count) in kinds {
        for _ in 0..count {
            n += 1;
            // 8 characters, the check digit's place, model year S (2025), plant A, serial.
            let raw = format!("{head}0SA{:06}", 260_000 + n * 37);
            let Some(vin) = Vin::with_check_digit(&raw) else {
                continue;
            };
            out.push(DemoVehicle {
                vin: vin.into_string(),
                voucher: format!("WDM{:012}", 251_100_000_000u64 + n * 1_013),
                class: class.to_string(),
                energy: energy.to_string(),
            });
        }
    }
    out
}

fn patterns(texts: &[&str]) -> Result<ReleaseSource, String> {
    texts
        .iter()
        .map(|t| Pattern::parse(t).map_err(|e| format!("demo pattern {t}: {e}")))
        .collect::<Result<Vec<_>, _>>()
        .map(ReleaseSource::Patterns)
}

/// Seeds the demo into an engine that has no office yet; otherwise changes nothing.
pub async fn seed(engine: &Engine, who: &str) -> Result<DemoInfo, String> {
    let vehicles = vehicles();
    let mut info = DemoInfo {
        seeded: false,
        office: OFFICE.to_string(),
        notice_version: NOTICE_VERSION.to_string(),
        vehicles: vehicles.clone(),
        releases: Vec::new(),
    };
    if !engine.offices().is_empty() {
        return Ok(info);
    }
    engine
        .put_office(OFFICE, office_config()?, who)
        .await
        .map_err(|e| format!("demo office: {e}"))?;
    let now = engine.now_ms();
    let releases = [
        ("small", "粤K·A0000–B9999", patterns(&["A####", "B####"])?),
        (
            "small_new_energy",
            "粤K·DA0000–DB9999, FA0000–FA9999",
            patterns(&["D[AB]####", "FA####"])?,
        ),
    ];
    for (class, label, source) in releases {
        let release = NewRelease {
            class: class.to_string(),
            label: label.to_string(),
            opens_at_ms: now,
            custom_from_ms: None,
            source,
        };
        let made = engine
            .add_release(OFFICE, release, who)
            .await
            .map_err(|e| format!("demo release {label}: {e}"))?;
        info.releases.push(made);
    }
    let rows = vehicles
        .iter()
        .map(|v| CertificateRow {
            vin: v.vin.clone(),
            voucher: v.voucher.clone(),
            class: v.class.clone(),
            energy: v.energy.clone(),
        })
        .collect();
    let report = engine
        .import_certificates(rows, "system")
        .await
        .map_err(|e| format!("demo certificates: {e}"))?;
    if let Some(bad) = report.rejected.first() {
        return Err(format!("demo certificate row {}: {}", bad.row, bad.reason));
    }
    info.seeded = true;
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_data_is_valid() {
        let v = vehicles();
        assert_eq!(v.len(), 20);
        for x in &v {
            assert!(
                platepool_engine::vin::check_vin(&x.vin).is_ok(),
                "{}",
                x.vin
            );
        }
        let config = office_config().expect("office");
        config
            .validate(&platepool_engine::PlateClass::builtin())
            .expect("valid office");
        assert_eq!(config.notice.version, NOTICE_VERSION);
    }
}
