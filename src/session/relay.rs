//! The relay after startup: two halves running concurrently in one task,
//! client -> server ([`Upstream`]) and server -> client ([`Downstream`]), so
//! neither direction ever waits on a write in the other (a pipelining client
//! and a chatty server cannot deadlock the proxy).
//!
//! Frames are forwarded as the bytes they arrived in: a read's complete
//! frames go out in one write straight from the read buffer. Only client
//! Query/Parse (when the route has a schema map) and server ErrorResponse
//! (position correction, refused statements) may be re-encoded.
//!
//! The halves share a small [`Tracker`] behind a mutex, locked once per
//! read batch and never across an await: the FIFO of requests the server
//! still owes an answer to, the transaction status and client_encoding.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::prepared::{
    Reprepare, SentForm, closed_statement, parse_request, query_text, reprepare,
};
use super::tracker::{Pending, Silent, StatementContext, Tracker, lock};
use super::transaction::{TransactionClient, translate};
use super::{SessionError, Summary, farewell};
use crate::clients::{ClientEntry, ClientIdentity, ClientState};
use crate::config::Mode;
use crate::farewell::FAREWELL_TIMEOUT;
use crate::metrics::DatabaseMetrics;
use crate::protocol::{
    self, BackendKeyData, MAX_AUTH_FRAME, ParseView, QueryView, peek_header, tag,
};
use crate::qualify::{Observer, TextRewrite, qualify};
use crate::reload::Snapshot;
use crate::rewrite::{Edit, SchemaMap, SessionFacts, deallocation, splice_into};
use crate::shutdown::Shutdown;
use crate::shutdown::WakeGate;
use crate::state::ProxyState;
use crate::stream::{ReadHalf as OwnedReadHalf, Stream, WriteHalf as OwnedWriteHalf};

/// Reads ask for at least this much room.
const READ_CHUNK: usize = 8 * 1024;
/// A big frame's buffer grows by at most this much per read, so a length
/// header alone never makes the proxy allocate the whole frame.
const GROW_STEP: usize = 1 << 20;
/// An empty read buffer larger than this is given back after a big frame.
const SHRINK_ABOVE: usize = 256 * 1024;

/// Sent to the server in place of a refused statement: it fails in the raw
/// parser, so the server itself aborts the transaction / skips to Sync as it
/// would for a real error, and the proxy swaps the error for its own.
pub(super) const REFUSED_SQL: &[u8] = b"heal7_proxy_refused_this_statement";

pub(super) struct RelayContext {
    pub state: ProxyState,
    /// The snapshot the session started with (frame size cap).
    pub config: Arc<Snapshot>,
    /// The database name the client connected with, to route each new
    /// snapshot after a reload.
    pub client_database: String,
    pub upstream: SocketAddr,
    pub shutdown: Shutdown,
    /// This session's SHOW CLIENTS entry (state, statement count).
    pub client: Arc<ClientEntry>,
    /// Counters of the database name the client connected with.
    pub database_metrics: Arc<DatabaseMetrics>,
    /// Who sends the statements, for the unmapped-name report.
    pub identity: ClientIdentity,
    /// Whether the upstream link is TLS (the server then offers SCRAM
    /// channel binding, see [`protocol::sasl`]).
    pub upstream_tls: bool,
}

/// Which relay runs, as a const parameter, so each has its own copy of the
/// loops (inlined into its one caller, with the other modes' branches
/// compiled out of the 1:1 relay's hot path).
pub(super) type RelayMode = u8;
/// One server connection per client, authentication relayed.
pub(super) const ONE_TO_ONE: RelayMode = 0;
/// A pool's server connection, logged in by the proxy: the relay starts
/// after login, a client's Terminate is not forwarded, and the server is
/// handed back when the client leaves between transactions.
pub(super) const SESSION_POOL: RelayMode = 1;
/// The server connection changes at every transaction boundary
/// ([`relay_transactions`]).
pub(super) const TRANSACTION_POOL: RelayMode = 2;

/// How a relay ended well.
pub(super) struct Relayed {
    pub summary: Summary,
    /// A pooled server connection the client left idle, to reuse.
    pub server: Option<Stream>,
}

