//! One Redis client's session: requests in, routed commands out in
//! per-database batches, replies back in order.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::mux::{self, PlainClient, Replies, Reply, Shared, SharedConnections};
use super::table::CommandTables;
use super::upstream::{Setup, Upstream, UpstreamError};
use crate::config::{Mode, RedisConfig};
use crate::keyspace::{self, ReplyKeys};
use crate::metrics::redis::{DedicatedReason, NamespaceMetrics};
use crate::resp::{self, Args, RespError, Value};
use crate::shutdown::WakeGate;
use crate::state::ProxyState;
use crate::stream::{ReadHalf, Stream, WriteHalf};

/// Replies held before they are written to the client mid-batch.
const OUT_FLUSH_BYTES: usize = 256 * 1024;

/// Why a session ended early.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("client connection: {0}")]
    Client(#[from] std::io::Error),
    #[error(transparent)]
    Protocol(#[from] RespError),
}

/// The namespaces a command's keys belong to (usually none or one).
type NsList = SmallVec<[Arc<NamespaceMetrics>; 1]>;

/// A command's lower-case name, on the stack.
type Name = SmallVec<[u8; 32]>;

/// A command ready to go to one database.
struct Planned {
    db: u16,
    args: Args,
    reply: ReplyKeys,
    /// Whether keys chose `db` (a keyless command follows the others).
    pinned: bool,
    namespaces: NsList,
}

/// Commands sent together to one database, awaiting their replies. Its
/// buffers are kept from batch to batch.
#[derive(Default)]
struct Batch {
    db: u16,
    bytes: BytesMut,
    pending: Vec<(ReplyKeys, NsList)>,
}

/// The config in force for the command at hand (read once per command).
struct Snapshot {
    cfg: Arc<RedisConfig>,
    generation: u64,
    connect_timeout: Duration,
}

pub struct Session<'a> {
    state: &'a ProxyState,
    tables: &'a CommandTables,
    peer: SocketAddr,
    /// The config in force when the client connected: used if a reload
    /// removes the `redis:` section while it is connected.
    first_config: Arc<RedisConfig>,
    snap: Snapshot,
    /// Each rule's counters (by rule index), for `ns_generation`'s rules.
    ns_cache: Vec<Option<Arc<NamespaceMetrics>>>,
    ns_generation: u64,
    /// The client's virtual selected database.
    db: u16,
    /// foldhash: looked up a few times per batch.
    upstreams: HashMap<u16, Upstream, foldhash::fast::RandomState>,
    /// The client's AUTH, HELLO and CLIENT SETNAME, replayed on each new
    /// server connection.
    replay: Vec<Args>,
    multi: Option<Vec<Planned>>,
    multi_failed: bool,
    watched: Option<u16>,
    batch: Batch,
    out: BytesMut,
    /// Also ends a wait for a reply (a BLPOP with no timeout must not
    /// hold the proxy's shutdown).
    shutdown: CancellationToken,
    /// `shutdown`, waited on by every select of the session: registered
    /// once, and a flag read per poll (see [`WakeGate`]).
    cancelled: WakeGate<WaitForCancellationFutureOwned>,
    /// The client's side to write to (replies of a long batch are written
    /// as they come, so memory stays bounded).
    writer: Option<WriteHalf>,
    /// A write to the client failed: the session ends.
    client_gone: Option<std::io::Error>,
    /// While the client's connection state is the proxy's own: the shared
    /// server connections its batches go to (`None`: its own ones).
    shared: Option<SharedPath>,
}

/// A client on the shared connections, and the ones it used last (asked
/// again after a reload or when one has ended).
struct SharedPath {
    conns: Arc<SharedConnections>,
    handles: HashMap<u16, (u64, Shared), foldhash::fast::RandomState>,
    /// Counted among its event loop's plain clients; alone, it uses
    /// connections of its own (see `mux`).
    client: PlainClient,
    /// Where its batches' replies come (one for the session: each batch's
    /// replies are all in before the next batch goes), and those taken
    /// from there not yet passed on.
    replies: Arc<Replies>,
    got: VecDeque<Reply>,
    /// The config generation its own connections (while alone) follow.
    own_generation: u64,
}

