//! Transaction pooling: what a client keeps while its server connection
//! changes at every transaction boundary.
//!
//! - Named prepared statements: a client's statement `N` is sent to servers
//!   as `heal7_<digest of the sent text and parameter types>`, prepared on
//!   whichever server the client has when it is missing there (a Parse of
//!   the proxy's own before the Bind or Describe, its ParseComplete
//!   dropped), and kept in a bounded per-server cache (LRU; evicted ones
//!   are closed). A Parse of a statement the server already has becomes a
//!   Parse of an empty statement (its ParseComplete answers the client's);
//!   a client's Close becomes a Close of a name that never exists (its
//!   CloseComplete answers). So every answer comes from the server, in
//!   order, once the client holds a server connection. Between
//!   transactions, a prepare (Parse, Describe, Close, Sync) of statements
//!   the pool knows is answered by the proxy without taking one
//!   (`relay/transactions/local_answers.rs`).
//! - Session settings: `SET name ...` outside a transaction is carried and
//!   replayed on each server connection the client gets; `RESET` forgets.
//! - SQL-level PREPARE/EXECUTE/DEALLOCATE sent alone in a Query are
//!   carried the same way (`sql_prepare.rs`).
//! - What cannot survive a server change is refused with 0A000 naming
//!   transaction pooling: LISTEN, SQL-level PREPARE in a Parse or after
//!   the first statement of a Query, cursors WITH HOLD, session advisory
//!   locks, temporary tables without ON COMMIT DROP.

use std::collections::HashMap;

use bytes::{BufMut, BytesMut};
use sha2::{Digest, Sha256};

use std::sync::Mutex;

use super::prepared::{Prepared, SentForm};
use super::relay::{Replace, Replacement, SentText};
use super::sql_prepare::{SqlTranslation, translate_query};
use super::tracker::{Pending, Silent, StatementContext, Tracker, lock};
use crate::pool::ServerStatementNames as ServerStatements;
use crate::protocol::{self, ParseView, SqlState, tag};
use crate::rewrite::{
    Deallocation, deallocation, may_be_sql_prepared, prepare_statements, splice_into,
};

/// A client statement and the name it has on servers.
#[derive(Debug)]
struct ClientStatement {
    statement: Prepared,
    server_name: Box<[u8]>,
}

/// What a transaction-pooled client keeps across server connections.
#[derive(Debug, Default)]
pub(super) struct TransactionClient {
    /// foldhash, not SipHash (a Bind's lookup of a prepared statement was
    /// ~250 instructions of SipHash): only this client's own names are
    /// keys, so colliding names could slow down no one but itself.
    statements: HashMap<Box<[u8]>, ClientStatement, foldhash::fast::RandomState>,
    /// `SET` commands to replay, by lower-case name, as the client wrote
    /// the value.
    pub(super) settings: Vec<(String, String)>,
    /// Bumped at every change of `settings`.
    pub(super) settings_version: u64,
    /// Counters: a statement found on the server / prepared there first.
    pub(super) hits: u64,
    pub(super) misses: u64,
    /// A BEGIN the proxy answered without a server connection, sent ahead
    /// of the client's next request (see [`DeferredBegin`]).
    pub(super) deferred_begin: Option<DeferredBegin>,
}

/// A transaction's BEGIN, answered by the proxy between transactions and
/// sent to the server connection the client's next request takes, in the
/// same write: the connection is held one round trip less per
/// transaction, and the server sees no idle time inside it.
///
/// It is sent as Parse, Bind and Execute of the unnamed statement with no
/// Sync of its own: should the server fail it (a cancel that reaches it,
/// say), PostgreSQL then skips everything up to the next Sync, so the
/// client's request can never run outside the transaction it was told
/// has begun; the proxy ends the session with the server's error
/// (`SessionError::BeginFailed`).
#[derive(Debug)]
pub(super) struct DeferredBegin {
    /// Parse, Bind, [Describe,] Execute.
    pub frames: BytesMut,
    /// The server's answers to them, dropped: ParseComplete, BindComplete,
    /// [NoData,] CommandComplete.
    pub answers: u8,
}

