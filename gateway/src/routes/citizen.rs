//! The citizen API (API.md "Citizen"; SPEC §4): stage 1 (apply), stage 2 (identity, custom and
//! random selection, claim), the voucher, re-entry and practice mode.
//!
//! Every handler: authenticate (401), rate-limit selection calls (429 before any rule), read the
//! body, then — for state-changing calls — run the work once per `Idempotency-Key`.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use platepool_engine::calendar::{local_datetime, rfc3339};
use platepool_engine::plate::{char_index, full_plate, FullPlate};
use platepool_engine::vin::Vin;
use platepool_engine::{
    AppId, AppState, AppView, ApplicationRequest, Caller, Check, Claim, Draw, Energy, HoldView,
    Refusal, Serial,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::auth::Citizen;
use crate::error::{refusal_with_field, ApiError, ApiResult};
use crate::extract::{parse_json, read_body, BODY_LEN_MAX};
use crate::idempotency::request_key;
use crate::sms::Purpose;
use crate::voucher::Voucher;
use crate::Gateway;

type Gw = web::Data<Gateway>;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/me", web::get().to(me))
        .route("/v1/sms", web::post().to(send_sms))
        .route("/v1/practice", web::post().to(practice))
        // Nested scopes: one regular expression (`{id}`) per request instead of one per route
        // tried (see `public::configure`).
        .service(
            web::scope("/v1/applications")
                .route("", web::post().to(apply))
                .service(
                    web::scope("/{id}")
                        .route("", web::get().to(application))
                        .route("/identity", web::post().to(identity))
                        .route("/keyboard", web::get().to(keyboard))
                        .route("/custom", web::post().to(custom))
                        .route("/draws", web::post().to(draw))
                        .route("/candidates", web::post().to(pick_candidate))
                        .route("/claim", web::post().to(claim))
                        .route("/voucher", web::get().to(voucher)),
                ),
        );
}

// ---------------------------------------------------------------------------------------------
// Request plumbing

/// Reads a JSON body (64 KiB at most). With `empty`, an empty body means that value.
async fn body<T: DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    empty: Option<T>,
) -> ApiResult<T> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !(mime.is_empty() || mime.eq_ignore_ascii_case("application/json")) {
        return Err(ApiError::bad_request(format!(
            "Content-Type must be application/json, not {mime}"
        )));
    }
    let mut payload = payload.into_inner();
    let bytes = read_body(req, &mut payload, BODY_LEN_MAX).await?;
    if let Some(default) = empty {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(default);
        }
    }
    parse_json(&bytes)
}

/// The application named in the path; a malformed id is as unknown as someone else's (404).
fn app_id(req: &HttpRequest) -> ApiResult<AppId> {
    req.match_info()
        .get("id")
        .and_then(|s| s.parse::<AppId>().ok())
        .ok_or_else(|| ApiError::from(Refusal::UnknownApplication))
}

/// What a debiting call changes, read before a keyed request runs (see
/// `Idempotency::run_guarded`): state and both quotas left. `None` when it cannot be read.
async fn quotas_of(gw: &Gateway, id: &AppId, user: &str) -> Option<String> {
    let v = gw
        .engine
        .application(id, Caller::Citizen(user))
        .await
        .ok()?;
    Some(format!(
        "{}/{}/{}",
        v.record.state.as_str(),
        v.record.random_left,
        v.record.custom_left
    ))
}

/// 429 `too_many_requests` before any rule (SPEC S3).
fn limit(gw: &Gateway, req: &HttpRequest, citizen: &Citizen) -> ApiResult<()> {
    gw.limits.check(req, Some(&citizen.user))
}

fn respond((status, body): (StatusCode, Value)) -> HttpResponse {
    HttpResponse::build(status).json(body)
}

fn ms_left(at_ms: u64, now_ms: u64) -> u64 {
    at_ms.saturating_sub(now_ms)
}

// ---------------------------------------------------------------------------------------------
// Rendering

