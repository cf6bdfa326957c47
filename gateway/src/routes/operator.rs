//! Operator routes (API.md "Operator", SPEC §5): offices, releases, withdrawals, certificate
//! imports, registrations, voids, look-ups, figures, the blacklist, the audit trail, citizen tokens
//! for demos and load tests, and the built-in SMS outbox.
//!
//! Every handler takes the [`Operator`] extractor first, so a request without the operator
//! credential is refused (401, or 403 for a citizen token) before its body is read.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use platepool_engine::calendar::{parse_rfc3339, rfc3339};
use platepool_engine::plate::full_plate;
use platepool_engine::pool::{HoldView, RELEASE_PATTERNS_MAX, RELEASE_SERIALS_MAX};
use platepool_engine::registry::IMPORT_ROWS_MAX;
use platepool_engine::vin::check_vin;
use platepool_engine::{
    AppId, AppView, CallSnapshot, Caller, CertificateRow, Claim, Engine, ImportPart, NewRelease,
    OfficeCalls, OfficeConfig, Pattern, Refusal, ReleaseSource, Serial,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{sign_token, validate_phone, validate_user, Operator, TokenClaims};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, LargeBody};
use crate::routes::public::office_document;
use crate::Gateway;

/// Longest reason an operator may give for a void or a blacklist lift.
pub const REASON_LEN_MAX: usize = 500;
/// Audit entries per page: default and most.
pub const AUDIT_PAGE_DEFAULT: usize = 100;
pub const AUDIT_PAGE_MAX: usize = 1_000;
/// Audit entries read per step while skipping those before `since`.
const AUDIT_SCAN_STEP: usize = 1_000;
/// Certificate rows handed to the registry per call, so one large import does not hold it long.
pub const IMPORT_CHUNK_ROWS: usize = 20_000;
/// Citizen tokens issued here: default and longest life.
pub const TOKEN_TTL_DEFAULT_S: u64 = 3_600;
pub const TOKEN_TTL_MAX_S: u64 = 30 * 86_400;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::Data::new(RateSampler::new()))
        .route("/v1/admin/offices/{office}", web::put().to(put_office))
        .route(
            "/v1/admin/offices/{office}/releases",
            web::post().to(add_release),
        )
        .route(
            "/v1/admin/offices/{office}/releases/{id}",
            web::delete().to(withdraw_release),
        )
        .route(
            "/v1/admin/offices/{office}/plates/{serial}",
            web::delete().to(withdraw_plate),
        )
        .route(
            "/v1/admin/certificates",
            web::post().to(import_certificates),
        )
        .route("/v1/admin/registrations", web::post().to(register))
        .route(
            "/v1/admin/offices/{office}/claims/{serial}/void",
            web::post().to(void),
        )
        .route("/v1/admin/applications", web::get().to(applications))
        .route("/v1/admin/offices/{office}/stats", web::get().to(stats))
        .route("/v1/admin/blacklist", web::get().to(blacklist))
        .route(
            "/v1/admin/blacklist/{user}",
            web::delete().to(lift_blacklist),
        )
        .route("/v1/admin/audit", web::get().to(audit))
        .route("/v1/admin/tokens", web::post().to(issue_token))
        .route("/v1/admin/sms/outbox", web::get().to(outbox));
}

// ----------------------------------------------------------------------------------------------
// Shared helpers

/// Parses the query string into `T`, refusing it with 400 naming the problem.
fn query<T: DeserializeOwned>(req: &HttpRequest) -> ApiResult<T> {
    web::Query::<T>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))
}

fn required_text(value: Option<String>, field: &str, max: usize) -> ApiResult<String> {
    let text = value.unwrap_or_default().trim().to_string();
    if text.is_empty() || text.chars().count() > max {
        return Err(
            ApiError::bad_request(format!("{field} must have 1 to {max} characters")).field(field),
        );
    }
    Ok(text)
}

fn hold_json(hold: &Option<HoldView>, prefix: &str, now_ms: u64) -> Value {
    match hold {
        None => Value::Null,
        Some(h) => json!({
            "plates": h.serials.iter().map(|s| json!({
                "serial": s.to_string(),
                "plate": full_plate(prefix, *s),
            })).collect::<Vec<_>>(),
            "expires_at": rfc3339(h.expires_at_ms),
            "expires_in_ms": h.expires_at_ms.saturating_sub(now_ms),
        }),
    }
}

