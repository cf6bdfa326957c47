//! POST /v1/applications/{id}/candidates and /claim: a drawn number into the candidate list,
//! a live candidate claimed, and the SMS telling the claimed number (R4.6, R4.8).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use platepool_engine::calendar::local_datetime;
use platepool_engine::plate::full_plate;
use platepool_engine::{AppId, AppState, AppView, Caller, Claim, Refusal, Serial};
use serde::{Deserialize, Serialize};

use super::render::{app_phone, prefix_of};
use super::request::{answer_once, unguarded, AppCall, Gw};
use crate::auth::Citizen;
use crate::error::{refusal_with_field, ApiResult};
use crate::openapi::{json_answer, json_body, Answer, Doc};
use crate::routes::answers::{ApplicationState, ClaimAnswer, HoldAnswer};
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
            response: Answer::Json(json_answer::<CandidatesAnswer>),
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
            response: Answer::Json(json_answer::<ClaimResult>),
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
pub(super) struct SerialBody {
    serial: String,
}

/// `POST …/candidates`: `{"candidates": …}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Candidates)]
pub(super) struct CandidatesAnswer {
    candidates: HoldAnswer,
}

/// `POST …/claim`: the pre-selection and the application's state after it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct ClaimResult {
    claim: ClaimAnswer,
    state: Option<ApplicationState>,
}

pub(super) async fn pick_candidate(
    gw: Gw,
    req: HttpRequest,
    citizen: Citizen,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let call: AppCall<SerialBody> = AppCall::read(&gw, &req, &citizen, payload, None).await?;
    let work = async {
        let caller = Caller::Citizen(&citizen.user);
        let serial = &call.body.serial;
        let held = match gw.engine.pick_candidate(&call.id, caller, serial).await {
            Ok(held) => held,
            Err(refusal) => {
                // Already a candidate: the first send with the key moved it there.
                let repeat = matches!(refusal, Refusal::Conflict(_));
                let now = gw.engine.now_ms();
                let (_, answer) = done_before(&gw, &call, &citizen, refusal, repeat, |v, p, s| {
                    let held = v.candidates.as_ref().filter(|c| c.serials.contains(&s))?;
                    Some(HoldAnswer::new(p, held, now))
                })
                .await?;
                return Ok((StatusCode::OK, CandidatesAnswer { candidates: answer }));
            }
        };
        let prefix = prefix_of(&gw, &call.id.office);
        let candidates = HoldAnswer::new(&prefix, &held, gw.engine.now_ms());
        Ok((StatusCode::OK, CandidatesAnswer { candidates }))
    };
    answer_once(&gw, call.key.clone(), call.now_ms, unguarded(), work).await
}

pub(super) async fn claim(
    gw: Gw,
    req: HttpRequest,
    citizen: Citizen,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let call: AppCall<SerialBody> = AppCall::read(&gw, &req, &citizen, payload, None).await?;
    let work = async {
        let id = &call.id;
        let caller = Caller::Citizen(&citizen.user);
        let claim = match gw.engine.claim(id, caller, &call.body.serial).await {
            Ok(claim) => claim,
            Err(refusal) => {
                // Claimed already: the first send with the key claimed this very number.
                let repeat = matches!(&refusal, Refusal::WrongState { state }
                    if *state == AppState::Claimed.as_str());
                let now = gw.engine.now_ms();
                let (view, (claim, answer)) =
                    done_before(&gw, &call, &citizen, refusal, repeat, |v, p, s| {
                        let claim = v.record.claim.as_ref().filter(|c| c.serial == s)?;
                        let answer = ClaimResult {
                            claim: ClaimAnswer::for_citizen(p, claim, now),
                            state: Some(v.record.state.into()),
                        };
                        Some((claim.clone(), answer))
                    })
                    .await?;
                // Sent if the first send was cut off before it, never twice.
                claim_sms(&gw, id, &citizen, Some(&view), &claim).await;
                return Ok((StatusCode::CREATED, answer));
            }
        };
        let view = after_claim(&gw, id, &citizen, &claim).await;
        let prefix = prefix_of(&gw, &id.office);
        Ok((
            StatusCode::CREATED,
            ClaimResult {
                claim: ClaimAnswer::for_citizen(&prefix, &claim, gw.engine.now_ms()),
                state: view.as_ref().map(|v| v.record.state.into()),
            },
        ))
    };
    answer_once(&gw, call.key.clone(), call.now_ms, unguarded(), work).await
}

/// A keyed pick or claim refused with `refusal`, where `repeat` says the refusal is what a
/// repeat of the call gets: when `found` finds in the application (given its office's prefix
/// and the serial asked for) that the call was already carried out — the first send with the
/// key did it and was cut off before its answer was kept (a crash, a caller gone) — the retry
/// gets the answer the first would have given (API.md: a retry returns the first answer), not
/// a 409 for what it did itself. Otherwise the refusal, naming the field.
async fn done_before<A>(
    gw: &Gateway,
    call: &AppCall<SerialBody>,
    citizen: &Citizen,
    refusal: Refusal,
    repeat: bool,
    found: impl FnOnce(&AppView, &str, Serial) -> Option<A>,
) -> ApiResult<(AppView, A)> {
    let refused = refusal_with_field(refusal, "serial");
    if !(repeat && call.keyed()) {
        return Err(refused);
    }
    let Ok(view) = gw
        .engine
        .application(&call.id, Caller::Citizen(&citizen.user))
        .await
    else {
        return Err(refused);
    };
    let prefix = prefix_of(gw, &call.id.office);
    let Ok(asked) = Serial::parse_with_prefix(&call.body.serial, &prefix) else {
        return Err(refused);
    };
    match found(&view, &prefix, asked) {
        Some(answer) => Ok((view, answer)),
        None => Err(refused),
    }
}
