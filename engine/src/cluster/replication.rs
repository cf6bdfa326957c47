//! The primary's view of its standbys (`pg_stat_replication`), for `platepool cluster status`.

use tokio_postgres::Client;

use super::PgError;

/// One standby streaming from the primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandbyRow {
    pub name: String,
    /// `sync`: commits wait for it; `async`, `potential`, `quorum`: they do not (or not alone).
    pub sync_state: String,
    /// WAL bytes written on the primary that the standby has not flushed yet.
    pub flush_lag_bytes: Option<i64>,
}

/// The standbys connected to the server, and the server's `synchronous_standby_names`.
pub(crate) async fn standbys(client: &Client) -> Result<(Vec<StandbyRow>, String), PgError> {
    let rows = client
        .query(
            "SELECT application_name, sync_state, \
                    pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn)::bigint \
             FROM pg_stat_replication ORDER BY application_name",
            &[],
        )
        .await?;
    let names: String = client
        .query_one("SHOW synchronous_standby_names", &[])
        .await?
        .get(0);
    let standbys = rows
        .into_iter()
        .map(|row| StandbyRow {
            name: row.get(0),
            sync_state: row.get(1),
            flush_lag_bytes: row.get(2),
        })
        .collect();
    Ok((standbys, names))
}
