//! The plate pool as a Redis expert would build it: every operation one Lua script (atomic,
//! one round trip), data in native types.
//!
//! | key | type | what |
//! |---|---|---|
//! | `avail` | set | available serials; a draw is `SPOP avail 10` (uniform) |
//! | `owner` | hash | serial → `h<app>` (held) or `c<app>` (claimed) |
//! | `app:<seq>` | hash | `random_left`, `custom_left`, `batch` (serials, comma-joined), `claimed` |
//! | `holds` | sorted set | application → batch deadline (ms); the expiry sweep pops due ones |
//! | `kb` | hash | keyboard counts: for each of the 31 non-empty subsets of the 5 positions, the available numbers per projection (`A?3??` → count), kept by every script that moves a number in or out of `avail` |
//! | `audit` | list | one entry per failing check and per claim (platepool writes the same) |
//!
//! The keyboard counts are the design platepool's `KeyboardIndex` uses (projection counts per
//! subset): a query is at most 5 × 34 cell reads, an update 31 increments per number. Without
//! them a query would intersect per-position sets over a million members.
//!
//! Durability is the server's: `appendfsync always` acknowledges a script after its effects are
//! written to the AOF and fsynced (one fsync per event-loop turn covers every client served in
//! it: Redis's group commit); `everysec` fsyncs once a second.

use std::cell::Cell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use platepool_engine::actor::{Clock, SystemClock};
use platepool_engine::pattern::CharSet;
use platepool_engine::plate::{char_index, Serial};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Script};

use super::{alphabet, CheckOutcome, PoolBackend, DRAW_BATCH, HOLD_TTL_MS};
use crate::fixture::Office;

/// Connections the benchmark multiplexes its calls over (Redis serves them on one thread).
pub const REDIS_CONNECTIONS: usize = 4;
/// Commands per pipeline while loading.
const LOAD_CHUNK: usize = 10_000;
/// Quotas of the loaded applications (as the fixture's `QUOTA_MAX` rules: never spent in a run).
const QUOTA: u64 = 1_000_000_000;

/// Shared Lua: keyboard count upkeep for one serial (`d` = +1 into the pool, -1 out of it), and
/// returning an application's batch to the pool.
const LUA_COMMON: &str = r#"
local function kb(s, d)
  local c = {}
  for p = 1, 5 do c[p] = string.sub(s, p, p) end
  for m = 1, 31 do
    local f = {}
    for p = 1, 5 do
      if bit.band(m, bit.lshift(1, p - 1)) ~= 0 then f[p] = c[p] else f[p] = '?' end
    end
    redis.call('HINCRBY', 'kb', table.concat(f), d)
  end
end
local function release(app, batch)
  local n = 0
  if batch and batch ~= '' then
    for s in string.gmatch(batch, '[^,]+') do
      if redis.call('HGET', 'owner', s) == 'h' .. app then
        redis.call('HDEL', 'owner', s)
        redis.call('SADD', 'avail', s)
        kb(s, 1)
        n = n + 1
      end
    end
  end
  return n
end
"#;

/// ARGV: app, now_ms, ttl_ms, batch size, caller. Returns the random draws left, then the
/// serials held.
const LUA_DRAW: &str = r#"
local app, now, ttl, size = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local ak = 'app:' .. app
local st = redis.call('HMGET', ak, 'random_left', 'batch', 'user')
if not st[1] or st[3] ~= ARGV[5] then return redis.error_reply('unknown_application') end
local left = tonumber(st[1])
if left <= 0 then return redis.error_reply('quota_spent') end
release(app, st[2])
local batch = redis.call('SPOP', 'avail', size)
if #batch == 0 then return redis.error_reply('not_available') end
for _, s in ipairs(batch) do
  redis.call('HSET', 'owner', s, 'h' .. app)
  kb(s, -1)
end
redis.call('HSET', ak, 'random_left', left - 1, 'batch', table.concat(batch, ','))
redis.call('ZADD', 'holds', now + ttl, app)
table.insert(batch, 1, tostring(left - 1))
return batch
"#;