/// The mapping one statement is rewritten with: taken from the live config
/// whenever the session is idle outside a transaction, kept otherwise, so a
/// transaction never mixes two generations.
pub(super) struct Mapping {
    pub(super) snapshot: Arc<Snapshot>,
    pub(super) map: Option<Arc<SchemaMap>>,
    pub(super) mode: Mode,
}

impl Mapping {
    fn of(snapshot: Arc<Snapshot>, client_database: &str) -> Mapping {
        let route = snapshot.route(client_database);
        Mapping {
            snapshot,
            map: route.map,
            mode: route.mode,
        }
    }

    /// Move to the live config if it is newer; true if it moved.
    #[inline(always)]
    fn refresh(&mut self, ctx: &RelayContext) -> bool {
        if ctx.state.config.generation() == self.snapshot.generation {
            return false;
        }
        let live = ctx.state.config.load_full();
        let moved = live.generation != self.snapshot.generation;
        *self = Mapping::of(live, &ctx.client_database);
        moved
    }
}

pub(super) async fn relay<const MODE: RelayMode>(
    client: Stream,
    server: Stream,
    leftover: BytesMut,
    server_first: BytesMut,
    ctx: &RelayContext,
) -> Result<Relayed, SessionError> {
    let (client_read, mut client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let tracker = Mutex::new(Tracker::new(MODE != ONE_TO_ONE));
    let _release = ReleaseCancelKey {
        tracker: &tracker,
        ctx,
    };
    let mut up = Upstream::new(ctx, client_read, leftover, server_write, MODE != ONE_TO_ONE);
    let mut down = Downstream {
        from: Inbound::new(server_read, server_first),
        writing: false,
    };
    // The server's first answer was read while connecting.
    down.from.bytes = down.from.buf.len() as u64;

    // The shutdown branches are gated: select! polls every branch on every
    // wake, and a cancellation token's poll takes a lock.
    let draining = AtomicBool::new(false);
    // One gate for both (each gate costs its poll on every wake).
    let shutdown = WakeGate::new(async {
        tokio::select! {
            () = drained(&tracker, &ctx.shutdown, &draining) => {}
            () = ctx.shutdown.abort.cancelled() => {}
        }
    });
    let result = tokio::select! {
        r = up.run::<MODE>(&tracker, ctx) => r,
        r = down.run::<MODE>(&mut client_write, &tracker, &draining, ctx) => r,
        () = shutdown => Err(SessionError::Shutdown),
    };

    match result {
        Ok(ended) => {
            let summary = summary(&up, &down, ended);
            // Reusable only with nothing in flight either way.
            let reusable = MODE != ONE_TO_ONE
                && up.terminated
                && down.from.buf.is_empty()
                && lock(&tracker).between_transactions();
            let server = if reusable {
                Stream::reunite(down.from.read, up.write)
            } else {
                None
            };
            Ok(Relayed { summary, server })
        }
        Err(e) => {
            if matches!(e, SessionError::Shutdown) {
                // Let the server end the backend cleanly.
                let mut x = BytesMut::new();
                protocol::encode_terminate(&mut x);
                let _ = tokio::time::timeout(FAREWELL_TIMEOUT, async {
                    up.write.write_all(&x).await?;
                    up.write.flush().await
                })
                .await;
            }
            if down.writing {
                // Stopped mid-frame toward the client: another frame would
                // be read as the rest of that one. Just close.
                return Err(e);
            }
            Err(farewell(&mut client_write, e, &ctx.state).await)
        }
    }
}

/// Drops the session's cancel key however the relay ends (even by panic or
/// by the task being dropped), so a dead session's key cannot cancel
/// anything.
struct ReleaseCancelKey<'a> {
    tracker: &'a Mutex<Tracker>,
    ctx: &'a RelayContext,
}

impl Drop for ReleaseCancelKey<'_> {
    fn drop(&mut self) {
        if let Some(key) = lock(self.tracker).cancel_key {
            self.ctx.state.cancel_keys.remove(key, self.ctx.upstream);
        }
    }
}

