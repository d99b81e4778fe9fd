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

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use rand::{Rng, SeedableRng};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::download::{
    AnswerClock, Handshake, STABLE_SESSION, announce, handshake, is_bad_chunk, set_error,
};
use super::{GetConfig, MAX_BAD_CHUNKS, SourceKind, Swarm};
use crate::chunkset::{ChunkSet, Ranges, set_bits};
use crate::connection::{ConnWriter, IDLE_TIMEOUT};
use crate::directory::Locations;
use crate::events::EventKind;
use crate::manifest::ChunkId;
use crate::net::Backoff;
use crate::protocol::{Message, ProtocolError, Role};
use crate::{Error, Result};

/// How often a getter asks the directory where chunks are, while it lacks some.
pub const LOCATE_EVERY: Duration = Duration::from_secs(1);
/// How long a failed source is avoided at first (doubling on each failure).
pub const SOURCE_RETRY: Duration = Duration::from_secs(5);
/// The longest a failed source is avoided.
pub const SOURCE_RETRY_MAX: Duration = Duration::from_secs(60);
/// How long a ring peer's download neighbour may stay unreachable before the peer fetches
/// from other sources (see [`fallback`]).
pub const NEIGHBOUR_DOWN_LIMIT: Duration = Duration::from_secs(5);
/// Other sources a ring peer uses while its neighbour is down.
pub const FALLBACK_SOURCES: usize = 2;

#[derive(Debug)]
struct Source {
    chunks: ChunkSet,
    active: bool,
    failures: u32,
    retry_at: Option<Instant>,
}

#[derive(Debug)]
struct Shared {
    /// Peer sources by `IP:PORT` (the owner is not here: its connection is always kept).
    sources: HashMap<String, Source>,
    /// Per chunk: how many sources hold it, the owner included.
    avail: Vec<u16>,
    /// Per chunk: on how many connections it is requested and not yet received.
    requested: HashMap<u32, u16>,
    /// A first `locations` answer arrived.
    located: bool,
}

/// The getter's state, shared by its connections.
struct Getter {
    swarm: Arc<Swarm>,
    shared: Mutex<Shared>,
    /// Sources to report to the directory as lost.
    lost_tx: mpsc::UnboundedSender<String>,
    /// The owner's own `IP:PORT` as the directory names it, so it is not connected twice.
    owner_addr: Mutex<Option<String>>,
    /// Signalled when the directory's answer changed the source list.
    sources_changed: Notify,
}

impl Getter {
    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes in a `locations` answer: sources and availability.
    fn located(&self, loc: Locations) {
        let m = &self.swarm.manifest;
        let count = m.chunk_count() as usize;
        let mut avail = vec![0u16; count];
        let mut seen = HashSet::new();
        let own = format!(":{}", self.swarm.port);
        let mut sh = self.shared();
        for s in loc.sources {
            let Ok(set) = ChunkSet::try_from_ranges(m, &s.chunks) else {
                continue;
            };
            for c in set.indices() {
                avail[c as usize] = avail[c as usize].saturating_add(1);
            }
            if s.owner {
                *self.owner_addr.lock().unwrap_or_else(|p| p.into_inner()) = Some(s.addr);
                continue;
            }
            // Not this getter itself: its node id, or (a directory that does not return
            // ids) the same port on a loopback or unspecified address.
            if s.node.as_deref() == Some(self.swarm.node.as_str()) {
                continue;
            }
            if s.node.is_none()
                && s.addr.ends_with(&own)
                && s.addr
                    .parse::<std::net::SocketAddr>()
                    .is_ok_and(|a| a.ip().is_loopback() || a.ip().is_unspecified())
            {
                continue;
            }
            seen.insert(s.addr.clone());
            sh.sources
                .entry(s.addr)
                .and_modify(|x| x.chunks = set.clone())
                .or_insert(Source {
                    chunks: set,
                    active: false,
                    failures: 0,
                    retry_at: None,
                });
        }
        // Sources gone from the directory are forgotten unless a connection still uses them.
        sh.sources.retain(|a, s| s.active || seen.contains(a));
        sh.avail = avail;
        sh.located = true;
        drop(sh);
        self.sources_changed.notify_one();
    }

