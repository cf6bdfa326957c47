//! GET /v1/admin/audit: the audit trail, oldest first, paged.

use actix_web::{web, HttpRequest, HttpResponse};
use platepool_engine::calendar::rfc3339;
use platepool_engine::{AppId, Engine};
use serde::{Deserialize, Serialize};

use super::shared::{parse_time, query};
use crate::auth::Operator;
use crate::error::{ApiError, ApiResult};
use crate::openapi::{json_answer, query_params, Answer, Doc};
use crate::routes::table::{Access, Route, Verb};
use crate::Gateway;

/// The routes this file serves.
pub(crate) const ROUTES: &[Route] = &[
    Route::new(
        Verb::Get,
        "/v1/admin/audit",
        Access::Operator,
        |r| r.to(audit),
        Doc {
            summary: "The audit trail, oldest first, paged (without office: the cross-office trail: blacklistings, lifts, certificate imports)",
            request: None,
            query: Some(query_params::<AuditQuery>),
            response: Answer::Json(json_answer::<AuditPage>),
            codes: &[200, 400, 401, 403, 404, 503],
        },
    ),
];

/// Audit entries per page: default and most.
pub const AUDIT_PAGE_DEFAULT: usize = 100;
pub const AUDIT_PAGE_MAX: usize = 1_000;
/// Audit entries read per step while skipping those before `since`.
const AUDIT_SCAN_STEP: usize = 1_000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// The office; omitted: the cross-office trail.
    office: Option<String>,
    /// RFC 3339: entries at or after (empty: from the start).
    #[param(format = DateTime)]
    since: Option<String>,
    /// Entry id: entries after it (paging).
    #[param(pattern = "^[0-9]{0,18}$")]
    after: Option<String>,
    /// 1 to 1000, default 100.
    #[param(pattern = "^([1-9][0-9]{0,2}|1000)?$")]
    limit: Option<String>,
}

/// A page of the audit trail, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct AuditPage {
    /// null: the cross-office trail.
    office: Option<String>,
    entries: Vec<AuditLine>,
    /// `after` for the next page.
    next_after: u64,
    /// The page is full: there may be more.
    more: bool,
}

/// One audited change: when, who, what.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct AuditLine {
    id: u64,
    #[schema(format = DateTime)]
    at: String,
    /// `user:<id>`, `operator:<id>` or `system`.
    who: String,
    action: String,
    application: Option<String>,
    serial: Option<String>,
    plate: Option<String>,
    detail: String,
}

pub(super) async fn audit(
    gw: web::Data<Gateway>,
    op: Operator,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let _ = op;
    let q: AuditQuery = query(&req)?;
    let since_ms = q
        .since
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(|t| parse_time(t, "since"))
        .transpose()?
        .unwrap_or(0);
    let after: u64 = match q.after.as_deref() {
        None | Some("") => 0,
        Some(a) => a.parse().map_err(|_| {
            ApiError::bad_request("after must be an entry id (a whole number)").field("after")
        })?,
    };
    let limit: usize = match q.limit.as_deref() {
        None | Some("") => AUDIT_PAGE_DEFAULT,
        Some(l) => l
            .parse()
            .ok()
            .filter(|n| (1..=AUDIT_PAGE_MAX).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!("limit must be 1 to {AUDIT_PAGE_MAX}")).field("limit")
            })?,
    };
    let entries: Vec<(u64, platepool_engine::AuditEntry)> = match &q.office {
        Some(office) => {
            gw.engine
                .office_config(office)
                .map_err(|e| ApiError::from(e).field("office"))?;
            let engine = gw.engine.clone();
            let office = office.clone();
            web::block(move || scan_audit(&engine, &office, after, since_ms, limit))
                .await
                .map_err(|e| ApiError::unavailable(format!("audit read failed: {e}")))??
        }
        None => {
            // The registry's own trail (blacklist lifts and other changes spanning offices).
            let all = gw.engine.registry_audit().await?;
            all.into_iter()
                .enumerate()
                .map(|(i, e)| (i as u64 + 1, e))
                .filter(|(id, e)| *id > after && e.at_ms >= since_ms)
                .take(limit)
                .collect()
        }
    };
    let office = q.office.clone();
    let prefix = office
        .as_deref()
        .and_then(|o| gw.engine.office_config(o).ok())
        .map(|c| c.prefix.clone())
        .unwrap_or_default();
    let more = entries.len() == limit;
    let next_after = entries.last().map_or(after, |(id, _)| *id);
    let list = entries
        .into_iter()
        .map(|(id, e)| {
            let application = match (&office, e.application) {
                (Some(o), Some(seq)) => Some(
                    AppId {
                        office: o.clone(),
                        seq,
                    }
                    .to_string(),
                ),
                _ => None,
            };
            let plate = e
                .serial
                .as_deref()
                .filter(|_| !prefix.is_empty())
                .map(|s| format!("{prefix}·{s}"));
            AuditLine {
                id,
                at: rfc3339(e.at_ms),
                who: e.who,
                action: e.action,
                application,
                serial: e.serial,
                plate,
                detail: e.detail,
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(AuditPage {
        office,
        entries: list,
        next_after,
        more,
    }))
}

/// Entries with ids above `after` and times at or after `since_ms`, oldest first, at most `limit`.
fn scan_audit(
    engine: &Engine,
    office: &str,
    after: u64,
    since_ms: u64,
    limit: usize,
) -> ApiResult<Vec<(u64, platepool_engine::AuditEntry)>> {
    let step = if since_ms == 0 {
        limit
    } else {
        AUDIT_SCAN_STEP
    };
    let mut cursor = after;
    let mut out = Vec::new();
    loop {
        let batch = engine.audit(office, cursor, step)?;
        let n = batch.len();
        for (id, e) in batch {
            cursor = id;
            if e.at_ms >= since_ms {
                out.push((id, e));
                if out.len() == limit {
                    return Ok(out);
                }
            }
        }
        if n < step {
            return Ok(out);
        }
    }
}
