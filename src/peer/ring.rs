//! A ring peer's two sources, each kept connected by [`run_source`]: the owner (assigned,
//! orphan and suspect chunks, the stall fall-back, and the directory registration) and the
//! download neighbour (the ring). One session on either is [`fetch::ring`].

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, warn};

use super::bootstrap::{Handshake, RETRY_LOG_EVERY, handshake};
use super::{SourceKind, Swarm, fetch};
use crate::chunkset::ChunkSet;
use crate::events::EventKind;
use crate::manifest::display_name;
use crate::net::{Backoff, Endpoint};
use crate::protocol::Role;
use crate::{Error, Result};

/// How long a source that sent [`super::MAX_BAD_CHUNKS`] bad chunks is avoided.
pub const BAD_SOURCE_AVOID: Duration = Duration::from_secs(30);

/// How long a session with a download neighbour the directory replaced may take to end.
const FAREWELL_WAIT: Duration = Duration::from_secs(1);

/// A session at least this long counts as progress for the reconnect backoff.
pub(super) const STABLE_SESSION: Duration = Duration::from_secs(10);

/// Keeps the download neighbour connected (see [`run_source`]), following it when the
/// directory names another (a joined ring peer's), until this peer is done or `token` is
/// cancelled. Each change is reported (`neighbour_changed`).
pub(super) async fn follow_neighbour(swarm: Arc<Swarm>, token: CancellationToken) {
    let mut changes = swarm.neighbour.subscribe();
    // Once complete (and the neighbour told so), changes are still reported, not followed.
    let mut finished = false;
    loop {
        let current = changes.borrow_and_update().clone();
        swarm.status.set_via(match &current {
            Some(e) => format!("from {e}"),
            None => "alone in the ring".into(),
        });
        let sub = token.child_token();
        let follow = !finished;
        let run = async {
            match current.clone() {
                Some(endpoint) if follow => {
                    let span = tracing::info_span!("neighbour", addr = %endpoint);
                    run_source(
                        swarm.clone(),
                        SourceKind::Neighbour,
                        endpoint,
                        None,
                        sub.clone(),
                    )
                    .instrument(span)
                    .await;
                }
                _ => std::future::pending().await,
            }
        };
        tokio::pin!(run);
        tokio::select! {
            biased;
            () = token.cancelled() => return,
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = &mut run => {
                finished = true;
                continue;
            }
        }
        // The old neighbour's session ends cleanly: it tells the old neighbour this peer
        // moved on, so that one need not wait for it to come back.
        sub.cancel();
        if follow && current.is_some() {
            let _ = tokio::time::timeout(FAREWELL_WAIT, run).await;
        }
        let now = swarm.neighbour.borrow().clone();
        let addr = now.as_ref().map_or_else(String::new, ToString::to_string);

        // The event's console line says it ("download neighbour is now …").
        let detail = if addr.is_empty() {
            "alone in the ring"
        } else {
            ""
        };
        swarm
            .events
            .swarm(EventKind::NeighbourChanged, &addr, detail);
        // The old neighbour's announcements no longer hold.
        swarm.set_link_error(SourceKind::Neighbour, Some("neighbour changed".into()));
    }
}

/// Keeps the publisher a directory named for this peer's published file connected (see
/// [`run_source`]), following it when another is named, until `token` is cancelled.
pub(super) async fn follow_publisher(swarm: Arc<Swarm>, token: CancellationToken) {
    let mut changes = swarm.publisher.subscribe();
    let mut first = true;
    loop {
        let current = changes.borrow_and_update().clone();
        if current.is_none() && !std::mem::take(&mut first) {
            info!("no publisher of this file is left: going on with what the ring holds");
        }
        let run = async {
            if let Some(endpoint) = current {
                info!("the directory names publisher {endpoint} as this file's owner");
                let span = tracing::info_span!("publisher", addr = %endpoint);
                let sub = token.child_token();
                let _stop = sub.clone().drop_guard();
                run_source(swarm.clone(), SourceKind::Publisher, endpoint, None, sub)
                    .instrument(span)
                    .await;
            }
            std::future::pending::<()>().await;
        };
        tokio::select! {
            biased;
            () = token.cancelled() => return,
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = run => {}
        }
        swarm.set_link_error(SourceKind::Publisher, Some("publisher changed".into()));
    }
}

/// Keeps a connection to one source, at `endpoint`, until this peer is complete or `token`
/// is cancelled, reconnecting with capped backoff.
pub(super) async fn run_source(
    swarm: Arc<Swarm>,
    kind: SourceKind,
    endpoint: Endpoint,
    mut first: Option<Handshake>,
    token: CancellationToken,
) {
    let mut source = Source {
        swarm,
        kind,
        endpoint,
        backoff: Backoff::default(),
        last_log: None,
        told_complete: false,
    };
    while !token.is_cancelled() && !source.finished() {
        let Some(connected) = source.connect(first.take(), &token).await else {
            return;
        };
        let (hs, have) = match connected {
            Ok(c) => c,
            Err(e) => {
                source.connect_failed(&e);
                if !sleep_unless_cancelled(&token, source.backoff.next_delay()).await {
                    return;
                }
                continue;
            }
        };
        let Some(progressed) = source.session(hs, have, &token).await else {
            return;
        };
        if !progressed
            && !source.finished()
            && !sleep_unless_cancelled(&token, source.backoff.next_delay()).await
        {
            return;
        }
    }
}

/// One source of a ring peer, across its reconnections.
struct Source {
    swarm: Arc<Swarm>,
    kind: SourceKind,
    endpoint: Endpoint,
    backoff: Backoff,
    /// When "waiting for" was last logged, while not connected.
    last_log: Option<Instant>,
    /// The last session ended with this peer complete: the source was told so.
    told_complete: bool,
}

