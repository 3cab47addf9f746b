//! The Postgres backend: every namespace natively in SQL over a deadpool-postgres pool.
//!
//! Layout: tables `persist_*` in the configured schema (default `public`), created by versioned
//! idempotent migrations under a transaction-scoped advisory lock, so several processes may
//! start at once. Rows are keyed by a per-name `store_id` (`persist_stores`), so stores with
//! different names share the tables without seeing each other's data.
//!
//! Records keep two copies of the data: `raw` (the JSON text exactly as given, returned to the
//! user so key order is preserved) and `doc` (`jsonb`, which every query and expression index
//! reads). Connections set `search_path` to the schema, so statements name tables unqualified.
//!
//! Faults: a failure to get a connection (server down, restarting, refusing) is retried with
//! backoff for up to [`ACQUIRE_PATIENCE`], since nothing was sent; a read that loses its
//! connection is retried too; a write that loses its connection mid-flight fails with
//! CONNECTION (it may or may not have been applied, so it is not repeated). Broken connections
//! are dropped by the pool's recycle check and replaced on demand.
//!
//! One of the `max` connections is the lane (`lane`): operations made while the store is idle
//! run on it from the calling thread, without a thread hop.

mod blobs;
mod events;
mod kv;
mod lane;
pub mod query_sql;
mod records;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{
    ClientWrapper, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

use crate::backend::{Backend, BlobReader, BlobUpload, SetsNow};
use crate::config::PostgresConfig;
use crate::error::{ErrorCode, PersistError, Result};
use crate::model::*;
use crate::query::{FieldPath, Filter, SortKey};
use lane::LaneRun;

/// How long one connection attempt may take before it fails with TIMEOUT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an operation keeps trying to get a connection while the server is unreachable
/// (a restart takes a few seconds) before it fails with CONNECTION.
const ACQUIRE_PATIENCE: Duration = Duration::from_secs(15);
/// How often a read that lost its connection is tried again.
pub(crate) const READ_RETRIES: u32 = 3;
/// The NOTIFY channel of event appends (payload: `<schema>/<store_id>/<stream>`).
const CHANNEL: &str = "persist_events";

/// The migrations, in order. Never edit one that has shipped: append a new version.
const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    r#"
CREATE TABLE IF NOT EXISTS persist_stores (id SERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS persist_kv (
  store_id INTEGER NOT NULL, key TEXT COLLATE "C" NOT NULL, value TEXT NOT NULL,
  version TEXT NOT NULL, expires_at BIGINT, PRIMARY KEY (store_id, key));
CREATE TABLE IF NOT EXISTS persist_records (
  store_id INTEGER NOT NULL, coll TEXT COLLATE "C" NOT NULL, id TEXT COLLATE "C" NOT NULL,
  doc JSONB NOT NULL, raw TEXT NOT NULL, version BIGINT NOT NULL,
  created_at TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (store_id, coll, id));
CREATE TABLE IF NOT EXISTS persist_blobs (
  store_id INTEGER NOT NULL, key TEXT COLLATE "C" NOT NULL, body_id BIGINT NOT NULL,
  size BIGINT NOT NULL, content_type TEXT NOT NULL, etag TEXT NOT NULL, metadata TEXT NOT NULL,
  updated_at TEXT NOT NULL, PRIMARY KEY (store_id, key));
CREATE TABLE IF NOT EXISTS persist_blob_bodies (
  id BIGSERIAL PRIMARY KEY, committed BOOLEAN NOT NULL DEFAULT FALSE, started_at BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS persist_blob_chunks (
  body_id BIGINT NOT NULL, idx INTEGER NOT NULL, data BYTEA NOT NULL, PRIMARY KEY (body_id, idx));
CREATE TABLE IF NOT EXISTS persist_event_streams (
  store_id INTEGER NOT NULL, stream TEXT COLLATE "C" NOT NULL, last_seq BIGINT NOT NULL,
  PRIMARY KEY (store_id, stream));
CREATE TABLE IF NOT EXISTS persist_events (
  store_id INTEGER NOT NULL, stream TEXT COLLATE "C" NOT NULL, seq BIGINT NOT NULL,
  type TEXT NOT NULL, data TEXT NOT NULL, time TEXT NOT NULL, id TEXT NOT NULL,
  PRIMARY KEY (store_id, stream, seq));
"#,
    // 2: record times as epoch milliseconds (8 bytes each, where the ISO text took 25): a row
    // of the bench's records shrinks from 284 to 250 bytes, which a scan of a collection reads
    // for every row (the unindexed query on vacuumed copies of 100,000 records: 26.4 ms
    // against 29.4; on the live table within noise). Reads format the text again; the
    // milliseconds are exactly what the text said.
    r#"
ALTER TABLE persist_records
  ALTER COLUMN created_at TYPE BIGINT
    USING (extract(epoch FROM created_at::timestamptz) * 1000)::bigint,
  ALTER COLUMN updated_at TYPE BIGINT
    USING (extract(epoch FROM updated_at::timestamptz) * 1000)::bigint;
ALTER TABLE persist_records RENAME COLUMN created_at TO created_ms;
ALTER TABLE persist_records RENAME COLUMN updated_at TO updated_ms;
"#,
    // 3: strings holding U+0000 or U+0001 in the `jsonb` copy of a document in the encoding of
    // `query_sql::stored_string` (U+0000 was U+FFFD, which queries could not tell from a real
    // U+FFFD): done in Rust by `reencode_docs`, after this (empty) step.
    "",
];
/// The version of `MIGRATIONS` after which `reencode_docs` runs.
const REENCODE_DOCS: i32 = 3;

/// Rewrites the `jsonb` copy of every document whose JSON text has a `\u0000` or `\u0001`
/// escape (found by the text `\u000`, which also finds other escapes that need nothing) from
/// its text, with `records::doc_text`.
async fn reencode_docs(client: &Object) -> Result<()> {
    let rows = client
        .query(
            "SELECT store_id, coll, id, raw FROM persist_records WHERE strpos(raw, E'\\\\u000') > 0",
            &[],
        )
        .await
        .map_err(pg_err)?;
    let update = client
        .prepare(
            "UPDATE persist_records SET doc = $4::text::jsonb WHERE store_id = $1 AND coll = $2 AND id = $3",
        )
        .await
        .map_err(pg_err)?;
    for row in &rows {
        let raw: &str = row.get(3);
        if let Some(doc) = records::doc_text(raw) {
            let (store, coll, id): (i32, &str, &str) = (row.get(0), row.get(1), row.get(2));
            client
                .execute(&update, &[&store, &coll, &id, &doc])
                .await
                .map_err(pg_err)?;
        }
    }
    Ok(())
}

/// First key of every advisory lock this backend takes ("pers").
const LOCK_CLASS: i32 = 0x7065_7273;

/// Maps a driver error to a PersistError. Never includes the password: the driver's messages
/// name the user and host at most, and [`Redactor`] scrubs the password anyway.
pub(crate) fn pg_err(err: tokio_postgres::Error) -> PersistError {
    if let Some(db) = err.as_db_error() {
        let code = db.code();
        // The class is the first two characters of the five; a server that sends fewer
        // (or non-ASCII) gets no class rather than a panic.
        let class = code.code().get(..2).unwrap_or("");
        let kind = if class == "08"
            || class == "28"
            || class == "57"
            || *code == SqlState::TOO_MANY_CONNECTIONS
        {
            ErrorCode::Connection
        } else if *code == SqlState::UNIQUE_VIOLATION {
            ErrorCode::Conflict
        } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
            ErrorCode::Permission
        } else if *code == SqlState::QUERY_CANCELED || *code == SqlState::LOCK_NOT_AVAILABLE {
            ErrorCode::Timeout
        } else if *code == SqlState::PROGRAM_LIMIT_EXCEEDED {
            // A value past one of the server's size limits: nothing was written.
            ErrorCode::InvalidValue
        } else {
            ErrorCode::Internal
        };
        // The server's hint for this one names remedies our API does not offer.
        let why = if db.message().starts_with("index row") {
            "; the value of a field with ensureIndex must fit in a Postgres index entry (about 2,700 bytes after compression)"
        } else {
            ""
        };
        return PersistError::new(
            kind,
            format!("postgres: {}: {}{why}", db.severity(), db.message()),
        );
    }
    // Not a server message: I/O, a closed connection, a timeout, a protocol problem.
    let text = err.to_string();
    let timed_out = text.contains("timeout") || text.contains("timed out");
    let code = if timed_out {
        ErrorCode::Timeout
    } else {
        ErrorCode::Connection
    };
    let detail = std::error::Error::source(&err)
        .map(|s| format!(": {s}"))
        .unwrap_or_default();
    PersistError::new(code, format!("postgres: {text}{detail}"))
}

fn pool_err(err: PoolError) -> PersistError {
    match err {
        PoolError::Backend(e) => pg_err(e),
        PoolError::Timeout(_) => PersistError::new(
            ErrorCode::Timeout,
            format!(
                "postgres: no connection within {} s (server unreachable or too slow)",
                CONNECT_TIMEOUT.as_secs()
            ),
        ),
        PoolError::Closed => PersistError::closed(),
        other => PersistError::new(ErrorCode::Connection, format!("postgres: {other}")),
    }
}

/// Removes a secret from messages (belt and braces: the driver does not echo it).
#[derive(Clone)]
struct Redactor(Option<String>);

impl Redactor {
    fn scrub(&self, mut err: PersistError) -> PersistError {
        if let Some(secret) = self.0.as_deref().filter(|s| s.len() >= 3) {
            if err.message.contains(secret) {
                err.message = err.message.replace(secret, "***");
            }
        }
        err
    }
}

/// Whether a failure means "the connection or server went away" (worth another try when safe).
pub(crate) fn is_connection(err: &PersistError) -> bool {
    matches!(err.code, ErrorCode::Connection | ErrorCode::Timeout)
}

/// Converts the parsed config into a driver config. TLS is not built in: `ssl: "require"` (or
/// `true`, or `sslmode=require` in a URL) is INVALID_CONFIG; `"prefer"` connects in plain text.
fn driver_config(cfg: &PostgresConfig) -> Result<tokio_postgres::Config> {
    const SCOPE: &str = "postgres adapter";
    let mut pg = match &cfg.url {
        Some(url) => url.parse::<tokio_postgres::Config>().map_err(|_| {
            PersistError::invalid_config(format!(
                "{SCOPE}: \"connection\" is not a valid connection string (postgres://user:password@host:port/database or key=value pairs)"
            ))
        })?,
        None => {
            let mut pg = tokio_postgres::Config::new();
            pg.host(cfg.host.as_deref().unwrap_or("localhost"));
            pg.port(cfg.port.unwrap_or(5432));
            if let Some(db) = &cfg.database {
                pg.dbname(db);
            }
            if let Some(pw) = &cfg.password {
                pg.password(pw.as_bytes());
            }
            pg.user(
                cfg.user
                    .clone()
                    .or_else(|| std::env::var("USER").ok())
                    .unwrap_or_else(|| "postgres".into())
                    .as_str(),
            );
            pg
        }
    };
    let require = cfg.ssl.as_deref() == Some("require")
        || pg.get_ssl_mode() == tokio_postgres::config::SslMode::Require;
    if require {
        return Err(PersistError::invalid_config(format!(
            "{SCOPE}: \"connection.ssl\": TLS is not built into this build of @cuitty/persist; use ssl: false or \"prefer\" (plain connection), or a TLS-terminating proxy"
        )));
    }
    pg.ssl_mode(tokio_postgres::config::SslMode::Disable);
    if pg.get_user().is_none() {
        pg.user(
            std::env::var("USER")
                .unwrap_or_else(|_| "postgres".into())
                .as_str(),
        );
    }
    if pg.get_hosts().is_empty() {
        pg.host("localhost");
    }
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(CONNECT_TIMEOUT);
    }
    if pg.get_application_name().is_none() {
        pg.application_name(format!("cuitty-persist/{}", cfg.schema));
    }
    let options = pg.get_options().unwrap_or("").to_string();
    pg.options(format!("{options} -c search_path=\"{}\"", cfg.schema).trim());
    Ok(pg)
}