fn prefix_of(gw: &Gateway, office: &str) -> String {
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
struct HoldOut<'a> {
    prefix: &'a str,
    hold: &'a HoldView,
    now_ms: u64,
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

fn hold_json(prefix: &str, hold: &HoldView, now_ms: u64) -> Value {
    serde_json::to_value(HoldOut {
        prefix,
        hold,
        now_ms,
    })
    .unwrap_or(Value::Null)
}

/// The answer to a draw (`201`), written straight from the engine's result.
#[derive(Serialize)]
struct DrawOut<'a> {
    batch: HoldOut<'a>,
    candidates: Option<HoldOut<'a>>,
    exclude_four: bool,
    random_left: u32,
}

impl<'a> DrawOut<'a> {
    fn new(prefix: &'a str, d: &'a Draw, now_ms: u64, exclude_four: bool) -> DrawOut<'a> {
        DrawOut {
            batch: HoldOut {
                prefix,
                hold: &d.batch,
                now_ms,
            },
            candidates: d.candidates.as_ref().map(|hold| HoldOut {
                prefix,
                hold,
                now_ms,
            }),
            exclude_four,
            random_left: d.random_left,
        }
    }
}

fn claim_json(prefix: &str, claim: &Claim, now_ms: u64) -> Value {
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
fn masked_vin(vin: &str) -> Option<String> {
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
fn position(view: &AppView, now_ms: u64) -> Option<(u8, u8)> {
    match view.record.state {
        AppState::Claimed | AppState::Issued => Some((2, 3)),
        AppState::Confirmed | AppState::Selecting if identity_valid(view, now_ms) => Some((2, 2)),
        AppState::Confirmed | AppState::Selecting => Some((1, 3)),
        AppState::Exhausted | AppState::Lapsed | AppState::Voided => None,
    }
}

fn state_message(state: AppState) -> Option<&'static str> {
    match state {
        AppState::Exhausted => Some("自编和随机选号次数已用完，请到车管所窗口现场选号。"),
        AppState::Lapsed => Some("预选号牌已过注册登记期限，号牌已收回。"),
        AppState::Voided => Some("预选号牌已应您的申请作废。"),
        _ => None,
    }
}

fn app_json(gw: &Gateway, id: &AppId, view: &AppView, now_ms: u64) -> Value {
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
fn app_phone(view: &AppView, citizen: &Citizen) -> String {
    if view.record.phone.is_empty() {
        citizen.phone.clone()
    } else {
        view.record.phone.clone()
    }
}

/// After a successful claim: the SMS telling the number (R4.8; never for practice) and the
/// application as it now stands.
async fn after_claim(
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

// ---------------------------------------------------------------------------------------------
// GET /v1/me (R4.9)

async fn me(gw: Gw, citizen: Citizen) -> ApiResult<HttpResponse> {
    let now = gw.engine.now_ms();
    let mut apps = gw.engine.user_applications(&citizen.user).await?;
    apps.sort_by(|a, b| {
        b.1.record
            .created_at_ms
            .cmp(&a.1.record.created_at_ms)
            .then(b.0.cmp(&a.0))
    });
    let blacklisted = gw.engine.blacklisted_until(&citizen.user);
    // A valid pre-selection first (stage 2 step 3), then a live application that may still
    // select (stage 1 step 3); the newest of each kind.
    let claimed = apps.iter().find(|(_, v)| {
        v.record.state == AppState::Claimed
            && v.record
                .claim
                .as_ref()
                .is_some_and(|c| c.register_by_ms > now)
    });
    let selecting = apps
        .iter()
        .find(|(_, v)| v.record.state.selecting())
        .filter(|_| blacklisted.is_none());
    let resume = match (claimed, selecting) {
        (Some((id, v)), _) => Some(json!({
            "application": id.to_string(), "stage": 2, "step": 3, "state": v.record.state.as_str(),
        })),
        (None, Some((id, v))) => Some(json!({
            "application": id.to_string(), "stage": 1, "step": 3, "state": v.record.state.as_str(),
            "custom_left": v.record.custom_left, "random_left": v.record.random_left,
        })),
        (None, None) => None,
    };
    let message = if let Some(until) = blacklisted {
        Some(json!({
            "code": "blacklisted",
            "text": format!(
                "您因预选号牌逾期未办理注册登记已被列入黑名单，{} 自动解除，期间不能网上选号。",
                local_datetime(until).format("%Y年%m月%d日 %H:%M")
            ),
        }))
    } else if resume.is_none() {
        apps.first()
            .and_then(|(_, v)| state_message(v.record.state).map(|t| (v.record.state, t)))
            .map(|(state, text)| json!({ "code": state.as_str(), "text": text }))
    } else {
        None
    };
    let applications: Vec<Value> = apps
        .iter()
        .map(|(id, v)| app_json(&gw, id, v, now))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "user": citizen.user,
        "blacklisted_until": blacklisted.map(rfc3339),
        "blacklisted_until_in_ms": blacklisted.map(|u| ms_left(u, now)),
        "applications": applications,
        "resume": resume,
        "message": message,
    })))
}

