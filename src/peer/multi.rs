//! `peer get`: download one file from up to `max_sources` sources at once.
//!
//! - **Where chunks are.** The owner connection is this getter's directory registration (its
//!   `have` messages register every verified chunk, so the getter is a source at once) and
//!   its window on the directory: it asks `locate` every [`LOCATE_EVERY`] and learns every
//!   source and the chunks each holds. The owner is a source too.
//! - **Which sources.** Up to `max_sources` connections, the owner's included, to the sources
//!   holding the most chunks this getter lacks (random among equals). A source that fails is
//!   reported to the directory (`source_lost`), avoided for a while (5 s, doubling up to 60 s)
//!   and replaced by the next best.
//! - **Which chunk.** Rarest first: among the chunks the source holds and this getter lacks and
//!   has not requested, the one the fewest sources hold, random among equals. Availability is
//!   recomputed from every `locations` answer. No chunk is requested before the first answer.
//! - **End-game.** Once every missing chunk is requested somewhere, a connection with free
//!   request slots asks for chunks already requested elsewhere; whichever copy arrives first
//!   wins and the other requests are cancelled (`cancel`).
//! - **Choking.** A getter says `interested` when a source holds a chunk it lacks and
//!   `not_interested` when not, and requests only while unchoked (see [`crate::choke`]).
//!
//! Here are the getter's download side and its source connections; its shared state (sources,
//! availability, the pick) is in [`super::getter`], one connection in [`super::fetch`]. A
//! ring peer whose neighbour is down uses the same machinery ([`super::fallback`]).

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::bootstrap::{Handshake, handshake};
use super::fetch::{self, LOCATE_EVERY, OwnerDuties};
use super::getter::{Getter, choose_sources, new_getter, source_ended};
use super::ring::STABLE_SESSION;
use super::{GetConfig, SourceKind, Swarm};
use crate::chunkset::ChunkSet;
use crate::net::Backoff;
use crate::protocol::Role;
use crate::{Error, Result};

/// Runs the getter's download side until `token` is cancelled: the owner connection for as
/// long as the peer runs, source connections until the file is complete.
pub(super) async fn run(
    swarm: Arc<Swarm>,
    first: Option<Handshake>,
    get: GetConfig,
    token: CancellationToken,
) {
    let (lost_tx, lost_rx) = mpsc::unbounded_channel();
    let getter = new_getter(&swarm, lost_tx);
    let owner_task = tokio::spawn(
        owner_loop(getter.clone(), first, lost_rx, token.clone())
            .instrument(info_span!("owner", addr = %swarm.config.owner)),
    );
    // The owner's connection counts as one source.
    drive_sources(&getter, get.max_sources.saturating_sub(1), &token, || {}).await;
    let _ = owner_task.await;
}

/// Keeps up to `max` source connections (chosen by [`choose_sources`]) until the file is
/// complete or `token` is cancelled, calling `tick` about every [`LOCATE_EVERY`]; then waits
/// for the connections to end.
pub(super) async fn drive_sources(
    getter: &Arc<Getter>,
    max: usize,
    token: &CancellationToken,
    mut tick: impl FnMut(),
) {
    let swarm = &getter.swarm;
    let mut conns: JoinSet<(String, Result<()>)> = JoinSet::new();
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
            conns.spawn(
                async move {
                    let r = source_conn(&g, &addr, &t).await;
                    (addr, r)
                }
                .instrument(span),
            );
        }
        tokio::select! {
            biased;
            () = token.cancelled() => {}
            Some(done) = conns.join_next() => {
                let Ok((addr, res)) = done else { continue };
                source_ended(getter, &addr, res);
            }
            () = getter.sources_changed.notified() => {}
            _ = changed.changed() => {}
            () = tokio::time::sleep(LOCATE_EVERY) => tick(),
        }
    }
    // Complete (or stopping): the source connections end by themselves.
    while let Some(done) = conns.join_next().await {
        if let Ok((addr, res)) = done {
            source_ended(getter, &addr, res);
        }
    }
}

/// One connection to a peer source, until this getter is complete.
async fn source_conn(getter: &Getter, addr: &str, token: &CancellationToken) -> Result<()> {
    let swarm = &getter.swarm;
    let endpoint = swarm
        .config
        .owner
        .sibling(addr)
        .map_err(|e| Error::Refused(e.to_string()))?;
    let have = swarm.have_snapshot().to_ranges();
    let file = Some(swarm.manifest.name.clone());
    let (hs, m) = tokio::select! {
        biased;
        () = token.cancelled() => return Ok(()),
        r = handshake(&endpoint, Role::Getter, file, have, (swarm.port, &swarm.node), swarm.config.secret.as_deref()) => r?,
    };
    if m.hash != swarm.manifest.hash {
        return Err(Error::Refused(format!(
            "{addr} shares another file ({} blake3 {})",
            crate::manifest::display_name(&m.name),
            m.hash.short()
        )));
    }
    info!("connected to source {addr}");
    let theirs = ChunkSet::new(swarm.manifest.chunk_count());
    fetch::getter(getter, hs, addr, theirs, None, token).await
}

/// The owner connection, made again with backoff whenever it drops, until `token` is
/// cancelled: downloads like any source, and is the directory registration and window.
async fn owner_loop(
    getter: Arc<Getter>,
    mut first: Option<Handshake>,
    mut lost_rx: mpsc::UnboundedReceiver<String>,
    token: CancellationToken,
) {
    let swarm = getter.swarm.clone();
    let endpoint = swarm.config.owner.clone();
    let label = endpoint.to_string();
    let mut backoff = Backoff::default();
    while !token.is_cancelled() {
        // What the owner will have heard in hello: nothing from the bootstrap hello (the
        // manifest was not known yet), everything held from a reconnect's.
        let mut told = ChunkSet::new(swarm.manifest.chunk_count());
        let hs = match first.take() {
            Some(hs) => Ok(hs),
            None => {
                told = swarm.have_snapshot();
                let file = Some(swarm.manifest.name.clone());
                let have = told.to_ranges();
                tokio::select! {
                    biased;
                    () = token.cancelled() => return,
                    r = handshake(&endpoint, Role::Getter, file, have, (swarm.port, &swarm.node), swarm.config.secret.as_deref()) => r.map(|(hs, _)| hs),
                }
            }
        };
        let res = match hs {
            Ok(hs) => {
                swarm.set_link_error(SourceKind::Owner, None);
                // The owner holds every chunk, unless it only lists a published file.
                let count = swarm.manifest.chunk_count();
                let all = if hs.empty {
                    ChunkSet::new(count)
                } else {
                    ChunkSet::full(count)
                };
                let owner = OwnerDuties {
                    lost_rx: Some(&mut lost_rx),
                    registered: told,
                };
                // As for a ring peer: the backoff starts again only after real progress.
                let (fetched, since) = (swarm.fetched(), Instant::now());
                let res = fetch::getter(&getter, hs, &label, all, Some(owner), &token).await;
                if swarm.fetched() > fetched || since.elapsed() >= STABLE_SESSION {
                    backoff.reset();
                }
                res
            }
            Err(e) => Err(e),
        };
        if token.is_cancelled() {
            return;
        }
        match res {
            Ok(()) => debug!("owner connection ended"),
            Err(e) => {
                swarm.set_link_error(SourceKind::Owner, Some(e.to_string()));
                if swarm.is_complete() {
                    debug!("owner {endpoint}: {e}; retrying");
                } else {
                    warn!("owner {endpoint}: {e}; retrying");
                }
            }
        }
        tokio::select! {
            biased;
            () = token.cancelled() => return,
            () = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}