/// ARGV: app, now_ms, serials... Returns the serial claimed, or '' when none was available.
const LUA_CHECK: &str = r#"
local app, now = ARGV[1], ARGV[2]
local ak = 'app:' .. app
local left = tonumber(redis.call('HGET', ak, 'custom_left'))
if not left then return redis.error_reply('unknown_application') end
local n = #ARGV - 2
if n > left then return redis.error_reply('too_many_numbers') end
local reasons = {}
for i = 1, n do
  local s = ARGV[i + 2]
  local o = redis.call('HGET', 'owner', s)
  local mine = (o == 'h' .. app)
  if mine or (not o and redis.call('SREM', 'avail', s) == 1) then
    if not mine then kb(s, -1) end
    redis.call('HSET', 'owner', s, 'c' .. app)
    redis.call('HSET', ak, 'custom_left', left - i, 'claimed', s)
    redis.call('RPUSH', 'audit', now .. ' ' .. app .. ' custom_claim ' .. s)
    return s
  end
  if not o then reasons[i] = s .. ':not_in_pool'
  elseif string.sub(o, 1, 1) == 'h' then reasons[i] = s .. ':held'
  else reasons[i] = s .. ':taken' end
end
redis.call('HSET', ak, 'custom_left', left - n, 'last_check', now)
redis.call('RPUSH', 'audit', now .. ' ' .. app .. ' custom_check_failed ' .. table.concat(reasons, ' '))
return ''
"#;

/// ARGV: app, serial, now_ms. Claims a number of the application's batch.
const LUA_CLAIM: &str = r#"
local app, s, now = ARGV[1], ARGV[2], ARGV[3]
local ak = 'app:' .. app
if redis.call('HGET', 'owner', s) ~= 'h' .. app then return redis.error_reply('not_held') end
redis.call('HSET', 'owner', s, 'c' .. app)
release(app, redis.call('HGET', ak, 'batch'))
redis.call('HSET', ak, 'batch', '', 'claimed', s)
redis.call('ZREM', 'holds', app)
redis.call('RPUSH', 'audit', now .. ' ' .. app .. ' claim ' .. s)
return s
"#;

/// ARGV: now_ms, most applications to expire. Returns {applications expired, holds returned}.
const LUA_EXPIRE: &str = r#"
local now, limit = ARGV[1], tonumber(ARGV[2])
local due = redis.call('ZRANGEBYSCORE', 'holds', '-inf', now, 'LIMIT', 0, limit)
local n = 0
for _, app in ipairs(due) do
  local ak = 'app:' .. app
  n = n + release(app, redis.call('HGET', ak, 'batch'))
  redis.call('HSET', ak, 'batch', '')
  redis.call('ZREM', 'holds', app)
end
return {#due, n}
"#;

/// ARGV: the entered serial, '?' at free positions; ARGV[2]: the 34 alphabet characters.
/// Returns one string of enabled characters per position.
const LUA_KEYBOARD: &str = r#"
local e, abc = ARGV[1], ARGV[2]
local out = {}
for p = 1, 5 do
  local pre, post = string.sub(e, 1, p - 1), string.sub(e, p + 1)
  local fields = {}
  for i = 1, 34 do fields[i] = pre .. string.sub(abc, i, i) .. post end
  local counts = redis.call('HMGET', 'kb', unpack(fields))
  local on = {}
  for i = 1, 34 do
    if counts[i] and tonumber(counts[i]) > 0 then on[#on + 1] = string.sub(abc, i, i) end
  end
  out[p] = table.concat(on)
end
return out
"#;

/// The scripts, loaded once.
#[derive(Debug)]
struct Scripts {
    draw: Script,
    check: Script,
    claim: Script,
    expire: Script,
    keyboard: Script,
}

fn with_common(body: &str) -> Script {
    Script::new(&format!("{LUA_COMMON}{body}"))
}

/// The draw script (for the HTTP twin). ARGV: application, now_ms, ttl_ms, batch size, caller.
pub fn draw_script() -> Script {
    with_common(LUA_DRAW)
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            draw: with_common(LUA_DRAW),
            check: with_common(LUA_CHECK),
            claim: with_common(LUA_CLAIM),
            expire: with_common(LUA_EXPIRE),
            keyboard: Script::new(LUA_KEYBOARD),
        }
    }
}

