//! Request bodies: JSON only, bounded in size, with errors that name the field at fault (I10).

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Largest ordinary request body (API.md).
pub const BODY_LEN_MAX: usize = 64 * 1024;
/// Largest certificate import body (API.md).
pub const IMPORT_BODY_LEN_MAX: usize = 16 * 1024 * 1024;

/// Reads the whole body, refusing it with 413 past `limit` bytes.
pub async fn read_body(
    req: &HttpRequest,
    payload: &mut Payload,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    if let Some(len) = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > limit {
            return Err(ApiError::too_large(limit));
        }
    }
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("cannot read the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Parses JSON with the path of the field at fault in the error (`plates[2]`).
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "the body is empty: a JSON object is expected",
        ));
    }
    // Every body is an object; serde alone would also take an array as a struct's fields in
    // order (`[true]` as `{"exclude_four": true}`).
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad_request("a JSON object is expected"));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if inner.is_syntax() || inner.is_eof() {
            format!("malformed JSON: {inner}")
        } else {
            inner.to_string()
        };
        let err = ApiError::bad_request(message.clone());
        let at_top = path.is_empty() || path == ".";
        // A missing field is reported at its parent: name the field itself.
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split_once('`'))
            .map(|(name, _)| name.to_string());
        match (missing, at_top) {
            (Some(name), true) => err.field(name),
            (Some(name), false) => err.field(format!("{path}.{name}")),
            (None, true) => err,
            (None, false) => err.field(path),
        }
    })?;
    // Anything but whitespace after the value is malformed too (`{"serial": "A1234"} x`).
    de.end()
        .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
    Ok(value)
}

fn check_json_content_type(req: &HttpRequest) -> Result<(), ApiError> {
    let ct = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case("application/json") || mime.is_empty() {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "Content-Type must be application/json, not {mime}"
        )))
    }
}

/// A JSON body of at most [`BODY_LEN_MAX`] bytes.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for ApiJson<T> {
    type Error = ApiError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let mut payload = payload.take();
        Box::pin(async move {
            check_json_content_type(&req)?;
            let body = read_body(&req, &mut payload, BODY_LEN_MAX).await?;
            parse_json(&body).map(ApiJson)
        })
    }
}

/// A raw body of at most [`IMPORT_BODY_LEN_MAX`] bytes (certificate imports: CSV or JSON).
#[derive(Debug)]
pub struct LargeBody(pub Vec<u8>);

impl FromRequest for LargeBody {
    type Error = ApiError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let mut payload = payload.take();
        Box::pin(async move {
            read_body(&req, &mut payload, IMPORT_BODY_LEN_MAX)
                .await
                .map(LargeBody)
        })
    }
}
