//! `platepool verify` of what spans offices: the registry's tree and the certificate log.
//!
//! - **Records decode**: blacklist entries (`bl/` + user), the registry's audit trail (`log/`),
//!   how far the certificate log was acknowledged (`certlog/end`) and its import markers
//!   (`certlog/import/`), certificates older versions kept in the tree (`cert/`); a key of none
//!   of these kinds is reported. The certificate log opens as `serve` opens it: every frame's
//!   checksum holds and it reaches the acknowledged end.
//! - **References** (`refs`): a blacklist entry is stored under its own user and names a
//!   lapsed application of that user, in an office that exists (R4.11, I6); an import marker
//!   does not point past the acknowledged end; every stored application's VIN has its
//!   certificate (R4.2: an application exists only for a certificate).

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::engine::AppId;
use crate::record::{AppState, AuditEntry};
use crate::registry::cert_log::{CertificateLog, CERT_LOG_FILE};
use crate::registry::{
    BlacklistEntry, Certificate, BLACKLIST_PREFIX, IMPORT_MARK_PREFIX, LOG_END_KEY, LOG_PREFIX,
    SLED_CERT_PREFIX,
};
use crate::store::{Durability, Kv, Store, StoreError, REGISTRY_TREE};
use crate::verify::VerifyReport;

/// Records read per page while walking a tree.
const PAGE: usize = 1_000;

/// What the registry's checks need of one stored application.
#[derive(Debug, Clone)]
pub(crate) struct AppFacts {
    pub user: String,
    pub vin: String,
    pub state: AppState,
}

/// Stored applications by office and sequence number.
pub(crate) type Applications = HashMap<String, HashMap<u64, AppFacts>>;

/// Every record of a key-value tree under `prefix`, in key order, read a page at a time. A
/// value that is not JSON stops the walk with the error naming its key.
pub fn for_each_record(
    kv: &Kv,
    prefix: &[u8],
    mut f: impl FnMut(&[u8], Value),
) -> Result<(), StoreError> {
    let mut start = prefix.to_vec();
    loop {
        let page = kv.scan_from::<Value>(prefix, &start, PAGE)?;
        for (key, value) in &page {
            f(key, value.clone());
        }
        match page.last() {
            Some((last, _)) if page.len() == PAGE => {
                start = last.clone();
                start.push(0);
            }
            _ => return Ok(()),
        }
    }
}

/// A record's value as `T`, or a `decode` problem naming its key.
pub fn decode_record<T: DeserializeOwned>(
    report: &mut VerifyReport,
    place: &str,
    key: &[u8],
    value: Value,
) -> Option<T> {
    match serde_json::from_value(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let key = String::from_utf8_lossy(key);
            report.problem(
                place,
                "decode",
                format!("record {key:?} cannot be read: {e}"),
            );
            None
        }
    }
}

/// Checks the registry's tree and the certificate log against the offices' applications.
pub(crate) fn check_registry(store: &Store, apps: &Applications, report: &mut VerifyReport) {
    let place = "registry";
    let kv = match store.kv(REGISTRY_TREE) {
        Ok(kv) => kv,
        Err(e) => return report.problem(place, "decode", e.to_string()),
    };
    let mut acknowledged = 0;
    let mut marks = Vec::new();
    let walked = for_each_record(&kv, b"", |key, value| {
        if let Some(user) = key.strip_prefix(BLACKLIST_PREFIX) {
            if let Some(entry) = decode_record::<BlacklistEntry>(report, place, key, value) {
                check_blacklist_entry(&entry, user, apps, report);
            }
        } else if key.starts_with(LOG_PREFIX) {
            if decode_record::<AuditEntry>(report, place, key, value).is_some() {
                report.audit_entries += 1;
            }
        } else if key == LOG_END_KEY {
            acknowledged = decode_record::<u64>(report, place, key, value).unwrap_or(0);
        } else if let Some(batch) = key.strip_prefix(IMPORT_MARK_PREFIX) {
            if let Some(end) = decode_record::<u64>(report, place, key, value) {
                match <[u8; 8]>::try_from(batch) {
                    Ok(batch) => marks.push((u64::from_be_bytes(batch), end)),
                    Err(_) => {
                        let key = String::from_utf8_lossy(key);
                        report.problem(
                            place,
                            "decode",
                            format!("import marker {key:?} has no number"),
                        );
                    }
                }
            }
        } else if key.starts_with(SLED_CERT_PREFIX) {
            decode_record::<Certificate>(report, place, key, value);
        } else {
            let key = String::from_utf8_lossy(key);
            report.problem(place, "decode", format!("unknown record {key:?}"));
        }
    });
    if let Err(e) = walked {
        report.problem(place, "decode", e.to_string());
    }
    for (batch, end) in marks {
        if end > acknowledged {
            report.problem(
                place,
                "refs",
                format!(
                    "certificate import {batch} ends at {end}, past the acknowledged end \
                     {acknowledged}"
                ),
            );
        }
    }
    check_certificates(store, acknowledged, apps, report);
}