/// Resolves when shutdown begins while the session is between
/// transactions. A session busy or inside a transaction then is flagged
/// `draining` instead, and [`Downstream`] closes it right after relaying its
/// next ReadyForQuery(idle): no poll, and a client that sends statements
/// back to back is still closed between two of them.
async fn drained(tracker: &Mutex<Tracker>, shutdown: &Shutdown, draining: &AtomicBool) {
    shutdown.drain.cancelled().await;
    {
        let t = lock(tracker);
        if t.between_transactions() {
            return;
        }
        draining.store(true, Ordering::Relaxed);
    }
    std::future::pending().await
}

/// Make room for the next read: give back a big buffer once it is empty,
/// grow toward a partly read frame in steps.
fn prepare_read(buf: &mut BytesMut, missing: usize) {
    if buf.is_empty() && buf.capacity() > SHRINK_ABOVE {
        *buf = BytesMut::with_capacity(READ_CHUNK);
    }
    buf.reserve(missing.clamp(READ_CHUNK, GROW_STEP));
}

/// One direction's read side: the bytes read and not yet forwarded, and the
/// batch to send instead when some frame in it was re-encoded.
struct Inbound {
    read: OwnedReadHalf,
    buf: BytesMut,
    out: BytesMut,
    /// Bytes read so far.
    bytes: u64,
}

impl Inbound {
    fn new(read: OwnedReadHalf, buf: BytesMut) -> Self {
        Inbound {
            read,
            buf,
            out: BytesMut::new(),
            bytes: 0,
        }
    }

    /// The bytes to send for a scanned batch: `out` if re-encoded, else the
    /// frames straight from the read buffer.
    fn outgoing(&self, batch: &Batch) -> &[u8] {
        if batch.reencoded {
            &self.out
        } else {
            &self.buf[..batch.len]
        }
    }

    /// The batch was sent: drop its frames from the read buffer.
    fn sent(&mut self, batch: &Batch) {
        if batch.reencoded {
            self.out.clear();
        }
        self.buf.advance(batch.len);
    }

    /// Count a read of `n` bytes; false at the end of the stream.
    fn got(&mut self, n: usize) -> bool {
        self.bytes += n as u64;
        n > 0
    }
}

/// Put the frame `buf[pos..end]` into the batch being built, as it is or
/// replaced by what `replace` writes. The batch is the read buffer itself
/// until a frame is replaced; from then on (`reencoding`) it is built in
/// `out`.
pub(super) fn place_frame(
    out: &mut BytesMut,
    buf: &[u8],
    (pos, end): (usize, usize),
    reencoding: &mut bool,
    replace: Option<impl FnOnce(&mut BytesMut)>,
) {
    match replace {
        Some(write) => {
            if !*reencoding {
                out.clear();
                out.extend_from_slice(&buf[..pos]);
                *reencoding = true;
            }
            write(out);
        }
        None if *reencoding => out.extend_from_slice(&buf[pos..end]),
        None => {}
    }
}

/// Client -> server.
struct Upstream {
    mapping: Mapping,
    from: Inbound,
    write: OwnedWriteHalf,
    /// Requests of the current batch, pushed to the tracker before sending.
    entries: Vec<Pending>,
    /// Encoding, literal rules and temporary relations of this session.
    facts: SessionFacts,
    statements: u64,
    rewritten: u64,
    /// A copy of the tracker's flag, so the lock is taken per batch only
    /// until login.
    authenticated: bool,
    /// A pooled client sent Terminate (kept from the server).
    terminated: bool,
    /// Transaction pooling: the client's statements and settings.
    transaction: Option<Box<TransactionClient>>,
}

/// The complete frames at the front of a buffer, scanned.
struct Batch {
    /// Bytes of complete frames at the front of the buffer.
    len: usize,
    /// Whether `out` holds the batch (some frame was re-encoded).
    reencoded: bool,
    /// Bytes still missing of a partly read frame.
    missing: usize,
}

/// What the disconnect log line reports of a relay.
fn summary(up: &Upstream, down: &Downstream, ended: &'static str) -> Summary {
    Summary {
        statements: up.statements,
        rewritten: up.rewritten,
        bytes_from_client: up.from.bytes,
        bytes_from_server: down.from.bytes,
        ended,
    }
}

