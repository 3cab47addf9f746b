//! The lane: one connection of the pool's `max` driven on the caller's thread, so that an
//! operation made while the store is otherwise idle costs one round trip and no thread hop.
//!
//! Why: through the pool, a call goes JS thread → tokio worker → server → tokio worker → JS
//! thread, and on these VMs every hand-off to a sleeping thread costs tens of microseconds,
//! while node-postgres writes and reads its socket on the JS thread itself (measured: a
//! sequential get took 170 µs through the pool against `pg`'s 135 µs). The lane's connection
//! has its own single-threaded tokio runtime that only runs inside a call: the caller's thread
//! sends the request and waits on the socket itself.
//!
//! Bounds, so the event loop is never held for long:
//! - a call waits at most [`LANE_BUDGET`]; an operation not finished by then goes on on a
//!   helper thread with the connection, and its result arrives through [`LaneRun::Pending`]
//!   (a write's resolves its promise later; a read is parked for the async call the binding
//!   makes next, which joins it instead of sending it again: `Inner::lane_read`);
//! - after [`LANE_SLICE`] of lane time, one call is refused, so the binding takes the async
//!   path and the event loop gets a turn;
//! - the binding uses the lane only while no pooled connection is in use (see
//!   `Inner::lane_ticket`), so an operation never overtakes one made before it through the
//!   pool.
//!
//! Before each use, a readable socket on an idle connection (a notice, or the server closing
//! it, say for a restart) is read first; a closed connection is dropped and replaced in the
//! background, and the calls meanwhile take the pool.

use std::future::Future;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::{ClientWrapper, StatementCache};
use tokio_postgres::config::Host;
use tokio_postgres::NoTls;

use super::lock;
use crate::error::{PersistError, Result};

/// How long a call may wait on the caller's thread before the operation moves to a helper
/// thread.
pub(crate) const LANE_BUDGET: Duration = Duration::from_millis(2);
/// Lane time after which one call is refused (the event loop gets a turn through the pool).
const LANE_SLICE: Duration = Duration::from_millis(10);
/// The least time between two attempts to reconnect.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

tokio::task_local! {
    /// Set while an operation runs on the lane: `Inner::client` takes the lane's client here.
    pub(crate) static LANE_CLIENT: Arc<Mutex<Option<ClientWrapper>>>;
}

/// What a lane call did.
pub(crate) enum LaneRun<T> {
    Done(Result<T>),
    /// Still running after the budget: it finishes on a helper thread.
    Pending(tokio::sync::oneshot::Receiver<Result<T>>),
}

enum State {
    Idle(LaneConn),
    /// In a call, or finishing one on a helper thread.
    Busy,
    /// Connecting on a helper thread.
    Connecting,
    Down(Instant),
    Closed,
}

pub(crate) struct Lane {
    config: tokio_postgres::Config,
    state: Mutex<State>,
    /// Lane time since the event loop was last given a turn.
    slice: Mutex<Duration>,
    /// The prepared statements of the current connection (see `clear_statements`).
    statements: Mutex<Option<Arc<StatementCache>>>,
    closed: AtomicBool,
}

struct LaneConn {
    rt: Option<tokio::runtime::Runtime>,
    client: Arc<Mutex<Option<ClientWrapper>>>,
    fd: RawFd,
}

