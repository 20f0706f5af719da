//! Multiplexing: server connections shared by the "plain" clients of one
//! event loop, one per target database (as twemproxy shares one per
//! server), so that one write and one read on the server serve many
//! clients' commands.
//!
//! A shared connection is logged in with `redis.upstream`'s credentials,
//! speaks RESP2 and has its database selected: exactly the state of a
//! client that changed nothing on its connection. Such a client's batch of
//! commands goes in as one job; a writer drains every job queued and writes
//! them in one go, a reader hands the replies back first in, first out.
//! Each job's replies come back in its own order, so a client's pipeline
//! keeps its order. A client that sends anything that would make its
//! connection differ, or that may block or hold a connection ([`leaves`]),
//! moves to connections of its own for good, after its shared replies are
//! in (a session waits for each batch's replies before the next command).
//!
//! A plain client alone on its event loop gains nothing from sharing and
//! pays two task hops per round trip (to the writer, back from the
//! reader): while it is the only plain client there ([`PlainClient::alone`]),
//! its batches go to a connection of its own, in the very state of a shared
//! one (same login, RESP2, its database selected). When a second plain
//! client arrives it closes that connection and joins the shared one at its
//! next batch; a session waits for each batch's replies before the next, so
//! a client never has commands in flight on two connections.
//!
//! A shared connection that fails (server gone, `CLIENT KILL`, a reply
//! that cannot be read) answers each command in flight on it with `-ERR`
//! and ends; the next job opens a new one. A changed `redis.upstream` or
//! `max_reply_bytes` (reload) opens new ones for later jobs; the old ones
//! finish what they carry and close.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use crate::stream::{ReadHalf as OwnedReadHalf, WriteHalf as OwnedWriteHalf};
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::upstream::{Setup, Upstream, UpstreamError};
use crate::config::{RedisConfig, RedisUpstream};
use crate::keyspace::CommandTable;
use crate::metrics::Metrics;
use crate::metrics::redis::DedicatedReason;
use crate::resp::{self, Args, RespError};

/// Bytes of queued jobs written in one go.
const WRITE_BYTES: usize = 256 * 1024;

/// One reply to one command, or the error line (without `-`) that stands
/// for it when the shared connection failed.
pub type Reply = Result<Bytes, Arc<str>>;

/// The shared connections of one Redis listener, by event loop and
/// database.
pub struct SharedConnections {
    conns: Mutex<HashMap<(ThreadId, u16), Entry>>,
    /// Plain clients (on the shared path) per event loop.
    plain: Mutex<HashMap<ThreadId, Arc<AtomicUsize>>>,
    /// `CLIENT SETNAME` of each shared connection, for operators.
    name: String,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
}

struct Entry {
    handle: Shared,
    upstream: RedisUpstream,
    max_reply: usize,
}

/// A way to queue jobs on one shared connection.
#[derive(Clone)]
pub struct Shared {
    jobs: mpsc::UnboundedSender<Job>,
}

/// One client's batch: `n` commands, their replies to `replies`.
struct Job {
    bytes: Bytes,
    n: usize,
    replies: mpsc::UnboundedSender<Reply>,
}

/// A job written, its replies not all read yet.
struct Pending {
    n: usize,
    replies: mpsc::UnboundedSender<Reply>,
}

impl Shared {
    /// Queue `n` commands; their replies come to `replies` in order. False:
    /// this connection has ended (ask [`SharedConnections::get`] again).
    pub fn send(&self, bytes: Bytes, n: usize, replies: &mpsc::UnboundedSender<Reply>) -> bool {
        self.jobs
            .send(Job {
                bytes,
                n,
                replies: replies.clone(),
            })
            .is_ok()
    }

    pub fn is_closed(&self) -> bool {
        self.jobs.is_closed()
    }
}