/// A blacklist entry stands for a lapse: its user's lapsed application in an existing office.
fn check_blacklist_entry(
    entry: &BlacklistEntry,
    key_user: &[u8],
    apps: &Applications,
    report: &mut VerifyReport,
) {
    let place = "registry";
    let what = format!("blacklist entry of {:?}", entry.user);
    if key_user != entry.user.as_bytes() {
        let stored = String::from_utf8_lossy(key_user);
        report.problem(
            place,
            "refs",
            format!("{what} is stored under user {stored:?}"),
        );
    }
    if entry.since_ms > entry.until_ms {
        report.problem(place, "refs", format!("{what} ends before it begins"));
    }
    let Ok(id) = entry.application.parse::<AppId>() else {
        let named = &entry.application;
        return report.problem(
            place,
            "refs",
            format!("{what} names no application ({named:?})"),
        );
    };
    let found = apps.get(&id.office).map(|office| office.get(&id.seq));
    match found {
        None => report.problem(
            place,
            "refs",
            format!("{what} names office {}, not stored", id.office),
        ),
        Some(None) => report.problem(
            place,
            "refs",
            format!("{what} names application {id}, not stored"),
        ),
        Some(Some(app)) if app.user != entry.user || app.state != AppState::Lapsed => report
            .problem(
                place,
                "refs",
                format!(
                    "{what} names application {id}, which is {:?}'s and {}, not a lapse of \
                     theirs",
                    app.user,
                    app.state.as_str()
                ),
            ),
        Some(Some(_)) => {}
    }
}

