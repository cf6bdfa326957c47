//! How the citizen API writes applications, holds, plates and claims.

use platepool_engine::calendar::rfc3339;
use platepool_engine::vin::Vin;
use platepool_engine::{AppId, AppState, AppView};

use crate::auth::Citizen;
use crate::routes::answers::{ms_left, ApplicationAnswer, ClaimAnswer, HoldAnswer};
use crate::Gateway;

pub(super) fn prefix_of(gw: &Gateway, office: &str) -> String {
    gw.engine
        .office_config(office)
        .map(|c| c.prefix.clone())
        .unwrap_or_default()
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

/// The application as its citizen sees it.
pub(super) fn application_answer(
    gw: &Gateway,
    id: &AppId,
    view: &AppView,
    now_ms: u64,
) -> ApplicationAnswer {
    let prefix = prefix_of(gw, &id.office);
    let r = &view.record;
    let (stage, step) = position(view, now_ms).unzip();
    let selecting = r.state.selecting();
    // The interval runs from the identity verification or the last check; before either there
    // is no instant to give (the first check waits for the verification anyway).
    let checks_timed = selecting
        && r.custom_left > 0
        && (r.verified_at_ms.is_some() || r.last_check_at_ms.is_some());
    ApplicationAnswer {
        id: id.to_string(),
        office: id.office.clone(),
        class: r.class.clone(),
        energy: r.energy.as_str(),
        vin: masked_vin(&r.vin),
        state: r.state.into(),
        practice: view.practice,
        custom_left: r.custom_left,
        random_left: r.random_left,
        batch: view.batch.as_ref().map(|b| HoldAnswer {
            picked: Some(view.batch_picked),
            ..HoldAnswer::new(&prefix, b, now_ms)
        }),
        candidates: view
            .candidates
            .as_ref()
            .map(|c| HoldAnswer::new(&prefix, c, now_ms)),
        claim: r
            .claim
            .as_ref()
            .map(|c| ClaimAnswer::for_citizen(&prefix, c, now_ms)),
        created_at: rfc3339(r.created_at_ms),
        notice_version: r.notice_version.clone(),
        identity_verified: identity_valid(view, now_ms),
        verified_until: r.verified_until_ms.filter(|&u| u > now_ms).map(rfc3339),
        verified_until_in_ms: r
            .verified_until_ms
            .map(|u| ms_left(u, now_ms))
            .filter(|&l| l > 0),
        next_check_at: checks_timed.then(|| rfc3339(view.next_check_at_ms)),
        next_check_in_ms: checks_timed.then(|| ms_left(view.next_check_at_ms, now_ms)),
        closed_at: r.closed_at_ms.map(rfc3339),
        stage,
        step,
        message: state_message(r.state),
    }
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
