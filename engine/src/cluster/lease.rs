//! One owner per office at a time: leases in PostgreSQL, timed by the database's clock.
//!
//! A lease row is (office, node, epoch, expiry). A node takes a lease that is free, expired or
//! its own (after a restart), and each take adds one to the epoch; it renews the lease before it
//! expires and serves the office only while it holds it. Two nodes taking the same lease update
//! the same row: PostgreSQL runs the second update after the first commits and re-checks its
//! condition on the new row, so exactly one of them gets it. The epoch is what fences a former
//! owner's commits ([`super::commit`]), whatever its own clock says.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::error::{to_i64, to_u64, PgError};
use super::Epoch;

/// A lease this node holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub office: String,
    pub node: String,
    pub epoch: Epoch,
    /// Local time by which the lease has certainly expired in the database unless renewed
    /// (the request's start plus the TTL): the node stops serving the office then.
    pub valid_until: Instant,
}

/// One office's lease as `platepool cluster status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    pub office: String,
    /// `None`: never taken, or released.
    pub node: Option<String>,
    pub epoch: Epoch,
    /// Since the current owner took it.
    pub held_ms: Option<i64>,
    /// Since it was last taken or renewed.
    pub renewed_ms: Option<i64>,
    /// Until it expires; negative once expired.
    pub expires_in_ms: Option<i64>,
}

const EXPIRY: &str = "now() + make_interval(secs => $3::bigint / 1000.0)";

fn ttl_ms(ttl: Duration) -> Result<i64, PgError> {
    to_i64(
        u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1),
        "lease TTL (ms)",
    )
}

fn lease(
    office: String,
    node: &str,
    epoch: i64,
    start: Instant,
    ttl: Duration,
) -> Result<Lease, PgError> {
    Ok(Lease {
        office,
        node: node.to_string(),
        epoch: to_u64(epoch, "epoch")?,
        valid_until: start + ttl,
    })
}

/// Makes offices known to the lease table (free, epoch 0); offices already there are kept.
pub(crate) async fn register(client: &Client, offices: &[String]) -> Result<(), PgError> {
    client
        .execute(
            "INSERT INTO platepool_lease (office) SELECT UNNEST($1::text[]) \
             ON CONFLICT (office) DO NOTHING",
            &[&offices],
        )
        .await?;
    Ok(())
}

/// Takes the office's lease if it is free, expired or already this node's; `None` when another
/// node holds it. The epoch goes up by one either way it is taken.
pub(crate) async fn acquire(
    client: &Client,
    office: &str,
    node: &str,
    ttl: Duration,
) -> Result<Option<Lease>, PgError> {
    let start = Instant::now();
    let sql = format!(
        "UPDATE platepool_lease SET node = $2, epoch = epoch + 1, expires_at = {EXPIRY}, \
         acquired_at = now(), renewed_at = now() \
         WHERE office = $1 AND (node IS NULL OR expires_at <= now() OR node = $2) \
         RETURNING epoch"
    );
    let row = client
        .query_opt(&sql, &[&office, &node, &ttl_ms(ttl)?])
        .await?;
    row.map(|row| lease(office.to_string(), node, row.get(0), start, ttl))
        .transpose()
}

/// Extends a lease this node still holds at its epoch; `None`: it was taken over (or released),
/// and the node must stop serving the office.
pub(crate) async fn renew(
    client: &Client,
    held: &Lease,
    ttl: Duration,
) -> Result<Option<Lease>, PgError> {
    let start = Instant::now();
    let sql = format!(
        "UPDATE platepool_lease SET expires_at = {EXPIRY}, renewed_at = now() \
         WHERE office = $1 AND node = $2 AND epoch = $4 RETURNING epoch"
    );
    let epoch = to_i64(held.epoch, "epoch")?;
    let row = client
        .query_opt(&sql, &[&held.office, &held.node, &ttl_ms(ttl)?, &epoch])
        .await?;
    row.map(|row| lease(held.office.clone(), &held.node, row.get(0), start, ttl))
        .transpose()
}

