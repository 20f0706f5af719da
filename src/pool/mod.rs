//! Server connection pools, one per (client database name, user): an alias
//! keeps its own pool because its search_path lives in the server
//! connection's startup options, and a connection is never handed to
//! another user or database.
//!
//! A pool holds idle logged-in connections and a semaphore of `size`
//! permits (plus `reserve_size` for clients that waited
//! `reserve_timeout`); a client waits at most `query_wait_timeout` for one.
//! Settings are read from the live config at every acquire, so sizes change
//! live; a changed upstream (host, port, database, TLS, startup options or
//! auth settings) drains the idle connections opened with the old one.

mod server;
mod statements;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::{PoolSettings, UpstreamTls};
use crate::metrics::{Histogram, Metrics};
use crate::protocol::{ClientFacing, SqlState};
use crate::upstream::{UpstreamFailure, open_upstream};

pub use server::{Credentials, ServerConn, ServerError, current_loop, login, set_param};
pub use statements::{
    KnownStatement, POOL_STATEMENTS_CAP, PoolStatements, SERVER_STATEMENTS_CAP,
    ServerStatementNames,
};

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where and how a pool's connections are opened: the route at the last
/// acquire.
#[derive(Debug, Clone)]
pub struct UpstreamTarget {
    pub host: String,
    pub port: u16,
    pub tls: UpstreamTls,
    /// The StartupMessage sent to the server (user, database, options).
    pub startup: bytes::Bytes,
    pub connect_timeout: Duration,
}

impl UpstreamTarget {
    /// What every connection of the pool must agree on; a change drains
    /// the idle ones. The auth settings count too.
    fn signature(&self, settings: &PoolSettings) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.host.hash(&mut h);
        self.port.hash(&mut h);
        self.tls.mode.as_str().hash(&mut h);
        self.startup.hash(&mut h);
        settings.auth.hash(&mut h);
        // Never 0: the pool's lock-free copy uses 0 for "none yet".
        h.finish().max(1)
    }

    /// Whether `other` opens connections the signature cannot tell apart
    /// from this one's (a byte comparison, cheaper than hashing).
    fn same_signature_parts(&self, other: &UpstreamTarget) -> bool {
        self.host == other.host
            && self.port == other.port
            && self.tls.mode == other.tls.mode
            && self.startup == other.startup
    }
}

