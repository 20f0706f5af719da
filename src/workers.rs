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
//! round-robin would drift). A transaction-pooled client then moves to its
//! pool's loop ([`Workers::place_pool`]), where the pool's server
//! connections are registered.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

/// The event loops sessions are spread over.
#[derive(Clone)]
pub struct Workers {
    loops: Arc<[Loop]>,
    /// Loops handed to transaction-pooled pools so far (round robin).
    pools_placed: Arc<AtomicUsize>,
}

struct Loop {
    /// `None`: made without one ([`Workers::current`], in tests).
    handle: Option<Handle>,
    /// The runtime the acceptor itself runs on: its sessions start where
    /// they were accepted, without moving the socket.
    accepts: bool,
    sessions: Arc<AtomicUsize>,
}

impl Workers {
    /// Every session on the runtime that accepts it.
    pub fn current() -> Self {
        Workers {
            loops: Arc::new([Loop {
                handle: None,
                accepts: true,
                sessions: Arc::default(),
            }]),
            pools_placed: Arc::default(),
        }
    }

    /// The accepting runtime plus `extra` event loops, each on its own
    /// thread named `heal7-worker-N`. The threads live as long as the
    /// process.
    pub fn spawn(accepting: &Handle, extra: usize) -> std::io::Result<Self> {
        let mut loops = vec![Loop {
            handle: Some(accepting.clone()),
            accepts: true,
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
                accepts: false,
                sessions: Arc::default(),
            });
        }
        Ok(Workers {
            loops: loops.into(),
            pools_placed: Arc::default(),
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
        match chosen.handle.as_ref().filter(|_| !chosen.accepts) {
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

impl Workers {
    /// The loop a transaction-pooled pool's sessions relay on, for a new
    /// pool: round robin, so pools spread over the cores.
    ///
    /// All of one pool's sessions share a loop so that a server connection
    /// handed from one client to the next (every transaction) stays with
    /// the I/O driver it is registered with. Spread over loops, half the
    /// hand-overs crossed threads: the connection moved between drivers
    /// (two `epoll_ctl`) or every read of it woke the other thread.
    pub fn place_pool(&self) -> usize {
        self.pools_placed.fetch_add(1, Ordering::Relaxed) % self.loops.len()
    }

    /// Whether the calling task runs on loop `index` (true for a loop
    /// without a handle or an index out of range: nowhere to move to).
    pub fn is_current(&self, index: usize) -> bool {
        let here = Handle::try_current().ok().map(|h| h.id());
        self.loops
            .get(index)
            .and_then(|l| l.handle.as_ref())
            .is_none_or(|h| Some(h.id()) == here)
    }

    /// Run `work` on loop `index` (a session moving there), counted there
    /// instead of on the calling loop while it runs. The caller awaits the
    /// handle, so the session stays tracked for shutdown through its first
    /// task.
    pub fn run_on<Fut>(&self, index: usize, work: Fut) -> JoinHandle<Fut::Output>
    where
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        let here = Handle::try_current().ok().map(|h| h.id());
        let from = self
            .loops
            .iter()
            .find(|l| l.handle.as_ref().is_some_and(|h| Some(h.id()) == here))
            .map(|l| Arc::clone(&l.sessions));
        let target = &self.loops[index % self.loops.len()];
        let moved = Moved::new(from, Arc::clone(&target.sessions));
        let work = async move {
            let _moved = moved;
            work.await
        };
        match &target.handle {
            Some(handle) => handle.spawn(work),
            None => tokio::spawn(work),
        }
    }
}

/// A session counted on the loop it moved to instead of the one it
/// started on, until it ends.
struct Moved {
    from: Option<Arc<AtomicUsize>>,
    to: Arc<AtomicUsize>,
}

impl Moved {
    fn new(from: Option<Arc<AtomicUsize>>, to: Arc<AtomicUsize>) -> Moved {
        if let Some(from) = &from {
            from.fetch_sub(1, Ordering::Relaxed);
        }
        to.fetch_add(1, Ordering::Relaxed);
        Moved { from, to }
    }
}

impl Drop for Moved {
    fn drop(&mut self) {
        self.to.fetch_sub(1, Ordering::Relaxed);
        if let Some(from) = &self.from {
            from.fetch_add(1, Ordering::Relaxed);
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
