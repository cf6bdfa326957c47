//! Checks a data folder no process serves (SPEC D1, `platepool verify`): its generation, that
//! every office record decodes, and the invariants a stored state must keep.
//!
//! - **Generation**: sled's generation is not behind the one recorded beside it (`Store::open`
//!   refuses such a folder; here it is reported).
//! - **Records decode**: each office's configuration, releases, applications with their
//!   selection fields, number records and audit trail.
//! - **I1** one holder per number: no two applications claim (or were issued) the same number;
//!   every number record names an application holding that very number, in the matching state;
//!   every claimed or issued application has its number's record.
//! - **I3** quotas: what is left of each quota is within the largest quota an office may give,
//!   and an exhausted application has neither left.
//! - **I9** restart = acknowledged state: the office restores (`OfficePool::restore`, as
//!   `serve` does at start-up): every number named is in a release, every owner exists.
//!
//! - **The registry** (`verify_registry.rs`): blacklist entries, the registry's audit trail
//!   and the certificate log decode, and their references hold (a blacklist entry names its
//!   user's lapsed application; every application's VIN has its certificate).
//! - **Other trees**: a program built on the engine checks its own records in the same pass
//!   ([`verify_with`]; the gateway checks its idempotency keys and SMS records so).
//!
//! Every problem is listed with where it is, not only the first.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::calendar::now_ms;
use crate::class::PlateClass;
use crate::config::QUOTA_MAX;
use crate::pool::OfficePool;
use crate::record::{AppRecord, AppState, NumberState};
use crate::store::{Durability, OfficeSnapshot, Store};
use crate::verify_registry::{check_registry, AppFacts, Applications};
pub use crate::verify_registry::{decode_record, for_each_record};

/// One thing wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// `generation`, `office maoming`, …
    pub place: String,
    /// The check that failed: `generation`, `decode`, `I1`, `I3`, `I9`.
    pub check: String,
    pub what: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]: {}", self.place, self.check, self.what)
    }
}

/// What was checked, and what is wrong (nothing, for a good folder).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub generation: u64,
    pub offices: usize,
    pub applications: usize,
    /// Numbers claimed or issued.
    pub numbers_taken: usize,
    pub audit_entries: usize,
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn is_sound(&self) -> bool {
        self.problems.is_empty()
    }

    /// Adds a problem: `check` is `decode`, `refs`, `I1`, … (see the module's notes).
    pub fn problem(&mut self, place: &str, check: &str, what: String) {
        self.problems.push(Problem {
            place: place.to_string(),
            check: check.to_string(),
            what,
        });
    }
}

/// Checks the folder `dir` against the plate classes `catalog` (see the module's notes).
pub fn verify(dir: &Path, catalog: &[PlateClass]) -> VerifyReport {
    verify_with(dir, catalog, |_, _| {})
}

/// As [`verify`], with `more` checking the trees of the program built on the engine while the
/// folder is open (after the engine's own checks).
pub fn verify_with(
    dir: &Path,
    catalog: &[PlateClass],
    more: impl FnOnce(&Store, &mut VerifyReport),
) -> VerifyReport {
    let mut report = VerifyReport::default();
    let folder = dir.display().to_string();
    if !dir.join("conf").exists() && !dir.join("db").exists() {
        report.problem(
            &folder,
            "generation",
            "no sled database here: not a platepool data folder".into(),
        );
        return report;
    }
    let store = match Store::open(dir, Durability::Fsync) {
        Ok(store) => store,
        Err(e) => {
            let e = e.to_string();
            let check = if e.contains("generation") {
                "generation"
            } else {
                "open"
            };
            report.problem(&folder, check, e);
            return report;
        }
    };
    report.generation = std::fs::read_to_string(dir.join(crate::store::GENERATION_FILE))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    let mut ids = store.office_ids();
    ids.sort();
    let mut apps = Applications::new();
    for id in ids {
        let facts = check_office(&store, &id, catalog, &mut report);
        apps.insert(id, facts);
    }
    check_registry(&store, &apps, &mut report);
    more(&store, &mut report);
    report
}

/// Checks one office; returns what the registry's checks need of its applications.
fn check_office(
    store: &Store,
    id: &str,
    catalog: &[PlateClass],
    report: &mut VerifyReport,
) -> HashMap<u64, AppFacts> {
    let place = format!("office {id}");
    let office = match store.office(id) {
        Ok(o) => o,
        Err(e) => {
            report.problem(&place, "decode", e.to_string());
            return HashMap::new();
        }
    };
    match office.audit(0, usize::MAX) {
        Ok(entries) => report.audit_entries += entries.len(),
        Err(e) => report.problem(&place, "decode", format!("audit trail: {e}")),
    }
    let snap = match office.load() {
        Ok(snap) => snap,
        Err(e) => {
            report.problem(&place, "decode", e.to_string());
            return HashMap::new();
        }
    };
    let facts = snap
        .apps
        .iter()
        .map(|a| {
            let facts = AppFacts {
                user: a.user.clone(),
                vin: a.vin.clone(),
                state: a.state,
            };
            (a.seq, facts)
        })
        .collect();
    report.offices += 1;
    report.applications += snap.apps.len();
    report.numbers_taken += snap
        .numbers
        .iter()
        .filter(|(_, _, s)| !matches!(s, NumberState::Withdrawn))
        .count();
    check_holders(&snap, &place, report);
    check_quotas(&snap.apps, &place, report);
    let Some(config) = snap.config else {
        report.problem(&place, "decode", "no configuration stored".into());
        return facts;
    };
    if let Err(e) = OfficePool::restore(
        id,
        config,
        catalog.to_vec(),
        snap.releases,
        snap.numbers,
        snap.apps,
        now_ms(),
    ) {
        report.problem(&place, "I9", format!("does not restore: {e}"));
    }
    facts
}