/// One Redis server holding the office.
#[derive(Debug)]
pub struct RedisBackend {
    label: String,
    conns: Vec<MultiplexedConnection>,
    next_conn: Cell<usize>,
    scripts: Scripts,
    /// (application, its user) of the selecting and the claiming applications.
    select: Vec<(u64, String)>,
    claimers: Vec<(u64, String)>,
    claim_cursor: Cell<usize>,
    expire_cursor: Cell<usize>,
    abc: String,
}

fn err(e: redis::RedisError) -> String {
    e.to_string()
}

/// Keyboard counts of `serials` per subset projection (the `kb` hash).
pub fn keyboard_counts<'a>(serials: impl Iterator<Item = &'a str>) -> HashMap<String, u64> {
    // Packed projection: 6 bits per position, 63 for '?'; turned into text at the end.
    let mut packed: HashMap<u32, u64> = HashMap::new();
    let abc = alphabet();
    for s in serials {
        let idx: Vec<u32> = s
            .chars()
            .map(|c| char_index(c).map_or(62, u32::from))
            .collect();
        for m in 1u32..32 {
            let mut key = 0u32;
            for (p, &i) in idx.iter().enumerate().take(5) {
                let v = if m & (1 << p) != 0 { i } else { 63 };
                key |= v << (6 * p);
            }
            *packed.entry(key).or_default() += 1;
        }
    }
    packed
        .into_iter()
        .map(|(key, n)| {
            let text: String = (0..5)
                .map(|p| match (key >> (6 * p)) & 63 {
                    63 => '?',
                    i => abc.get(i as usize).copied().unwrap_or('!'),
                })
                .collect();
            (text, n)
        })
        .collect()
}

