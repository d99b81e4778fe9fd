//! A peer's links: each long-lived source kept connected across reconnections by one loop
//! ([`SourceLink::run`]) under the one backoff rule ([`super::retry`]). They are a ring
//! peer's owner (or the publisher its directory names) and download neighbour, and a
//! getter's owner. [`follow`] keeps a link to whatever endpoint a watch names (the download
//! neighbour or publisher the directory says), and [`connect`] is the handshake every
//! download connection begins with, the source pool's ([`super::sources`]) included.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::bootstrap::{Handshake, RETRY_LOG_EVERY, handshake};
use super::config::SourceKind;
use super::fetch::{self, OwnerDuties};
use super::getter::Getter;
use super::retry::Attempt;
use super::swarm::Swarm;
use crate::chunkset::ChunkSet;
use crate::events::EventKind;
use crate::manifest::display_name;
use crate::net::Backoff;
use crate::net::Endpoint;
use crate::protocol::Role;
use crate::{Error, Result};

/// How long a source that sent [`super::config::MAX_BAD_CHUNKS`] bad chunks is avoided.
pub const BAD_SOURCE_AVOID: Duration = Duration::from_secs(30);

/// How long a session with a download neighbour the directory replaced may take to end.
const FAREWELL_WAIT: Duration = Duration::from_secs(1);

/// Connects to `endpoint` as `role`, saying this peer holds `have`, and checks that the
/// server shares this peer's file.
///
/// # Errors
///
/// As [`handshake`], or the server shares another file.
pub(super) async fn connect(
    swarm: &Swarm,
    endpoint: &Endpoint,
    role: Role,
    have: &ChunkSet,
) -> Result<Handshake> {
    let file = Some(swarm.manifest.name.clone());
    let me = (swarm.port, swarm.node.as_str());
    // The directory is pinned by the ticket, if there is one; other nodes by nothing yet.
    let pin = (*endpoint == swarm.config.owner)
        .then(|| swarm.config.pin.as_ref().and_then(|t| t.node.as_ref()))
        .flatten();
    let link = (&*swarm.config.identity, pin);
    let (hs, m) = handshake(endpoint, role, file, have.to_ranges(), me, link).await?;
    if m.hash == swarm.manifest.hash {
        return Ok(hs);
    }
    Err(Error::Refused(format!(
        "{endpoint} shares another file ({} blake3 {}), not {} blake3 {}",
        display_name(&m.name),
        m.hash.short(),
        display_name(&swarm.manifest.name),
        swarm.manifest.hash.short()
    )))
}

/// Keeps a link of `kind` (the download neighbour or the publisher) to the endpoint its
/// watch on the swarm names, following it when the directory names another, until `token`
/// is cancelled. Once this peer is complete and its download neighbour told so, changes of
/// neighbour are still reported (`neighbour_changed`), not followed.
pub(super) async fn follow(swarm: Arc<Swarm>, kind: SourceKind, token: CancellationToken) {
    let slot = match kind {
        SourceKind::Neighbour => &swarm.neighbour,
        SourceKind::Publisher => &swarm.publisher,
        SourceKind::Owner | SourceKind::Directory => return,
    };
    let mut changes = slot.subscribe();
    let (mut finished, mut first) = (false, true);
    loop {
        let current = changes.borrow_and_update().clone();
        now_following(&swarm, kind, current.as_ref(), &mut first);
        let (sub, follow) = (token.child_token(), !finished);
        let mut run = Box::pin(async {
            match current.clone() {
                Some(endpoint) if follow => {
                    let span = match kind {
                        SourceKind::Neighbour => info_span!("neighbour", addr = %endpoint),
                        _ => info_span!("publisher", addr = %endpoint),
                    };
                    let link = SourceLink::ring(swarm.clone(), kind, endpoint);
                    link.run(None, sub.clone()).instrument(span).await;
                }
                _ => std::future::pending().await,
            }
        });
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
        if kind != SourceKind::Neighbour {
            drop(run);
        } else if follow && current.is_some() {
            let _ = tokio::time::timeout(FAREWELL_WAIT, &mut run).await;
        }
        changed_from(&swarm, kind);
    }
}

