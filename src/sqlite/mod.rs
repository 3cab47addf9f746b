//! The SQLite backend: every namespace natively in SQL, in one database file that may hold
//! several stores (rows are keyed by a per-name `store_id`).
//!
//! Writes go to one writer thread that groups whatever is queued into one transaction (group
//! commit: 64 concurrent sets cost one commit, not 64), each operation inside its own savepoint
//! so a failing one (a CONFLICT, say) rolls back alone. A promise resolves only after the
//! commit that holds its write. Reads run on a small pool of reader connections (WAL lets them
//! run beside the writer).

mod blobs;
mod events;
mod kv;
pub mod query_sql;
mod records;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags};

use crate::backend::{Backend, BlobReader, BlobUpload, SetsNow};
use crate::error::{ErrorCode, PersistError, Result};
use crate::model::*;
use crate::query::{FieldPath, Filter, SortKey};

/// How long a connection waits for another process's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// The most operations one group commit takes.
const MAX_BATCH: usize = 1024;
/// The most sets, and bytes of keys and values, committed on the caller's thread at once: a
/// larger batch goes to the writer thread so the JS thread is never held for long.
const MAX_NOW_SETS: usize = 256;
const MAX_NOW_BYTES: usize = 1 << 20;
/// How long a scan may run on the caller's thread before it is redone on a reader thread, and
/// how many SQLite VM instructions pass between two looks at the clock.
const SCAN_BUDGET: Duration = Duration::from_millis(1);
const SCAN_CHECK_OPS: std::ffi::c_int = 400;
/// Bytes of the database file the caller's-thread reader maps (see `read_now`).
const NOW_READER_MMAP: u64 = 256 << 20;
/// Reader connections kept open.
const MAX_IDLE_READERS: usize = 4;

/// Maps a SQLite failure to a PersistError. Busy/locked means another process held the file
/// longer than the busy timeout.
pub(crate) fn sql_err(err: rusqlite::Error) -> PersistError {
    use rusqlite::ErrorCode as C;
    if let rusqlite::Error::SqliteFailure(e, _) = &err {
        match e.code {
            C::DatabaseBusy | C::DatabaseLocked => {
                return PersistError::new(
                    ErrorCode::Timeout,
                    format!("sqlite: the database stayed locked by another connection: {err}"),
                )
            }
            C::CannotOpen | C::PermissionDenied | C::ReadOnly => {
                return PersistError::new(ErrorCode::Permission, format!("sqlite: {err}"))
            }
            C::DiskFull => {
                return PersistError::internal(format!("sqlite: the disk is full: {err}"))
            }
            _ => {}
        }
    }
    PersistError::internal(format!("sqlite: {err}"))
}

/// What a job does once the commit's outcome is known: resolve its caller.
type Finish = Box<dyn FnOnce(Result<()>) + Send>;

trait WriteJob: Send {
    /// Runs inside the batch transaction, in a savepoint of its own when `isolate` (the batch
    /// holds other jobs); returns whether it succeeded and what to do once the commit's outcome
    /// is known.
    fn run(self: Box<Self>, conn: &Connection, isolate: bool) -> (bool, Finish);
    /// The batch never started.
    fn fail(self: Box<Self>, err: PersistError);
}

struct Job<F, R> {
    work: F,
    reply: tokio::sync::oneshot::Sender<Result<R>>,
}

impl<F, R> WriteJob for Job<F, R>
where
    F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    R: Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection, isolate: bool) -> (bool, Finish) {
        let Job { work, reply } = *self;
        let outcome = if isolate {
            in_savepoint(conn, work)
        } else {
            catch_unwind(AssertUnwindSafe(|| work(conn))).unwrap_or_else(|panic| {
                Err(PersistError::internal(format!(
                    "sqlite: {}",
                    panic_message(&panic)
                )))
            })
        };
        let ok = outcome.is_ok();
        (
            ok,
            Box::new(move |commit| {
                let _ = reply.send(commit.and(outcome));
            }),
        )
    }
    fn fail(self: Box<Self>, err: PersistError) {
        let _ = self.reply.send(Err(err));
    }
}

/// Runs `work` in a savepoint: its writes are undone alone when it fails or panics.
fn in_savepoint<R>(conn: &Connection, work: impl FnOnce(&Connection) -> Result<R>) -> Result<R> {
    conn.prepare_cached("SAVEPOINT op")
        .and_then(|mut s| s.execute([]))
        .map_err(sql_err)?;
    let outcome = catch_unwind(AssertUnwindSafe(|| work(conn))).unwrap_or_else(|panic| {
        Err(PersistError::internal(format!(
            "sqlite: {}",
            panic_message(&panic)
        )))
    });
    let end = if outcome.is_ok() {
        "RELEASE op"
    } else {
        "ROLLBACK TO op; RELEASE op"
    };
    conn.execute_batch(end).map_err(sql_err)?;
    outcome
}

pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        format!("internal error (panic): {s}")
    } else if let Some(s) = panic.downcast_ref::<String>() {
        format!("internal error (panic): {s}")
    } else {
        "internal error (panic)".to_string()
    }
}

/// The write connection and what the writer thread and callers that write on their own thread
/// (see `Shared::begin_now`) must agree on.
struct WriterState {
    /// Taken by the writer thread for each group commit and by a write on the caller's thread;
    /// None once the writer thread has exited (the store is closed).
    conn: Mutex<Option<Connection>>,
    /// Jobs sent to the writer thread and not finished: a write on the caller's thread must not
    /// overtake them.
    queued: AtomicUsize,
    committed: AtomicU64,
    changed: tokio::sync::watch::Sender<u64>,
}

impl WriterState {
    fn note_commit(&self) {
        let n = self.committed.fetch_add(1, Ordering::SeqCst) + 1;
        self.changed.send_replace(n);
    }
}

fn writer_loop(state: Arc<WriterState>, jobs: mpsc::Receiver<Box<dyn WriteJob>>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let count = batch.len();
        let finishers = {
            let guard = state.conn.lock().unwrap_or_else(|e| e.into_inner());
            match guard.as_ref() {
                Some(conn) => run_batch(&state, conn, batch),
                None => {
                    for job in batch {
                        job.fail(PersistError::closed());
                    }
                    Vec::new()
                }
            }
        };
        state.queued.fetch_sub(count, Ordering::SeqCst);
        for (finish, commit) in finishers {
            finish(commit);
        }
    }
    // Every sender is gone (the store closed): close the connection now, not when the last
    // clone of the shared state goes.
    drop(state.conn.lock().unwrap_or_else(|e| e.into_inner()).take());
}

/// The error of a write not run because SQLite rolled its batch's transaction back.
fn batch_rolled_back() -> PersistError {
    PersistError::internal(
        "sqlite: an earlier error in this write's batch made SQLite roll the batch back; nothing of this write was done",
    )
}

/// The sets of one tick, one statement each, in the transaction `c` holds; once SQLite has
/// rolled that transaction back by itself (see `run_batch`), the rest are not run.
fn sets_in_transaction(c: &Connection, store: i64, sets: Vec<KvSet>) -> Vec<Result<KvEntry>> {
    sets.into_iter()
        .map(|set| {
            if c.is_autocommit() {
                return Err(batch_rolled_back());
            }
            kv::set(c, store, set)
        })
        .collect()
}

/// One group commit; returns each job's finisher with the commit's outcome.
fn run_batch(
    state: &WriterState,
    conn: &Connection,
    batch: Vec<Box<dyn WriteJob>>,
) -> Vec<(Finish, Result<()>)> {
    if let Err(err) = conn.execute_batch("BEGIN IMMEDIATE") {
        let err = sql_err(err);
        for job in batch {
            job.fail(err.clone());
        }
        return Vec::new();
    }
    // A lone job needs no savepoint: if it fails, the whole transaction is rolled back.
    let isolate = batch.len() > 1;
    let mut all_ok = true;
    let finishers: Vec<_> = batch
        .into_iter()
        .map(|job| {
            // SQLite rolls the whole transaction back by itself after some errors (I/O, a full
            // disk, out of memory). A job run after that would run outside it, in a savepoint
            // that commits on release, and then be answered with the batch's failure: so the
            // rest of the batch is not run (the COMMIT below fails, and answers the jobs run).
            if conn.is_autocommit() {
                all_ok = false;
                job.fail(batch_rolled_back());
                return Box::new(|_| {}) as Finish;
            }
            let (ok, finish) = job.run(conn, isolate);
            all_ok &= ok;
            finish
        })
        .collect();
    let commit = if isolate || all_ok {
        conn.execute_batch("COMMIT").map_err(sql_err)
    } else {
        // The lone job failed: its own error goes back, nothing is kept.
        conn.execute_batch("ROLLBACK").map_err(sql_err)
    };
    if commit.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    } else if isolate || all_ok {
        state.note_commit();
    }
    finishers
        .into_iter()
        .map(|finish| (finish, commit.clone()))
        .collect()
}

/// A transaction begun on the caller's thread with the write connection held: see
/// `Shared::begin_now`.
pub(crate) struct WriteNow<'a> {
    conn: std::sync::MutexGuard<'a, Option<Connection>>,
    state: &'a WriterState,
}

