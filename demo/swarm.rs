//! The swarm of a demo run: the owner and N peers on loopback TCP or on a simulated network,
//! started, awaited and measured.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use ringswarm::cli::human_size;
use ringswarm::events::{Clock, Event, EventLog, EventSink};
use ringswarm::net::{Endpoint, Listener, MemNet};
use ringswarm::owner::{self, SharedFile};
use ringswarm::peer::{self, Completion};
use ringswarm::report::Summary;
use ringswarm::storage::InMemory;
use ringswarm::store::Layout;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::Args;
use crate::meter::{self, Tally};

/// A finished run.
pub struct Done {
    pub summary: Summary,
}

/// Where the nodes run, and what the owner shares.
struct World {
    /// `Some`: a simulation on this in-memory network.
    net: Option<Arc<MemNet>>,
    shared: Arc<SharedFile>,
    /// A simulation's file, which every in-memory peer serves from.
    content: Option<Bytes>,
    /// The events' clock: virtual time from 0 in a simulation, else the wall clock.
    clock: Option<Clock>,
}

/// Runs the owner and `args.peers` peers until every peer completes. `None`: interrupted.
///
/// # Errors
///
/// The file cannot be made or shared, a listener cannot be bound, or a peer failed.
pub async fn run(
    args: &Args,
    work: &Path,
    log: Option<&EventLog>,
    token: &CancellationToken,
) -> anyhow::Result<Option<Done>> {
    let world = world(args, work).await?;
    let manifest = world.shared.manifest.clone();
    let owner_listener = listen(world.net.as_ref())?;
    let owner_label = format!("127.0.0.1:{}", owner_listener.local_addr()?.port());
    let listeners = (0..args.peers)
        .map(|_| listen(world.net.as_ref()))
        .collect::<std::io::Result<Vec<_>>>()?;
    let labels = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.to_string()))
        .collect::<std::io::Result<Vec<_>>>()?;
    let tally = Arc::new(Tally::new(owner_label.clone(), labels.len()));
    let owner_rate = args.owner_rate.or(args.rate);
    println!(
        "demo: {} ({}, {} chunks of {}), owner + {} peers {}, caps: peers {}, owner {}",
        ringswarm::manifest::display_name(&manifest.name),
        human_size(manifest.size),
        manifest.chunk_count(),
        human_size(manifest.chunk_size),
        labels.len(),
        if args.sim {
            "simulated in virtual time"
        } else {
            "on 127.0.0.1"
        },
        crate::rate_text(args.rate),
        crate::rate_text(owner_rate),
    );
    let started_ts = if args.sim { 0.0 } else { crate::unix_now() };
    let t0 = Instant::now();
    let stop = token.child_token();
    let (owner_endpoint, owner_task) = start_owner(args, &world, owner_listener, log, &stop)?;
    let nodes = Nodes {
        args,
        world: &world,
        work,
        log,
        owner: owner_endpoint,
        labels: &labels,
        tally: &tally,
        t0,
    };
    let peer_tasks = nodes.start_peers(listeners, &stop);
    let progress = (!args.no_progress && !args.sim).then(|| {
        let done = CancellationToken::new();
        let task = tokio::spawn(crate::progress::show_progress(
            tally.clone(),
            manifest.chunk_count(),
            t0,
            done.clone(),
        ));
        (task, done)
    });
    let failures = wait_peers(peer_tasks, &labels).await?;
    let wall = t0.elapsed().as_secs_f64();
    stop.cancel();
    owner_task.await??;
    if let Some((task, done)) = progress {
        done.cancel();
        let _ = task.await;
    }
    if token.is_cancelled() {
        return Ok(None);
    }
    if !failures.is_empty() {
        anyhow::bail!("{}", failures.join("; "));
    }
    let run = meter::Run {
        manifest: &manifest,
        labels: &labels,
        rate: args.rate,
        owner_rate,
        seed: args.seed,
        started_ts,
        wall,
    };
    Ok(Some(Done {
        summary: meter::meter(&run, &tally),
    }))
}

/// The network, the shared file and the clock of a run.
async fn world(args: &Args, work: &Path) -> anyhow::Result<World> {
    let (chunk_size, peers) = (args.chunk_size, u32::from(args.peers));
    if args.sim {
        let (name, content) = match &args.file {
            Some(p) => (
                p.file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("file")
                    .to_string(),
                Bytes::from(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?),
            ),
            None => {
                let size = usize::try_from(args.size).context("--size is too large for memory")?;
                let data = ringswarm::sim::synthesize(size, args.seed.unwrap_or(0));
                ("demo.bin".to_string(), data)
            }
        };
        let shared = SharedFile::from_memory(&name, content.clone(), chunk_size, peers)?;
        return Ok(World {
            net: Some(MemNet::new()),
            shared: Arc::new(shared),
            content: Some(content),
            clock: Some(ringswarm::events::tokio_clock(0.0)),
        });
    }
    let path = match &args.file {
        Some(p) => p.clone(),
        None => {
            let p = work.join("demo.bin");
            let (size, seed, p2) = (args.size, args.seed, p.clone());
            tokio::task::spawn_blocking(move || crate::generate(&p2, size, seed)).await??;
            p
        }
    };
    let p2: PathBuf = path.clone();
    let shared = tokio::task::spawn_blocking(move || SharedFile::open(&p2, chunk_size, peers))
        .await?
        .with_context(|| format!("cannot share {}", path.display()))?;
    Ok(World {
        net: None,
        shared: Arc::new(shared),
        content: None,
        clock: None,
    })
}