impl Upstream {
    /// The client side of a relay, writing to `write` (a closed half until
    /// a transaction-pooled client gets a server). `logged_in`: the relay
    /// starts after login.
    fn new(
        ctx: &RelayContext,
        read: OwnedReadHalf,
        leftover: BytesMut,
        write: OwnedWriteHalf,
        logged_in: bool,
    ) -> Upstream {
        Upstream {
            mapping: Mapping::of(Arc::clone(&ctx.config), &ctx.client_database),
            from: Inbound::new(read, leftover),
            write,
            entries: Vec::with_capacity(16),
            facts: SessionFacts::default(),
            statements: 0,
            rewritten: 0,
            authenticated: logged_in,
            terminated: false,
            transaction: None,
        }
    }

    async fn run<const MODE: RelayMode>(
        &mut self,
        tracker: &Mutex<Tracker>,
        ctx: &RelayContext,
    ) -> Result<&'static str, SessionError> {
        loop {
            let batch = self.scan::<MODE>(tracker, ctx)?;
            if batch.len > 0 {
                if !self.entries.is_empty() {
                    lock(tracker).sent(&mut self.entries, Instant::now());
                }
                self.write.write_all(self.from.outgoing(&batch)).await?;
                if self.write.is_tls() {
                    // rustls may still hold ciphertext (a BufWriter).
                    self.write.flush().await?;
                }
                self.from.sent(&batch);
            }
            if self.terminated {
                return Ok("client closed");
            }
            // The awaits stay in this loop (no nested futures per frame).
            prepare_read(&mut self.from.buf, batch.missing);
            let n = self.from.read.read_buf(&mut self.from.buf).await?;
            if !self.from.got(n) {
                return Ok("client closed");
            }
        }
    }

    /// The largest client frame accepted now: small until the server has
    /// sent AuthenticationOk (an unauthenticated peer must not make the
    /// proxy buffer `max_message_size`), the configured cap after.
    fn frame_cap(&mut self, tracker: &Mutex<Tracker>, ctx: &RelayContext) -> usize {
        let max = ctx.config.max_message_size;
        if !self.authenticated {
            self.authenticated = lock(tracker).authenticated;
            if !self.authenticated {
                return max.min(MAX_AUTH_FRAME);
            }
        }
        max
    }

    /// At the first request of a batch: between transactions, move to the
    /// live mapping if a reload made a new one, and prepare the client's
    /// statements again where their text changes. A transaction may begin
    /// with a prepared statement's Bind as well as with a Query or Parse.
    #[inline(always)]
    fn follow_reload(
        &mut self,
        frame_tag: u8,
        pos: usize,
        reencoding: &mut bool,
        session: &mut Option<bool>,
        tracker: &Mutex<Tracker>,
        ctx: &RelayContext,
    ) {
        let moved = match frame_tag {
            tag::QUERY | tag::PARSE => {
                session_facts(&mut self.facts, session, tracker) && self.mapping.refresh(ctx)
            }
            tag::BIND | tag::DESCRIBE | tag::EXECUTE => {
                ctx.state.config.generation() != self.mapping.snapshot.generation
                    && lock(tracker).between_transactions()
                    && self.mapping.refresh(ctx)
            }
            _ => false,
        };
        if moved {
            self.follow_new_mapping(pos, reencoding, tracker, ctx);
        }
    }

    /// A reload moved the mapping: the client's named statements follow
    /// (rare, so kept out of the scan's hot body).
    #[cold]
    #[inline(never)]
    fn follow_new_mapping(
        &mut self,
        pos: usize,
        reencoding: &mut bool,
        tracker: &Mutex<Tracker>,
        ctx: &RelayContext,
    ) {
        if let Some(txn) = &mut self.transaction {
            let observer = crate::qualify::Observer::quiet(&ctx.state.metrics);
            let mut facts = self.facts.clone();
            let mapping = &self.mapping;
            txn.requalify(&mut lock(tracker).sql, |query| {
                match qualify(
                    query,
                    mapping.map.as_deref(),
                    mapping.mode,
                    mapping.snapshot.on_parse_error,
                    &mut facts,
                    ctx.state.rewriter,
                    &observer,
                ) {
                    TextRewrite::Unchanged => SentForm::Unchanged,
                    TextRewrite::Changed { edits, .. } => SentForm::Spliced(edits),
                    TextRewrite::Rejected { .. } => SentForm::Refused,
                }
            });
        } else {
            let up = Reprepare {
                mapping: &self.mapping,
                facts: &self.facts,
                entries: &mut self.entries,
                buf: &self.from.buf,
                out: &mut self.from.out,
            };
            reprepare(up, pos, reencoding, tracker, ctx);
        }
    }

    fn scan<const MODE: RelayMode>(
        &mut self,
        tracker: &Mutex<Tracker>,
        ctx: &RelayContext,
    ) -> Result<Batch, SessionError> {
        let max = self.frame_cap(tracker, ctx);
        let mut pos = 0;
        let mut reencoding = false;
        // Read from the tracker once per batch: lexing facts, between transactions.
        let mut session = None;
        let missing = loop {
            let rest = &self.from.buf[pos..];
            let Some(header) = peek_header(rest, max).map_err(SessionError::Client)? else {
                break 0;
            };
            if rest.len() < header.total_len {
                break header.total_len - rest.len();
            }
            if self.entries.is_empty() {
                // Only the first request of a batch can start a new
                // transaction; the rest follow it.
                self.follow_reload(header.tag, pos, &mut reencoding, &mut session, tracker, ctx);
                if MODE == TRANSACTION_POOL && pos == 0 {
                    self.send_deferred_begin(&mut reencoding);
                }
            }
            if forwarded_as_is(header.tag)
                && (MODE != TRANSACTION_POOL
                    || !names_a_statement(&self.from.buf[pos..pos + header.total_len]))
            {
                // Most frames of an extended-protocol batch: nothing to
                // rewrite, only the answer to expect (kept apart from the
                // statement arms so no replacement is built for them).
                if let Some(entry) = request_for(header.tag) {
                    self.entries.push(entry);
                }
                if reencoding {
                    let frame = &self.from.buf[pos..pos + header.total_len];
                    self.from.out.extend_from_slice(frame);
                }
                pos += header.total_len;
                continue;
            }
            let frame = &self.from.buf[pos..pos + header.total_len];
            // Each arm queues the frame's request itself (no large value
            // moved through the match): this is every statement's path.
            let queued = self.entries.len();
            let replacement = match header.tag {
                tag::QUERY | tag::PARSE => {
                    self.statements += 1;
                    ctx.client.count_statement();
                    ctx.client.set_state(ClientState::Active);
                    session_facts(&mut self.facts, &mut session, tracker);
                    if header.tag == tag::QUERY
                        && may_deallocate(frame)
                        && let Some(dropped) = deallocation(query_text(frame))
                    {
                        forget_deallocated(tracker, dropped);
                    }
                    match (&self.mapping.map, self.mapping.mode) {
                        (Some(map), Mode::Rewrite | Mode::DryRun) => statement(
                            frame,
                            header.tag,
                            map,
                            &self.mapping,
                            &mut self.facts,
                            ctx,
                            &mut self.entries,
                        )?,
                        _ if header.tag == tag::QUERY => {
                            self.entries.push(Pending::Query(StatementContext::Plain));
                            None
                        }
                        _ => {
                            self.entries.push(parse_request(
                                frame,
                                StatementContext::Plain,
                                || SentForm::Unchanged,
                            )?);
                            None
                        }
                    }
                }
                tag::PASSWORD
                    if ctx.upstream_tls && protocol::sasl::claims_binding_unoffered(frame) =>
                {
                    return Err(SessionError::ChannelBinding);
                }
                tag::CLOSE => {
                    if let Some(name) = closed_statement(frame) {
                        forget_closed(tracker, name);
                    }
                    self.entries.push(Pending::Close);
                    None
                }
                tag::TERMINATE if MODE != ONE_TO_ONE => {
                    self.terminated = true;
                    break 0;
                }
                other => {
                    if let Some(entry) = request_for(other) {
                        self.entries.push(entry);
                    }
                    None
                }
            };
            if replacement.is_some() {
                self.rewritten += 1;
            }
            let transaction = if MODE == TRANSACTION_POOL {
                self.transaction.as_deref_mut()
            } else {
                None
            };
            let replacement = match transaction {
                None => replacement.map(Replace::Statement),
                Some(txn) => {
                    // Transaction pooling decides what the request becomes.
                    let entry = if self.entries.len() > queued {
                        self.entries.pop()
                    } else {
                        None
                    };
                    let facts = &mut self.facts;
                    let mut between = || session_facts(facts, &mut session, tracker);
                    translate(
                        txn,
                        frame,
                        entry,
                        replacement,
                        &mut between,
                        tracker,
                        &mut self.entries,
                    )
                }
            };
            place_frame(
                &mut self.from.out,
                &self.from.buf,
                (pos, pos + header.total_len),
                &mut reencoding,
                replacement.map(|r| move |out: &mut BytesMut| r.encode(out)),
            );
            pos += header.total_len;
        };
        Ok(Batch {
            len: pos,
            reencoded: reencoding,
            missing,
        })
    }
}