impl Source {
    /// A complete peer still tells its download neighbour once that it is complete, so the
    /// neighbour knows its upload neighbour needs nothing more. The owner connection is also
    /// this peer's directory registration: it lives as long as the peer, and is made again
    /// (with the full have list) when the owner restarts.
    fn finished(&self) -> bool {
        self.kind == SourceKind::Neighbour && self.told_complete && self.swarm.is_complete()
    }

    /// A handshaken connection and what it was told this peer holds: `first` if given, else a
    /// new one; `None` if cancelled first.
    async fn connect(
        &self,
        first: Option<Handshake>,
        token: &CancellationToken,
    ) -> Option<Result<(Handshake, ChunkSet)>> {
        let swarm = &self.swarm;
        let have = swarm.have_snapshot();
        if let Some(hs) = first {
            // The bootstrap hello said nothing of what this peer holds (the manifest was not
            // known yet): announce everything on it.
            return Some(Ok((hs, ChunkSet::new(swarm.manifest.chunk_count()))));
        }
        let role = match self.kind {
            SourceKind::Neighbour => Role::Neighbour,
            // A publisher is met as an owner; a directory, too, until its welcome.
            _ => Role::Peer,
        };
        let file = Some(swarm.manifest.name.clone());
        let secret = swarm.config.secret.as_deref();
        let me = (swarm.port, swarm.node.as_str());
        let endpoint = &self.endpoint;
        let fut = handshake(endpoint, role, file, have.to_ranges(), me, secret);
        let hs = tokio::select! {
            biased;
            () = token.cancelled() => return None,
            r = fut => r.and_then(|(hs, m)| {
                if m.hash == swarm.manifest.hash {
                    Ok(hs)
                } else {
                    Err(Error::Refused(format!(
                        "{endpoint} shares another file ({} blake3 {}), not {} blake3 {}",
                        display_name(&m.name), m.hash.short(), display_name(&swarm.manifest.name), swarm.manifest.hash.short()
                    )))
                }
            }),
        };
        Some(hs.map(|hs| (hs, have)))
    }

    fn connect_failed(&mut self, e: &Error) {
        let endpoint = &self.endpoint;
        self.swarm.set_link_error(self.kind, Some(e.to_string()));
        if self.swarm.is_complete() {
            // Only the directory registration is missing; no need to shout.
            debug!("waiting for owner {endpoint} ({e}); retrying");
        } else if self.last_log.is_none_or(|t| t.elapsed() >= RETRY_LOG_EVERY) {
            info!(
                "waiting for {} {endpoint} ({e}); retrying",
                self.kind.noun()
            );
            self.last_log = Some(Instant::now());
        }
    }

    /// Runs one session on a connection; whether it made progress, or `None` if cancelled
    /// while avoiding a source that sent bad chunks.
    async fn session(
        &mut self,
        hs: Handshake,
        have: ChunkSet,
        token: &CancellationToken,
    ) -> Option<bool> {
        let (swarm, endpoint) = (&self.swarm, &self.endpoint);
        // An owner that holds none of the file is only its directory; a tracker names the
        // publisher that serves the chunks instead.
        let kind = match self.kind {
            SourceKind::Owner if hs.empty => SourceKind::Directory,
            k => k,
        };
        if kind.places_in_ring() {
            // A joiner's place in the ring, as the owner gave it (again, after a reconnect),
            // and who serves its chunks.
            swarm.set_neighbour(hs.neighbour.as_deref());
            swarm.set_publisher(hs.publisher.as_deref());
        }
        self.last_log = None;
        swarm.set_link_error(kind, None);
        info!("connected to {endpoint}");
        let (fetched_before, since) = (swarm.fetched(), Instant::now());
        let res = fetch::ring(swarm, kind, hs, have, token).await;
        // Backoff starts again only after real progress: a chunk stored, or a session that
        // lasted. A session that fails at once (a bad message, a full disk, an owner whose
        // file changed) is retried ever more slowly, not in a storm.
        let progressed = swarm.fetched() > fetched_before || since.elapsed() >= STABLE_SESSION;
        if progressed {
            self.backoff.reset();
        }
        let reason = match &res {
            Ok(()) => "disconnected".to_string(),
            Err(e) => format!("disconnected: {e}"),
        };
        swarm.set_link_error(kind, Some(reason));
        match res {
            Ok(()) => {
                self.told_complete = swarm.is_complete();
                if self.told_complete && kind == SourceKind::Neighbour {
                    swarm.lock().ring.mark_told_complete();
                    swarm.notify();
                }
                debug!("connection to {endpoint} ended");
            }
            Err(Error::BadChunks(e)) => {
                // A source that keeps sending bad chunks is avoided for a while; the owner and,
                // for a neighbour, other sources (the fall-back) fill in meanwhile. A
                // publisher is reported to the directory, which moves the ring to another
                // publisher of the same content once its members agree.
                warn!(
                    "connection to {endpoint} ended: {e}; avoiding it for {}s",
                    BAD_SOURCE_AVOID.as_secs()
                );
                if kind == SourceKind::Publisher {
                    swarm.report_bad_source(endpoint.to_string());
                }
                if !sleep_unless_cancelled(token, BAD_SOURCE_AVOID).await {
                    return None;
                }
            }
            Err(e) => warn!("connection to {endpoint} ended: {e}"),
        }
        Some(progressed)
    }
}

/// Sleeps for `d`; false if `token` was cancelled first.
pub(super) async fn sleep_unless_cancelled(token: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        biased;
        () = token.cancelled() => false,
        () = tokio::time::sleep(d) => true,
    }
}
