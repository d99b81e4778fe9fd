//! The source pool: connections to the peers the owner's directory lists as holding chunks
//! this peer lacks ([`pool`]), for a getter (`peer get`) and for a ring peer whose download
//! neighbour is down ([`fallback`]).
//!
//! - **Which sources.** Up to `max` connections to the sources holding the most chunks this
//!   peer lacks (random among equals; see [`super::getter`]). A source that fails is reported
//!   to the directory (`source_lost`), avoided for a while (5 s, doubling up to 60 s, by the
//!   one backoff rule of [`super::retry`]) and replaced by the next best.
//! - **Woken by changes.** The pool looks again when a connection ends, the directory's
//!   answer changes the list, a chunk is stored, or an avoided source may be tried again,
//!   each at once and never on a timer; the fall-back starts when the neighbour has been
//!   down [`NEIGHBOUR_DOWN_LIMIT`] (a sleep to that instant) and ends when the ring link says
//!   it is back.
//!
//! One connection is [`fetch::getter`](super::fetch::getter); the getter's owner link is in [`super::links`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::fetch::{self, LOCATE_EVERY};
use super::getter::{Getter, choose_sources, new_getter, next_retry, source_ended};
use super::links::connect;
use super::retry::Attempt;
use super::swarm::Swarm;
use crate::chunkset::ChunkSet;
use crate::directory::Locations;
use crate::protocol::{Message, Role};
use crate::task::spawn_in;
use crate::watch;
use crate::{Error, Result};

/// How long a ring peer's download neighbour may stay unreachable before the peer fetches
/// from other sources (see [`fallback`]).
pub const NEIGHBOUR_DOWN_LIMIT: Duration = Duration::from_secs(5);
/// Other sources a ring peer uses while its neighbour is down.
pub const FALLBACK_SOURCES: usize = 2;

/// Keeps up to `max` source connections (chosen by [`choose_sources`]) until the file is
/// complete or `token` is cancelled; then waits for the connections to end.
pub(super) async fn pool(getter: Arc<Getter>, max: usize, token: CancellationToken) {
    let (getter, token) = (&getter, &token);
    let swarm = &getter.swarm;
    let mut conns: JoinSet<(String, bool, Result<()>)> = JoinSet::new();
    let mut rng = swarm.rng(0);
    let mut changed = swarm.changed.subscribe();
    while !token.is_cancelled() && !swarm.is_complete() {
        // The owner's connection is a source too (a ring peer's fall-back aside).
        let n = conns.len() + 1;
        swarm
            .status
            .set_via(format!("{n} source{}", if n == 1 { "" } else { "s" }));
        let want = max.saturating_sub(conns.len());
        for addr in choose_sources(getter, want, &mut rng) {
            let (g, t) = (getter.clone(), token.clone());
            let span = info_span!("source", addr = %addr);
            spawn_in(
                &mut conns,
                "source",
                async move {
                    let attempt = Attempt::start(0);
                    let r = source_conn(&g, &addr, &t).await;
                    (addr, attempt.lasted(), r)
                }
                .instrument(span),
            );
        }
        let retry = next_retry(getter);
        tokio::select! {
            biased;
            () = token.cancelled() => {}
            Some(done) = conns.join_next() => {
                let Ok((addr, lasted, res)) = done else { continue };
                source_ended(getter, &addr, res, lasted);
            }
            () = getter.sources_changed.notified() => {}
            _ = changed.changed() => {}
            () = sleep_until(retry) => {}
        }
    }
    // Complete (or stopping): the source connections end by themselves.
    while let Some(done) = conns.join_next().await {
        if let Ok((addr, lasted, res)) = done {
            source_ended(getter, &addr, res, lasted);
        }
    }
}

