//! Transaction pooling: what the proxy answers itself between
//! transactions, without taking a server connection.
//!
//! A batch of a client's Parse of a named statement that some server
//! connection of its pool has already accepted (the same sent text and
//! parameter types, under the same mapping generation), Describe of such
//! a statement whose answer the pool kept, and Close of a statement, ended
//! by a Sync (or by a Flush with nothing after it), is answered here:
//! ParseComplete, the kept ParameterDescription + RowDescription (or
//! NoData), CloseComplete, then ReadyForQuery('I'). The statement is
//! prepared on whichever server connection the client's next Bind or
//! Describe gets, as any statement missing there is. So a client program
//! that prepares with a blocking call while its other connections hold
//! every server connection inside a transaction (pgbench `-M prepared`)
//! is not stalled until `query_wait_timeout_ms`.
//!
//! A bare BEGIN (`transaction::bare_begin`), as a Query or as Parse, Bind,
//! [Describe,] Execute and Sync of the unnamed statement, is answered here
//! too (CommandComplete, ReadyForQuery('T')) and sent ahead of the
//! client's next request (`transaction::DeferredBegin`).
//!
//! Anything else takes a server connection as before: a statement the
//! pool has not seen accepted (its errors come at Parse, from the server),
//! a Parse of a name the client already uses, Bind, Execute, Query, ...
//! So does everything after a BEGIN answered here, up to the end of the
//! transaction.

use bytes::{Bytes, BytesMut};

use super::super::*;
use crate::pool::Pool;
use crate::session::prepared::Prepared;
use crate::session::transaction::{DeferredBegin, bare_begin, refusal, server_name};

/// Buffered client bytes beyond which the proxy stops waiting for the end
/// of a batch it might answer itself (and takes a server connection).
const MAX_LOCAL_BATCH: usize = 64 * 1024;

/// What to do with the client's buffered requests between transactions.
pub(in crate::session) enum Local {
    /// The first `consumed` bytes are answered with `answer`.
    Answered { consumed: usize, answer: BytesMut },
    /// They could be answered here, but the batch is not complete: read more.
    NeedMore,
    /// They need a server connection.
    Server,
}

/// One request of a batch, as read.
enum Request<'a> {
    Parse { frame: &'a [u8], name: &'a [u8] },
    Describe(&'a [u8]),
    Close(&'a [u8]),
}

/// One request of a batch, with its answer found.
enum Answer<'a> {
    Parsed {
        name: &'a [u8],
        statement: Prepared,
        server_name: Box<[u8]>,
        context: StatementContext,
        rewritten: bool,
    },
    Described(Bytes),
    Closed(&'a [u8]),
}

/// The requests at the front of `buf` up to their Sync (true) or final
/// Flush (false), and the bytes they take; `Err`: what to do instead.
fn batch<'a>(
    buf: &'a [u8],
    max: usize,
    txn: &TransactionClient,
) -> Result<(Vec<Request<'a>>, usize, bool), Local> {
    let more = || {
        if buf.len() < MAX_LOCAL_BATCH {
            Local::NeedMore
        } else {
            Local::Server
        }
    };
    let mut requests = Vec::new();
    let mut names: Vec<&[u8]> = Vec::new();
    let mut pos = 0;
    loop {
        let rest = &buf[pos..];
        // A malformed frame is the relay's to report.
        let header = match peek_header(rest, max) {
            Err(_) => return Err(Local::Server),
            Ok(None) => return Err(more()),
            Ok(Some(h)) => h,
        };
        if rest.len() < header.total_len {
            return Err(more());
        }
        let frame = &rest[..header.total_len];
        pos += header.total_len;
        let body = &frame[5..];
        // A statement's name once per batch (Parse and Close), so the
        // order of requests on one name never matters here.
        let mut once = |name: &'a [u8]| {
            if name.is_empty() || names.contains(&name) {
                return Err(Local::Server);
            }
            names.push(name);
            Ok(name)
        };
        match header.tag {
            tag::PARSE => {
                let view = ParseView::parse(frame).map_err(|_| Local::Server)?;
                // The unnamed statement (every Parse of `-M extended`)
                // leaves here, before the text is scanned.
                let name = once(view.name)?;
                if txn.has(name) || refusal(view.query).is_some() {
                    return Err(Local::Server);
                }
                requests.push(Request::Parse { frame, name });
            }
            tag::DESCRIBE | tag::CLOSE => {
                let [b'S', name @ .., 0] = body else {
                    return Err(Local::Server);
                };
                if header.tag == tag::CLOSE {
                    requests.push(Request::Close(once(name)?));
                } else if name.is_empty() {
                    return Err(Local::Server);
                } else {
                    requests.push(Request::Describe(name));
                }
            }
            tag::SYNC if !requests.is_empty() => return Ok((requests, pos, true)),
            // A Flush with more after it is answered with the rest.
            tag::FLUSH if !requests.is_empty() && pos == buf.len() => {
                return Ok((requests, pos, false));
            }
            tag::FLUSH => {}
            _ => return Err(Local::Server),
        }
    }
}

