//! The request tracker: what the client has sent that the server has yet to
//! answer, in send order, so each answer is matched to the statement it
//! answers (error positions moved back, refusals swapped for the proxy's
//! own error, per-schema results counted, idle and transaction state known
//! for a reload or a drain).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use bytes::BytesMut;

use crate::metrics::Metrics;
use crate::protocol::{self, ErrorFields, ParameterStatus, SqlState, tag};
use crate::qualify::Rewritten;
use crate::rewrite::EncodingClass;

use super::prepared::{NamedParseRequest, PreparedStatements};
use super::sql_prepare::{SqlQuery, SqlStatements};
use super::transaction::DescribedStatement;
use crate::pool::ServerStatementNames as ServerStatements;

/// A request the server has yet to finish answering, in send order.
#[derive(Debug)]
pub(super) enum Pending {
    Query(StatementContext),
    Parse(StatementContext),
    /// A named Parse, with the statement to keep once the server confirms it.
    NamedParse(Box<NamedParseRequest>),
    Bind,
    Describe,
    /// Transaction pooling: a Describe of a client's statement, whose
    /// answer the pool keeps (see [`PoolStatements`]).
    ///
    /// [`PoolStatements`]: crate::pool::PoolStatements
    DescribeStatement(Box<DescribedStatement>),
    Execute,
    Close,
    Sync,
    FunctionCall,
    /// Sent by the proxy itself (statements prepared again after a
    /// reload): the answer is not the client's and is dropped.
    Silent(Silent),
}

impl Pending {
    /// The statement a Query or Parse carries, for the answer to it.
    #[inline]
    pub(super) fn statement(&self) -> Option<&StatementContext> {
        match self {
            Pending::Query(c) | Pending::Parse(c) => Some(c),
            Pending::NamedParse(request) => Some(&request.context),
            _ => None,
        }
    }
}

/// A request the proxy sent on its own.
#[derive(Debug)]
pub(super) enum Silent {
    Close,
    /// The statement's name, forgotten if the server refuses it.
    Parse(Box<[u8]>),
    /// Transaction pooling: a statement prepared on this server before the
    /// client's Bind or Describe uses it; its error reaches the client.
    Prepare(Box<[u8]>),
    Sync,
    /// Transaction pooling: a statement of the proxy's own before a
    /// client's SQL-level PREPARE/EXECUTE/DEALLOCATE in the same Query
    /// (`sql_prepare.rs`); its CommandComplete is dropped.
    Command,
    /// Before a Query whose `SHOW search_path` statements the proxy sent
    /// as a SELECT of the client's path, one per statement up to the last
    /// of those, in order: this statement's CommandComplete is sent as
    /// `SHOW` (`ShowTag`) or as it comes (`PassTag`).
    ShowTag,
    PassTag,
    /// Transaction pooling: one answer to a BEGIN the proxy answered
    /// itself and sent ahead of the client's next request
    /// (`DeferredBegin`).
    Begin,
}

/// The CommandComplete of a `SHOW search_path` the proxy answered with a
/// SELECT of the client's path.
#[cold]
fn shown_by_show() -> BytesMut {
    let mut frame = BytesMut::new();
    protocol::encode_command_complete(&mut frame, "SHOW");
    frame
}

/// What the proxy did to a statement, for the server's answer to it.
#[derive(Debug)]
pub(super) enum StatementContext {
    Plain,
    Rewritten(Rewritten),
    Refused {
        code: SqlState,
        message: Box<str>,
    },
    /// Transaction pooling: an SQL-level prepared statement's Query.
    Sql(Box<SqlQuery>),
}

impl StatementContext {
    /// What the proxy did to the client's own text.
    #[inline]
    pub(super) fn own(&self) -> &StatementContext {
        match self {
            StatementContext::Sql(q) => &q.context,
            other => other,
        }
    }

