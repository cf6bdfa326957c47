//! An office's records read back from PostgreSQL: what a new owner recovers the office from,
//! in the shape and order the sled backend's `OfficeStore::load` returns them.

use serde::de::DeserializeOwned;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, IsolationLevel};

use super::error::{to_i64, to_u64, PgError};
use crate::plate::{Serial, SERIAL_LEN_MAX};
use crate::record::{AppProgress, AuditEntry};
use crate::store::OfficeSnapshot;

fn parse<T: DeserializeOwned>(text: &str, what: &str) -> Result<T, PgError> {
    serde_json::from_str(text).map_err(|e| PgError::Corrupt {
        what: what.to_string(),
        message: e.to_string(),
    })
}

/// Everything the office has committed, read in one consistent snapshot.
pub(crate) async fn load(client: &mut Client, office: &str) -> Result<OfficeSnapshot, PgError> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let by_office: [&(dyn ToSql + Sync); 1] = [&office];
    let (config, releases, apps, progress, numbers) = tokio::try_join!(
        tx.query_opt(
            "SELECT config::text FROM platepool_office_config WHERE office = $1",
            &by_office
        ),
        tx.query(
            "SELECT release::text FROM platepool_release WHERE office = $1 ORDER BY id",
            &by_office
        ),
        tx.query(
            "SELECT record::text FROM platepool_application WHERE office = $1 ORDER BY seq",
            &by_office
        ),
        tx.query(
            "SELECT seq, progress::text FROM platepool_progress WHERE office = $1",
            &by_office
        ),
        tx.query(
            "SELECT class, code, len, state::text FROM platepool_number WHERE office = $1 \
             ORDER BY class COLLATE \"C\", code",
            &by_office
        ),
    )?;
    tx.commit().await?;
    let mut snap = OfficeSnapshot {
        config: config
            .map(|row| parse(row.get(0), "office config"))
            .transpose()?,
        ..OfficeSnapshot::default()
    };
    for row in releases {
        snap.releases.push(parse(row.get(0), "release")?);
    }
    for row in apps {
        snap.apps.push(parse(row.get(0), "application")?);
    }
    for row in progress {
        let seq = to_u64(row.get(0), "selection fields' seq")?;
        let fields: AppProgress = parse(row.get(1), "selection fields")?;
        let at = snap
            .apps
            .binary_search_by_key(&seq, |a| a.seq)
            .map_err(|_| PgError::Corrupt {
                what: format!("selection fields of application {seq}"),
                message: "the application is not stored".into(),
            })?;
        snap.apps[at].apply_progress(&fields);
    }
    for row in numbers {
        let class: String = row.get(0);
        let code: i64 = row.get(1);
        let len: i16 = row.get(2);
        let corrupt = || PgError::Corrupt {
            what: format!("number {class}/{code}"),
            message: format!("code {code} of length {len}"),
        };
        let len = usize::try_from(len)
            .ok()
            .filter(|l| (1..=SERIAL_LEN_MAX).contains(l))
            .ok_or_else(corrupt)?;
        let code = u32::try_from(code).map_err(|_| corrupt())?;
        let serial = Serial::from_code(code, len).map_err(|_| corrupt())?;
        let state = parse(row.get(3), "number state")?;
        snap.numbers.push((class, serial, state));
    }
    Ok(snap)
}

/// Audit entries with ids above `after`, oldest first, at most `limit`. Ids grow with every
/// commit of the office (one owner commits at a time); they are not consecutive.
pub(crate) async fn audit(
    client: &Client,
    office: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<(u64, AuditEntry)>, PgError> {
    let after = to_i64(after, "audit id")?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = client
        .query(
            "SELECT id, at_ms, who, action, application, serial, detail FROM platepool_audit \
             WHERE office = $1 AND id > $2 ORDER BY id LIMIT $3",
            &[&office, &after, &limit],
        )
        .await?;
    rows.into_iter()
        .map(|row| {
            let entry = AuditEntry {
                at_ms: to_u64(row.get(1), "audit time")?,
                who: row.get(2),
                action: row.get(3),
                application: row
                    .get::<_, Option<i64>>(4)
                    .map(|a| to_u64(a, "audit application"))
                    .transpose()?,
                serial: row.get(5),
                detail: row.get(6),
            };
            Ok((to_u64(row.get(0), "audit id")?, entry))
        })
        .collect()
}
