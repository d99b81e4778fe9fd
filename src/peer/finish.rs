//! The end of a run: wait for every chunk, reassemble and verify, serve until the upload
//! neighbour is complete (a ring peer) or `linger` ends (a getter), then stop the tasks and
//! write the last summary. Also the summary writer that runs meanwhile.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::assemble;
use super::config::{Completion, Mode, NO_DOWNSTREAM_WAIT, TELL_NEIGHBOUR_WAIT};
use super::downstream::Served;
use super::swarm::Swarm;
use crate::Result;
use crate::storage;
use crate::store::{Flush, StoreError};

/// How [`super::run`] ended.
#[derive(Debug)]
pub enum Outcome {
    /// The file is complete and verified, and the upload neighbour was served.
    Complete(Completion),
    /// The token was cancelled first.
    Interrupted,
}

/// Waits for the file, tells `on_complete`, serves as long as the mode asks, then stops the
/// tasks.
///
/// # Errors
///
/// As [`wait_complete`]; the tasks are stopped and the summary written first.
pub(super) async fn serve_until_done(
    swarm: &Arc<Swarm>,
    tasks: &TaskTracker,
    child: &CancellationToken,
    token: &CancellationToken,
    started: Instant,
    on_complete: Option<oneshot::Sender<Completion>>,
) -> Result<Outcome> {
    let completion = match wait_complete(swarm, token, started).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            stop(swarm, tasks, child).await;
            return Ok(Outcome::Interrupted);
        }
        Err(e) => {
            // Keep what was verified: the summary names it for the next run.
            stop(swarm, tasks, child).await;
            return Err(e);
        }
    };
    if let Some(tx) = on_complete {
        let _ = tx.send(completion.clone());
    }
    super::discover::announce(swarm, tasks, child);
    let interrupted = match swarm.mode {
        _ if swarm.config.seed_until_stopped => {
            token.cancelled().await;
            true
        }
        Mode::Getter(_) => !wait_linger(swarm, token).await,
        Mode::Ring { .. } => {
            let interrupted = !wait_downstream(swarm, token).await;
            if !interrupted {
                wait_told_neighbour(swarm).await;
            }
            interrupted
        }
    };
    stop(swarm, tasks, child).await;
    Ok(if interrupted {
        Outcome::Interrupted
    } else {
        Outcome::Complete(completion)
    })
}

/// Waits for every chunk, then reassembles and verifies; `None` if cancelled first.
///
/// # Errors
///
/// A fatal store error, no progress for `config.timeout`, or an inconsistent manifest.
async fn wait_complete(
    swarm: &Arc<Swarm>,
    token: &CancellationToken,
    started: Instant,
) -> Result<Option<Completion>> {
    let mut changed = swarm.changed.subscribe();
    loop {
        if swarm.is_complete() {
            match assemble::finish(swarm).await? {
                Some(path) => return Ok(Some(completion(swarm, path, started))),
                None => continue, // bad chunks were dropped; fetch them again
            }
        }
        let stall_at = swarm.check_progress()?;
        tokio::select! {
            biased;
            () = token.cancelled() => return Ok(None),
            _ = changed.changed() => {}
            () = sleep_until(stall_at) => {}
        }
    }
}

/// Sleeps until `at`; forever without it.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Logs and reports the verified file at `path`.
fn completion(swarm: &Swarm, path: std::path::PathBuf, started: Instant) -> Completion {
    let fetched = swarm.fetched();
    let elapsed = started.elapsed();
    info!(
        "complete: {} verified ({} bytes, blake3 {}), {fetched} chunks fetched in {:.2}s",
        crate::manifest::display_name(&path.to_string_lossy()),
        swarm.manifest.size,
        swarm.manifest.hash.short(),
        elapsed.as_secs_f64()
    );
    Completion {
        path,
        manifest: swarm.manifest.clone(),
        fetched,
        elapsed,
    }
}

