//! Transaction pooling: SQL-level prepared statements (`PREPARE name AS
//! ...`, `EXECUTE name`, `DEALLOCATE name`, as psql and hand-written
//! scripts send them) carried across server connections the way the
//! protocol's named statements are (`transaction.rs`).
//!
//! The client's statement `N` is kept here (its PREPARE text and what the
//! rewrite did to it) and lives on servers as `heal7_sql_<digest of the sent
//! text without the name>`. Every answer comes from the server, as one
//! Query whose statements of the proxy's own come first, their
//! CommandCompletes dropped (`Silent::Command`):
//! - `PREPARE N ...` -> `PREPARE heal7_sql_x ...`, or, when the server
//!   connection has it already, `DEALLOCATE heal7_sql_x; PREPARE
//!   heal7_sql_x ...` (so errors in the statement still come at PREPARE,
//!   from the server). A name in use: 42P05, as PostgreSQL says it.
//! - `EXECUTE N(...)` (also in `EXPLAIN` and `CREATE TABLE ... AS`) ->
//!   `EXECUTE heal7_sql_x(...)`, after `PREPARE heal7_sql_x ...;` when the
//!   connection lacks it. An unknown name: 26000, as PostgreSQL says it.
//! - `DEALLOCATE N` -> `PREPARE <scratch> AS SELECT; DEALLOCATE <scratch>`
//!   (the server's answer and abort rules; its cached statement stays).
//!   `DEALLOCATE ALL` and `DISCARD ALL` reach the server and forget all.
//!
//! After a reload, at a transaction boundary, each statement's text is
//! rewritten again; a changed text is a new server statement, prepared
//! where it is missing when next executed. What the server refuses is
//! undone here when its error arrives ([`SqlQuery`]).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use sha2::{Digest, Sha256};

use super::prepared::SentForm;
use super::relay::{Replace, Replacement, SentText};
use super::tracker::{Pending, Silent, StatementContext, Tracker, lock};
use super::transaction::TransactionClient;
use crate::protocol::{self, SqlState};
use crate::qualify::Rewritten;
use crate::rewrite::{Edit, PositionShift, SqlPrepared, SqlPreparedUse, splice_into, sql_prepared};

/// The statement a `DEALLOCATE N` prepares and drops in its place.
const SCRATCH: &str = "heal7_proxy_sql_scratch";

/// A client's SQL-level statement.
#[derive(Debug, Clone)]
pub(super) struct SqlStatement {
    /// The client's whole PREPARE text.
    text: Box<[u8]>,
    /// Its name's bytes in `text`.
    name: Range<usize>,
    /// Where the PREPARE statement ends in `text`.
    end: usize,
    /// What the rewrite does to `text` under the session's mapping.
    sent: SentForm,
    server_name: Box<[u8]>,
}

impl SqlStatement {
    fn new(text: &[u8], used: &SqlPreparedUse, sent: SentForm) -> SqlStatement {
        let mut s = SqlStatement {
            text: text.into(),
            name: used.span.clone(),
            end: used.end,
            sent,
            server_name: Box::default(),
        };
        s.server_name = s.digest_name();
        s
    }

    fn edits(&self) -> &[Edit] {
        match &self.sent {
            SentForm::Spliced(edits) => edits,
            _ => &[],
        }
    }

    /// The PREPARE text as sent, up to its end, under `name`.
    fn prepare_text(&self, name: &str, out: &mut BytesMut) {
        let edits = with_name(self.edits(), self.name.clone(), name, self.end);
        splice_into(out, &self.text[..self.end], &edits);
    }

    /// `heal7_sql_` + 32 hex digits of SHA-256 over the sent text without
    /// the client's name.
    fn digest_name(&self) -> Box<[u8]> {
        let mut text = BytesMut::new();
        self.prepare_text("", &mut text);
        let digest = Sha256::digest(&text);
        let mut name = b"heal7_sql_".to_vec();
        for b in &digest[..16] {
            name.extend_from_slice(format!("{b:02x}").as_bytes());
        }
        name.into_boxed_slice()
    }
}

/// `edits` (the rewrite's, sorted) before `end`, with the bytes `name`
/// replaced by `new_name`, in text order.
fn with_name(edits: &[Edit], name: Range<usize>, new_name: &str, end: usize) -> Vec<Edit> {
    let mut all: Vec<Edit> = edits
        .iter()
        .filter(|e| e.offset < end && !(name.start..name.end).contains(&e.offset))
        .cloned()
        .collect();
    let at = all.partition_point(|e| e.offset < name.start);
    all.insert(
        at,
        Edit {
            offset: name.start,
            replaced: name.len(),
            insert: Arc::from(new_name),
        },
    );
    all
}

