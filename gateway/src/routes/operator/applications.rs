//! GET /v1/admin/applications: applications by VIN, plate, user, or a printed voucher.

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use platepool_engine::vin::check_vin;
use platepool_engine::{AppId, AppView, Engine, Refusal};
use serde::Deserialize;

use super::shared::{parse_serial, query};
use crate::auth::{validate_user, Operator};
use crate::error::{ApiError, ApiResult};
use crate::openapi::{json_list, query_params, Answer, Doc};
use crate::routes::answers::OperatorApplication;
use crate::routes::table::{Access, Route, Verb};
use crate::Gateway;

/// The routes this file serves.
pub(crate) const ROUTES: &[Route] = &[
    Route::new(
        Verb::Get,
        "/v1/admin/applications",
        Access::Operator,
        |r| r.to(applications),
        Doc {
            summary: "Looks applications up by VIN, by plate serial and office, by user, or confirms a printed voucher by its serial and verification code (404 not_found when they are not one claim's voucher, never saying which part was wrong); unmasked",
            request: None,
            query: Some(query_params::<LookupQuery>),
            response: Answer::Json(json_list::<OperatorApplication>),
            codes: &[200, 400, 401, 403, 404, 503],
        },
    ),
];

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct LookupQuery {
    /// A VIN.
    vin: Option<String>,
    /// A plate serial (with office).
    serial: Option<String>,
    /// The office (required with serial, a filter otherwise).
    office: Option<String>,
    /// A user id.
    user: Option<String>,
    /// A pre-selection voucher serial (凭证编号), e.g. MAOMING-20261124-12 (with code).
    voucher: Option<String>,
    /// The voucher's verification code (验证码), 8 digits (with voucher).
    code: Option<String>,
}

/// Digits of a voucher's verification code.
pub const VOUCHER_CODE_LEN: usize = 8;

/// Confirms a printed pre-selection voucher (R4.8) by its serial (凭证编号) and verification
/// code (验证码): the application it belongs to, or 404 `not_found` when the serial and code
/// are not one claim's voucher (never saying which was wrong). Malformed input is 400.
async fn voucher_lookup(
    engine: &Engine,
    serial: &str,
    code: Option<&str>,
) -> ApiResult<Vec<(AppId, AppView)>> {
    if AppId::from_voucher_serial(serial).is_none() {
        return Err(ApiError::bad_request(
            "voucher must be a voucher serial such as MAOMING-20261124-12 (office-date-number)",
        )
        .field("voucher"));
    }
    let code = code.map(str::trim).unwrap_or_default();
    if code.len() != VOUCHER_CODE_LEN || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad_request(format!(
            "a voucher is confirmed with its verification code: {VOUCHER_CODE_LEN} digits"
        ))
        .field("code"));
    }
    engine
        .voucher_application(serial, code)
        .await?
        .map(|found| vec![found])
        .ok_or_else(|| ApiError::not_found("no pre-selection voucher has this serial and code"))
}

pub(super) async fn applications(
    gw: web::Data<Gateway>,
    op: Operator,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let _ = op;
    let q: LookupQuery = query(&req)?;
    if q.code.is_some() && q.voucher.is_none() {
        return Err(
            ApiError::bad_request("code goes with voucher (a voucher serial)").field("voucher"),
        );
    }
    let found =
        match (&q.vin, &q.serial, &q.user, &q.voucher) {
            (None, None, None, Some(voucher)) => {
                let found = voucher_lookup(&gw.engine, voucher, q.code.as_deref()).await?;
                if q.office
                    .as_ref()
                    .is_some_and(|o| found.iter().any(|(id, _)| &id.office != o))
                {
                    return Err(ApiError::not_found(
                        "no pre-selection voucher has this serial and code",
                    ));
                }
                found
            }
            (Some(vin), None, None, None) => {
                let vin = check_vin(vin).map_err(|e| {
                    ApiError::from(Refusal::InvalidVin(e.to_string())).position(e.position)
                })?;
                gw.engine.vin_applications(vin.as_str()).await?
            }
            (None, Some(serial), None, None) => {
                let office = q.office.as_deref().ok_or_else(|| {
                    ApiError::bad_request("a look-up by serial names the office").field("office")
                })?;
                let config = gw
                    .engine
                    .office_config(office)
                    .map_err(|e| ApiError::from(e).field("office"))?;
                let serial = parse_serial(serial, &config.prefix, "serial")?;
                gw.engine
                    .serial_application(office, &serial.to_string())
                    .await?
                    .into_iter()
                    .collect()
            }
            (None, None, Some(user), None) => {
                validate_user(user).map_err(|m| ApiError::bad_request(m).field("user"))?;
                gw.engine.user_applications(user).await?
            }
            _ => return Err(ApiError::bad_request(
                "look up by exactly one of vin, serial (with office), user or voucher (with code)",
            )),
        };
    let now = gw.engine.now_ms();
    let mut prefixes: HashMap<String, String> = HashMap::new();
    let mut out = Vec::with_capacity(found.len());
    for (id, view) in found {
        if let Some(office) = &q.office {
            if &id.office != office {
                continue;
            }
        }
        let prefix = match prefixes.get(&id.office) {
            Some(p) => p.clone(),
            None => {
                let p = gw
                    .engine
                    .office_config(&id.office)
                    .map(|c| c.prefix.clone())
                    .unwrap_or_default();
                prefixes.insert(id.office.clone(), p.clone());
                p
            }
        };
        out.push(OperatorApplication::new(&id, &view, &prefix, now));
    }
    Ok(HttpResponse::Ok().json(out))
}