/// The command tag of a bare `BEGIN [WORK | TRANSACTION]` or `START
/// TRANSACTION` (any case, ASCII white space, one trailing `;`), the only
/// transaction starts the proxy answers itself: with no options, nothing
/// in it can fail on an idle server connection. (An isolation level or
/// READ WRITE can: on a standby, for one.)
pub(super) fn bare_begin(text: &[u8]) -> Option<&'static str> {
    let text = text.trim_ascii();
    let text = text.strip_suffix(b";").unwrap_or(text);
    // Asked of every short first statement of a transaction: most are
    // told by their length or first letter.
    if text.len() > 32 || !matches!(text.first(), Some(b'b' | b'B' | b's' | b'S')) {
        return None;
    }
    let mut words = text
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty());
    let (first, second) = (words.next()?, words.next());
    if words.next().is_some() {
        return None;
    }
    let is = |w: Option<&[u8]>, word: &[u8]| w.is_some_and(|w| w.eq_ignore_ascii_case(word));
    if is(Some(first), b"begin")
        && (second.is_none() || is(second, b"work") || is(second, b"transaction"))
    {
        Some("BEGIN")
    } else if is(Some(first), b"start") && is(second, b"transaction") {
        Some("START TRANSACTION")
    } else {
        None
    }
}

/// A name no statement ever has: Close of it answers CloseComplete.
const NO_STATEMENT: &[u8] = b"heal7_proxy_none";
/// The scratch statement a cache hit parses (empty text) and closes.
const SCRATCH_STATEMENT: &[u8] = b"heal7_proxy_scratch";

/// The text a statement is sent with.
pub(super) fn sent_text(statement: &Prepared, out: &mut BytesMut) {
    match &statement.sent {
        SentForm::Spliced(edits) => splice_into(out, &statement.query, edits),
        SentForm::Unchanged => out.extend_from_slice(&statement.query),
        SentForm::Refused => out.extend_from_slice(super::relay::REFUSED_SQL),
    }
}

/// `heal7_` + 32 hex digits of SHA-256 over the sent text and types.
pub(super) fn server_name(statement: &Prepared) -> Box<[u8]> {
    let mut text = BytesMut::new();
    sent_text(statement, &mut text);
    let mut h = Sha256::new();
    h.update(&text);
    h.update([0]);
    h.update(&statement.param_types);
    let digest = h.finalize();
    let mut name = b"heal7_".to_vec();
    for b in &digest[..16] {
        name.extend_from_slice(format!("{b:02x}").as_bytes());
    }
    name.into_boxed_slice()
}

/// How one client frame goes to the server in transaction mode.
pub(super) struct Translated {
    /// Requests of the proxy's own placed before the frame's.
    pub before: Vec<Pending>,
    /// The frame's own request (replaces the relay's).
    pub entry: Option<Pending>,
    /// Requests of the proxy's own placed after the frame's.
    pub after: Vec<Pending>,
    /// What to send in place of the frame.
    pub bytes: BytesMut,
}