// ---------------------------------------------------------------------------------------------
// POST /v1/sms

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum CodePurpose {
    Apply,
    Identity,
}

#[derive(Debug, Deserialize)]
struct SmsBody {
    purpose: CodePurpose,
    #[serde(default)]
    application: Option<String>,
}

fn masked_phone(phone: &str) -> String {
    let n = phone.chars().count();
    phone
        .chars()
        .enumerate()
        .map(|(i, c)| if i >= 3 && i + 4 < n { '*' } else { c })
        .collect()
}

/// A retry with the same `Idempotency-Key` gets the first answer (its `sent_at`) and sends
/// nothing; a 429 or 503 is not kept, so a keyed retry after it sends for real.
async fn send_sms(
    gw: Gw,
    req: HttpRequest,
    citizen: Citizen,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    limit(&gw, &req, &citizen)?;
    let b: SmsBody = body(&req, payload, None).await?;
    let key = request_key(&req, &citizen.user)?;
    let now = gw.engine.now_ms();
    let work = async {
        let sent = sms_work(&gw, &citizen, b, now).await?;
        Ok((StatusCode::OK, sent))
    };
    gw.idempotency.run(key, now, work).await.map(respond)
}

/// Checks what a code is for and sends it: the work `send_sms` runs once per key.
async fn sms_work(gw: &Gateway, citizen: &Citizen, b: SmsBody, now: u64) -> ApiResult<Value> {
    let (phone, purpose, application, delay) = match b.purpose {
        CodePurpose::Apply => (citizen.phone.clone(), Purpose::Apply, None, 0),
        CodePurpose::Identity => {
            let text = b.application.as_deref().ok_or_else(|| {
                ApiError::bad_request(
                    "an identity code is sent for an application: give `application`",
                )
                .field("application")
            })?;
            let id: AppId = text
                .parse()
                .map_err(|_| ApiError::from(Refusal::UnknownApplication).field("application"))?;
            let view = gw
                .engine
                .application(&id, Caller::Citizen(&citizen.user))
                .await
                .map_err(|r| ApiError::from(r).field("application"))?;
            if !view.practice {
                if let Some(until_ms) = gw.engine.blacklisted_until(&citizen.user) {
                    return Err(Refusal::Blacklisted { until_ms }.into());
                }
            }
            if !view.record.state.selecting() {
                let refusal = match view.record.state {
                    AppState::Exhausted => Refusal::Exhausted,
                    other => Refusal::WrongState {
                        state: other.as_str(),
                    },
                };
                return Err(refusal.into());
            }
            let delay = gw
                .engine
                .office_config(&id.office)?
                .rules
                .sms_confirm_delay_ms;
            (
                app_phone(&view, citizen),
                Purpose::Identity,
                Some(id.to_string()),
                delay,
            )
        }
    };
    let sent = gw
        .sms
        .send_code(&phone, purpose, application.clone(), delay, now)
        .await?;
    Ok(json!({
        "sent_at": sent.sent_at,
        "confirm_after_ms": sent.confirm_after_ms,
        "confirm_at": rfc3339(now + sent.confirm_after_ms),
        "expires_in_ms": sent.expires_in_ms,
        "expires_at": rfc3339(now + sent.expires_in_ms),
        "purpose": purpose.as_str(),
        "application": application,
        "phone": masked_phone(&phone),
    }))
}

