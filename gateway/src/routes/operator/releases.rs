//! POST /v1/admin/offices/{office}/releases and DELETE …/releases/{id}: numbers into the pool
//! by patterns or serials, and withdrawn again.

use actix_web::{web, HttpResponse};
use platepool_engine::calendar::rfc3339;
use platepool_engine::pool::{RELEASE_PATTERNS_MAX, RELEASE_SERIALS_MAX};
use platepool_engine::{Engine, NewRelease, OfficeConfig, Pattern, Refusal, ReleaseSource};
use serde::{Deserialize, Serialize};

use super::shared::{parse_serial, parse_time};
use crate::auth::Operator;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::openapi::{json_answer, json_body, Answer, Doc};
use crate::routes::table::{Access, Route, Verb};
use crate::Gateway;

/// The routes this file serves.
pub(crate) const ROUTES: &[Route] = &[
    Route::new(
        Verb::Post,
        "/v1/admin/offices/{office}/releases",
        Access::Operator,
        |r| r.to(add_release),
        Doc {
            summary: "Releases numbers into the pool by patterns or explicit serials",
            request: Some(json_body::<ReleaseBody>),
            query: None,
            response: Answer::Json(json_answer::<ReleaseCreated>),
            codes: &[201, 400, 401, 403, 404, 413, 503],
        },
    ),
    Route::new(
        Verb::Delete,
        "/v1/admin/offices/{office}/releases/{id}",
        Access::Operator,
        |r| r.to(withdraw_release),
        Doc {
            summary: "Withdraws a release's available numbers",
            request: None,
            query: None,
            response: Answer::Json(json_answer::<ReleaseWithdrawn>),
            codes: &[200, 401, 403, 404, 503],
        },
    ),
];

/// A release request (`POST …/releases` and its preview, `routes/release_preview.rs`): either
/// `patterns` or `serials`, not both.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReleaseBody {
    class: String,
    #[serde(default)]
    label: String,
    /// RFC 3339; omitted: now.
    #[schema(format = DateTime)]
    opens_at: Option<String>,
    /// RFC 3339; omitted: custom selection may take the numbers from the opening.
    #[schema(format = DateTime)]
    custom_from: Option<String>,
    patterns: Option<Vec<String>>,
    serials: Option<Vec<String>>,
}

/// The release source of a request, every pattern or serial checked with its index as field.
fn release_source(body: &ReleaseBody, config: &OfficeConfig) -> ApiResult<ReleaseSource> {
    match (&body.patterns, &body.serials) {
        (Some(_), Some(_)) => {
            Err(ApiError::bad_request("give either patterns or serials, not both").field("serials"))
        }
        (None, None) => Err(ApiError::bad_request(
            "a release names its numbers by patterns or serials",
        )
        .field("patterns")),
        (Some(patterns), None) => {
            if patterns.is_empty() || patterns.len() > RELEASE_PATTERNS_MAX {
                return Err(ApiError::bad_request(format!(
                    "a release has 1 to {RELEASE_PATTERNS_MAX} patterns"
                ))
                .field("patterns"));
            }
            let mut out = Vec::with_capacity(patterns.len());
            for (i, text) in patterns.iter().enumerate() {
                let field = format!("patterns[{i}]");
                let p = Pattern::parse(text.trim()).map_err(|e| {
                    ApiError::bad_request(format!("{field}: {e}"))
                        .field(field.clone())
                        .position(Some(e.position))
                })?;
                out.push(p);
            }
            Ok(ReleaseSource::Patterns(out))
        }
        (None, Some(serials)) => {
            if serials.is_empty() || serials.len() > RELEASE_SERIALS_MAX {
                return Err(ApiError::bad_request(format!(
                    "a release lists 1 to {RELEASE_SERIALS_MAX} serials"
                ))
                .field("serials"));
            }
            let mut out = Vec::with_capacity(serials.len());
            for (i, text) in serials.iter().enumerate() {
                out.push(parse_serial(
                    text,
                    &config.prefix,
                    &format!("serials[{i}]"),
                )?);
            }
            Ok(ReleaseSource::Serials(out))
        }
    }
}

