//! The relay under transaction pooling: the client side lives for the
//! session, the server side for one transaction. Between transactions the
//! session holds no server connection; the client's next request takes one
//! from the pool, and its ReadyForQuery(idle) (nothing else in flight)
//! gives it back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use tokio::io::AsyncReadExt;

use super::super::pooled::{already_applied, apply_settings};
use super::super::transaction::TransactionClient;
use super::*;
use crate::cancel::{CancelTarget, PooledTarget};
use crate::pool::Pool;
use crate::stream::{ReadHalf, WriteHalf};

mod local_answers;

use local_answers::Local;

impl Upstream {
    /// Wait for the client's next request without a server: true when
    /// bytes of one are here, false when the client left (or sent only
    /// Terminate). `more`: read once more first (the buffered bytes are
    /// the start of a batch the proxy may answer itself).
    async fn wait_for_request(&mut self, mut more: bool) -> Result<bool, SessionError> {
        loop {
            if !more && let Some(&first) = self.from.buf.first() {
                return Ok(first != tag::TERMINATE);
            }
            more = false;
            self.from.buf.reserve(READ_CHUNK);
            let n = self.from.read.read_buf(&mut self.from.buf).await?;
            if !self.from.got(n) {
                return Ok(false);
            }
        }
    }
}

/// Relay a transaction-pooled client until it leaves. `wanted`: its
/// startup settings; `cancel_target`: where the cancel key it was given
/// points, set for each transaction.
pub(in crate::session) async fn relay_transactions(
    client: Stream,
    leftover: BytesMut,
    ctx: &RelayContext,
    pool: &Arc<Pool>,
    wanted: &[(String, String)],
    cancel_target: &PooledTarget,
) -> Result<Summary, SessionError> {
    let (client_read, mut client_write) = client.into_split();
    let tracker = Mutex::new(Tracker::new(true));
    let mut up = Upstream::new(ctx, client_read, leftover, WriteHalf::Closed, true);
    up.transaction = Some(Box::<TransactionClient>::default());
    let mut down = Downstream {
        from: Inbound::new(ReadHalf::Closed, BytesMut::new()),
        writing: false,
    };
    let draining = AtomicBool::new(false);
    let mut more = false;
    let here = crate::pool::current_loop();
    // Which settings a server connection was last found to have for this
    // client: (the pool's draw, the client's settings version then).
    let mut owner = (pool.settings_owner(), 0);
    // Made once for the session: each cancellation future is a waiter
    // registered in its token, and a new one per transaction cost more
    // than the transaction's own bookkeeping.
    // Gated: polled at every wake of the session, but its token's lock is
    // taken only once the token has woken it.
    let drain = WakeGate::new(ctx.shutdown.drain.cancelled());
    tokio::pin!(drain);
    let abort = WakeGate::new(ctx.shutdown.abort.cancelled());
    tokio::pin!(abort);
    loop {
        // After a BEGIN the proxy answered, the client is inside a
        // transaction: a drain waits for its end, as for any other.
        let in_transaction = up.begin_deferred();
        let waited = tokio::select! {
            r = up.wait_for_request(more) => r,
            () = &mut drain, if !in_transaction => Err(SessionError::Shutdown),
            () = &mut abort, if in_transaction => Err(SessionError::Shutdown),
        };
        match waited {
            Ok(true) => {}
            Ok(false) => return Ok(summary(&up, &down, "client closed")),
            Err(e) => return Err(farewell(&mut client_write, e, &ctx.state).await),
        }
        // A prepare of a statement the pool knows needs no server (and
        // must not wait for one: see local_answers).
        more = false;
        match up.answer_without_server(&tracker, ctx, pool) {
            Local::Answered { consumed, answer } => {
                up.from.buf.advance(consumed);
                client_write.write_all(&answer).await?;
                if client_write.is_tls() {
                    client_write.flush().await?;
                }
                continue;
            }
            Local::NeedMore => {
                more = true;
                continue;
            }
            Local::Server => {}
        }
        let mut lease = match pool.acquire_on(&ctx.state.metrics, here).await {
            Ok(lease) => lease,
            Err(e) => return Err(farewell(&mut client_write, e.into(), &ctx.state).await),
        };
        let txn = up.transaction.as_deref().expect("transaction pooling");
        if owner.1 != txn.settings_version {
            owner = (pool.settings_owner(), txn.settings_version);
        }
        // Mostly the connection has the client's settings already: known
        // without a look when this client's last transaction on it left
        // them (nothing has changed them since), else checked here, so no
        // future is built for it.
        if lease.conn.settled_for != owner.0 {
            if !already_applied(&lease.conn, wanted, &txn.settings)
                && let Err(e) = apply_settings(&mut lease.conn, wanted, &txn.settings).await
            {
                lease.discard();
                return Err(farewell(&mut client_write, e.into(), &ctx.state).await);
            }
            lease.conn.settled_for = owner.0;
        }
        cancel_target.set(Some(CancelTarget {
            addr: lease.conn.addr,
            key: lease.conn.key,
        }));
        // What this connection accepts, the pool learns, under the
        // mapping this transaction starts with.
        if up.mapping.refresh(ctx) {
            up.follow_new_mapping(0, &mut false, &tracker, ctx);
        }
        {
            // The connection's statements go to the tracker for the
            // transaction, swapped with the session's empty spare (no new
            // map made and dropped per transaction); swapped back below.
            let mut t = lock(&tracker);
            let slot = t.server_statements.get_or_insert_with(Default::default);
            std::mem::swap(slot, &mut lease.conn.statements);
            slot.pool = Some((Arc::clone(&pool.statements), up.mapping.snapshot.generation));
        }
        let (read, write) = std::mem::replace(&mut lease.conn.stream, Stream::Closed).into_split();
        up.write = write;
        down.from.read = read;

        let result = tokio::select! {
            r = up.run::<TRANSACTION_POOL>(&tracker, ctx) => r,
            r = down.run::<TRANSACTION_POOL>(&mut client_write, &tracker, &draining, ctx) => r,
            () = &mut abort => Err(SessionError::Shutdown),
        };
        cancel_target.set(None);
        let (reusable, idle_since) = {
            let mut t = lock(&tracker);
            if let Some(slot) = &mut t.server_statements {
                std::mem::swap(slot, &mut lease.conn.statements);
            }
            lease.conn.statements.pool = None;
            (
                down.from.buf.is_empty() && t.between_transactions(),
                t.ready_at,
            )
        };
        // Kept in halves for the next transaction's relay.
        let server = Stream::rejoin(
            std::mem::replace(&mut down.from.read, ReadHalf::Closed),
            std::mem::replace(&mut up.write, WriteHalf::Closed),
        );
        match (result, server) {
            (Ok(ended), Some(server))
                if reusable && (ended == TRANSACTION_DONE || up.terminated) =>
            {
                lease.conn.stream = server;
                // What the client SET is on the server now: the next
                // client's settings step resets what it does not want.
                for (name, value) in &up.transaction.as_deref().expect("txn").settings {
                    crate::pool::set_param(&mut lease.conn.applied, name, &format!("sql:{value}"));
                }
                // Idle since its last ReadyForQuery (no clock read here).
                lease.release_idle_since(idle_since.unwrap_or_else(Instant::now));
                if ended != TRANSACTION_DONE {
                    return Ok(summary(&up, &down, ended));
                }
                pool.stats.prepared_hits.fetch_add(
                    std::mem::take(&mut up.transaction.as_mut().expect("txn").hits),
                    Ordering::Relaxed,
                );
                pool.stats.prepared_misses.fetch_add(
                    std::mem::take(&mut up.transaction.as_mut().expect("txn").misses),
                    Ordering::Relaxed,
                );
            }
            (Ok(ended), _) => {
                lease.discard();
                return Ok(summary(&up, &down, ended));
            }
            (Err(e), _) => {
                lease.discard();
                if down.writing {
                    return Err(e);
                }
                return Err(farewell(&mut client_write, e, &ctx.state).await);
            }
        }
    }
}

/// What [`Downstream::run`] returns when a transaction-pooled client's
/// transaction is over.
pub(super) const TRANSACTION_DONE: &str = "transaction done";