// ---------------------------------------------------------------------------------------------
// POST /v1/applications (R4.1, R4.2)

#[derive(Debug, Deserialize)]
struct ApplyBody {
    office: String,
    vin: String,
    voucher: String,
    notice_version: String,
    sms_code: String,
}

/// Names the request field a stage-1 refusal is about; a refused VIN also gets the 1-based
/// `position` at fault and the `reason`, as `POST /v1/vin/check` gives them.
fn apply_error(r: Refusal, vin: &str) -> ApiError {
    let field = match &r {
        Refusal::UnknownOffice => Some("office"),
        Refusal::VoucherMismatch => Some("voucher"),
        Refusal::ApplicationExists { .. } | Refusal::VinAlreadyUsed => Some("vin"),
        _ => None,
    };
    let invalid_vin = matches!(r, Refusal::InvalidVin(_));
    let mut e = ApiError::from(r);
    if invalid_vin {
        if let Err(v) = platepool_engine::vin::check_vin(vin) {
            e = e.with("reason", json!(v.reason_code()));
            if let Some(p) = v.position {
                e = e.with("position", json!(p));
            }
        }
    }
    match field {
        Some(f) if e.field.is_none() => e.field(f),
        _ => e,
    }
}

/// An existing application named in a refusal is shown to its owner only (I7: never reveal
/// someone else's application).
async fn hide_others(gw: &Gateway, user: &str, r: Refusal) -> Refusal {
    if let Refusal::ApplicationExists { application } = &r {
        let owned = match application.parse::<AppId>() {
            Ok(id) => gw
                .engine
                .application(&id, Caller::Citizen(user))
                .await
                .is_ok(),
            Err(_) => false,
        };
        if !owned {
            return Refusal::ApplicationExists {
                application: String::new(),
            };
        }
    }
    r
}

async fn apply(
    gw: Gw,
    req: HttpRequest,
    citizen: Citizen,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    limit(&gw, &req, &citizen)?;
    let b: ApplyBody = body(&req, payload, None).await?;
    let key = request_key(&req, &citizen.user)?;
    let now = gw.engine.now_ms();
    let work = async {
        let request = ApplicationRequest {
            office: b.office.trim().to_string(),
            user: citizen.user.clone(),
            phone: citizen.phone.clone(),
            vin: b.vin.clone(),
            voucher: b.voucher.clone(),
            notice_version: b.notice_version.clone(),
        };
        // Every rule of R4.2 first (in the API's order); only then the code, which a refusal
        // above leaves untouched.
        if let Err(r) = gw.engine.check_application(request.clone()).await {
            return Err(apply_error(
                hide_others(&gw, &citizen.user, r).await,
                &b.vin,
            ));
        }
        let code = b.sms_code.trim();
        gw.sms
            .verify(
                &citizen.phone,
                Purpose::Apply,
                None,
                code,
                false,
                gw.engine.now_ms(),
            )
            .await?;
        let id = match gw.engine.create_application(request).await {
            Ok(id) => id,
            Err(r) => {
                return Err(apply_error(
                    hide_others(&gw, &citizen.user, r).await,
                    &b.vin,
                ))
            }
        };
        if let Err(e) = gw
            .sms
            .verify(
                &citizen.phone,
                Purpose::Apply,
                None,
                code,
                true,
                gw.engine.now_ms(),
            )
            .await
        {
            tracing::warn!(application = %id, error = %e, "apply code not consumed");
        }
        let view = gw
            .engine
            .application(&id, Caller::Citizen(&citizen.user))
            .await?;
        Ok((
            StatusCode::CREATED,
            app_json(&gw, &id, &view, gw.engine.now_ms()),
        ))
    };
    gw.idempotency.run(key, now, work).await.map(respond)
}

