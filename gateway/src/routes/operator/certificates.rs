//! POST /v1/admin/certificates: certificate records from CSV or a JSON array.

use actix_web::{web, HttpRequest, HttpResponse};
use platepool_engine::registry::IMPORT_ROWS_MAX;
use platepool_engine::{CertificateRow, ImportPart};
use serde::Serialize;
use serde_json::Value;

use crate::auth::Operator;
use crate::certificate_csv::{parse_csv, ParsedRows, Rejected};
use crate::error::{ApiError, ApiResult};
use crate::extract::LargeBody;
use crate::openapi::{certificate_import, json_answer, Answer, Doc};
use crate::routes::table::{Access, Route, Verb};
use crate::Gateway;

/// The routes this file serves.
pub(crate) const ROUTES: &[Route] = &[
    Route::new(
        Verb::Post,
        "/v1/admin/certificates",
        Access::Operator,
        |r| r.to(import_certificates),
        Doc {
            summary: "Imports certificate records (CSV with header vin,voucher,class,energy, or a JSON array); bad rows are reported, good ones kept",
            request: Some(certificate_import::<CertificateRecord>),
            query: None,
            response: Answer::Json(json_answer::<ImportAnswer>),
            codes: &[200, 400, 401, 403, 413, 503],
        },
    ),
];

/// Certificate rows handed to the registry per call, so one large import does not hold it long.
pub const IMPORT_CHUNK_ROWS: usize = 20_000;

/// One certificate record of a JSON import, read as the engine reads its `CertificateRow`: a
/// record without one of its fields is refused by the engine, by row.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[schema(as = CertificateRow)]
struct CertificateRecord {
    #[serde(default)]
    #[schema(required = true)]
    vin: String,
    #[serde(default)]
    #[schema(required = true)]
    voucher: String,
    #[serde(default)]
    #[schema(required = true)]
    class: String,
    #[serde(default)]
    #[schema(required = true, pattern = "^(fuel|bev|phev|fcev)$")]
    energy: String,
}

impl From<CertificateRecord> for CertificateRow {
    fn from(r: CertificateRecord) -> CertificateRow {
        CertificateRow {
            vin: r.vin,
            voucher: r.voucher,
            class: r.class,
            energy: r.energy,
        }
    }
}

/// The import's outcome: records kept, and each one refused with its row (and CSV line).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ImportReport)]
struct ImportAnswer {
    imported: usize,
    rejected: Vec<RejectedRow>,
}

/// A record refused: 1-based row, the CSV line where it starts, why.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct RejectedRow {
    row: usize,
    reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<usize>,
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
        match serde_json::from_value::<CertificateRecord>(item) {
            Ok(r) => out.rows.push((row, r.into())),
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

pub(super) async fn import_certificates(
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
                return Err(ApiError::from(refusal).extra(|x| {
                    x.imported = Some(imported_before);
                    x.parts_done = Some(index - 1);
                    x.parts = Some(parts);
                    x.retry =
                        Some("the records are kept by VIN: send the whole import again".into());
                }));
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
    let rejected = rejected
        .into_iter()
        .map(|r| RejectedRow {
            row: r.row,
            reason: r.reason,
            line: r.line,
        })
        .collect();
    Ok(HttpResponse::Ok().json(ImportAnswer { imported, rejected }))
}
