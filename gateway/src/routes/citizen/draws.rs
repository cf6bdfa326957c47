//! POST /v1/applications/{id}/draws: a random draw (R4.6).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use platepool_engine::{Caller, Draw};
use serde::{Deserialize, Serialize};

use super::request::{answer_once, quotas_of, AppCall, Gw};
use crate::auth::Citizen;
use crate::error::ApiResult;
use crate::openapi::{json_answer, json_body, Answer, Doc};
use crate::routes::answers::HoldAnswer;
use crate::routes::table::{Access, Route, Shed, Verb};

/// The routes this file serves.
pub(crate) const ROUTES: &[Route] = &[Route::new(
    Verb::Post,
    "/v1/applications/{id}/draws",
    Access::Citizen,
    |r| r.to(draw),
    Doc {
        summary: "A random draw (R4.6)",
        request: Some(json_body::<DrawBody>),
        query: None,
        response: Answer::Json(json_answer::<DrawAnswer>),
        codes: &[201, 400, 401, 403, 404, 409, 413, 429, 503],
    },
)
.shed(Shed::Office)];

/// The answer to a draw (`201`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = DrawResult)]
struct DrawAnswer {
    /// The numbers drawn: min(random_batch, available).
    batch: HoldAnswer,
    /// The candidate list, if any.
    candidates: Option<HoldAnswer>,
    exclude_four: bool,
    random_left: u32,
}

impl DrawAnswer {
    fn new(prefix: &str, d: &Draw, now_ms: u64, exclude_four: bool) -> DrawAnswer {
        DrawAnswer {
            batch: HoldAnswer::new(prefix, &d.batch, now_ms),
            candidates: d
                .candidates
                .as_ref()
                .map(|hold| HoldAnswer::new(prefix, hold, now_ms)),
            exclude_four,
            random_left: d.random_left,
        }
    }
}

/// An empty body is `{"exclude_four": false}`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct DrawBody {
    #[serde(default)]
    exclude_four: bool,
}

pub(super) async fn draw(
    gw: Gw,
    req: HttpRequest,
    citizen: Citizen,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let call: AppCall<DrawBody> =
        AppCall::read(&gw, &req, &citizen, payload, Some(DrawBody::default())).await?;
    let id = &call.id;
    let exclude_four = call.body.exclude_four;
    let work = async {
        let d = gw
            .engine
            .draw(id, Caller::Citizen(&citizen.user), exclude_four)
            .await?;
        let config = gw.engine.office_config(&id.office).ok();
        let prefix = config.as_ref().map_or("", |c| c.prefix.as_str());
        let answer = DrawAnswer::new(prefix, &d, gw.engine.now_ms(), exclude_four);
        Ok((StatusCode::CREATED, answer))
    };
    let state = quotas_of(&gw, id, &citizen.user);
    answer_once(&gw, call.key.clone(), call.now_ms, state, work).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use platepool_engine::{HoldView, Serial};
    use serde_json::{json, Value};

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
        let out = serde_json::to_value(DrawAnswer::new("粤K", &d, 1_000, true)).expect("json");
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
        let out = serde_json::to_value(DrawAnswer::new("粤K", &none, 1_000, false)).expect("json");
        assert_eq!(out["candidates"], Value::Null);
        assert_eq!(out["exclude_four"], false);
    }
}
