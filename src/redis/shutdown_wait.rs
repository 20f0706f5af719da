//! The proxy's shutdown as a session waits for it at every turn of its
//! loop (beside the client's next bytes, a reply on a connection of its
//! own), without the two locks per poll of a
//! [`WaitForCancellationFutureOwned`] (`is_cancelled` and `Notify`'s waiter
//! list each take a mutex: ~250 instructions, at every request).
//!
//! The token's future is polled once with a waker of our own; after that
//! it stays registered, and a poll only reads a flag that waker sets, until
//! the token fires.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Completes once `shutdown` is cancelled. Poll it from one task.
pub struct ShutdownWait {
    inner: Pin<Box<WaitForCancellationFutureOwned>>,
    flag: Arc<Flag>,
    /// `flag` as a waker, made once.
    waker: Waker,
    /// `inner` has been polled with `waker` (it stays registered).
    armed: bool,
    /// The token fired: every poll from then on is ready.
    fired: bool,
}

/// Set by the token's wake-up, before it passes it on to the task.
struct Flag {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl ShutdownWait {
    pub fn new(shutdown: CancellationToken) -> ShutdownWait {
        let flag = Arc::new(Flag {
            woken: AtomicBool::new(false),
            task: AtomicWaker::new(),
        });
        ShutdownWait {
            inner: Box::pin(shutdown.cancelled_owned()),
            waker: Waker::from(Arc::clone(&flag)),
            flag,
            armed: false,
            fired: false,
        }
    }
}

impl Future for ShutdownWait {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if this.fired {
            return Poll::Ready(());
        }
        this.flag.task.register(cx.waker());
        if this.armed && !this.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        this.armed = true;
        let mut inner_cx = Context::from_waker(&this.waker);
        let ready = this.inner.as_mut().poll(&mut inner_cx);
        this.fired = ready.is_ready();
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn completes_at_cancel_and_not_before() {
        let token = CancellationToken::new();
        let mut wait = ShutdownWait::new(token.clone());
        // Polled many times while nothing happens: still pending.
        for _ in 0..3 {
            let r = tokio::time::timeout(std::time::Duration::from_millis(20), &mut wait).await;
            assert!(r.is_err(), "completed before the cancel");
        }
        let t = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            t.cancel();
        });
        tokio::time::timeout(std::time::Duration::from_secs(5), &mut wait)
            .await
            .expect("woken by the cancel");
        // A session's later selects see it too.
        tokio::time::timeout(std::time::Duration::from_millis(100), &mut wait)
            .await
            .expect("still ready after the first time");
    }

    #[tokio::test]
    async fn an_already_cancelled_token_completes_at_once() {
        let token = CancellationToken::new();
        token.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(1), ShutdownWait::new(token))
            .await
            .expect("already cancelled");
    }
}
