//! [`PgStore`]: one connection to the cluster's PostgreSQL, with the calls a node makes.

use std::future::Future;
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use super::commit::{self, CommitStatements};
use super::lease::{self, Lease, LeaseRow};
use super::replication::{self, StandbyRow};
use super::{load, schema, Epoch, PgError};
use crate::record::{AuditEntry, Record};
use crate::store::OfficeSnapshot;

/// A connection to the primary. `url` is a libpq-style connection string or URL; with several
/// hosts and `target_session_attrs=read-write` it finds the primary after a failover (connect
/// again after an error). Every call is bounded by the timeout given to [`PgStore::connect`]:
/// a commit that does not return within it is not acknowledged, and the connection is then
/// abandoned ([`PgError::Abandoned`]) because its transaction's outcome is unknown.
///
/// Needs a Tokio runtime with IO and time enabled; the connection's IO runs as a task on it.
#[derive(Debug)]
pub struct PgStore {
    client: Client,
    commit: CommitStatements,
    timeout: Duration,
    abandoned: bool,
}

impl PgStore {
    /// Connects, applies the schema's migrations and prepares the commit's statements.
    pub async fn connect(url: &str, timeout: Duration) -> Result<PgStore, PgError> {
        let opened = async {
            let (mut client, connection) = tokio_postgres::connect(url, NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "connection to PostgreSQL closed");
                }
            });
            // Acknowledged means flushed on the primary and on its synchronous standbys,
            // whatever the server's or role's default says.
            client.batch_execute("SET synchronous_commit = on").await?;
            schema::migrate(&mut client).await?;
            let commit = CommitStatements::prepare(&client).await?;
            Ok::<_, PgError>((client, commit))
        };
        let (client, commit) = tokio::time::timeout(timeout, opened)
            .await
            .map_err(|_| PgError::Timeout(timeout))??;
        Ok(PgStore {
            client,
            commit,
            timeout,
            abandoned: false,
        })
    }

    /// Runs one call within the timeout; past it the connection is abandoned.
    async fn bounded<T>(
        abandoned: &mut bool,
        timeout: Duration,
        call: impl Future<Output = Result<T, PgError>>,
    ) -> Result<T, PgError> {
        if *abandoned {
            return Err(PgError::Abandoned);
        }
        match tokio::time::timeout(timeout, call).await {
            Ok(result) => result,
            Err(_) => {
                *abandoned = true;
                Err(PgError::Timeout(timeout))
            }
        }
    }

    /// The office's group commit: all of `records` in one transaction, or none of them.
    /// [`PgError::Fenced`] when `epoch` is no longer the office's (its lease was taken over).
    /// `Ok` only once PostgreSQL acknowledged the commit (`synchronous_commit = on`).
    pub async fn commit(
        &mut self,
        office: &str,
        epoch: Epoch,
        records: &[Record],
    ) -> Result<(), PgError> {
        let call = commit::commit(&mut self.client, &self.commit, office, epoch, records);
        Self::bounded(&mut self.abandoned, self.timeout, call).await
    }

    /// Everything the office has committed, as the sled backend's `OfficeStore::load` returns it.
    pub async fn load(&mut self, office: &str) -> Result<OfficeSnapshot, PgError> {
        let call = load::load(&mut self.client, office);
        Self::bounded(&mut self.abandoned, self.timeout, call).await
    }

    /// The office's audit entries with ids above `after`, oldest first, at most `limit`.
    pub async fn audit(
        &mut self,
        office: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, AuditEntry)>, PgError> {
        let call = load::audit(&self.client, office, after, limit);
        Self::bounded(&mut self.abandoned, self.timeout, call).await
    }

    /// Adds offices to the lease table (free); known ones are left as they are.
    pub async fn register_offices(&mut self, offices: &[String]) -> Result<(), PgError> {
        let call = lease::register(&self.client, offices);
        Self::bounded(&mut self.abandoned, self.timeout, call).await
    }

    /// Takes the office's lease if free, expired or this node's; `None`: another node holds it.
    pub async fn acquire(
        &mut self,
        office: &str,
        node: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, PgError> {
        let call = lease::acquire(&self.client, office, node, ttl);
        Self::bounded(&mut self.abandoned, self.timeout, call).await
    }

    /// Takes every free or expired lease of `preferred`, then others up to a fair share.
    pub async fn claim(
        &mut self,
        node: &str,
        ttl: Duration,
        preferred: &[String],
    ) -> Result<Vec<Lease>, PgError> {
        let call = lease::claim(&self.client, node, ttl, preferred);
        Self::bounded(&mut self.abandoned, self.timeout, call).await
    }

    /// Extends a held lease; `None`: it was taken over and the office must not be served.
    pub async fn renew(&mut self, held: &Lease, ttl: Duration) -> Result<Option<Lease>, PgError> {
        let call = lease::renew(&self.client, held, ttl);
        Self::bounded(&mut self.abandoned, self.timeout, call).await
    }

    /// Gives a lease up; false if it was no longer this node's.
    pub async fn release(&mut self, held: &Lease) -> Result<bool, PgError> {
        let call = lease::release(&self.client, held);
        Self::bounded(&mut self.abandoned, self.timeout, call).await
    }

    /// Every office's lease (owner, epoch, ages).
    pub async fn lease_status(&mut self) -> Result<Vec<LeaseRow>, PgError> {
        let call = lease::status(&self.client);
        Self::bounded(&mut self.abandoned, self.timeout, call).await
    }

    /// The standbys streaming from this server and its `synchronous_standby_names` (empty:
    /// commits wait for no standby).
    pub async fn standbys(&mut self) -> Result<(Vec<StandbyRow>, String), PgError> {
        let call = replication::standbys(&self.client);
        Self::bounded(&mut self.abandoned, self.timeout, call).await
    }
}
