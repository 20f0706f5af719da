//! Where sessions run: one event loop per core, each a current-thread tokio
//! runtime on its own OS thread, sharing nothing on the relay path.
//!
//! A session is two sockets and a few buffers that only its own task
//! touches; it gains nothing from work stealing and pays for it (idle
//! workers woken to look for work, the scheduler's bookkeeping, the I/O
//! driver passed between threads). Measured under callgrind, a statement
//! relayed on a current-thread runtime costs ~10% fewer instructions than
//! on tokio's multi-thread one, and the proxy makes a quarter of the
//! `epoll_wait` calls. Each accepted client goes to the loop with the
//! fewest sessions (connection pools keep connections for hours, so
//! round-robin would drift).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio_util::task::TaskTracker;

/// The event loops sessions are spread over.
#[derive(Clone)]
pub struct Workers {
    loops: Arc<[Loop]>,
}

struct Loop {
    /// `None`: the runtime the acceptor itself runs on.
    handle: Option<Handle>,
    sessions: Arc<AtomicUsize>,
}

impl Workers {
    /// Every session on the runtime that accepts it.
    pub fn current() -> Self {
        Workers {
            loops: Arc::new([Loop {
                handle: None,
                sessions: Arc::default(),
            }]),
        }
    }

    /// The accepting runtime plus `extra` event loops, each on its own
    /// thread named `heal7-worker-N`. The threads live as long as the
    /// process.
    pub fn spawn(extra: usize) -> std::io::Result<Self> {
        let mut loops = vec![Loop {
            handle: None,
            sessions: Arc::default(),
        }];
        for n in 1..=extra {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = runtime.handle().clone();
            std::thread::Builder::new()
                .name(format!("heal7-worker-{n}"))
                .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
            loops.push(Loop {
                handle: Some(handle),
                sessions: Arc::default(),
            });
        }
        Ok(Workers {
            loops: loops.into(),
        })
    }

    /// How many event loops serve sessions.
    pub fn len(&self) -> usize {
        self.loops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.loops.is_empty()
    }

    /// Sessions running on each loop now.
    pub fn sessions(&self) -> Vec<usize> {
        self.loops
            .iter()
            .map(|l| l.sessions.load(Ordering::Relaxed))
            .collect()
    }

    /// Run `session` with `stream` on the loop with the fewest sessions.
    /// The stream is moved to that loop's I/O driver first.
    pub fn spawn_session<F, Fut>(&self, tasks: &TaskTracker, stream: TcpStream, session: F)
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let chosen = self
            .loops
            .iter()
            .min_by_key(|l| l.sessions.load(Ordering::Relaxed))
            .expect("at least the accepting loop");
        // Counted now, not when the task starts: the next accept must see it.
        chosen.sessions.fetch_add(1, Ordering::Relaxed);
        let counted = Counted(Arc::clone(&chosen.sessions));
        match &chosen.handle {
            None => {
                tasks.spawn(async move {
                    let _counted = counted;
                    session(stream).await;
                });
            }
            Some(handle) => {
                // A tokio stream belongs to the reactor it was registered
                // with: hand the socket over as a std one.
                let moved = stream.into_std();
                tasks.spawn_on(
                    async move {
                        let _counted = counted;
                        match moved.and_then(TcpStream::from_std) {
                            Ok(stream) => session(stream).await,
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot move a client to its worker")
                            }
                        }
                    },
                    handle,
                );
            }
        }
    }
}

/// Counts a session on its loop until it ends.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