pub(crate) struct Inner {
    pool: Pool,
    /// The caller's-thread connection (see `lane`), when the config has one host to reach.
    lane: Option<Arc<lane::Lane>>,
    /// The runtime the store was opened on: connections the pool opens while an operation
    /// runs on the lane get their tasks here, not on the lane's runtime.
    runtime: tokio::runtime::Handle,
    /// Reads that ran past the lane's budget and go on on its helper thread, by what they
    /// read. The binding then asks again through the async path at once, and that call joins
    /// the running read instead of sending the same query a second time (a slow query would
    /// otherwise run twice). A full kv list page parks the query of the next page too (see
    /// `read_ahead`).
    parked: Mutex<Vec<Parked>>,
    /// Counts the writes this store finished (see `write!`). A parked read is only joined while
    /// the count is what it was when the read started: a caller must see every write that was
    /// acknowledged before it asked.
    writes_done: AtomicU64,
    /// Reads (by key) that ran past the lane's budget, with how many of their next asks go
    /// straight to the pool ([`SLOW_SKIPS`]; then the lane is tried again). Such a read held the
    /// JS thread for the whole budget and then paid the helper thread and two more hand-offs:
    /// the bench's unindexed query (28.7 ms on the server) took 29.4 ms a call through the lane
    /// against `pg`'s 27.8. Counted in asks, not time, so that one slow run of a quick read (a
    /// hiccup of the VM) costs it a few calls through the pool, not seconds of them.
    slow: Mutex<SlowReads>,
    store_id: i32,
    schema: String,
    pg_config: tokio_postgres::Config,
    redact: Redactor,
    closed: AtomicBool,
    /// Bumped on every append this process made and every notification for this store.
    changed: tokio::sync::watch::Sender<u64>,
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Whether the LISTEN connection is up (waiters poll faster while it is not).
    listening: Mutex<bool>,
    stats: RecordStats,
    indexed: Mutex<IndexedFields>,
}