/// Says where a followed link of `kind` now goes: the progress line's "from" for the
/// neighbour, a log line for the publisher (`first`: no publisher was gone yet).
fn now_following(swarm: &Swarm, kind: SourceKind, current: Option<&Endpoint>, first: &mut bool) {
    match (kind, current) {
        (SourceKind::Neighbour, Some(e)) => swarm.status.set_via(format!("from {e}")),
        (SourceKind::Neighbour, None) => swarm.status.set_via("alone in the ring".into()),
        (_, Some(e)) => info!("the directory names publisher {e} as this file's owner"),
        (_, None) if !std::mem::take(first) => {
            info!("no publisher of this file is left: going on with what the ring holds");
        }
        (_, None) => {}
    }
}

/// The endpoint of a followed link of `kind` changed: the old one's announcements no longer
/// hold; a new download neighbour is reported.
fn changed_from(swarm: &Swarm, kind: SourceKind) {
    if kind != SourceKind::Neighbour {
        swarm.set_link_error(kind, Some("publisher changed".into()));
        return;
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
    swarm.set_link_error(SourceKind::Neighbour, Some("neighbour changed".into()));
}

/// Which download handler runs a link's sessions.
pub(super) enum LinkHandler {
    /// A ring peer's ([`fetch::ring`]).
    Ring,
    /// A getter's owner session ([`fetch::getter`]): a source like the others, and the getter's
    /// directory registration and window, on which the sources the pool lost (`lost_rx`)
    /// are reported.
    GetterOwner {
        getter: Arc<Getter>,
        lost_rx: mpsc::UnboundedReceiver<String>,
    },
}

/// One source of this peer, across its reconnections.
pub(super) struct SourceLink {
    swarm: Arc<Swarm>,
    kind: SourceKind,
    endpoint: Endpoint,
    handler: LinkHandler,
    retry: Backoff,
    /// When "waiting for" was last logged, while not connected.
    last_log: Option<Instant>,
    /// The last session ended with this peer complete: the source was told so.
    told_complete: bool,
}

impl SourceLink {
    /// A ring peer's link to its source of `kind` at `endpoint`.
    pub(super) fn ring(swarm: Arc<Swarm>, kind: SourceKind, endpoint: Endpoint) -> Self {
        Self::new(swarm, kind, endpoint, LinkHandler::Ring)
    }

    /// A getter's link to its owner; it reports the sources lost on `lost_rx`.
    pub(super) fn getter_owner(
        getter: Arc<Getter>,
        lost_rx: mpsc::UnboundedReceiver<String>,
    ) -> Self {
        let (swarm, endpoint) = (getter.swarm.clone(), getter.swarm.config.owner.clone());
        let handler = LinkHandler::GetterOwner { getter, lost_rx };
        Self::new(swarm, SourceKind::Owner, endpoint, handler)
    }

    fn new(swarm: Arc<Swarm>, kind: SourceKind, endpoint: Endpoint, handler: LinkHandler) -> Self {
        Self {
            swarm,
            kind,
            endpoint,
            handler,
            retry: Backoff::default(),
            last_log: None,
            told_complete: false,
        }
    }

    /// Keeps the link until this peer is done with the source or `token` is cancelled: on
    /// `first` if given (the bootstrap connection), then on new connections, reconnecting
    /// after [`Backoff`]'s wait unless the last session made progress.
    pub(super) async fn run(mut self, mut first: Option<Handshake>, token: CancellationToken) {
        while !token.is_cancelled() && !self.finished() {
            let connected = match first.take() {
                // The bootstrap hello said nothing of what this peer holds (the manifest was
                // not known yet): announce everything on it.
                Some(hs) => Ok((hs, ChunkSet::new(self.swarm.manifest.chunk_count()))),
                None => {
                    let have = self.swarm.have_snapshot();
                    let role = self.role();
                    tokio::select! {
                        biased;
                        () = token.cancelled() => return,
                        r = connect(&self.swarm, &self.endpoint, role, &have) => r.map(|hs| (hs, have)),
                    }
                }
            };
            let progressed = match connected {
                Ok((hs, told)) => match self.session(hs, told, &token).await {
                    Some(p) => p,
                    None => return,
                },
                Err(e) => {
                    self.connect_failed(&e);
                    false
                }
            };
            if !progressed
                && !self.finished()
                && !sleep_unless_cancelled(&token, self.retry.next_delay()).await
            {
                return;
            }
        }
    }

    /// A complete peer still tells its download neighbour once that it is complete, so the
    /// neighbour knows its upload neighbour needs nothing more. The owner connection is also
    /// this peer's directory registration: it lives as long as the peer, and is made again
    /// (with the full have list) when the owner restarts.
    fn finished(&self) -> bool {
        self.kind == SourceKind::Neighbour && self.told_complete && self.swarm.is_complete()
    }

    /// The role said in `hello`: a getter's; a ring peer's to its neighbour; else a ring
    /// peer's to an owner (a publisher is met as one; a directory, too, until its welcome).
    fn role(&self) -> Role {
        match (&self.handler, self.kind) {
            (LinkHandler::GetterOwner { .. }, _) => Role::Getter,
            (LinkHandler::Ring, SourceKind::Neighbour) => Role::Neighbour,
            (LinkHandler::Ring, _) => Role::Peer,
        }
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

    /// Runs one session on a connection whose hello told the source `told`; whether it made
    /// progress, or `None` if cancelled while avoiding a source that sent bad chunks.
    async fn session(
        &mut self,
        hs: Handshake,
        told: ChunkSet,
        token: &CancellationToken,
    ) -> Option<bool> {
        // A ring peer's owner that holds none of the file is only its directory; a tracker
        // names the publisher that serves the chunks instead.
        let kind = match (&self.handler, self.kind) {
            (LinkHandler::Ring, SourceKind::Owner) if hs.empty => SourceKind::Directory,
            (_, k) => k,
        };
        let swarm = self.swarm.clone();
        if kind.places_in_ring() {
            // A joiner's place in the ring, as the owner gave it (again, after a reconnect),
            // and who serves its chunks.
            swarm.set_neighbour(hs.neighbour.as_deref());
            swarm.set_publisher(hs.publisher.as_deref());
        }
        self.last_log = None;
        swarm.set_link_error(kind, None);
        info!("connected to {}", self.endpoint);
        let attempt = Attempt::start(swarm.fetched());
        let res = self.drive(kind, hs, told, token).await;
        let progressed = self.retry.after(attempt.progressed(swarm.fetched()));
        self.ended(kind, res, token).await.then_some(progressed)
    }

    /// One session with the link's handler.
    async fn drive(
        &mut self,
        kind: SourceKind,
        hs: Handshake,
        told: ChunkSet,
        token: &CancellationToken,
    ) -> Result<()> {
        match &mut self.handler {
            LinkHandler::Ring => fetch::ring(&self.swarm, kind, hs, told, token).await,
            LinkHandler::GetterOwner { getter, lost_rx } => {
                let count = self.swarm.manifest.chunk_count();
                let label = self.endpoint.to_string();
                if hs.plain {
                    // A plain peer (found in the DHT): a source like the others, no directory
                    // to ask; what it holds comes in its `have` lists.
                    getter.no_directory();
                    let theirs = ChunkSet::new(count);
                    return fetch::getter(getter, hs, &label, theirs, None, token).await;
                }
                // The owner holds every chunk, unless it only lists a published file.
                let all = if hs.empty {
                    ChunkSet::new(count)
                } else {
                    ChunkSet::full(count)
                };
                let owner = OwnerDuties {
                    lost_rx: Some(lost_rx),
                    registered: told,
                };
                fetch::getter(getter, hs, &label, all, Some(owner), token).await
            }
        }
    }

    /// Books how a session with a source of `kind` ended; false if cancelled while avoiding
    /// a source that sent bad chunks.
    async fn ended(
        &mut self,
        kind: SourceKind,
        res: Result<()>,
        token: &CancellationToken,
    ) -> bool {
        let (swarm, endpoint) = (&self.swarm, &self.endpoint);
        let reason = match &res {
            Ok(()) => "disconnected".to_string(),
            Err(e) => format!("disconnected: {e}"),
        };
        swarm.set_link_error(kind, Some(reason));
        match res {
            Ok(()) => {
                self.told_complete = swarm.is_complete();
                if self.told_complete && kind == SourceKind::Neighbour {
                    swarm.told_neighbour_complete();
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
                return sleep_unless_cancelled(token, BAD_SOURCE_AVOID).await;
            }
            Err(e) => warn!("connection to {endpoint} ended: {e}"),
        }
        true
    }
}

/// Sleeps for `d`; false if `token` was cancelled first.
async fn sleep_unless_cancelled(token: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        biased;
        () = token.cancelled() => false,
        () = tokio::time::sleep(d) => true,
    }
}