// ---------------------------------------------------------------------------------------------
// GET /v1/applications/{id}

async fn application(gw: Gw, req: HttpRequest, citizen: Citizen) -> ApiResult<HttpResponse> {
    let id = app_id(&req)?;
    let view = gw
        .engine
        .application(&id, Caller::Citizen(&citizen.user))
        .await?;
    Ok(HttpResponse::Ok().json(app_json(&gw, &id, &view, gw.engine.now_ms())))
}

// ---------------------------------------------------------------------------------------------
// POST /v1/applications/{id}/identity (R4.4)

#[derive(Debug, Deserialize)]
struct IdentityBody {
    sms_code: String,
}

async fn identity(
    gw: Gw,
    req: HttpRequest,
    citizen: Citizen,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    limit(&gw, &req, &citizen)?;
    let id = app_id(&req)?;
    let b: IdentityBody = body(&req, payload, None).await?;
    let key = request_key(&req, &citizen.user)?;
    let now = gw.engine.now_ms();
    let work = async {
        let caller = Caller::Citizen(&citizen.user);
        let view = gw.engine.application(&id, caller).await?;
        let phone = app_phone(&view, &citizen);
        let app = id.to_string();
        let code = b.sms_code.trim();
        gw.sms
            .verify(
                &phone,
                Purpose::Identity,
                Some(&app),
                code,
                false,
                gw.engine.now_ms(),
            )
            .await?;
        let until = gw.engine.verify_identity(&id, caller).await?;
        if let Err(e) = gw
            .sms
            .verify(
                &phone,
                Purpose::Identity,
                Some(&app),
                code,
                true,
                gw.engine.now_ms(),
            )
            .await
        {
            tracing::warn!(application = %id, error = %e, "identity code not consumed");
        }
        let now = gw.engine.now_ms();
        Ok((
            StatusCode::OK,
            json!({
                "application": app,
                "verified_until": rfc3339(until),
                "verified_until_in_ms": ms_left(until, now),
            }),
        ))
    };
    gw.idempotency.run(key, now, work).await.map(respond)
}

// ---------------------------------------------------------------------------------------------
// GET /v1/applications/{id}/keyboard?entered=A1 (R4.5, I8)

#[derive(Debug, Deserialize)]
struct KeyboardQuery {
    #[serde(default)]
    entered: String,
}

/// `entered` as alphabet indices; `_` marks a free position.
fn parse_entered(entered: &str) -> ApiResult<Vec<Option<u8>>> {
    entered
        .chars()
        .enumerate()
        .map(|(n, c)| {
            if c == '_' {
                return Ok(None);
            }
            char_index(c).map(Some).ok_or_else(|| {
                ApiError::invalid_plate(
                    &platepool_engine::PlateError::InvalidChar {
                        position: n + 1,
                        found: c,
                    },
                    "entered",
                )
            })
        })
        .collect()
}

async fn keyboard(gw: Gw, req: HttpRequest, citizen: Citizen) -> ApiResult<HttpResponse> {
    limit(&gw, &req, &citizen)?;
    let id = app_id(&req)?;
    let q = web::Query::<KeyboardQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::bad_request(format!("query: {e}")).field("entered"))?;
    let entered = parse_entered(&q.entered)?;
    let normalised: String = entered
        .iter()
        .map(|c| c.map(platepool_engine::plate::index_char).unwrap_or('_'))
        .collect();
    let sets = gw
        .engine
        .keyboard(&id, Caller::Citizen(&citizen.user), entered)
        .await
        .map_err(|r| match r {
            Refusal::BadRequest(_) => ApiError::from(r).field("entered"),
            other => ApiError::from(other),
        })?;
    // Serialised straight from typed fields (no `Value` tree): the keyboard is the hottest read
    // at an opening. Fields in alphabetical order, as a `json!` object writes them.
    Ok(HttpResponse::Ok().json(KeyboardAnswer {
        entered: normalised,
        length: sets.len(),
        positions: sets
            .iter()
            .enumerate()
            .map(|(index, s)| KeyPosition {
                enabled: s.to_chars(),
                index,
            })
            .collect(),
    }))
}