impl SharedPath {
    /// Queue `n` commands for `db` on the shared connection in force (a
    /// connection that ended since it was last used: asked once more).
    fn send(&mut self, db: u16, snap: &Snapshot, bytes: &[u8], n: usize) -> bool {
        for fresh in [false, true] {
            let handle = shared_handle(&mut self.handles, &self.conns, db, snap, fresh);
            if handle.send(bytes, n, &self.replies) {
                return true;
            }
        }
        false
    }

    /// The next reply of the batch in flight.
    async fn next_reply(&mut self) -> Reply {
        if self.got.is_empty() {
            self.replies.take(&mut self.got).await;
        }
        self.got.pop_front().expect("taken above")
    }
}

/// The shared connection for `db` (`fresh`: not the one in hand).
fn shared_handle<'h>(
    handles: &'h mut HashMap<u16, (u64, Shared), foldhash::fast::RandomState>,
    conns: &SharedConnections,
    db: u16,
    snap: &Snapshot,
    fresh: bool,
) -> &'h Shared {
    let stale = fresh
        || handles
            .get(&db)
            .is_none_or(|(g, h)| *g != snap.generation || h.is_closed());
    if stale {
        let h = conns.get(db, &snap.cfg, snap.connect_timeout);
        handles.insert(db, (snap.generation, h));
    }
    &handles.get(&db).expect("inserted above").1
}

impl<'a> Session<'a> {
    pub fn new(
        state: &'a ProxyState,
        tables: &'a CommandTables,
        peer: SocketAddr,
        config: Arc<RedisConfig>,
        shutdown: CancellationToken,
        shared: Option<Arc<SharedConnections>>,
    ) -> Self {
        let shared = shared.filter(|_| config.multiplex).map(|conns| SharedPath {
            client: conns.join(),
            conns,
            handles: HashMap::default(),
            replies: Arc::default(),
            got: VecDeque::new(),
            own_generation: 0,
        });
        let snap = {
            let loaded = state.config.load();
            Snapshot {
                cfg: loaded.redis.clone().unwrap_or_else(|| Arc::clone(&config)),
                generation: loaded.generation,
                connect_timeout: loaded.connect_timeout,
            }
        };
        Session {
            state,
            tables,
            peer,
            first_config: config,
            snap,
            ns_cache: Vec::new(),
            ns_generation: 0,
            db: 0,
            upstreams: HashMap::default(),
            replay: Vec::new(),
            multi: None,
            multi_failed: false,
            watched: None,
            batch: Batch::default(),
            out: BytesMut::with_capacity(16 * 1024),
            cancelled: WakeGate::new(shutdown.clone().cancelled_owned()),
            shutdown,
            writer: None,
            client_gone: None,
            shared,
        }
    }

    /// Read the config for the next command: one load, and the snapshot
    /// changed only when a reload did.
    fn refresh(&mut self) {
        let loaded = self.state.config.load();
        if loaded.generation != self.snap.generation {
            self.snap = Snapshot {
                cfg: loaded
                    .redis
                    .clone()
                    .unwrap_or_else(|| Arc::clone(&self.first_config)),
                generation: loaded.generation,
                connect_timeout: loaded.connect_timeout,
            };
        }
    }

    fn config(&self) -> (Arc<RedisConfig>, u64) {
        let snap = self.state.config.load();
        let cfg = snap
            .redis
            .clone()
            .unwrap_or_else(|| Arc::clone(&self.first_config));
        (cfg, snap.generation)
    }