/// Which fields have our expression indexes (by [`records::index_hash`]), as the catalog said
/// at `read_at`. Any process of any store may create them, so the set is read again when it
/// is older than [`INDEXED_FIELDS_TTL`]; a stale set only means a query in the other form
/// (same results, another plan).
struct IndexedFields {
    hashes: Arc<FieldIndexes>,
    read_at: Option<std::time::Instant>,
}

/// The fields (by [`records::index_hash`]) with our value index, and with our numeric one.
#[derive(Debug, Clone, Default)]
pub(crate) struct FieldIndexes {
    pub value: HashSet<u64>,
    pub numeric: HashSet<u64>,
}

const INDEXED_FIELDS_TTL: Duration = Duration::from_secs(2);

/// A mutex's guard, also after a panic elsewhere poisoned it (what it guards stays usable).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A connection for one operation: pooled, or the lane's (see `lane`).
pub(crate) enum Conn {
    Pooled(Object),
    Lane(LaneClient),
}

impl std::ops::Deref for Conn {
    type Target = ClientWrapper;
    fn deref(&self) -> &ClientWrapper {
        match self {
            Conn::Pooled(c) => c,
            Conn::Lane(c) => c.client.as_ref().expect("lane client"),
        }
    }
}

/// The lane's client, lent to one operation; given back when dropped, unless it is closed
/// (the lane then reconnects, and the operation's retries take the pool).
pub(crate) struct LaneClient {
    client: Option<ClientWrapper>,
    slot: Arc<Mutex<Option<ClientWrapper>>>,
}

impl Drop for LaneClient {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            if !client.is_closed() {
                *lock(&self.slot) = Some(client);
            }
        }
    }
}

/// What a parked read gives (one variant per kind of read).
pub(crate) enum LaneAnswer {
    Kv(Vec<Option<KvEntry>>),
    KvPage(Vec<KvEntry>),
    Doc(Option<Doc>),
    Docs(Vec<Doc>),
}

/// A kind of read that can be parked: its answer in and out of [`LaneAnswer`].
trait Answer: Sized + Send + 'static {
    fn wrap(self) -> LaneAnswer;
    fn unwrap(answer: LaneAnswer) -> Option<Self>;
}

macro_rules! answer {
    ($t:ty, $variant:ident) => {
        impl Answer for $t {
            fn wrap(self) -> LaneAnswer {
                LaneAnswer::$variant(self)
            }
            fn unwrap(answer: LaneAnswer) -> Option<Self> {
                match answer {
                    LaneAnswer::$variant(v) => Some(v),
                    _ => None,
                }
            }
        }
    };
}
answer!(Vec<Option<KvEntry>>, Kv);
answer!(Vec<KvEntry>, KvPage);
answer!(Option<Doc>, Doc);
answer!(Vec<Doc>, Docs);

type ParkedRead = tokio::sync::oneshot::Receiver<Result<LaneAnswer>>;

/// A read parked for a later ask (see `Inner::parked`).
struct Parked {
    /// What it reads (`kv_key`, `list_key`, ...).
    key: String,
    at: std::time::Instant,
    /// `Inner::writes_done` before the read was sent.
    writes_done: u64,
    /// A list page read before anyone asked for it (`read_ahead`), not a read that ran past
    /// the lane's budget.
    ahead: bool,
    read: ParkedRead,
}

/// The size of a kv list page read ahead, at least: index.js's `KV_PAGE`, the size it asks for
/// after a first page of 256 (a page read ahead with the first page's size never matched).
const READ_AHEAD_PAGE: usize = 1000;

/// Most reads kept for a later ask, and for how long (older ones are let go: their answer is
/// dropped).
const MAX_PARKED: usize = 16;
const PARKED_FOR: Duration = Duration::from_secs(5);

/// How many asks of a read that ran past the lane's budget skip the lane, and how many such
/// reads are remembered.
const SLOW_SKIPS: u32 = 8;
const MAX_SLOW: usize = 32;

/// The reads (by key) that ran past the lane's budget, each with the asks it still skips the
/// lane for (see `Inner::slow`).
#[derive(Debug, Default)]
struct SlowReads(Vec<(String, u32)>);

impl SlowReads {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether this ask of `key` skips the lane (counting it).
    fn skip(&mut self, key: &str) -> bool {
        let Some(at) = self.0.iter().position(|(k, _)| k == key) else {
            return false;
        };
        self.0[at].1 -= 1;
        if self.0[at].1 == 0 {
            self.0.remove(at);
        }
        true
    }

    /// `key` ran past the budget: its next [`SLOW_SKIPS`] asks skip the lane.
    fn note(&mut self, key: String) {
        self.0.retain(|(k, _)| *k != key);
        if self.0.len() >= MAX_SLOW {
            self.0.remove(0);
        }
        self.0.push((key, SLOW_SKIPS));
    }
}

/// Keeps the planner's statistics of `persist_records` fresh after bulk writes. Until a table
/// is first analyzed the planner takes it for nearly empty, and autovacuum analyzes it only
/// on its next round (a minute apart by default): a query right after loading 100,000 records
/// was planned as a scan of the whole collection through the primary key and a sort (17
/// queries/s) instead of a parallel scan (26/s), and an indexed query with a limit as a sort
/// of every match instead of an ordered index scan. So once this process has written as many
/// records as `ANALYZE_SHARE` of the table (at least `ANALYZE_MIN_WRITES`) since the last
/// analyze, it runs one `VACUUM (ANALYZE) persist_records` in the background: one at a time,
/// nothing waits for it, and a failure (say, another role owns the table) only means no
/// fresher statistics than autovacuum's. The VACUUM is what autovacuum's insert threshold
/// (the same fifth of the table) would run a minute later: it marks the new pages all-visible,
/// so a scan stops checking each row's visibility (the unindexed query on 100,000 records:
/// 27.3 ms against 28.9), and it only reads pages written since the last one.
struct RecordStats {
    written: AtomicU64,
    threshold: AtomicU64,
    running: AtomicBool,
}