fn claim_json(claim: &Option<Claim>, prefix: &str) -> Value {
    match claim {
        None => Value::Null,
        Some(c) => json!({
            "serial": c.serial.to_string(),
            "plate": full_plate(prefix, c.serial),
            "claimed_at": rfc3339(c.claimed_at_ms),
            "register_by": rfc3339(c.register_by_ms),
            "voucher": {"serial": c.voucher_serial, "code": c.voucher_code},
            "void": c.void,
        }),
    }
}

/// An application as operators see it: everything, the VIN and phone unmasked.
pub fn application_json(id: &AppId, view: &AppView, prefix: &str, now_ms: u64) -> Value {
    let r = &view.record;
    json!({
        "id": id.to_string(),
        "office": id.office,
        "class": r.class,
        "energy": r.energy,
        "vin": r.vin,
        "user": r.user,
        "phone": r.phone,
        "state": r.state.as_str(),
        "practice": view.practice,
        "notice_version": r.notice_version,
        "created_at": rfc3339(r.created_at_ms),
        "custom_left": r.custom_left,
        "random_left": r.random_left,
        "verified_until": r.verified_until_ms.map(rfc3339),
        "batch": hold_json(&view.batch, prefix, now_ms),
        "candidates": hold_json(&view.candidates, prefix, now_ms),
        "claim": claim_json(&r.claim, prefix),
        "closed_at": r.closed_at_ms.map(rfc3339),
    })
}

/// The operator view of one application, after an operator changed it.
async fn application_answer(engine: &Engine, id: &AppId) -> ApiResult<Value> {
    let view = engine.application(id, Caller::Operator).await?;
    let prefix = engine.office_config(&id.office)?.prefix.clone();
    Ok(application_json(id, &view, &prefix, engine.now_ms()))
}

/// A serial typed in a path or body, checked so the error names the field.
fn parse_serial(text: &str, prefix: &str, field: &str) -> ApiResult<Serial> {
    Serial::parse_with_prefix(text, prefix).map_err(|e| ApiError::invalid_plate(&e, field))
}

// ----------------------------------------------------------------------------------------------
// Offices and releases

async fn put_office(
    gw: web::Data<Gateway>,
    op: Operator,
    path: web::Path<String>,
    body: ApiJson<OfficeConfig>,
) -> ApiResult<HttpResponse> {
    let id = path.into_inner();
    let created = gw.engine.put_office(&id, body.0, &op.who).await?;
    let config = gw.engine.office_config(&id)?;
    tracing::info!(office = %id, who = %op.who, created, "office configured");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(HttpResponse::build(status).json(office_document(&gw.engine, &id, &config)))
}

/// A release request (`POST …/releases` and its preview).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReleaseBody {
    class: String,
    #[serde(default)]
    label: String,
    opens_at: Option<String>,
    custom_from: Option<String>,
    patterns: Option<Vec<String>>,
    serials: Option<Vec<String>>,
}

fn parse_time(text: &str, field: &str) -> ApiResult<u64> {
    parse_rfc3339(text).map_err(|e| ApiError::bad_request(format!("{field}: {e}")).field(field))
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
                        .with("position", json!(e.position))
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

async fn add_release(
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
    Ok(HttpResponse::Created().json(json!({
        "id": id,
        "total": total,
        "office": office,
        "class": body.class,
        "label": label,
        "opens_at": rfc3339(opens_at_ms),
        "custom_from": rfc3339(custom_from),
    })))
}

async fn withdraw_release(
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
    Ok(HttpResponse::Ok().json(json!({"id": id, "withdrawn": withdrawn})))
}

async fn withdraw_plate(
    gw: web::Data<Gateway>,
    op: Operator,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (office, serial) = path.into_inner();
    let config = gw.engine.office_config(&office)?;
    let parsed = parse_serial(&serial, &config.prefix, "serial")?;
    gw.engine
        .withdraw_number(&office, &parsed.to_string(), &op.who)
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "serial": parsed.to_string(),
        "plate": full_plate(&config.prefix, parsed),
        "withdrawn": 1,
    })))
}

// ----------------------------------------------------------------------------------------------
// Certificate records

/// A rejected row: 1-based among the records (the CSV header is not a record), with the line of
/// a CSV file where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rejected {
    row: usize,
    line: Option<usize>,
    reason: String,
}