#[cold]
#[inline(never)]
fn forget_deallocated(tracker: &Mutex<Tracker>, dropped: crate::rewrite::Deallocation) {
    lock(tracker).prepared.deallocated(dropped);
}

#[cold]
#[inline(never)]
fn forget_closed(tracker: &Mutex<Tracker>, name: &[u8]) {
    lock(tracker).prepared.closed(name);
}

/// Whether a Query's text can be a DEALLOCATE or DISCARD: its first byte is
/// a `d`, a blank or a comment's start (a byte test before the real one,
/// which runs on every statement otherwise).
#[inline]
pub(super) fn may_deallocate(frame: &[u8]) -> bool {
    matches!(
        frame.get(5),
        Some(b'd' | b'D' | b'/' | b'-' | b' ' | b'\t' | b'\n' | b'\r')
    )
}

/// Read from the tracker once per batch: the lexing facts, and whether the
/// session is between transactions.
#[inline(always)]
fn session_facts(
    facts: &mut SessionFacts,
    session: &mut Option<bool>,
    tracker: &Mutex<Tracker>,
) -> bool {
    *session.get_or_insert_with(|| {
        let t = lock(tracker);
        facts.encoding = t.encoding;
        facts.standard_conforming_strings = t.standard_conforming_strings;
        t.between_transactions()
    })
}

