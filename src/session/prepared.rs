//! The protocol-level prepared statements a client holds on its server.
//!
//! A named statement is rewritten once, when it is parsed; the server keeps
//! that text. After a reload that changes what the statement's text is
//! rewritten to, executing it would still read the old mapping's tables
//! (and a transaction could mix two generations). So the session keeps
//! each named statement's text, and at the first transaction boundary under
//! a new mapping prepares again, under the same name, every statement whose
//! rewritten text changed (Close + Parse + Sync, answers swallowed). A
//! statement the new mapping refuses is closed instead, so its next Bind
//! fails loudly.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use bytes::BytesMut;

use super::SessionError;
use super::relay::{Mapping, RelayContext, place_frame};
use super::tracker::{Pending, Silent, StatementContext, Tracker, lock};
use crate::protocol::{self, ParseView};
use crate::qualify::{Observer, TextRewrite, qualify};
use crate::rewrite::{Deallocation, Edit, SessionFacts, splice_into};

/// What was sent in place of a statement's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SentForm {
    Unchanged,
    Spliced(Vec<Edit>),
    Refused,
}

/// A named Parse waiting for its ParseComplete.
#[derive(Debug)]
pub(super) struct NamedParse {
    pub name: Box<[u8]>,
    pub statement: Prepared,
}

#[derive(Debug, Clone)]
pub(super) struct Prepared {
    /// The client's text, before any rewrite.
    pub query: Box<[u8]>,
    /// The i16 count and the i32 type OIDs, as the client sent them.
    pub param_types: Box<[u8]>,
    pub sent: SentForm,
}

/// Named statements the server has confirmed (ParseComplete) and the client
/// has not closed.
#[derive(Debug, Default)]
pub(super) struct PreparedStatements {
    by_name: HashMap<Box<[u8]>, Prepared>,
}

impl PreparedStatements {
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn confirmed(&mut self, parse: NamedParse) {
        self.by_name.insert(parse.name, parse.statement);
    }

    pub fn closed(&mut self, name: &[u8]) {
        self.by_name.remove(name);
    }

    pub fn deallocated(&mut self, what: Deallocation) {
        match what {
            Deallocation::All => self.by_name.clear(),
            Deallocation::Named(name) => self.closed(&name),
        }
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&[u8], &mut Prepared)> {
        self.by_name.iter_mut().map(|(k, v)| (&**k, v))
    }
}

/// The parts of [`Upstream`] that [`reprepare`] works on, borrowed apart
/// from the frame being scanned.
pub(super) struct Reprepare<'a> {
    pub mapping: &'a Mapping,
    pub facts: &'a SessionFacts,
    pub entries: &'a mut Vec<Pending>,
    pub buf: &'a [u8],
    pub out: &'a mut BytesMut,
}

/// After a reload, before the first request of a new transaction:
/// prepare again, under its name, each of the client's named statements
/// whose rewritten text the new mapping changes (Close + Parse, then
/// one Sync; the answers are the proxy's own and are dropped). A
/// statement the new mapping refuses is only closed. Placed before the
/// frame at `pos`.
pub(super) fn reprepare(
    up: Reprepare<'_>,
    pos: usize,
    reencoding: &mut bool,
    tracker: &Mutex<Tracker>,
    ctx: &RelayContext,
) {
    let mut t = lock(tracker);
    if t.prepared.is_empty() {
        return;
    }
    let observer = Observer::quiet(&ctx.state.metrics);
    let mut facts = up.facts.clone();
    let mut refused = Vec::new();
    let mut frames = BytesMut::new();
    for (name, statement) in t.prepared.iter_mut() {
        let rewrite = qualify(
            &statement.query,
            up.mapping.map.as_deref(),
            up.mapping.mode,
            up.mapping.snapshot.on_parse_error,
            &mut facts,
            ctx.state.rewriter,
            &observer,
        );
        let sent = match &rewrite {
            TextRewrite::Unchanged => SentForm::Unchanged,
            TextRewrite::Changed { edits, .. } => SentForm::Spliced(edits.clone()),
            TextRewrite::Rejected { .. } => SentForm::Refused,
        };
        if sent == statement.sent {
            continue;
        }
        protocol::encode_close(&mut frames, b'S', name);
        up.entries.push(Pending::Silent(Silent::Close));
        if sent == SentForm::Refused {
            refused.push(name.to_vec());
            continue;
        }
        let query = &statement.query;
        protocol::encode_parse_with(
            &mut frames,
            name,
            |out| match &sent {
                SentForm::Spliced(edits) => splice_into(out, query, edits),
                _ => out.extend_from_slice(query),
            },
            &statement.param_types,
        );
        up.entries.push(Pending::Silent(Silent::Parse(name.into())));
        statement.sent = sent;
    }
    for name in refused {
        tracing::warn!(
            statement = %String::from_utf8_lossy(&name),
            "a prepared statement is refused under the new mapping; it is closed"
        );
        ctx.state
            .metrics
            .prepared_reprepare_failed
            .fetch_add(1, Ordering::Relaxed);
        t.prepared.closed(&name);
    }
    if frames.is_empty() {
        return;
    }
    protocol::encode_sync(&mut frames);
    up.entries.push(Pending::Silent(Silent::Sync));
    tracing::debug!(
        generation = up.mapping.snapshot.generation,
        statements = t.prepared.len(),
        "preparing changed statements again under the new mapping"
    );
    place_frame(
        up.out,
        up.buf,
        (pos, pos),
        reencoding,
        Some(|out: &mut BytesMut| out.extend_from_slice(&frames)),
    );
}

/// The text of a Query frame (without its NUL).
pub(super) fn query_text(frame: &[u8]) -> &[u8] {
    frame
        .get(5..frame.len().saturating_sub(1))
        .unwrap_or_default()
}

/// The statement a Close frame closes, if it closes one (not a portal).
pub(super) fn closed_statement(frame: &[u8]) -> Option<&[u8]> {
    match frame.get(5..frame.len().saturating_sub(1))? {
        [b'S', name @ ..] => Some(name),
        _ => None,
    }
}

/// The request of a Parse frame: for a named statement, with what to keep
/// of it once the server confirms it (its name, text and parameter types;
/// an unnamed one lives until the next Parse and is never prepared again).
/// Boxed, so the common requests stay small in the tracker's queue.
pub(super) fn parse_request(
    frame: &[u8],
    context: StatementContext,
    sent: impl FnOnce() -> SentForm,
) -> Result<Pending, SessionError> {
    if frame.get(5).is_none_or(|&b| b == 0) {
        return Ok(Pending::Parse(context));
    }
    let p = ParseView::parse(frame).map_err(SessionError::Client)?;
    Ok(Pending::NamedParse(Box::new(NamedParseRequest {
        context,
        named: NamedParse {
            name: p.name.into(),
            statement: Prepared {
                query: p.query.into(),
                param_types: p.param_types.into(),
                sent: sent(),
            },
        },
    })))
}

/// A named Parse waiting for its answer, with its statement.
#[derive(Debug)]
pub(super) struct NamedParseRequest {
    pub context: StatementContext,
    pub named: NamedParse,
}
