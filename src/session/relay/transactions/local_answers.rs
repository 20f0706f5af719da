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
//! Anything else takes a server connection as before: a statement the
//! pool has not seen accepted (its errors come at Parse, from the server),
//! a Parse of a name the client already uses, Bind, Execute, Query, ...

use bytes::{Bytes, BytesMut};

use super::super::*;
use crate::pool::Pool;
use crate::session::prepared::Prepared;
use crate::session::transaction::{refusal, server_name};

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

impl Upstream {
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