#[derive(Debug, Default)]
struct ParsedRows {
    rows: Vec<(usize, CertificateRow)>,
    rejected: Vec<Rejected>,
}

/// One CSV record: its first line and its fields, or why it cannot be read.
type CsvRecord = (usize, Result<Vec<String>, String>);

/// Splits CSV text (RFC 4180: `,` separators, `"` quoting with `""` for a quote, CRLF or LF line
/// ends, line breaks allowed inside quotes) into records. Blank lines are skipped.
fn csv_records(text: &str) -> Vec<CsvRecord> {
    let mut records: Vec<CsvRecord> = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    // The current field was quoted and its closing quote seen: only `,` or a line end may follow.
    let mut quoted = false;
    let mut error: Option<String> = None;
    let mut line = 1usize;
    let mut start_line = 1usize;
    let mut chars = text.chars().peekable();

    fn end_record(
        records: &mut Vec<CsvRecord>,
        fields: &mut Vec<String>,
        field: &mut String,
        error: &mut Option<String>,
        start_line: usize,
    ) {
        fields.push(std::mem::take(field));
        let fs = std::mem::take(fields);
        let blank = error.is_none() && fs.len() == 1 && fs[0].trim().is_empty();
        if !blank {
            records.push((
                start_line,
                match error.take() {
                    Some(e) => Err(e),
                    None => Ok(fs),
                },
            ));
        }
        *error = None;
    }

    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => {
                    in_quotes = false;
                    quoted = true;
                }
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            ',' => {
                fields.push(std::mem::take(&mut field));
                quoted = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                end_record(
                    &mut records,
                    &mut fields,
                    &mut field,
                    &mut error,
                    start_line,
                );
                quoted = false;
                line += 1;
                start_line = line;
            }
            '"' if field.is_empty() && !quoted => in_quotes = true,
            _ => {
                if error.is_none() {
                    if quoted {
                        error = Some(format!("text after a closing quote (line {line})"));
                    } else if c == '"' {
                        error = Some(format!(
                            "a quote inside an unquoted field (line {line}): quote the whole field"
                        ));
                    }
                }
                field.push(c);
            }
        }
    }
    if in_quotes {
        error = Some(format!(
            "a quoted field opened on line {start_line} is never closed"
        ));
    }
    if !(fields.is_empty() && field.is_empty() && error.is_none()) {
        end_record(
            &mut records,
            &mut fields,
            &mut field,
            &mut error,
            start_line,
        );
    }
    records
}

const CERT_COLUMNS: [&str; 4] = ["vin", "voucher", "class", "energy"];

fn parse_csv(body: &[u8]) -> ApiResult<ParsedRows> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::bad_request(format!("the CSV is not UTF-8: {e}")))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = csv_records(text).into_iter();
    let Some((_, header)) = records.next() else {
        return Err(ApiError::bad_request(
            "the CSV is empty: the header vin,voucher,class,energy is expected",
        )
        .field("header"));
    };
    let header =
        header.map_err(|e| ApiError::bad_request(format!("CSV header: {e}")).field("header"))?;
    let names: Vec<String> = header
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let mut index = [0usize; 4];
    for (slot, col) in index.iter_mut().zip(CERT_COLUMNS) {
        let mut found = names.iter().enumerate().filter(|(_, n)| n.as_str() == col);
        match (found.next(), found.next()) {
            (Some((i, _)), None) => *slot = i,
            (None, _) => {
                return Err(ApiError::bad_request(format!(
                    "the CSV header lacks the column {col}: expected vin,voucher,class,energy"
                ))
                .field("header"))
            }
            (Some(_), Some(_)) => {
                return Err(
                    ApiError::bad_request(format!("the CSV header names {col} twice"))
                        .field("header"),
                )
            }
        }
    }
    let mut out = ParsedRows::default();
    for (n, (line, record)) in records.enumerate() {
        let row = n + 1;
        let reject = |reason: String| Rejected {
            row,
            line: Some(line),
            reason,
        };
        match record {
            Err(reason) => out.rejected.push(reject(reason)),
            Ok(fields) if fields.len() != names.len() => out.rejected.push(reject(format!(
                "the row has {} fields, the header {}",
                fields.len(),
                names.len()
            ))),
            Ok(fields) => {
                let get = |i: usize| {
                    fields
                        .get(i)
                        .map(|f| f.trim().to_string())
                        .unwrap_or_default()
                };
                out.rows.push((
                    row,
                    CertificateRow {
                        vin: get(index[0]),
                        voucher: get(index[1]),
                        class: get(index[2]),
                        energy: get(index[3]),
                    },
                ));
            }
        }
    }
    Ok(out)
}

