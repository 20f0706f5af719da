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
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::thread::ThreadId;
use std::time::Duration;

use crate::stream::{ReadHalf as OwnedReadHalf, WriteHalf as OwnedWriteHalf};
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::upstream::{Setup, Upstream, UpstreamError};
use crate::config::{RedisConfig, RedisUpstream};
use crate::keyspace::CommandTable;
use crate::metrics::Metrics;
use crate::metrics::redis::DedicatedReason;
use crate::resp::{self, Args, RespError};

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

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where one client's replies from the shared connections land: the
/// reader pushes them, the client's session takes them all at its next
/// turn. One per client, kept from batch to batch (no channel, no
/// allocation per reply).
#[derive(Default)]
pub struct Replies {
    inbox: Mutex<Inbox>,
}

#[derive(Default)]
struct Inbox {
    replies: VecDeque<Reply>,
    /// The session's task, kept (it does not change) and woken only while
    /// it waits.
    waker: Option<Waker>,
    waiting: bool,
}

impl Replies {
    fn push(&self, reply: Reply) {
        let mut inbox = locked(&self.inbox);
        inbox.replies.push_back(reply);
        if inbox.waiting {
            inbox.waiting = false;
            if let Some(w) = &inbox.waker {
                w.wake_by_ref();
            }
        }
    }

    /// Wait for at least one reply, then move every reply there into
    /// `into` (which must be empty), in order.
    pub async fn take(&self, into: &mut VecDeque<Reply>) {
        debug_assert!(into.is_empty());
        poll_fn(|cx| {
            let mut inbox = locked(&self.inbox);
            if inbox.replies.is_empty() {
                if !inbox
                    .waker
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    inbox.waker = Some(cx.waker().clone());
                }
                inbox.waiting = true;
                return Poll::Pending;
            }
            inbox.waiting = false;
            std::mem::swap(&mut inbox.replies, into);
            Poll::Ready(())
        })
        .await
    }
}

/// A way to queue jobs on one shared connection. The connection's task
/// ends once every handle is gone and what was queued is answered.
pub struct Shared {
    conn: Arc<Conn>,
}

/// One shared connection's queue, between the sessions, its writer and
/// its reader.
struct Conn {
    state: Mutex<ConnState>,
    /// Set with `ConnState::ended`: read without the lock at every batch.
    closed: AtomicBool,
    handles: AtomicUsize,
}

#[derive(Default)]
struct ConnState {
    /// Queued commands not yet taken by the writer: a session appends its
    /// batch, the writer takes it all in one go.
    out: BytesMut,
    /// Jobs owed replies, in the order of their bytes in `out` and on the
    /// wire: the reader answers the front one.
    queue: VecDeque<Pending>,
    writer: Option<Waker>,
    writer_waiting: bool,
    reader: Option<Waker>,
    reader_waiting: bool,
    /// Every handle gone and nothing left in `out`: the writer is done.
    writer_done: bool,
    /// Why the connection ended (failed, or the proxy is shutting down):
    /// no job is taken from then on.
    ended: Option<Arc<str>>,
}

/// A job queued, its replies not all read yet.
struct Pending {
    n: usize,
    to: Arc<Replies>,
}

impl Pending {
    fn fail(&mut self, line: &Arc<str>) {
        for _ in 0..self.n {
            self.to.push(Err(Arc::clone(line)));
        }
        self.n = 0;
    }
}

impl Drop for Pending {
    /// Whatever happens to the connection's task, a client waiting for
    /// replies gets one per command.
    fn drop(&mut self) {
        if self.n > 0 {
            self.fail(&Arc::from(
                "ERR heal7-proxy: connection to the Redis server lost",
            ));
        }
    }
}

fn wake(waiting: &mut bool, waker: &Option<Waker>) {
    if std::mem::take(waiting)
        && let Some(w) = waker
    {
        w.wake_by_ref();
    }
}

