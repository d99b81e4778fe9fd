//! The swarm of a demo run: the owner and N peers on loopback TCP or on a simulated network,
//! started, awaited and measured.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use ringswarm::cli::human_size;
use ringswarm::events::{Clock, Event, EventLog, EventSink};
use ringswarm::net::{Endpoint, LinkModel, Listener, MemNet};
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
use crate::dht::{Finish, SimDht};
use crate::faults::{self, Fate};
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

/// Runs the owner and `args.peers` peers until every peer completes (but those that leave).
/// `None`: interrupted.
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
    let owner_port = owner_listener.local_addr()?.port();
    let listeners = (0..args.peers)
        .map(|_| listen(world.net.as_ref()))
        .collect::<std::io::Result<Vec<_>>>()?;
    let ports = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<Vec<_>>>()?;
    let labels: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let tally = Arc::new(Tally::new(format!("127.0.0.1:{owner_port}"), labels.len()));
    print_header(args, &manifest, &ports);
    let fates = if args.sim {
        faults::fates(args, faults::window(args))?
    } else {
        vec![Fate::default(); labels.len()]
    };
    let started_ts = if args.sim { 0.0 } else { crate::unix_now() };
    let t0 = Instant::now();
    let stop = token.child_token();
    let owner_stop = stop.child_token();
    let owner_task = start_owner(args, &world, owner_listener, log, &owner_stop)?;
    let finish = Arc::new(Finish::new(fates.iter().map(Fate::must_complete).collect()));
    let dht = args.dht.then(|| {
        let owner = identity(sim_seed(args), "owner").id();
        let dht = Arc::new(SimDht::new(&manifest, owner_port, owner));
        dht.announce_owner(owner_port, owner_stop.clone());
        dht
    });
    if let (true, Some(dht)) = (args.owner_crash, &dht) {
        tokio::spawn(crash_owner(
            finish.clone(),
            dht.clone(),
            owner_stop,
            stop.clone(),
            t0,
        ));
    }
    let plan = Arc::new(Plan {
        dht,
        finish,
        ..Plan::new(args, world, work, log, owner_port, ports, &tally, t0)
    });
    if let Some(p) = args.partition {
        tokio::spawn(partition(plan.clone(), p, stop.clone()));
    }
    let lives = start_peers(&plan, listeners, &fates, &stop);
    let progress = (!args.no_progress).then(|| {
        let done = CancellationToken::new();
        let task = tokio::spawn(crate::progress::show_progress(
            tally.clone(),
            manifest.chunk_count(),
            t0,
            done.clone(),
            args.sim,
        ));
        (task, done)
    });
    let failures = wait_peers(lives, &labels, &tally).await?;
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
        peer_rates: crate::slow::peer_rates(args),
        owner_rate: args.owner_rate.or(args.rate),
        download_rate: args.download_rate,
        seed: args.seed,
        started_ts,
        wall,
    };
    Ok(Some(Done {
        summary: meter::meter(&run, &tally),
    }))
}

