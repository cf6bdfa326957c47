//! GET /v1/applications/{id}/voucher: the printable pre-selection voucher (R4.8).

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};
use platepool_engine::plate::full_plate;
use platepool_engine::{AppState, Caller};

use super::render::masked_vin;
use super::request::{app_id, Gw};
use crate::auth::Citizen;
use crate::error::{ApiError, ApiResult};
use crate::openapi::{json_answer, Answer, Doc};
use crate::routes::answers::ms_left;
use crate::routes::table::{Access, Route, Shed, Verb};
use crate::voucher::{local_time_text, Voucher};
use platepool_engine::calendar::rfc3339;
use serde::Serialize;

/// The routes this file serves.
pub(crate) const ROUTES: &[Route] = &[Route::new(
    Verb::Get,
    "/v1/applications/{id}/voucher",
    Access::Citizen,
    |r| r.to(voucher),
    Doc {
        summary:
            "The printable pre-selection voucher (HTML, or JSON with Accept: application/json)",
        request: None,
        query: None,
        response: Answer::Page(json_answer::<VoucherDocument>),
        codes: &[200, 401, 404, 409, 503],
    },
)
.shed(Shed::Lag)];

/// The voucher as JSON (`Accept: application/json`): `{"voucher": …}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct VoucherDocument {
    voucher: VoucherFields,
}

/// What the printed voucher says.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct VoucherFields {
    /// 凭证编号.
    serial: String,
    /// 验证码: the office checks the voucher with it.
    code: String,
    plate: String,
    plate_serial: String,
    office: String,
    office_name: String,
    application: String,
    class: String,
    /// Masked.
    vin: String,
    #[schema(format = DateTime)]
    claimed_at: String,
    #[schema(format = DateTime)]
    register_by: String,
    register_by_in_ms: u64,
    /// `register_by` in office time, as printed.
    register_by_local: String,
    state: String,
    /// A practice voucher (模拟): void.
    practice: bool,
    void: bool,
}

impl VoucherDocument {
    fn new(v: Voucher, now_ms: u64) -> VoucherDocument {
        VoucherDocument {
            voucher: VoucherFields {
                register_by: rfc3339(v.register_by_ms),
                register_by_in_ms: ms_left(v.register_by_ms, now_ms),
                register_by_local: local_time_text(v.register_by_ms),
                claimed_at: rfc3339(v.claimed_at_ms),
                serial: v.serial,
                code: v.code,
                plate: v.plate,
                plate_serial: v.plate_serial,
                office: v.office,
                office_name: v.office_name,
                application: v.application,
                class: v.class,
                vin: v.vin_masked,
                state: v.state,
                practice: v.practice,
                void: v.practice,
            },
        }
    }
}

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

pub(super) async fn voucher(gw: Gw, req: HttpRequest, citizen: Citizen) -> ApiResult<HttpResponse> {
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
        return Ok(HttpResponse::Ok().json(VoucherDocument::new(v, gw.engine.now_ms())));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_practice_voucher_is_void_in_json_too() {
        let doc = serde_json::to_value(VoucherDocument::new(Voucher::sample(true), 0))
            .expect("serialises");
        assert_eq!(doc["voucher"]["void"], true);
        assert_eq!(doc["voucher"]["practice"], true);
        assert_eq!(doc["voucher"]["plate"], "粤K·A1234");
        let real = serde_json::to_value(VoucherDocument::new(Voucher::sample(false), 0))
            .expect("serialises");
        assert_eq!(real["voucher"]["void"], false);
    }

    #[test]
    fn the_deadline_counts_down_from_now() {
        let v = Voucher::sample(false);
        let deadline = v.register_by_ms;
        let doc = VoucherDocument::new(v, deadline - 5_000);
        assert_eq!(doc.voucher.register_by_in_ms, 5_000);
    }
}