const ANALYZE_MIN_WRITES: u64 = 1_000;
const ANALYZE_SHARE: f64 = 0.2;

impl RecordStats {
    fn new() -> Self {
        RecordStats {
            written: AtomicU64::new(0),
            threshold: AtomicU64::new(ANALYZE_MIN_WRITES),
            running: AtomicBool::new(false),
        }
    }
}

pub struct PostgresBackend {
    inner: Arc<Inner>,
}

impl Inner {
    /// A connection: the lane's while an operation runs on the lane (see `lane`), else a
    /// pooled one. Failures to connect are retried for [`ACQUIRE_PATIENCE`] (nothing was sent,
    /// so this is safe for every operation), except authentication and config problems, which
    /// fail at once.
    pub(crate) async fn client(&self) -> Result<Conn> {
        if let Ok(slot) = lane::LANE_CLIENT.try_with(Arc::clone) {
            let taken = lock(&slot).take();
            if let Some(client) = taken {
                return Ok(Conn::Lane(LaneClient {
                    client: Some(client),
                    slot,
                }));
            }
        }
        let deadline = tokio::time::Instant::now() + ACQUIRE_PATIENCE;
        let mut backoff = Duration::from_millis(50);
        loop {
            if self.closed.load(Ordering::SeqCst) {
                return Err(PersistError::closed());
            }
            match self.pool_get().await {
                Ok(c) => return Ok(Conn::Pooled(c)),
                Err(e) => {
                    let auth = matches!(&e, PoolError::Backend(b) if b.as_db_error().is_some_and(|d| d.code().code().starts_with("28") || *d.code() == SqlState::INVALID_CATALOG_NAME));
                    let err = self.redact.scrub(pool_err(e));
                    if auth
                        || !is_connection(&err)
                        || tokio::time::Instant::now() + backoff > deadline
                    {
                        return Err(err);
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(1000));
                }
            }
        }
    }

    /// `pool.get()`, run on the store's runtime when called on the lane (a connection the pool
    /// opens spawns its task on the runtime it is opened from).
    async fn pool_get(&self) -> std::result::Result<Object, PoolError> {
        if lane::LANE_CLIENT.try_with(|_| ()).is_err() {
            return self.pool.get().await;
        }
        let pool = self.pool.clone();
        match self.runtime.spawn(async move { pool.get().await }).await {
            Ok(got) => got,
            Err(_) => Err(PoolError::Closed),
        }
    }

