//! The tables of cluster mode, created by numbered migrations that every node applies when it
//! connects (under an advisory lock, so nodes starting together apply each one once).
//!
//! An office's records are stored in the same shape as in the sled backend (store.rs): the
//! configuration, releases and applications as the same JSON (as `jsonb`, so operators can query
//! them), an application's selection fields apart from its whole record, the numbers whose state
//! differs from their release's, and the audit trail, one row per entry.

use tokio_postgres::Client;

use super::PgError;

/// Migrations in order; the database records the last one applied in `platepool_schema`.
/// Never edit one that has shipped: add the next.
pub const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE platepool_lease (
    office      text PRIMARY KEY,
    node        text,
    epoch       bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0),
    expires_at  timestamptz,
    acquired_at timestamptz,
    renewed_at  timestamptz
);

CREATE TABLE platepool_office_config (
    office text PRIMARY KEY,
    config jsonb NOT NULL
);

CREATE TABLE platepool_release (
    office  text NOT NULL,
    id      bigint NOT NULL,
    release jsonb NOT NULL,
    PRIMARY KEY (office, id)
);

CREATE TABLE platepool_application (
    office text NOT NULL,
    seq    bigint NOT NULL,
    record jsonb NOT NULL,
    PRIMARY KEY (office, seq)
);

-- Selection fields newer than the application's record (a draw writes only these).
CREATE TABLE platepool_progress (
    office   text NOT NULL,
    seq      bigint NOT NULL,
    progress jsonb NOT NULL,
    PRIMARY KEY (office, seq)
);

-- Numbers whose state differs from what their release says.
CREATE TABLE platepool_number (
    office text NOT NULL,
    class  text NOT NULL,
    code   bigint NOT NULL,
    len    smallint NOT NULL CHECK (len > 0),
    state  jsonb NOT NULL,
    PRIMARY KEY (office, class, code)
);

CREATE TABLE platepool_audit (
    office      text NOT NULL,
    id          bigint GENERATED ALWAYS AS IDENTITY,
    at_ms       bigint NOT NULL,
    who         text NOT NULL,
    action      text NOT NULL,
    application bigint,
    serial      text,
    detail      text NOT NULL,
    PRIMARY KEY (office, id)
);

-- The fence: inside a group commit's transaction, raises PPFEN unless `want` is still the
-- office's epoch. FOR SHARE holds the lease row until the commit ends, so a take of the lease
-- (an UPDATE of that row) waits for a commit already fenced, and a commit after the take sees
-- the new epoch.
CREATE FUNCTION platepool_fence(o text, want bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    current bigint;
BEGIN
    SELECT epoch INTO current FROM platepool_lease WHERE office = o FOR SHARE;
    IF current IS DISTINCT FROM want THEN
        RAISE EXCEPTION 'office % is at epoch %, not %', o, current, want
            USING ERRCODE = 'PPFEN';
    END IF;
END
$$;
"#];

/// Applies the migrations this database lacks, in one transaction.
pub async fn migrate(client: &mut Client) -> Result<(), PgError> {
    let tx = client.transaction().await?;
    // One node at a time; the lock ends with the transaction.
    tx.execute("SELECT pg_advisory_xact_lock(7261, 1)", &[])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS platepool_schema (version integer NOT NULL)")
        .await?;
    let applied: i32 = tx
        .query_opt("SELECT version FROM platepool_schema", &[])
        .await?
        .map(|row| row.get(0))
        .unwrap_or(0);
    let known = MIGRATIONS.len() as i32;
    if applied > known {
        return Err(PgError::SchemaTooNew {
            found: applied,
            known,
        });
    }
    if applied == known {
        // Nothing written: connecting never waits for a standby.
        return Ok(());
    }
    for sql in &MIGRATIONS[applied.max(0) as usize..] {
        tx.batch_execute(sql).await?;
    }
    tx.execute("DELETE FROM platepool_schema", &[]).await?;
    tx.execute("INSERT INTO platepool_schema VALUES ($1)", &[&known])
        .await?;
    tx.commit().await?;
    Ok(())
}