/// The number an application holds for good (claimed or issued), with the state its number
/// record must have.
fn taken_number(app: &AppRecord) -> Option<(String, NumberState)> {
    let claim = app.claim.as_ref().filter(|c| !c.void)?;
    let state = match app.state {
        AppState::Claimed => NumberState::Claimed { app: app.seq },
        AppState::Issued => NumberState::Issued { app: app.seq },
        _ => return None,
    };
    Some((format!("{}/{}", app.class, claim.serial), state))
}

/// I1 on disk: one holder per number, and number records agreeing with their applications.
fn check_holders(snap: &OfficeSnapshot, place: &str, report: &mut VerifyReport) {
    let mut holders: HashMap<String, (u64, NumberState)> = HashMap::new();
    for app in &snap.apps {
        if matches!(app.state, AppState::Claimed | AppState::Issued) && app.claim.is_none() {
            report.problem(
                place,
                "I1",
                format!("application {} is {:?} without a claim", app.seq, app.state),
            );
        }
        let Some((number, state)) = taken_number(app) else {
            continue;
        };
        if let Some((other, _)) = holders.get(&number) {
            report.problem(
                place,
                "I1",
                format!(
                    "number {number} is held by applications {other} and {}",
                    app.seq
                ),
            );
        } else {
            holders.insert(number, (app.seq, state));
        }
    }
    let mut recorded: HashMap<String, NumberState> = HashMap::new();
    for (class, serial, state) in &snap.numbers {
        let number = format!("{class}/{serial}");
        recorded.insert(number.clone(), *state);
        let owner = match state {
            NumberState::Claimed { app } | NumberState::Issued { app } => *app,
            NumberState::Withdrawn => continue,
        };
        match holders.get(&number) {
            Some((seq, expected)) if *seq == owner && expected == state => {}
            Some((seq, expected)) => report.problem(
                place,
                "I1",
                format!(
                    "number {number} is recorded as {state:?}, but application {seq} holds it \
                     ({expected:?})"
                ),
            ),
            None => report.problem(
                place,
                "I1",
                format!("number {number} is recorded as {state:?}, but no application holds it"),
            ),
        }
    }
    for (number, (seq, state)) in &holders {
        if recorded.get(number) != Some(state) {
            report.problem(
                place,
                "I1",
                format!(
                    "application {seq} holds number {number} ({state:?}) but the number's \
                     record says {:?}: after a restart it could be drawn again",
                    recorded.get(number)
                ),
            );
        }
    }
}

