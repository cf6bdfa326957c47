//! GET /v1/applications/{id}/keyboard?entered=A1: the virtual keyboard (R4.5, I8).

use actix_web::{web, HttpRequest, HttpResponse};
use platepool_engine::plate::char_index;
use platepool_engine::{Caller, Refusal};
use serde::{Deserialize, Serialize};

use super::request::{app_id, limit, Gw};
use crate::auth::Citizen;
use crate::error::{ApiError, ApiResult};
use crate::openapi::{json_answer, query_params, Answer, Doc};
use crate::routes::table::{Access, Route, Shed, Verb};

/// The routes this file serves.
pub(crate) const ROUTES: &[Route] = &[Route::new(
    Verb::Get,
    "/v1/applications/{id}/keyboard",
    Access::Citizen,
    |r| r.to(keyboard),
    Doc {
        summary: "The virtual keyboard: enabled characters per position (R4.5, I8)",
        request: None,
        query: Some(query_params::<KeyboardQuery>),
        response: Answer::Json(json_answer::<KeyboardAnswer>),
        codes: &[200, 400, 401, 404, 429, 503],
    },
)
.shed(Shed::Lag)];

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct KeyboardQuery {
    /// The characters entered so far; `_` marks a free position.
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

pub(super) async fn keyboard(
    gw: Gw,
    req: HttpRequest,
    citizen: Citizen,
) -> ApiResult<HttpResponse> {
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
    // at an opening.
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

/// The virtual keyboard: for every position, the characters enabled given `entered`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Keyboard)]
struct KeyboardAnswer {
    /// `entered` as read: upper case, `_` for a free position.
    entered: String,
    /// Characters of the class's serials.
    length: usize,
    positions: Vec<KeyPosition>,
}

/// One position of the keyboard.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct KeyPosition {
    /// The characters enabled, in ascending code-point order.
    enabled: String,
    /// 0-based.
    index: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use platepool_engine::plate::char_index;

    #[test]
    fn entered_marks_free_positions_and_names_bad_characters() {
        assert_eq!(
            parse_entered("a_1").expect("valid"),
            vec![char_index('A'), None, char_index('1')]
        );
        let e = parse_entered("A1I").expect_err("I is not a plate character");
        assert_eq!(e.code, "invalid_plate");
        assert_eq!(e.field.as_deref(), Some("entered"));
        assert_eq!(e.extra.position, Some(Some(3)));
    }
}