impl TransactionClient {
    /// A named Parse: record the client's name, and send the server a Parse
    /// under the server name, or (the server has it) of a scratch
    /// statement. `context`: what the relay did to the statement.
    pub(super) fn parse(
        &mut self,
        client_name: &[u8],
        statement: Prepared,
        context: StatementContext,
        server: &mut ServerStatements,
    ) -> Translated {
        let server_name = server_name(&statement);
        let mut bytes = BytesMut::new();
        let translated = if server.contains(&server_name) {
            self.hits += 1;
            // Accepted here before: the pool knows it (again, after a
            // reload started its record afresh).
            server.accepted(
                &server_name,
                Some((&statement.query, &statement.param_types)),
            );
            protocol::encode_parse(&mut bytes, SCRATCH_STATEMENT, b"", &[0, 0]);
            protocol::encode_close(&mut bytes, b'S', SCRATCH_STATEMENT);
            Translated {
                before: Vec::new(),
                entry: Some(Pending::Parse(context)),
                after: vec![Pending::Silent(Silent::Close)],
                bytes,
            }
        } else {
            self.misses += 1;
            encode_parse(&mut bytes, &server_name, &statement);
            // Known from now on (a Describe in the same batch must not
            // prepare it twice); forgotten again if the server refuses it.
            server.insert(server_name.clone());
            Translated {
                before: Vec::new(),
                entry: Some(Pending::Parse(context)),
                after: Vec::new(),
                bytes,
            }
            .confirming(&server_name, &statement)
        };
        self.statements.insert(
            client_name.into(),
            ClientStatement {
                statement,
                server_name,
            },
        );
        translated
    }