impl Drop for LaneConn {
    fn drop(&mut self) {
        // The client first (it aborts the connection task), then the runtime, without
        // blocking: this may run inside another runtime (close() on a tokio worker).
        drop(lock(&self.client).take());
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl LaneConn {
    fn rt(&self) -> &tokio::runtime::Runtime {
        self.rt.as_ref().expect("lane runtime")
    }

    fn is_closed(&self) -> bool {
        lock(&self.client).as_ref().is_none_or(|c| c.is_closed())
    }

    /// Whether the connection is still good to use: anything readable while idle is read
    /// first (a notice, or the server's goodbye before it closes the socket).
    fn healthy(&self) -> bool {
        if self.is_closed() {
            return false;
        }
        let mut pfd = libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout; the fd stays open while `self` lives.
        let ready = unsafe { libc::poll(&mut pfd, 1, 0) };
        if ready == 0 {
            return true;
        }
        // Inside the runtime: a timer must be made within it.
        self.rt().block_on(async {
            tokio::time::sleep(Duration::from_micros(500)).await;
        });
        !self.is_closed()
    }
}

impl Lane {
    /// A lane for this driver config, or None when it has no single TCP or Unix-socket host
    /// to connect to (the store then works through the pool alone).
    pub(crate) fn new(config: &tokio_postgres::Config) -> Option<Arc<Lane>> {
        if config.get_hosts().len() != 1 || config.get_ports().len() > 1 {
            return None;
        }
        Some(Arc::new(Lane {
            config: config.clone(),
            state: Mutex::new(State::Down(Instant::now() - RECONNECT_EVERY)),
            slice: Mutex::new(Duration::ZERO),
            statements: Mutex::new(None),
            closed: AtomicBool::new(false),
        }))
    }

    /// Connects now (blocking the calling thread: call it off the event loop). A failure leaves
    /// the lane down; it is tried again on use.
    pub(crate) fn connect_blocking(&self, timeout: Duration) {
        {
            let mut state = lock(&self.state);
            if !matches!(*state, State::Down(_)) {
                return;
            }
            *state = State::Connecting;
        }
        let conn = connect(&self.config, timeout);
        if let Ok(conn) = &conn {
            *lock(&self.statements) = lock(&conn.client)
                .as_ref()
                .map(|c| Arc::clone(&c.statement_cache));
        }
        let mut state = lock(&self.state);
        *state = match conn {
            Ok(conn) if !self.closed.load(Ordering::SeqCst) => State::Idle(conn),
            Ok(_) => State::Closed,
            Err(_) if self.closed.load(Ordering::SeqCst) => State::Closed,
            Err(_) => State::Down(Instant::now()),
        };
    }

    /// Starts a reconnect on a helper thread when the lane is down and the last attempt is
    /// old enough.
    fn reconnect_later(self: &Arc<Self>, timeout: Duration) {
        {
            let state = lock(&self.state);
            match *state {
                State::Down(at) if at.elapsed() >= RECONNECT_EVERY => {}
                _ => return,
            }
        }
        let lane = Arc::clone(self);
        let _ = std::thread::Builder::new()
            .name("persist-pg-lane-connect".into())
            .spawn(move || lane.connect_blocking(timeout));
    }

    /// Takes the idle connection, if there is one and it is healthy.
    fn take(self: &Arc<Self>, connect_timeout: Duration) -> Option<LaneConn> {
        let conn = {
            let mut state = self.state.try_lock().ok()?;
            match std::mem::replace(&mut *state, State::Busy) {
                State::Idle(conn) => conn,
                other => {
                    *state = other;
                    drop(state);
                    self.reconnect_later(connect_timeout);
                    return None;
                }
            }
        };
        if conn.healthy() {
            return Some(conn);
        }
        drop(conn);
        *lock(&self.state) = if self.closed.load(Ordering::SeqCst) {
            State::Closed
        } else {
            State::Down(Instant::now() - RECONNECT_EVERY)
        };
        self.reconnect_later(connect_timeout);
        None
    }

    fn put_back(&self, conn: LaneConn) {
        let mut state = lock(&self.state);
        *state = if self.closed.load(Ordering::SeqCst) {
            State::Closed
        } else if conn.is_closed() {
            State::Down(Instant::now() - RECONNECT_EVERY)
        } else {
            State::Idle(conn)
        };
    }

    /// The lane for one operation, or None when it cannot take one now (no healthy idle
    /// connection, or this call gives the event loop its turn).
    pub(crate) fn ticket(self: &Arc<Self>, connect_timeout: Duration) -> Option<LaneTicket> {
        {
            let mut slice = lock(&self.slice);
            if *slice >= LANE_SLICE {
                *slice = Duration::ZERO;
                return None;
            }
        }
        let conn = self.take(connect_timeout)?;
        Some(LaneTicket {
            lane: Arc::clone(self),
            conn,
        })
    }

    /// Forgets the prepared statements (see `Inner::forget_statements`).
    pub(crate) fn clear_statements(&self) {
        if let Some(statements) = lock(&self.statements).as_ref() {
            statements.clear();
        }
    }

    /// Drops the connection (an operation finishing on a helper thread drops it when done).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let old = std::mem::replace(&mut *lock(&self.state), State::Closed);
        drop(old);
    }
}

/// What a [`LaneRun::Pending`] receiver gives when the helper thread could not be started.
pub(crate) fn lost() -> PersistError {
    PersistError::internal("postgres: the operation's helper thread could not be started")
}

/// Opens the lane's connection: its own single-threaded runtime, a socket to the one host,
/// and the startup of the driver config (user, password, database, options).
fn connect(config: &tokio_postgres::Config, timeout: Duration) -> Result<LaneConn> {
    let wait = Arc::new(AnswerWait::default());
    let (before, after) = (Arc::clone(&wait), Arc::clone(&wait));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(move || before.before_park())
        .on_thread_unpark(move || after.after_unpark())
        .build()
        .map_err(|e| PersistError::internal(format!("postgres: lane runtime: {e}")))?;
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let host = config
        .get_hosts()
        .first()
        .cloned()
        .ok_or_else(|| PersistError::internal("postgres: no host"))?;
    let failed = |e: String| PersistError::new(crate::error::ErrorCode::Connection, e);
    let (client, fd, handle) = rt.block_on(async {
        match host {
            Host::Tcp(name) => {
                let stream = within(
                    timeout,
                    tokio::net::TcpStream::connect((name.as_str(), port)),
                )
                .await
                .map_err(|e| failed(format!("postgres: lane connect: {e}")))?;
                let _ = stream.set_nodelay(true);
                let fd = stream.as_raw_fd();
                let (client, handle) = start(config, stream, timeout).await?;
                Ok::<_, PersistError>((client, fd, handle))
            }
            Host::Unix(dir) => {
                let path = dir.join(format!(".s.PGSQL.{port}"));
                let stream = within(timeout, tokio::net::UnixStream::connect(path))
                    .await
                    .map_err(|e| failed(format!("postgres: lane connect: {e}")))?;
                let fd = stream.as_raw_fd();
                let (client, handle) = start(config, stream, timeout).await?;
                Ok((client, fd, handle))
            }
        }
    })?;
    wait.fd.store(fd, Ordering::Relaxed);
    Ok(LaneConn {
        rt: Some(rt),
        client: Arc::new(Mutex::new(Some(ClientWrapper::new(client, handle)))),
        fd,
    })
}

/// The wait for the server's answer on the lane, spun instead of slept when answers come
/// quickly.
///
/// Why: the lane's thread sleeps while the server works, and on these VMs waking a thread that
/// sleeps on another CPU costs 20-90 µs each time (`perf sched`: node-postgres's JS thread and
/// its server backend ping-pong on one CPU, the lane's sleeps on the other). Polling the
/// socket instead keeps the wake-up off the answer's path: the bench's indexed query went
/// from 437 µs to 346 µs a call. The spin is bounded by the recent waits (twice their average,
/// never over [`SPIN_LIMIT`]), so a slow query sleeps as before after a short spin, and there
/// is none on a single CPU, where it would only delay a server on the same machine.
#[derive(Default)]
struct AnswerWait {
    /// The connection's socket (-1 until connected).
    fd: AtomicI32,
    /// Average time from a park to its wake-up, in ns (exponentially weighted).
    average_ns: AtomicU64,
    /// When the runtime last went to park (ns since `epoch`).
    parked_ns: AtomicU64,
    epoch: std::sync::OnceLock<Instant>,
}

/// The longest spin for one wait.
const SPIN_LIMIT: Duration = Duration::from_micros(500);

impl AnswerWait {
    fn now_ns(&self) -> u64 {
        self.epoch.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }

