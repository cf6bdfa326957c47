//! POST /v1/admin/certificates: certificate records from CSV or a JSON array.

use actix_web::{web, HttpRequest, HttpResponse};
use platepool_engine::registry::IMPORT_ROWS_MAX;
use platepool_engine::{CertificateRow, ImportPart};
use serde_json::{json, Value};

use crate::auth::Operator;
use crate::error::{ApiError, ApiResult};
use crate::extract::LargeBody;
use crate::openapi::{certificate_import, Doc};
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
            request: Some(certificate_import),
            query: None,
            response: "ImportReport",
            codes: &[200, 400, 401, 403, 413, 503],
        },
    ),
];

/// Certificate rows handed to the registry per call, so one large import does not hold it long.
pub const IMPORT_CHUNK_ROWS: usize = 20_000;

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
