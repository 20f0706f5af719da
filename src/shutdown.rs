//! The shutdown signals every connection handler watches: owned by neither
//! the server nor a handler, so both can hold it.

use tokio_util::sync::CancellationToken;

/// The shutdown signals a connection watches.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    /// Stop accepting work: close the connection as soon as it is idle.
    pub drain: CancellationToken,
    /// The grace period is over: close now.
    pub abort: CancellationToken,
}
