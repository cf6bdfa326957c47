//! POST /v1/applications/{id}/candidates and /claim: a drawn number into the candidate list,
//! a live candidate claimed, and the SMS telling the claimed number (R4.6, R4.8).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use platepool_engine::calendar::local_datetime;
use platepool_engine::plate::full_plate;
use platepool_engine::{AppId, AppState, AppView, Caller, Claim, Refusal, Serial};
use serde::Deserialize;
use serde_json::{json, Value};

use super::render::{app_phone, claim_json, hold_json, prefix_of};
use super::request::{app_id, body, limit, respond, Gw};
use crate::auth::Citizen;
use crate::error::{refusal_with_field, ApiResult};
use crate::idempotency::request_key;
use crate::openapi::{json_body, Doc};
use crate::routes::table::{Access, Route, Shed, Verb};
use crate::sms::Purpose;
use crate::Gateway;

/// The routes this file serves.
pub(crate) const ROUTES: &[Route] = &[
    Route::new(
        Verb::Post,
        "/v1/applications/{id}/candidates",
        Access::Citizen,
        |r| r.to(pick_candidate),
        Doc {
            summary: "Moves a drawn number into the candidate list",
            request: Some(json_body::<SerialBody>),
            query: None,
            response: "Candidates",
            codes: &[200, 400, 401, 403, 404, 409, 413, 429, 503],
        },
    )
    .shed(Shed::Office),
    Route::new(
        Verb::Post,
        "/v1/applications/{id}/claim",
        Access::Citizen,
        |r| r.to(claim),
        Doc {
            summary: "Claims a live candidate: the pre-selection",
            request: Some(json_body::<SerialBody>),
            query: None,
            response: "ClaimResult",
            codes: &[201, 400, 401, 403, 404, 409, 413, 429, 503],
        },
    )
    .shed(Shed::Office),
];

/// After a successful claim: the SMS telling the number (R4.8; never for practice) and the
/// application as it now stands.
pub(super) async fn after_claim(
    gw: &Gateway,
    id: &AppId,
    citizen: &Citizen,
    claim: &Claim,
) -> Option<AppView> {
    let view = gw
        .engine
        .application(id, Caller::Citizen(&citizen.user))
        .await
        .ok();
    claim_sms(gw, id, citizen, view.as_ref(), claim).await;
    view
}