    /// Picks the next chunk to request from a source holding `theirs`, with `mine` already
    /// requested on this connection: rarest first, then end-game duplicates.
    fn pick(&self, theirs: &ChunkSet, mine: &HashSet<u32>, rng: &mut impl Rng) -> Option<ChunkId> {
        let have = self.swarm.have_snapshot();
        let mut sh = self.shared();
        if !sh.located {
            return None;
        }
        let (hw, tw) = (have.words(), theirs.words());
        let mut best: Option<(u16, u32)> = None;
        let mut ties = 0u32;
        let mut any_unrequested = false;
        let lacking = || set_bits(hw.iter().zip(tw).map(|(&h, &t)| t & !h));
        for c in lacking() {
            if sh.requested.contains_key(&c) {
                continue;
            }
            any_unrequested = true;
            let a = sh.avail.get(c as usize).copied().unwrap_or(0);
            match best {
                Some((b, _)) if a > b => {}
                Some((b, _)) if a == b => {
                    // Reservoir sampling: each of the tied chunks equally likely.
                    ties += 1;
                    if rng.random_range(0..ties) == 0 {
                        best = Some((a, c));
                    }
                }
                _ => {
                    best = Some((a, c));
                    ties = 1;
                }
            }
        }
        let chosen = match best {
            Some((_, c)) => Some(c),
            None if !any_unrequested && !self.anything_unrequested(&have, &sh) => {
                // End-game: a chunk this source holds that is requested elsewhere, the least
                // requested first.
                lacking()
                    .filter(|c| !mine.contains(c))
                    .min_by_key(|c| sh.requested.get(c).copied().unwrap_or(0))
            }
            None => None,
        };
        let c = chosen?;
        *sh.requested.entry(c).or_insert(0) += 1;
        self.swarm.manifest.chunk_id(c).ok()
    }

    /// Whether some missing chunk is requested nowhere (then it is not end-game yet).
    fn anything_unrequested(&self, have: &ChunkSet, sh: &Shared) -> bool {
        let count = self.swarm.manifest.chunk_count();
        (0..count).any(|c| {
            let word = have.words()[(c / 64) as usize];
            word & (1 << (c % 64)) == 0 && !sh.requested.contains_key(&c)
        })
    }

    /// A request on one connection ended (received, cancelled, or the connection closed).
    fn release(&self, c: u32) {
        let mut sh = self.shared();
        if let Some(n) = sh.requested.get_mut(&c) {
            *n -= 1;
            if *n == 0 {
                sh.requested.remove(&c);
            }
        }
    }
}