impl RedisBackend {
    /// Connects to `url` and loads the office of `office` (everything there is replaced).
    pub async fn load(
        label: &str,
        url: &str,
        office: &Office,
        codes: &[u32],
    ) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(err)?;
        let config = AsyncConnectionConfig::new()
            .set_response_timeout(Some(Duration::from_secs(120)))
            .set_connection_timeout(Some(Duration::from_secs(5)));
        let mut conns = Vec::with_capacity(REDIS_CONNECTIONS);
        for _ in 0..REDIS_CONNECTIONS {
            conns.push(
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map_err(err)?,
            );
        }
        let con = &mut conns[0];
        redis::cmd("FLUSHALL")
            .query_async::<()>(con)
            .await
            .map_err(err)?;
        let now = SystemClock.now_ms();
        let taken: Vec<String> = office.taken.iter().map(Serial::to_string).collect();
        let held: Vec<String> = office.held.iter().map(Serial::to_string).collect();
        let out: std::collections::HashSet<&str> =
            taken.iter().chain(&held).map(String::as_str).collect();
        let avail: Vec<String> = codes
            .iter()
            .filter_map(|&c| Serial::from_code(c, 5).ok())
            .map(|s| s.to_string())
            .filter(|s| !out.contains(s.as_str()))
            .collect();
        for chunk in avail.chunks(LOAD_CHUNK) {
            redis::cmd("SADD")
                .arg("avail")
                .arg(chunk)
                .query_async::<()>(con)
                .await
                .map_err(err)?;
        }
        let counts: Vec<(String, u64)> = keyboard_counts(avail.iter().map(String::as_str))
            .into_iter()
            .collect();
        for chunk in counts.chunks(LOAD_CHUNK) {
            redis::cmd("HSET")
                .arg("kb")
                .arg(chunk)
                .query_async::<()>(con)
                .await
                .map_err(err)?;
        }
        let mut pipe = redis::pipe();
        for s in &taken {
            pipe.hset("owner", s, "c0").ignore();
        }
        let apps = office.select.iter().chain(&office.claimers);
        for a in apps {
            pipe.hset_multiple(
                format!("app:{}", a.id.seq),
                &[
                    ("random_left", QUOTA.to_string()),
                    ("custom_left", QUOTA.to_string()),
                    ("user", a.user.clone()),
                ],
            )
            .ignore();
        }
        for (k, a) in office.holders.iter().enumerate() {
            let batch: Vec<&str> = held
                .iter()
                .skip(k * DRAW_BATCH)
                .take(DRAW_BATCH)
                .map(String::as_str)
                .collect();
            for s in &batch {
                pipe.hset("owner", *s, format!("h{}", a.id.seq)).ignore();
            }
            pipe.hset_multiple(
                format!("app:{}", a.id.seq),
                &[
                    ("random_left", QUOTA.to_string()),
                    ("custom_left", QUOTA.to_string()),
                    ("batch", batch.join(",")),
                    ("user", a.user.clone()),
                ],
            )
            .ignore();
            pipe.zadd("holds", a.id.seq, now + HOLD_TTL_MS).ignore();
        }
        pipe.query_async::<()>(con).await.map_err(err)?;
        // Rewrite the AOF now, so the load's rewrite does not fork in the middle of a run.
        redis::cmd("BGREWRITEAOF")
            .query_async::<()>(con)
            .await
            .map_err(err)?;
        loop {
            actix_rt::time::sleep(Duration::from_millis(200)).await;
            let info: String = redis::cmd("INFO")
                .arg("persistence")
                .query_async(con)
                .await
                .map_err(err)?;
            let busy = info.lines().any(|l| {
                l.starts_with("aof_rewrite_in_progress:1")
                    || l.starts_with("aof_rewrite_scheduled:1")
            });
            if !busy {
                break;
            }
        }
        let scripts = Scripts::new();
        for s in [
            &scripts.draw,
            &scripts.check,
            &scripts.claim,
            &scripts.expire,
            &scripts.keyboard,
        ] {
            s.load_async(con).await.map_err(err)?;
        }
        Ok(RedisBackend {
            label: label.into(),
            conns,
            next_conn: Cell::new(0),
            scripts,
            select: office
                .select
                .iter()
                .map(|a| (a.id.seq, a.user.clone()))
                .collect(),
            claimers: office
                .claimers
                .iter()
                .map(|a| (a.id.seq, a.user.clone()))
                .collect(),
            claim_cursor: Cell::new(0),
            expire_cursor: Cell::new(0),
            abc: alphabet().into_iter().collect(),
        })
    }

    /// Clears the server's command statistics.
    pub async fn reset_stats(&self) -> Result<(), String> {
        redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(err)
    }

    /// Microseconds the server spent since [`RedisBackend::reset_stats`] in each command
    /// (`INFO commandstats`), largest first: inside scripts, the commands they call are counted
    /// too.
    pub async fn command_usec(&self) -> Result<Vec<(String, u64)>, String> {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut self.conn())
            .await
            .map_err(err)?;
        let mut out: Vec<(String, u64)> = info
            .lines()
            .filter_map(|l| {
                let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
                let usec = rest
                    .split(',')
                    .find_map(|f| f.strip_prefix("usec="))?
                    .parse()
                    .ok()?;
                Some((name.to_string(), usec))
            })
            .collect();
        out.sort_by_key(|(_, u)| std::cmp::Reverse(*u));
        Ok(out)
    }

    fn conn(&self) -> MultiplexedConnection {
        let i = self.next_conn.get();
        self.next_conn.set(i + 1);
        self.conns[i % self.conns.len()].clone()
    }

    /// A draw for `app` by `user`, holds due after `ttl_ms`: (random draws left, serials held).
    pub async fn draw_for(
        &self,
        app: u64,
        user: &str,
        ttl_ms: u64,
    ) -> Result<(u64, Vec<String>), String> {
        let mut out: Vec<String> = self
            .scripts
            .draw
            .arg(app)
            .arg(SystemClock.now_ms())
            .arg(ttl_ms)
            .arg(DRAW_BATCH)
            .arg(user)
            .invoke_async(&mut self.conn())
            .await
            .map_err(err)?;
        if out.is_empty() {
            return Err("empty answer".into());
        }
        let left = out
            .remove(0)
            .parse()
            .map_err(|_| "bad answer".to_string())?;
        Ok((left, out))
    }
}

