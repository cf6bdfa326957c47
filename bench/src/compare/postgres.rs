//! The plate pool as a PostgreSQL expert would build it: one row per number with a status, its
//! holder and a random key; one row per application with quotas, its batch and the batch's
//! deadline; every operation one PL/pgSQL function called through a prepared statement (one
//! round trip, one transaction, one WAL flush at commit with `synchronous_commit on`).
//!
//! - draw: `SELECT … WHERE status = 0 AND rnd >= random ORDER BY rnd LIMIT 10 FOR UPDATE SKIP
//!   LOCKED` on a partial index of available numbers (wrapping around the key space), so
//!   concurrent draws never wait for each other;
//! - custom check: a conditional `UPDATE … WHERE serial = $1 AND (status = 0 OR own hold)` per
//!   number (no lock taken on numbers that are not available), else the quota debit and an audit
//!   row;
//! - expiry: the due applications (partial index on the deadline) taken `FOR UPDATE SKIP LOCKED`
//!   in slices, their numbers returned;
//! - keyboard: per position, `EXISTS` probes per character on partial per-position indexes of
//!   available numbers, one prepared statement per shape of entered positions.
//!
//! The pool of connections ([`PG_CONNECTIONS`]) pipelines calls: each call is one autocommit
//! statement, so a connection never waits for its client between statements.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::{Duration, Instant};

use platepool_engine::actor::{Clock, SystemClock};
use platepool_engine::pattern::CharSet;
use platepool_engine::plate::{char_index, Serial};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_postgres::{Client, NoTls, Statement};

use super::{CheckOutcome, PoolBackend, DRAW_BATCH, HOLD_TTL_MS};
use crate::fixture::Office;

/// Connections in the pool: enough concurrent transactions for PostgreSQL's WAL flushes to
/// group many commits on a two-core machine, few enough not to thrash it.
pub const PG_CONNECTIONS: usize = 16;
/// Rows per `INSERT … SELECT unnest(…)` while loading.
const LOAD_CHUNK: usize = 50_000;
/// Applications one expiry call handles.
pub const EXPIRE_SLICE: i32 = 100;
const QUOTA: i32 = 1_000_000_000;

const SCHEMA: &str = r#"
DROP TABLE IF EXISTS numbers, applications, audit;
CREATE TABLE numbers (
    serial text PRIMARY KEY,
    c1 smallint NOT NULL, c2 smallint NOT NULL, c3 smallint NOT NULL,
    c4 smallint NOT NULL, c5 smallint NOT NULL,
    rnd integer NOT NULL,
    status smallint NOT NULL DEFAULT 0, -- 0 available, 1 held, 2 claimed
    holder bigint
) WITH (fillfactor = 80);
CREATE TABLE applications (
    seq bigint PRIMARY KEY,
    random_left integer NOT NULL,
    custom_left integer NOT NULL,
    batch text[] NOT NULL DEFAULT '{}',
    batch_exp bigint,
    claimed text,
    last_check bigint
) WITH (fillfactor = 80);
CREATE TABLE audit (
    id bigserial PRIMARY KEY,
    at bigint NOT NULL,
    app bigint NOT NULL,
    action text NOT NULL,
    detail text NOT NULL
);
"#;

const INDEXES: &str = r#"
CREATE INDEX numbers_draw ON numbers (rnd) WHERE status = 0;
CREATE INDEX numbers_kb1 ON numbers (c1) WHERE status = 0;
CREATE INDEX numbers_kb2 ON numbers (c2) WHERE status = 0;
CREATE INDEX numbers_kb3 ON numbers (c3) WHERE status = 0;
CREATE INDEX numbers_kb4 ON numbers (c4) WHERE status = 0;
CREATE INDEX numbers_kb5 ON numbers (c5) WHERE status = 0;
CREATE INDEX applications_due ON applications (batch_exp) WHERE batch_exp IS NOT NULL;
"#;