/// I3 on disk: quotas within bounds; exhausted means both spent.
fn check_quotas(apps: &[AppRecord], place: &str, report: &mut VerifyReport) {
    for app in apps {
        for (kind, left) in [("custom", app.custom_left), ("random", app.random_left)] {
            if left > QUOTA_MAX {
                report.problem(
                    place,
                    "I3",
                    format!(
                        "application {} has {left} {kind} left, over the largest quota \
                         ({QUOTA_MAX})",
                        app.seq
                    ),
                );
            }
        }
        if app.state == AppState::Exhausted && (app.custom_left > 0 || app.random_left > 0) {
            report.problem(
                place,
                "I3",
                format!(
                    "application {} is exhausted with {} custom and {} random left",
                    app.seq, app.custom_left, app.random_left
                ),
            );
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{Notice, OfficeConfig, OfficeRules};
    use crate::pattern::Pattern;
    use crate::plate::Serial;
    use crate::record::{Claim, Record, ReleaseRecord, ReleaseSource};

    fn serial(text: &str) -> Serial {
        Serial::parse(text).expect("serial")
    }

    pub(crate) fn app(seq: u64, state: AppState, claimed: Option<&str>) -> AppRecord {
        AppRecord {
            state,
            claim: claimed.map(|s| Claim {
                serial: serial(s),
                claimed_at_ms: 1,
                register_by_ms: u64::MAX / 2,
                voucher_serial: format!("O-1-{seq}"),
                voucher_code: "00000000".into(),
                void: false,
            }),
            ..AppRecord::sample(seq)
        }
    }

    fn claimed(class: &str, s: &str, app: u64) -> Record {
        Record::Number {
            class: class.into(),
            serial: serial(s),
            state: Some(NumberState::Claimed { app }),
        }
    }

    /// An office with one release (A00##) and the records given, in a new folder.
    pub(crate) fn folder(records: Vec<Record>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path(), Durability::None).expect("open");
        let office = store.office("o").expect("office");
        let config = OfficeConfig {
            name: "o".into(),
            prefix: "粤K".into(),
            classes: vec!["small".into()],
            rules: OfficeRules::default(),
            notice: Notice::default(),
        };
        let release = ReleaseRecord {
            id: 1,
            class: "small".into(),
            label: String::new(),
            opens_at_ms: 0,
            custom_from_ms: 0,
            source: ReleaseSource::Patterns(vec![Pattern::parse("A00##").expect("pattern")]),
            created_at_ms: 0,
            withdrawn: false,
        };
        let mut all = vec![
            Record::Config(Box::new(config)),
            Record::Release(Box::new(release)),
        ];
        all.extend(records);
        office.commit_now(&all).expect("commit");
        store.record_generation().expect("generation");
        dir
    }

    pub(crate) fn checks(report: &VerifyReport) -> Vec<&str> {
        report.problems.iter().map(|p| p.check.as_str()).collect()
    }

    #[test]
    fn a_consistent_folder_is_sound() {
        let dir = folder(vec![
            Record::App(Box::new(app(1, AppState::Claimed, Some("A0001")))),
            claimed("small", "A0001", 1),
            Record::App(Box::new(app(2, AppState::Selecting, None))),
        ]);
        let report = verify(dir.path(), &PlateClass::builtin());
        assert!(report.is_sound(), "{:?}", report.problems);
        assert_eq!(
            (report.offices, report.applications, report.numbers_taken),
            (1, 2, 1)
        );
    }

    #[test]
    fn a_number_claimed_twice_is_an_i1_problem() {
        let dir = folder(vec![
            Record::App(Box::new(app(1, AppState::Claimed, Some("A0001")))),
            Record::App(Box::new(app(2, AppState::Claimed, Some("A0001")))),
            claimed("small", "A0001", 2),
        ]);
        let report = verify(dir.path(), &PlateClass::builtin());
        assert!(!report.is_sound());
        let twice = report
            .problems
            .iter()
            .find(|p| p.what.contains("held by applications 1 and 2"))
            .unwrap_or_else(|| panic!("{:?}", report.problems));
        assert_eq!(
            (twice.place.as_str(), twice.check.as_str()),
            ("office o", "I1")
        );
    }

    #[test]
    fn a_claim_without_its_number_record_is_an_i1_problem() {
        let dir = folder(vec![Record::App(Box::new(app(
            1,
            AppState::Claimed,
            Some("A0002"),
        )))]);
        let report = verify(dir.path(), &PlateClass::builtin());
        assert_eq!(checks(&report), vec!["I1"], "{:?}", report.problems);
        assert!(report.problems[0].what.contains("could be drawn again"));
    }

    #[test]
    fn quotas_and_restores_are_checked() {
        let mut spent = app(1, AppState::Exhausted, None);
        spent.random_left = 2;
        let dir = folder(vec![
            Record::App(Box::new(spent)),
            // A number outside every release: the office cannot restore.
            Record::App(Box::new(app(2, AppState::Claimed, Some("B0001")))),
            claimed("small", "B0001", 2),
        ]);
        let report = verify(dir.path(), &PlateClass::builtin());
        let found = checks(&report);
        assert!(
            found.contains(&"I3") && found.contains(&"I9"),
            "{:?}",
            report.problems
        );
    }

    #[test]
    fn a_record_that_does_not_decode_is_named() {
        let dir = folder(vec![]);
        {
            let store = Store::open(dir.path(), Durability::None).expect("open");
            let tree = store.db().open_tree("office/o").expect("tree");
            let mut key = vec![b'a'];
            key.extend_from_slice(&7u64.to_be_bytes());
            tree.insert(key, b"{not json".to_vec()).expect("insert");
            store.sync().expect("sync");
            store.record_generation().expect("generation");
        }
        let report = verify(dir.path(), &PlateClass::builtin());
        assert_eq!(checks(&report), vec!["decode"], "{:?}", report.problems);
        assert!(report.problems[0].what.contains("cannot be read"));
    }

    #[test]
    fn a_database_behind_its_generation_is_refused_with_why() {
        let dir = folder(vec![]);
        std::fs::write(dir.path().join(crate::store::GENERATION_FILE), "999999").expect("write");
        let report = verify(dir.path(), &PlateClass::builtin());
        assert_eq!(checks(&report), vec!["generation"], "{:?}", report.problems);
        let empty = tempfile::tempdir().expect("dir");
        let report = verify(empty.path(), &PlateClass::builtin());
        assert!(report.problems[0]
            .what
            .contains("not a platepool data folder"));
    }
}