fn register(slot: &mut Option<Waker>, waiting: &mut bool, cx: &Context<'_>) {
    if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
        *slot = Some(cx.waker().clone());
    }
    *waiting = true;
}

impl Conn {
    fn new() -> Arc<Conn> {
        Arc::new(Conn {
            state: Mutex::default(),
            closed: AtomicBool::new(false),
            handles: AtomicUsize::new(0),
        })
    }

    /// End the connection: every job owed replies gets `line` for each,
    /// and no job is taken any more. The first reason stays.
    fn end(&self, line: Arc<str>) {
        let mut s = locked(&self.state);
        if s.ended.is_some() {
            return;
        }
        self.closed.store(true, Ordering::Release);
        s.ended = Some(Arc::clone(&line));
        s.out.clear();
        let mut queue = std::mem::take(&mut s.queue);
        let s = &mut *s;
        wake(&mut s.writer_waiting, &s.writer);
        wake(&mut s.reader_waiting, &s.reader);
        for p in queue.iter_mut() {
            p.fail(&line);
        }
    }

    /// The writer's wait: `true` with the queued bytes in `buf` (swapped
    /// with its empty buffer), `false` once it has nothing more to do.
    fn take_out(&self, cx: &Context<'_>, buf: &mut BytesMut) -> Poll<bool> {
        let mut s = locked(&self.state);
        if s.ended.is_some() {
            return Poll::Ready(false);
        }
        if !s.out.is_empty() {
            std::mem::swap(&mut s.out, buf);
            return Poll::Ready(true);
        }
        if self.handles.load(Ordering::Acquire) == 0 {
            s.writer_done = true;
            let s = &mut *s;
            wake(&mut s.reader_waiting, &s.reader);
            return Poll::Ready(false);
        }
        let s = &mut *s;
        register(&mut s.writer, &mut s.writer_waiting, cx);
        Poll::Pending
    }

    /// The reader's wait besides its socket: ready when the connection has
    /// ended, or the writer is done and every job answered.
    fn reader_event(&self, cx: &Context<'_>) -> Poll<()> {
        let mut s = locked(&self.state);
        if s.ended.is_some() || (s.writer_done && s.queue.is_empty()) {
            return Poll::Ready(());
        }
        let s = &mut *s;
        register(&mut s.reader, &mut s.reader_waiting, cx);
        Poll::Pending
    }
}

impl Shared {
    fn new(conn: Arc<Conn>) -> Shared {
        conn.handles.fetch_add(1, Ordering::AcqRel);
        Shared { conn }
    }

    /// Queue the `n` commands of `bytes`; their replies go to `to` in
    /// order. False: this connection has ended (ask
    /// [`SharedConnections::get`] again). The writer is woken only by the
    /// first job of its next write.
    pub fn send(&self, bytes: &[u8], n: usize, to: &Arc<Replies>) -> bool {
        let mut s = locked(&self.conn.state);
        if s.ended.is_some() {
            return false;
        }
        s.out.extend_from_slice(bytes);
        s.queue.push_back(Pending {
            n,
            to: Arc::clone(to),
        });
        let s = &mut *s;
        wake(&mut s.writer_waiting, &s.writer);
        true
    }

    pub fn is_closed(&self) -> bool {
        self.conn.closed.load(Ordering::Acquire)
    }
}