fn parse_json_rows(body: &[u8]) -> ApiResult<ParsedRows> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
    let Value::Array(items) = value else {
        return Err(ApiError::bad_request(
            "a JSON array of certificate records [{\"vin\",\"voucher\",\"class\",\"energy\"}] is expected",
        ));
    };
    let mut out = ParsedRows::default();
    for (n, item) in items.into_iter().enumerate() {
        let row = n + 1;
        if !item.is_object() {
            out.rejected.push(Rejected {
                row,
                line: None,
                reason: "a record is an object {\"vin\",\"voucher\",\"class\",\"energy\"}".into(),
            });
            continue;
        }
        match serde_json::from_value::<CertificateRow>(item) {
            Ok(r) => out.rows.push((row, r)),
            Err(e) => out.rejected.push(Rejected {
                row,
                line: None,
                reason: e.to_string(),
            }),
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ImportFormat {
    Csv,
    Json,
}

fn import_format(req: &HttpRequest, body: &[u8]) -> ApiResult<ImportFormat> {
    let ct = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "text/csv" | "application/csv" | "text/plain" => Ok(ImportFormat::Csv),
        "application/json" => Ok(ImportFormat::Json),
        "" => {
            let first = body.iter().find(|b| !b.is_ascii_whitespace());
            Ok(if first == Some(&b'[') {
                ImportFormat::Json
            } else {
                ImportFormat::Csv
            })
        }
        other => Err(ApiError::bad_request(format!(
            "Content-Type must be text/csv or application/json, not {other}"
        ))),
    }
}

async fn import_certificates(
    gw: web::Data<Gateway>,
    op: Operator,
    req: HttpRequest,
    body: LargeBody,
) -> ApiResult<HttpResponse> {
    let format = import_format(&req, &body.0)?;
    let parsed = match format {
        ImportFormat::Csv => parse_csv(&body.0)?,
        ImportFormat::Json => parse_json_rows(&body.0)?,
    };
    drop(body);
    let total = parsed.rows.len() + parsed.rejected.len();
    if total > IMPORT_ROWS_MAX {
        return Err(ApiError::bad_request(format!(
            "an import carries at most {IMPORT_ROWS_MAX} records, this one {total}"
        )));
    }
    let mut rejected = parsed.rejected;
    let mut imported = 0usize;
    let mut rows = parsed.rows;
    // Each call to the engine is durable with its own audit entry (who, counts, part i of n);
    // the rows refused here are counted in the first. An import without a readable row still
    // makes one call, so that it is in the audit trail too.
    let parts = rows.len().div_ceil(IMPORT_CHUNK_ROWS).max(1);
    for index in 1..=parts {
        let rest = rows.split_off(rows.len().min(IMPORT_CHUNK_ROWS));
        let (numbers, chunk): (Vec<(usize, Option<usize>)>, Vec<CertificateRow>) =
            rows.into_iter().map(|(n, r)| ((n, None), r)).unzip();
        let part = ImportPart {
            index,
            of: parts,
            rejected_before: if index == 1 { rejected.len() } else { 0 },
        };
        let report = match gw
            .engine
            .import_certificates_part(chunk, &op.who, part)
            .await
        {
            Ok(report) => report,
            // Earlier parts are durable: say so rather than let the 503 read "nothing changed".
            // Records are kept by VIN, so sending the whole import again is safe.
            Err(refusal) if index > 1 => {
                let imported_before = imported;
                return Err(ApiError::from(refusal)
                    .with("imported", json!(imported_before))
                    .with("parts_done", json!(index - 1))
                    .with("parts", json!(parts))
                    .with(
                        "retry",
                        json!("the records are kept by VIN: send the whole import again"),
                    ));
            }
            Err(refusal) => return Err(refusal.into()),
        };
        imported += report.imported;
        for r in report.rejected {
            let row = numbers
                .get(r.row.saturating_sub(1))
                .map_or(r.row, |(n, _)| *n);
            rejected.push(Rejected {
                row,
                line: None,
                reason: r.reason,
            });
        }
        rows = rest;
    }
    rejected.sort_by_key(|r| r.row);
    tracing::info!(who = %op.who, imported, rejected = rejected.len(), "certificates imported");
    let rejected: Vec<Value> = rejected
        .into_iter()
        .map(|r| {
            let mut v = json!({"row": r.row, "reason": r.reason});
            if let (Some(line), Value::Object(map)) = (r.line, &mut v) {
                map.insert("line".into(), json!(line));
            }
            v
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"imported": imported, "rejected": rejected})))
}