/// Why a client got no server connection.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error(
        "no server connection available in pool {database}/{user} within {} ms (pool.size {size}); try again later",
        .waited.as_millis()
    )]
    Timeout {
        database: String,
        user: String,
        size: usize,
        waited: Duration,
    },
    #[error("cannot connect to upstream: {0}")]
    Upstream(#[from] UpstreamFailure),
    #[error("{0}")]
    Server(#[from] ServerError),
    #[error("the pool has no credentials for this user yet")]
    NoCredentials,
}

impl ClientFacing for PoolError {
    fn sqlstate(&self) -> SqlState {
        match self {
            PoolError::Timeout { .. } => SqlState::TooManyConnections,
            PoolError::Upstream(_) | PoolError::Server(_) | PoolError::NoCredentials => {
                SqlState::ConnectionFailure
            }
        }
    }

    fn is_fatal(&self) -> bool {
        true
    }

    fn server_frame(&self) -> Option<&[u8]> {
        match self {
            PoolError::Server(ServerError::Refused { frame, .. }) => Some(frame),
            _ => None,
        }
    }
}

/// Per-pool counters and gauges (SHOW POOLS, /metrics).
#[derive(Debug, Default)]
pub struct PoolStats {
    pub clients_active: AtomicUsize,
    pub clients_waiting: AtomicUsize,
    pub servers_active: AtomicUsize,
    pub servers_opened: AtomicU64,
    pub servers_closed: AtomicU64,
    /// Server connections handed to clients (one per session in session
    /// mode, per transaction in transaction mode).
    pub servers_used: AtomicU64,
    pub wait_timeouts: AtomicU64,
    pub wait_seconds: Histogram,
    pub prepared_hits: AtomicU64,
    pub prepared_misses: AtomicU64,
    pub prepared_evictions: AtomicU64,
    /// Transaction pooling: client Parses the proxy answered itself,
    /// between transactions, for statements the pool knew.
    pub prepared_answered: AtomicU64,
    /// Transaction pooling: bare BEGINs the proxy answered itself and sent
    /// ahead of the transaction's first request.
    pub begins_deferred: AtomicU64,
}

/// One (database name, user) pool.
#[derive(Debug)]
pub struct Pool {
    pub database: String,
    pub user: String,
    settings: Mutex<Arc<PoolSettings>>,
    /// Permits currently added to `permits` (its size).
    size_applied: Mutex<usize>,
    permits: Arc<Semaphore>,
    reserve: Arc<Semaphore>,
    reserve_applied: Mutex<usize>,
    /// Boxed: a connection moves in and out of the list, the lease and the
    /// relay at every transaction, and moving the box is one word.
    #[expect(
        clippy::vec_box,
        reason = "a connection moves out of and into the list at every transaction"
    )]
    idle: Mutex<Vec<Box<ServerConn>>>,
    /// With its signature under the settings it was followed with: every
    /// acquire follows the live route, and hashing the startup packet each
    /// time cost more than the rest of the acquire.
    target: Mutex<Option<(UpstreamTarget, u64)>>,
    credentials: Mutex<Option<Credentials>>,
    /// Lock-free copies for the per-transaction path (taking and giving
    /// back a connection): the signature in `target` (0: none yet) and
    /// `server_lifetime` in nanoseconds, both written by [`Pool::follow`].
    signature_now: AtomicU64,
    lifetime_nanos: AtomicU64,
    /// The last [`Pool::settings_owner`] drawn.
    settings_owners: AtomicU64,
    pub stats: PoolStats,
    /// Transaction mode: the statements its server connections accepted.
    pub statements: Arc<PoolStatements>,
    /// Transaction mode: the event loop its sessions relay on (an index
    /// into the proxy's workers), placed by its first client.
    event_loop: OnceLock<usize>,
}

/// What SHOW SERVERS tells of an idle connection.
#[derive(Debug, Clone)]
pub struct IdleServer {
    pub addr: std::net::SocketAddr,
    pub pid: i32,
    pub age: Duration,
    pub idle: Duration,
}