/// A refused release: the engine names the pattern or serial at fault at the start of its message.
pub(crate) fn release_refusal(r: Refusal) -> ApiError {
    match r {
        Refusal::InvalidRelease(message) => {
            let field = message
                .split_once(':')
                .map(|(head, _)| head)
                .filter(|head| {
                    head.starts_with("patterns[")
                        || head.starts_with("serials[")
                        || *head == "label"
                })
                .map(str::to_string);
            let e = ApiError::bad_request(format!("release: {message}"));
            match field {
                Some(f) => e.field(f),
                None if message.starts_with("label ") => e.field("label"),
                None => e.field(if message.contains("serial") {
                    "serials"
                } else {
                    "patterns"
                }),
            }
        }
        Refusal::UnknownClass(class) => {
            ApiError::bad_request(format!("the office does not serve class {class}")).field("class")
        }
        other => ApiError::from(other),
    }
}

/// The engine's release request from the API's body: the class, the times and every pattern or
/// serial checked here, the rest by the engine (which `add_release` and its preview share).
pub(crate) fn new_release(
    engine: &Engine,
    office: &str,
    body: &ReleaseBody,
) -> ApiResult<NewRelease> {
    let config = engine.office_config(office)?;
    if !config.classes.iter().any(|c| c == &body.class) {
        return Err(ApiError::bad_request(format!(
            "the office does not serve class {}; it serves {}",
            body.class,
            config.classes.join(", ")
        ))
        .field("class"));
    }
    let opens_at_ms = match &body.opens_at {
        Some(t) => parse_time(t, "opens_at")?,
        None => engine.now_ms(),
    };
    let custom_from_ms = body
        .custom_from
        .as_deref()
        .map(|t| parse_time(t, "custom_from"))
        .transpose()?;
    let source = release_source(body, &config)?;
    Ok(NewRelease {
        class: body.class.clone(),
        label: body.label.clone(),
        opens_at_ms,
        custom_from_ms,
        source,
    })
}

/// A release added: its id and the numbers it added.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ReleaseCreated {
    id: u32,
    total: u64,
    office: String,
    class: String,
    label: String,
    #[schema(format = DateTime)]
    opens_at: String,
    #[schema(format = DateTime)]
    custom_from: String,
}

/// A release withdrawn: the available numbers it took out of the pool.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ReleaseWithdrawn {
    id: u32,
    withdrawn: u64,
}

pub(super) async fn add_release(
    gw: web::Data<Gateway>,
    op: Operator,
    path: web::Path<String>,
    body: ApiJson<ReleaseBody>,
) -> ApiResult<HttpResponse> {
    let office = path.into_inner();
    let body = body.0;
    let release = new_release(&gw.engine, &office, &body)?;
    let (opens_at_ms, custom_from_ms) = (release.opens_at_ms, release.custom_from_ms);
    let (id, total) = gw
        .engine
        .add_release(&office, release, &op.who)
        .await
        .map_err(release_refusal)?;
    tracing::info!(office = %office, who = %op.who, release = id, total, "release added");
    let stored = gw
        .engine
        .stats(&office)
        .await
        .ok()
        .and_then(|s| s.into_iter().flat_map(|c| c.releases).find(|r| r.id == id));
    let (label, custom_from) = match stored {
        Some(r) => (r.label, r.custom_from_ms),
        None => (
            body.label,
            custom_from_ms.unwrap_or(opens_at_ms).max(opens_at_ms),
        ),
    };
    Ok(HttpResponse::Created().json(ReleaseCreated {
        id,
        total,
        office,
        class: body.class,
        label,
        opens_at: rfc3339(opens_at_ms),
        custom_from: rfc3339(custom_from),
    }))
}

pub(super) async fn withdraw_release(
    gw: web::Data<Gateway>,
    op: Operator,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (office, id) = path.into_inner();
    gw.engine.office_config(&office)?;
    let id: u32 = id
        .parse()
        .map_err(|_| ApiError::from(Refusal::UnknownRelease))?;
    let withdrawn = gw.engine.withdraw_release(&office, id, &op.who).await?;
    tracing::info!(office = %office, who = %op.who, release = id, withdrawn, "release withdrawn");
    Ok(HttpResponse::Ok().json(ReleaseWithdrawn { id, withdrawn }))
}