#[derive(Debug, Serialize)]
struct KeyboardAnswer {
    entered: String,
    length: usize,
    positions: Vec<KeyPosition>,
}

#[derive(Debug, Serialize)]
struct KeyPosition {
    enabled: String,
    index: usize,
}

// ---------------------------------------------------------------------------------------------
// POST /v1/applications/{id}/custom (R4.5)

#[derive(Debug, Deserialize)]
struct CustomBody {
    plates: Vec<String>,
}

async fn custom(
    gw: Gw,
    req: HttpRequest,
    citizen: Citizen,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    limit(&gw, &req, &citizen)?;
    let id = app_id(&req)?;
    let b: CustomBody = body(&req, payload, None).await?;
    let key = request_key(&req, &citizen.user)?;
    let now = gw.engine.now_ms();
    let work = async {
        let caller = Caller::Citizen(&citizen.user);
        let check = gw
            .engine
            .custom_check(&id, caller, b.plates)
            .await
            .map_err(|r| {
                let e = refusal_with_field(r, "plates");
                if e.code == "bad_request" && e.field.is_none() {
                    e.field("plates")
                } else {
                    e
                }
            })?;
        let prefix = prefix_of(&gw, &id.office);
        match check {
            Check::Claimed(claim) => {
                let view = after_claim(&gw, &id, &citizen, &claim).await;
                let now = gw.engine.now_ms();
                Ok((
                    StatusCode::OK,
                    json!({
                        "claim": claim_json(&prefix, &claim, now),
                        "custom_left": view.as_ref().map(|v| v.record.custom_left),
                        "random_left": view.as_ref().map(|v| v.record.random_left),
                        "state": view.as_ref().map(|v| v.record.state.as_str()),
                    }),
                ))
            }
            Check::NoneAvailable {
                results,
                custom_left,
                next_check_at_ms,
            } => {
                let now = gw.engine.now_ms();
                let results: Vec<Value> = results
                    .iter()
                    .map(|(s, reason)| {
                        json!({
                            "serial": s.to_string(),
                            "plate": full_plate(&prefix, *s),
                            "reason": reason.as_str(),
                        })
                    })
                    .collect();
                let mut e = ApiError::new(
                    StatusCode::CONFLICT,
                    "not_available",
                    "none of the numbers is available; each one checked was debited",
                )
                .with("results", json!(results))
                .with("custom_left", json!(custom_left))
                .with("next_check_in_ms", json!(ms_left(next_check_at_ms, now)))
                .with("next_check_at", json!(rfc3339(next_check_at_ms)));
                if custom_left == 0 {
                    // Custom quota spent: say where the flow goes next (R4.5, R4.7).
                    if let Ok(v) = gw.engine.application(&id, caller).await {
                        e = e
                            .with("random_left", json!(v.record.random_left))
                            .with("state", json!(v.record.state.as_str()));
                    }
                }
                Err(e)
            }
        }
    };
    gw.idempotency
        .run_guarded(key, now, quotas_of(&gw, &id, &citizen.user), work)
        .await
        .map(respond)
}

// ---------------------------------------------------------------------------------------------
// POST /v1/applications/{id}/draws (R4.6)

#[derive(Debug, Default, Deserialize)]
struct DrawBody {
    #[serde(default)]
    exclude_four: bool,
}