/// What to send in place of a client frame.
pub(super) enum Replace<'a> {
    Statement(Replacement<'a>),
    /// Transaction pooling: frames built whole.
    Bytes(BytesMut),
}

impl Replace<'_> {
    #[inline(always)]
    fn encode(&self, out: &mut BytesMut) {
        match self {
            Replace::Statement(r) => r.encode(out),
            Replace::Bytes(b) => out.extend_from_slice(b),
        }
    }
}

/// The frame to send in place of a client's Query or Parse.
pub(super) struct Replacement<'a> {
    pub(super) sql: SentText<'a>,
    /// The Parse the text came in; `None` for a Query.
    pub(super) parse: Option<ParseView<'a>>,
}

/// The text of a replacement frame.
pub(super) enum SentText<'a> {
    /// The client's text with the rewrite's insertions.
    Spliced {
        original: &'a [u8],
        edits: Vec<Edit>,
    },
    /// [`REFUSED_SQL`].
    Refused,
}

impl Replacement<'_> {
    #[inline(always)]
    fn encode(&self, out: &mut BytesMut) {
        // Spliced straight into the frame: no intermediate copy of the text.
        let write_text = |out: &mut BytesMut| match &self.sql {
            SentText::Spliced { original, edits } => splice_into(out, original, edits),
            SentText::Refused => out.extend_from_slice(REFUSED_SQL),
        };
        match &self.parse {
            None => protocol::encode_query_with(out, write_text),
            Some(p) => protocol::encode_parse_with(out, p.name, write_text, p.param_types),
        }
    }
}