/// Serves until the upload neighbour is complete, `linger` passed, or no upload neighbour
/// was connected for [`NO_DOWNSTREAM_WAIT`]. Returns false if cancelled.
async fn wait_downstream(swarm: &Arc<Swarm>, token: &CancellationToken) -> bool {
    let mut changed = swarm.changed.subscribe();
    let deadline = swarm.config.linger.map(|l| Instant::now() + l);
    loop {
        let next_check = match swarm.served() {
            Ok(Served::NeighbourComplete) => {
                info!("upload neighbour is complete; stopping");
                return true;
            }
            Ok(Served::NoNeighbour) => {
                info!(
                    "no upload neighbour for {}s; stopping",
                    NO_DOWNSTREAM_WAIT.as_secs()
                );
                return true;
            }
            Err(at) => at,
        };
        let linger = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = token.cancelled() => return false,
            _ = changed.changed() => {}
            () = sleep_until(next_check) => {}
            () = linger => {
                info!("linger time over; stopping");
                return true;
            }
        }
    }
}

/// A getter serves what it has until `linger` ends (forever without it). Returns false if
/// cancelled.
async fn wait_linger(swarm: &Arc<Swarm>, token: &CancellationToken) -> bool {
    let Some(linger) = swarm.config.linger else {
        info!("serving until Ctrl+C");
        token.cancelled().await;
        return false;
    };
    tokio::select! {
        biased;
        () = token.cancelled() => false,
        () = tokio::time::sleep(linger) => {
            info!("linger time over; stopping");
            true
        }
    }
}

/// Gives the neighbour client a moment to tell the download neighbour that this peer is
/// complete (it may not even have connected yet), so that neighbour does not wait for it.
async fn wait_told_neighbour(swarm: &Arc<Swarm>) {
    let mut changed = swarm.changed.subscribe();
    let deadline = Instant::now() + TELL_NEIGHBOUR_WAIT;
    while !swarm.neighbour_told_complete() {
        tokio::select! {
            biased;
            _ = changed.changed() => {}
            () = tokio::time::sleep_until(deadline) => return,
        }
    }
}

/// Cancels the peer's tasks, waits for them (2 s at most), writes the last summary, and logs
/// what the syncs cost.
async fn stop(swarm: &Arc<Swarm>, tasks: &TaskTracker, child: &CancellationToken) {
    child.cancel();
    tasks.close();
    if tokio::time::timeout(Duration::from_secs(2), tasks.wait())
        .await
        .is_err()
    {
        warn!("some tasks did not stop within 2s");
    }
    let have = swarm.have_snapshot();
    if let Ok(Err(e)) = storage::call(&swarm.store, move |s| s.write_summary(&have)).await {
        warn!("writing summary: {e}");
    }
    if let Some(r) = swarm.store.sync_report() {
        info!(
            "syncs: {} took {:.3} s, {:.3} s of it after the last chunk arrived",
            r.count,
            r.total.as_secs_f64(),
            r.after_last_chunk.as_secs_f64()
        );
    }
}

/// Syncs the chunks as they arrive and rewrites the summary file, in the batches the store
/// asks for ([`crate::store::Flush`]), one at a time on the blocking pool. Each summary names
/// the chunks held before its sync began. `stop()` writes the last one.
pub(super) async fn summary_writer(swarm: Arc<Swarm>, token: CancellationToken) {
    while !token.is_cancelled() {
        let wait = match swarm.store.flush_due(Instant::now()) {
            Flush::Idle => None,
            Flush::Wait(at) => Some(at),
            Flush::Data => {
                report(
                    storage::call(&swarm.store, |s| s.sync_data()).await,
                    "syncing",
                );
                continue;
            }
            Flush::Summary => {
                // The snapshot comes first: the sync that `write_summary` starts covers it.
                let have = swarm.have_snapshot();
                let res = storage::call(&swarm.store, move |s| s.write_summary(&have)).await;
                report(res, "writing summary");
                continue;
            }
        };
        tokio::select! {
            biased;
            () = token.cancelled() => return,
            () = swarm.summary_dirty.notified() => {}
            () = sleep_until(wait) => {}
        }
    }
}

/// Logs a failed sync or summary.
fn report(
    res: std::result::Result<std::result::Result<(), StoreError>, tokio::task::JoinError>,
    what: &str,
) {
    match res {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!("{what}: {e}"),
        Err(e) => warn!("{what} task: {e}"),
    }
}