    /// Runs a read on the lane (see `lane`): its answer, or None when the lane cannot take it
    /// or the read ran past the budget (then it is parked under `key` for the async call the
    /// binding makes next). `read` is only made once the lane has taken the call.
    fn lane_read<T: Answer, Fut>(
        self: &Arc<Self>,
        key: impl Fn() -> String,
        read: impl FnOnce(Arc<Inner>) -> Fut,
    ) -> Option<Result<T>>
    where
        Fut: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        // The key is only made when some read is known slow (or this one is parked).
        let known_key = {
            let mut slow = lock(&self.slow);
            if slow.is_empty() {
                None
            } else {
                let k = key();
                if slow.skip(&k) {
                    return None;
                }
                Some(k)
            }
        };
        let ticket = self.lane_ticket()?;
        let writes_done = self.writes_done.load(Ordering::Acquire);
        let read = read(Arc::clone(self));
        match ticket.run(async move { read.await.map(T::wrap) }) {
            LaneRun::Done(answer) => answer.map(T::unwrap).transpose(),
            LaneRun::Pending(rx) => {
                let key = known_key.unwrap_or_else(key);
                lock(&self.slow).note(key.clone());
                self.park(key, writes_done, false, rx);
                None
            }
        }
    }

    fn park(&self, key: String, writes_done: u64, ahead: bool, read: ParkedRead) {
        let mut parked = lock(&self.parked);
        // A newer read of the same thing replaces an older one.
        parked.retain(|p| p.at.elapsed() < PARKED_FOR && p.key != key);
        if parked.len() >= MAX_PARKED {
            parked.remove(0);
        }
        parked.push(Parked {
            key,
            at: std::time::Instant::now(),
            writes_done,
            ahead,
            read,
        });
    }

    /// Starts the list page after `after` and parks it (see `parked`).
    fn read_ahead(self: &Arc<Self>, range: KvRange, after: String, limit: usize) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let writes_done = self.writes_done.load(Ordering::Acquire);
        self.park(list_key(&range, Some(&after), limit), writes_done, true, rx);
        let inner = Arc::clone(self);
        self.runtime.spawn(async move {
            let page = kv::list_page(&inner, range, Some(after), limit).await;
            let _ = tx.send(page.map(Answer::wrap));
        });
    }

    /// The answer of the parked read under this key, if there is one, no write of this store
    /// finished since it started, and it succeeded (see `parked`); otherwise the caller reads
    /// for itself.
    async fn joined<T: Answer>(&self, key: impl FnOnce() -> String) -> Option<T> {
        let rx = {
            let mut parked = lock(&self.parked);
            if parked.is_empty() {
                return None;
            }
            let key = key();
            let at = parked.iter().position(|p| p.key == key)?;
            let found = parked.remove(at);
            if found.writes_done != self.writes_done.load(Ordering::Acquire) {
                return None;
            }
            found.read
        };
        rx.await.ok()?.ok().and_then(T::unwrap)
    }

    /// Lets go of the pages read ahead for `range`: a list that starts anew (no `after`) must
    /// not be answered from a page read for an earlier listing, whatever other clients wrote
    /// since. Its own pages are read ahead again as it goes.
    fn drop_read_ahead(&self, range: &KvRange) {
        let mut parked = lock(&self.parked);
        if parked.is_empty() {
            return;
        }
        let of_range = list_range_key(range);
        parked.retain(|p| !(p.ahead && p.key.starts_with(&of_range)));
    }

    /// Counts a finished write (see `writes_done`).
    pub(crate) fn write_done(&self) {
        self.writes_done.fetch_add(1, Ordering::AcqRel);
    }

    /// The lane, when it may take an operation now: no pooled connection in use or awaited,
    /// so the operation cannot overtake one made before it.
    fn lane_ticket(&self) -> Option<lane::LaneTicket> {
        let lane = self.lane.as_ref()?;
        let status = self.pool.status();
        if status.available != status.size || status.waiting != 0 {
            return None;
        }
        lane.ticket(CONNECT_TIMEOUT)
    }

    pub(crate) fn scrub(&self, err: PersistError) -> PersistError {
        self.redact.scrub(err)
    }

    pub(crate) fn store_id(&self) -> i32 {
        self.store_id
    }

    /// Runs `ANALYZE persist_records` (`VACUUM (ANALYZE)` with `vacuum`, see [`RecordStats`])
    /// and sets the next threshold from the table's size.
    pub(crate) async fn analyze_records(&self, vacuum: bool) -> Result<()> {
        let c = self.client().await?;
        c.batch_execute(if vacuum {
            "VACUUM (ANALYZE) persist_records"
        } else {
            "ANALYZE persist_records"
        })
        .await
        .map_err(pg_err)?;
        let rows: f32 = c
            .query_one(
                "SELECT reltuples FROM pg_class WHERE oid = 'persist_records'::regclass",
                &[],
            )
            .await
            .map_err(pg_err)?
            .get(0);
        let next = (f64::from(rows.max(0.0)) * ANALYZE_SHARE) as u64;
        self.stats
            .threshold
            .store(next.max(ANALYZE_MIN_WRITES), Ordering::Relaxed);
        Ok(())
    }

    /// The fields with expression indexes (see [`IndexedFields`]).
    pub(crate) async fn indexed_fields(&self) -> Arc<FieldIndexes> {
        {
            let known = lock(&self.indexed);
            if known
                .read_at
                .is_some_and(|t| t.elapsed() < INDEXED_FIELDS_TTL)
            {
                return Arc::clone(&known.hashes);
            }
        }
        match self.read_indexed_fields().await {
            Ok(hashes) => {
                let hashes = Arc::new(hashes);
                let mut known = lock(&self.indexed);
                known.hashes = Arc::clone(&hashes);
                known.read_at = Some(std::time::Instant::now());
                hashes
            }
            // The query that follows meets the same trouble and reports it.
            Err(_) => Arc::clone(&lock(&self.indexed).hashes),
        }
    }

    async fn read_indexed_fields(&self) -> Result<FieldIndexes> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(
                "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                 WHERE i.indrelid = 'persist_records'::regclass",
            )
            .await
            .map_err(pg_err)?;
        let rows = c.query(&stmt, &[]).await.map_err(pg_err)?;
        let mut found = FieldIndexes::default();
        for row in &rows {
            let name: &str = row.get(0);
            if let Some(hash) = records::value_index_hash(name) {
                found.value.insert(hash);
            } else if let Some(hash) = records::numeric_index_hash(name) {
                found.numeric.insert(hash);
            }
        }
        Ok(found)
    }

    /// An index this process just made counts at once, without waiting for the next read.
    pub(crate) fn note_indexed(&self, hash: u64) {
        let mut known = lock(&self.indexed);
        let mut hashes = (*known.hashes).clone();
        hashes.value.insert(hash);
        hashes.numeric.insert(hash);
        known.hashes = Arc::new(hashes);
    }

    /// Drops every cached prepared statement of this store's connections, so the next
    /// queries are prepared anew. Postgres keeps, per prepared statement, the estimated cost
    /// of its custom plans and of its one generic plan, and re-plans with those after an
    /// index appears: a statement first run without the index kept choosing custom plans
    /// (a bitmap scan and a sort, 7-18 ms on 20,000 records) where a fresh one soon runs the
    /// generic plan (an ordered index scan, 0.4 ms).
    pub(crate) fn forget_statements(&self) {
        self.pool.manager().statement_caches.clear();
        if let Some(lane) = &self.lane {
            lane.clear_statements();
        }
    }

    pub(crate) fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Runs a read, retrying it on a fresh connection when the connection was lost.
macro_rules! read {
    ($inner:expr, $c:ident => $body:expr) => {{
        let inner: &$crate::postgres::Inner = &$inner;
        let mut attempt = 0u32;
        loop {
            let $c = inner.client().await?;
            let res: $crate::error::Result<_> = async { $body }.await;
            match res {
                Ok(v) => break Ok(v),
                Err(e) => {
                    let e = inner.scrub(e);
                    if $crate::postgres::is_connection(&e)
                        && attempt < $crate::postgres::READ_RETRIES
                    {
                        attempt += 1;
                        drop($c);
                        tokio::time::sleep(std::time::Duration::from_millis(
                            100 * u64::from(attempt),
                        ))
                        .await;
                        continue;
                    }
                    break Err(e);
                }
            }
        }
    }};
}

/// Runs a write once on a pooled connection (a lost connection is not retried: the write may
/// have been applied).
macro_rules! write {
    ($inner:expr, $c:ident => $body:expr) => {{
        let inner: &$crate::postgres::Inner = &$inner;
        let $c = inner.client().await?;
        let res: $crate::error::Result<_> = async { $body }.await;
        // Failed or not (a failure may still have been applied), parked reads are now stale.
        inner.write_done();
        res.map_err(|e| inner.scrub(e))
    }};
}

pub(crate) use {read, write};

