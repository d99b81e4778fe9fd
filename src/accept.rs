//! The one accept loop, for every listening role: the file owner, a peer's upload server and
//! the owner's HTTP API. It takes connections from a [`Listener`] until its token is
//! cancelled (the token is polled first, so a cancelled loop takes no more), gives each a
//! place under the role's connection cap, and runs the role's handler for it in a task of the
//! role's [`TaskTracker`]. An accept error is logged and retried after [`ACCEPT_RETRY`]; a
//! handler's own errors stay in its task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use crate::net::{BoxStream, Listener};
use crate::task::spawn_tracked;

/// How long an accept loop waits after a failed accept (out of file descriptors, say).
pub(crate) const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// How a role admits connections.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Admission {
    /// Connections served at once. A connection past the cap is still handed to the
    /// handler, without a permit, so that the handler refuses it in the role's own words.
    pub max_connections: usize,
    /// What a failed accept is called in the log (`"accept"`, `"HTTP accept"`).
    pub what: &'static str,
}

/// One accepted connection, as a handler gets it.
pub(crate) struct Accepted {
    /// The connection's stream.
    pub stream: BoxStream,
    /// Where it comes from.
    pub addr: SocketAddr,
    /// Its place under [`Admission::max_connections`]; `None` when none was left: refuse it.
    /// Dropped when the connection is done.
    pub permit: Option<OwnedSemaphorePermit>,
    /// A child of the loop's token, for the connection to stop at.
    pub token: CancellationToken,
}

/// Accepts connections on `listener` until `token` is cancelled, running
/// `handle(accepted)` for each in `tracker`. Returns once cancelled; the tracker is neither
/// closed nor waited on (that is the caller's, with its own grace period).
pub(crate) async fn accept_loop<H, F>(
    listener: impl Into<Listener>,
    token: &CancellationToken,
    tracker: &TaskTracker,
    admission: Admission,
    mut handle: H,
) where
    H: FnMut(Accepted) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let mut listener = listener.into();
    let slots = Arc::new(Semaphore::new(admission.max_connections));
    loop {
        let accepted = tokio::select! {
            biased;
            () = token.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                warn!("{} failed: {e}; retrying", admission.what);
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let permit = slots.clone().try_acquire_owned().ok();
        spawn_tracked(
            tracker,
            admission.what,
            handle(Accepted {
                stream,
                addr,
                permit,
                token: token.child_token(),
            }),
        );
    }
}
