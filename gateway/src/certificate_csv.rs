//! Certificate records in CSV (`POST /v1/admin/certificates` with `Content-Type: text/csv`),
//! read with the `csv` crate: RFC 4180 quoting (`""` for a quote, line breaks inside quotes),
//! CRLF or LF line ends, a UTF-8 byte-order mark, blank lines skipped.
//!
//! The header names the columns `vin`, `voucher`, `class` and `energy` in any order, in any case,
//! beside other columns (ignored). A header that cannot be read is 400 for the whole import; a
//! record that cannot be read (wrong number of fields, not UTF-8) is rejected alone, with its
//! number among the records (1-based, the header is not a record) and the line it starts on.

use platepool_engine::CertificateRow;

use crate::error::{ApiError, ApiResult};

/// The columns the header must name, each once.
pub const CERT_COLUMNS: [&str; 4] = ["vin", "voucher", "class", "energy"];

/// A rejected record: 1-based among the records, with the line of a CSV file where it starts
/// (`None` for a JSON import).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub row: usize,
    pub line: Option<usize>,
    pub reason: String,
}

/// The records an import carries, numbered, and those refused before the engine sees them.
#[derive(Debug, Default)]
pub struct ParsedRows {
    pub rows: Vec<(usize, CertificateRow)>,
    pub rejected: Vec<Rejected>,
}

fn header_error(message: String) -> ApiError {
    ApiError::bad_request(message).field("header")
}

/// Where each of [`CERT_COLUMNS`] is in the header.
fn column_index(names: &[String]) -> ApiResult<[usize; 4]> {
    let mut index = [0usize; 4];
    for (slot, col) in index.iter_mut().zip(CERT_COLUMNS) {
        let mut found = names.iter().enumerate().filter(|(_, n)| n.as_str() == col);
        match (found.next(), found.next()) {
            (Some((i, _)), None) => *slot = i,
            (None, _) => {
                return Err(header_error(format!(
                    "the CSV header lacks the column {col}: expected vin,voucher,class,energy"
                )))
            }
            (Some(_), Some(_)) => {
                return Err(header_error(format!("the CSV header names {col} twice")))
            }
        }
    }
    Ok(index)
}

/// The fields of a record as text, or why they are not.
fn record_fields(record: &csv::ByteRecord, width: usize) -> Result<Vec<String>, String> {
    if record.len() != width {
        return Err(format!(
            "the row has {} fields, the header {width}",
            record.len()
        ));
    }
    record
        .iter()
        .enumerate()
        .map(|(i, field)| {
            std::str::from_utf8(field)
                .map(|f| f.trim().to_string())
                .map_err(|e| format!("field {} is not UTF-8: {e}", i + 1))
        })
        .collect()
}

/// Reads a CSV import: the rows to give the engine and the records refused here.
pub fn parse_csv(body: &[u8]) -> ApiResult<ParsedRows> {
    let body = body.strip_prefix("\u{feff}".as_bytes()).unwrap_or(body);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(body);
    let mut records = reader.byte_records();
    let header = match records.next() {
        None => {
            return Err(header_error(
                "the CSV is empty: the header vin,voucher,class,energy is expected".into(),
            ))
        }
        Some(Err(e)) => return Err(header_error(format!("CSV header: {e}"))),
        Some(Ok(h)) => h,
    };
    let names: Vec<String> = header
        .iter()
        .map(|h| {
            std::str::from_utf8(h)
                .map(|h| h.trim().to_ascii_lowercase())
                .map_err(|e| header_error(format!("the CSV header is not UTF-8: {e}")))
        })
        .collect::<ApiResult<_>>()?;
    let index = column_index(&names)?;
    let mut out = ParsedRows::default();
    for (n, record) in records.enumerate() {
        let row = n + 1;
        let (line, fields) = match record {
            Ok(r) => (
                r.position().map(|p| p.line() as usize),
                record_fields(&r, names.len()),
            ),
            Err(e) => (
                e.position().map(|p| p.line() as usize),
                Err(format!("the row cannot be read: {e}")),
            ),
        };
        match fields {
            Ok(fields) => {
                let get = |i: usize| fields.get(i).cloned().unwrap_or_default();
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
            Err(reason) => out.rejected.push(Rejected { row, line, reason }),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vins(parsed: &ParsedRows) -> Vec<(usize, &str, &str)> {
        parsed
            .rows
            .iter()
            .map(|(n, r)| (*n, r.vin.as_str(), r.voucher.as_str()))
            .collect()
    }

    #[test]
    fn quotes_line_ends_and_blank_lines() {
        let body = "vin,voucher,class,energy\r\n\
                    \"V,1\",\"say \"\"hi\"\"\",small,fuel\n\
                    \n\
                    \"multi\nline\",W2,small,fuel\n\
                    V3,W3,small,";
        let parsed = parse_csv(body.as_bytes()).expect("parses");
        assert_eq!(
            vins(&parsed),
            vec![
                (1, "V,1", "say \"hi\""),
                (2, "multi\nline", "W2"),
                (3, "V3", "W3")
            ]
        );
        assert_eq!(parsed.rows[2].1.energy, "");
        assert!(parsed.rejected.is_empty(), "{:?}", parsed.rejected);
    }

    #[test]
    fn columns_map_by_header_and_bad_rows_are_reported_by_row_and_line() {
        let mut body =
            b"\xef\xbb\xbfEnergy, VIN ,voucher,class,model\nbev,V1,W1,small_new_energy,X\nonly,two\n"
                .to_vec();
        body.extend_from_slice(b"bev,V\xff3,W3,small,X\nbev,V4,W4,small,X\n");
        let parsed = parse_csv(&body).expect("parses");
        assert_eq!(vins(&parsed), vec![(1, "V1", "W1"), (4, "V4", "W4")]);
        assert_eq!(parsed.rows[0].1.energy, "bev");
        let rejected: Vec<(usize, Option<usize>)> =
            parsed.rejected.iter().map(|r| (r.row, r.line)).collect();
        assert_eq!(rejected, vec![(2, Some(3)), (3, Some(4))]);
        assert!(parsed.rejected[0].reason.contains("2 fields"));
        assert!(parsed.rejected[1].reason.contains("UTF-8"));
    }

    #[test]
    fn a_bad_header_refuses_the_whole_import() {
        for body in [
            &b""[..],
            b"vin,voucher,class\n",
            b"vin,voucher,class,energy,VIN\n",
            b"vin,voucher,cl\xffass,energy\n",
        ] {
            let e = parse_csv(body).expect_err("bad header");
            assert_eq!(e.field.as_deref(), Some("header"), "{body:?}");
        }
    }
}