/// The SMS telling a claimed number (R4.8), once per claim (keyed by its voucher serial): a
/// keyed retry of a claim whose first send was cut off after the claim was durable sends it if
/// the first did not, and never twice. Never for practice or a voided claim.
async fn claim_sms(
    gw: &Gateway,
    id: &AppId,
    citizen: &Citizen,
    view: Option<&AppView>,
    claim: &Claim,
) {
    if id.is_practice() || claim.void || view.is_some_and(|v| v.practice) {
        return;
    }
    let phone = view
        .map(|v| app_phone(v, citizen))
        .unwrap_or_else(|| citizen.phone.clone());
    let (prefix, office_name) = match gw.engine.office_config(&id.office) {
        Ok(c) => (c.prefix.clone(), c.name.clone()),
        Err(_) => (String::new(), id.office.clone()),
    };
    let text = format!(
        "【互联网预选号牌】您已成功预选号牌{}，请于{}前到{}办理注册登记，逾期未办理的号牌作废并列入黑名单。凭证编号{}。",
        full_plate(&prefix, claim.serial),
        local_datetime(claim.register_by_ms).format("%Y年%m月%d日 %H:%M"),
        office_name,
        claim.voucher_serial,
    );
    let reference = format!("{id}/{}", claim.voucher_serial);
    if let Err(e) = gw
        .sms
        .deliver_once(
            &reference,
            &phone,
            Purpose::Claimed,
            text,
            gw.engine.now_ms(),
        )
        .await
    {
        // The claim is durable; a failed notification must not turn it into an error.
        tracing::warn!(application = %id, error = %e, "claim SMS not sent");
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SerialBody {
    serial: String,
}

pub(super) async fn pick_candidate(
    gw: Gw,
    req: HttpRequest,
    citizen: Citizen,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    limit(&gw, &req, &citizen)?;
    let id = app_id(&req)?;
    let b: SerialBody = body(&req, payload, None).await?;
    let key = request_key(&req, &citizen.user)?;
    let now = gw.engine.now_ms();
    let keyed = key.is_some();
    let work = async {
        let held = match gw
            .engine
            .pick_candidate(&id, Caller::Citizen(&citizen.user), &b.serial)
            .await
        {
            Ok(held) => held,
            Err(refusal) => {
                let before = match &refusal {
                    Refusal::Conflict(_) if keyed => {
                        picked_before(&gw, &id, &citizen, &b.serial).await
                    }
                    _ => None,
                };
                return before.ok_or_else(|| refusal_with_field(refusal, "serial"));
            }
        };
        let prefix = prefix_of(&gw, &id.office);
        Ok((
            StatusCode::OK,
            json!({ "candidates": hold_json(&prefix, &held, gw.engine.now_ms()) }),
        ))
    };
    gw.idempotency.run(key, now, work).await.map(respond)
}

pub(super) async fn claim(
    gw: Gw,
    req: HttpRequest,
    citizen: Citizen,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    limit(&gw, &req, &citizen)?;
    let id = app_id(&req)?;
    let b: SerialBody = body(&req, payload, None).await?;
    let key = request_key(&req, &citizen.user)?;
    let now = gw.engine.now_ms();
    let keyed = key.is_some();
    let work = async {
        let claim = match gw
            .engine
            .claim(&id, Caller::Citizen(&citizen.user), &b.serial)
            .await
        {
            Ok(claim) => claim,
            Err(refusal) => {
                let before = match &refusal {
                    Refusal::WrongState { state }
                        if keyed && *state == AppState::Claimed.as_str() =>
                    {
                        claimed_before(&gw, &id, &citizen, &b.serial).await
                    }
                    _ => None,
                };
                return before.ok_or_else(|| refusal_with_field(refusal, "serial"));
            }
        };
        let view = after_claim(&gw, &id, &citizen, &claim).await;
        let prefix = prefix_of(&gw, &id.office);
        Ok((
            StatusCode::CREATED,
            json!({
                "claim": claim_json(&prefix, &claim, gw.engine.now_ms()),
                "state": view.as_ref().map(|v| v.record.state.as_str()),
            }),
        ))
    };
    gw.idempotency.run(key, now, work).await.map(respond)
}

/// The caller's application, its office's prefix and the serial it asked for (for
/// [`picked_before`] and [`claimed_before`]).
async fn view_with_serial(
    gw: &Gateway,
    id: &AppId,
    citizen: &Citizen,
    serial: &str,
) -> Option<(AppView, String, Serial)> {
    let view = gw
        .engine
        .application(id, Caller::Citizen(&citizen.user))
        .await
        .ok()?;
    let prefix = prefix_of(gw, &id.office);
    let asked = Serial::parse_with_prefix(serial, &prefix).ok()?;
    Some((view, prefix, asked))
}

/// A keyed pick refused because the number is already one of the application's candidates: the
/// first send with the key moved it there and its answer was not kept (a caller gone), so this
/// retry gets the candidates as the first send would have.
async fn picked_before(
    gw: &Gateway,
    id: &AppId,
    citizen: &Citizen,
    serial: &str,
) -> Option<(StatusCode, Value)> {
    let (view, prefix, asked) = view_with_serial(gw, id, citizen, serial).await?;
    let held = view
        .candidates
        .as_ref()
        .filter(|c| c.serials.contains(&asked))?;
    Some((
        StatusCode::OK,
        json!({ "candidates": hold_json(&prefix, held, gw.engine.now_ms()) }),
    ))
}

/// A keyed claim refused because the application already holds this very number: the first
/// send with the key claimed it and was cut off before its answer was stored (a crash, a caller
/// gone), so this retry gets the answer the first would have given (API.md: a retry returns
/// the first answer) instead of 409 `conflict` for a claim it made itself. The success SMS is
/// sent if the first send was cut off before it, never twice ([`claim_sms`]).
async fn claimed_before(
    gw: &Gateway,
    id: &AppId,
    citizen: &Citizen,
    serial: &str,
) -> Option<(StatusCode, Value)> {
    let (view, prefix, asked) = view_with_serial(gw, id, citizen, serial).await?;
    let claim = view.record.claim.as_ref().filter(|c| c.serial == asked)?;
    claim_sms(gw, id, citizen, Some(&view), claim).await;
    Some((
        StatusCode::CREATED,
        json!({
            "claim": claim_json(&prefix, claim, gw.engine.now_ms()),
            "state": view.record.state.as_str(),
        }),
    ))
}