    /// A Bind or a Describe of statement `client_name` (`frame` with the
    /// name at `name_at..name_at + len`): the frame under the server name,
    /// after a Parse of it if the server lacks it. `None`: not a statement
    /// of the client's (the unnamed one, or unknown: forwarded as is).
    pub(super) fn uses(
        &mut self,
        frame: &[u8],
        name_at: usize,
        client_name: &[u8],
        entry: Option<Pending>,
        server: &mut ServerStatements,
    ) -> Option<Translated> {
        let s = self.statements.get(client_name)?;
        // A Describe's answer is kept for the pool.
        let entry = match frame[0] {
            tag::DESCRIBE => Some(Pending::DescribeStatement(Box::new(DescribedStatement {
                server_name: s.server_name.clone(),
                frames: BytesMut::new(),
            }))),
            _ => entry,
        };
        let mut bytes = BytesMut::with_capacity(frame.len() + 64);
        let mut before = Vec::new();
        if !server.contains(&s.server_name) {
            self.misses += 1;
            encode_parse(&mut bytes, &s.server_name, &s.statement);
            server.insert(s.server_name.clone());
            before.push(Pending::Silent(Silent::Prepare(s.server_name.clone())));
        } else {
            self.hits += 1;
        }
        // The same frame with the name swapped; the length is recomputed.
        let start = bytes.len();
        bytes.put_u8(frame[0]);
        bytes.put_i32(0);
        bytes.extend_from_slice(&frame[5..name_at]);
        bytes.extend_from_slice(&s.server_name);
        bytes.extend_from_slice(&frame[name_at + client_name.len()..]);
        let len = (bytes.len() - start - 1) as i32;
        bytes[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
        Some(Translated {
            before,
            entry,
            after: Vec::new(),
            bytes,
        })
    }

    /// A Close of the client's statement: forgotten here, the server keeps
    /// it cached; the server answers a Close of a name that never exists.
    pub(super) fn close(&mut self, client_name: &[u8], entry: Option<Pending>) -> Translated {
        self.statements.remove(client_name);
        let mut bytes = BytesMut::new();
        protocol::encode_close(&mut bytes, b'S', NO_STATEMENT);
        Translated {
            before: Vec::new(),
            entry,
            after: Vec::new(),
            bytes,
        }
    }

    /// DEALLOCATE ALL / DISCARD ALL reach the server: its statements are
    /// gone, and so are the client's.
    pub(super) fn forget_all(&mut self, server: &mut ServerStatements) {
        self.statements.clear();
        server.clear();
    }

    pub(super) fn forget(&mut self, client_name: &[u8]) {
        self.statements.remove(client_name);
    }

    /// Whether the client has a statement of this name.
    pub(super) fn has(&self, client_name: &[u8]) -> bool {
        self.statements.contains_key(client_name)
    }

    /// The server name of the client's statement `client_name`.
    pub(super) fn server_name_of(&self, client_name: &[u8]) -> Option<&[u8]> {
        self.statements.get(client_name).map(|s| &*s.server_name)
    }

    /// A Parse the proxy answered itself (a statement the pool knows):
    /// prepared on a server when the client first uses it.
    pub(super) fn parsed_by_proxy(
        &mut self,
        client_name: &[u8],
        statement: Prepared,
        server_name: Box<[u8]>,
    ) {
        self.statements.insert(
            client_name.into(),
            ClientStatement {
                statement,
                server_name,
            },
        );
    }

    /// After a reload, at a transaction boundary: each statement's server
    /// name follows its text under the new mapping (a changed text is a
    /// new server statement, prepared where it is missing when used); the
    /// client's SQL-level statements (`sql`) too.
    pub(super) fn requalify(
        &mut self,
        sql: &mut super::sql_prepare::SqlStatements,
        mut sent_form: impl FnMut(&[u8]) -> SentForm,
    ) {
        sql.requalify(&mut sent_form);
        for s in self.statements.values_mut() {
            let sent = sent_form(&s.statement.query);
            if sent != s.statement.sent {
                s.statement.sent = sent;
                s.server_name = server_name(&s.statement);
            }
        }
    }
}

impl Translated {
    /// The server confirms `server_name` with its ParseComplete (and the
    /// pool learns it was accepted for the client's text and types).
    fn confirming(mut self, server_name: &[u8], client: &Prepared) -> Translated {
        if let Some(Pending::Parse(context)) = self.entry.take() {
            self.entry = Some(Pending::NamedParse(Box::new(
                super::prepared::NamedParseRequest {
                    context,
                    named: super::prepared::NamedParse {
                        name: server_name.into(),
                        statement: Prepared {
                            query: client.query.clone(),
                            param_types: client.param_types.clone(),
                            sent: SentForm::Unchanged,
                        },
                    },
                },
            )));
        }
        self
    }
}

/// A Describe of a client's statement waiting for its answer.
#[derive(Debug)]
pub(super) struct DescribedStatement {
    pub server_name: Box<[u8]>,
    /// ParameterDescription so far.
    pub frames: BytesMut,
}

/// The server accepted a client's Parse (`named`: under the server name,
/// with the client's text and types): the pool knows it.
pub(super) fn accepted(server: &ServerStatements, named: &super::prepared::NamedParse) {
    server.accepted(
        &named.name,
        Some((&named.statement.query, &named.statement.param_types)),
    );
}

fn encode_parse(out: &mut BytesMut, server_name: &[u8], statement: &Prepared) {
    protocol::encode_parse_with(
        out,
        server_name,
        |out| sent_text(statement, out),
        &statement.param_types,
    );
}

/// Why a statement cannot run on a transaction-pooled database, if it
/// cannot: state that would stay behind on a server connection another
/// client gets next.
/// Every statement is searched for these (`prepare` only leads to a closer
/// look: a PREPARE after the first statement of a Query). All start with
/// `p`: a SIMD search for the letter, then a compare at each one found.
/// An Aho-Corasick automaton pass over the text cost more than that,
/// and a window compare per byte and word more than the rest of the
/// transaction.
const SESSION_WORDS: [&[u8]; 3] = [b"pg_advisory_lock", b"pg_try_advisory_lock", b"prepare"];

/// The words of [`SESSION_WORDS`] in `text`, case-insensitively, in text
/// order: (where, which).
#[inline]
fn session_words(text: &[u8]) -> impl Iterator<Item = usize> + '_ {
    memchr::memchr2_iter(b'p', b'P', text).filter_map(move |at| {
        let rest = &text[at..];
        SESSION_WORDS.iter().position(|w| {
            // The p of most words (`pgbench_`, `UPDATE`) differs from each
            // of these by its next two letters: two byte tests before the
            // whole compare.
            rest.get(..w.len()).is_some_and(|r| {
                r[1].to_ascii_lowercase() == w[1]
                    && r[2].to_ascii_lowercase() == w[2]
                    && r.eq_ignore_ascii_case(w)
            })
        })
    })
}