const FUNCTIONS: &str = r#"
CREATE OR REPLACE FUNCTION pp_draw(p_app bigint, p_now bigint, p_ttl bigint, p_size integer)
RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    v_left integer; v_old text[]; v_r integer; v_got text[];
BEGIN
    SELECT random_left, batch INTO v_left, v_old FROM applications WHERE seq = p_app FOR UPDATE;
    IF NOT FOUND THEN RAISE EXCEPTION 'unknown_application'; END IF;
    IF v_left <= 0 THEN RAISE EXCEPTION 'quota_spent'; END IF;
    UPDATE numbers SET status = 0, holder = NULL
     WHERE serial = ANY (v_old) AND status = 1 AND holder = p_app;
    v_r := floor(random() * 2147483647)::integer;
    WITH pick AS (SELECT serial FROM numbers WHERE status = 0 AND rnd >= v_r
                   ORDER BY rnd LIMIT p_size FOR UPDATE SKIP LOCKED),
         upd AS (UPDATE numbers n SET status = 1, holder = p_app FROM pick
                  WHERE n.serial = pick.serial RETURNING n.serial)
    SELECT coalesce(array_agg(serial), '{}') INTO v_got FROM upd;
    IF cardinality(v_got) < p_size THEN
        WITH pick AS (SELECT serial FROM numbers WHERE status = 0 AND rnd < v_r
                       ORDER BY rnd LIMIT p_size - cardinality(v_got) FOR UPDATE SKIP LOCKED),
             upd AS (UPDATE numbers n SET status = 1, holder = p_app FROM pick
                      WHERE n.serial = pick.serial RETURNING n.serial)
        SELECT v_got || coalesce(array_agg(serial), '{}') INTO v_got FROM upd;
    END IF;
    IF cardinality(v_got) = 0 THEN RAISE EXCEPTION 'not_available'; END IF;
    UPDATE applications SET random_left = v_left - 1, batch = v_got, batch_exp = p_now + p_ttl
     WHERE seq = p_app;
    RETURN v_got;
END $$;

CREATE OR REPLACE FUNCTION pp_check(p_app bigint, p_now bigint, p_serials text[])
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_left integer; v_n integer := cardinality(p_serials); v_got text;
    v_reasons text[] := '{}'; v_status smallint;
BEGIN
    SELECT custom_left INTO v_left FROM applications WHERE seq = p_app FOR UPDATE;
    IF NOT FOUND THEN RAISE EXCEPTION 'unknown_application'; END IF;
    IF v_n > v_left THEN RAISE EXCEPTION 'too_many_numbers'; END IF;
    FOR i IN 1 .. v_n LOOP
        UPDATE numbers SET status = 2, holder = p_app
         WHERE serial = p_serials[i] AND (status = 0 OR (status = 1 AND holder = p_app))
        RETURNING serial INTO v_got;
        IF v_got IS NOT NULL THEN
            UPDATE applications SET custom_left = v_left - i, claimed = v_got, last_check = p_now
             WHERE seq = p_app;
            INSERT INTO audit (at, app, action, detail) VALUES (p_now, p_app, 'custom_claim', v_got);
            RETURN v_got;
        END IF;
        SELECT status INTO v_status FROM numbers WHERE serial = p_serials[i];
        v_reasons := v_reasons || (p_serials[i] || ':' || CASE WHEN NOT FOUND THEN 'not_in_pool'
                                   WHEN v_status = 1 THEN 'held' ELSE 'taken' END);
    END LOOP;
    UPDATE applications SET custom_left = v_left - v_n, last_check = p_now WHERE seq = p_app;
    INSERT INTO audit (at, app, action, detail)
    VALUES (p_now, p_app, 'custom_check_failed', array_to_string(v_reasons, ' '));
    RETURN '';
END $$;

CREATE OR REPLACE FUNCTION pp_claim(p_app bigint, p_serial text, p_now bigint)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_batch text[]; v_got text;
BEGIN
    SELECT batch INTO v_batch FROM applications WHERE seq = p_app FOR UPDATE;
    IF NOT FOUND THEN RAISE EXCEPTION 'unknown_application'; END IF;
    UPDATE numbers SET status = 2 WHERE serial = p_serial AND status = 1 AND holder = p_app
    RETURNING serial INTO v_got;
    IF v_got IS NULL THEN RAISE EXCEPTION 'not_held'; END IF;
    UPDATE numbers SET status = 0, holder = NULL
     WHERE serial = ANY (v_batch) AND serial <> p_serial AND status = 1 AND holder = p_app;
    UPDATE applications SET batch = '{}', batch_exp = NULL, claimed = p_serial WHERE seq = p_app;
    INSERT INTO audit (at, app, action, detail) VALUES (p_now, p_app, 'claim', p_serial);
    RETURN v_got;