/// The longest Query or Parse frame [`begin_batch`] reads: a bare BEGIN
/// with room for some white space (one with more is sent as it is).
const LONGEST_BEGIN: usize = 48;

/// A bare BEGIN at the front of `buf`, whole: the bytes it takes, the
/// answer, and what to send the server for it. `Ok(None)`: not one;
/// `Err`: maybe one, not yet all read.
fn begin_batch(buf: &[u8], max: usize) -> Result<Option<(usize, BytesMut, DeferredBegin)>, ()> {
    // Every transaction's first request comes here: most are no BEGIN,
    // and are told by their header alone.
    let first = match peek_header(buf, max) {
        Ok(None) => return Err(()),
        Ok(Some(h)) if h.total_len <= LONGEST_BEGIN && matches!(h.tag, tag::QUERY | tag::PARSE) => {
            buf.get(..h.total_len).ok_or(())?
        }
        _ => return Ok(None),
    };
    let frame = |pos: usize| -> Result<Option<&[u8]>, ()> {
        match peek_header(&buf[pos..], max) {
            Err(_) => Ok(None),
            Ok(None) => Err(()),
            Ok(Some(h)) if buf.len() - pos < h.total_len => Err(()),
            Ok(Some(h)) => Ok(Some(&buf[pos..pos + h.total_len])),
        }
    };
    let mut out = BytesMut::new();
    let mut frames = BytesMut::new();
    match first[0] {
        tag::QUERY => {
            let Some(command) = first[5..].strip_suffix(&[0]).and_then(bare_begin) else {
                return Ok(None);
            };
            protocol::encode_parse(&mut frames, b"", &first[5..first.len() - 1], &[0, 0]);
            protocol::encode_bind_text(&mut frames, &[]);
            protocol::encode_execute(&mut frames);
            protocol::encode_command_complete(&mut out, command);
            protocol::encode_ready_for_query(&mut out, b'T');
            Ok(Some((
                first.len(),
                out,
                DeferredBegin { frames, answers: 3 },
            )))
        }
        tag::PARSE => {
            // Parse, Bind, [Describe,] Execute and Sync, all unnamed, no
            // parameters: what libpq sends for PQexecParams("BEGIN").
            let command = match ParseView::parse(first) {
                Ok(p) if p.name.is_empty() && p.param_types == [0, 0] => bare_begin(p.query),
                _ => None,
            };
            let Some(command) = command else {
                return Ok(None);
            };
            let mut pos = first.len();
            let mut next = |wanted: u8| -> Result<Option<&[u8]>, ()> {
                match frame(pos)? {
                    Some(f) if f[0] == wanted => {
                        pos += f.len();
                        Ok(Some(f))
                    }
                    _ => Ok(None),
                }
            };
            // Portal and statement unnamed, no parameter formats or values.
            let Some(Some(b"\0\0\0\0\0\0")) = next(tag::BIND)?.map(|f| f.get(5..11)) else {
                return Ok(None);
            };
            let (described, described_answers): (&[u8], u8) =
                match next(tag::DESCRIBE)?.map(|d| &d[5..]) {
                    None => (b"", 0),
                    // NoData.
                    Some(b"P\0") => (b"n\0\0\0\x04", 1),
                    // ParameterDescription of none, NoData.
                    Some(b"S\0") => (b"t\0\0\0\x06\0\0n\0\0\0\x04", 2),
                    Some(_) => return Ok(None),
                };
            let answers = 3 + described_answers;
            // Of the unnamed portal.
            if next(tag::EXECUTE)?.is_none_or(|e| e.get(5) != Some(&0)) {
                return Ok(None);
            }
            let Some(sync) = next(tag::SYNC)?.map(<[u8]>::len) else {
                return Ok(None);
            };
            frames.extend_from_slice(&buf[..pos - sync]);
            out.extend_from_slice(&[tag::PARSE_COMPLETE, 0, 0, 0, 4]);
            out.extend_from_slice(&[tag::BIND_COMPLETE, 0, 0, 0, 4]);
            out.extend_from_slice(described);
            protocol::encode_command_complete(&mut out, command);
            protocol::encode_ready_for_query(&mut out, b'T');
            Ok(Some((pos, out, DeferredBegin { frames, answers })))
        }
        _ => Ok(None),
    }
}