impl PostgresBackend {
    /// Connects, migrates the schema and finds (or creates) this store's row.
    pub async fn open(name: &str, cfg: PostgresConfig) -> Result<Self> {
        let pg_config = driver_config(&cfg)?;
        let redact = Redactor(cfg.password.clone().or_else(|| {
            pg_config
                .get_password()
                .map(|p| String::from_utf8_lossy(p).into_owned())
        }));
        let manager = Manager::from_config(
            pg_config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        // The lane is one of the `max` connections; with `max: 1` there is no lane.
        let lane = if cfg.pool_max >= 2 {
            lane::Lane::new(&pg_config)
        } else {
            None
        };
        let pool_size = cfg.pool_max.max(1) - usize::from(lane.is_some());
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            // The connection used last is handed out first: its prepared statements and their
            // plans are warm (Postgres plans a statement anew on each connection), and an
            // idle store keeps using one connection instead of rotating through all of them.
            .queue_mode(deadpool_postgres::QueueMode::Lifo)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(CONNECT_TIMEOUT + Duration::from_secs(1)))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| PersistError::internal(format!("postgres: cannot build the pool: {e}")))?;
        let client = pool.get().await.map_err(|e| redact.scrub(pool_err(e)))?;
        let store_id = migrate(&client, &cfg.schema, name)
            .await
            .map_err(|e| redact.scrub(e))?;
        drop(client);
        if let Some(lane) = &lane {
            // Off the event loop, like the rest of open; a failure only means the pool alone
            // until the lane reconnects on use.
            let lane = Arc::clone(lane);
            let _ =
                tokio::task::spawn_blocking(move || lane.connect_blocking(CONNECT_TIMEOUT)).await;
        }
        let (changed, _) = tokio::sync::watch::channel(0u64);
        Ok(PostgresBackend {
            inner: Arc::new(Inner {
                pool,
                lane,
                runtime: tokio::runtime::Handle::current(),
                parked: Mutex::new(Vec::new()),
                writes_done: AtomicU64::new(0),
                slow: Mutex::new(SlowReads::default()),
                store_id,
                schema: cfg.schema,
                pg_config,
                redact,
                closed: AtomicBool::new(false),
                changed,
                listener: Mutex::new(None),
                listening: Mutex::new(false),
                stats: RecordStats::new(),
                indexed: Mutex::new(IndexedFields {
                    hashes: Arc::new(FieldIndexes::default()),
                    read_at: None,
                }),
            }),
        })
    }

    /// Counts a record write; past the threshold, starts the background `VACUUM (ANALYZE)` (see
    /// [`RecordStats`]).
    fn record_written(&self) {
        let stats = &self.inner.stats;
        let written = stats.written.fetch_add(1, Ordering::Relaxed) + 1;
        if written < stats.threshold.load(Ordering::Relaxed)
            || stats.running.swap(true, Ordering::AcqRel)
        {
            return;
        }
        stats.written.store(0, Ordering::Relaxed);
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move {
            let _ = inner.analyze_records(true).await;
            inner.stats.running.store(false, Ordering::Release);
        });
    }

    /// Starts the LISTEN connection once (on the first wait).
    fn ensure_listener(&self) {
        let mut guard = lock(&self.inner.listener);
        if guard.is_none() && !self.inner.closed.load(Ordering::SeqCst) {
            let weak = Arc::downgrade(&self.inner);
            *guard = Some(tokio::spawn(events::listen_loop(weak)));
        }
    }
}

/// Most sets or keys one lane call takes (as many as the binding batches per tick at most),
/// and most bytes of keys and values.
const LANE_MAX_OPS: usize = 256;
const LANE_MAX_BYTES: usize = 1 << 20;

// What each read reads, as the key of a parked read (see `Inner::parked`).
fn kv_key(keys: &[String]) -> String {
    format!("kv\0{keys:?}")
}
fn list_key(range: &KvRange, after: Option<&str>, limit: usize) -> String {
    format!("{}{after:?}\0{limit}", list_range_key(range))
}
/// The start of the `list_key` of every page of `range`.
fn list_range_key(range: &KvRange) -> String {
    format!("list\0{range:?}\0")
}
fn doc_key(coll: &str, id: &str) -> String {
    format!("doc\0{coll:?}\0{id:?}")
}
fn find_key(
    coll: &str,
    filter: Option<&Filter>,
    order: &[SortKey],
    after: Option<&FindCursor>,
    limit: usize,
) -> String {
    format!("find\0{coll:?}\0{filter:?}\0{order:?}\0{after:?}\0{limit}")
}

/// The sets of one tick (see `Backend::kv_set_each`).
async fn set_each(inner: &Inner, sets: Vec<KvSet>) -> Vec<Result<KvEntry>> {
    // The plain sets of keys without a condition in the batch go in one statement (which
    // applies repeats of a key in order). A key with a condition keeps all its sets in the
    // order they were made: they run one after another, beside the rest.
    let conditional: HashSet<String> = sets
        .iter()
        .filter(|s| s.if_version != IfVersion::Any)
        .map(|s| s.key.clone())
        .collect();
    let mut plain: Vec<(usize, KvSet)> = Vec::new();
    let mut chains: HashMap<String, Vec<(usize, KvSet)>> = HashMap::new();
    for (i, set) in sets.into_iter().enumerate() {
        if conditional.contains(&set.key) {
            chains.entry(set.key.clone()).or_default().push((i, set));
        } else {
            plain.push((i, set));
        }
    }
    let grouped = async {
        let (at, sets): (Vec<usize>, Vec<KvSet>) = plain.into_iter().unzip();
        let results: Vec<Result<KvEntry>> = match sets.len() {
            0 => Vec::new(),
            1 => vec![kv::set(inner, sets.into_iter().next().expect("one set")).await],
            _ => match kv::set_all(inner, sets).await {
                Ok(entries) => entries.into_iter().map(Ok).collect(),
                Err(e) => at.iter().map(|_| Err(e.clone())).collect(),
            },
        };
        at.into_iter().zip(results).collect::<Vec<_>>()
    };
    beside_chains(grouped, chains.into_values(), |set| kv::set(inner, set)).await
}