pub(super) fn refusal(text: &[u8]) -> Option<&'static str> {
    refusal_in(text, false)
}

/// [`refusal`]; `query`: the text is a simple Query's, where a PREPARE
/// first is carried (`sql_prepare.rs`), not refused.
fn refusal_in(text: &[u8], query: bool) -> Option<&'static str> {
    // Case-insensitive in place: no lower-case copy of every statement.
    let contains = |w: &[u8]| text.windows(w.len()).any(|x| x.eq_ignore_ascii_case(w));
    let first = first_word(text);
    // Most statements start with none of the four words: one byte test.
    let lead = first.first().map_or(0, |b| b | 0x20);
    let is = |w: &[u8]| lead == w[0] && first.eq_ignore_ascii_case(w);
    if is(b"listen") {
        Some("LISTEN")
    } else if !query && is(b"prepare") {
        Some("SQL-level PREPARE (use the protocol's named statements)")
    } else if is(b"declare") && contains(b" with hold") {
        Some("cursors WITH HOLD")
    } else if is(b"create")
        && (contains(b" temp ") || contains(b" temporary "))
        && !contains(b"on commit drop")
    {
        Some("temporary tables without ON COMMIT DROP")
    } else {
        let mut prepare_seen = false;
        for word in session_words(text) {
            if word < 2 {
                return Some("session-level advisory locks (use pg_advisory_xact_lock)");
            }
            if !prepare_seen {
                prepare_seen = true;
                // Carried only first and alone in a Query, and when the
                // cheap first-word test sees it (a vertical tab or a
                // comment first in a Parse hides it from that test).
                let (first, later) = prepare_statements(text);
                if later || first && !(query && may_be_sql_prepared(text)) {
                    return Some(
                        "SQL-level PREPARE in a Parse or after the first statement of a Query",
                    );
                }
            }
        }
        None
    }
}

/// A session-level setting a Query makes, to replay on other servers.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SessionSetting {
    Set { name: String, value: String },
    Reset { name: String },
    ResetAll,
}

/// `SET [SESSION] name {TO|=} value` or `RESET name|ALL`, alone in the
/// text; not SET LOCAL, SET TRANSACTION, SET ROLE/SESSION AUTHORIZATION
/// (replayed all the same: they are ordinary settings to PostgreSQL),
/// which are read as `Set` too except LOCAL and TRANSACTION.
pub(super) fn session_setting(text: &[u8]) -> Option<SessionSetting> {
    let text = std::str::from_utf8(text).ok()?;
    let text = text.trim().trim_end_matches(';').trim();
    if text.contains(';') {
        return None;
    }
    let mut words = text.split_ascii_whitespace();
    let first = words.next()?.to_ascii_lowercase();
    if first == "reset" {
        let name = words.next()?.to_ascii_lowercase();
        return Some(if name == "all" {
            SessionSetting::ResetAll
        } else {
            SessionSetting::Reset { name }
        });
    }
    if first != "set" {
        return None;
    }
    let rest = text[3..].trim_start();
    let rest = match rest.get(..8) {
        Some(w) if w.eq_ignore_ascii_case("session ") => rest[8..].trim_start(),
        _ => rest,
    };
    let lower = rest.to_ascii_lowercase();
    if lower.starts_with("local ") || lower.starts_with("transaction ") {
        return None;
    }
    let split = rest.find(|c: char| c == '=' || c.is_ascii_whitespace())?;
    let name = rest[..split].to_ascii_lowercase();
    let after = rest[split..].trim_start();
    let value = if let Some(v) = after.strip_prefix('=') {
        v
    } else if after.len() >= 2 && after[..2].eq_ignore_ascii_case("to") {
        &after[2..]
    } else {
        return None;
    };
    Some(SessionSetting::Set {
        name,
        value: value.trim().to_owned(),
    })
}

