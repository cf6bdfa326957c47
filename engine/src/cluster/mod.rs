//! Cluster mode's system of record: PostgreSQL (a primary with a synchronous standby), with
//! offices leased to nodes and every group commit fenced by the office's lease epoch.
//!
//! - [`schema`]: the tables, created by numbered migrations when a node connects;
//! - [`lease`]: one owner per office at a time: take free or expired leases, renew, release;
//!   each take bumps the office's epoch;
//! - [`commit`]: an office's group commit: one transaction, one bulk statement per kind of
//!   record, refused unless the office's epoch is still the committer's;
//! - [`load`]: an office's records read back (recovery by a new owner) and its audit trail.
//!
//! The interface a storage boundary wires in is [`PgStore`]: [`PgStore::commit`]`(office,
//! epoch, records)` and [`PgStore::load`]`(office)`, plus the lease calls. Records are the
//! engine's own [`crate::record::Record`]s; what [`PgStore::load`] returns is the
//! [`crate::store::OfficeSnapshot`] the sled backend returns for the same records.
//!
//! A commit is acknowledged only when PostgreSQL acknowledged it with `synchronous_commit = on`:
//! with `synchronous_standby_names` set (deploy/postgres, docs/cluster.md) that is after the
//! standby flushed it too. A commit that times out or loses its connection has an unknown
//! outcome: the caller answers "unavailable" and recovers the office from the database before
//! serving it again.
mod commit;
mod connection;
mod error;
pub mod lease;
mod load;
mod replication;
pub mod schema;

pub use connection::PgStore;
pub use error::PgError;
pub use lease::{Lease, LeaseRow};
pub use replication::StandbyRow;

/// An office's lease epoch: bumped by every take of the lease, checked by every commit.
pub type Epoch = u64;