async fn draw(
    gw: Gw,
    req: HttpRequest,
    citizen: Citizen,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    limit(&gw, &req, &citizen)?;
    let id = app_id(&req)?;
    let b: DrawBody = body(&req, payload, Some(DrawBody::default())).await?;
    let key = request_key(&req, &citizen.user)?;
    let now = gw.engine.now_ms();
    let draw = async {
        gw.engine
            .draw(&id, Caller::Citizen(&citizen.user), b.exclude_four)
            .await
            .map_err(ApiError::from)
    };
    let config = gw.engine.office_config(&id.office).ok();
    let prefix = config.as_ref().map_or("", |c| c.prefix.as_str());
    if key.is_none() {
        // The hot path of an opening: the answer is serialised once, straight from the result.
        let d = draw.await?;
        let out = DrawOut::new(prefix, &d, gw.engine.now_ms(), b.exclude_four);
        return Ok(HttpResponse::Created().json(out));
    }
    let work = async {
        let d = draw.await?;
        let out = DrawOut::new(prefix, &d, gw.engine.now_ms(), b.exclude_four);
        let body = serde_json::to_value(out)
            .map_err(|e| ApiError::unavailable(format!("answer not written: {e}")))?;
        Ok((StatusCode::CREATED, body))
    };
    gw.idempotency
        .run_guarded(key, now, quotas_of(&gw, &id, &citizen.user), work)
        .await
        .map(respond)
}

// ---------------------------------------------------------------------------------------------
// POST /v1/applications/{id}/candidates and /claim (R4.6)

#[derive(Debug, Deserialize)]
struct SerialBody {
    serial: String,
}

async fn pick_candidate(
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

async fn claim(
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

// ---------------------------------------------------------------------------------------------
// GET /v1/applications/{id}/voucher (R4.8)

/// Does the client ask for JSON rather than the page?
fn wants_json(req: &HttpRequest) -> bool {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    accept.contains("application/json") && !accept.contains("text/html")
}

async fn voucher(gw: Gw, req: HttpRequest, citizen: Citizen) -> ApiResult<HttpResponse> {
    let id = app_id(&req)?;
    let view = gw
        .engine
        .application(&id, Caller::Citizen(&citizen.user))
        .await?;
    let r = &view.record;
    let claim = match (&r.claim, r.state) {
        (Some(c), AppState::Claimed | AppState::Issued) => c,
        (Some(_), state) => {
            return Err(ApiError::conflict(format!(
                "the pre-selection is {}: there is no valid voucher",
                state.as_str()
            )))
        }
        (None, _) => {
            return Err(ApiError::conflict(
                "no number is pre-selected for this application yet",
            ))
        }
    };
    let (prefix, office_name) = match gw.engine.office_config(&id.office) {
        Ok(c) => (c.prefix.clone(), c.name.clone()),
        Err(_) => (String::new(), id.office.clone()),
    };
    let v = Voucher {
        serial: claim.voucher_serial.clone(),
        code: claim.voucher_code.clone(),
        plate_serial: claim.serial.to_string(),
        plate: full_plate(&prefix, claim.serial),
        office: id.office.clone(),
        office_name,
        application: id.to_string(),
        class: r.class.clone(),
        vin_masked: masked_vin(&r.vin).unwrap_or_default(),
        claimed_at_ms: claim.claimed_at_ms,
        register_by_ms: claim.register_by_ms,
        practice: view.practice || claim.void,
        state: r.state.as_str().to_string(),
    };
    if wants_json(&req) {
        return Ok(HttpResponse::Ok().json(v.json(gw.engine.now_ms())));
    }
    Ok(HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        ))
        .insert_header((
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-store"),
        ))
        .insert_header((
            header::HeaderName::from_static("content-security-policy"),
            HeaderValue::from_static(
                "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'",
            ),
        ))
        .body(v.html()))
}

// ---------------------------------------------------------------------------------------------
// POST /v1/practice (R4.13)

#[derive(Debug, Deserialize)]
struct PracticeBody {
    office: String,
    class: String,
    #[serde(default)]
    energy: Option<String>,
}