impl Clone for Shared {
    fn clone(&self) -> Shared {
        Shared::new(Arc::clone(&self.conn))
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if self.conn.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            let mut s = locked(&self.conn.state);
            let s = &mut *s;
            wake(&mut s.writer_waiting, &s.writer);
        }
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
        let mut conns = locked(&self.conns);
        if let Some(e) = conns.get(&key)
            && !e.handle.is_closed()
            && e.upstream == cfg.upstream
            && e.max_reply == cfg.max_reply_bytes
        {
            return e.handle.clone();
        }
        let conn = Conn::new();
        let handle = Shared::new(Arc::clone(&conn));
        tokio::spawn(run(
            conn,
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
        let mut plain = locked(&self.plain);
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
async fn run(conn: Arc<Conn>, open: Opening, metrics: Arc<Metrics>, shutdown: CancellationToken) {
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
            conn.end(line);
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
    // One task: the writer and the reader are polled together (neither
    // waits for the other), and the write half lives until the reader is
    // done (dropping it would end the connection under the last replies).
    let (_write, ()) = tokio::join!(
        writer(write, &conn, shutdown.clone()),
        reader(read, buf, &conn, open.max_reply, shutdown),
    );
    let ended = locked(&conn.state).ended.clone();
    if let Some(line) = ended {
        metrics
            .redis
            .upstream_errors
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(db = open.db, error = %line, "redis shared connection ended");
    }
}

/// Take whatever the sessions queued and write it in one go (their jobs
/// are already in the reader's queue, so a reply always finds its job).
async fn writer(mut w: OwnedWriteHalf, conn: &Conn, shutdown: CancellationToken) -> OwnedWriteHalf {
    let mut buf = BytesMut::new();
    // Registered once, not at every turn of the loop.
    let shutdown_wait = shutdown.cancelled();
    tokio::pin!(shutdown_wait);
    loop {
        let more = tokio::select! {
            biased;
            more = poll_fn(|cx| conn.take_out(cx, &mut buf)) => more,
            () = &mut shutdown_wait => {
                conn.end("ERR heal7-proxy: the proxy is shutting down".into());
                false
            }
        };
        if !more {
            break;
        }
        let written = w.write_all(&buf).await;
        // Over TLS, rustls may still hold the ciphertext.
        let written = match written {
            Ok(()) if w.is_tls() => w.flush().await,
            other => other,
        };
        buf.clear();
        if written.is_err() {
            conn.end("ERR heal7-proxy: connection to the Redis server lost: write failed".into());
            break;
        }
    }
    w
}

/// Read replies and hand each to the oldest job still owed one, until the
/// connection ends or the writer is done and every job answered.
async fn reader(
    mut r: OwnedReadHalf,
    mut buf: BytesMut,
    conn: &Conn,
    max_reply: usize,
    shutdown: CancellationToken,
) {
    // Bytes still to drop of a reply past `max_reply`.
    let mut skip = 0usize;
    let shutdown_wait = shutdown.cancelled();
    tokio::pin!(shutdown_wait);
    let failure: String = 'conn: loop {
        if skip > 0 {
            let k = skip.min(buf.len());
            buf.advance(k);
            skip -= k;
        }
        if skip == 0 && !buf.is_empty() {
            // One lock for every reply of this read.
            let mut s = locked(&conn.state);
            if s.ended.is_some() {
                return;
            }
            if let Err(why) = deliver_all(&mut buf, &mut skip, max_reply, &mut s.queue) {
                break 'conn why;
            }
        }
        if skip > 0 && !buf.is_empty() {
            continue;
        }
        tokio::select! {
            biased;
            n = r.read_buf(&mut buf) => match n {
                Ok(0) => break 'conn "connection to the Redis server lost: closed by the server".into(),
                Ok(_) => {}
                Err(e) => break 'conn format!("connection to the Redis server lost: {e}"),
            },
            () = poll_fn(|cx| conn.reader_event(cx)) => {
                // Ended (the writer failed, shutdown), or done.
                return;
            }
            () = &mut shutdown_wait => break 'conn "the proxy is shutting down".into(),
        }
    };
    conn.end(format!("ERR heal7-proxy: {failure}").into());
}

/// Hand every whole reply in `buf` to its job. `Err`: why the connection
/// cannot go on.
fn deliver_all(
    buf: &mut BytesMut,
    skip: &mut usize,
    max_reply: usize,
    queue: &mut VecDeque<Pending>,
) -> Result<(), String> {
    while *skip == 0 {
        match resp::reply_len(buf, max_reply) {
            Ok(Some(len)) => {
                let reply = buf.split_to(len).freeze();
                // RESP2 has no pushes; one would answer nothing.
                if reply.first() == Some(&b'>') {
                    continue;
                }
                deliver(queue, Ok(reply))?;
            }
            Ok(None) => break,
            Err(RespError::BulkTooLong(len, max)) if buf.first() == Some(&b'$') => {
                // One value too large for `max_reply_bytes`: that command
                // gets the error, its bytes are dropped as they come, the
                // others go on.
                let Some(header) = buf.windows(2).position(|w| w == b"\r\n") else {
                    return Err("a bad bulk header".into());
                };
                buf.advance(header + 2);
                *skip = len as usize + 2;
                let line = format!(
                    "ERR heal7-proxy: bad reply from the Redis server: {}",
                    RespError::BulkTooLong(len, max)
                );
                deliver(queue, Err(line.into()))?;
                let k = (*skip).min(buf.len());
                buf.advance(k);
                *skip -= k;
            }
            Err(e) => return Err(format!("bad reply from the Redis server: {e}")),
        }
    }
    Ok(())
}

/// Give `reply` to the oldest job owed one.
fn deliver(queue: &mut VecDeque<Pending>, reply: Reply) -> Result<(), String> {
    while queue.front().is_some_and(|p| p.n == 0) {
        queue.pop_front();
    }
    let Some(front) = queue.front_mut() else {
        return Err("a reply to no command".into());
    };
    front.to.push(reply);
    front.n -= 1;
    if front.n == 0 {
        queue.pop_front();
    }
    Ok(())
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

    async fn taken(r: &Replies) -> Vec<String> {
        let mut got = VecDeque::new();
        r.take(&mut got).await;
        got.into_iter()
            .map(|r| match r {
                Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                Err(line) => format!("err {line}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn interleaved_jobs_get_their_own_replies_in_order() {
        let conn = Conn::new();
        let h = Shared::new(Arc::clone(&conn));
        let (a, b) = (Arc::new(Replies::default()), Arc::new(Replies::default()));
        assert!(h.send(b"A1A2", 2, &a));
        assert!(h.send(b"B1", 1, &b));
        assert!(h.send(b"A3", 1, &a));
        // The writer takes every queued byte in one go, in queue order.
        let mut out = BytesMut::new();
        let took = conn.take_out(&Context::from_waker(Waker::noop()), &mut out);
        assert_eq!((took, &out[..]), (Poll::Ready(true), &b"A1A2B1A3"[..]));
        let mut wire = BytesMut::from(&b"+a1\r\n+a2\r\n+b1\r\n+a3\r\n"[..]);
        let mut skip = 0;
        {
            let mut s = locked(&conn.state);
            deliver_all(&mut wire, &mut skip, 1024, &mut s.queue).unwrap();
            assert!(s.queue.is_empty() && wire.is_empty());
        }
        assert_eq!(taken(&a).await, ["+a1\r\n", "+a2\r\n", "+a3\r\n"]);
        assert_eq!(taken(&b).await, ["+b1\r\n"]);
        // One more reply than commands: the connection cannot go on.
        let mut wire = BytesMut::from(&b"+x\r\n"[..]);
        let mut s = locked(&conn.state);
        assert!(deliver_all(&mut wire, &mut skip, 1024, &mut s.queue).is_err());
    }

    #[tokio::test]
    async fn an_ended_connection_answers_what_it_carried_and_takes_no_more() {
        let conn = Conn::new();
        let h = Shared::new(Arc::clone(&conn));
        let a = Arc::new(Replies::default());
        assert!(h.send(b"A1A2", 2, &a));
        conn.end("ERR gone".into());
        assert!(h.is_closed());
        assert_eq!(taken(&a).await, ["err ERR gone", "err ERR gone"]);
        assert!(!h.send(b"A3", 1, &a), "refused: ask for a new connection");
        // A job dropped unanswered (its task gone) still answers.
        drop(Pending {
            n: 1,
            to: Arc::clone(&a),
        });
        assert_eq!(
            taken(&a).await,
            ["err ERR heal7-proxy: connection to the Redis server lost"]
        );
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