    fn before_park(&self) {
        let fd = self.fd.load(Ordering::Relaxed);
        let start = self.now_ns();
        self.parked_ns.store(start, Ordering::Relaxed);
        if fd < 0 || !several_cpus() {
            return;
        }
        let average = self.average_ns.load(Ordering::Relaxed);
        if average > SPIN_LIMIT.as_nanos() as u64 {
            return;
        }
        let until = start + (average * 2).clamp(50_000, SPIN_LIMIT.as_nanos() as u64);
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout. The socket belongs to the connection task on
        // this runtime; should it be closed (or its number reused) by the time this runs, poll
        // reports POLLNVAL or some readiness, which only ends the spin early.
        while unsafe { libc::poll(&mut pfd, 1, 0) } == 0 && self.now_ns() < until {
            std::hint::spin_loop();
        }
    }

    fn after_unpark(&self) {
        let waited = self
            .now_ns()
            .saturating_sub(self.parked_ns.load(Ordering::Relaxed));
        let average = self.average_ns.load(Ordering::Relaxed);
        self.average_ns
            .store((average * 7 + waited) / 8, Ordering::Relaxed);
    }
}

fn several_cpus() -> bool {
    static SEVERAL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SEVERAL.get_or_init(|| std::thread::available_parallelism().is_ok_and(|n| n.get() > 1))
}

/// Marks the lane down when dropped, which only happens while a panic unwinds (it is
/// forgotten otherwise): the connection went with the unwinding.
struct PanicGuard<'a>(&'a Lane);

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        let mut state = lock(&self.0.state);
        if !matches!(*state, State::Closed) {
            *state = State::Down(Instant::now());
        }
    }
}

