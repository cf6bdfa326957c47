//! An office's group commit on PostgreSQL: one transaction whose statements are sent together
//! (pipelined), one per kind of record with arrays of values (`UNNEST`), and the fence.
//!
//! The records of a group are first collapsed as the sled backend's batch would apply them (a
//! later record for the same key wins; a whole application drops its selection fields), so no
//! two statements touch the same row and their order does not matter. The fence may run after
//! the writes: if it refuses, the transaction is rolled back and nothing is written.

use std::collections::BTreeMap;

use serde::Serialize;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use super::error::{to_i64, PgError};
use super::Epoch;
use crate::config::OfficeConfig;
use crate::record::{AppProgress, AppRecord, AuditEntry, NumberState, Record, ReleaseRecord};

const FENCE: &str = "SELECT platepool_fence($1, $2)";
const CONFIG: &str = "INSERT INTO platepool_office_config (office, config) \
    VALUES ($1, $2::text::jsonb) \
    ON CONFLICT (office) DO UPDATE SET config = EXCLUDED.config";
const RELEASES: &str = "INSERT INTO platepool_release (office, id, release) \
    SELECT $1, i, r::jsonb FROM UNNEST($2::bigint[], $3::text[]) AS t(i, r) \
    ON CONFLICT (office, id) DO UPDATE SET release = EXCLUDED.release";
const APPS: &str = "INSERT INTO platepool_application (office, seq, record) \
    SELECT $1, s, r::jsonb FROM UNNEST($2::bigint[], $3::text[]) AS t(s, r) \
    ON CONFLICT (office, seq) DO UPDATE SET record = EXCLUDED.record";
const PROGRESS_DROP: &str =
    "DELETE FROM platepool_progress WHERE office = $1 AND seq = ANY($2::bigint[])";
const PROGRESS: &str = "INSERT INTO platepool_progress (office, seq, progress) \
    SELECT $1, s, p::jsonb FROM UNNEST($2::bigint[], $3::text[]) AS t(s, p) \
    ON CONFLICT (office, seq) DO UPDATE SET progress = EXCLUDED.progress";
const NUMBERS_DROP: &str = "DELETE FROM platepool_number n \
    USING UNNEST($2::text[], $3::bigint[]) AS t(c, k) \
    WHERE n.office = $1 AND n.class = t.c AND n.code = t.k";
const NUMBERS: &str = "INSERT INTO platepool_number (office, class, code, len, state) \
    SELECT $1, c, k, l, s::jsonb \
    FROM UNNEST($2::text[], $3::bigint[], $4::smallint[], $5::text[]) AS t(c, k, l, s) \
    ON CONFLICT (office, class, code) DO UPDATE SET len = EXCLUDED.len, state = EXCLUDED.state";
const AUDIT: &str = "INSERT INTO platepool_audit \
    (office, at_ms, who, action, application, serial, detail) \
    SELECT $1, a, w, x, p, s, d FROM UNNEST($2::bigint[], $3::text[], $4::text[], \
    $5::bigint[], $6::text[], $7::text[]) WITH ORDINALITY AS t(a, w, x, p, s, d, n) ORDER BY n";

/// The group commit's statements, prepared once per connection.
#[derive(Debug)]
pub(crate) struct CommitStatements {
    fence: Statement,
    config: Statement,
    releases: Statement,
    apps: Statement,
    progress_drop: Statement,
    progress: Statement,
    numbers_drop: Statement,
    numbers: Statement,
    audit: Statement,
}

impl CommitStatements {
    pub(crate) async fn prepare(client: &Client) -> Result<CommitStatements, PgError> {
        Ok(CommitStatements {
            fence: client.prepare(FENCE).await?,
            config: client.prepare(CONFIG).await?,
            releases: client.prepare(RELEASES).await?,
            apps: client.prepare(APPS).await?,
            progress_drop: client.prepare(PROGRESS_DROP).await?,
            progress: client.prepare(PROGRESS).await?,
            numbers_drop: client.prepare(NUMBERS_DROP).await?,
            numbers: client.prepare(NUMBERS).await?,
            audit: client.prepare(AUDIT).await?,
        })
    }
}

