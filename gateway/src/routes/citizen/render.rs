//! How the citizen API writes applications, holds, plates and claims.

use platepool_engine::calendar::rfc3339;
use platepool_engine::plate::{full_plate, FullPlate};
use platepool_engine::vin::Vin;
use platepool_engine::{AppId, AppState, AppView, Claim, HoldView, Serial};
use serde::Serialize;
use serde_json::{json, Value};

use super::request::ms_left;
use crate::auth::Citizen;
use crate::Gateway;

pub(super) fn prefix_of(gw: &Gateway, office: &str) -> String {
    gw.engine
        .office_config(office)
        .map(|c| c.prefix.clone())
        .unwrap_or_default()
}

/// A value written into the answer with its `Display`, without an intermediate `String`.
struct Shown<T>(T);

impl<T: std::fmt::Display> Serialize for Shown<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// `{"plate": "粤K·A1234", "serial": "A1234"}`.
struct PlateOut<'a> {
    prefix: &'a str,
    serial: Serial,
}

impl Serialize for PlateOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("plate", &Shown(FullPlate(self.prefix, self.serial)))?;
        m.serialize_entry("serial", self.serial.text().as_str())?;
        m.end()
    }
}

/// The plates of a hold, written as a sequence without collecting them first.
struct PlatesOut<'a> {
    prefix: &'a str,
    serials: &'a [Serial],
}

impl Serialize for PlatesOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.serials.iter().map(|&serial| PlateOut {
            prefix: self.prefix,
            serial,
        }))
    }
}

/// A batch or the candidates: `{"expires_at", "expires_in_ms", "plates": [...]}`.
pub(super) struct HoldOut<'a> {
    pub(super) prefix: &'a str,
    pub(super) hold: &'a HoldView,
    pub(super) now_ms: u64,
}

impl Serialize for HoldOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let plates = PlatesOut {
            prefix: self.prefix,
            serials: &self.hold.serials,
        };
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("expires_at", &rfc3339(self.hold.expires_at_ms))?;
        m.serialize_entry(
            "expires_in_ms",
            &ms_left(self.hold.expires_at_ms, self.now_ms),
        )?;
        m.serialize_entry("plates", &plates)?;
        m.end()
    }
}

pub(super) fn hold_json(prefix: &str, hold: &HoldView, now_ms: u64) -> Value {
    serde_json::to_value(HoldOut {
        prefix,
        hold,
        now_ms,
    })
    .unwrap_or(Value::Null)
}

pub(super) fn claim_json(prefix: &str, claim: &Claim, now_ms: u64) -> Value {
    json!({
        "serial": claim.serial.to_string(),
        "plate": full_plate(prefix, claim.serial),
        "claimed_at": rfc3339(claim.claimed_at_ms),
        "register_by": rfc3339(claim.register_by_ms),
        "register_by_in_ms": ms_left(claim.register_by_ms, now_ms),
        "voucher": { "serial": claim.voucher_serial, "code": claim.voucher_code },
        "void": claim.void,
    })
}

/// The VIN with its middle hidden (`LSV**********1234`); `None` for practice (no vehicle).
pub(super) fn masked_vin(vin: &str) -> Option<String> {
    if vin.is_empty() {
        return None;
    }
    Some(match Vin::parse(vin) {
        Ok(v) => v.masked(),
        Err(_) => {
            let n = vin.chars().count();
            vin.chars()
                .enumerate()
                .map(|(i, c)| if i < 3 || i + 4 >= n { c } else { '*' })
                .collect()
        }
    })
}

fn identity_valid(view: &AppView, now_ms: u64) -> bool {
    view.record.verified_until_ms.is_some_and(|u| u > now_ms)
}

/// Where the application stands in the flow (stage, step), if anywhere.
pub(super) fn position(view: &AppView, now_ms: u64) -> Option<(u8, u8)> {
    match view.record.state {
        AppState::Claimed | AppState::Issued => Some((2, 3)),
        AppState::Confirmed | AppState::Selecting if identity_valid(view, now_ms) => Some((2, 2)),
        AppState::Confirmed | AppState::Selecting => Some((1, 3)),
        AppState::Exhausted | AppState::Lapsed | AppState::Voided => None,
    }
}

pub(super) fn state_message(state: AppState) -> Option<&'static str> {
    match state {
        AppState::Exhausted => Some("自编和随机选号次数已用完，请到车管所窗口现场选号。"),
        AppState::Lapsed => Some("预选号牌已过注册登记期限，号牌已收回。"),
        AppState::Voided => Some("预选号牌已应您的申请作废。"),
        _ => None,
    }
}

pub(super) fn app_json(gw: &Gateway, id: &AppId, view: &AppView, now_ms: u64) -> Value {
    let prefix = prefix_of(gw, &id.office);
    let r = &view.record;
    let (stage, step) = match position(view, now_ms) {
        Some((stage, step)) => (json!(stage), json!(step)),
        None => (Value::Null, Value::Null),
    };
    let selecting = r.state.selecting();
    let checks_timed = selecting
        && r.custom_left > 0
        && (r.verified_at_ms.is_some() || r.last_check_at_ms.is_some());
    json!({
        "id": id.to_string(),
        "office": id.office,
        "class": r.class,
        "energy": r.energy.as_str(),
        "vin": masked_vin(&r.vin),
        "state": r.state.as_str(),
        "practice": view.practice,
        "custom_left": r.custom_left,
        "random_left": r.random_left,
        "batch": view.batch.as_ref().map(|b| {
            let mut v = hold_json(&prefix, b, now_ms);
            v["picked"] = json!(view.batch_picked);
            v
        }),
        "candidates": view.candidates.as_ref().map(|c| hold_json(&prefix, c, now_ms)),
        "claim": r.claim.as_ref().map(|c| claim_json(&prefix, c, now_ms)),
        "created_at": rfc3339(r.created_at_ms),
        "notice_version": r.notice_version,
        "identity_verified": identity_valid(view, now_ms),
        "verified_until": r.verified_until_ms.filter(|&u| u > now_ms).map(rfc3339),
        "verified_until_in_ms": r.verified_until_ms.map(|u| ms_left(u, now_ms)).filter(|&l| l > 0),
        // The interval runs from the identity verification or the last check; before either
        // there is no instant to give (the first check waits for the verification anyway).
        "next_check_at": checks_timed.then(|| rfc3339(view.next_check_at_ms)),
        "next_check_in_ms": checks_timed.then(|| ms_left(view.next_check_at_ms, now_ms)),
        "closed_at": r.closed_at_ms.map(rfc3339),
        "stage": stage,
        "step": step,
        "message": state_message(r.state),
    })
}

/// The phone an application's messages go to: the one it was opened with (practice applications
/// have none: the caller's).
pub(super) fn app_phone(view: &AppView, citizen: &Citizen) -> String {
    if view.record.phone.is_empty() {
        citizen.phone.clone()
    } else {
        view.record.phone.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vins_are_masked() {
        assert_eq!(masked_vin(""), None);
        assert_eq!(
            masked_vin("ABCDEFGHJKLMNPRST").as_deref(),
            Some("ABC**********PRST")
        );
    }
}