/// A server connection lent to one client, with the permit it holds.
#[derive(Debug)]
pub struct Lease {
    pub conn: Box<ServerConn>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl Pool {
    fn new(database: &str, user: &str, settings: Arc<PoolSettings>) -> Pool {
        Pool {
            database: database.to_owned(),
            user: user.to_owned(),
            size_applied: Mutex::new(settings.size),
            permits: Arc::new(Semaphore::new(settings.size)),
            reserve_applied: Mutex::new(settings.reserve_size),
            reserve: Arc::new(Semaphore::new(settings.reserve_size)),
            signature_now: AtomicU64::new(0),
            lifetime_nanos: AtomicU64::new(nanos(settings.server_lifetime)),
            settings_owners: AtomicU64::new(0),
            settings: Mutex::new(settings),
            idle: Mutex::new(Vec::new()),
            target: Mutex::new(None),
            credentials: Mutex::new(None),
            stats: PoolStats::default(),
            statements: Arc::default(),
            event_loop: OnceLock::new(),
        }
    }

    /// The event loop this pool's transaction-pooled sessions relay on,
    /// placed by `place` the first time.
    pub fn event_loop(&self, place: impl FnOnce() -> usize) -> usize {
        *self.event_loop.get_or_init(place)
    }

    pub fn settings(&self) -> Arc<PoolSettings> {
        Arc::clone(&locked(&self.settings))
    }

    pub fn idle_count(&self) -> usize {
        locked(&self.idle).len()
    }

    /// The idle connections, for SHOW SERVERS.
    pub fn idle_snapshot(&self) -> Vec<IdleServer> {
        locked(&self.idle)
            .iter()
            .map(|c| IdleServer {
                addr: c.addr,
                pid: c.key.0,
                age: c.created.elapsed(),
                idle: c.idle_since.elapsed(),
            })
            .collect()
    }

    /// The credentials a client's login revealed; new connections use the
    /// latest (a changed password takes effect at the next login).
    pub fn set_credentials(&self, credentials: Credentials) {
        *locked(&self.credentials) = Some(credentials);
    }

    /// Follow the live config: sizes change at once, a changed upstream
    /// drains the idle connections.
    pub fn follow(&self, settings: &Arc<PoolSettings>, target: UpstreamTarget) {
        let same_settings = {
            let mut current = locked(&self.settings);
            let same = Arc::ptr_eq(&current, settings);
            if !same {
                *current = Arc::clone(settings);
                self.lifetime_nanos
                    .store(nanos(settings.server_lifetime), Ordering::Relaxed);
            }
            same
        };
        resize(&self.permits, &self.size_applied, settings.size);
        resize(&self.reserve, &self.reserve_applied, settings.reserve_size);
        let mut t = locked(&self.target);
        let kept = match &*t {
            Some((old, signature)) if same_settings && old.same_signature_parts(&target) => {
                Some(*signature)
            }
            _ => None,
        };
        let signature = kept.unwrap_or_else(|| target.signature(settings));
        let changed = t.as_ref().is_some_and(|(_, old)| *old != signature);
        *t = Some((target, signature));
        self.signature_now.store(signature, Ordering::Relaxed);
        drop(t);
        if changed {
            let drained = std::mem::take(&mut *locked(&self.idle));
            self.stats
                .servers_closed
                .fetch_add(drained.len() as u64, Ordering::Relaxed);
            if !drained.is_empty() {
                tracing::info!(database = %self.database, user = %self.user, closed = drained.len(), "upstream settings changed: idle server connections closed");
            }
        }
    }

    fn signature(&self) -> Option<u64> {
        Some(self.signature_now.load(Ordering::Relaxed)).filter(|&s| s != 0)
    }

    /// A number no other client of the pool ever gets: one client's
    /// settings as they are now, for [`ServerConn::settled_for`].
    pub fn settings_owner(&self) -> u64 {
        self.settings_owners.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn lifetime(&self) -> Duration {
        Duration::from_nanos(self.lifetime_nanos.load(Ordering::Relaxed))
    }

    /// A server connection for one client: an idle one if any is healthy,
    /// else a new one, waiting at most `query_wait_timeout` for a permit.
    pub async fn acquire(self: &Arc<Self>, metrics: &Metrics) -> Result<Lease, PoolError> {
        self.acquire_on(metrics, server::current_loop()).await
    }

    /// [`Pool::acquire`] from event loop `here`, for a caller that asks at
    /// every transaction: a task never changes runtimes, so a session finds
    /// out its loop once.
    pub async fn acquire_on(
        self: &Arc<Self>,
        metrics: &Metrics,
        here: Option<tokio::runtime::Id>,
    ) -> Result<Lease, PoolError> {
        // A free permit is taken without a wait: no timer, no waiter, no
        // clock read, no settings read. Released permits go to the queued
        // waiters first, so this never overtakes a client already waiting.
        let permit = match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => {
                self.stats.wait_seconds.record(Duration::ZERO);
                permit
            }
            Err(_) => self.wait_for_permit(&self.settings()).await?,
        };
        let conn = loop {
            let Some(mut conn) = self.take_idle(here) else {
                break Box::new(self.open(metrics).await?);
            };
            // Opened on another event loop: every read of it would wake
            // this one across threads; two epoll_ctl calls move it here.
            if conn.home == here || here.is_none() || conn.rehome(here).is_ok() {
                break conn;
            }
            self.stats.servers_closed.fetch_add(1, Ordering::Relaxed);
        };
        self.stats.servers_active.fetch_add(1, Ordering::Relaxed);
        self.stats.servers_used.fetch_add(1, Ordering::Relaxed);
        Ok(Lease {
            conn,
            pool: Arc::clone(self),
            _permit: permit,
        })
    }

    async fn wait_for_permit(
        &self,
        settings: &PoolSettings,
    ) -> Result<OwnedSemaphorePermit, PoolError> {
        let started = Instant::now();
        self.stats.clients_waiting.fetch_add(1, Ordering::Relaxed);
        let permit = self.permit(settings).await;
        self.stats.clients_waiting.fetch_sub(1, Ordering::Relaxed);
        self.stats.wait_seconds.record(started.elapsed());
        permit.ok_or_else(|| {
            self.stats.wait_timeouts.fetch_add(1, Ordering::Relaxed);
            PoolError::Timeout {
                database: self.database.clone(),
                user: self.user.clone(),
                size: settings.size,
                waited: started.elapsed(),
            }
        })
    }

    async fn permit(&self, settings: &PoolSettings) -> Option<OwnedSemaphorePermit> {
        let wait = settings.query_wait_timeout;
        let main = Arc::clone(&self.permits).acquire_owned();
        if settings.reserve_size == 0 || settings.reserve_timeout >= wait {
            return tokio::time::timeout(wait, main).await.ok()?.ok();
        }
        tokio::pin!(main);
        if let Ok(p) = tokio::time::timeout(settings.reserve_timeout, &mut main).await {
            return p.ok();
        }
        let rest = wait - settings.reserve_timeout;
        let reserve = Arc::clone(&self.reserve).acquire_owned();
        let either = async {
            tokio::select! {
                p = &mut main => p.ok(),
                p = reserve => p.ok(),
            }
        };
        tokio::time::timeout(rest, either).await.ok()?
    }

    /// Keep a released connection idle from `now` on, unless it is too
    /// old or its upstream changed.
    fn keep_idle(&self, mut conn: Box<ServerConn>, now: Instant) {
        if Some(conn.upstream_signature) != self.signature()
            || now.duration_since(conn.created) >= self.lifetime()
        {
            self.stats.servers_closed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        conn.idle_since = now;
        locked(&self.idle).push(conn);
    }

    /// An idle connection, preferably one registered with the caller's
    /// event loop (its reads then wake the client's task without a
    /// cross-thread wake-up: an eventfd write and an extra epoll_wait per
    /// read otherwise); any other when none is.
    fn take_idle(&self, here: Option<tokio::runtime::Id>) -> Option<Box<ServerConn>> {
        let signature = self.signature();
        let lifetime = self.lifetime();
        let mut idle = locked(&self.idle);
        loop {
            let at = idle
                .iter()
                .rposition(|c| c.home == here)
                .or_else(|| idle.len().checked_sub(1))?;
            let conn = idle.remove(at);
            if Some(conn.upstream_signature) == signature
                && conn.created.elapsed() < lifetime
                && conn.stream.looks_alive()
            {
                return Some(conn);
            }
            self.stats.servers_closed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Open and log in a new server connection with the pool's target and
    /// credentials.
    pub async fn open(&self, metrics: &Metrics) -> Result<ServerConn, PoolError> {
        let (target, signature) = locked(&self.target)
            .clone()
            .ok_or(PoolError::NoCredentials)?;
        let credentials = locked(&self.credentials)
            .clone()
            .ok_or(PoolError::NoCredentials)?;
        let limit = target.connect_timeout;
        let (stream, addr, first) = open_upstream(
            &target.host,
            target.port,
            &target.tls,
            &target.startup,
            limit,
            metrics,
        )
        .await?;
        let conn = tokio::time::timeout(limit, login(stream, first, addr, &credentials, signature))
            .await
            .map_err(|_| PoolError::Upstream(UpstreamFailure::Timeout(limit)))??;
        self.stats.servers_opened.fetch_add(1, Ordering::Relaxed);
        Ok(conn)
    }

    /// Close idle connections past idle_timeout or server_lifetime (keeping
    /// `min_idle`), then open up to `min_idle` if credentials are known.
    pub async fn maintain(&self, metrics: &Metrics) {
        let settings = self.settings();
        {
            let mut idle = locked(&self.idle);
            let before = idle.len();
            let mut kept = 0;
            // Newest last: the oldest go first.
            idle.sort_by_key(|c| std::cmp::Reverse(c.idle_since));
            idle.retain(|c| {
                let keep = c.created.elapsed() < settings.server_lifetime
                    && (kept < settings.min_idle || c.idle_since.elapsed() < settings.idle_timeout);
                kept += usize::from(keep);
                keep
            });
            idle.reverse();
            let closed = before - idle.len();
            self.stats
                .servers_closed
                .fetch_add(closed as u64, Ordering::Relaxed);
        }
        while self.idle_count() + self.stats.servers_active.load(Ordering::Relaxed)
            < settings.min_idle
        {
            let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
                return;
            };
            match self.open(metrics).await {
                Ok(conn) => locked(&self.idle).push(Box::new(conn)),
                Err(e) => {
                    tracing::debug!(database = %self.database, user = %self.user, error = %e, "min_idle: cannot open a server connection");
                    return;
                }
            }
            drop(permit);
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Make `semaphore` hold `size` permits in all: add at once, or take the
/// surplus back as clients return them.
fn resize(semaphore: &Arc<Semaphore>, applied: &Mutex<usize>, size: usize) {
    let mut current = locked(applied);
    if size > *current {
        semaphore.add_permits(size - *current);
    } else if size < *current {
        let surplus = (*current - size) as u32;
        let semaphore = Arc::clone(semaphore);
        tokio::spawn(async move {
            if let Ok(p) = semaphore.acquire_many_owned(surplus).await {
                p.forget();
            }
        });
    }
    *current = size;
}

impl Lease {
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// Give the connection back: reset it (`server_reset_query`) and keep
    /// it idle, unless it is too old or its upstream changed. A reset runs
    /// in the background; the permit is held until the connection is idle.
    /// Without one (transaction pooling, every transaction) the connection
    /// is idle at once: no task, no move of it into one.
    pub fn release(self, reset: bool) {
        let settings = reset
            .then(|| self.pool.settings())
            .filter(|s| !s.server_reset_query.is_empty());
        let Some(settings) = settings else {
            return self.release_idle_since(Instant::now());
        };
        let Lease {
            conn,
            pool,
            _permit,
        } = self;
        pool.stats.servers_active.fetch_sub(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let mut conn = conn;
            if let Err(e) = conn.simple(&settings.server_reset_query).await {
                tracing::debug!(database = %pool.database, user = %pool.user, error = %e, "server reset failed; connection closed");
                pool.stats.servers_closed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            conn.applied.clear();
            conn.settled_for = 0;
            pool.keep_idle(conn, Instant::now());
            drop(_permit);
        });
    }

    /// Give the connection back without a reset, idle since `now` (the
    /// caller's clock read at its last ReadyForQuery: transaction pooling
    /// gives one back per transaction and reads no clock for it).
    pub fn release_idle_since(self, now: Instant) {
        let Lease {
            conn,
            pool,
            _permit,
        } = self;
        pool.stats.servers_active.fetch_sub(1, Ordering::Relaxed);
        pool.keep_idle(conn, now);
        drop(_permit);
    }

    /// Close the connection (the client left mid-transaction, or the
    /// connection broke).
    pub fn discard(self) {
        self.pool
            .stats
            .servers_active
            .fetch_sub(1, Ordering::Relaxed);
        self.pool
            .stats
            .servers_closed
            .fetch_add(1, Ordering::Relaxed);
    }
}

/// Every pool of the process.
#[derive(Debug)]
pub struct Pools {
    pools: Mutex<HashMap<(String, String), Arc<Pool>>>,
    /// Wakes [`Pools::maintain`] when the first pool is made.
    made: tokio::sync::Notify,
    /// Keys the mock SCRAM salts of unknown users (stable for the
    /// process's life, as PostgreSQL's for its cluster's).
    mock_secret: [u8; 32],
}

impl Default for Pools {
    fn default() -> Self {
        let mut mock_secret = [0u8; 32];
        rand::Rng::fill_bytes(&mut rand::rng(), &mut mock_secret);
        Pools {
            pools: Mutex::default(),
            made: tokio::sync::Notify::new(),
            mock_secret,
        }
    }
}

impl Pools {
    pub fn mock_secret(&self) -> &[u8; 32] {
        &self.mock_secret
    }

    /// The pool of (`database`, `user`), made on first use.
    pub fn get(&self, database: &str, user: &str, settings: &Arc<PoolSettings>) -> Arc<Pool> {
        let mut pools = locked(&self.pools);
        if let Some(p) = pools.get(&(database.to_owned(), user.to_owned())) {
            return Arc::clone(p);
        }
        let pool = Arc::new(Pool::new(database, user, Arc::clone(settings)));
        pools.insert((database.to_owned(), user.to_owned()), Arc::clone(&pool));
        self.made.notify_one();
        pool
    }

    /// Every pool, sorted by database then user.
    pub fn all(&self) -> Vec<Arc<Pool>> {
        let mut all: Vec<_> = locked(&self.pools).values().cloned().collect();
        all.sort_by(|a, b| (&a.database, &a.user).cmp(&(&b.database, &b.user)));
        all
    }

    /// Run [`Pool::maintain`] on every pool every second until `stop`.
    /// No event loop holds a timer for it: a due timer makes every park of
    /// its loop do the time driver's work (callgrind: ~700 instructions per
    /// statement of a pooled session on that loop, 1 client), so a plain
    /// thread sleeps the second and wakes this task (one cross-thread wake
    /// a second). Until a pool exists not even that thread runs.
    pub async fn maintain(
        self: Arc<Self>,
        metrics: Arc<Metrics>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        if locked(&self.pools).is_empty() {
            tokio::select! {
                () = self.made.notified() => {}
                () = stop.cancelled() => return,
            }
        }
        let tick = Arc::new(tokio::sync::Notify::new());
        let _ticker = match Ticker::start(Arc::clone(&tick), Duration::from_secs(1)) {
            Ok(ticker) => ticker,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the pool maintenance thread; idle connections are not closed");
                return;
            }
        };
        loop {
            // A tick while pools are being maintained is kept (one permit),
            // as an interval that delays missed ticks.
            tokio::select! {
                () = tick.notified() => {}
                () = stop.cancelled() => return,
            }
            for pool in self.all() {
                pool.maintain(&metrics).await;
            }
        }
    }
}

/// A thread that wakes `tick` every `period` until dropped.
struct Ticker {
    stopped: Arc<std::sync::atomic::AtomicBool>,
}

impl Ticker {
    fn start(tick: Arc<tokio::sync::Notify>, period: Duration) -> std::io::Result<Ticker> {
        let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = Arc::clone(&stopped);
        std::thread::Builder::new()
            .name("heal7-pool-tick".into())
            .spawn(move || {
                while !seen.load(Ordering::Relaxed) {
                    std::thread::sleep(period);
                    tick.notify_one();
                }
            })?;
        Ok(Ticker { stopped })
    }
}

impl Drop for Ticker {
    /// The thread ends within one period.
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::Relaxed);
    }
}