/// A listener on 127.0.0.1, port 0: on `net`, or on TCP.
fn listen(net: Option<&Arc<MemNet>>) -> std::io::Result<Listener> {
    match net {
        Some(net) => net.listen(0),
        None => Ok(ringswarm::net::listen(([127, 0, 0, 1], 0).into())?.into()),
    }
}

/// A quiet sink for node `label`: to the report's log, stamped by the world's clock.
fn sink(world: &World, label: String, log: Option<&EventLog>) -> EventSink {
    let mut events = EventSink::console(label).quiet();
    if let Some(log) = log {
        events = events.log(log.clone());
    }
    if let Some(clock) = &world.clock {
        events = events.clock(clock.clone());
    }
    events
}

type OwnerTask = JoinHandle<ringswarm::Result<()>>;

fn start_owner(
    args: &Args,
    world: &World,
    listener: Listener,
    log: Option<&EventLog>,
    stop: &CancellationToken,
) -> anyhow::Result<(Endpoint, OwnerTask)> {
    let addr = listener.local_addr()?;
    let config = owner::Config {
        peers: u32::from(args.peers),
        upload_limit: args
            .owner_rate
            .or(args.rate)
            .map(|r| Arc::new(ringswarm::rate::RateLimiter::new(r, args.chunk_size))),
        seed: sim_seed(args),
        ..owner::Config::new(Arc::new(sink(world, "owner".into(), log)))
    };
    let files = vec![world.shared.clone()];
    let directory = owner::directory(&files, addr, ringswarm::directory::DEFAULT_PEER_TTL);
    let task = tokio::spawn(owner::run(listener, files, directory, config, stop.clone()));
    Ok((Endpoint::on(world.net.as_ref(), addr), task))
}

/// The seed of a run: a simulation always has one (0 unless given).
fn sim_seed(args: &Args) -> Option<u64> {
    args.seed.or(args.sim.then_some(0))
}

/// What starting the peers needs.
struct Nodes<'a> {
    args: &'a Args,
    world: &'a World,
    work: &'a Path,
    log: Option<&'a EventLog>,
    owner: Endpoint,
    labels: &'a [String],
    tally: &'a Arc<Tally>,
    t0: Instant,
}

impl Nodes<'_> {
    fn start_peers(
        &self,
        listeners: Vec<Listener>,
        stop: &CancellationToken,
    ) -> Vec<JoinHandle<ringswarm::Result<peer::Outcome>>> {
        let n = listeners.len();
        let addrs: Vec<_> = listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect();
        listeners
            .into_iter()
            .enumerate()
            .map(|(i, listener)| {
                let next = Endpoint::on(self.world.net.as_ref(), addrs[(i + 1) % n]);
                let config = self.peer_config(i, next);
                let span = tracing::info_span!(parent: None, "peer", port = addrs[i].port());
                tokio::spawn(peer::run(listener, config, stop.clone()).instrument(span))
            })
            .collect()
    }

    fn peer_config(&self, i: usize, neighbour: Endpoint) -> peer::Config {
        let (args, label) = (self.args, &self.labels[i]);
        let t = self.tally.clone();
        let events = sink(self.world, label.clone(), self.log)
            .observe(Arc::new(move |ev: &Event| t.observe(i, ev)));
        let (tx, rx) = tokio::sync::oneshot::channel::<Completion>();
        let (t, t0) = (self.tally.clone(), self.t0);
        tokio::spawn(async move {
            if rx.await.is_ok() {
                t.completed(i, t0.elapsed().as_secs_f64());
            }
        });
        let port = label.rsplit_once(':').map_or("", |(_, p)| p);
        peer::Config {
            owner: self.owner.clone(),
            neighbour,
            get: None,
            upload_slots: ringswarm::choke::DEFAULT_UPLOAD_SLOTS,
            secret: None,
            sync: false,
            dir: self.work.join(format!("peer-{port}")),
            file: None,
            layout: if args.chunk_files {
                Layout::ChunkFiles
            } else {
                Layout::PartFile
            },
            in_memory: self.world.content.clone().map(InMemory::Known),
            linger: None,
            timeout: Duration::from_secs(120),
            in_flight: args.in_flight.max(1),
            events: Arc::new(events),
            corrupt_sends: 0,
            upload_limit: args.rate,
            seed: sim_seed(args).map(|s| s.wrapping_add(i as u64 + 1)),
            on_complete: Some(tx),
        }
    }
}

/// Waits for every peer; the failures, one line each.
async fn wait_peers(
    tasks: Vec<JoinHandle<ringswarm::Result<peer::Outcome>>>,
    labels: &[String],
) -> anyhow::Result<Vec<String>> {
    let mut failures = Vec::new();
    for (task, label) in tasks.into_iter().zip(labels) {
        match task.await? {
            Ok(peer::Outcome::Complete(_)) => {}
            Ok(peer::Outcome::Interrupted) => failures.push(format!("peer {label} interrupted")),
            Err(e) => failures.push(format!("peer {label}: {e:#}")),
        }
    }
    Ok(failures)
}
