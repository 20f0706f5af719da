//! The shutdown signals every connection handler watches, and the gate its
//! selects wait on them through: owned by neither the server nor a handler,
//! so both can hold them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;
use tokio_util::sync::CancellationToken;

/// The shutdown signals a connection watches.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    /// Stop accepting work: close the connection as soon as it is idle.
    pub drain: CancellationToken,
    /// The grace period is over: close now.
    pub abort: CancellationToken,
}

/// A future polled only when it asked to be, not on every wake of the task
/// it shares.
///
/// `tokio::select!` polls every branch whenever any branch wakes the task.
/// A connection's shutdown branches (cancellation tokens, whose poll takes
/// a lock: ~250 instructions) would then be polled on every frame or
/// request it moves; behind this gate they cost one atomic swap instead
/// until shutdown wakes them. Once `inner` is ready, every later poll
/// reaches it again (a cancelled token's future stays ready), so a loop
/// that selects on the gate after shutdown sees it too.
pub struct WakeGate<F> {
    inner: Pin<Box<F>>,
    signal: Arc<Signal>,
    /// The waker handed to `inner`: it sets `signal.woken`, then wakes the task.
    waker: Waker,
}

struct Signal {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F: Future> WakeGate<F> {
    pub fn new(inner: F) -> Self {
        let signal = Arc::new(Signal {
            // The first poll always reaches `inner`.
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        WakeGate {
            inner: Box::pin(inner),
            waker: Waker::from(Arc::clone(&signal)),
            signal,
        }
    }
}

impl<F: Future> Future for WakeGate<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        // Register before reading the flag: a wake in between is not lost.
        this.signal.task.register(cx.waker());
        if !this.signal.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let ready = this
            .inner
            .as_mut()
            .poll(&mut Context::from_waker(&this.waker));
        if ready.is_ready() {
            this.signal.woken.store(true, Ordering::Relaxed);
        }
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn completes_when_the_inner_future_is_woken() {
        let token = CancellationToken::new();
        let gated = WakeGate::new(token.clone().cancelled_owned());
        let cancel = {
            let token = token.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                token.cancel();
            })
        };
        tokio::time::timeout(Duration::from_secs(5), gated)
            .await
            .expect("the gate let the cancellation through");
        cancel.await.unwrap();
    }

    #[tokio::test]
    async fn an_already_ready_future_completes_on_the_first_poll() {
        let token = CancellationToken::new();
        token.cancel();
        tokio::time::timeout(
            Duration::from_secs(5),
            WakeGate::new(token.cancelled_owned()),
        )
        .await
        .expect("ready at once");
    }

    #[tokio::test]
    async fn other_wakes_of_the_task_do_not_poll_the_inner_future() {
        use std::sync::atomic::AtomicUsize;
        struct CountPolls<'a>(&'a AtomicUsize);
        impl Future for CountPolls<'_> {
            type Output = ();
            fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
                self.0.fetch_add(1, Ordering::Relaxed);
                Poll::Pending
            }
        }
        let polls = AtomicUsize::new(0);
        let mut gated = WakeGate::new(CountPolls(&polls));
        for _ in 0..10 {
            tokio::select! {
                () = &mut gated => unreachable!(),
                () = tokio::task::yield_now() => {}
            }
        }
        assert_eq!(polls.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn completes_at_cancel_and_not_before() {
        let token = CancellationToken::new();
        let mut wait = WakeGate::new(token.clone().cancelled_owned());
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
        tokio::time::timeout(
            std::time::Duration::from_secs(1),
            WakeGate::new(token.cancelled_owned()),
        )
        .await
        .expect("already cancelled");
    }
}