/// The results of a batch, one per operation by position: `grouped` runs some of them together
/// (yielding each result with its position), beside chains of the others, each chain run one
/// after another in order (the operations on one key), the chains side by side.
pub(crate) async fn beside_chains<T, R, Fut>(
    grouped: impl std::future::Future<Output = Vec<(usize, R)>>,
    chains: impl IntoIterator<Item = Vec<(usize, T)>>,
    run: impl Fn(T) -> Fut,
) -> Vec<R>
where
    Fut: std::future::Future<Output = R>,
{
    let run = &run;
    let ordered = futures::future::join_all(chains.into_iter().map(|chain| async move {
        let mut out = Vec::with_capacity(chain.len());
        for (i, item) in chain {
            out.push((i, run(item).await));
        }
        out
    }));
    let (mut out, ordered) = futures::future::join(grouped, ordered).await;
    out.extend(ordered.into_iter().flatten());
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

/// Applies the missing migrations under an advisory lock and returns the store's id.
async fn migrate(client: &Object, schema: &str, name: &str) -> Result<i32> {
    let lock_key = {
        // A stable 32-bit hash of the schema name (FNV-1a).
        let h = schema.bytes().fold(0x811c_9dc5u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
        h as i32
    };
    let mut attempts = 0;
    loop {
        attempts += 1;
        let res = migrate_once(client, schema, name, lock_key).await;
        match res {
            // A concurrent CREATE SCHEMA from a process not holding our lock (older version).
            Err(e) if e.code == ErrorCode::Conflict && attempts < 3 => continue,
            other => return other,
        }
    }
}

async fn migrate_once(client: &Object, schema: &str, name: &str, lock_key: i32) -> Result<i32> {
    client.batch_execute("BEGIN").await.map_err(pg_err)?;
    let res: Result<i32> = async {
        client
            .execute("SELECT pg_advisory_xact_lock($1, $2)", &[&LOCK_CLASS, &lock_key])
            .await
            .map_err(pg_err)?;
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
                 CREATE TABLE IF NOT EXISTS \"{schema}\".persist_migrations (
                   version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now());"
            ))
            .await
            .map_err(pg_err)?;
        let row = client
            .query_one(
                &format!("SELECT COALESCE(MAX(version), 0) FROM \"{schema}\".persist_migrations"),
                &[],
            )
            .await
            .map_err(pg_err)?;
        let current: i32 = row.get(0);
        for (i, sql) in MIGRATIONS.iter().enumerate() {
            let version = i as i32 + 1;
            if version <= current {
                continue;
            }
            client
                .batch_execute(&format!("SET LOCAL search_path = \"{schema}\"; {sql}"))
                .await
                .map_err(pg_err)?;
            if version == REENCODE_DOCS {
                reencode_docs(client).await?;
            }
            client
                .execute(
                    &format!("INSERT INTO \"{schema}\".persist_migrations (version) VALUES ($1)"),
                    &[&version],
                )
                .await
                .map_err(pg_err)?;
        }
        client
            .execute(
                &format!(
                    "INSERT INTO \"{schema}\".persist_stores (name) VALUES ($1) ON CONFLICT (name) DO NOTHING"
                ),
                &[&name],
            )
            .await
            .map_err(pg_err)?;
        let row = client
            .query_one(
                &format!("SELECT id FROM \"{schema}\".persist_stores WHERE name = $1"),
                &[&name],
            )
            .await
            .map_err(pg_err)?;
        Ok(row.get(0))
    }
    .await;
    match res {
        Ok(id) => {
            client.batch_execute("COMMIT").await.map_err(pg_err)?;
            Ok(id)
        }
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

#[async_trait]
impl Backend for PostgresBackend {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn kv_get_many(&self, keys: Vec<String>) -> Result<Vec<Option<KvEntry>>> {
        if let Some(found) = self.inner.joined(|| kv_key(&keys)).await {
            return Ok(found);
        }
        kv::get_many(&self.inner, keys).await
    }
    fn kv_get_many_now(&self, keys: &[String]) -> Option<Result<Vec<Option<KvEntry>>>> {
        if keys.len() > LANE_MAX_OPS {
            return None;
        }
        self.inner.lane_read(
            || kv_key(keys),
            |inner| {
                let keys = keys.to_vec();
                async move { kv::get_many(&inner, keys).await }
            },
        )
    }
    fn kv_list_page_now(
        &self,
        range: &KvRange,
        after: Option<&str>,
        limit: usize,
    ) -> Option<Result<Vec<KvEntry>>> {
        if after.is_none() {
            self.inner.drop_read_ahead(range);
        }
        self.inner.lane_read(
            || list_key(range, after, limit),
            |inner| {
                let (range, after) = (range.clone(), after.map(str::to_owned));
                async move { kv::list_page(&inner, range, after, limit).await }
            },
        )
    }
    async fn kv_set(&self, set: KvSet) -> Result<KvEntry> {
        kv::set(&self.inner, set).await
    }
    /// Sets of one tick: the unconditional ones in one statement (one round trip, one commit,
    /// instead of one pooled connection each), those with `ifVersion` one by one beside it.
    async fn kv_set_each(&self, sets: Vec<KvSet>) -> Vec<Result<KvEntry>> {
        set_each(&self.inner, sets).await
    }
    fn sets_now(&self) -> bool {
        self.inner.lane.is_some()
    }
    /// On the lane of an idle store, within the binding's batch bounds.
    fn kv_set_each_now(&self, sets: Vec<KvSet>) -> SetsNow {
        let bytes: usize = sets.iter().map(|s| s.key.len() + s.value.len()).sum();
        if sets.len() > LANE_MAX_OPS || bytes > LANE_MAX_BYTES {
            return SetsNow::NotNow(sets);
        }
        let Some(ticket) = self.inner.lane_ticket() else {
            return SetsNow::NotNow(sets);
        };
        let inner = Arc::clone(&self.inner);
        let count = sets.len();
        match ticket.run(async move { Ok(set_each(&inner, sets).await) }) {
            LaneRun::Done(done) => SetsNow::Done(done.unwrap_or_default()),
            LaneRun::Pending(rx) => SetsNow::Pending(Box::pin(async move {
                match rx.await {
                    Ok(Ok(done)) => done,
                    // The helper thread could not start: the sets may or may not have landed.
                    _ => (0..count).map(|_| Err(lane::lost())).collect(),
                }
            })),
        }
    }
    async fn kv_set_many(&self, sets: Vec<KvSet>) -> Result<()> {
        kv::set_many(&self.inner, sets).await
    }
    async fn kv_delete(&self, key: String, if_version: Option<String>) -> Result<bool> {
        kv::delete(&self.inner, key, if_version).await
    }
    async fn kv_list_page(
        &self,
        range: KvRange,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<KvEntry>> {
        if after.is_none() {
            self.inner.drop_read_ahead(&range);
        }
        let key = || list_key(&range, after.as_deref(), limit);
        let mut page = self.inner.joined(key).await;
        if page.is_none() && limit < READ_AHEAD_PAGE {
            // A page read ahead holds more: its first `limit` entries are this page (all of
            // them if it holds fewer, which means the range ends there).
            let ahead = || list_key(&range, after.as_deref(), READ_AHEAD_PAGE);
            page = self.inner.joined::<Vec<KvEntry>>(ahead).await.map(|mut p| {
                p.truncate(limit);
                p
            });
        }
        let page = match page {
            Some(page) => page,
            None => kv::list_page(&self.inner, range.clone(), after, limit).await?,
        };
        // A full page: the next one is likely asked for next, so its query starts now and is
        // parked for that call to join. index.js asks for a page before it parses the one in
        // hand, but the query and the trip back took longer than the parse: the JS thread sat
        // idle for a quarter of a long listing. It reads at least `READ_AHEAD_PAGE` entries:
        // after its short first page index.js asks for pages of that size.
        if page.len() == limit {
            if let Some(last) = page.last() {
                self.inner
                    .read_ahead(range, last.key.clone(), limit.max(READ_AHEAD_PAGE));
            }
        }
        Ok(page)
    }

    async fn rec_insert(&self, coll: String, id: String, data: String) -> Result<Doc> {
        let doc = records::put(&self.inner, coll, id, data, IfVersion::Absent).await?;
        self.record_written();
        Ok(doc)
    }
    async fn rec_put(
        &self,
        coll: String,
        id: String,
        data: String,
        if_version: IfVersion<u64>,
    ) -> Result<Doc> {
        let doc = records::put(&self.inner, coll, id, data, if_version).await?;
        self.record_written();
        Ok(doc)
    }
    fn batches_rec_puts(&self) -> bool {
        true
    }
    async fn rec_put_each(&self, puts: Vec<RecordPut>) -> Vec<Result<Doc>> {
        let results = records::put_each(&self.inner, puts).await;
        for _ in results.iter().filter(|r| r.is_ok()) {
            self.record_written();
        }
        results
    }
    async fn rec_get(&self, coll: String, id: String) -> Result<Option<Doc>> {
        if let Some(doc) = self.inner.joined(|| doc_key(&coll, &id)).await {
            return Ok(doc);
        }
        records::get(&self.inner, coll, id).await
    }
    fn rec_get_now(&self, coll: &str, id: &str) -> Option<Result<Option<Doc>>> {
        self.inner.lane_read(
            || doc_key(coll, id),
            |inner| {
                let (coll, id) = (coll.to_owned(), id.to_owned());
                async move { records::get(&inner, coll, id).await }
            },
        )
    }
    async fn rec_update(
        &self,
        coll: String,
        id: String,
        patch: String,
        if_version: Option<u64>,
    ) -> Result<Doc> {
        let doc = records::update(&self.inner, coll, id, patch, if_version).await?;
        self.record_written();
        Ok(doc)
    }
    async fn rec_delete(&self, coll: String, id: String, if_version: Option<u64>) -> Result<bool> {
        let deleted = records::delete(&self.inner, coll, id, if_version).await?;
        if deleted {
            self.record_written();
        }
        Ok(deleted)
    }
    async fn rec_find_page(
        &self,
        coll: String,
        filter: Option<Filter>,
        order: Vec<SortKey>,
        after: Option<FindCursor>,
        limit: usize,
    ) -> Result<Vec<Doc>> {
        let key = || find_key(&coll, filter.as_ref(), &order, after.as_ref(), limit);
        if let Some(docs) = self.inner.joined(key).await {
            return Ok(docs);
        }
        records::find_page(&self.inner, coll, filter, order, after, limit).await
    }
    fn rec_find_page_now(
        &self,
        coll: &str,
        filter: Option<&Filter>,
        order: &[SortKey],
        after: Option<&FindCursor>,
        limit: usize,
    ) -> Option<Result<Vec<Doc>>> {
        self.inner.lane_read(
            || find_key(coll, filter, order, after, limit),
            |inner| {
                let (coll, filter, order, after) = (
                    coll.to_owned(),
                    filter.cloned(),
                    order.to_vec(),
                    after.cloned(),
                );
                async move { records::find_page(&inner, coll, filter, order, after, limit).await }
            },
        )
    }
    async fn rec_count(&self, coll: String, filter: Option<Filter>) -> Result<u64> {
        records::count(&self.inner, coll, filter).await
    }
    async fn rec_ensure_index(&self, _coll: String, path: FieldPath) -> Result<()> {
        records::ensure_index(&self.inner, path).await
    }

    async fn blob_put(&self, key: String, meta: BlobMeta) -> Result<Box<dyn BlobUpload>> {
        blobs::start(&self.inner, key, meta).await
    }
    async fn blob_head(&self, key: String) -> Result<Option<BlobInfo>> {
        Ok(blobs::head(&self.inner, key).await?.map(|(info, _)| info))
    }
    async fn blob_read(
        &self,
        key: String,
        range: ByteRange,
    ) -> Result<Option<Box<dyn BlobReader>>> {
        let found = blobs::head(&self.inner, key).await?;
        Ok(found.map(|(info, body_id)| {
            Box::new(blobs::Reader::new(self.inner.clone(), info, body_id, range)) as _
        }))
    }
    async fn blob_delete(&self, key: String) -> Result<bool> {
        blobs::delete(&self.inner, key).await
    }
    async fn blob_list_page(
        &self,
        prefix: String,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<BlobInfo>> {
        blobs::list_page(&self.inner, prefix, after, limit).await
    }

    async fn ev_append(
        &self,
        stream: String,
        events: Vec<NewEvent>,
        expected_seq: Option<u64>,
    ) -> Result<u64> {
        let seq = events::append(&self.inner, stream, events, expected_seq).await?;
        self.inner.bump();
        Ok(seq)
    }
    async fn ev_read_page(
        &self,
        stream: String,
        from: u64,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        events::read_page(&self.inner, stream, from, reverse, limit).await
    }
    async fn ev_streams_page(
        &self,
        prefix: String,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<String>> {
        events::streams_page(&self.inner, prefix, after, limit).await
    }
    async fn ev_wait(&self, stream: String, after_seq: u64, timeout: Duration) -> Result<()> {
        self.ensure_listener();
        events::wait(&self.inner, stream, after_seq, timeout).await
    }

    async fn close(&self) -> Result<()> {
        self.inner.closed.store(true, Ordering::SeqCst);
        if let Some(task) = lock(&self.inner.listener).take() {
            task.abort();
        }
        self.inner.pool.close();
        if let Some(lane) = &self.inner.lane {
            lane.close();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{SlowReads, MAX_SLOW, SLOW_SKIPS};

    #[test]
    fn a_slow_read_skips_the_lane_for_a_few_asks_then_tries_it_again() {
        let mut slow = SlowReads::default();
        assert!(slow.is_empty() && !slow.skip("q"));
        slow.note("q".into());
        assert!(!slow.skip("other"));
        for _ in 0..SLOW_SKIPS {
            assert!(slow.skip("q"));
        }
        assert!(!slow.skip("q"), "the lane is tried again");
        assert!(slow.is_empty());
        // Noted again while remembered: the count starts over, one entry.
        slow.note("q".into());
        slow.skip("q");
        slow.note("q".into());
        assert_eq!(slow.0.len(), 1);
        assert_eq!(slow.0[0].1, SLOW_SKIPS);
        // Bounded: the oldest is let go.
        for i in 0..MAX_SLOW {
            slow.note(format!("k{i}"));
        }
        assert_eq!(slow.0.len(), MAX_SLOW);
        assert!(!slow.skip("q"));
        assert!(slow.skip("k0") && slow.skip(&format!("k{}", MAX_SLOW - 1)));
    }
}