/// A getter's state with no sources known yet; lost sources are reported on `lost_tx`.
fn new_getter(swarm: &Arc<Swarm>, lost_tx: mpsc::UnboundedSender<String>) -> Arc<Getter> {
    Arc::new(Getter {
        shared: Mutex::new(Shared {
            sources: HashMap::new(),
            avail: vec![0; swarm.manifest.chunk_count() as usize],
            requested: HashMap::new(),
            located: false,
        }),
        swarm: swarm.clone(),
        lost_tx,
        owner_addr: Mutex::new(None),
        sources_changed: Notify::new(),
    })
}

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
async fn drive_sources(
    getter: &Arc<Getter>,
    max: usize,
    token: &CancellationToken,
    mut tick: impl FnMut(),
) {
    let swarm = &getter.swarm;
    let mut conns: JoinSet<(String, Result<()>)> = JoinSet::new();
    let mut rng = match swarm.config.seed {
        Some(seed) => rand::rngs::StdRng::seed_from_u64(seed),
        None => rand::rngs::StdRng::from_os_rng(),
    };
    let mut changed = swarm.changed.subscribe();
    while !token.is_cancelled() && !swarm.is_complete() {
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

/// A ring peer's fall-back: once its download neighbour has been unreachable for
/// [`NEIGHBOUR_DOWN_LIMIT`], it fetches from up to [`FALLBACK_SOURCES`] other sources the
/// directory lists (those holding most of what it lacks first), until the neighbour is back
/// or the file is complete; the owner stays its last resort, as always. Runs until `token`
/// is cancelled.
pub(super) async fn fallback(swarm: Arc<Swarm>, token: CancellationToken) {
    let mut changed = swarm.changed.subscribe();
    loop {
        // Wait for a neighbour down past the limit.
        loop {
            if token.is_cancelled() || swarm.is_complete() {
                return;
            }
            let down = swarm.state().neighbour_down_since;
            if down.is_some_and(|t| t.elapsed() >= NEIGHBOUR_DOWN_LIMIT) {
                break;
            }
            tokio::select! {
                biased;
                () = token.cancelled() => return,
                _ = changed.changed() => {}
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
        info!(
            "download neighbour {} unreachable for {}s; fetching from other sources the directory lists",
            swarm.config.neighbour,
            NEIGHBOUR_DOWN_LIMIT.as_secs()
        );
        let sub = token.child_token();
        let (lost_tx, _) = mpsc::unbounded_channel();
        let getter = new_getter(&swarm, lost_tx);
        let watcher = {
            let (swarm, sub) = (swarm.clone(), sub.clone());
            tokio::spawn(async move {
                let mut changed = swarm.changed.subscribe();
                while swarm.state().neighbour_down_since.is_some() && !sub.is_cancelled() {
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
        };
        locate_once(&getter).await;
        // Ask again every LOCATE_EVERY, one question at a time, without holding up the
        // connections.
        let g2 = getter.clone();
        let mut asking: Option<tokio::task::JoinHandle<()>> = None;
        drive_sources(&getter, FALLBACK_SOURCES, &sub, move || {
            if asking
                .as_ref()
                .is_none_or(tokio::task::JoinHandle::is_finished)
            {
                let g = g2.clone();
                asking = Some(tokio::spawn(async move { locate_once(&g).await }));
            }
        })
        .await;
        sub.cancel();
        let _ = watcher.await;
    }
}

/// Asks the directory once where the chunks are, by a query connection (the ring peer's
/// owner connection is its registration, not a getter's), and takes in the answer without
/// the dead neighbour.
async fn locate_once(getter: &Getter) {
    let swarm = &getter.swarm;
    let query = Message::Locate {
        file: swarm.manifest.name.clone(),
    };
    let secret = swarm.config.secret.as_deref();
    match crate::query::ask(&swarm.config.owner, query, secret).await {
        Ok(body) => match serde_json::from_slice::<Locations>(&body) {
            Ok(mut loc) => {
                let dead = swarm.config.neighbour.to_string();
                loc.sources.retain(|s| s.addr != dead);
                getter.located(loc);
            }
            Err(e) => warn!("bad locate answer from the owner: {e}"),
        },
        Err(e) => debug!("cannot ask the directory: {e}"),
    }
}

/// The best `want` sources to connect to now: most chunks this getter lacks first.
fn choose_sources(getter: &Getter, want: usize, rng: &mut impl Rng) -> Vec<String> {
    if want == 0 {
        return Vec::new();
    }
    let have = getter.swarm.have_snapshot();
    let now = Instant::now();
    let mut sh = getter.shared();
    let mut ranked: Vec<(u32, u32, String)> = sh
        .sources
        .iter()
        .filter(|(_, s)| !s.active && s.retry_at.is_none_or(|t| now >= t))
        .map(|(a, s)| {
            (
                u32::try_from(s.chunks.difference(&have).len()).unwrap_or(u32::MAX),
                rng.random(),
                a.clone(),
            )
        })
        .filter(|(useful, _, _)| *useful > 0)
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let picked: Vec<String> = ranked.into_iter().take(want).map(|(_, _, a)| a).collect();
    for a in &picked {
        if let Some(s) = sh.sources.get_mut(a) {
            s.active = true;
        }
    }
    picked
}

/// Books the end of a source connection: a failure is reported and the source avoided.
fn source_ended(getter: &Getter, addr: &str, res: Result<()>) {
    let incomplete = !getter.swarm.is_complete();
    let mut sh = getter.shared();
    let Some(s) = sh.sources.get_mut(addr) else {
        return;
    };
    s.active = false;
    match res {
        Ok(()) if !incomplete => {}
        other => {
            let why = match other {
                Err(e) => e.to_string(),
                Ok(()) => "closed the connection".into(),
            };
            s.failures += 1;
            let wait = SOURCE_RETRY
                .saturating_mul(1 << (s.failures - 1).min(4))
                .min(SOURCE_RETRY_MAX);
            s.retry_at = Some(Instant::now() + wait);
            drop(sh);
            warn!(
                "source {addr} lost ({why}); avoiding it for {}s",
                wait.as_secs()
            );
            getter.swarm.events.swarm(EventKind::SourceLost, addr, &why);
            let _ = getter.lost_tx.send(addr.to_string());
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
    session(getter, hs, addr, theirs, None, token).await
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
                set_error(&swarm, SourceKind::Owner, None);
                let all = ChunkSet::full(swarm.manifest.chunk_count());
                let owner = OwnerDuties {
                    lost_rx: &mut lost_rx,
                    registered: told,
                };
                // As for a ring peer: the backoff starts again only after real progress.
                let (fetched, since) = (swarm.state().fetched, Instant::now());
                let res = session(&getter, hs, &label, all, Some(owner), &token).await;
                if swarm.state().fetched > fetched || since.elapsed() >= STABLE_SESSION {
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
                set_error(&swarm, SourceKind::Owner, Some(e.to_string()));
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

/// Per-connection flags and requests (see [`crate::choke`] for the four flags).
struct Link<'a> {
    getter: &'a Getter,
    label: &'a str,
    theirs: ChunkSet,
    am_interested: bool,
    peer_choking: bool,
    in_flight: HashSet<u32>,
}

impl Drop for Link<'_> {
    fn drop(&mut self) {
        for c in self.in_flight.drain() {
            self.getter.release(c);
        }
    }
}

/// What only the owner connection does: report lost sources, register chunks.
struct OwnerDuties<'a> {
    lost_rx: &'a mut mpsc::UnboundedReceiver<String>,
    /// The chunks the owner has been told of.
    registered: ChunkSet,
}

/// Talks to one source (the owner when `owner` is given) until this getter is complete
/// (the owner: until `token` is cancelled).
async fn session(
    getter: &Getter,
    hs: Handshake,
    label: &str,
    theirs: ChunkSet,
    owner: Option<OwnerDuties<'_>>,
    token: &CancellationToken,
) -> Result<()> {
    let swarm = &getter.swarm;
    let is_owner = owner.is_some();
    let (mut lost_rx, mut registered) = match owner {
        Some(o) => (Some(o.lost_rx), o.registered),
        None => (None, ChunkSet::new(swarm.manifest.chunk_count())),
    };
    let heartbeat = hs.heartbeat;
    let (mut reader, mut writer) = hs.conn.split();
    let mut link = Link {
        getter,
        label,
        theirs,
        am_interested: false,
        peer_choking: true,
        in_flight: HashSet::new(),
    };
    let mut changed = swarm.changed.subscribe();
    let mut rng = match swarm.config.seed {
        Some(seed) => rand::rngs::StdRng::seed_from_u64(seed ^ u64::from(swarm.port)),
        None => rand::rngs::StdRng::from_os_rng(),
    };
    let mut next_locate = tokio::time::Instant::now();
    let mut bad = 0u32;
    let mut clock = AnswerClock::new(swarm.manifest.chunk_size);
    loop {
        if is_owner {
            register(swarm, &mut writer, label, &mut registered).await?;
        }
        step(&mut link, &mut writer, &mut rng).await?;
        if swarm.is_complete() && !is_owner {
            writer.close().await;
            return Ok(());
        }
        clock.waiting(!link.in_flight.is_empty() && !link.peer_choking);
        let locate_due = is_owner && !swarm.is_complete();
        tokio::select! {
            biased;
            () = token.cancelled() => return Ok(()),
            () = clock.expired() => {
                // Announced chunks that never come are not held hostage: the source is
                // dropped (and avoided), its requests go elsewhere.
                return Err(Error::Refused(format!(
                    "{label} answered none of {} requests for {}s",
                    link.in_flight.len(),
                    clock.deadline().as_secs()
                )));
            }
            msg = reader.recv("waiting for chunks", IDLE_TIMEOUT) => {
                let Some(msg) = msg? else {
                    return if is_owner || swarm.is_complete() {
                        Ok(())
                    } else {
                        Err(Error::Refused("the source closed the connection".into()))
                    };
                };
                if matches!(msg, Message::Chunk { .. } | Message::Unchoke) {
                    clock.answered();
                }
                if handle(&mut link, msg, &mut bad).await? {
                    continue;
                }
            }
            _ = changed.changed() => {}
            Some(addr) = async { lost_rx.as_mut().expect("guarded").recv().await }, if lost_rx.is_some() => {
                writer.send(Message::SourceLost { addr }).await?;
            }
            () = tokio::time::sleep_until(next_locate), if locate_due => {
                let file = swarm.manifest.name.clone();
                writer.send(Message::Locate { file }).await?;
                next_locate = tokio::time::Instant::now() + LOCATE_EVERY;
            }
            () = tokio::time::sleep(heartbeat), if is_owner => {
                writer.send(Message::Have { chunks: Ranges::default() }).await?;
            }
        }
    }
}

/// Takes in one message; returns Ok(true) when nothing else is to be done for it.
async fn handle(link: &mut Link<'_>, msg: Message, bad: &mut u32) -> Result<bool> {
    let getter = link.getter;
    let swarm = &getter.swarm;
    let m = &swarm.manifest;
    match msg {
        Message::Have { chunks } if chunks.is_empty() => {} // keep-alive
        Message::Have { chunks } => {
            let added = link.theirs.extend_from_ranges(m, &chunks)?;
            let n = u32::try_from(added.len()).unwrap_or(u32::MAX);
            swarm
                .events
                .id_list(EventKind::IdListReceived, n, link.label);
        }
        Message::Choke => {
            // The source drops what it had queued; ask again once unchoked (or elsewhere).
            link.peer_choking = true;
            for c in link.in_flight.drain() {
                getter.release(c);
            }
            swarm.notify();
        }
        Message::Unchoke => link.peer_choking = false,
        Message::Chunk { chunk, data, .. } => {
            let id = m.chunk_id(chunk)?;
            if link.in_flight.remove(&chunk) {
                getter.release(chunk);
            }
            if swarm.holds(id) {
                return Ok(true); // the end-game's losing copy
            }
            let bytes = data.len() as u64;
            match swarm.accept_chunk(id, data).await {
                Ok(()) => {
                    swarm
                        .events
                        .chunk(EventKind::ChunkReceived, chunk, link.label, Some(bytes))
                }
                Err(Error::Store(e)) if is_bad_chunk(&e) => {
                    *bad += 1;
                    warn!(from = %link.label, "refused chunk {chunk}: {e}; fetching it again");
                    if *bad >= MAX_BAD_CHUNKS {
                        return Err(Error::BadChunks(format!(
                            "{bad} bad chunks from {}; disconnecting",
                            link.label
                        )));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Message::Locations { body, .. } => {
            let loc: Locations = serde_json::from_slice(&body)
                .map_err(|e| ProtocolError::MalformedHeader(format!("locations: {e}")))?;
            getter.located(loc);
        }
        Message::Orphans { .. } => {} // for ring peers
        other => {
            return Err(ProtocolError::Unexpected {
                got: other.kind(),
                doing: "downloading",
            }
            .into());
        }
    }
    Ok(false)
}

/// Cancels requests for chunks now held, updates interest, and fills the request pipeline.
async fn step(link: &mut Link<'_>, writer: &mut ConnWriter, rng: &mut impl Rng) -> Result<()> {
    let getter = link.getter;
    let swarm = &getter.swarm;
    let have = swarm.have_snapshot();
    let done: Vec<u32> = link
        .in_flight
        .iter()
        .copied()
        .filter(|&c| m_contains(&have, c))
        .collect();
    for c in done {
        link.in_flight.remove(&c);
        getter.release(c);
        writer.send(Message::Cancel { chunk: c }).await?;
    }
    let wanted = link
        .theirs
        .words()
        .iter()
        .zip(have.words())
        .any(|(&t, &h)| t & !h != 0);
    if wanted != link.am_interested {
        link.am_interested = wanted;
        let (msg, kind) = if wanted {
            (Message::Interested, EventKind::Interested)
        } else {
            (Message::NotInterested, EventKind::NotInterested)
        };
        writer.send(msg).await?;
        swarm.events.swarm(kind, link.label, "");
    }
    if !link.am_interested || link.peer_choking {
        return Ok(());
    }
    while link.in_flight.len() < swarm.config.in_flight {
        let Some(id) = getter.pick(&link.theirs, &link.in_flight, rng) else {
            break;
        };
        link.in_flight.insert(id.get());
        swarm
            .events
            .chunk(EventKind::ChunkRequested, id.get(), link.label, None);
        writer.send(Message::request(id.get())).await?;
    }
    Ok(())
}

fn m_contains(set: &ChunkSet, c: u32) -> bool {
    set.words()
        .get((c / 64) as usize)
        .is_some_and(|w| w & (1 << (c % 64)) != 0)
}

/// Registers the chunks gained since `registered` with the directory (`have` to the owner).
async fn register(
    swarm: &Swarm,
    writer: &mut ConnWriter,
    label: &str,
    registered: &mut ChunkSet,
) -> Result<()> {
    let before = registered.clone();
    announce(swarm, writer, label, registered).await?;
    let new = registered.difference(&before);
    if let Some(&first) = new.first() {
        let n = u32::try_from(new.len()).unwrap_or(u32::MAX);
        swarm.events.registered(first, n, label);
    }
    Ok(())
}