/// Rewrite one Query or Parse frame: queue the request to track in
/// `entries`, and return the frame to send instead (None: forward as is).
fn statement<'a>(
    frame: &'a [u8],
    frame_tag: u8,
    map: &SchemaMap,
    mapping: &Mapping,
    facts: &mut SessionFacts,
    ctx: &RelayContext,
    entries: &mut Vec<Pending>,
) -> Result<Option<Replacement<'a>>, SessionError> {
    let (text, parse) = if frame_tag == tag::QUERY {
        (
            QueryView::parse(frame).map_err(SessionError::Client)?.query,
            None,
        )
    } else {
        let p = ParseView::parse(frame).map_err(SessionError::Client)?;
        (p.query, Some(p))
    };
    let policy = mapping.snapshot.on_parse_error;
    let (context, sql): (StatementContext, Option<SentText<'a>>) = match qualify(
        text,
        Some(map),
        mapping.mode,
        policy,
        facts,
        ctx.state.rewriter,
        &Observer {
            metrics: &ctx.state.metrics,
            database: Some(&ctx.database_metrics),
            unmapped: Some((&ctx.state.unmapped, &ctx.identity)),
            log_dry_run: true,
        },
    ) {
        TextRewrite::Unchanged => (StatementContext::Plain, None),
        // Only a Query's command tag is corrected (see `Rewritten`).
        TextRewrite::Changed { edits, context } => {
            if let Some(tags) = &context.show_tags
                && frame_tag == tag::QUERY
            {
                entries.extend(tags.iter().map(|&show| {
                    Pending::Silent(if show {
                        Silent::ShowTag
                    } else {
                        Silent::PassTag
                    })
                }));
            }
            (
                StatementContext::Rewritten(context),
                Some(SentText::Spliced {
                    original: text,
                    edits,
                }),
            )
        }
        TextRewrite::Rejected { code, message } => {
            tracing::debug!(message = %message, "statement refused");
            (
                StatementContext::Refused {
                    code,
                    message: message.into_boxed_str(),
                },
                Some(SentText::Refused),
            )
        }
    };
    entries.push(if frame_tag == tag::QUERY {
        Pending::Query(context)
    } else {
        // Only a named statement keeps its sent form (a clone of the edits).
        let sent = || match &sql {
            None => SentForm::Unchanged,
            Some(SentText::Spliced { edits, .. }) => SentForm::Spliced(edits.clone()),
            Some(SentText::Refused) => SentForm::Refused,
        };
        parse_request(frame, context, sent)?
    });
    Ok(sql.map(|sql| Replacement { sql, parse }))
}

/// Server -> client.
struct Downstream {
    from: Inbound,
    /// Set while a write to the client is under way: if the relay stops
    /// then, the client may hold half a frame and must not get another.
    writing: bool,
}

