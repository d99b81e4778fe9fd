//! Named tasks, and the shutdown signal of the binaries.
//!
//! Every task of the crate is spawned through [`spawn_named`] (or [`spawn_tracked`] /
//! [`spawn_in`] when a [`TaskTracker`] or [`JoinSet`] waits for it): the future runs inside a
//! `task` span carrying its name, so its log lines say which task wrote them, and a task that
//! ends in an error says so (`"{name} failed: {error}"`, at debug level: whoever awaits the
//! task decides what the user sees) instead of dying silently.

use std::fmt::Display;
use std::future::Future;

use tokio::task::{AbortHandle, JoinHandle, JoinSet};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// What a task's result says about how it ended.
pub trait TaskOutcome {
    /// The error's text when the task failed, `None` when it did its job.
    fn failure(&self) -> Option<String>;
}

impl TaskOutcome for () {
    fn failure(&self) -> Option<String> {
        None
    }
}

impl<T, E: Display> TaskOutcome for Result<T, E> {
    fn failure(&self) -> Option<String> {
        self.as_ref().err().map(|e| format!("{e:#}"))
    }
}

impl<L, T, E: Display> TaskOutcome for (L, Result<T, E>) {
    fn failure(&self) -> Option<String> {
        self.1.failure()
    }
}

impl<L, M, T, E: Display> TaskOutcome for (L, M, Result<T, E>) {
    fn failure(&self) -> Option<String> {
        self.2.failure()
    }
}

/// `fut` inside a `task` span named `name`, saying so when it ends in an error.
fn named<F>(name: &'static str, fut: F) -> impl Future<Output = F::Output> + Send + 'static
where
    F: Future + Send + 'static,
    F::Output: TaskOutcome + Send + 'static,
{
    let span = tracing::debug_span!("task", name);
    async move {
        let out = fut.await;
        if let Some(e) = out.failure() {
            tracing::debug!("{name} failed: {e}");
        }
        out
    }
    .instrument(span)
}

/// A runtime with `workers` worker threads; with 1, a current-thread runtime (every task on
/// the thread that runs it, plus tokio's blocking pool).
///
/// # Errors
///
/// The runtime cannot be built.
pub fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    }
}

/// Spawns `fut` on the current runtime as the task `name`.
pub fn spawn_named<F>(name: &'static str, fut: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: TaskOutcome + Send + 'static,
{
    tokio::spawn(named(name, fut))
}

/// Spawns `fut` as the task `name`, tracked by `tracker` (which waits for it on shutdown).
pub fn spawn_tracked<F>(tracker: &TaskTracker, name: &'static str, fut: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: TaskOutcome + Send + 'static,
{
    tracker.spawn(named(name, fut))
}

/// Spawns `fut` as the task `name` into `set`, whose owner collects its result.
pub fn spawn_in<F>(set: &mut JoinSet<F::Output>, name: &'static str, fut: F) -> AbortHandle
where
    F: Future + Send + 'static,
    F::Output: TaskOutcome + Send + 'static,
{
    set.spawn(named(name, fut))
}

/// Ctrl+C and SIGTERM, listened for from the moment this is created (so a signal that
/// arrives before anything awaits it is not lost, nor does it kill the process).
#[derive(Debug)]
pub struct ShutdownSignals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Installs the handlers; call inside the runtime, before telling anyone the process is up.
    ///
    /// # Errors
    ///
    /// The handlers cannot be installed.
    pub fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                int: signal(SignalKind::interrupt())?,
                term: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Resolves on the next Ctrl+C or SIGTERM.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_named_task_hands_back_its_result() {
        let ok = spawn_named("ok", async { Ok::<u8, String>(7) })
            .await
            .unwrap();
        assert_eq!(ok, Ok(7));
        let tracker = TaskTracker::new();
        let failed = spawn_tracked(&tracker, "fails", async { Err::<(), _>("no route") });
        assert_eq!(failed.await.unwrap().failure().as_deref(), Some("no route"));
        let mut set = JoinSet::new();
        spawn_in(&mut set, "pair", async { ("a", Ok::<(), String>(())) });
        let (label, res) = set.join_next().await.unwrap().unwrap();
        assert_eq!((label, res.failure()), ("a", None));
    }
}