/// The lane's connection, taken for one operation.
pub(crate) struct LaneTicket {
    lane: Arc<Lane>,
    conn: LaneConn,
}

impl LaneTicket {
    /// Runs the operation: on this thread for up to [`LANE_BUDGET`], then on a helper thread.
    /// `Inner::client` gives it the lane's connection (and a pooled one for anything it asks
    /// for while that one is in use).
    pub(crate) fn run<T, Fut>(self, op: Fut) -> LaneRun<T>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        let LaneTicket { lane, conn } = self;
        let started = Instant::now();
        let mut op = Box::pin(LANE_CLIENT.scope(Arc::clone(&conn.client), op));
        // A panic in the operation is the binding's to report (INTERNAL); the lane is marked
        // down first, so it reconnects instead of staying busy for good.
        let down_on_panic = PanicGuard(&lane);
        let out = conn
            .rt()
            .block_on(async { tokio::time::timeout(LANE_BUDGET, &mut op).await });
        std::mem::forget(down_on_panic);
        *lock(&lane.slice) += started.elapsed();
        match out {
            Ok(result) => {
                lane.put_back(conn);
                LaneRun::Done(result)
            }
            Err(_) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let helper = Arc::clone(&lane);
                let finishing = std::thread::Builder::new()
                    .name("persist-pg-lane".into())
                    .spawn(move || {
                        let down_on_panic = PanicGuard(&helper);
                        let result = conn.rt().block_on(op);
                        std::mem::forget(down_on_panic);
                        let _ = tx.send(result);
                        helper.put_back(conn);
                    });
                if finishing.is_err() {
                    // No thread: the operation and the connection went with the closure; the
                    // receiver reports it.
                    *lock(&lane.state) = State::Down(Instant::now());
                }
                LaneRun::Pending(rx)
            }
        }
    }
}

/// The startup on a connected socket (user, password, database, options), and the
/// connection's task on the lane's runtime.
async fn start<S>(
    config: &tokio_postgres::Config,
    stream: S,
    timeout: Duration,
) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (client, connection) = tokio::time::timeout(timeout, config.connect_raw(stream, NoTls))
        .await
        .map_err(|_| {
            PersistError::new(
                crate::error::ErrorCode::Connection,
                "postgres: lane startup timed out",
            )
        })?
        .map_err(super::pg_err)?;
    let handle = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((client, handle))
}

async fn within<T>(
    timeout: Duration,
    what: impl Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    match tokio::time::timeout(timeout, what).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "timed out",
        )),
    }
}