impl TransactionClient {
    pub(super) fn follow_setting(&mut self, setting: SessionSetting) {
        self.settings_version += 1;
        match setting {
            SessionSetting::Set { name, value } => {
                self.settings.retain(|(n, _)| *n != name);
                self.settings.push((name, value));
            }
            SessionSetting::Reset { name } => self.settings.retain(|(n, _)| *n != name),
            SessionSetting::ResetAll => self.settings.clear(),
        }
    }
}

/// One client frame in transaction mode: requests of the proxy's own and
/// the frame's own pushed to `entries` in order, and what to send in its
/// place. `between`: whether the session is between transactions.
pub(super) fn translate<'a>(
    txn: &mut TransactionClient,
    frame: &'a [u8],
    mut entry: Option<Pending>,
    mut replacement: Option<Replacement<'a>>,
    between: &mut dyn FnMut() -> bool,
    tracker: &Mutex<Tracker>,
    entries: &mut Vec<Pending>,
) -> Option<Replace<'a>> {
    // Without the trailing NUL of a Query's text or a Describe's or
    // Close's name (empty for frames too short to have one).
    let body = frame
        .get(5..frame.len().saturating_sub(1))
        .unwrap_or_default();
    let (translated, entry) = match frame[0] {
        tag::QUERY | tag::PARSE => {
            let parse = if frame[0] == tag::PARSE {
                ParseView::parse(frame).ok()
            } else {
                None
            };
            let text = parse.as_ref().map_or(body, |p| p.query);
            if let Some(what) = refusal_in(text, frame[0] == tag::QUERY) {
                let context = StatementContext::Refused {
                    code: SqlState::FeatureNotSupported,
                    message: format!(
                        "{what} is not supported on a database with pool.mode transaction: the server connection changes between transactions"
                    )
                    .into_boxed_str(),
                };
                entries.push(match parse {
                    None => Pending::Query(context),
                    Some(_) => Pending::Parse(context),
                });
                return Some(Replace::Statement(Replacement {
                    sql: SentText::Refused,
                    parse,
                }));
            }
            // SQL-level PREPARE/EXECUTE/DEALLOCATE (first word only).
            if frame[0] == tag::QUERY && may_be_sql_prepared(text) {
                match translate_query(txn, text, entry, replacement, tracker, entries) {
                    SqlTranslation::Done(replace) => return Some(replace),
                    SqlTranslation::NotMine(e, r) => (entry, replacement) = (e, r),
                }
            }
            if frame[0] == tag::QUERY {
                // The first-byte test before the lexer, as in the 1:1 relay.
                let dropped = if super::relay::may_deallocate(frame) {
                    deallocation(text)
                } else {
                    None
                };
                match dropped {
                    Some(Deallocation::All) => {
                        let mut t = lock(tracker);
                        t.sql.clear();
                        txn.forget_all(t.server_statements.get_or_insert_with(Default::default));
                    }
                    Some(Deallocation::Named(name)) => txn.forget(&name),
                    None => {}
                }
                // Inside a transaction block too: a session-level SET
                // outlives the COMMIT (a rolled back one is replayed all
                // the same, a documented difference).
                let _ = between();
                if may_set(text)
                    && let Some(setting) = session_setting(text)
                {
                    txn.follow_setting(setting);
                }
                (None, entry)
            } else {
                match entry {
                    Some(Pending::NamedParse(request))
                        if txn.statements.contains_key(&request.named.name)
                            || lock(tracker).sql.has(&request.named.name) =>
                    {
                        // PostgreSQL keeps the first statement and says so;
                        // the server connection may not hold the name.
                        entries.push(Pending::Parse(StatementContext::Refused {
                            code: SqlState::DuplicatePreparedStatement,
                            message: format!(
                                "prepared statement \"{}\" already exists",
                                String::from_utf8_lossy(&request.named.name)
                            )
                            .into_boxed_str(),
                        }));
                        return Some(Replace::Statement(Replacement {
                            sql: SentText::Refused,
                            parse,
                        }));
                    }
                    Some(Pending::NamedParse(request)) => {
                        let request = *request;
                        let t = with_server(tracker, |server| {
                            Some(txn.parse(
                                &request.named.name,
                                request.named.statement,
                                request.context,
                                server,
                            ))
                        });
                        (t, None)
                    }
                    other => {
                        entries.extend(other);
                        return replacement.map(Replace::Statement);
                    }
                }
            }
        }
        tag::BIND => {
            let portal_end = body.iter().position(|&b| b == 0);
            let t = portal_end.and_then(|p| {
                let name_at = 5 + p + 1;
                let rest = &frame[name_at..];
                let name = &rest[..rest.iter().position(|&b| b == 0)?];
                if name.is_empty() {
                    return None;
                }
                with_server(tracker, |server| {
                    txn.uses(frame, name_at, name, None, server)
                })
            });
            (t, entry)
        }
        tag::DESCRIBE if body.first() == Some(&b'S') && body.len() > 1 => {
            let t = with_server(tracker, |server| {
                txn.uses(frame, 6, &body[1..], None, server)
            });
            (t, entry)
        }
        tag::CLOSE if body.first() == Some(&b'S') && body.len() > 1 => {
            (Some(txn.close(&body[1..], None)), entry)
        }
        _ => (None, entry),
    };
    let Some(mut t) = translated else {
        entries.extend(entry);
        return replacement.map(Replace::Statement);
    };
    entries.append(&mut t.before);
    // Bind, Describe and Close keep the relay's own request.
    entries.extend(t.entry.or(entry));
    entries.append(&mut t.after);
    Some(Replace::Bytes(t.bytes))
}