impl PoolBackend for RedisBackend {
    fn name(&self) -> String {
        self.label.clone()
    }

    async fn draw(&self, app: usize) -> Result<usize, String> {
        let (seq, user) = &self.select[app % self.select.len()];
        Ok(self.draw_for(*seq, user, HOLD_TTL_MS).await?.1.len())
    }

    async fn check(&self, app: usize, plates: Vec<String>) -> Result<CheckOutcome, String> {
        let seq = self.select[app % self.select.len()].0;
        let claimed: String = self
            .scripts
            .check
            .arg(seq)
            .arg(SystemClock.now_ms())
            .arg(plates)
            .invoke_async(&mut self.conn())
            .await
            .map_err(err)?;
        Ok(if claimed.is_empty() {
            CheckOutcome::NoneAvailable
        } else {
            CheckOutcome::Claimed(claimed)
        })
    }

    async fn claim(&self) -> Result<Duration, String> {
        let i = self.claim_cursor.get();
        self.claim_cursor.set(i + 1);
        let Some((seq, user)) = self.claimers.get(i) else {
            return Err("no claimer left".into());
        };
        let seq = *seq;
        let (_, batch) = self.draw_for(seq, user, HOLD_TTL_MS).await?;
        let serial = batch.first().ok_or("empty draw")?.clone();
        let t = Instant::now();
        let _: String = self
            .scripts
            .claim
            .arg(seq)
            .arg(serial)
            .arg(SystemClock.now_ms())
            .invoke_async(&mut self.conn())
            .await
            .map_err(err)?;
        Ok(t.elapsed())
    }

    async fn keyboard(
        &self,
        _app: usize,
        entered: Vec<Option<u8>>,
    ) -> Result<Vec<CharSet>, String> {
        let text: String = entered
            .iter()
            .map(|e| e.map_or('?', platepool_engine::plate::index_char))
            .collect();
        let out: Vec<String> = self
            .scripts
            .keyboard
            .arg(text)
            .arg(&self.abc)
            .invoke_async(&mut self.conn())
            .await
            .map_err(err)?;
        Ok(out
            .iter()
            .map(|chars| {
                let mut set = CharSet::default();
                for c in chars.chars().filter_map(char_index) {
                    set.insert(c);
                }
                set
            })
            .collect())
    }

    async fn expire(&self, apps: usize) -> Result<(u64, Duration), String> {
        // Applications of the selecting set draw batches that are due at once (ttl 0).
        let start = self.expire_cursor.get();
        self.expire_cursor.set(start + apps);
        for k in 0..apps {
            let (seq, user) = &self.select[(start + k) % self.select.len()];
            self.draw_for(*seq, user, 0).await?;
        }
        // The sweep a Redis deployment runs: pop due applications in slices until none is left.
        let t = Instant::now();
        let mut returned = 0u64;
        loop {
            let (due, n): (u64, u64) = self
                .scripts
                .expire
                .arg(SystemClock.now_ms())
                .arg(EXPIRE_SLICE)
                .invoke_async(&mut self.conn())
                .await
                .map_err(err)?;
            returned += n;
            if due == 0 {
                break;
            }
        }
        Ok((returned, t.elapsed()))
    }
}

/// Applications one expiry script call handles (a slice keeps the server responsive).
pub const EXPIRE_SLICE: usize = 100;