/// A group's records as the rows they leave, each key once.
#[derive(Debug, Default)]
struct Collapsed<'a> {
    config: Option<&'a OfficeConfig>,
    releases: BTreeMap<u32, &'a ReleaseRecord>,
    apps: BTreeMap<u64, &'a AppRecord>,
    /// `None`: a later whole record dropped the selection fields.
    progress: BTreeMap<u64, Option<&'a AppProgress>>,
    /// (class, code) → (length, state); `None`: back to what the release says.
    numbers: BTreeMap<(&'a str, u32), (usize, Option<NumberState>)>,
    audit: Vec<&'a AuditEntry>,
}

fn collapse(records: &[Record]) -> Collapsed<'_> {
    let mut c = Collapsed::default();
    for record in records {
        match record {
            Record::Config(config) => c.config = Some(config),
            Record::Release(release) => {
                c.releases.insert(release.id, release);
            }
            Record::App(app) => {
                c.apps.insert(app.seq, app);
                c.progress.insert(app.seq, None);
            }
            Record::Progress { seq, progress } => {
                c.progress.insert(*seq, Some(progress));
            }
            Record::Number {
                class,
                serial,
                state,
            } => {
                c.numbers
                    .insert((class, serial.code()), (serial.len(), *state));
            }
            Record::Audit(entry) => c.audit.push(entry),
        }
    }
    c
}

fn json<T: Serialize + ?Sized>(value: &T, what: &str) -> Result<String, PgError> {
    serde_json::to_string(value).map_err(|e| PgError::Corrupt {
        what: what.to_string(),
        message: e.to_string(),
    })
}

/// The statements' array parameters.
#[derive(Debug, Default)]
struct Columns {
    config: Option<String>,
    release_ids: Vec<i64>,
    releases: Vec<String>,
    app_seqs: Vec<i64>,
    apps: Vec<String>,
    progress_drop: Vec<i64>,
    progress_seqs: Vec<i64>,
    progress: Vec<String>,
    numbers_drop: (Vec<String>, Vec<i64>),
    numbers: (Vec<String>, Vec<i64>, Vec<i16>, Vec<String>),
    audit: AuditColumns,
}

#[derive(Debug, Default)]
struct AuditColumns {
    at_ms: Vec<i64>,
    who: Vec<String>,
    action: Vec<String>,
    application: Vec<Option<i64>>,
    serial: Vec<Option<String>>,
    detail: Vec<String>,
}

impl Columns {
    fn of(c: &Collapsed<'_>) -> Result<Columns, PgError> {
        let mut cols = Columns {
            config: c.config.map(|config| json(config, "config")).transpose()?,
            ..Columns::default()
        };
        for (id, release) in &c.releases {
            cols.release_ids.push(i64::from(*id));
            cols.releases.push(json(release, "release")?);
        }
        for (seq, app) in &c.apps {
            cols.app_seqs.push(to_i64(*seq, "application seq")?);
            cols.apps.push(json(app, "application")?);
        }
        for (seq, progress) in &c.progress {
            let seq = to_i64(*seq, "application seq")?;
            match progress {
                Some(p) => {
                    cols.progress_seqs.push(seq);
                    cols.progress.push(json(p, "selection fields")?);
                }
                None => cols.progress_drop.push(seq),
            }
        }
        for ((class, code), (len, state)) in &c.numbers {
            match state {
                Some(state) => {
                    cols.numbers.0.push(class.to_string());
                    cols.numbers.1.push(i64::from(*code));
                    cols.numbers.2.push(*len as i16);
                    cols.numbers.3.push(json(state, "number state")?);
                }
                None => {
                    cols.numbers_drop.0.push(class.to_string());
                    cols.numbers_drop.1.push(i64::from(*code));
                }
            }
        }
        for e in &c.audit {
            let a = &mut cols.audit;
            a.at_ms.push(to_i64(e.at_ms, "audit time")?);
            a.who.push(e.who.clone());
            a.action.push(e.action.clone());
            a.application.push(
                e.application
                    .map(|s| to_i64(s, "audit application"))
                    .transpose()?,
            );
            a.serial.push(e.serial.clone());
            a.detail.push(e.detail.clone());
        }
        Ok(cols)
    }
}

/// Runs `statement` only when `wanted`; else answers 0 rows without a round trip.
async fn when(
    wanted: bool,
    run: impl std::future::Future<Output = Result<u64, tokio_postgres::Error>>,
) -> Result<u64, tokio_postgres::Error> {
    if wanted {
        run.await
    } else {
        Ok(0)
    }
}