/// Run `f` on the server connection's statements under one lock; the
/// statements its cache evicted meanwhile are closed first (their Close
/// frames and requests put before the translation's own).
fn with_server(
    tracker: &Mutex<Tracker>,
    f: impl FnOnce(&mut ServerStatements) -> Option<Translated>,
) -> Option<Translated> {
    let mut t = lock(tracker);
    let server = t.server_statements.get_or_insert_with(Default::default);
    let mut translated = f(server)?;
    if !server.evicted.is_empty() {
        let mut bytes = BytesMut::new();
        let mut before = Vec::with_capacity(server.evicted.len() + translated.before.len());
        for name in server.evicted.drain(..) {
            protocol::encode_close(&mut bytes, b'S', &name);
            before.push(Pending::Silent(Silent::Close));
        }
        bytes.extend_from_slice(&translated.bytes);
        before.append(&mut translated.before);
        translated.bytes = bytes;
        translated.before = before;
    }
    Some(translated)
}

/// Whether a Query's text may be a `SET` or `RESET`: its first word is
/// one ([`session_setting`] trims Unicode white space too, so a vertical
/// tab or a non-ASCII byte first may hide one).
#[inline]
fn may_set(text: &[u8]) -> bool {
    let text = text.trim_ascii_start();
    match text.first() {
        Some(0x0b | 0x80..) => true,
        Some(b's' | b'S' | b'r' | b'R') => {
            let word = first_word(text);
            word.eq_ignore_ascii_case(b"set") || word.eq_ignore_ascii_case(b"reset")
        }
        _ => false,
    }
}