// ----------------------------------------------------------------------------------------------
// Registrations, voids, look-ups

#[derive(Debug, Deserialize)]
struct RegistrationBody {
    office: String,
    serial: String,
}

async fn register(
    gw: web::Data<Gateway>,
    op: Operator,
    body: ApiJson<RegistrationBody>,
) -> ApiResult<HttpResponse> {
    let body = body.0;
    let config = gw
        .engine
        .office_config(&body.office)
        .map_err(|e| ApiError::from(e).field("office"))?;
    let serial = parse_serial(&body.serial, &config.prefix, "serial")?;
    let id = gw
        .engine
        .register(&body.office, &serial.to_string(), &op.who)
        .await
        .map_err(|e| with_serial_field(e, "serial"))?;
    tracing::info!(office = %body.office, who = %op.who, application = %id, serial = %serial, "registered");
    Ok(HttpResponse::Ok().json(application_answer(&gw.engine, &id).await?))
}

fn with_serial_field(r: Refusal, field: &str) -> ApiError {
    match r {
        Refusal::UnknownNumber | Refusal::NumberBusy { .. } => ApiError::from(r).field(field),
        other => ApiError::from(other),
    }
}

#[derive(Debug, Deserialize)]
struct ReasonBody {
    reason: Option<String>,
}