/// Sleeps until `at`; forever without it.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// One connection to a peer source, until this peer is complete.
async fn source_conn(getter: &Getter, addr: &str, token: &CancellationToken) -> Result<()> {
    let swarm = &getter.swarm;
    let endpoint = swarm
        .config
        .owner
        .sibling(addr)
        .map_err(|e| Error::Refused(e.to_string()))?;
    let have = swarm.have_snapshot();
    let hs = tokio::select! {
        biased;
        () = token.cancelled() => return Ok(()),
        r = connect(swarm, &endpoint, Role::Getter, &have) => r?,
    };
    info!("connected to source {addr}");
    let theirs = ChunkSet::new(swarm.manifest.chunk_count());
    fetch::getter(getter, hs, addr, theirs, None, token).await
}

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
        let fetch = async {
            // The first answer (the directory's, or with it gone the DHT's, which may take
            // seconds) unless the fall-back ends first.
            tokio::select! {
                biased;
                () = sub.cancelled() => return,
                () = locate_once(&getter, &neighbour) => {}
            }
            // Ask again every LOCATE_EVERY, one question at a time, beside the connections.
            tokio::select! {
                biased;
                () = pool(getter.clone(), FALLBACK_SOURCES, sub.clone()) => {}
                () = locate_every(&getter, &neighbour) => {}
            }
            sub.cancel();
        };
        let watch = async {
            if wait_neighbour_back(&swarm, &sub).await {
                info!("download neighbour is back; leaving the other sources");
            }
            sub.cancel();
        };
        tokio::join!(fetch, watch);
    }
}

/// Waits for the download neighbour to be down past the limit: woken by the swarm's changes
/// (the ring link's among them) and at the instant the limit passes; false once the file is
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
        let limit = swarm
            .neighbour_down_since()
            .map(|t| t + NEIGHBOUR_DOWN_LIMIT);
        if limit.is_some_and(|t| t <= tokio::time::Instant::now()) {
            return true;
        }
        tokio::select! {
            biased;
            () = token.cancelled() => return false,
            _ = changed.changed() => {}
            () = sleep_until(limit) => {}
        }
    }
}

/// Waits for the download neighbour to be back, woken by the swarm's changes: true when it
/// is, false if `sub` was cancelled first.
async fn wait_neighbour_back(swarm: &Swarm, sub: &CancellationToken) -> bool {
    let mut changed = swarm.changed.subscribe();
    while swarm.neighbour_down_since().is_some() {
        tokio::select! {
            biased;
            () = sub.cancelled() => return false,
            _ = changed.changed() => {}
        }
    }
    !sub.is_cancelled()
}

/// Asks the directory where the chunks are every [`LOCATE_EVERY`], one question at a time;
/// never ends.
async fn locate_every(getter: &Getter, dead: &str) {
    loop {
        tokio::time::sleep(LOCATE_EVERY).await;
        locate_once(getter, dead).await;
    }
}