/// Writes a group of records as one transaction, if `epoch` is still the office's.
pub(crate) async fn commit(
    client: &mut Client,
    st: &CommitStatements,
    office: &str,
    epoch: Epoch,
    records: &[Record],
) -> Result<(), PgError> {
    let cols = Columns::of(&collapse(records))?;
    let epoch_param = to_i64(epoch, "epoch")?;
    let a = &cols.audit;
    // The parameters outlive the pipelined statements that borrow them.
    let fence_p: [&(dyn ToSql + Sync); 2] = [&office, &epoch_param];
    let config_p: [&(dyn ToSql + Sync); 2] = [&office, &cols.config];
    let releases_p: [&(dyn ToSql + Sync); 3] = [&office, &cols.release_ids, &cols.releases];
    let apps_p: [&(dyn ToSql + Sync); 3] = [&office, &cols.app_seqs, &cols.apps];
    let progress_drop_p: [&(dyn ToSql + Sync); 2] = [&office, &cols.progress_drop];
    let progress_p: [&(dyn ToSql + Sync); 3] = [&office, &cols.progress_seqs, &cols.progress];
    let (drop_classes, drop_codes) = &cols.numbers_drop;
    let numbers_drop_p: [&(dyn ToSql + Sync); 3] = [&office, drop_classes, drop_codes];
    let (classes, codes, lens, states) = &cols.numbers;
    let numbers_p: [&(dyn ToSql + Sync); 5] = [&office, classes, codes, lens, states];
    let audit_p: [&(dyn ToSql + Sync); 7] = [
        &office,
        &a.at_ms,
        &a.who,
        &a.action,
        &a.application,
        &a.serial,
        &a.detail,
    ];
    let tx = client.transaction().await?;
    let (fence, config, releases, apps, progress_drop, progress, numbers_drop, numbers, audit) = tokio::join!(
        tx.execute(&st.fence, &fence_p),
        when(cols.config.is_some(), tx.execute(&st.config, &config_p)),
        when(
            !cols.releases.is_empty(),
            tx.execute(&st.releases, &releases_p)
        ),
        when(!cols.apps.is_empty(), tx.execute(&st.apps, &apps_p)),
        when(
            !cols.progress_drop.is_empty(),
            tx.execute(&st.progress_drop, &progress_drop_p)
        ),
        when(
            !cols.progress.is_empty(),
            tx.execute(&st.progress, &progress_p)
        ),
        when(
            !drop_classes.is_empty(),
            tx.execute(&st.numbers_drop, &numbers_drop_p)
        ),
        when(!classes.is_empty(), tx.execute(&st.numbers, &numbers_p)),
        when(!a.at_ms.is_empty(), tx.execute(&st.audit, &audit_p)),
    );
    if let Err(e) = &fence {
        if PgError::is_fence(e) {
            return Err(PgError::Fenced {
                office: office.to_string(),
                epoch,
            });
        }
    }
    for result in [
        fence,
        config,
        releases,
        apps,
        progress_drop,
        progress,
        numbers_drop,
        numbers,
        audit,
    ] {
        result?;
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plate::Serial;

    #[test]
    fn a_later_record_for_the_same_key_wins_as_in_a_sled_batch() {
        let app = AppRecord::sample(1);
        let progress = AppProgress {
            random_left: 2,
            ..app.progress()
        };
        let serial = Serial::parse("A1234").expect("serial");
        let records = vec![
            Record::Progress { seq: 1, progress },
            Record::App(Box::new(app.clone())),
            Record::Progress { seq: 2, progress },
            Record::Number {
                class: "small".into(),
                serial,
                state: Some(NumberState::Claimed { app: 1 }),
            },
            Record::Number {
                class: "small".into(),
                serial,
                state: None,
            },
        ];
        let cols = Columns::of(&collapse(&records)).expect("columns");
        assert_eq!(cols.app_seqs, vec![1]);
        // The whole record came after the first selection fields: they are dropped.
        assert_eq!(cols.progress_drop, vec![1]);
        assert_eq!(cols.progress_seqs, vec![2]);
        assert!(cols.numbers.0.is_empty());
        assert_eq!(cols.numbers_drop.0, vec!["small".to_string()]);
        assert_eq!(cols.numbers_drop.1, vec![i64::from(serial.code())]);
    }
}