async fn void(
    gw: web::Data<Gateway>,
    op: Operator,
    path: web::Path<(String, String)>,
    body: ApiJson<ReasonBody>,
) -> ApiResult<HttpResponse> {
    let (office, serial) = path.into_inner();
    let config = gw.engine.office_config(&office)?;
    let serial = parse_serial(&serial, &config.prefix, "serial")?;
    let reason = required_text(body.0.reason, "reason", REASON_LEN_MAX)?;
    let id = gw
        .engine
        .void(&office, &serial.to_string(), &reason, &op.who)
        .await
        .map_err(|e| with_serial_field(e, "serial"))?;
    tracing::info!(office = %office, who = %op.who, application = %id, serial = %serial, "claim voided");
    Ok(HttpResponse::Ok().json(application_answer(&gw.engine, &id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LookupQuery {
    vin: Option<String>,
    serial: Option<String>,
    office: Option<String>,
    user: Option<String>,
    voucher: Option<String>,
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

async fn applications(
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
                    ApiError::from(Refusal::InvalidVin(e.to_string()))
                        .with("position", json!(e.position))
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
        out.push(application_json(&id, &view, &prefix, now));
    }
    Ok(HttpResponse::Ok().json(out))
}

// ----------------------------------------------------------------------------------------------
// Figures

/// Requests answered per (method, route).
type RouteCounts = HashMap<(&'static str, &'static str), u64>;

/// The figures one worker read last, to give rates and latency over the time since: the
/// gateway's requests per route, and each office's draws and checks. Each worker has its own
/// (app data built per worker), so no lock is shared by workers and nothing is added to the
/// requests measured.
#[derive(Debug)]
pub struct RateSampler {
    started: Instant,
    last: RefCell<(Instant, RouteCounts)>,
    offices: RefCell<HashMap<String, (Instant, OfficeCalls)>>,
}

impl RateSampler {
    fn new() -> RateSampler {
        let started = Instant::now();
        RateSampler {
            started,
            last: RefCell::new((started, HashMap::new())),
            offices: RefCell::new(HashMap::new()),
        }
    }
}

/// Shortest window a reading is kept for: figures are given over the time since the previous
/// reading, moved forward once it is this old.
const RATE_WINDOW_MIN_S: f64 = 1.0;

/// The window since `last` (seconds) and the reading it started with; `last` moves to `now`
/// and `current` once the window is [`RATE_WINDOW_MIN_S`] long.
fn sample<T: Clone>(last: &mut (Instant, T), now: Instant, current: &T) -> (f64, T) {
    let window = now.duration_since(last.0).as_secs_f64();
    let previous = last.1.clone();
    if window >= RATE_WINDOW_MIN_S {
        *last = (now, current.clone());
    }
    (window, previous)
}

fn per_s(count: u64, window_s: f64) -> f64 {
    if window_s > 0.0 {
        (count as f64 / window_s * 100.0).round() / 100.0
    } else {
        0.0
    }
}

/// A latency bound in µs as milliseconds.
fn us_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// One kind of office call over a window or since the office started.
fn calls_json(c: &CallSnapshot) -> Value {
    json!({
        "count": c.count(),
        "refused": c.refused,
        "p50_ms": c.quantile_us(0.50).map(us_to_ms),
        "p95_ms": c.quantile_us(0.95).map(us_to_ms),
        "p99_ms": c.quantile_us(0.99).map(us_to_ms),
        "mean_ms": c.mean_us().map(|us| (us / 10.0).round() / 100.0),
    })
}

/// The routes whose rates operators watch during an opening (SPEC R5.5), gateway-wide.
const RATE_ROUTES: [(&str, &str, &str); 6] = [
    ("draws", "POST", "/v1/applications/{id}/draws"),
    ("checks", "POST", "/v1/applications/{id}/custom"),
    ("claims", "POST", "/v1/applications/{id}/claim"),
    ("candidates", "POST", "/v1/applications/{id}/candidates"),
    ("applications", "POST", "/v1/applications"),
    ("keyboard", "GET", "/v1/applications/{id}/keyboard"),
];

/// An office's figures (SPEC R5.5): counts per class and release, mailbox depth, and the
/// office's own draws and checks per second and their latency (from the engine call to the
/// answer: mailbox, step, durable commit) over the window since this worker's previous
/// reading, and since the office started. The gateway's per-route request rates and HTTP
/// latency, which every office shares, are under `gateway`.
async fn stats(
    gw: web::Data<Gateway>,
    op: Operator,
    sampler: web::Data<RateSampler>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let _ = op;
    let office = path.into_inner();
    let as_of = gw.engine.now_ms();
    let classes = gw.engine.stats(&office).await?;
    let depth = gw
        .engine
        .mailbox_depths()
        .into_iter()
        .find(|(o, _)| o == &office)
        .map_or(0, |(_, d)| d);
    let counts_json = |c: &platepool_engine::pool::Counts| {
        json!({
            "pending": c.pending,
            "available": c.available,
            "held": c.held,
            "claimed": c.claimed,
            "issued": c.issued,
            "withdrawn": c.withdrawn,
            "total": c.total(),
        })
    };
    let classes: Vec<Value> = classes
        .iter()
        .map(|c| {
            let mut v = counts_json(&c.counts);
            if let Value::Object(map) = &mut v {
                map.insert("class".into(), json!(c.class));
                map.insert(
                    "releases".into(),
                    Value::Array(
                        c.releases
                            .iter()
                            .map(|r| {
                                let mut rv = counts_json(&r.counts);
                                if let Value::Object(m) = &mut rv {
                                    m.insert("id".into(), json!(r.id));
                                    m.insert("label".into(), json!(r.label));
                                    m.insert("opens_at".into(), json!(rfc3339(r.opens_at_ms)));
                                    m.insert(
                                        "custom_from".into(),
                                        json!(rfc3339(r.custom_from_ms)),
                                    );
                                    m.insert("withdrawn_release".into(), json!(r.withdrawn));
                                    m.insert("total".into(), json!(r.total));
                                }
                                rv
                            })
                            .collect(),
                    ),
                );
            }
            v
        })
        .collect();

    // The office's own figures.
    let calls = gw.engine.office_calls(&office)?;
    let now = Instant::now();
    let (office_window_s, office_before) = {
        let mut offices = sampler.offices.borrow_mut();
        let last = offices
            .entry(office.clone())
            .or_insert_with(|| (sampler.started, OfficeCalls::default()));
        sample(last, now, &calls)
    };
    let window = calls.since(&office_before);

    // The gateway's figures (every office's requests together).
    let figures = gw.metrics.figures();
    let current: RouteCounts = figures
        .iter()
        .map(|f| ((f.method, f.route), f.count))
        .collect();
    let (window_s, previous) = sample(&mut sampler.last.borrow_mut(), now, &current);
    let mut rates = serde_json::Map::new();
    for (name, method, route) in RATE_ROUTES {
        let now_count = current.get(&(method, route)).copied().unwrap_or(0);
        let before = previous.get(&(method, route)).copied().unwrap_or(0);
        rates.insert(
            format!("{name}_per_s"),
            json!(per_s(now_count.saturating_sub(before), window_s)),
        );
    }
    let latency: Vec<Value> = figures
        .iter()
        .filter(|f| f.count > 0)
        .map(|f| {
            json!({
                "method": f.method,
                "route": f.route,
                "count": f.count,
                "errors_4xx": f.errors_4xx,
                "errors_5xx": f.errors_5xx,
                "p50_ms": f.p50_ms,
                "p95_ms": f.p95_ms,
                "p99_ms": f.p99_ms,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "office": office,
        "as_of": rfc3339(as_of),
        "mailbox_depth": depth,
        "classes": classes,
        "rates": {
            "scope": "office",
            "window_s": (office_window_s * 1000.0).round() / 1000.0,
            "draws_per_s": per_s(window.draws.count(), office_window_s),
            "checks_per_s": per_s(window.checks.count(), office_window_s),
        },
        "latency": {
            "scope": "office",
            "measured": "engine call to answer: mailbox wait, the office's step, durable commit",
            "window_s": (office_window_s * 1000.0).round() / 1000.0,
            "draws": calls_json(&window.draws),
            "checks": calls_json(&window.checks),
        },
        "totals": {
            "scope": "office",
            "since": "the office started in this process",
            "draws": calls_json(&calls.draws),
            "checks": calls_json(&calls.checks),
        },
        "gateway": {
            "scope": "gateway",
            "window_s": (window_s * 1000.0).round() / 1000.0,
            "rates": rates,
            "latency": latency,
        },
    })))
}

// ----------------------------------------------------------------------------------------------
// Blacklist

async fn blacklist(gw: web::Data<Gateway>, op: Operator) -> HttpResponse {
    let _ = op;
    let list: Vec<Value> = gw
        .engine
        .blacklist()
        .into_iter()
        .map(|e| {
            json!({
                "user": e.user,
                "since": rfc3339(e.since_ms),
                "until": rfc3339(e.until_ms),
                "office": e.office,
                "application": e.application,
            })
        })
        .collect();
    HttpResponse::Ok().json(list)
}

async fn lift_blacklist(
    gw: web::Data<Gateway>,
    op: Operator,
    path: web::Path<String>,
    body: ApiJson<ReasonBody>,
) -> ApiResult<HttpResponse> {
    let user = path.into_inner();
    if validate_user(&user).is_err() || gw.engine.blacklisted_until(&user).is_none() {
        return Err(ApiError::not_found(format!("{user} is not blacklisted")));
    }
    let reason = required_text(body.0.reason, "reason", REASON_LEN_MAX)?;
    gw.engine.lift_blacklist(&user, &op.who, &reason).await?;
    tracing::info!(user = %user, who = %op.who, reason = %reason, "blacklist lifted");
    Ok(HttpResponse::Ok().json(json!({"user": user, "lifted": true, "reason": reason})))
}

// ----------------------------------------------------------------------------------------------
// Audit trail

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    office: Option<String>,
    since: Option<String>,
    after: Option<String>,
    limit: Option<String>,
}

async fn audit(gw: web::Data<Gateway>, op: Operator, req: HttpRequest) -> ApiResult<HttpResponse> {
    let _ = op;
    let q: AuditQuery = query(&req)?;
    let since_ms = q
        .since
        .as_deref()
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
    let list: Vec<Value> = entries
        .into_iter()
        .map(|(id, e)| {
            let application = match (&office, e.application) {
                (Some(o), Some(seq)) => json!(AppId {
                    office: o.clone(),
                    seq
                }
                .to_string()),
                _ => Value::Null,
            };
            let plate = e
                .serial
                .as_deref()
                .filter(|_| !prefix.is_empty())
                .map(|s| format!("{prefix}·{s}"));
            json!({
                "id": id,
                "at": rfc3339(e.at_ms),
                "who": e.who,
                "action": e.action,
                "application": application,
                "serial": e.serial,
                "plate": plate,
                "detail": e.detail,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "office": office,
        "entries": list,
        "next_after": next_after,
        "more": more,
    })))
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

// ----------------------------------------------------------------------------------------------
// Tokens and SMS outbox

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    user: String,
    phone: String,
    ttl_s: Option<u64>,
}

async fn issue_token(
    gw: web::Data<Gateway>,
    op: Operator,
    body: ApiJson<TokenBody>,
) -> ApiResult<HttpResponse> {
    if !gw.config.allow_token_issue {
        return Err(ApiError::forbidden(
            "this gateway does not issue citizen tokens (allow_token_issue is off)",
        ));
    }
    let body = body.0;
    validate_user(&body.user).map_err(|m| ApiError::bad_request(m).field("user"))?;
    validate_phone(&body.phone).map_err(|m| ApiError::bad_request(m).field("phone"))?;
    let ttl_s = body.ttl_s.unwrap_or(TOKEN_TTL_DEFAULT_S);
    if !(1..=TOKEN_TTL_MAX_S).contains(&ttl_s) {
        return Err(
            ApiError::bad_request(format!("ttl_s must be 1 to {TOKEN_TTL_MAX_S}")).field("ttl_s"),
        );
    }
    let exp = gw.engine.now_ms() / 1000 + ttl_s;
    let claims = TokenClaims {
        user: body.user,
        phone: body.phone,
        exp,
    };
    let token = sign_token(&gw.config.token_secret, &claims);
    tracing::info!(who = %op.who, user = %claims.user, ttl_s, "citizen token issued");
    Ok(HttpResponse::Ok().json(json!({
        "token": token,
        "user": claims.user,
        "phone": claims.phone,
        "expires_at": rfc3339(exp * 1000),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutboxQuery {
    phone: Option<String>,
}

async fn outbox(gw: web::Data<Gateway>, op: Operator, req: HttpRequest) -> ApiResult<HttpResponse> {
    let _ = op;
    let q: OutboxQuery = query(&req)?;
    let phone = q.phone.as_deref().map(str::trim).filter(|p| !p.is_empty());
    if let Some(p) = phone {
        validate_phone(p).map_err(|m| ApiError::bad_request(m).field("phone"))?;
    }
    Ok(HttpResponse::Ok().json(gw.sms.outbox(phone)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(records: &[CsvRecord]) -> Vec<Result<Vec<&str>, &str>> {
        records
            .iter()
            .map(|(_, r)| match r {
                Ok(f) => Ok(f.iter().map(String::as_str).collect()),
                Err(e) => Err(e.as_str()),
            })
            .collect()
    }

    #[test]
    fn csv_quotes_line_ends_and_blank_lines() {
        let text = "a,b\r\n\"x,1\",\"say \"\"hi\"\"\"\n\n\"multi\nline\",z\nlast,";
        let r = csv_records(text);
        assert_eq!(
            fields(&r),
            vec![
                Ok(vec!["a", "b"]),
                Ok(vec!["x,1", "say \"hi\""]),
                Ok(vec!["multi\nline", "z"]),
                Ok(vec!["last", ""]),
            ]
        );
        assert_eq!(
            r.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
            vec![1, 2, 4, 6]
        );
    }

    #[test]
    fn csv_bad_quoting_is_one_bad_record() {
        let r = csv_records("a,b\n\"x\"y,1\nok,2\n\"never closed,3\n");
        let f = fields(&r);
        assert_eq!(f[0], Ok(vec!["a", "b"]));
        assert!(f[1].is_err());
        assert_eq!(f[2], Ok(vec!["ok", "2"]));
        assert!(f[3].is_err());
        assert_eq!(f.len(), 4);
    }

    #[test]
    fn csv_rows_map_columns_by_header() {
        let body =
            "\u{feff}Energy,VIN,voucher,class,model\nbev,V1,W1,small_new_energy,X\nonly,two\n";
        let parsed = parse_csv(body.as_bytes()).expect("parses");
        assert_eq!(parsed.rows.len(), 1);
        let (n, row) = &parsed.rows[0];
        assert_eq!(
            (*n, row.vin.as_str(), row.energy.as_str()),
            (1, "V1", "bev")
        );
        assert_eq!(parsed.rejected.len(), 1);
        assert_eq!(
            (parsed.rejected[0].row, parsed.rejected[0].line),
            (2, Some(3))
        );
        assert_eq!(
            parse_csv(b"vin,voucher,class\n")
                .expect_err("no energy")
                .field
                .as_deref(),
            Some("header")
        );
    }
}