fn print_header(args: &Args, manifest: &ringswarm::manifest::Manifest, ports: &[u16]) {
    let peers = ports.len();
    println!(
        "demo: {} ({}, {} chunks of {}), owner + {peers} peers {}, caps: peers {}, owner {}",
        ringswarm::manifest::display_name(&manifest.name),
        human_size(manifest.size),
        manifest.chunk_count(),
        human_size(manifest.chunk_size),
        if args.sim {
            "simulated in virtual time"
        } else {
            "on 127.0.0.1"
        },
        crate::rate_text(args.rate),
        crate::rate_text(args.owner_rate.or(args.rate)),
    );
    for s in &args.slow {
        println!(
            "slow: peer {} (127.0.0.1:{}) uploads at {}",
            s.k,
            ports[usize::from(s.k) - 1],
            crate::rate_text(Some(s.rate))
        );
    }
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
            net: Some(MemNet::with_model(link_model(args))),
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

fn link_model(args: &Args) -> LinkModel {
    LinkModel {
        latency: Duration::from_secs_f64(args.latency),
        jitter: args.jitter,
        loss: args.loss,
        download: args.download_rate,
        seed: args.seed.unwrap_or(0),
    }
}

/// A listener on 127.0.0.1, port 0: on `net`, or on TCP.
fn listen(net: Option<&Arc<MemNet>>) -> std::io::Result<Listener> {
    match net {
        Some(net) => net.listen(0),
        None => Ok(ringswarm::net::listen(([127, 0, 0, 1], 0).into())?.into()),
    }
}

/// A quiet sink for node `label`: to the report's log, stamped by the world's clock.
fn sink(clock: Option<&Clock>, label: String, log: Option<&EventLog>) -> EventSink {
    let mut events = EventSink::console(label).quiet();
    if let Some(log) = log {
        events = events.log(log.clone());
    }
    if let Some(clock) = clock {
        events = events.clock(clock.clone());
    }
    events
}

fn start_owner(
    args: &Args,
    world: &World,
    listener: Listener,
    log: Option<&EventLog>,
    stop: &CancellationToken,
) -> anyhow::Result<JoinHandle<ringswarm::Result<()>>> {
    let addr = listener.local_addr()?;
    let config = owner::OwnerConfig {
        peers: u32::from(args.peers),
        upload_limit: args
            .owner_rate
            .or(args.rate)
            .map(|r| Arc::new(ringswarm::rate::RateLimiter::new(r, args.chunk_size))),
        seed: sim_seed(args),
        identity: identity(sim_seed(args), "owner"),
        // Every peer keeps a connection to the owner, and a getter or fall-back a few more.
        max_connections: owner::MAX_CONNECTIONS.max(2 * usize::from(args.peers) + 64),
        ..owner::OwnerConfig::new(Arc::new(sink(world.clock.as_ref(), "owner".into(), log)))
    };
    let files = vec![world.shared.clone()];
    let mut directory = ringswarm::directory::Directory::new(
        vec![world.shared.manifest.clone()],
        addr,
        ringswarm::directory::DEFAULT_PEER_TTL,
    );
    if let Some(clock) = &world.clock {
        // Registration times in virtual time too.
        directory = directory.with_clock(clock.clone());
    }
    let directory = Arc::new(directory);
    Ok(tokio::spawn(owner::run(
        listener,
        files,
        directory,
        config,
        stop.clone(),
    )))
}

/// A node's key: drawn from the seed when there is one, so a seeded run is the same every
/// time (its handshakes included), else fresh.
fn identity(seed: Option<u64>, label: &str) -> Arc<ringswarm::secure::Identity> {
    let key = match seed {
        Some(s) => ringswarm::key::NodeKey::from_seed(s, label),
        None => ringswarm::key::NodeKey::generate(),
    };
    Arc::new(ringswarm::secure::Identity::new(key, None))
}

/// The seed of a run: a simulation always has one (0 unless given).
fn sim_seed(args: &Args) -> Option<u64> {
    args.seed.or(args.sim.then_some(0))
}

/// Everything the peers' configurations are made from, owned: a peer's life (a late start,
/// a crash and restart) runs in a task of its own.
struct Plan {
    net: Option<Arc<MemNet>>,
    content: Option<Bytes>,
    clock: Option<Clock>,
    log: Option<EventLog>,
    work: PathBuf,
    owner_port: u16,
    ports: Vec<u16>,
    tally: Arc<Tally>,
    t0: Instant,
    /// Each peer's upload cap (`--rate`, or its `--slow` rate).
    rates: Vec<Option<u64>>,
    in_flight: usize,
    /// Peers join through the directory (`peer join`) instead of naming their neighbours.
    join: bool,
    layout: Layout,
    seed: Option<u64>,
    restart_after: Duration,
    /// `--dht`: the stand-in every node uses.
    dht: Option<Arc<SimDht>>,
    /// Which peers the run still waits for.
    finish: Arc<Finish>,
}

impl Plan {
    #[allow(clippy::too_many_arguments)]
    fn new(
        args: &Args,
        world: World,
        work: &Path,
        log: Option<&EventLog>,
        owner_port: u16,
        ports: Vec<u16>,
        tally: &Arc<Tally>,
        t0: Instant,
    ) -> Self {
        Self {
            net: world.net,
            content: world.content,
            clock: world.clock,
            log: log.cloned(),
            work: work.to_path_buf(),
            owner_port,
            ports,
            tally: tally.clone(),
            t0,
            rates: crate::slow::peer_rates(args),
            in_flight: args.in_flight.max(1),
            join: !args.wired,
            layout: if args.chunk_files {
                Layout::ChunkFiles
            } else {
                Layout::PartFile
            },
            seed: sim_seed(args),
            restart_after: Duration::from_secs_f64(args.restart_after),
            dht: None,
            finish: Arc::new(Finish::new(Vec::new())),
        }
    }

    fn label(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.ports[i])
    }

    /// `port` as peer `i` reaches it.
    fn endpoint(&self, i: usize, port: u16) -> Endpoint {
        match &self.net {
            Some(net) => net.endpoint_from(self.ports[i], port),
            None => Endpoint::local(port),
        }
    }

    /// Virtual (or wall) seconds since the start.
    fn now(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    fn config(&self, i: usize) -> peer::Config {
        let label = self.label(i);
        let t = self.tally.clone();
        let events = sink(self.clock.as_ref(), label, self.log.as_ref())
            .observe(Arc::new(move |ev: &Event| t.observe(i, ev)));
        let (tx, rx) = tokio::sync::oneshot::channel::<Completion>();
        let (t, t0, finish) = (self.tally.clone(), self.t0, self.finish.clone());
        tokio::spawn(async move {
            if rx.await.is_ok() {
                t.completed(i, t0.elapsed().as_secs_f64());
                finish.completed(i);
            }
        });
        let next = self.ports[(i + 1) % self.ports.len()];
        peer::Config {
            sync: false,
            layout: self.layout,
            in_memory: self.content.clone().map(InMemory::Known),
            in_flight: self.in_flight,
            join: self.join,
            events: Arc::new(events),
            upload_limit: self.rates[i],
            seed: self.seed.map(|s| s.wrapping_add(i as u64 + 1)),
            identity: identity(self.seed, &format!("peer {}", self.ports[i])),
            on_complete: Some(tx),
            dht: self.dht.as_ref().map(|d| d.handle()),
            // A peer announced in the DHT stays up for the others until the run ends.
            seed_until_stopped: self.dht.is_some(),
            ..peer::Config::ring(
                self.endpoint(i, self.owner_port),
                self.endpoint(i, next),
                self.work.join(format!("peer-{}", self.ports[i])),
            )
        }
    }
}

/// How a peer's life ended: `None` when it left on purpose (`--leave`).
type Life = JoinHandle<anyhow::Result<Option<peer::Outcome>>>;

fn start_peers(
    plan: &Arc<Plan>,
    listeners: Vec<Listener>,
    fates: &[Fate],
    stop: &CancellationToken,
) -> Vec<(Life, bool)> {
    listeners
        .into_iter()
        .enumerate()
        .map(|(i, listener)| {
            let span = tracing::info_span!(parent: None, "peer", port = plan.ports[i]);
            let life = life(plan.clone(), i, listener, fates[i], stop.clone());
            (
                tokio::spawn(life.instrument(span)),
                fates[i].must_complete(),
            )
        })
        .collect()
}

/// Peer `i` from its start to its end: a late join, a crash and a restart (empty: a
/// simulated peer keeps its chunks in memory), or leaving for good, as `fate` says.
async fn life(
    plan: Arc<Plan>,
    i: usize,
    listener: Listener,
    fate: Fate,
    stop: CancellationToken,
) -> anyhow::Result<Option<peer::Outcome>> {
    let mut listener = Some(listener);
    if !fate.start.is_zero() {
        drop(listener.take());
        tokio::time::sleep_until(plan.t0 + fate.start).await;
        println!("{:8.3}s  peer {} joins", plan.now(), plan.label(i));
    }
    let mut crash = fate.crash;
    loop {
        let listener = match (listener.take(), &plan.net) {
            (Some(l), _) => l,
            (None, Some(net)) => net.listen(plan.ports[i])?,
            (None, None) => anyhow::bail!("bug: a TCP peer restarted"),
        };
        let token = stop.child_token();
        let config = match &plan.dht {
            Some(dht) => dht.start(plan.config(i), plan.now(), &plan.label(i)).await,
            None => plan.config(i),
        };
        if config.seed_until_stopped {
            // It serves until stopped: until the whole run is done.
            let (all, t) = (plan.finish.all.clone(), token.clone());
            tokio::spawn(async move {
                tokio::select! {
                    () = all.cancelled() => t.cancel(),
                    () = t.cancelled() => {}
                }
            });
        }
        let run = peer::run(listener, config, token.clone());
        tokio::pin!(run);
        let Some(end) = crash.or(fate.leave) else {
            return Ok(Some(run.await?));
        };
        tokio::select! {
            r = &mut run => return Ok(Some(r?)),
            () = tokio::time::sleep_until(plan.t0 + end) => token.cancel(),
        }
        let _ = run.await;
        if crash.take().is_none() {
            println!("{:8.3}s  peer {} leaves", plan.now(), plan.label(i));
            return Ok(None);
        }
        println!("{:8.3}s  peer {} crashes", plan.now(), plan.label(i));
        tokio::time::sleep(plan.restart_after).await;
        println!(
            "{:8.3}s  peer {} restarts, empty",
            plan.now(),
            plan.label(i)
        );
    }
}

/// Cuts the first half of the peers off from the owner and the rest, from `p.at` for
/// `p.for_`.
async fn partition(plan: Arc<Plan>, p: faults::Partition, stop: CancellationToken) {
    let Some(net) = &plan.net else { return };
    let side: Vec<u16> = plan.ports[..plan.ports.len() / 2].to_vec();
    tokio::select! {
        biased;
        () = stop.cancelled() => return,
        () = tokio::time::sleep_until(plan.t0 + p.at) => {}
    }
    println!(
        "{:8.3}s  partition: {} peers cut off from the owner and the other {}",
        plan.now(),
        side.len(),
        plan.ports.len() - side.len()
    );
    net.partition(side);
    tokio::select! {
        biased;
        () = stop.cancelled() => {}
        () = tokio::time::sleep(p.for_) => {}
    }
    net.heal();
    println!("{:8.3}s  partition healed", plan.now());
}

/// Waits for every peer; the failures, one line each. A seeder (`--dht`) is stopped once
/// every peer completed: it completed too.
async fn wait_peers(
    lives: Vec<(Life, bool)>,
    labels: &[String],
    tally: &Tally,
) -> anyhow::Result<Vec<String>> {
    let mut failures = Vec::new();
    for (i, ((life, must_complete), label)) in lives.into_iter().zip(labels).enumerate() {
        let outcome = life.await?;
        let completed = tally.complete.lock().unwrap_or_else(|p| p.into_inner())[i].is_some();
        match outcome {
            Ok(Some(peer::Outcome::Complete(_))) => {}
            Ok(None) if !must_complete => {}
            Ok(Some(peer::Outcome::Interrupted)) if completed => {}
            Ok(None | Some(peer::Outcome::Interrupted)) => {
                failures.push(format!("peer {label} interrupted"));
            }
            Err(e) => failures.push(format!("peer {label}: {e:#}")),
        }
    }
    Ok(failures)
}

/// `--owner-crash`: the owner (directory and seeder) stops for good when a peer first holds
/// the whole file; from then on, peers that start find their sources in the DHT stand-in.
async fn crash_owner(
    finish: Arc<Finish>,
    dht: Arc<SimDht>,
    owner: CancellationToken,
    stop: CancellationToken,
    t0: Instant,
) {
    tokio::select! {
        biased;
        () = stop.cancelled() => return,
        () = finish.first.cancelled() => {}
    }
    println!(
        "{:8.3}s  the owner crashes for good: its directory and its chunks are gone",
        t0.elapsed().as_secs_f64()
    );
    dht.owner_gone.cancel();
    owner.cancel();
}