END $$;

CREATE OR REPLACE FUNCTION pp_expire(p_now bigint, p_limit integer)
RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE
    v_apps bigint; v_holds bigint;
BEGIN
    WITH due AS (SELECT seq, batch FROM applications WHERE batch_exp <= p_now
                  ORDER BY batch_exp LIMIT p_limit FOR UPDATE SKIP LOCKED),
         apps AS (UPDATE applications a SET batch = '{}', batch_exp = NULL FROM due
                   WHERE a.seq = due.seq RETURNING due.seq, due.batch),
         rel AS (UPDATE numbers n SET status = 0, holder = NULL
                   FROM (SELECT seq, unnest(batch) AS serial FROM apps) b
                  WHERE n.serial = b.serial AND n.status = 1 AND n.holder = b.seq RETURNING 1)
    SELECT (SELECT count(*) FROM apps), (SELECT count(*) FROM rel) INTO v_apps, v_holds;
    RETURN ARRAY[v_apps, v_holds];
END $$;
"#;

/// One connection with its prepared statements.
#[derive(Debug)]
struct Conn {
    client: Client,
    draw: Statement,
    check: Statement,
    claim: Statement,
    expire: Statement,
    /// Keyboard statements by the mask of entered positions, prepared on first use.
    keyboard: RefCell<HashMap<u32, Statement>>,
}

/// A PostgreSQL database holding the office.
#[derive(Debug)]
pub struct PgBackend {
    conns: Vec<Conn>,
    next_conn: Cell<usize>,
    select: Vec<i64>,
    claimers: Vec<i64>,
    claim_cursor: Cell<usize>,
    expire_cursor: Cell<usize>,
}

fn err(e: tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    }
}

fn now_ms() -> i64 {
    SystemClock.now_ms() as i64
}

/// The keyboard statement for one shape: per position, the characters for which an available
/// number exists with that character there and every other entered character.
fn keyboard_sql(mask: u32) -> String {
    let mut param = HashMap::new();
    for p in 0..5 {
        if mask & (1 << p) != 0 {
            let n = param.len() + 1;
            param.insert(p, n);
        }
    }
    let columns: Vec<String> = (0..5)
        .map(|p| {
            let mut cond = format!("c{} = x::smallint", p + 1);
            for q in (0..5).filter(|&q| q != p) {
                if let Some(n) = param.get(&q) {
                    cond.push_str(&format!(" AND c{} = ${n}::smallint", q + 1));
                }
            }
            format!(
                "(SELECT coalesce(array_agg(x::smallint), '{{}}') FROM generate_series(0, 33) x \
                 WHERE EXISTS (SELECT 1 FROM numbers WHERE status = 0 AND {cond}))"
            )
        })
        .collect();
    format!("SELECT {}", columns.join(", "))
}

