//! A ring peer's fall-back: while its download neighbour is unreachable, it fetches from
//! other sources the directory lists, as a getter would (see [`super::multi`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Swarm;
use super::getter::{Getter, new_getter};
use super::multi::drive_sources;
use crate::directory::Locations;
use crate::protocol::Message;
use crate::watch;

/// How long a ring peer's download neighbour may stay unreachable before the peer fetches
/// from other sources (see [`fallback`]).
pub const NEIGHBOUR_DOWN_LIMIT: Duration = Duration::from_secs(5);
/// Other sources a ring peer uses while its neighbour is down.
pub const FALLBACK_SOURCES: usize = 2;

/// A ring peer's fall-back: once its download neighbour has been unreachable for
/// [`NEIGHBOUR_DOWN_LIMIT`], it fetches from up to [`FALLBACK_SOURCES`] other sources the
/// directory lists (those holding most of what it lacks first), until the neighbour is back
/// or the file is complete; the owner stays its last resort, as always. Runs until `token`
/// is cancelled.
pub(super) async fn fallback(swarm: Arc<Swarm>, token: CancellationToken) {
    let mut changed = swarm.changed.subscribe();
    while wait_neighbour_down(&swarm, &mut changed, &token).await {
        let neighbour = swarm
            .neighbour
            .borrow()
            .as_ref()
            .map_or_else(|| "(none yet)".to_string(), ToString::to_string);
        info!(
            "download neighbour {} unreachable for {}s; fetching from other sources the directory lists",
            neighbour,
            NEIGHBOUR_DOWN_LIMIT.as_secs()
        );
        let sub = token.child_token();
        let (lost_tx, _) = mpsc::unbounded_channel();
        let getter = new_getter(&swarm, lost_tx);
        let watcher = watch_neighbour_back(swarm.clone(), sub.clone());
        let dead = neighbour.clone();
        locate_once(&getter, &dead).await;
        // Ask again every LOCATE_EVERY, one question at a time, without holding up the
        // connections.
        let g2 = getter.clone();
        let mut asking: Option<JoinHandle<()>> = None;
        drive_sources(&getter, FALLBACK_SOURCES, &sub, move || {
            if asking.as_ref().is_none_or(JoinHandle::is_finished) {
                let (g, dead) = (g2.clone(), dead.clone());
                asking = Some(tokio::spawn(async move { locate_once(&g, &dead).await }));
            }
        })
        .await;
        sub.cancel();
        let _ = watcher.await;
    }
}

/// Waits for the download neighbour to be down past the limit; false once the file is
/// complete or `token` is cancelled.
async fn wait_neighbour_down(
    swarm: &Swarm,
    changed: &mut watch::Receiver<()>,
    token: &CancellationToken,
) -> bool {
    loop {
        if token.is_cancelled() || swarm.is_complete() {
            return false;
        }
        let down = swarm.lock().ring.down_since();
        if down.is_some_and(|t| t.elapsed() >= NEIGHBOUR_DOWN_LIMIT) {
            return true;
        }
        tokio::select! {
            biased;
            () = token.cancelled() => return false,
            _ = changed.changed() => {}
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// Cancels `sub` once the download neighbour is back.
fn watch_neighbour_back(swarm: Arc<Swarm>, sub: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut changed = swarm.changed.subscribe();
        while swarm.lock().ring.down_since().is_some() && !sub.is_cancelled() {
            tokio::select! {
                biased;
                _ = changed.changed() => {}
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
        if !sub.is_cancelled() {
            info!("download neighbour is back; leaving the other sources");
        }
        sub.cancel();
    })
}

/// Asks the directory once where the chunks are, by a query connection (the ring peer's
/// owner connection is its registration, not a getter's), and takes in the answer without
/// the `dead` neighbour.
async fn locate_once(getter: &Getter, dead: &str) {
    let swarm = &getter.swarm;
    let query = Message::Locate {
        file: swarm.manifest.name.clone(),
    };
    let secret = swarm.config.secret.as_deref();
    match crate::directory::client::ask(&swarm.config.owner, query, secret).await {
        Ok(body) => match serde_json::from_slice::<Locations>(&body) {
            Ok(mut loc) => {
                loc.sources.retain(|s| s.addr != dead);
                getter.located(loc);
            }
            Err(e) => warn!("bad locate answer from the owner: {e}"),
        },
        Err(e) => debug!("cannot ask the directory: {e}"),
    }
}