fn first_word(text: &[u8]) -> &[u8] {
    let t = text.trim_ascii_start();
    let end = t
        .iter()
        .position(|b| !b.is_ascii_alphabetic())
        .unwrap_or(t.len());
    &t[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_texts_that_may_set_are_read_for_settings() {
        for text in [
            &b"SET a = 1"[..],
            b"  reset all",
            b"\tset x to 1",
            b"\xc2\xa0SET x = 1",
            b"\x0bSET x = 1",
        ] {
            assert!(may_set(text), "{}", String::from_utf8_lossy(text));
        }
        for text in [
            &b"INSERT INTO t VALUES (1)"[..],
            b"SELECT 1",
            b"settle",
            b"  begin",
            b"",
            b"/* c */ SET a = 1",
        ] {
            assert!(!may_set(text), "{}", String::from_utf8_lossy(text));
            assert_eq!(session_setting(text), None);
        }
    }

    #[test]
    fn only_bare_transaction_starts_are_answered_by_the_proxy() {
        for (text, tag) in [
            (&b"BEGIN"[..], "BEGIN"),
            (b"begin;", "BEGIN"),
            (b"  Begin Work ; ", "BEGIN"),
            (b"BEGIN\n\tTRANSACTION", "BEGIN"),
            (b"start transaction;", "START TRANSACTION"),
        ] {
            assert_eq!(
                bare_begin(text),
                Some(tag),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
        for text in [
            &b"BEGIN ISOLATION LEVEL SERIALIZABLE"[..],
            b"BEGIN READ WRITE",
            b"START TRANSACTION READ ONLY",
            b"START",
            b"BEGIN;;",
            b"BEGIN; SELECT 1",
            b"BEGIN WORK TRANSACTION",
            b"/* c */ BEGIN",
            b"\x0bBEGIN",
            b"BEGINS",
            b"COMMIT",
            b"",
        ] {
            assert_eq!(bare_begin(text), None, "{}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn settings_are_read() {
        assert_eq!(
            session_setting(b"SET statement_timeout = '5s';"),
            Some(SessionSetting::Set {
                name: "statement_timeout".into(),
                value: "'5s'".into()
            })
        );
        assert_eq!(
            session_setting(b"set session TimeZone to 'UTC'"),
            Some(SessionSetting::Set {
                name: "timezone".into(),
                value: "'UTC'".into()
            })
        );
        assert_eq!(session_setting(b"SET LOCAL work_mem = '1MB'"), None);
        assert_eq!(session_setting(b"SET TRANSACTION READ ONLY"), None);
        assert_eq!(session_setting(b"SET a = 1; SELECT 1"), None);
        assert_eq!(
            session_setting(b"RESET ALL"),
            Some(SessionSetting::ResetAll)
        );
        assert_eq!(
            session_setting(b"reset work_mem"),
            Some(SessionSetting::Reset {
                name: "work_mem".into()
            })
        );
    }

    #[test]
    fn session_state_is_refused() {
        assert!(refusal(b"LISTEN jobs").is_some());
        assert!(refusal(b"prepare p as select 1").is_some());
        assert!(refusal(b"DECLARE c CURSOR WITH HOLD FOR SELECT 1").is_some());
        assert!(refusal(b"CREATE TEMP TABLE t (x int)").is_some());
        assert!(refusal(b"CREATE TEMP TABLE t (x int) ON COMMIT DROP").is_none());
        assert!(refusal(b"SELECT pg_advisory_lock(1)").is_some());
        assert!(refusal(b"SELECT pg_advisory_xact_lock(1)").is_none());
        assert!(refusal(b"SELECT * FROM users").is_none());
        assert!(refusal(b"select PG_TRY_ADVISORY_LOCK(1)").is_some());
        assert!(refusal(b"SELECT pg_advisory_lock_shared(1)").is_some());
        assert!(refusal(b"SELECT pg_try_advisory_xact_lock(1)").is_none());
        assert!(refusal(b"SELECT 1; PREPARE p AS SELECT 1").is_some());
        assert!(refusal_in(b"PREPARE p AS SELECT 1", true).is_none());
        assert!(refusal_in(b"SELECT 1; PREPARE p AS SELECT 1", true).is_some());
        assert!(refusal_in(b"\x0bPREPARE p AS SELECT 1", true).is_some());
        assert!(refusal(b"/* c */ PREPARE p AS SELECT 1").is_some());
        assert!(refusal(b"SELECT prepared_at FROM t").is_none());
        assert!(refusal(b"SELECT 'prepare'; SELECT pg_advisory_lock(1)").is_some());
    }
}