impl PgBackend {
    /// Connects `PG_CONNECTIONS` times to `config` and loads the office of `office` (the tables
    /// are recreated).
    pub async fn load(config: &str, office: &Office, codes: &[u32]) -> Result<Self, String> {
        let mut clients = Vec::with_capacity(PG_CONNECTIONS);
        for _ in 0..PG_CONNECTIONS {
            let (client, connection) = tokio_postgres::connect(config, NoTls).await.map_err(err)?;
            actix_rt::spawn(async move {
                if let Err(e) = connection.await {
                    eprintln!("postgres connection: {e}");
                }
            });
            clients.push(client);
        }
        let c = &clients[0];
        c.batch_execute(SCHEMA).await.map_err(err)?;
        c.batch_execute(FUNCTIONS).await.map_err(err)?;
        let taken: HashMap<String, ()> = office.taken.iter().map(|s| (s.to_string(), ())).collect();
        let mut rng = StdRng::seed_from_u64(5);
        let insert = c
            .prepare(
                "INSERT INTO numbers (serial, c1, c2, c3, c4, c5, rnd, status, holder) \
                 SELECT s, a, b, c, d, e, r, t, NULLIF(h, -1) FROM unnest($1::text[], \
                 $2::int2[], $3::int2[], $4::int2[], $5::int2[], $6::int2[], $7::int4[], \
                 $8::int2[], $9::int8[]) AS u(s, a, b, c, d, e, r, t, h)",
            )
            .await
            .map_err(err)?;
        let mut holder: HashMap<String, i64> = HashMap::new();
        for (k, a) in office.holders.iter().enumerate() {
            for s in office.held.iter().skip(k * DRAW_BATCH).take(DRAW_BATCH) {
                holder.insert(s.to_string(), a.id.seq as i64);
            }
        }
        for chunk in codes.chunks(LOAD_CHUNK) {
            let serials: Vec<String> = chunk
                .iter()
                .filter_map(|&c| Serial::from_code(c, 5).ok())
                .map(|s| s.to_string())
                .collect();
            let mut cols: Vec<Vec<i16>> = (0..5).map(|_| Vec::with_capacity(chunk.len())).collect();
            for s in &serials {
                for (p, ch) in s.chars().enumerate().take(5) {
                    cols[p].push(char_index(ch).map_or(-1, i16::from));
                }
            }
            let rnd: Vec<i32> = serials
                .iter()
                .map(|_| rng.random_range(0..i32::MAX))
                .collect();
            let status: Vec<i16> = serials
                .iter()
                .map(|s| {
                    if taken.contains_key(s) {
                        2
                    } else if holder.contains_key(s) {
                        1
                    } else {
                        0
                    }
                })
                .collect();
            let holders: Vec<i64> = serials
                .iter()
                .map(|s| {
                    holder
                        .get(s)
                        .copied()
                        .unwrap_or(if taken.contains_key(s) { 0 } else { -1 })
                })
                .collect();
            c.execute(
                &insert,
                &[
                    &serials, &cols[0], &cols[1], &cols[2], &cols[3], &cols[4], &rnd, &status,
                    &holders,
                ],
            )
            .await
            .map_err(err)?;
        }
        let now = now_ms();
        let seqs: Vec<i64> = office
            .select
            .iter()
            .chain(&office.claimers)
            .map(|a| a.id.seq as i64)
            .collect();
        c.execute(
            "INSERT INTO applications (seq, random_left, custom_left) \
             SELECT s, $2, $2 FROM unnest($1::int8[]) s",
            &[&seqs, &QUOTA],
        )
        .await
        .map_err(err)?;
        for (k, a) in office.holders.iter().enumerate() {
            let batch: Vec<String> = office
                .held
                .iter()
                .skip(k * DRAW_BATCH)
                .take(DRAW_BATCH)
                .map(Serial::to_string)
                .collect();
            c.execute(
                "INSERT INTO applications (seq, random_left, custom_left, batch, batch_exp) \
                 VALUES ($1, $2, $2, $3, $4)",
                &[
                    &(a.id.seq as i64),
                    &QUOTA,
                    &batch,
                    &(now + HOLD_TTL_MS as i64),
                ],
            )
            .await
            .map_err(err)?;
        }
        c.batch_execute(INDEXES).await.map_err(err)?;
        for sql in [
            "VACUUM ANALYZE numbers",
            "VACUUM ANALYZE applications",
            "CHECKPOINT",
        ] {
            c.batch_execute(sql).await.map_err(err)?;
        }
        let mut conns = Vec::with_capacity(clients.len());
        for client in clients {
            conns.push(Conn {
                draw: client
                    .prepare("SELECT pp_draw($1, $2, $3, $4)")
                    .await
                    .map_err(err)?,
                check: client
                    .prepare("SELECT pp_check($1, $2, $3)")
                    .await
                    .map_err(err)?,
                claim: client
                    .prepare("SELECT pp_claim($1, $2, $3)")
                    .await
                    .map_err(err)?,
                expire: client
                    .prepare("SELECT pp_expire($1, $2)")
                    .await
                    .map_err(err)?,
                keyboard: RefCell::new(HashMap::new()),
                client,
            });
        }
        Ok(PgBackend {
            conns,
            next_conn: Cell::new(0),
            select: office.select.iter().map(|a| a.id.seq as i64).collect(),
            claimers: office.claimers.iter().map(|a| a.id.seq as i64).collect(),
            claim_cursor: Cell::new(0),
            expire_cursor: Cell::new(0),
        })
    }

