//! What can go wrong talking to PostgreSQL.

/// The SQLSTATE the fence raises (schema.rs, `platepool_fence`).
pub(crate) const FENCED_SQLSTATE: &str = "PPFEN";

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The office's lease was taken over (its epoch is no longer the committer's): nothing of the
    /// commit was written, and this node must stop serving the office.
    #[error("office {office}: lease epoch {epoch} is no longer current; the commit was refused")]
    Fenced { office: String, epoch: u64 },
    /// No answer within the commit timeout (a synchronous standby that is away makes commits
    /// wait): not acknowledged, outcome unknown. The connection is not used again.
    #[error("no answer from PostgreSQL within {0:?}; the commit is not acknowledged")]
    Timeout(std::time::Duration),
    /// A previous commit on this connection timed out: connect again.
    #[error("the connection to PostgreSQL was abandoned after a timeout")]
    Abandoned,
    #[error("PostgreSQL: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("stored record {what} cannot be read: {message}")]
    Corrupt { what: String, message: String },
    /// A value that does not fit a PostgreSQL column (a u64 past i64::MAX).
    #[error("{0} does not fit a PostgreSQL bigint")]
    OutOfRange(String),
    /// The database has migrations this build does not know: a newer platepool wrote it.
    #[error("the database schema is version {found}; this build knows up to {known}")]
    SchemaTooNew { found: i32, known: i32 },
}

impl PgError {
    /// Did the fence refuse the statement?
    pub(crate) fn is_fence(e: &tokio_postgres::Error) -> bool {
        e.code().map(|c| c.code()) == Some(FENCED_SQLSTATE)
    }
}

/// A u64 as a bigint.
pub(crate) fn to_i64(value: u64, what: &str) -> Result<i64, PgError> {
    i64::try_from(value).map_err(|_| PgError::OutOfRange(format!("{what} {value}")))
}

/// A bigint read back as a u64.
pub(crate) fn to_u64(value: i64, what: &str) -> Result<u64, PgError> {
    u64::try_from(value).map_err(|_| PgError::Corrupt {
        what: what.to_string(),
        message: format!("negative value {value}"),
    })
}