    pub async fn run(
        mut self,
        stream: Stream,
        shutdown: &CancellationToken,
    ) -> Result<(), SessionError> {
        let (mut reader, writer) = stream.into_split();
        self.writer = Some(writer);
        let mut inbuf = BytesMut::with_capacity(16 * 1024);
        loop {
            let n = tokio::select! {
                biased;
                n = reader.read_buf(&mut inbuf) => n?,
                () = &mut self.cancelled => return Ok(()),
            };
            if n == 0 {
                return Ok(());
            }
            self.refresh();
            let max = self.snap.cfg.max_request_bytes;
            loop {
                match resp::parse_request(&mut inbuf, max) {
                    Ok(Some(args)) if args.is_empty() => {}
                    Ok(Some(args)) => {
                        let name: Name = resp::lower_name(&args[0]);
                        if matches!(
                            name.as_slice(),
                            b"subscribe" | b"psubscribe" | b"ssubscribe"
                        ) {
                            self.flush().await?;
                            if self.shared.take().is_some() {
                                self.state.metrics.redis.dedicated(DedicatedReason::Pubsub);
                            }
                            let writer = self.writer.take().expect("set above");
                            return self.pubsub(args, reader, writer, inbuf, shutdown).await;
                        }
                        let quit = name.as_slice() == b"quit";
                        self.command(name, args).await;
                        if quit {
                            self.flush().await?;
                            return Ok(());
                        }
                        if self.out.len() > OUT_FLUSH_BYTES {
                            self.flush().await?;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        self.state
                            .metrics
                            .redis
                            .protocol_errors
                            .fetch_add(1, Ordering::Relaxed);
                        self.finish_batch().await;
                        resp::encode_error(&mut self.out, &format!("ERR {e}"));
                        self.flush().await?;
                        return Err(e.into());
                    }
                }
            }
            self.flush().await?;
        }
    }

    /// Send what is batched, then write every reply to the client.
    async fn flush(&mut self) -> std::io::Result<()> {
        self.finish_batch().await;
        self.write_out().await;
        match self.client_gone.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Write the replies held so far to the client (a failure is kept for
    /// the session loop).
    async fn write_out(&mut self) {
        if self.out.is_empty() || self.client_gone.is_some() {
            self.out.clear();
            return;
        }
        // A TLS writer holds what it could not send until a flush.
        if let Some(w) = &mut self.writer
            && let Err(e) = async {
                w.write_all(&self.out).await?;
                w.flush().await
            }
            .await
        {
            self.client_gone = Some(e);
        }
        self.out.clear();
    }

    fn error(&mut self, message: &str) {
        resp::encode_error(&mut self.out, message);
    }

    /// One client command: handled here (SELECT, transactions, connection
    /// state) or routed and batched.
    async fn command(&mut self, name: Name, args: Args) {
        self.state
            .metrics
            .redis
            .commands
            .fetch_add(1, Ordering::Relaxed);
        self.refresh();
        if self.shared.is_some() && !matches!(name.as_slice(), b"select" | b"quit") {
            let reason = if self.snap.cfg.multiplex {
                let table = self.tables.current();
                mux::leaves(&name, &args, table.as_deref().map(|t| &t.table))
            } else {
                Some(DedicatedReason::Config)
            };
            if let Some(reason) = reason {
                self.leave_shared(reason).await;
            }
        }
        if self.multi.is_some()
            && !matches!(
                name.as_slice(),
                b"exec" | b"discard" | b"multi" | b"watch" | b"quit" | b"reset"
            )
        {
            return self.queue(name, args).await;
        }
        match name.as_slice() {
            b"select" => {
                self.finish_batch().await;
                match args
                    .get(1)
                    .and_then(|a| std::str::from_utf8(a).ok()?.parse::<u16>().ok())
                {
                    Some(db) if args.len() == 2 => {
                        self.db = db;
                        resp::encode_simple(&mut self.out, "OK");
                    }
                    _ if args.len() != 2 => {
                        self.error("ERR wrong number of arguments for 'select' command")
                    }
                    _ => self.error("ERR DB index is out of range"),
                }
            }
            b"quit" => {
                self.finish_batch().await;
                resp::encode_simple(&mut self.out, "OK");
            }
            b"reset" => {
                self.finish_batch().await;
                self.upstreams.clear();
                self.replay.clear();
                self.multi = None;
                self.multi_failed = false;
                self.watched = None;
                self.db = 0;
                resp::encode_simple(&mut self.out, "RESET");
            }
            b"multi" => {
                self.finish_batch().await;
                if self.multi.is_some() {
                    self.error("ERR MULTI calls can not be nested");
                } else {
                    self.multi = Some(Vec::new());
                    self.multi_failed = false;
                    resp::encode_simple(&mut self.out, "OK");
                }
            }
            b"exec" => {
                self.finish_batch().await;
                self.exec().await;
            }
            b"discard" => {
                self.finish_batch().await;
                if self.multi.take().is_none() {
                    self.error("ERR DISCARD without MULTI");
                } else {
                    self.unwatch().await;
                    resp::encode_simple(&mut self.out, "OK");
                }
            }
            b"watch" => {
                self.finish_batch().await;
                if self.multi.is_some() {
                    return self.error("ERR WATCH inside MULTI is not allowed");
                }
                self.watch(args).await;
            }
            b"unwatch" => {
                self.finish_batch().await;
                self.unwatch().await;
                resp::encode_simple(&mut self.out, "OK");
            }
            b"auth" | b"hello" => {
                self.finish_batch().await;
                self.connection_state(name, args).await;
            }
            b"client"
                if args.get(1).is_some_and(|s| {
                    s.eq_ignore_ascii_case(b"setname") || s.eq_ignore_ascii_case(b"setinfo")
                }) =>
            {
                self.finish_batch().await;
                self.connection_state(name, args).await;
            }
            _ => match self.plan(args).await {
                Ok(p) => self.push(p).await,
                Err(message) => self.error(&message),
            },
        }
    }

    /// From here on the client uses server connections of its own: its
    /// batch on the shared ones is answered first, so its order holds.
    async fn leave_shared(&mut self, reason: DedicatedReason) {
        self.finish_batch().await;
        self.shared = None;
        self.state.metrics.redis.dedicated(reason);
        tracing::debug!(client = %self.peer, reason = reason.as_str(), "redis client leaves the shared connections");
    }

    /// Route `args` by the rules in force now. `Err`: the error line.
    async fn plan(&mut self, args: Args) -> Result<Planned, String> {
        let cfg = Arc::clone(&self.snap.cfg);
        let generation = self.snap.generation;
        let m = &self.state.metrics.redis;
        let passthrough = |db: u16, args: Args| Planned {
            db,
            args,
            reply: ReplyKeys::None,
            pinned: true,
            namespaces: NsList::new(),
        };
        if cfg.mode == Mode::Off {
            return Ok(passthrough(self.db, args));
        }
        let table = self
            .tables
            .for_generation(
                generation,
                &cfg,
                self.snap.connect_timeout,
                &self.state.metrics,
            )
            .await
            .map_err(|e| {
                m.upstream_errors.fetch_add(1, Ordering::Relaxed);
                format!("ERR heal7-proxy: cannot read the server's command table: {e}")
            })?;
        let dry_run = cfg.mode == Mode::DryRun;
        // dry_run logs and forwards the client's own arguments: it keeps
        // them; rewrite mode puts the new keys in place.
        let (routed, original) = if dry_run {
            let r = keyspace::route(&args, self.db, &cfg.namespaces, &table.table, cfg.unmatched);
            (r, Some(args))
        } else {
            let r =
                keyspace::route_owned(args, self.db, &cfg.namespaces, &table.table, cfg.unmatched);
            (r, None)
        };
        let routed = match routed {
            Ok(r) => r,
            Err(refused) => {
                let counter = match refused {
                    keyspace::Refused::CrossDatabase(..) => &m.refused_cross_database,
                    keyspace::Refused::Unmatched(..) => &m.refused_unmatched,
                    keyspace::Refused::NamesDatabase(_) | keyspace::Refused::Move { .. } => {
                        &m.refused_other
                    }
                };
                counter.fetch_add(1, Ordering::Relaxed);
                if let Some(args) = original {
                    tracing::info!(client = %self.peer, db = self.db, command = %command_name(&args), reason = %refused, "redis dry_run: would refuse");
                    return Ok(passthrough(self.db, args));
                }
                return Err(refused.to_string());
            }
        };
        if routed.script {
            m.scripts.fetch_add(1, Ordering::Relaxed);
        }
        if !routed.unmatched.is_empty() {
            m.keys_unmatched
                .fetch_add(routed.unmatched.len() as u64, Ordering::Relaxed);
        }
        let mut namespaces = NsList::new();
        let mut seen: SmallVec<[usize; 2]> = SmallVec::new();
        for &rule in &routed.rewritten {
            let ns = self.namespace_metrics(rule, generation, &cfg);
            if !seen.contains(&rule) {
                seen.push(rule);
                ns.commands.fetch_add(1, Ordering::Relaxed);
                namespaces.push(Arc::clone(&ns));
            }
            let counter = if dry_run {
                &ns.keys_dry_run
            } else {
                &ns.keys_rewritten
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(args) = original {
            if !routed.rewritten.is_empty() {
                // Key names only: values are never logged.
                let changes: Vec<String> = args
                    .iter()
                    .zip(&routed.args)
                    .filter(|(a, b)| a != b)
                    .map(|(a, b)| {
                        format!(
                            "{} -> {}",
                            String::from_utf8_lossy(a),
                            String::from_utf8_lossy(b)
                        )
                    })
                    .collect();
                tracing::info!(client = %self.peer, db = self.db, to_db = routed.db, command = %command_name(&args), keys = ?changes, "redis dry_run: would rewrite");
            }
            return Ok(passthrough(self.db, args));
        }
        // PUBLISH's channel follows `redis.channels`.
        let args = match name_is_publish(&routed.args) {
            true => super::pubsub::forward(&routed.args, &cfg.channels, &cfg.namespaces),
            false => routed.args,
        };
        Ok(Planned {
            db: routed.db,
            pinned: !routed.rewritten.is_empty() || !routed.unmatched.is_empty(),
            args,
            reply: routed.reply,
            namespaces,
        })
    }

    /// The counters of rule `rule` of `cfg` (config `generation`), found
    /// once per session and reload rather than by label per command.
    fn namespace_metrics(
        &mut self,
        rule: usize,
        generation: u64,
        cfg: &RedisConfig,
    ) -> Arc<NamespaceMetrics> {
        if self.ns_generation != generation {
            self.ns_cache.clear();
            self.ns_generation = generation;
        }
        let rules = cfg.namespaces.rules();
        if self.ns_cache.len() < rules.len() {
            self.ns_cache.resize(rules.len(), None);
        }
        let state = self.state;
        Arc::clone(
            self.ns_cache[rule]
                .get_or_insert_with(|| state.metrics.redis.namespace(&rules[rule].label())),
        )
    }

    /// Add a routed command to the batch (sending the batch first when it
    /// goes to another database).
    async fn push(&mut self, p: Planned) {
        if !self.batch.pending.is_empty() && self.batch.db != p.db {
            self.finish_batch().await;
        }
        self.batch.db = p.db;
        resp::encode_command(&mut self.batch.bytes, &p.args);
        self.batch.pending.push((p.reply, p.namespaces));
        // A long pipeline is sent in slices: bounded memory here and at
        // the server.
        if self.batch.bytes.len() > OUT_FLUSH_BYTES {
            self.finish_batch().await;
        }
    }

    /// The server connection of `db`, opened on first use.
    async fn upstream(&mut self, db: u16) -> Result<&mut Upstream, UpstreamError> {
        if !self.upstreams.contains_key(&db) {
            let (cfg, _) = self.config();
            let timeout = self.state.config.load().connect_timeout;
            let up = Upstream::connect(Setup {
                upstream: &cfg.upstream,
                client_commands: &self.replay,
                db,
                timeout,
                max_reply: cfg.max_reply_bytes,
            })
            .await
            .inspect_err(|e| {
                self.state.metrics.redis.upstream_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(client = %self.peer, db, error = %e, "redis upstream connection failed");
            })?;
            self.upstreams.insert(db, up);
        }
        Ok(self.upstreams.get_mut(&db).expect("inserted above"))
    }

    /// Send `bytes` (holding `n` commands) to `db` and collect the replies;
    /// a connection that fails is dropped (the next command reconnects).
    async fn exchange(
        &mut self,
        db: u16,
        bytes: &[u8],
        n: usize,
    ) -> Result<Vec<Bytes>, UpstreamError> {
        let shutdown = self.shutdown.clone();
        let up = self.upstream(db).await?;
        let result = tokio::select! {
            r = async {
                up.send(bytes).await?;
                up.replies(n).await
            } => r,
            () = shutdown.cancelled() => Err(UpstreamError::ShuttingDown),
        };
        if let Ok((_, pushes)) = &result {
            // RESP3 pushes (client tracking) go to the client as they came.
            for p in pushes {
                self.out.extend_from_slice(p);
            }
        }
        let result = result.map(|(replies, _)| replies);
        if result.is_err() {
            self.upstreams.remove(&db);
        }
        result
    }

    /// Send the batch and pass its replies on as they come, key names
    /// mapped back; a long batch's replies are written to the client on the
    /// way, so only about OUT_FLUSH_BYTES (plus the largest reply) is held.
    async fn finish_batch(&mut self) {
        if self.batch.pending.is_empty() {
            return;
        }
        // Alone on its event loop, a plain client uses a connection of its
        // own, in the shared ones' state, without their two task hops.
        // Once another plain client comes, that one goes and the shared
        // ones serve both.
        if let Some(path) = &mut self.shared {
            if !path.client.alone() {
                self.upstreams.clear();
                return self.finish_shared().await;
            }
            // As the shared ones: after a reload (a new `redis.upstream`...)
            // the next batch goes on a new connection.
            if path.own_generation != self.snap.generation {
                path.own_generation = self.snap.generation;
                self.upstreams.clear();
            }
        }
        let db = self.batch.db;
        let sent = match self.upstream(db).await {
            Ok(_) => {
                let up = self.upstreams.get_mut(&db).expect("connected above");
                up.send(&self.batch.bytes).await
            }
            Err(e) => Err(e),
        };
        self.batch.bytes.clear();
        let mut failed = sent.err();
        let mut pending = std::mem::take(&mut self.batch.pending);
        for (shape, namespaces) in pending.drain(..) {
            if failed.is_none() {
                let up = self.upstreams.get_mut(&db).expect("connected above");
                let next = tokio::select! {
                    biased;
                    // RESP3 pushes (client tracking) go on as they came.
                    r = up.next_reply(&mut self.out) => r,
                    () = &mut self.cancelled => Err(UpstreamError::ShuttingDown),
                };
                match next {
                    Ok(reply) => {
                        self.reply(reply, shape, db, &namespaces);
                        if self.out.len() > OUT_FLUSH_BYTES {
                            self.write_out().await;
                        }
                        continue;
                    }
                    Err(e @ UpstreamError::ReplySkipped(_)) => {
                        // That reply alone: the connection goes on.
                        count_error(&namespaces);
                        self.error(&error_line(&e));
                        continue;
                    }
                    Err(e) => failed = Some(e),
                }
            }
            if let Some(e) = &failed {
                count_error(&namespaces);
                self.error(&error_line(e));
            }
        }
        // The emptied list keeps its room for the next batch.
        self.batch.pending = pending;
        if failed.is_some() {
            // Replies may be missing: the next command reconnects.
            self.upstreams.remove(&db);
        }
    }

    /// `finish_batch` on the shared connection of the batch's database:
    /// one job, its replies passed on as they come (a long batch's are
    /// written to the client on the way, as on a connection of its own).
    /// No wait for the shutdown here: the shared connection answers every
    /// command it took, with an error when it ends.
    async fn finish_shared(&mut self) {
        let db = self.batch.db;
        let n = self.batch.pending.len();
        let path = self.shared.as_mut().expect("on the shared path");
        let sent = path.send(db, &self.snap, &self.batch.bytes, n);
        self.batch.bytes.clear();
        self.state
            .metrics
            .redis
            .multiplexed_commands
            .fetch_add(n as u64, Ordering::Relaxed);
        let mut pending = std::mem::take(&mut self.batch.pending);
        for (shape, namespaces) in pending.drain(..) {
            let next = match sent {
                true => Some(
                    self.shared
                        .as_mut()
                        .expect("on the shared path")
                        .next_reply()
                        .await,
                ),
                false => None,
            };
            match next {
                Some(Ok(reply)) => {
                    self.reply(reply, shape, db, &namespaces);
                    if self.out.len() > OUT_FLUSH_BYTES {
                        self.write_out().await;
                    }
                }
                Some(Err(line)) => {
                    count_error(&namespaces);
                    self.error(&line);
                }
                None => {
                    count_error(&namespaces);
                    self.error(&error_line(&UpstreamError::ShuttingDown));
                }
            }
        }
        self.batch.pending = pending;
    }

    /// Append one reply, its key names mapped back when it carries some.
    fn reply(&mut self, reply: Bytes, shape: ReplyKeys, server_db: u16, ns: &NsList) {
        if matches!(reply.first(), Some(b'-' | b'!')) {
            count_error(ns);
        }
        if shape != ReplyKeys::None
            && let Ok(mut value) = Value::decode(&reply)
        {
            let cfg = Arc::clone(&self.snap.cfg);
            if keyspace::reply_keys_back(&mut value, shape, &cfg.namespaces, self.db, server_db) {
                self.state
                    .metrics
                    .redis
                    .replies_rewritten
                    .fetch_add(1, Ordering::Relaxed);
                value.encode(&mut self.out);
                return;
            }
        }
        self.out.extend_from_slice(&reply);
    }

    /// A command between MULTI and EXEC: checked now, sent at EXEC.
    async fn queue(&mut self, name: Name, args: Args) {
        if matches!(
            name.as_slice(),
            b"select" | b"subscribe" | b"psubscribe" | b"ssubscribe"
        ) {
            self.multi_failed = true;
            return self.error(&format!(
                "ERR heal7-proxy: {} inside MULTI is not supported",
                command_name(&args)
            ));
        }
        // What the server would refuse while queueing (an unknown command,
        // a wrong argument count) is refused here, as the server would, so
        // EXEC then aborts the same way.
        if let Some(refusal) = self.queue_time_error(&name, &args) {
            self.multi_failed = true;
            return self.error(&refusal);
        }
        match self.plan(args).await {
            Ok(p) => {
                self.multi.get_or_insert_with(Vec::new).push(p);
                resp::encode_simple(&mut self.out, "QUEUED");
            }
            Err(message) => {
                self.multi_failed = true;
                self.error(&message);
            }
        }
    }

    /// The server's queue-time error for `args`, by the command table
    /// (none when there is no table yet, as in mode off).
    fn queue_time_error(&self, name: &[u8], args: &Args) -> Option<String> {
        let loaded = self.tables.current()?;
        let lossy = String::from_utf8_lossy(name);
        let Some(spec) = loaded.table.spec(args) else {
            let mut message = format!("ERR unknown command '{lossy}', with args beginning with: ");
            for a in args.iter().skip(1).take(3) {
                message.push_str(&format!("'{}' ", String::from_utf8_lossy(a)));
            }
            return Some(message);
        };
        let n = args.len() as i64;
        let arity_ok = if spec.arity >= 0 {
            n == spec.arity
        } else {
            n >= -spec.arity
        };
        (!arity_ok).then(|| format!("ERR wrong number of arguments for '{lossy}' command"))
    }

    async fn exec(&mut self) {
        let Some(queued) = self.multi.take() else {
            return self.error("ERR EXEC without MULTI");
        };
        if self.multi_failed {
            self.unwatch().await;
            return self.error("EXECABORT Transaction discarded because of previous errors.");
        }
        let mut dbs: Vec<u16> = queued.iter().filter(|p| p.pinned).map(|p| p.db).collect();
        dbs.extend(self.watched);
        dbs.sort_unstable();
        dbs.dedup();
        if dbs.len() > 1 {
            self.state
                .metrics
                .redis
                .refused_cross_database
                .fetch_add(1, Ordering::Relaxed);
            queued.iter().for_each(|p| count_error(&p.namespaces));
            self.unwatch().await;
            return self.error(&format!(
                "EXECABORT heal7-proxy: the transaction's keys live in different databases (db {} and db {}); nothing was executed",
                dbs[0], dbs[1]
            ));
        }
        let db = dbs.first().copied().unwrap_or(self.db);
        self.watched = None;
        let mut bytes = BytesMut::new();
        resp::encode_command(&mut bytes, &[&b"MULTI"[..]]);
        for p in &queued {
            resp::encode_command(&mut bytes, &p.args);
        }
        resp::encode_command(&mut bytes, &[&b"EXEC"[..]]);
        let replies = match self.exchange(db, &bytes, queued.len() + 2).await {
            Ok(r) => r,
            Err(e) => return self.error(&error_line(&e)),
        };
        let exec = replies.last().cloned().unwrap_or_default();
        let (cfg, _) = self.config();
        let mut value = match Value::decode(&exec) {
            Ok(v) if queued.iter().any(|p| p.reply != ReplyKeys::None) => v,
            _ => return self.out.extend_from_slice(&exec),
        };
        let mut changed = false;
        if let Some(items) = value.elements_mut()
            && items.len() == queued.len()
        {
            for (item, p) in items.iter_mut().zip(&queued) {
                changed |= keyspace::reply_keys_back(item, p.reply, &cfg.namespaces, self.db, db);
            }
        }
        if changed {
            value.encode(&mut self.out);
        } else {
            self.out.extend_from_slice(&exec);
        }
    }

    async fn watch(&mut self, args: Args) {
        let p = match self.plan(args).await {
            Ok(p) => p,
            Err(message) => return self.error(&message),
        };
        if let Some(w) = self.watched
            && w != p.db
        {
            self.state
                .metrics
                .redis
                .refused_cross_database
                .fetch_add(1, Ordering::Relaxed);
            return self.error(&format!(
                "ERR heal7-proxy: keys already watched live in db {w}, these in db {}; nothing was executed",
                p.db
            ));
        }
        let mut bytes = BytesMut::new();
        resp::encode_command(&mut bytes, &p.args);
        match self.exchange(p.db, &bytes, 1).await {
            Ok(replies) => {
                if replies[0].starts_with(b"+") {
                    self.watched = Some(p.db);
                }
                self.out.extend_from_slice(&replies[0]);
            }
            Err(e) => self.error(&error_line(&e)),
        }
    }

    /// Drop the WATCH of the watched database's connection.
    async fn unwatch(&mut self) {
        if let Some(w) = self.watched.take()
            && self.upstreams.contains_key(&w)
        {
            let mut bytes = BytesMut::new();
            resp::encode_command(&mut bytes, &[&b"UNWATCH"[..]]);
            let _ = self.exchange(w, &bytes, 1).await;
        }
    }

    /// AUTH, HELLO, CLIENT SETNAME: sent to every open server connection
    /// and remembered for the ones opened later; the client sees the reply
    /// of its selected database's connection.
    async fn connection_state(&mut self, name: Name, args: Args) {
        let mut bytes = BytesMut::new();
        resp::encode_command(&mut bytes, &args);
        let db = self.db;
        let reply = match self.exchange(db, &bytes, 1).await {
            Ok(mut r) => r.remove(0),
            Err(e) => return self.error(&error_line(&e)),
        };
        let ok = !matches!(reply.first(), Some(b'-' | b'!'));
        if ok {
            let others: Vec<u16> = self
                .upstreams
                .keys()
                .copied()
                .filter(|&d| d != db)
                .collect();
            for other in others {
                if self.exchange(other, &bytes, 1).await.is_err() {
                    self.upstreams.remove(&other);
                }
            }
            let same = |a: &Args| {
                a[0].eq_ignore_ascii_case(&name)
                    && (name.as_slice() != b"client"
                        || a.get(1).map(|s| s.to_ascii_lowercase())
                            == args.get(1).map(|s| s.to_ascii_lowercase()))
            };
            self.replay.retain(|a| !same(a));
            self.replay.push(args);
        }
        self.out.extend_from_slice(&reply);
    }

    /// SUBSCRIBE and the like: from here on the client and one server
    /// connection are relayed until either side leaves (see `pubsub`).
    async fn pubsub(
        mut self,
        first: Args,
        reader: ReadHalf,
        mut writer: WriteHalf,
        inbuf: BytesMut,
        shutdown: &CancellationToken,
    ) -> Result<(), SessionError> {
        let db = self.db;
        if let Err(e) = self.upstream(db).await {
            self.error(&error_line(&e));
            writer.write_all(&self.out).await?;
            writer.flush().await?;
            return Ok(());
        }
        let up = self.upstreams.remove(&db).expect("connected above");
        let (cfg, _) = self.config();
        let translate =
            cfg.mode == Mode::Rewrite && !(cfg.channels.is_empty() && cfg.namespaces.is_empty());
        super::pubsub::Relay {
            up,
            reader,
            writer,
            inbuf,
            channels: translate.then_some(&*cfg.channels),
            namespaces: &cfg.namespaces,
            unmatched_visible: cfg.unmatched == keyspace::Unmatched::Forward,
            max_request: cfg.max_request_bytes,
        }
        .run(first, shutdown)
        .await
    }
}

fn name_is_publish(args: &Args) -> bool {
    args.first()
        .is_some_and(|a| a.eq_ignore_ascii_case(b"publish") || a.eq_ignore_ascii_case(b"spublish"))
}

fn count_error(namespaces: &[Arc<NamespaceMetrics>]) {
    for ns in namespaces {
        ns.errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// The client's error line for a server connection that failed: the
/// server's own words when it refused the setup (a bad SELECT index...).
fn error_line(e: &UpstreamError) -> String {
    match e {
        UpstreamError::Refused(text) => text.clone(),
        other => format!("ERR heal7-proxy: {other}"),
    }
}

fn command_name(args: &Args) -> String {
    args.first()
        .map(|a| String::from_utf8_lossy(a).to_ascii_uppercase())
        .unwrap_or_default()
}