async fn practice(
    gw: Gw,
    req: HttpRequest,
    citizen: Citizen,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    limit(&gw, &req, &citizen)?;
    let b: PracticeBody = body(&req, payload, None).await?;
    let energy = match b.energy.as_deref() {
        Some(text) => Energy::parse(text).ok_or_else(|| {
            ApiError::bad_request("energy must be one of fuel, bev, phev, fcev").field("energy")
        })?,
        // The first kind of vehicle the class serves (fuel for small, bev for new energy).
        None => gw
            .engine
            .catalog()
            .iter()
            .find(|c| c.name == b.class)
            .and_then(|c| c.groups.first())
            .and_then(|g| g.energies.first())
            .copied()
            .unwrap_or(Energy::Fuel),
    };
    let key = request_key(&req, &citizen.user)?;
    let now = gw.engine.now_ms();
    let work = async {
        let id = gw
            .engine
            .create_practice(b.office.trim(), &citizen.user, &b.class, energy)
            .await
            .map_err(|r| {
                let field = match &r {
                    Refusal::UnknownOffice => "office",
                    Refusal::VehicleNotEligible(_) | Refusal::UnknownClass(_) => "class",
                    _ => "",
                };
                let e = ApiError::from(r);
                if field.is_empty() {
                    e
                } else {
                    e.field(field)
                }
            })?;
        let view = gw
            .engine
            .application(&id, Caller::Citizen(&citizen.user))
            .await?;
        Ok((
            StatusCode::CREATED,
            app_json(&gw, &id, &view, gw.engine.now_ms()),
        ))
    };
    gw.idempotency.run(key, now, work).await.map(respond)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_draw_answer_is_written_as_documented() {
        let s = |t: &str| Serial::parse(t).expect("serial");
        let d = Draw {
            batch: HoldView {
                serials: vec![s("A1234"), s("B5678")],
                expires_at_ms: 61_000,
            },
            candidates: Some(HoldView {
                serials: vec![s("C0001")],
                expires_at_ms: 301_000,
            }),
            random_left: 3,
        };
        let out = serde_json::to_value(DrawOut::new("粤K", &d, 1_000, true)).expect("json");
        assert_eq!(
            out,
            json!({
                "batch": {
                    "plates": [
                        {"serial": "A1234", "plate": "粤K·A1234"},
                        {"serial": "B5678", "plate": "粤K·B5678"},
                    ],
                    "expires_at": "1970-01-01T00:01:01.000Z",
                    "expires_in_ms": 60_000,
                },
                "candidates": {
                    "plates": [{"serial": "C0001", "plate": "粤K·C0001"}],
                    "expires_at": "1970-01-01T00:05:01.000Z",
                    "expires_in_ms": 300_000,
                },
                "random_left": 3,
                "exclude_four": true,
            })
        );
        let none = Draw {
            candidates: None,
            ..d
        };
        let out = serde_json::to_value(DrawOut::new("粤K", &none, 1_000, false)).expect("json");
        assert_eq!(out["candidates"], Value::Null);
        assert_eq!(out["exclude_four"], false);
    }

    #[test]
    fn entered_marks_free_positions_and_names_bad_characters() {
        assert_eq!(
            parse_entered("a_1").expect("valid"),
            vec![char_index('A'), None, char_index('1')]
        );
        let e = parse_entered("A1I").expect_err("I is not a plate character");
        assert_eq!(e.code, "invalid_plate");
        assert_eq!(e.field.as_deref(), Some("entered"));
        assert_eq!(e.extra.get("position"), Some(&json!(3)));
    }

    #[test]
    fn vins_and_phones_are_masked() {
        assert_eq!(masked_vin(""), None);
        assert_eq!(
            masked_vin("ABCDEFGHJKLMNPRST").as_deref(),
            Some("ABC**********PRST")
        );
        assert_eq!(masked_phone("13800138000"), "138****8000");
    }
}