impl SharedConnections {
    /// `listen_port` names the connections (`heal7-proxy-mux-PORT-dbN` in
    /// the server's `CLIENT LIST`).
    pub fn new(listen_port: u16, metrics: Arc<Metrics>, shutdown: CancellationToken) -> Self {
        SharedConnections {
            conns: Mutex::default(),
            plain: Mutex::default(),
            name: format!("heal7-proxy-mux-{listen_port}"),
            metrics,
            shutdown,
        }
    }

    /// The shared connection of this event loop for `db`, opened (in a
    /// task of this event loop) when there is none, it has ended, or the
    /// upstream settings changed. Must be called inside a tokio runtime.
    pub fn get(&self, db: u16, cfg: &RedisConfig, timeout: Duration) -> Shared {
        let key = (std::thread::current().id(), db);
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = conns.get(&key)
            && !e.handle.is_closed()
            && e.upstream == cfg.upstream
            && e.max_reply == cfg.max_reply_bytes
        {
            return e.handle.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = Shared { jobs: tx };
        tokio::spawn(run(
            rx,
            Opening {
                upstream: cfg.upstream.clone(),
                db,
                max_reply: cfg.max_reply_bytes,
                timeout,
                name: format!("{}-db{db}", self.name),
            },
            Arc::clone(&self.metrics),
            self.shutdown.clone(),
        ));
        conns.insert(
            key,
            Entry {
                handle: handle.clone(),
                upstream: cfg.upstream.clone(),
                max_reply: cfg.max_reply_bytes,
            },
        );
        handle
    }
}

/// A plain client of one event loop, counted while it lives (dropped when
/// the client leaves the shared path or ends).
pub struct PlainClient {
    count: Arc<AtomicUsize>,
}

impl PlainClient {
    /// Whether no other plain client is connected to this event loop.
    pub fn alone(&self) -> bool {
        self.count.load(Ordering::Relaxed) == 1
    }
}

impl Drop for PlainClient {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}

impl SharedConnections {
    /// Count a plain client of the calling thread's event loop.
    pub fn join(&self) -> PlainClient {
        let mut plain = self.plain.lock().unwrap_or_else(|p| p.into_inner());
        let count = Arc::clone(plain.entry(std::thread::current().id()).or_default());
        count.fetch_add(1, Ordering::Relaxed);
        PlainClient { count }
    }
}

/// Whether a command makes its client leave the shared connections, and
/// why: its effect or its wait is per connection. By name first (so that
/// without a command table, as in mode off, the known ones still leave),
/// then by the server's own flags: `blocking`; `allow_busy` (SCRIPT KILL
/// must not queue behind the script it kills); `noscript` (connection
/// state, replication, server control) but for the script and admin
/// commands that act on the server alone; and a command the table does not
/// know. When in doubt, a connection of its own.
pub fn leaves(name: &[u8], args: &Args, table: Option<&CommandTable>) -> Option<DedicatedReason> {
    use DedicatedReason as R;
    let by_name = match name {
        b"auth" => Some(R::Auth),
        b"hello" => Some(R::Hello),
        b"client" => Some(R::Client),
        b"multi" | b"exec" | b"discard" | b"watch" | b"unwatch" => Some(R::Transaction),
        b"subscribe" | b"psubscribe" | b"ssubscribe" | b"unsubscribe" | b"punsubscribe"
        | b"sunsubscribe" | b"monitor" => Some(R::Pubsub),
        b"blpop" | b"brpop" | b"brpoplpush" | b"blmove" | b"blmpop" | b"bzpopmin" | b"bzpopmax"
        | b"bzmpop" | b"xread" | b"xreadgroup" | b"wait" | b"waitaof" => Some(R::Blocking),
        b"reset" | b"readonly" | b"readwrite" | b"asking" | b"sync" | b"psync" | b"replconf"
        | b"debug" | b"shutdown" | b"failover" | b"replicaof" | b"slaveof" => Some(R::Connection),
        _ => None,
    };
    if by_name.is_some() {
        return by_name;
    }
    let table = table?;
    let Some(spec) = table.spec(args) else {
        return Some(R::Unknown);
    };
    let server_only = matches!(
        name,
        b"eval"
            | b"eval_ro"
            | b"evalsha"
            | b"evalsha_ro"
            | b"fcall"
            | b"fcall_ro"
            | b"script"
            | b"function"
            | b"config"
            | b"acl"
            | b"latency"
            | b"role"
            | b"bgsave"
            | b"bgrewriteaof"
    );
    if spec.flags.blocking {
        Some(R::Blocking)
    } else if spec.flags.allow_busy || (spec.flags.noscript && !server_only) {
        Some(R::Connection)
    } else {
        None
    }
}

/// What a new shared connection needs.
struct Opening {
    upstream: RedisUpstream,
    db: u16,
    max_reply: usize,
    timeout: Duration,
    name: String,
}

/// Keeps `shared_connections` right however the task ends.
struct Gauge(Arc<Metrics>);

impl Drop for Gauge {
    fn drop(&mut self) {
        self.0
            .redis
            .shared_connections
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// One shared connection's life: open it, then write and read until it
/// fails, the proxy shuts down, or every handle is gone.
async fn run(
    mut jobs: mpsc::UnboundedReceiver<Job>,
    open: Opening,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let connected = Upstream::connect(Setup {
        upstream: &open.upstream,
        client_commands: &[],
        db: open.db,
        timeout: open.timeout,
        max_reply: open.max_reply,
    })
    .await;
    let mut up = match connected {
        Ok(up) => up,
        Err(e) => {
            metrics
                .redis
                .upstream_errors
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(db = open.db, error = %e, "redis shared connection failed");
            let line: Arc<str> = match e {
                UpstreamError::Refused(text) => text.into(),
                other => format!("ERR heal7-proxy: {other}").into(),
            };
            jobs.close();
            while let Ok(job) = jobs.try_recv() {
                fail(job.n, &job.replies, &line);
            }
            return;
        }
    };
    // The name only helps operators: a user without CLIENT rights is fine.
    let setname = vec![
        Bytes::from_static(b"CLIENT"),
        Bytes::from_static(b"SETNAME"),
        Bytes::from(open.name.clone()),
    ];
    let _ = tokio::time::timeout(open.timeout, up.call(&[setname])).await;
    metrics
        .redis
        .shared_connections
        .fetch_add(1, Ordering::Relaxed);
    let _gauge = Gauge(Arc::clone(&metrics));
    tracing::debug!(db = open.db, name = %open.name, "redis shared connection open");
    let (stream, buf) = up.into_parts();
    let (read, write) = stream.into_split();
    let (pending_tx, pending_rx) = mpsc::unbounded_channel();
    let dead = CancellationToken::new();
    // One task: the writer and the reader are polled together (neither
    // waits for the other), and the write half lives until the reader is
    // done (dropping it would end the connection under the last replies).
    let (_write, failure) = tokio::join!(
        writer(write, jobs, pending_tx, dead.clone(), shutdown.clone()),
        reader(read, buf, pending_rx, open.max_reply, dead, shutdown),
    );
    if let Some(line) = failure {
        metrics
            .redis
            .upstream_errors
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(db = open.db, error = %line, "redis shared connection ended");
    }
}

/// Drain the queued jobs, write them in one go, hand them to the reader
/// (before the bytes leave, so a reply always finds its job).
async fn writer(
    mut w: OwnedWriteHalf,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    pending: mpsc::UnboundedSender<Pending>,
    dead: CancellationToken,
    shutdown: CancellationToken,
) -> OwnedWriteHalf {
    let mut out = BytesMut::new();
    let mut parts: Vec<Bytes> = Vec::new();
    // Registered once, not at every turn of the loop.
    let dead_wait = dead.cancelled();
    let shutdown_wait = shutdown.cancelled();
    tokio::pin!(dead_wait, shutdown_wait);
    loop {
        let job = tokio::select! {
            j = jobs.recv() => j,
            () = &mut dead_wait => None,
            () = &mut shutdown_wait => None,
        };
        let Some(job) = job else { break };
        let mut size = job.bytes.len();
        parts.push(job.bytes);
        let _ = pending.send(Pending {
            n: job.n,
            replies: job.replies,
        });
        while size < WRITE_BYTES
            && let Ok(job) = jobs.try_recv()
        {
            size += job.bytes.len();
            parts.push(job.bytes);
            let _ = pending.send(Pending {
                n: job.n,
                replies: job.replies,
            });
        }
        let written = if parts.len() == 1 {
            w.write_all(&parts[0]).await
        } else {
            out.clear();
            for p in &parts {
                out.extend_from_slice(p);
            }
            w.write_all(&out).await
        };
        // Over TLS, rustls may still hold the ciphertext.
        let written = match written {
            Ok(()) if w.is_tls() => w.flush().await,
            other => other,
        };
        parts.clear();
        if written.is_err() {
            dead.cancel();
            break;
        }
    }
    // Jobs queued but never written are answered by the reader (with the
    // failure, or at shutdown).
    jobs.close();
    while let Ok(job) = jobs.try_recv() {
        let _ = pending.send(Pending {
            n: job.n,
            replies: job.replies,
        });
    }
    w
}

/// Read replies and hand each to the oldest job still owed one. Returns
/// the error line it answered the jobs in flight with, if it failed.
async fn reader(
    mut r: OwnedReadHalf,
    mut buf: BytesMut,
    mut pending: mpsc::UnboundedReceiver<Pending>,
    max_reply: usize,
    dead: CancellationToken,
    shutdown: CancellationToken,
) -> Option<Arc<str>> {
    let mut queue: VecDeque<Pending> = VecDeque::new();
    let mut writer_open = true;
    // Bytes still to drop of a reply past `max_reply`.
    let mut skip = 0usize;
    let dead_wait = dead.cancelled();
    let shutdown_wait = shutdown.cancelled();
    tokio::pin!(dead_wait, shutdown_wait);
    let failure: String = 'conn: loop {
        if skip > 0 {
            let k = skip.min(buf.len());
            buf.advance(k);
            skip -= k;
        }
        while skip == 0 {
            match resp::reply_len(&buf, max_reply) {
                Ok(Some(len)) => {
                    let reply = buf.split_to(len).freeze();
                    // RESP2 has no pushes; one would answer nothing.
                    if reply.first() == Some(&b'>') {
                        continue;
                    }
                    if !deliver(&mut queue, &mut pending, Ok(reply)) {
                        break 'conn "a reply to no command".into();
                    }
                }
                Ok(None) => break,
                Err(RespError::BulkTooLong(len, max)) if buf.first() == Some(&b'$') => {
                    // One value too large for `max_reply_bytes`: that
                    // command gets the error, its bytes are dropped as they
                    // come, the others go on.
                    let Some(header) = buf.windows(2).position(|w| w == b"\r\n") else {
                        break 'conn "a bad bulk header".into();
                    };
                    buf.advance(header + 2);
                    skip = len as usize + 2;
                    let line = format!(
                        "ERR heal7-proxy: bad reply from the Redis server: {}",
                        RespError::BulkTooLong(len, max)
                    );
                    if !deliver(&mut queue, &mut pending, Err(line.into())) {
                        break 'conn "a reply to no command".into();
                    }
                }
                Err(e) => break 'conn format!("bad reply from the Redis server: {e}"),
            }
        }
        if skip > 0 && !buf.is_empty() {
            continue;
        }
        if !writer_open && queue.is_empty() && skip == 0 {
            return None;
        }
        tokio::select! {
            biased;
            p = pending.recv(), if writer_open => match p {
                Some(p) => queue.push_back(p),
                None => writer_open = false,
            },
            n = r.read_buf(&mut buf) => match n {
                Ok(0) => break 'conn "connection to the Redis server lost: closed by the server".into(),
                Ok(_) => {}
                Err(e) => break 'conn format!("connection to the Redis server lost: {e}"),
            },
            () = &mut dead_wait => break 'conn "connection to the Redis server lost: write failed".into(),
            () = &mut shutdown_wait => break 'conn "the proxy is shutting down".into(),
        }
    };
    dead.cancel();
    let line: Arc<str> = format!("ERR heal7-proxy: {failure}").into();
    for p in queue.drain(..) {
        fail(p.n, &p.replies, &line);
    }
    // The writer closes its side once it sees `dead`.
    if writer_open {
        while let Some(p) = pending.recv().await {
            fail(p.n, &p.replies, &line);
        }
    }
    Some(line)
}

/// Give `reply` to the oldest job owed one; false when none is.
fn deliver(
    queue: &mut VecDeque<Pending>,
    pending: &mut mpsc::UnboundedReceiver<Pending>,
    reply: Reply,
) -> bool {
    loop {
        match queue.front() {
            Some(p) if p.n > 0 => break,
            Some(_) => {
                queue.pop_front();
            }
            None => match pending.try_recv() {
                Ok(p) => queue.push_back(p),
                Err(_) => return false,
            },
        }
    }
    let front = queue.front_mut().expect("checked above");
    // A client that left (shutdown) no longer reads: fine.
    let _ = front.replies.send(reply);
    front.n -= 1;
    if front.n == 0 {
        queue.pop_front();
    }
    true
}

fn fail(n: usize, replies: &mpsc::UnboundedSender<Reply>, line: &Arc<str>) {
    for _ in 0..n {
        if replies.send(Err(Arc::clone(line))).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::Value;

    fn args(words: &str) -> Args {
        words
            .split(' ')
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    fn table() -> CommandTable {
        let entry = |name: &str, flags: &[&str]| {
            Value::Aggregate(
                b'*',
                crate::keyspace::commands::command_reply_entry(name, -1, b'*', flags, (0, 0, 0)),
            )
        };
        let reply = Value::Aggregate(
            b'*',
            vec![
                entry("get", &["readonly", "fast"]),
                entry("ping", &["fast"]),
                entry("eval", &["noscript", "movablekeys"]),
                entry("script", &["noscript", "allow_busy"]),
                entry("bgsave", &["admin", "noscript"]),
                entry("monitor2", &["noscript"]),
                entry("xautoclaim2", &["blocking"]),
            ],
        );
        CommandTable::from_command_reply(&reply).unwrap()
    }

    #[test]
    fn plain_commands_stay_and_connection_commands_leave() {
        let t = table();
        let why = |a: &str| {
            let a = args(a);
            leaves(&a[0].to_ascii_lowercase(), &a, Some(&t))
        };
        use DedicatedReason as R;
        assert_eq!(why("GET k"), None);
        assert_eq!(why("PING"), None);
        assert_eq!(why("EVAL s 0"), None, "scripts act on the server alone");
        assert_eq!(why("BGSAVE"), None);
        assert_eq!(why("AUTH pw"), Some(R::Auth));
        assert_eq!(why("HELLO 3"), Some(R::Hello));
        assert_eq!(why("CLIENT GETNAME"), Some(R::Client));
        assert_eq!(why("WATCH k"), Some(R::Transaction));
        assert_eq!(why("BLPOP k 0"), Some(R::Blocking));
        assert_eq!(why("SUBSCRIBE c"), Some(R::Pubsub));
        assert_eq!(why("RESET"), Some(R::Connection));
        assert_eq!(why("SCRIPT KILL"), Some(R::Connection), "allow_busy");
        assert_eq!(why("MONITOR2"), Some(R::Connection), "noscript");
        assert_eq!(why("XAUTOCLAIM2 k"), Some(R::Blocking), "blocking flag");
        assert_eq!(why("NOSUCHCOMMAND"), Some(R::Unknown));
        // Without a table (mode off): the names alone.
        let b = args("BLPOP k 0");
        assert_eq!(leaves(b"blpop", &b, None), Some(R::Blocking));
        assert_eq!(leaves(b"nosuch", &args("NOSUCH"), None), None);
    }
}