impl Downstream {
    async fn run<const MODE: RelayMode>(
        &mut self,
        client: &mut OwnedWriteHalf,
        tracker: &Mutex<Tracker>,
        draining: &AtomicBool,
        ctx: &RelayContext,
    ) -> Result<&'static str, SessionError> {
        loop {
            let batch = self.scan(tracker, ctx)?;
            if batch.len > 0 {
                self.writing = true;
                client.write_all(self.from.outgoing(&batch)).await?;
                if client.is_tls() {
                    // rustls may still hold ciphertext (a BufWriter).
                    client.flush().await?;
                }
                self.writing = false;
                self.from.sent(&batch);
                // Draining: the transaction is over once its
                // ReadyForQuery(idle) is out; close before the next request.
                if (MODE == TRANSACTION_POOL || draining.load(Ordering::Relaxed))
                    && lock(tracker).between_transactions()
                {
                    if draining.load(Ordering::Relaxed) {
                        return Err(SessionError::Shutdown);
                    }
                    return Ok(transactions::TRANSACTION_DONE);
                }
            }
            prepare_read(&mut self.from.buf, batch.missing);
            let n = self.from.read.read_buf(&mut self.from.buf).await?;
            if !self.from.got(n) {
                return Ok("server closed");
            }
        }
    }

    fn scan(
        &mut self,
        tracker: &Mutex<Tracker>,
        ctx: &RelayContext,
    ) -> Result<Batch, SessionError> {
        let max = ctx.config.max_message_size;
        let mut pos = 0;
        let mut reencoding = false;
        let mut t = lock(tracker);
        let missing = loop {
            let rest = &self.from.buf[pos..];
            let Some(header) = peek_header(rest, max).map_err(SessionError::Server)? else {
                break 0;
            };
            if rest.len() < header.total_len {
                break header.total_len - rest.len();
            }
            let frame = &rest[..header.total_len];
            // Views of server frames are read leniently: a frame the proxy
            // cannot read is still forwarded untouched.
            let replacement = if header.tag == tag::BACKEND_KEY_DATA {
                BackendKeyData::parse(frame).ok().and_then(|k| {
                    let server_key = (k.pid, k.secret);
                    let key = ctx.state.cancel_keys.register(server_key, ctx.upstream);
                    t.cancel_key = Some(key);
                    // With a peer id the client gets the proxy's own key.
                    (key != server_key).then(|| {
                        let mut out = BytesMut::with_capacity(13);
                        crate::protocol::encode_backend_key_data(&mut out, key.0, key.1);
                        out
                    })
                })
            } else {
                let replacement = t.on_server_frame(header.tag, frame, &ctx.state.metrics);
                // Set only where an answer was dropped (the test of the
                // rare case stays off the common path).
                if replacement.is_some()
                    && let Some(error) = t.begin_failed.take()
                {
                    return Err(SessionError::BeginFailed(error));
                }
                if header.tag == tag::READY_FOR_QUERY
                    && let Some(status) = t.status
                {
                    ctx.client.set_state(ClientState::from_ready_status(status));
                }
                replacement
            };
            place_frame(
                &mut self.from.out,
                &self.from.buf,
                (pos, pos + header.total_len),
                &mut reencoding,
                replacement.map(|bytes| move |out: &mut BytesMut| out.extend_from_slice(&bytes)),
            );
            pos += header.total_len;
        };
        Ok(Batch {
            len: pos,
            reencoded: reencoding,
            missing,
        })
    }
}

/// Client frames the 1:1 and session relays pass on untouched, with at most
/// a request to track: all but Query and Parse (rewritten), Close (forgets
/// a statement), Terminate (kept from a pooled server) and password
/// messages (checked for channel binding).
#[inline]
fn forwarded_as_is(frame_tag: u8) -> bool {
    !matches!(
        frame_tag,
        tag::QUERY | tag::PARSE | tag::CLOSE | tag::TERMINATE | tag::PASSWORD
    )
}

/// Transaction pooling: whether a frame passed on as is elsewhere names a
/// client's statement (a Bind or a Describe of a named one), which goes to
/// servers under another name; every other such frame passes untouched
/// there too (an unnamed statement's Bind, Execute, Sync, ...).
#[inline]
fn names_a_statement(frame: &[u8]) -> bool {
    match frame[0] {
        tag::BIND => {
            let body = &frame[5..];
            body.iter()
                .position(|&b| b == 0)
                .is_some_and(|p| body.get(p + 1).is_some_and(|&b| b != 0))
        }
        tag::DESCRIBE => frame.get(5) == Some(&b'S') && frame.get(6).is_some_and(|&b| b != 0),
        _ => false,
    }
}

/// The request a client frame (other than Query/Parse) asks the server to
/// answer; `None` for frames with no answer of their own (Flush, CopyData,
/// CopyDone, CopyFail, Terminate, password messages).
fn request_for(frame_tag: u8) -> Option<Pending> {
    match frame_tag {
        tag::BIND => Some(Pending::Bind),
        tag::DESCRIBE => Some(Pending::Describe),
        tag::EXECUTE => Some(Pending::Execute),
        tag::CLOSE => Some(Pending::Close),
        tag::SYNC => Some(Pending::Sync),
        tag::FUNCTION_CALL => Some(Pending::FunctionCall),
        _ => None,
    }
}

mod transactions;

pub(super) use transactions::relay_transactions;

#[cfg(test)]
mod tests;