impl WriteNow<'_> {
    /// Runs `work` and commits (or rolls back when it fails); the outcome is final when this
    /// returns, so a promise resolved with it is as durable as one resolved by the writer.
    pub(crate) fn commit_with<R>(self, work: impl FnOnce(&Connection) -> Result<R>) -> Result<R> {
        let Some(conn) = self.conn.as_ref() else {
            return Err(PersistError::closed());
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| work(conn)))
            .unwrap_or_else(|panic| Err(PersistError::internal(panic_message(&panic))));
        let outcome = match outcome {
            Ok(r) => match conn.execute_batch("COMMIT") {
                Ok(()) => {
                    self.state.note_commit();
                    Ok(r)
                }
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    Err(sql_err(e))
                }
            },
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(e)
            }
        };
        let _ = conn.busy_timeout(BUSY_TIMEOUT);
        outcome
    }
}

fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sql_err)?;
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = OFF;")
        .map_err(sql_err)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS persist_stores (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS persist_kv (
  store_id INTEGER NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, version TEXT NOT NULL,
  expires_at INTEGER, PRIMARY KEY (store_id, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS persist_records (
  store_id INTEGER NOT NULL, coll TEXT NOT NULL, id TEXT NOT NULL, data TEXT NOT NULL,
  version INTEGER NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
  PRIMARY KEY (store_id, coll, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS persist_blobs (
  store_id INTEGER NOT NULL, key TEXT NOT NULL, body_id INTEGER NOT NULL, size INTEGER NOT NULL,
  content_type TEXT NOT NULL, etag TEXT NOT NULL, metadata TEXT NOT NULL, updated_at TEXT NOT NULL,
  PRIMARY KEY (store_id, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS persist_blob_bodies (
  id INTEGER PRIMARY KEY AUTOINCREMENT, committed INTEGER NOT NULL DEFAULT 0, started_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS persist_blob_chunks (
  body_id INTEGER NOT NULL, idx INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (body_id, idx));
CREATE TABLE IF NOT EXISTS persist_event_streams (
  store_id INTEGER NOT NULL, stream TEXT NOT NULL, last_seq INTEGER NOT NULL,
  PRIMARY KEY (store_id, stream)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS persist_events (
  store_id INTEGER NOT NULL, stream TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL,
  data TEXT NOT NULL, time TEXT NOT NULL, id TEXT NOT NULL,
  PRIMARY KEY (store_id, stream, seq)) WITHOUT ROWID;
"#;

/// The deadline the progress handler of the caller's-thread connection enforces: none for
/// point reads, `SCAN_BUDGET` from the start of a budgeted scan.
struct ScanBudget {
    epoch: std::time::Instant,
    /// Nanoseconds after `epoch`; 0: no deadline.
    deadline: AtomicU64,
    tripped: AtomicBool,
}

impl ScanBudget {
    fn new() -> Self {
        ScanBudget {
            epoch: std::time::Instant::now(),
            deadline: AtomicU64::new(0),
            tripped: AtomicBool::new(false),
        }
    }
    fn start(&self, budget: Duration) {
        let at = self.epoch.elapsed() + budget;
        self.tripped.store(false, Ordering::Relaxed);
        self.deadline
            .store(at.as_nanos().max(1) as u64, Ordering::Relaxed);
    }
    /// Clears the deadline; true when the scan was interrupted by it.
    fn finish(&self) -> bool {
        self.deadline.store(0, Ordering::Relaxed);
        self.tripped.swap(false, Ordering::Relaxed)
    }
    /// The progress handler: true interrupts the running statement.
    fn spent(&self) -> bool {
        let deadline = self.deadline.load(Ordering::Relaxed);
        if deadline != 0 && self.epoch.elapsed().as_nanos() as u64 > deadline {
            self.tripped.store(true, Ordering::Relaxed);
            return true;
        }
        false
    }
}

/// Where a store's database lives.
#[derive(Debug, Clone)]
pub enum SqlitePath {
    File(PathBuf),
    Memory,
}

/// What every operation needs: the writer's queue and the reader pool. Blob uploads and readers
/// hold a clone so they outlive no borrow of the backend.
pub(crate) struct Shared {
    store_id: i64,
    path: SqlitePath,
    jobs: Mutex<Option<mpsc::Sender<Box<dyn WriteJob>>>>,
    writer: Arc<WriterState>,
    idle_readers: Mutex<Vec<Connection>>,
    /// The connection for reads answered on the caller's thread (see `read_now`).
    now_reader: Mutex<Option<Connection>>,
    /// The time budget of a scan on the caller's thread (see `read_now_budgeted`).
    now_budget: Arc<ScanBudget>,
    closed: AtomicBool,
}

pub struct SqliteBackend {
    shared: Arc<Shared>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    changed: tokio::sync::watch::Receiver<u64>,
}

impl SqliteBackend {
    /// Opens (creating when needed) the database and this store's row in it. Blocking.
    pub fn open(name: &str, path: SqlitePath) -> Result<Self> {
        let conn = match &path {
            SqlitePath::Memory => Connection::open_in_memory().map_err(sql_err)?,
            SqlitePath::File(file) => {
                if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        PersistError::new(
                            ErrorCode::Permission,
                            format!("sqlite: cannot create folder {}: {e}", parent.display()),
                        )
                    })?;
                }
                open_file(
                    file,
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
                )?
            }
        };
        configure(&conn)?;
        if matches!(path, SqlitePath::File(_)) {
            // journal_mode returns a row; a read-only or locked file fails here with a clear code.
            let mode: String = conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
                .map_err(sql_err)?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(PersistError::internal(format!(
                    "sqlite: could not switch to WAL mode (got {mode})"
                )));
            }
        }
        conn.execute_batch(&format!("BEGIN IMMEDIATE; {SCHEMA} COMMIT;"))
            .map_err(|e| {
                let _ = conn.execute_batch("ROLLBACK");
                sql_err(e)
            })?;
        conn.execute(
            "INSERT OR IGNORE INTO persist_stores (name) VALUES (?1)",
            [name],
        )
        .map_err(sql_err)?;
        let store_id: i64 = conn
            .query_row(
                "SELECT id FROM persist_stores WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .map_err(sql_err)?;
        blobs::collect_abandoned_bodies(&conn)?;
        kv::purge_expired(&conn, store_id)?;

        let (jobs_tx, jobs_rx) = mpsc::channel::<Box<dyn WriteJob>>();
        let (changed_tx, changed_rx) = tokio::sync::watch::channel(0u64);
        let writer = Arc::new(WriterState {
            conn: Mutex::new(Some(conn)),
            queued: AtomicUsize::new(0),
            committed: AtomicU64::new(0),
            changed: changed_tx,
        });
        let thread_state = writer.clone();
        let thread = std::thread::Builder::new()
            .name("persist-sqlite-writer".into())
            .spawn(move || writer_loop(thread_state, jobs_rx))
            .map_err(|e| {
                PersistError::internal(format!("sqlite: cannot start the writer thread: {e}"))
            })?;
        let shared = Shared {
            store_id,
            path,
            jobs: Mutex::new(Some(jobs_tx)),
            writer,
            idle_readers: Mutex::new(Vec::new()),
            now_reader: Mutex::new(None),
            now_budget: Arc::new(ScanBudget::new()),
            closed: AtomicBool::new(false),
        };
        Ok(SqliteBackend {
            shared: Arc::new(shared),
            writer_thread: Mutex::new(Some(thread)),
            changed: changed_rx,
        })
    }

    async fn write<R: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        self.shared.write(work).await
    }

    async fn read<R: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        Shared::read(&self.shared, work).await
    }
}

impl Shared {
    /// Runs `work` in the writer's next group commit; resolves after that commit.
    pub(crate) async fn write<R: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        {
            let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
            let jobs = jobs.as_ref().ok_or_else(PersistError::closed)?;
            self.writer.queued.fetch_add(1, Ordering::SeqCst);
            if jobs.send(Box::new(Job { work, reply })).is_err() {
                self.writer.queued.fetch_sub(1, Ordering::SeqCst);
                return Err(PersistError::closed());
            }
        }
        rx.await
            .map_err(|_| PersistError::internal("sqlite: the writer thread stopped"))?
    }

    /// Begins a write transaction on the calling thread, or returns None to take the writer
    /// thread: when jobs are queued for it (they must not be overtaken), while it holds the
    /// connection, or when another process holds the write lock (busy timeout 0 here, so the
    /// caller's thread never waits). What `commit_with` then runs must be small: it blocks the
    /// caller (the JS thread) for its duration.
    pub(crate) fn begin_now(&self) -> Option<WriteNow<'_>> {
        if self.closed.load(Ordering::SeqCst) || self.writer.queued.load(Ordering::SeqCst) != 0 {
            return None;
        }
        let conn = self.writer.conn.try_lock().ok()?;
        let c = conn.as_ref()?;
        c.busy_timeout(Duration::ZERO).ok()?;
        if c.execute_batch("BEGIN IMMEDIATE").is_err() {
            let _ = c.busy_timeout(BUSY_TIMEOUT);
            return None;
        }
        Some(WriteNow {
            conn,
            state: &self.writer,
        })
    }

    /// Runs `work` on a reader connection, off the JS thread.
    pub(crate) async fn read<R: Send + 'static>(
        this: &Arc<Shared>,
        work: impl FnOnce(&Connection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        if matches!(this.path, SqlitePath::Memory) {
            // An in-memory database exists only on the writer's connection.
            return this.write(work).await;
        }
        let shared = this.clone();
        tokio::task::spawn_blocking(move || shared.read_blocking(work))
            .await
            .map_err(|e| PersistError::internal(format!("sqlite: reader task failed: {e}")))?
    }

    fn read_blocking<R>(&self, work: impl FnOnce(&Connection) -> Result<R>) -> Result<R> {
        let SqlitePath::File(file) = &self.path else {
            return Err(PersistError::internal(
                "sqlite: no reader connections for an in-memory database",
            ));
        };
        if self.closed.load(Ordering::SeqCst) {
            return Err(PersistError::closed());
        }
        let conn = self
            .idle_readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        let conn = match conn {
            Some(conn) => conn,
            None => {
                let conn = open_file(file, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
                configure(&conn)?;
                conn
            }
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| work(&conn)))
            .unwrap_or_else(|panic| Err(PersistError::internal(panic_message(&panic))));
        let mut idle = self.idle_readers.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE_READERS && !self.closed.load(Ordering::SeqCst) {
            idle.push(conn);
        }
        outcome
    }

    /// Runs a cheap read on the calling thread, or returns None to take the async path: for an
    /// in-memory database, while another caller holds the connection, or when the file is
    /// locked (busy timeout 0 here, so the caller's thread never waits on a lock).
    fn read_now<R>(&self, work: impl FnOnce(&Connection) -> Result<R>) -> Option<Result<R>> {
        let SqlitePath::File(file) = &self.path else {
            return None;
        };
        if self.closed.load(Ordering::SeqCst) {
            return Some(Err(PersistError::closed()));
        }
        let mut slot = self.now_reader.try_lock().ok()?;
        if slot.is_none() {
            let mut conn = open_file(file, OpenFlags::SQLITE_OPEN_READ_WRITE).ok()?;
            configure(&conn).ok()?;
            conn.busy_timeout(Duration::ZERO).ok()?;
            // Point reads and short pages read pages through a mapping instead of pread. Only
            // here, and bounded: mapped file pages count in the process's RSS, and blob streams
            // (on the reader pool) must stay within their memory bound.
            conn.execute_batch(&format!("PRAGMA mmap_size = {NOW_READER_MMAP}"))
                .ok()?;
            let budget = self.now_budget.clone();
            conn.progress_handler(SCAN_CHECK_OPS, Some(move || budget.spent()))
                .ok()?;
            *slot = Some(conn);
        }
        let conn = slot.as_ref()?;
        match catch_unwind(AssertUnwindSafe(|| work(conn))) {
            Ok(Err(e)) if e.code == ErrorCode::Timeout => None,
            Ok(outcome) => Some(outcome),
            Err(panic) => Some(Err(PersistError::internal(panic_message(&panic)))),
        }
    }

    /// `read_now` for work of unknown size (a page of a scan): SQLite interrupts it once it
    /// has run for `SCAN_BUDGET`, and None sends it to a reader thread, so the caller's thread
    /// is held for at most about that long.
    fn read_now_budgeted<R>(
        &self,
        work: impl FnOnce(&Connection) -> Result<R>,
    ) -> Option<Result<R>> {
        self.now_budget.start(SCAN_BUDGET);
        let outcome = self.read_now(work);
        if self.now_budget.finish() {
            return None;
        }
        outcome
    }

    pub(crate) fn store_id(&self) -> i64 {
        self.store_id
    }
}

fn open_file(file: &Path, flags: OpenFlags) -> Result<Connection> {
    Connection::open_with_flags(file, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX).map_err(|e| {
        let err = sql_err(e);
        PersistError::new(err.code, format!("{} ({})", err.message, file.display()))
    })
}

#[async_trait]
impl Backend for SqliteBackend {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn kv_get_many_now(&self, keys: &[String]) -> Option<Result<Vec<Option<KvEntry>>>> {
        let store = self.shared.store_id;
        self.shared.read_now(|c| kv::get_many(c, store, keys))
    }
    fn rec_get_now(&self, coll: &str, id: &str) -> Option<Result<Option<Doc>>> {
        let store = self.shared.store_id;
        self.shared.read_now(|c| records::get(c, store, coll, id))
    }
    fn kv_list_page_now(
        &self,
        range: &KvRange,
        after: Option<&str>,
        limit: usize,
    ) -> Option<Result<Vec<KvEntry>>> {
        let store = self.shared.store_id;
        self.shared
            .read_now_budgeted(|c| kv::list_page(c, store, range, after, limit))
    }
    fn rec_find_page_now(
        &self,
        coll: &str,
        filter: Option<&Filter>,
        order: &[SortKey],
        after: Option<&FindCursor>,
        limit: usize,
    ) -> Option<Result<Vec<Doc>>> {
        let store = self.shared.store_id;
        self.shared
            .read_now_budgeted(|c| records::find_page(c, store, coll, filter, order, after, limit))
    }
    async fn kv_get_many(&self, keys: Vec<String>) -> Result<Vec<Option<KvEntry>>> {
        let store = self.shared.store_id;
        self.read(move |c| kv::get_many(c, store, &keys)).await
    }
    async fn kv_set(&self, set: KvSet) -> Result<KvEntry> {
        let store = self.shared.store_id;
        self.write(move |c| kv::set(c, store, set)).await
    }
    async fn kv_set_each(&self, sets: Vec<KvSet>) -> Vec<Result<KvEntry>> {
        let store = self.shared.store_id;
        let count = sets.len();
        let outcome = self
            // No savepoint per set: `kv::set` writes with one statement, which SQLite undoes
            // alone when it fails, and a failed `ifVersion` check writes nothing.
            .write(move |c| Ok(sets_in_transaction(c, store, sets)))
            .await;
        match outcome {
            Ok(results) => results,
            Err(err) => (0..count).map(|_| Err(err.clone())).collect(),
        }
    }
    fn sets_now(&self) -> bool {
        true
    }
    fn kv_set_each_now(&self, sets: Vec<KvSet>) -> SetsNow {
        let bytes: usize = sets.iter().map(|s| s.key.len() + s.value.len()).sum();
        if sets.len() > MAX_NOW_SETS || bytes > MAX_NOW_BYTES {
            return SetsNow::NotNow(sets);
        }
        let Some(tx) = self.shared.begin_now() else {
            return SetsNow::NotNow(sets);
        };
        let store = self.shared.store_id;
        let count = sets.len();
        // Each set fails alone without a savepoint (see `kv_set_each`).
        let outcome = tx.commit_with(move |c| Ok(sets_in_transaction(c, store, sets)));
        SetsNow::Done(match outcome {
            Ok(results) => results,
            Err(err) => (0..count).map(|_| Err(err.clone())).collect(),
        })
    }
    async fn kv_set_many(&self, sets: Vec<KvSet>) -> Result<()> {
        let store = self.shared.store_id;
        self.write(move |c| kv::set_many(c, store, sets)).await
    }
    async fn kv_delete(&self, key: String, if_version: Option<String>) -> Result<bool> {
        let store = self.shared.store_id;
        self.write(move |c| kv::delete(c, store, &key, if_version.as_deref()))
            .await
    }
    async fn kv_list_page(
        &self,
        range: KvRange,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<KvEntry>> {
        let store = self.shared.store_id;
        self.read(move |c| kv::list_page(c, store, &range, after.as_deref(), limit))
            .await
    }

    async fn rec_insert(&self, coll: String, id: String, data: String) -> Result<Doc> {
        let store = self.shared.store_id;
        self.write(move |c| records::put(c, store, &coll, &id, data, IfVersion::Absent))
            .await
    }
    async fn rec_put(
        &self,
        coll: String,
        id: String,
        data: String,
        if_version: IfVersion<u64>,
    ) -> Result<Doc> {
        let store = self.shared.store_id;
        self.write(move |c| records::put(c, store, &coll, &id, data, if_version))
            .await
    }
    async fn rec_get(&self, coll: String, id: String) -> Result<Option<Doc>> {
        let store = self.shared.store_id;
        self.read(move |c| records::get(c, store, &coll, &id)).await
    }
    async fn rec_update(
        &self,
        coll: String,
        id: String,
        patch: String,
        if_version: Option<u64>,
    ) -> Result<Doc> {
        let store = self.shared.store_id;
        self.write(move |c| records::update(c, store, &coll, &id, &patch, if_version))
            .await
    }
    async fn rec_delete(&self, coll: String, id: String, if_version: Option<u64>) -> Result<bool> {
        let store = self.shared.store_id;
        self.write(move |c| records::delete(c, store, &coll, &id, if_version))
            .await
    }
    async fn rec_find_page(
        &self,
        coll: String,
        filter: Option<Filter>,
        order: Vec<SortKey>,
        after: Option<FindCursor>,
        limit: usize,
    ) -> Result<Vec<Doc>> {
        let store = self.shared.store_id;
        self.read(move |c| {
            records::find_page(
                c,
                store,
                &coll,
                filter.as_ref(),
                &order,
                after.as_ref(),
                limit,
            )
        })
        .await
    }
    async fn rec_count(&self, coll: String, filter: Option<Filter>) -> Result<u64> {
        let store = self.shared.store_id;
        self.read(move |c| records::count(c, store, &coll, filter.as_ref()))
            .await
    }
    async fn rec_ensure_index(&self, _coll: String, path: FieldPath) -> Result<()> {
        self.write(move |c| records::ensure_index(c, &path)).await
    }

    async fn blob_put(&self, key: String, meta: BlobMeta) -> Result<Box<dyn BlobUpload>> {
        let body_id = self.write(blobs::start_body).await?;
        Ok(Box::new(blobs::Upload::new(
            self.shared.clone(),
            key,
            meta,
            body_id,
        )))
    }
    async fn blob_head(&self, key: String) -> Result<Option<BlobInfo>> {
        let store = self.shared.store_id;
        self.read(move |c| blobs::head(c, store, &key).map(|found| found.map(|(info, _)| info)))
            .await
    }
    async fn blob_read(
        &self,
        key: String,
        range: ByteRange,
    ) -> Result<Option<Box<dyn BlobReader>>> {
        let store = self.shared.store_id;
        let found = self.read(move |c| blobs::head(c, store, &key)).await?;
        Ok(found.map(|(info, body_id)| {
            Box::new(blobs::Reader::new(
                self.shared.clone(),
                info,
                body_id,
                range,
            )) as _
        }))
    }
    async fn blob_delete(&self, key: String) -> Result<bool> {
        let store = self.shared.store_id;
        self.write(move |c| blobs::delete(c, store, &key)).await
    }
    async fn blob_list_page(
        &self,
        prefix: String,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<BlobInfo>> {
        let store = self.shared.store_id;
        self.read(move |c| blobs::list_page(c, store, &prefix, after.as_deref(), limit))
            .await
    }

    async fn ev_append(
        &self,
        stream: String,
        events: Vec<NewEvent>,
        expected_seq: Option<u64>,
    ) -> Result<u64> {
        let store = self.shared.store_id;
        self.write(move |c| events::append(c, store, &stream, events, expected_seq))
            .await
    }
    async fn ev_read_page(
        &self,
        stream: String,
        from: u64,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        let store = self.shared.store_id;
        self.read(move |c| events::read_page(c, store, &stream, from, reverse, limit))
            .await
    }
    async fn ev_streams_page(
        &self,
        prefix: String,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<String>> {
        let store = self.shared.store_id;
        self.read(move |c| events::streams_page(c, store, &prefix, after.as_deref(), limit))
            .await
    }
    async fn ev_wait(&self, stream: String, after_seq: u64, timeout: Duration) -> Result<()> {
        // Appends from this backend wake us at once; appends from other connections (another
        // process, another store object on the same file) are seen by polling the stream's last
        // seq, which is one primary-key lookup.
        const POLL: Duration = Duration::from_millis(100);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changed = self.changed.clone();
        loop {
            let store = self.shared.store_id;
            let name = stream.clone();
            let last = self
                .read(move |c| events::last_seq(c, store, &name))
                .await?;
            if last > after_seq {
                return Ok(());
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(());
            }
            let wake = (now + POLL).min(deadline);
            tokio::select! {
                res = changed.changed() => { if res.is_err() { return Err(PersistError::closed()); } }
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    async fn close(&self) -> Result<()> {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared
            .idle_readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        // Dropping the sender lets the writer finish what is queued, then exit.
        drop(
            self.shared
                .jobs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        let thread = self
            .writer_thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(thread) = thread {
            tokio::task::spawn_blocking(move || thread.join())
                .await
                .map_err(|e| PersistError::internal(format!("sqlite: closing failed: {e}")))?
                .map_err(|_| PersistError::internal("sqlite: the writer thread panicked"))?;
        }
        // Wake `ev_wait`ers so they see the store closed now rather than at their next poll.
        self.shared
            .writer
            .changed
            .send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite may end a transaction by itself after an error (I/O, a full disk, out of memory);
    /// simulated here by a job that runs `ROLLBACK`. The job after it must not run: it would run
    /// outside the transaction, commit on its own, and still be answered with the failure.
    #[test]
    fn a_batch_that_sqlite_rolled_back_runs_no_more_jobs() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        let state = WriterState {
            conn: Mutex::new(None),
            queued: AtomicUsize::new(0),
            committed: AtomicU64::new(0),
            changed: tokio::sync::watch::channel(0).0,
        };
        let mut replies = Vec::new();
        let mut jobs: Vec<Box<dyn WriteJob>> = Vec::new();
        type Work = Box<dyn FnOnce(&Connection) -> Result<()> + Send>;
        let works: Vec<Work> = vec![
            Box::new(|c| {
                c.execute("INSERT INTO t VALUES (1)", [])
                    .map(drop)
                    .map_err(sql_err)
            }),
            Box::new(|c| {
                c.execute_batch("ROLLBACK").map_err(sql_err)?;
                Err(PersistError::internal("disk I/O error (simulated)"))
            }),
            Box::new(|c| {
                c.execute("INSERT INTO t VALUES (3)", [])
                    .map(drop)
                    .map_err(sql_err)
            }),
        ];
        for work in works {
            let (tx, rx) = tokio::sync::oneshot::channel();
            replies.push(rx);
            jobs.push(Box::new(Job { work, reply: tx }));
        }
        for (finish, commit) in run_batch(&state, &conn, jobs) {
            finish(commit);
        }
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 0, "nothing of the batch is in the table");
        for mut rx in replies {
            assert!(rx.try_recv().expect("answered").is_err());
        }
        // The connection is usable afterwards.
        assert!(conn.is_autocommit());

        // The sets of one tick stop the same way.
        conn.execute_batch("BEGIN").unwrap();
        conn.execute_batch("ROLLBACK").unwrap();
        let results = sets_in_transaction(&conn, 1, vec![set("k", "1", IfVersion::Any)]);
        assert!(results[0].is_err());
    }

    fn set(key: &str, value: &str, if_version: IfVersion<String>) -> KvSet {
        KvSet {
            key: key.into(),
            value: value.into(),
            ttl_ms: None,
            if_version,
        }
    }

    #[tokio::test]
    async fn small_sets_commit_on_the_callers_thread_each_failing_alone() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.db");
        let db = SqliteBackend::open("t", SqlitePath::File(file.clone())).unwrap();
        let SetsNow::Done(results) = db.kv_set_each_now(vec![
            set("a", "1", IfVersion::Any),
            set("b", "2", IfVersion::Is("nope".into())),
            set("c", "3", IfVersion::Absent),
        ]) else {
            panic!("an idle writer takes the sets at once")
        };
        assert!(results[0].is_ok() && results[2].is_ok());
        assert_eq!(
            results[1].as_ref().unwrap_err().code,
            ErrorCode::Conflict,
            "a failing set rolls back alone"
        );
        // Committed before it returned: another connection sees exactly a and c.
        let other = Connection::open(&file).unwrap();
        let keys: Vec<String> = other
            .prepare("SELECT key FROM persist_kv ORDER BY key")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(keys, ["a", "c"]);
        db.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_long_scan_on_the_callers_thread_is_cut_off_and_redone_off_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = SqliteBackend::open("t", SqlitePath::File(dir.path().join("t.db"))).unwrap();
        let store = db.shared.store_id;
        db.write(move |c| {
            for i in 0..30_000 {
                records::put(
                    c,
                    store,
                    "c",
                    &format!("{i:06}"),
                    format!(r#"{{"n":{i}}}"#),
                    IfVersion::Any,
                )?;
            }
            Ok(())
        })
        .await
        .unwrap();
        let first_ten = db.rec_find_page_now("c", None, &[], None, 10);
        assert_eq!(
            first_ten.unwrap().unwrap().len(),
            10,
            "a short page is answered at once"
        );
        // No document matches: the whole collection is scanned, far past the budget.
        let none = crate::query::parse_query(&serde_json::json!({ "where": { "n": -1 } }))
            .unwrap()
            .filter;
        assert!(
            db.rec_find_page_now("c", none.as_ref(), &[], None, 10)
                .is_none(),
            "the scan is interrupted and left to a reader thread"
        );
        let found = db
            .rec_find_page("c".into(), none, vec![], None, 10)
            .await
            .unwrap();
        assert!(found.is_empty());
        // The interruption left the connection usable, with no deadline on point reads.
        assert!(db.rec_get_now("c", "000001").unwrap().unwrap().is_some());
        db.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_locked_database_or_a_big_batch_goes_to_the_writer_instead_of_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.db");
        let db = SqliteBackend::open("t", SqlitePath::File(file.clone())).unwrap();
        let big: Vec<KvSet> = (0..MAX_NOW_SETS + 1)
            .map(|i| set(&format!("k{i}"), "1", IfVersion::Any))
            .collect();
        assert!(
            matches!(db.kv_set_each_now(big), SetsNow::NotNow(_)),
            "too many for the caller's thread"
        );

        // Another connection (another process, as far as SQLite knows) holds the write lock.
        let other = Connection::open(&file).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let started = std::time::Instant::now();
        let SetsNow::NotNow(sets) = db.kv_set_each_now(vec![set("x", "1", IfVersion::Any)]) else {
            panic!("the lock is taken: no waiting on the caller's thread")
        };
        assert!(
            started.elapsed() < BUSY_TIMEOUT / 2,
            "and the busy timeout was not waited out"
        );
        // The writer thread waits for the lock (busy timeout) and commits once it is released.
        let pending = tokio::spawn({
            let shared = db.shared.clone();
            async move {
                let store = shared.store_id;
                shared
                    .write(move |c| {
                        sets.into_iter()
                            .map(|s| kv::set(c, store, s))
                            .collect::<Result<Vec<_>>>()
                    })
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            matches!(
                db.kv_set_each_now(vec![set("y", "1", IfVersion::Any)]),
                SetsNow::NotNow(_)
            ),
            "a job is queued for the writer: nothing overtakes it"
        );
        other.execute_batch("COMMIT").unwrap();
        assert_eq!(pending.await.unwrap().unwrap().len(), 1);
        assert!(matches!(
            db.kv_set_each_now(vec![set("y", "1", IfVersion::Any)]),
            SetsNow::Done(_)
        ));
        db.close().await.unwrap();
        assert!(
            db.shared.begin_now().is_none(),
            "no writes on the caller's thread after close"
        );
    }
}