    /// Count the server's answer for each schema the rewrite qualified
    /// names with (once per schema per statement).
    pub(super) fn record_result(&self, ok: bool) {
        let r = match self {
            StatementContext::Rewritten(r) => r,
            StatementContext::Sql(q) => return q.context.record_result(ok),
            _ => return,
        };
        for m in &r.schemas {
            let counter = if ok { &m.results_ok } else { &m.results_error };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[derive(Debug)]
pub(super) struct Tracker {
    pub(super) pending: VecDeque<Pending>,
    /// The last ReadyForQuery status; `None` until the first one.
    pub(super) status: Option<u8>,
    /// The server's client_encoding and standard_conforming_strings, as
    /// its ParameterStatus messages report them.
    pub(super) encoding: EncodingClass,
    pub(super) standard_conforming_strings: bool,
    pub(super) cancel_key: Option<(i32, i32)>,
    /// When each Query, Sync or FunctionCall still unanswered was sent: its
    /// ReadyForQuery ends the client's round trip.
    pub(super) sent_at: VecDeque<Instant>,
    /// When the last ReadyForQuery that ended a round trip was read (the
    /// clock read its latency took): transaction pooling's connection is
    /// idle from then on.
    pub(super) ready_at: Option<Instant>,
    /// An ErrorResponse arrived since the last ReadyForQuery.
    pub(super) error_since_ready: bool,
    /// The server has sent AuthenticationOk: only from then on may client
    /// frames be as large as `max_message_size`.
    pub(super) authenticated: bool,
    /// The client's named prepared statements, as the server holds them.
    pub(super) prepared: PreparedStatements,
    /// Transaction pooling: the statements the current server connection
    /// holds (by server name); `None` otherwise.
    pub(super) server_statements: Option<ServerStatements>,
    /// Transaction pooling: the client's SQL-level prepared statements.
    pub(super) sql: SqlStatements,
    /// Transaction pooling: the server's ErrorResponse to a BEGIN the proxy
    /// answered itself; the session ends with it.
    pub(super) begin_failed: Option<BytesMut>,
}

impl Tracker {
    /// A tracker for a relay that starts before login (`logged_in` false:
    /// the 1:1 relay sees the server's authentication) or after it (a
    /// pool's connection, idle).
    pub(super) fn new(logged_in: bool) -> Tracker {
        Tracker {
            pending: VecDeque::with_capacity(16),
            status: logged_in.then_some(b'I'),
            encoding: EncodingClass::AsciiSafe,
            standard_conforming_strings: true,
            cancel_key: None,
            sent_at: VecDeque::with_capacity(16),
            ready_at: None,
            error_since_ready: false,
            authenticated: logged_in,
            prepared: PreparedStatements::default(),
            server_statements: None,
            sql: SqlStatements::default(),
            begin_failed: None,
        }
    }

    pub(super) fn is_idle(&self) -> bool {
        self.status.is_some() && self.pending.is_empty()
    }

    /// Idle and outside any transaction: a new mapping may start here.
    pub(super) fn between_transactions(&self) -> bool {
        self.is_idle() && self.status == Some(b'I')
    }

    /// ReadyForQuery ends the oldest Query, Sync or FunctionCall and
    /// everything the server skipped before it.
    pub(super) fn ready(&mut self, status: u8, metrics: &Metrics) {
        self.status = Some(status);
        let ok = !std::mem::take(&mut self.error_since_ready);
        while let Some(p) = self.pending.pop_front() {
            if let Some(c) = p.statement() {
                c.record_result(ok);
            }
            if matches!(p, Pending::Query(_) | Pending::Sync | Pending::FunctionCall) {
                break;
            }
        }
        if let Some(sent) = self.sent_at.pop_front() {
            let now = Instant::now();
            metrics.statement_seconds.record(now.duration_since(sent));
            self.ready_at = Some(now);
        }
    }

    /// Queue the requests of a batch sent to the server at `now`.
    #[inline(always)]
    pub(super) fn sent(&mut self, entries: &mut Vec<Pending>, now: Instant) {
        for entry in entries.drain(..) {
            if matches!(
                entry,
                Pending::Query(_) | Pending::Sync | Pending::FunctionCall
            ) {
                self.sent_at.push_back(now);
            }
            self.pending.push_back(entry);
        }
    }

    pub(super) fn pop_if(&mut self, wanted: fn(&Pending) -> bool) {
        if self.pending.front().is_some_and(wanted) {
            self.pending.pop_front();
        }
    }

    /// Account for one server frame; returns the frame to send instead, if
    /// any. Views are read leniently: a frame the proxy cannot read is
    /// still forwarded untouched.
    pub(super) fn on_server_frame(
        &mut self,
        frame_tag: u8,
        frame: &[u8],
        metrics: &Metrics,
    ) -> Option<BytesMut> {
        if matches!(self.pending.front(), Some(Pending::Silent(_)))
            && let Some(consumed) = self.on_silent_answer(frame_tag, frame, metrics)
        {
            return consumed;
        }
        match frame_tag {
            tag::READY_FOR_QUERY => {
                if let Ok(status) = protocol::ready_for_query_status(frame) {
                    self.ready(status, metrics);
                }
            }
            tag::ERROR_RESPONSE => {
                self.error_since_ready = true;
                // Transaction pooling: a statement the server refused is
                // not on it.
                if let (Some(server), Some(Pending::NamedParse(request))) =
                    (&mut self.server_statements, self.pending.front())
                {
                    server.remove(&request.named.name);
                }
                if let Some(Pending::Query(StatementContext::Sql(_))) = self.pending.front() {
                    self.sql_query_failed();
                }
                return self.correct_error(frame, metrics);
            }
            // A WARNING or NOTICE about the statement carries a position
            // in the sent text too.
            tag::NOTICE_RESPONSE => return self.correct_notice(frame, metrics),
            tag::PARSE_COMPLETE => match self.pending.front() {
                Some(Pending::Parse(c)) => {
                    c.record_result(true);
                    self.pending.pop_front();
                }
                Some(Pending::NamedParse(_)) => {
                    if let Some(Pending::NamedParse(request)) = self.pending.pop_front() {
                        request.context.record_result(true);
                        match &self.server_statements {
                            None => self.prepared.confirmed(request.named),
                            Some(server) => super::transaction::accepted(server, &request.named),
                        }
                    }
                }
                _ => {}
            },
            tag::BIND_COMPLETE => self.pop_if(|p| matches!(p, Pending::Bind)),
            tag::CLOSE_COMPLETE => self.pop_if(|p| matches!(p, Pending::Close)),
            tag::ROW_DESCRIPTION | tag::NO_DATA => match self.pending.front() {
                Some(Pending::Describe) => {
                    self.pending.pop_front();
                }
                Some(Pending::DescribeStatement(_)) => self.statement_described(frame),
                _ => {}
            },
            tag::PARAMETER_DESCRIPTION => {
                if let Some(Pending::DescribeStatement(d)) = self.pending.front_mut() {
                    d.frames.extend_from_slice(frame);
                }
            }
            tag::COMMAND_COMPLETE | tag::EMPTY_QUERY | tag::PORTAL_SUSPENDED => {
                self.pop_if(|p| matches!(p, Pending::Execute))
            }
            tag::PARAMETER_STATUS => {
                if let Ok(s) = ParameterStatus::parse(frame) {
                    match s.name {
                        b"client_encoding" => self.encoding = EncodingClass::of(s.value),
                        b"standard_conforming_strings" => {
                            self.standard_conforming_strings = s.value != b"off"
                        }
                        _ => {}
                    }
                }
            }
            // AuthenticationOk (code 0 after the header) ends the pre-login
            // frame bound; while logging in, the client is never offered
            // channel binding (the proxy relays authentication).
            tag::AUTHENTICATION => {
                if frame.get(5..9) == Some(&[0, 0, 0, 0]) {
                    self.authenticated = true;
                }
                if self.status.is_none() {
                    return protocol::sasl::without_channel_binding(frame);
                }
            }
            _ => {}
        }
        None
    }

    /// The NoticeResponse to send instead of `frame`, if any: the server's
    /// with its position moved back to the client's text.
    #[cold]
    #[inline(never)]
    pub(super) fn correct_notice(&self, frame: &[u8], metrics: &Metrics) -> Option<BytesMut> {
        match self.pending.front()?.statement()?.own() {
            StatementContext::Rewritten(r) => Self::moved_position(r, frame, metrics),
            _ => None,
        }
    }

    pub(super) fn moved_position(
        r: &Rewritten,
        frame: &[u8],
        metrics: &Metrics,
    ) -> Option<BytesMut> {
        let shift = r.position.as_ref()?;
        let fields = ErrorFields::parse(frame).ok()?;
        let sent = fields.position()?;
        let original = shift.original_position(sent);
        if original == sent {
            return None;
        }
        metrics
            .error_positions_corrected
            .fetch_add(1, Ordering::Relaxed);
        Some(BytesMut::from(&fields.with_position(original)[..]))
    }

    /// The ErrorResponse to send instead of `frame`, if any: the proxy's own
    /// 0A000 for a refused statement, or the server's with its position
    /// moved back to the client's text (other fields byte for byte).
    #[cold]
    #[inline(never)]
    pub(super) fn correct_error(&self, frame: &[u8], metrics: &Metrics) -> Option<BytesMut> {
        let context = self.pending.front()?.statement()?.own();
        match context {
            StatementContext::Plain | StatementContext::Sql(_) => None,
            StatementContext::Refused { code, message } => {
                let mut out = BytesMut::new();
                protocol::encode_error_response(&mut out, "ERROR", code.code(), message);
                Some(out)
            }
            StatementContext::Rewritten(r) => Self::moved_position(r, frame, metrics),
        }
    }
}

impl Tracker {
    /// Transaction pooling: the server described a client's statement
    /// (the front request) with `frame` last; the pool keeps its answer.
    #[cold]
    #[inline(never)]
    fn statement_described(&mut self, frame: &[u8]) {
        if let Some(Pending::DescribeStatement(mut d)) = self.pending.pop_front()
            && let Some(server) = &self.server_statements
        {
            d.frames.extend_from_slice(frame);
            server.described(&d.server_name, d.frames.freeze());
        }
    }

    /// The server's answer to a request the proxy sent on its own: dropped
    /// (an empty replacement). `None`: not such an answer (e.g. a
    /// ParameterStatus), handled as usual.
    #[cold]
    #[inline(never)]
    fn on_silent_answer(
        &mut self,
        frame_tag: u8,
        frame: &[u8],
        metrics: &Metrics,
    ) -> Option<Option<BytesMut>> {
        match frame_tag {
            tag::COMMAND_COMPLETE => match self.pending.front() {
                Some(Pending::Silent(Silent::Command)) => {
                    self.pending.pop_front();
                }
                Some(Pending::Silent(Silent::ShowTag)) => {
                    self.pending.pop_front();
                    return Some(Some(shown_by_show()));
                }
                Some(Pending::Silent(Silent::PassTag)) => {
                    self.pending.pop_front();
                    return None;
                }
                Some(Pending::Silent(Silent::Begin)) => {
                    self.pending.pop_front();
                }
                _ => return None,
            },
            tag::BIND_COMPLETE | tag::NO_DATA | tag::PARAMETER_DESCRIPTION
                if matches!(self.pending.front(), Some(Pending::Silent(Silent::Begin))) =>
            {
                self.pending.pop_front();
            }
            // The client was told its transaction had begun: nothing may
            // run as if it had (the server skips to a Sync that never
            // comes), and the session ends with this error.
            tag::ERROR_RESPONSE
                if matches!(self.pending.front(), Some(Pending::Silent(Silent::Begin))) =>
            {
                while let Some(Pending::Silent(Silent::Begin)) = self.pending.front() {
                    self.pending.pop_front();
                }
                self.begin_failed = Some(BytesMut::from(frame));
            }
            // A statement of such a Query failed: the server skips the
            // rest, and the error is the client's.
            tag::ERROR_RESPONSE
                if matches!(
                    self.pending.front(),
                    Some(Pending::Silent(Silent::ShowTag | Silent::PassTag))
                ) =>
            {
                while let Some(Pending::Silent(Silent::ShowTag | Silent::PassTag)) =
                    self.pending.front()
                {
                    self.pending.pop_front();
                }
                return None;
            }
            // The proxy's statement before a client's SQL-level one failed:
            // the server skips the rest of the Query, and the error is the
            // client's (the Query's request knows how many were left).
            tag::ERROR_RESPONSE
                if matches!(self.pending.front(), Some(Pending::Silent(Silent::Command))) =>
            {
                let mut remaining = 0u8;
                while let Some(Pending::Silent(Silent::Command)) = self.pending.front() {
                    self.pending.pop_front();
                    remaining = remaining.saturating_add(1);
                }
                if let Some(Pending::Query(StatementContext::Sql(q))) = self.pending.front_mut() {
                    q.remaining = remaining;
                }
                return None;
            }
            tag::PARSE_COMPLETE | tag::CLOSE_COMPLETE => match self.pending.pop_front() {
                Some(Pending::Silent(Silent::Parse(_))) => {
                    metrics.prepared_reprepared.fetch_add(1, Ordering::Relaxed);
                }
                Some(Pending::Silent(Silent::Prepare(name))) => {
                    if let Some(server) = &self.server_statements {
                        server.accepted(&name, None);
                    }
                }
                _ => {}
            },
            tag::ERROR_RESPONSE => {
                // A statement the client's next request needs: the error is
                // the client's (the server skips that request too).
                if let Some(Pending::Silent(Silent::Prepare(name))) = self.pending.front() {
                    if let Some(server) = &mut self.server_statements {
                        server.remove(name);
                    }
                    self.pending.pop_front();
                    return None;
                }
                // The server skips to the Sync; the statement stays closed,
                // so the client's next Bind of it fails loudly.
                if let Some(Pending::Silent(Silent::Parse(name))) = self.pending.front() {
                    let message = ErrorFields::parse(frame)
                        .ok()
                        .and_then(|f| f.get(b'M'))
                        .map(|m| String::from_utf8_lossy(m).into_owned())
                        .unwrap_or_default();
                    tracing::warn!(
                        statement = %String::from_utf8_lossy(name),
                        error = %message,
                        "a prepared statement could not be prepared again under the new mapping; it is closed"
                    );
                    metrics
                        .prepared_reprepare_failed
                        .fetch_add(1, Ordering::Relaxed);
                    let name = name.clone();
                    self.prepared.closed(&name);
                }
            }
            tag::READY_FOR_QUERY => {
                // Ours only if our own Sync follows the leading requests
                // of ours; else they were skipped after an error and the
                // ReadyForQuery answers the client's Sync.
                let own = self
                    .pending
                    .iter()
                    .take_while(|p| matches!(p, Pending::Silent(_)))
                    .any(|p| matches!(p, Pending::Silent(Silent::Sync)));
                while let Some(Pending::Silent(s)) = self.pending.front() {
                    let sync = matches!(s, Silent::Sync);
                    self.pending.pop_front();
                    if sync {
                        break;
                    }
                }
                if !own {
                    return None;
                }
                if let Ok(status) = protocol::ready_for_query_status(frame) {
                    self.status = Some(status);
                }
            }
            _ => return None,
        }
        Some(Some(BytesMut::new()))
    }
}

#[inline(always)]
pub(super) fn lock(tracker: &Mutex<Tracker>) -> MutexGuard<'_, Tracker> {
    // A poisoned lock only means another half panicked mid-update; the
    // tracker holds no invariant worth dying for.
    tracker.lock().unwrap_or_else(|p| p.into_inner())
}