impl Upstream {
    /// A BEGIN the proxy answered goes to the server first, in the same
    /// write as the transaction's first request (`pos` 0 of its batch).
    #[inline]
    pub(in crate::session) fn send_deferred_begin(&mut self, reencoding: &mut bool) {
        if let Some(begin) = self
            .transaction
            .as_deref_mut()
            .and_then(|t| t.deferred_begin.take())
        {
            self.from.out.clear();
            self.from.out.extend_from_slice(&begin.frames);
            *reencoding = true;
            for _ in 0..begin.answers {
                self.entries.push(Pending::Silent(Silent::Begin));
            }
        }
    }

    /// A BEGIN answered here is pending: the client is inside a
    /// transaction that has no server connection yet.
    pub(in crate::session) fn begin_deferred(&self) -> bool {
        self.transaction
            .as_deref()
            .is_some_and(|t| t.deferred_begin.is_some())
    }

    /// Between transactions: answer the client's buffered requests here if
    /// they are a batch the pool's record of accepted statements answers
    /// exactly (see the module docs).
    pub(in crate::session) fn answer_without_server(
        &mut self,
        tracker: &Mutex<Tracker>,
        ctx: &RelayContext,
        pool: &Pool,
    ) -> Local {
        // The mapping the next transaction takes (as the relay would at
        // its first request).
        if self.mapping.refresh(ctx) {
            self.follow_new_mapping(0, &mut false, tracker, ctx);
        }
        let Some(txn) = self.transaction.as_deref() else {
            return Local::Server;
        };
        if txn.deferred_begin.is_some() {
            return Local::Server;
        }
        match begin_batch(&self.from.buf, ctx.config.max_message_size) {
            Ok(Some((consumed, answer, begin))) => {
                self.statements += 1;
                ctx.client.count_statement();
                // As the server's ReadyForQuery('T') would have set it.
                ctx.client.set_state(ClientState::from_ready_status(b'T'));
                pool.stats.begins_deferred.fetch_add(1, Ordering::Relaxed);
                let txn = self
                    .transaction
                    .as_deref_mut()
                    .expect("transaction pooling");
                txn.deferred_begin = Some(begin);
                return Local::Answered { consumed, answer };
            }
            Ok(None) => {}
            Err(()) if self.from.buf.len() < MAX_LOCAL_BATCH => return Local::NeedMore,
            Err(()) => return Local::Server,
        }
        let (requests, consumed, sync) =
            match batch(&self.from.buf, ctx.config.max_message_size, txn) {
                Ok(b) => b,
                Err(to_do) => return to_do,
            };
        // A name an SQL-level PREPARE holds: the server path says 42P05.
        let sql_name = {
            let t = lock(tracker);
            !t.sql.is_empty()
                && requests
                    .iter()
                    .any(|r| matches!(r, Request::Parse { name, .. } if t.sql.has(name)))
        };
        if sql_name {
            return Local::Server;
        }
        let generation = self.mapping.snapshot.generation;
        // A cheap test before any rewrite: each text was accepted before.
        for r in &requests {
            if let Request::Parse { frame, .. } = r {
                let Ok(view) = ParseView::parse(frame) else {
                    return Local::Server;
                };
                if !pool
                    .statements
                    .seen_text(generation, view.query, view.param_types)
                {
                    return Local::Server;
                }
            }
        }
        let _ = session_facts(&mut self.facts, &mut None, tracker);
        // Rewritten as the relay would. Past here a fallback to the server
        // counts the statement twice in the rewrite metrics: only when the
        // same text now has another server name (another client_encoding)
        // or no Describe answer was kept yet, once per statement.
        let mut answers = Vec::with_capacity(requests.len());
        for r in requests {
            let answer = match r {
                Request::Parse { frame, name } => {
                    let mut queued = Vec::with_capacity(1);
                    let rewrite = match (&self.mapping.map, self.mapping.mode) {
                        (Some(map), Mode::Rewrite | Mode::DryRun) => statement(
                            frame,
                            tag::PARSE,
                            map,
                            &self.mapping,
                            &mut self.facts,
                            ctx,
                            &mut queued,
                        ),
                        _ => parse_request(frame, StatementContext::Plain, || SentForm::Unchanged)
                            .map(|p| {
                                queued.push(p);
                                None
                            }),
                    };
                    let (Ok(replacement), Some(Pending::NamedParse(request))) =
                        (rewrite, queued.pop())
                    else {
                        return Local::Server;
                    };
                    let request = *request;
                    if matches!(request.context, StatementContext::Refused { .. }) {
                        return Local::Server;
                    }
                    let server_name = server_name(&request.named.statement);
                    if pool.statements.lookup(generation, &server_name).is_none() {
                        return Local::Server;
                    }
                    Answer::Parsed {
                        name,
                        statement: request.named.statement,
                        server_name,
                        context: request.context,
                        rewritten: replacement.is_some(),
                    }
                }
                Request::Describe(name) => {
                    let parsed_here = answers.iter().rev().find_map(|a| match a {
                        Answer::Parsed {
                            name: n,
                            server_name,
                            ..
                        } if *n == name => Some(&**server_name),
                        _ => None,
                    });
                    let closed_here = answers
                        .iter()
                        .any(|a| matches!(a, Answer::Closed(n) if *n == name));
                    let known = match parsed_here {
                        Some(s) => Some(s),
                        None if closed_here => None,
                        None => self
                            .transaction
                            .as_deref()
                            .and_then(|t| t.server_name_of(name)),
                    };
                    let Some(description) = known
                        .and_then(|s| pool.statements.lookup(generation, s))
                        .and_then(|k| k.description)
                    else {
                        return Local::Server;
                    };
                    Answer::Described(description)
                }
                Request::Close(name) => Answer::Closed(name),
            };
            answers.push(answer);
        }

        let mut out = BytesMut::new();
        let txn = self
            .transaction
            .as_deref_mut()
            .expect("transaction pooling");
        for a in answers {
            match a {
                Answer::Parsed {
                    name,
                    statement,
                    server_name,
                    context,
                    rewritten,
                } => {
                    context.record_result(true);
                    txn.parsed_by_proxy(name, statement, server_name);
                    self.statements += 1;
                    self.rewritten += u64::from(rewritten);
                    ctx.client.count_statement();
                    pool.stats.prepared_answered.fetch_add(1, Ordering::Relaxed);
                    out.extend_from_slice(&[tag::PARSE_COMPLETE, 0, 0, 0, 4]);
                }
                Answer::Described(frames) => out.extend_from_slice(&frames),
                Answer::Closed(name) => {
                    txn.forget(name);
                    out.extend_from_slice(&[tag::CLOSE_COMPLETE, 0, 0, 0, 4]);
                }
            }
        }
        if sync {
            protocol::encode_ready_for_query(&mut out, b'I');
        }
        Local::Answered {
            consumed,
            answer: out,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(t: u8, body: &[u8]) -> Vec<u8> {
        let mut f = vec![t];
        f.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        f.extend_from_slice(body);
        f
    }

    /// libpq's PQexecParams: Parse, Bind, Describe(portal), Execute, Sync.
    fn exec_params(text: &[u8], bind: &[u8]) -> Vec<u8> {
        let mut parse = vec![0];
        parse.extend_from_slice(text);
        parse.extend_from_slice(&[0, 0, 0]);
        [
            frame(b'P', &parse),
            frame(b'B', bind),
            frame(b'D', b"P\0"),
            frame(b'E', b"\0\0\0\0\0"),
            frame(b'S', b""),
        ]
        .concat()
    }

    const NO_PARAMETERS: &[u8] = b"\0\0\0\0\0\0\0\0";

    #[test]
    fn a_bare_begin_in_either_protocol_is_answered_and_kept_for_the_server() {
        let query = frame(b'Q', b"begin;\0");
        let (consumed, answer, begin) = begin_batch(&query, 1 << 20).unwrap().unwrap();
        assert_eq!(consumed, query.len());
        assert_eq!(
            &answer[..],
            &[frame(b'C', b"BEGIN\0"), frame(b'Z', b"T")].concat()[..]
        );
        assert_eq!((begin.frames[0], begin.answers), (b'P', 3));

        let mut batch = exec_params(b"START TRANSACTION", NO_PARAMETERS);
        let whole = batch.len();
        batch.extend_from_slice(&frame(b'Q', b"SELECT 1\0"));
        let (consumed, answer, begin) = begin_batch(&batch, 1 << 20).unwrap().unwrap();
        assert_eq!(consumed, whole, "up to the Sync");
        let expected = [
            frame(b'1', b""),
            frame(b'2', b""),
            frame(b'n', b""),
            frame(b'C', b"START TRANSACTION\0"),
            frame(b'Z', b"T"),
        ]
        .concat();
        assert_eq!(&answer[..], &expected[..]);
        assert_eq!(&begin.frames[..], &batch[..whole - 5], "all but the Sync");
        assert_eq!(begin.answers, 4);
        // Not all read yet.
        assert!(begin_batch(&batch[..whole - 1], 1 << 20).is_err());
    }

    #[test]
    fn anything_but_a_bare_unnamed_begin_goes_to_a_server() {
        let not = |buf: &[u8]| assert!(matches!(begin_batch(buf, 1 << 20), Ok(None)));
        not(&frame(b'Q', b"BEGIN READ ONLY\0"));
        not(&frame(b'Q', b"BEGIN; SELECT 1\0"));
        not(&frame(b'Q', b"SELECT 1\0"));
        // A parameter value, a named portal, a named statement.
        not(&exec_params(b"BEGIN", b"\0\0\0\0\0\x01\0\0\0\x01x\0\0"));
        not(&exec_params(b"BEGIN", b"p\0\0\0\0\0\0\0\0"));
        not(&[frame(b'P', b"s1\0BEGIN\0\0\0"), frame(b'S', b"")].concat());
        // Without its Sync (JDBC sends the first statement in the same batch).
        let batch = exec_params(b"BEGIN", NO_PARAMETERS);
        not(&[&batch[..batch.len() - 5], &frame(b'P', b"\0SELECT 1\0\0\0")].concat());
    }
}