    fn conn(&self) -> &Conn {
        let i = self.next_conn.get();
        self.next_conn.set(i + 1);
        &self.conns[i % self.conns.len()]
    }

    async fn draw_for(&self, app: i64, ttl_ms: i64) -> Result<Vec<String>, String> {
        let c = self.conn();
        let row = c
            .client
            .query_one(&c.draw, &[&app, &now_ms(), &ttl_ms, &(DRAW_BATCH as i32)])
            .await
            .map_err(err)?;
        row.try_get(0).map_err(err)
    }
}

impl PoolBackend for PgBackend {
    fn name(&self) -> String {
        "PostgreSQL".into()
    }

    async fn draw(&self, app: usize) -> Result<usize, String> {
        let seq = self.select[app % self.select.len()];
        Ok(self.draw_for(seq, HOLD_TTL_MS as i64).await?.len())
    }

    async fn check(&self, app: usize, plates: Vec<String>) -> Result<CheckOutcome, String> {
        let seq = self.select[app % self.select.len()];
        let c = self.conn();
        let row = c
            .client
            .query_one(&c.check, &[&seq, &now_ms(), &plates])
            .await
            .map_err(err)?;
        let claimed: String = row.try_get(0).map_err(err)?;
        Ok(if claimed.is_empty() {
            CheckOutcome::NoneAvailable
        } else {
            CheckOutcome::Claimed(claimed)
        })
    }

    async fn claim(&self) -> Result<Duration, String> {
        let i = self.claim_cursor.get();
        self.claim_cursor.set(i + 1);
        let Some(&seq) = self.claimers.get(i) else {
            return Err("no claimer left".into());
        };
        let batch = self.draw_for(seq, HOLD_TTL_MS as i64).await?;
        let serial = batch.first().ok_or("empty draw")?.clone();
        let c = self.conn();
        let t = Instant::now();
        c.client
            .query_one(&c.claim, &[&seq, &serial, &now_ms()])
            .await
            .map_err(err)?;
        Ok(t.elapsed())
    }

    async fn keyboard(
        &self,
        _app: usize,
        entered: Vec<Option<u8>>,
    ) -> Result<Vec<CharSet>, String> {
        let mask = entered
            .iter()
            .enumerate()
            .filter(|(_, e)| e.is_some())
            .fold(0u32, |m, (p, _)| m | (1 << p));
        let params: Vec<i16> = entered.iter().flatten().map(|&c| i16::from(c)).collect();
        let c = self.conn();
        let cached = c.keyboard.borrow().get(&mask).cloned();
        let stmt = match cached {
            Some(s) => s,
            None => {
                let s = c.client.prepare(&keyboard_sql(mask)).await.map_err(err)?;
                c.keyboard.borrow_mut().insert(mask, s.clone());
                s
            }
        };
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        let row = c.client.query_one(&stmt, &refs).await.map_err(err)?;
        let mut out = Vec::with_capacity(5);
        for p in 0..5 {
            let chars: Vec<i16> = row.try_get(p).map_err(err)?;
            let mut set = CharSet::default();
            for ch in chars {
                set.insert(ch as u8);
            }
            out.push(set);
        }
        Ok(out)
    }

    async fn expire(&self, apps: usize) -> Result<(u64, Duration), String> {
        let start = self.expire_cursor.get();
        self.expire_cursor.set(start + apps);
        for k in 0..apps {
            let seq = self.select[(start + k) % self.select.len()];
            self.draw_for(seq, 0).await?;
        }
        let t = Instant::now();
        let mut returned = 0u64;
        loop {
            let c = self.conn();
            let row = c
                .client
                .query_one(&c.expire, &[&now_ms(), &EXPIRE_SLICE])
                .await
                .map_err(err)?;
            let counts: Vec<i64> = row.try_get(0).map_err(err)?;
            returned += counts.get(1).copied().unwrap_or(0) as u64;
            if counts.first().copied().unwrap_or(0) == 0 {
                break;
            }
        }
        Ok((returned, t.elapsed()))
    }
}