/// The certificate log opens up to its acknowledged end, and every application's VIN is in it.
fn check_certificates(
    store: &Store,
    acknowledged: u64,
    apps: &Applications,
    report: &mut VerifyReport,
) {
    let place = "certificates";
    if !store.path().join(CERT_LOG_FILE).exists() {
        if acknowledged > 0 {
            report.problem(
                place,
                "decode",
                format!("{CERT_LOG_FILE} is missing; {acknowledged} bytes of it were acknowledged"),
            );
        }
        return;
    }
    let log = match CertificateLog::open(store.path(), Durability::None, acknowledged) {
        Ok((log, _)) => log,
        Err(e) => return report.problem(place, "decode", e.to_string()),
    };
    let mut offices: Vec<_> = apps.iter().collect();
    offices.sort_by(|a, b| a.0.cmp(b.0));
    for (office, stored) in offices {
        let mut seqs: Vec<_> = stored.keys().copied().collect();
        seqs.sort_unstable();
        for seq in seqs {
            let vin = &stored[&seq].vin;
            match log.get(vin) {
                Ok(Some(_)) => {}
                Ok(None) => report.problem(
                    place,
                    "refs",
                    format!("application {office}-{seq} has VIN {vin}, which has no certificate"),
                ),
                Err(e) => report.problem(place, "decode", e.to_string()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::class::{Energy, PlateClass};
    use crate::record::Record;
    use crate::verify::tests::{app, checks, folder};
    use crate::verify::verify;

    /// What the registry's tree and the certificate log hold in a test folder.
    #[derive(Default)]
    struct Registry {
        /// VINs with a certificate in the log.
        certified: Vec<String>,
        /// Bytes added to the acknowledged end (a log damaged behind what was acknowledged).
        end_beyond: u64,
        records: Vec<(Vec<u8>, Value)>,
    }

    fn key(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
        [prefix, rest].concat()
    }

    fn entry(user: &str, application: &str) -> Value {
        serde_json::to_value(BlacklistEntry {
            user: user.into(),
            since_ms: 1,
            until_ms: 2,
            office: "o".into(),
            application: application.into(),
        })
        .expect("entry")
    }

    /// Office `o` with the applications given, then the registry's records.
    fn planted(apps: Vec<Record>, registry: Registry) -> tempfile::TempDir {
        let dir = folder(apps);
        let store = Store::open(dir.path(), Durability::None).expect("open");
        let kv = store.kv(REGISTRY_TREE).expect("registry");
        if !registry.certified.is_empty() {
            let (mut log, _) =
                CertificateLog::open(store.path(), Durability::None, 0).expect("log");
            let certs: Vec<Certificate> = registry
                .certified
                .iter()
                .map(|vin| Certificate {
                    vin: vin.clone(),
                    voucher: "V1".into(),
                    class: "small".into(),
                    energy: Energy::Fuel,
                })
                .collect();
            let (appended, _written) = log.append(&certs, None).expect("append");
            kv.put(LOG_END_KEY, &(appended.end + registry.end_beyond))
                .expect("end");
        }
        for (k, v) in registry.records {
            kv.put(&k, &v).expect("put");
        }
        store.sync().expect("sync");
        store.record_generation().expect("generation");
        dir
    }

    fn lapsed(seq: u64) -> Record {
        Record::App(Box::new(app(seq, AppState::Lapsed, None)))
    }

    fn report_of(dir: &tempfile::TempDir) -> VerifyReport {
        verify(dir.path(), &PlateClass::builtin())
    }

    fn has(report: &VerifyReport, check: &str, text: &str) -> bool {
        report
            .problems
            .iter()
            .any(|p| p.check == check && p.what.contains(text))
    }

    #[test]
    fn a_sound_registry_with_certificates_and_a_blacklist_is_sound() {
        let dir = planted(
            vec![lapsed(1)],
            Registry {
                certified: vec![app(1, AppState::Lapsed, None).vin],
                records: vec![
                    (key(BLACKLIST_PREFIX, b"u1"), entry("u1", "o-1")),
                    (key(IMPORT_MARK_PREFIX, &1u64.to_be_bytes()), Value::from(8)),
                ],
                ..Registry::default()
            },
        );
        let report = report_of(&dir);
        assert!(report.is_sound(), "{:?}", report.problems);
    }

    #[test]
    fn a_blacklist_entry_naming_no_lapse_of_its_user_is_a_refs_problem() {
        let records = vec![
            (key(BLACKLIST_PREFIX, b"u2"), entry("u2", "o-2")),
            (key(BLACKLIST_PREFIX, b"u9"), entry("u9", "o-1")),
            (key(BLACKLIST_PREFIX, b"u7"), entry("u7", "o-7")),
            (key(BLACKLIST_PREFIX, b"u8"), entry("u8", "elsewhere-1")),
        ];
        let voided = Record::App(Box::new(app(2, AppState::Voided, None)));
        let dir = planted(
            vec![lapsed(1), voided],
            Registry {
                records,
                ..Registry::default()
            },
        );
        let report = report_of(&dir);
        assert_eq!(checks(&report), ["refs"; 4], "{:?}", report.problems);
        assert!(has(
            &report,
            "refs",
            "\"u2\" names application o-2, which is \"u2\"'s and voided"
        ));
        assert!(has(
            &report,
            "refs",
            "\"u9\" names application o-1, which is \"u1\"'s"
        ));
        assert!(has(&report, "refs", "o-7, not stored"));
        assert!(has(&report, "refs", "office elsewhere, not stored"));
    }

    #[test]
    fn a_blacklist_entry_under_another_user_is_a_refs_problem() {
        let dir = planted(
            vec![lapsed(1)],
            Registry {
                records: vec![(key(BLACKLIST_PREFIX, b"mallory"), entry("u1", "o-1"))],
                ..Registry::default()
            },
        );
        let report = report_of(&dir);
        assert_eq!(checks(&report), ["refs"], "{:?}", report.problems);
        assert!(has(&report, "refs", "stored under user \"mallory\""));
    }

    #[test]
    fn registry_records_that_do_not_decode_are_named() {
        let dir = planted(
            vec![],
            Registry {
                records: vec![
                    (key(BLACKLIST_PREFIX, b"u1"), Value::from("not an entry")),
                    (
                        key(LOG_PREFIX, &5u64.to_be_bytes()),
                        serde_json::json!({"at_ms": 1}),
                    ),
                    (b"stray".to_vec(), Value::from(1)),
                ],
                ..Registry::default()
            },
        );
        let report = report_of(&dir);
        assert_eq!(checks(&report), ["decode"; 3], "{:?}", report.problems);
        assert!(has(&report, "decode", "\"bl/u1\" cannot be read"));
        assert!(has(&report, "decode", "unknown record \"stray\""));
    }

    #[test]
    fn an_application_whose_vin_has_no_certificate_is_a_refs_problem() {
        let dir = planted(
            vec![Record::App(Box::new(app(1, AppState::Selecting, None)))],
            Registry {
                certified: vec!["LSVAU2180N2199999".into()],
                ..Registry::default()
            },
        );
        let report = report_of(&dir);
        assert_eq!(checks(&report), ["refs"], "{:?}", report.problems);
        assert!(has(&report, "refs", "application o-1 has VIN"));
    }

    #[test]
    fn a_certificate_log_behind_its_acknowledged_end_is_refused_and_marks_past_it_named() {
        let dir = planted(
            vec![],
            Registry {
                certified: vec!["LSVAU2180N2199999".into()],
                end_beyond: 100,
                records: vec![(
                    key(IMPORT_MARK_PREFIX, &1u64.to_be_bytes()),
                    Value::from(u64::MAX),
                )],
            },
        );
        let report = report_of(&dir);
        assert!(
            has(&report, "decode", "were acknowledged") && has(&report, "refs", "import 1 ends at"),
            "{:?}",
            report.problems
        );
        let missing = planted(vec![], Registry::default());
        let store = Store::open(missing.path(), Durability::None).expect("open");
        store
            .kv(REGISTRY_TREE)
            .expect("registry")
            .put(LOG_END_KEY, &64u64)
            .expect("end");
        store.sync().expect("sync");
        drop(store);
        let report = report_of(&missing);
        assert!(
            has(&report, "decode", "is missing"),
            "{:?}",
            report.problems
        );
    }
}
