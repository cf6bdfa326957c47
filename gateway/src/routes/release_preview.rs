//! `POST /v1/admin/offices/{office}/releases/preview` (SPEC R5.2): what a release would add,
//! saving nothing. The body is a release's (`{"class","label","opens_at","custom_from"?,
//! "patterns"|"serials"}`); it is read by the same code as `POST …/releases` and checked by the
//! engine's own release checks ([`platepool_engine::pool::OfficePool::preview_release`]), so a
//! preview is refused exactly when the release would be, with the same code and field, and its
//! `total` is the `total` the release would answer at that moment.
//!
//! The answer: `{"office","class","total","named","already_in_pool","sample":[{"serial","plate"}],
//! "last","opens_at","custom_from"}` — `named` counts the distinct numbers the body names,
//! `total` those of them not in the pool yet.

use actix_web::{web, HttpResponse};
use platepool_engine::calendar::rfc3339;
use serde::Serialize;

use crate::auth::Operator;
use crate::error::ApiResult;
use crate::extract::ApiJson;
use crate::openapi::{json_answer, json_body, Answer, Doc};
use crate::routes::answers::PlateAnswer;
use crate::routes::operator::releases::{new_release, release_refusal, ReleaseBody};
use crate::routes::table::{Access, Route, Verb};
use crate::Gateway;

/// The routes this file serves. Listed in [`super::FILES`] before `operator::releases`: the
/// router gives `…/releases/preview` its own resource only if it is registered before the
/// `…/releases` scope, whose `/{id}` would otherwise take `preview` as a release id.
pub(crate) const ROUTES: &[Route] = &[Route::new(
    Verb::Post,
    "/v1/admin/offices/{office}/releases/preview",
    Access::Operator,
    |r| r.to(preview_release),
    Doc {
        summary: "What a release would add, saving nothing: checked exactly as the release (same refusals and fields); total is the count the release would answer",
        request: Some(json_body::<ReleaseBody>),
        query: None,
        response: Answer::Json(json_answer::<ReleasePreviewAnswer>),
        codes: &[200, 400, 401, 403, 404, 413, 503],
    },
)];

/// What a release would add (see the module's text).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ReleasePreview)]
struct ReleasePreviewAnswer {
    office: String,
    class: String,
    /// The numbers the release would add: those named, less those in the pool already.
    total: u64,
    /// Distinct numbers the body names.
    named: u64,
    already_in_pool: u64,
    /// The first numbers it would add.
    sample: Vec<PlateAnswer>,
    /// The last number it would add.
    last: Option<PlateAnswer>,
    #[schema(format = DateTime)]
    opens_at: String,
    #[schema(format = DateTime)]
    custom_from: String,
}

async fn preview_release(
    gw: web::Data<Gateway>,
    op: Operator,
    path: web::Path<String>,
    body: ApiJson<ReleaseBody>,
) -> ApiResult<HttpResponse> {
    let _ = op;
    let office = path.into_inner();
    let release = new_release(&gw.engine, &office, &body.0)?;
    let prefix = gw.engine.office_config(&office)?.prefix.clone();
    let (class, opens_at_ms) = (release.class.clone(), release.opens_at_ms);
    let custom_from_ms = release
        .custom_from_ms
        .unwrap_or(opens_at_ms)
        .max(opens_at_ms);
    let preview = gw
        .engine
        .preview_release(&office, release)
        .await
        .map_err(release_refusal)?;
    let numbered = |s: &platepool_engine::Serial| PlateAnswer::new(&prefix, *s);
    Ok(HttpResponse::Ok().json(ReleasePreviewAnswer {
        office,
        class,
        total: preview.total,
        named: preview.named,
        already_in_pool: preview.named - preview.total,
        sample: preview.sample.iter().map(numbered).collect(),
        last: preview.last.as_ref().map(numbered),
        opens_at: rfc3339(opens_at_ms),
        custom_from: rfc3339(custom_from_ms),
    }))
}