/// The client's SQL-level statements, by name.
#[derive(Debug, Default)]
pub(super) struct SqlStatements {
    by_name: HashMap<Box<[u8]>, SqlStatement>,
}

impl SqlStatements {
    pub(super) fn has(&self, name: &[u8]) -> bool {
        self.by_name.contains_key(name)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// `DEALLOCATE ALL` / `DISCARD ALL`.
    pub(super) fn clear(&mut self) {
        self.by_name.clear();
    }

    /// After a reload, at a transaction boundary: each statement's sent
    /// text follows the new mapping (a changed text is a new server
    /// statement). One the new mapping refuses is dropped: its next
    /// EXECUTE fails with 26000 rather than reading a stale table.
    pub(super) fn requalify(&mut self, mut sent_form: impl FnMut(&[u8]) -> SentForm) {
        self.by_name.retain(|name, s| {
            let sent = sent_form(&s.text);
            if sent == SentForm::Refused {
                tracing::warn!(
                    statement = %String::from_utf8_lossy(name),
                    "an SQL-level prepared statement is refused under the new mapping; it is dropped"
                );
                return false;
            }
            if sent != s.sent {
                s.sent = sent;
                s.server_name = s.digest_name();
            }
            true
        });
    }
}

/// A statement's name, the client's or a server's.
type Name = Box<[u8]>;

/// A Query of SQL-level statements, sent after statements of the proxy's
/// own (one `Silent::Command` each, queued before it), and what to undo
/// if the server refuses it.
#[derive(Debug)]
pub(super) struct SqlQuery {
    /// What the proxy did to the client's text (positions moved back).
    pub(super) context: StatementContext,
    /// The proxy's statements still unanswered when an error came.
    pub(super) remaining: u8,
    /// A PREPARE's (client name, server name): forgotten if it fails.
    forget: Option<(Name, Name)>,
    /// A DEALLOCATE's statement: put back if it fails.
    restore: Option<(Name, SqlStatement)>,
    /// The server statement is gone if the error comes while this many of
    /// the proxy's statements were unanswered.
    lost: Option<(Name, u8)>,
}

impl Tracker {
    /// The server refused the front request, an [`SqlQuery`]: undo what
    /// the proxy assumed when it sent it.
    #[cold]
    #[inline(never)]
    pub(super) fn sql_query_failed(&mut self) {
        let Some(Pending::Query(StatementContext::Sql(q))) = self.pending.front_mut() else {
            return;
        };
        if let Some((name, server_name)) = q.forget.take()
            && self
                .sql
                .by_name
                .get(&name)
                .is_some_and(|s| s.server_name == server_name)
        {
            self.sql.by_name.remove(&name);
        }
        if let Some((name, statement)) = q.restore.take() {
            self.sql.by_name.entry(name).or_insert(statement);
        }
        if let Some((server_name, at)) = q.lost.take()
            && q.remaining == at
            && let Some(server) = &mut self.server_statements
        {
            server.remove(&server_name);
        }
    }
}

/// What [`translate_query`] did with a Query.
pub(super) enum SqlTranslation<'a> {
    /// Not an SQL-level prepared statement the proxy carries: the usual
    /// path, with the request and replacement handed back.
    NotMine(Option<Pending>, Option<Replacement<'a>>),
    /// What to send in place of the Query (its requests are queued).
    Done(Replace<'a>),
}

/// A Query whose first word may make it an SQL-level prepared statement
/// (see the module docs). `entry`, `replacement`: what the relay made of
/// it (its request, its rewrite).
pub(super) fn translate_query<'a>(
    txn: &mut TransactionClient,
    text: &'a [u8],
    entry: Option<Pending>,
    replacement: Option<Replacement<'a>>,
    tracker: &Mutex<Tracker>,
    entries: &mut Vec<Pending>,
) -> SqlTranslation<'a> {
    let mut t = lock(tracker);
    let t = &mut *t;
    let Some(form) = sql_prepared(text, t.encoding, t.standard_conforming_strings) else {
        return SqlTranslation::NotMine(entry, replacement);
    };
    let edits: Vec<Edit> = match &replacement {
        // The rewrite refused the text: that refusal stands.
        Some(Replacement {
            sql: SentText::Refused,
            ..
        }) => return SqlTranslation::NotMine(entry, replacement),
        Some(Replacement {
            sql: SentText::Spliced { edits, .. },
            ..
        }) => edits.clone(),
        None => Vec::new(),
    };
    let mut refuse = |code: SqlState, message: String| {
        entries.push(Pending::Query(StatementContext::Refused {
            code,
            message: message.into_boxed_str(),
        }));
        SqlTranslation::Done(Replace::Statement(Replacement {
            sql: SentText::Refused,
            parse: None,
        }))
    };
    let quoted = |name: &[u8]| String::from_utf8_lossy(name).into_owned();
    let server = t.server_statements.get_or_insert_with(Default::default);
    // (text before the client's, the client's name on the server, the
    // proxy's statements before it, what to undo on error)
    let (prefix, new_name, hidden, mut query) = match form {
        SqlPrepared::Unsupported(why) => {
            return refuse(
                SqlState::FeatureNotSupported,
                format!(
                    "SQL-level PREPARE/EXECUTE/DEALLOCATE in {why} is not supported on a database with pool.mode transaction: send each alone in a Query"
                ),
            );
        }
        SqlPrepared::Prepare(used) => {
            if t.sql.by_name.contains_key(&*used.name) || txn.has(&used.name) {
                return refuse(
                    SqlState::DuplicatePreparedStatement,
                    format!(
                        "prepared statement \"{}\" already exists",
                        quoted(&used.name)
                    ),
                );
            }
            let sent = if edits.is_empty() {
                SentForm::Unchanged
            } else {
                SentForm::Spliced(edits.clone())
            };
            let statement = SqlStatement::new(text, &used, sent);
            let server_name = statement.server_name.clone();
            let on_server = server.contains(&server_name);
            let prefix = if on_server {
                format!("DEALLOCATE {};\n", quoted(&server_name)).into_bytes()
            } else {
                server.insert(server_name.clone());
                Vec::new()
            };
            t.sql.by_name.insert(used.name.clone().into(), statement);
            (
                prefix,
                (used.span, quoted(&server_name)),
                u8::from(on_server),
                SqlQuery {
                    context: StatementContext::Plain,
                    remaining: 0,
                    forget: Some((used.name.into(), server_name.clone())),
                    restore: None,
                    lost: Some((server_name, 0)),
                },
            )
        }
        SqlPrepared::Execute(used) => {
            let Some(statement) = t.sql.by_name.get(&*used.name) else {
                if txn.has(&used.name) {
                    return refuse(
                        SqlState::FeatureNotSupported,
                        format!(
                            "EXECUTE of the protocol-level prepared statement \"{}\" is not supported on a database with pool.mode transaction",
                            quoted(&used.name)
                        ),
                    );
                }
                return refuse(
                    SqlState::InvalidStatementName,
                    format!(
                        "prepared statement \"{}\" does not exist",
                        quoted(&used.name)
                    ),
                );
            };
            let server_name = statement.server_name.clone();
            let mut prefix = Vec::new();
            let lost = if server.contains(&server_name) {
                txn.hits += 1;
                None
            } else {
                txn.misses += 1;
                let mut text = BytesMut::new();
                statement.prepare_text(&quoted(&server_name), &mut text);
                text.extend_from_slice(b";\n");
                prefix = text.to_vec();
                server.insert(server_name.clone());
                Some((server_name.clone(), 1))
            };
            (
                prefix,
                (used.span, quoted(&server_name)),
                u8::from(lost.is_some()),
                SqlQuery {
                    context: StatementContext::Plain,
                    remaining: 0,
                    forget: None,
                    restore: None,
                    lost,
                },
            )
        }
        SqlPrepared::Deallocate(used) => {
            let Some(statement) = t.sql.by_name.remove(&*used.name) else {
                // A protocol-level or unknown name: as before (the server
                // answers).
                return SqlTranslation::NotMine(entry, replacement);
            };
            (
                format!("PREPARE {SCRATCH} AS SELECT;\n").into_bytes(),
                (used.span, SCRATCH.to_owned()),
                1,
                SqlQuery {
                    context: StatementContext::Plain,
                    remaining: 0,
                    forget: None,
                    restore: Some((used.name.into(), statement)),
                    lost: None,
                },
            )
        }
    };
    let mut bytes = BytesMut::new();
    // Statements the server cache evicted meanwhile are closed first; so
    // is a scratch statement a cancelled DEALLOCATE may have left behind
    // (a Close of a missing name answers CloseComplete all the same).
    if query.restore.is_some() {
        protocol::encode_close(&mut bytes, b'S', SCRATCH.as_bytes());
        entries.push(Pending::Silent(Silent::Close));
    }
    for name in server.evicted.drain(..) {
        protocol::encode_close(&mut bytes, b'S', &name);
        entries.push(Pending::Silent(Silent::Close));
    }
    for _ in 0..hidden {
        entries.push(Pending::Silent(Silent::Command));
    }
    let (span, name) = new_name;
    let mut all = with_name(&edits, span, &name, text.len());
    protocol::encode_query_with(&mut bytes, |out| {
        out.extend_from_slice(&prefix);
        splice_into(out, text, &all);
    });
    // Positions in the server's errors point into the client's text (the
    // proxy's statements before it map to its start); UTF-8 text only, as
    // for every rewrite.
    let position = match (std::str::from_utf8(text), std::str::from_utf8(&prefix)) {
        (Ok(text), Ok(prefix)) => {
            if !prefix.is_empty() {
                all.insert(0, Edit::insertion(0, Arc::from(prefix)));
            }
            Some(PositionShift::of_edits(text, &all))
        }
        _ => None,
    };
    let schemas = match entry {
        Some(Pending::Query(StatementContext::Rewritten(r))) => r.schemas,
        _ => Default::default(),
    };
    query.context = StatementContext::Rewritten(Rewritten {
        position,
        schemas,
        show_tags: None,
    });
    entries.push(Pending::Query(StatementContext::Sql(Box::new(query))));
    SqlTranslation::Done(Replace::Bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::ServerStatementNames as ServerStatements;

    fn holds(server: &mut ServerStatements, name: &[u8]) -> bool {
        server.contains(name)
    }

    fn statement(text: &str, edits: Vec<Edit>) -> SqlStatement {
        let encoding = crate::rewrite::EncodingClass::AsciiSafe;
        let Some(SqlPrepared::Prepare(used)) = sql_prepared(text.as_bytes(), encoding, true) else {
            panic!("{text}");
        };
        let sent = if edits.is_empty() {
            SentForm::Unchanged
        } else {
            SentForm::Spliced(edits)
        };
        SqlStatement::new(text.as_bytes(), &used, sent)
    }

    #[test]
    fn the_server_text_has_the_servers_name_and_the_rewrite() {
        let text = "PREPARE q (int) AS SELECT * FROM users WHERE id = $1; -- c";
        let at = text.find("users").unwrap();
        let s = statement(text, vec![Edit::insertion(at, "app.".into())]);
        let mut out = BytesMut::new();
        s.prepare_text("srv", &mut out);
        assert_eq!(
            &out[..],
            b"PREPARE srv (int) AS SELECT * FROM app.users WHERE id = $1"
        );
        assert!(s.server_name.starts_with(b"heal7_sql_"));
        assert_eq!(s.server_name.len(), 42);
    }

    #[test]
    fn the_server_name_follows_the_sent_text_not_the_clients_name() {
        let a = statement("PREPARE a AS SELECT 1", vec![]);
        let b = statement("PREPARE bb AS SELECT 1", vec![]);
        let c = statement("PREPARE a AS SELECT 2", vec![]);
        assert_eq!(a.server_name, b.server_name);
        assert_ne!(a.server_name, c.server_name);
        let mut moved = a.clone();
        let mut statements = SqlStatements::default();
        statements.by_name.insert(Box::from(&b"a"[..]), a.clone());
        statements.requalify(|_| SentForm::Spliced(vec![Edit::insertion(20, "x.".into())]));
        moved.sent = SentForm::Spliced(vec![Edit::insertion(20, "x.".into())]);
        moved.server_name = moved.digest_name();
        assert_eq!(statements.by_name[&b"a"[..]].server_name, moved.server_name);
        assert_ne!(moved.server_name, a.server_name);
        statements.requalify(|_| SentForm::Refused);
        assert!(statements.by_name.is_empty());
    }

    #[test]
    fn a_failed_query_undoes_what_was_assumed() {
        let mut t = Tracker::new(true);
        let s = statement("PREPARE a AS SELECT 1", vec![]);
        let server_name = s.server_name.clone();
        t.sql.by_name.insert(Box::from(&b"a"[..]), s);
        let mut server = ServerStatements::default();
        server.insert(server_name.clone());
        t.server_statements = Some(server);
        // A PREPARE after the proxy's DEALLOCATE: both are gone.
        t.pending
            .push_back(Pending::Query(StatementContext::Sql(Box::new(SqlQuery {
                context: StatementContext::Plain,
                remaining: 0,
                forget: Some((Box::from(&b"a"[..]), server_name.clone())),
                restore: None,
                lost: Some((server_name.clone(), 0)),
            }))));
        t.sql_query_failed();
        assert!(t.sql.by_name.is_empty());
        assert!(!holds(t.server_statements.as_mut().unwrap(), &server_name));
    }
}