/// Asks the directory once where the chunks are, by a query connection (the ring peer's
/// owner connection is its registration, not a getter's), and takes in the answer without
/// the `dead` neighbour.
async fn locate_once(getter: &Getter, dead: &str) {
    let swarm = &getter.swarm;
    let query = Message::Locate {
        file: swarm.manifest.name.clone(),
    };
    let me = &swarm.config.identity;
    match crate::directory::client::ask(&swarm.config.owner, query, me).await {
        Ok(body) => match serde_json::from_slice::<Locations>(&body) {
            Ok(mut loc) => {
                loc.sources.retain(|s| s.addr != dead);
                getter.located(loc);
            }
            Err(e) => warn!("bad locate answer from the owner: {e}"),
        },
        Err(e) => {
            debug!("cannot ask the directory: {e}");
            // Gone: with a DHT, the nodes it names for the file.
            let mut named = super::discover::named(swarm, true).await;
            named.retain(|a| a != dead);
            let n = getter.found(named);
            if n > 0 {
                getter.no_directory();
                info!("the directory is unreachable; the DHT named {n} new source(s)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use tokio::time::Instant;

    use super::*;
    use crate::events::EventSink;
    use crate::manifest::Manifest;
    use crate::net::MemNet;
    use crate::peer::config::{Config, SourceKind};

    const SEC: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    /// A ring peer (or a getter) of a 5-chunk file kept in memory, its owner on `net`'s port 1.
    async fn swarm(net: &Arc<MemNet>, getter: bool) -> Arc<Swarm> {
        let dir = PathBuf::from("/nowhere");
        let mut config = match getter {
            true => Config::getter(net.endpoint(1), dir, 3),
            false => Config::ring(net.endpoint(1), net.endpoint(2), dir),
        };
        config.in_memory = Some(crate::storage::InMemory::Bodies);
        config.events = Arc::new(EventSink::console("test").quiet());
        config.seed = Some(7);
        let mode = config.mode();
        let m = Manifest::for_tests(5);
        Arc::new(Swarm::open(config, mode, m, 9, "me".into()).await.unwrap())
    }

    /// The neighbour comes up at 1.1 s and goes down at 2.3 s: the fall-back starts at
    /// 2.3 s + the limit exactly, not at the next tick of a poll.
    #[tokio::test(start_paused = true)]
    async fn the_fall_back_starts_when_the_neighbour_was_down_the_limit() {
        let swarm = swarm(&MemNet::new(), false).await;
        let (start, token) = (Instant::now(), CancellationToken::new());
        let mut changed = swarm.changed.subscribe();
        let flap = async {
            tokio::time::sleep(1100 * MS).await;
            swarm.set_link_error(SourceKind::Neighbour, None);
            tokio::time::sleep(1200 * MS).await;
            swarm.set_link_error(SourceKind::Neighbour, Some("gone".into()));
        };
        let (down, ()) = tokio::join!(wait_neighbour_down(&swarm, &mut changed, &token), flap);
        assert!(down);
        assert_eq!(start.elapsed(), 2300 * MS + NEIGHBOUR_DOWN_LIMIT);
        token.cancel();
        assert!(!wait_neighbour_down(&swarm, &mut changed, &token).await);
    }

    /// The fall-back ends the moment the ring link says the neighbour is back, and not at
    /// all when it is stopped first.
    #[tokio::test(start_paused = true)]
    async fn the_fall_back_ends_when_the_neighbour_is_back() {
        let swarm = swarm(&MemNet::new(), false).await;
        let (start, sub) = (Instant::now(), CancellationToken::new());
        let back = async {
            tokio::time::sleep(3700 * MS).await;
            swarm.set_link_error(SourceKind::Neighbour, None);
        };
        let (is_back, ()) = tokio::join!(wait_neighbour_back(&swarm, &sub), back);
        assert!(is_back);
        assert_eq!(start.elapsed(), 3700 * MS);
        swarm.set_link_error(SourceKind::Neighbour, Some("gone".into()));
        let stop = async {
            tokio::time::sleep(SEC).await;
            sub.cancel();
        };
        let (is_back, ()) = tokio::join!(wait_neighbour_back(&swarm, &sub), stop);
        assert!(!is_back);
    }

    /// A source that fails at once is avoided 5 s, then 10 s: the pool connects again at
    /// those instants exactly, woken by the deadline, and only then.
    #[tokio::test(start_paused = true)]
    async fn the_pool_tries_an_avoided_source_again_at_its_instant() {
        let net = MemNet::new();
        let swarm = swarm(&net, true).await;
        let mut listener = net.listen(7).unwrap();
        let (lost_tx, mut lost_rx) = mpsc::unbounded_channel();
        let getter = new_getter(&swarm, lost_tx);
        let loc = serde_json::json!({"sources": [{"addr": "127.0.0.1:7", "role": "peer",
            "count": 5, "complete": true, "chunks": [[0, 4]]}]});
        getter.located(serde_json::from_value(loc).unwrap());
        let start = Instant::now();
        let accepts = async {
            let mut at = Vec::new();
            while at.len() < 3 {
                // Closed before `welcome`: the attempt fails at once.
                drop(listener.accept().await.unwrap());
                at.push(start.elapsed());
            }
            at
        };
        let at = tokio::select! {
            at = accepts => at,
            () = pool(getter, 2, CancellationToken::new()) => panic!("the pool ended"),
        };
        assert_eq!(at, [Duration::ZERO, 5 * SEC, 15 * SEC]);
        let lost: Vec<_> = std::iter::from_fn(|| lost_rx.try_recv().ok()).collect();
        assert_eq!(lost, ["127.0.0.1:7"; 2], "each failure is reported");
    }
}
