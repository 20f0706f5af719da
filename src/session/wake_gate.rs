//! A future that is polled only when it asked to be, not on every wake of
//! the task it shares.
//!
//! `tokio::select!` polls every branch whenever any branch wakes the task.
//! The relay's shutdown branches (cancellation tokens, whose poll takes a
//! lock) would then be polled on every frame the relay moves; behind this
//! gate they cost one atomic swap instead until shutdown wakes them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

pub(crate) struct WakeGate<F> {
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
    pub(crate) fn new(inner: F) -> Self {
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
        this.inner
            .as_mut()
            .poll(&mut Context::from_waker(&this.waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio_util::sync::CancellationToken;

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
}