/// Gives a lease up at once (another node may take it without waiting for it to expire).
/// False if it was no longer this node's.
pub(crate) async fn release(client: &Client, held: &Lease) -> Result<bool, PgError> {
    let epoch = to_i64(held.epoch, "epoch")?;
    let n = client
        .execute(
            "UPDATE platepool_lease SET node = NULL, expires_at = NULL \
             WHERE office = $1 AND node = $2 AND epoch = $3",
            &[&held.office, &held.node, &epoch],
        )
        .await?;
    Ok(n == 1)
}

/// Takes free or expired leases among `offices` (all of them when `None`), in office order, at
/// most `limit`; offices another node is taking at the same moment are skipped, not waited for.
async fn take_free(
    client: &Client,
    node: &str,
    ttl: Duration,
    offices: Option<&[String]>,
    limit: i64,
) -> Result<Vec<Lease>, PgError> {
    let start = Instant::now();
    let sql = format!(
        "UPDATE platepool_lease l SET node = $2, epoch = l.epoch + 1, expires_at = {EXPIRY}, \
         acquired_at = now(), renewed_at = now() \
         FROM (SELECT office FROM platepool_lease \
               WHERE (node IS NULL OR expires_at <= now()) \
                 AND ($4::text[] IS NULL OR office = ANY($4::text[])) \
               ORDER BY office LIMIT $1 FOR UPDATE SKIP LOCKED) c \
         WHERE l.office = c.office RETURNING l.office, l.epoch"
    );
    let offices = offices.map(|o| o.to_vec());
    let rows = client
        .query(&sql, &[&limit, &node, &ttl_ms(ttl)?, &offices])
        .await?;
    rows.into_iter()
        .map(|row| lease(row.get(0), node, row.get(1), start, ttl))
        .collect()
}

/// Takes what this node should serve among free and expired leases: every one of `preferred`
/// (configured preferences), then others up to its fair share (offices divided by the nodes
/// holding live leases, this one included).
pub(crate) async fn claim(
    client: &Client,
    node: &str,
    ttl: Duration,
    preferred: &[String],
) -> Result<Vec<Lease>, PgError> {
    let mut taken = if preferred.is_empty() {
        Vec::new()
    } else {
        take_free(client, node, ttl, Some(preferred), i64::MAX).await?
    };
    let row = client
        .query_one(
            "SELECT count(*), \
                    count(DISTINCT node) FILTER (WHERE expires_at > now() AND node <> $1), \
                    count(*) FILTER (WHERE expires_at > now() AND node = $1) \
             FROM platepool_lease",
            &[&node],
        )
        .await?;
    let (offices, others, mine): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    let share = (offices + others) / (others + 1);
    if share > mine {
        taken.extend(take_free(client, node, ttl, None, share - mine).await?);
    }
    Ok(taken)
}

/// Every office's lease, by office.
pub(crate) async fn status(client: &Client) -> Result<Vec<LeaseRow>, PgError> {
    let ms = |t: &str| format!("(EXTRACT(EPOCH FROM {t}) * 1000)::bigint");
    let sql = format!(
        "SELECT office, node, epoch, {}, {}, {} FROM platepool_lease ORDER BY office",
        ms("now() - acquired_at"),
        ms("now() - renewed_at"),
        ms("expires_at - now()"),
    );
    client
        .query(&sql, &[])
        .await?
        .into_iter()
        .map(|row| {
            let node: Option<String> = row.get(1);
            let held = |v: Option<i64>| v.filter(|_| node.is_some());
            Ok(LeaseRow {
                office: row.get(0),
                epoch: to_u64(row.get(2), "epoch")?,
                held_ms: held(row.get(3)),
                renewed_ms: held(row.get(4)),
                expires_in_ms: held(row.get(5)),
                node,
            })
        })
        .collect()
}
