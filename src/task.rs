//! Spawning named tasks that log their failure, and the shutdown signal of the binaries.

use std::future::Future;

use tokio::task::JoinHandle;
use tracing::{Instrument, Span};

/// Spawns `fut` inside `span`; if it returns an error, logs `"{name} failed: {e:#}"` at warn.
pub fn spawn_named<F, E>(name: &'static str, span: Span, fut: F) -> JoinHandle<()>
where
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    tokio::spawn(
        async move {
            if let Err(e) = fut.await {
                tracing::warn!("{name} failed: {e:#}");
            }
        }
        .instrument(span),
    )
}

/// Resolves on the first Ctrl+C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
