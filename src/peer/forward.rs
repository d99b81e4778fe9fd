//! A measurement of one ring peer's forwarding path, in process: the real download handler
//! receives every chunk from an in-memory upstream, verifies it and stores it in a part file
//! on disk, and the real upload handler sends each one on to an in-memory downstream. Only
//! the peer's runtime changes between runs (its worker count), so the figures say what more
//! cores buy one peer. `benches/forward.rs` runs it; the figures are in BENCHMARKS.md.
//!
//! The upstream and the downstream run on a thread of their own (a current-thread runtime)
//! and cost little: the upstream writes each chunk's frame once into the in-memory link, the
//! downstream reads and drops it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::SourceKind;
use super::bootstrap::Handshake;
use super::config::Config;
use super::swarm::Swarm;
use crate::chunkset::{ChunkSet, Ranges};
use crate::connection::{Connection, KEEPALIVE_INTERVAL};
use crate::events::EventSink;
use crate::manifest::Manifest;
use crate::protocol::{MAX_MANIFEST_LEN, Message, PROTOCOL_VERSION, Role};

/// Bytes each in-memory link holds in flight each way (a socket buffer's like).
const LINK_BUFFER: usize = 1 << 20;
/// Requests the downstream keeps in flight (the peer's own default window).
const WINDOW: usize = super::DEFAULT_IN_FLIGHT;
/// The longest the measurement waits for any one step.
const STEP: Duration = Duration::from_secs(60);

/// What one run measured.
#[derive(Clone, Copy, Debug)]
pub struct Forwarded {
    /// Bytes received, verified, stored and sent on.
    pub bytes: u64,
    /// From the first request to the last chunk's arrival downstream.
    pub seconds: f64,
    /// CPU seconds of the whole process (peer, upstream and downstream) over the run.
    pub cpu_seconds: f64,
}

/// Forwards `data`, cut in chunks of `chunk_size`, through one ring peer whose runtime has
/// `workers` worker threads (1: one thread, as the `peer` command on a small machine),
/// storing it in a part file under `dir` (not synced).
///
/// # Errors
///
/// A runtime, the store or a connection failed, or a step took over a minute.
pub fn forward(
    data: &Bytes,
    chunk_size: u64,
    workers: usize,
    dir: &Path,
) -> anyhow::Result<Forwarded> {
    let manifest = Manifest::from_bytes("forward.bin", data, chunk_size)?;
    let chunks = manifest.chunk_count();
    let step = usize::try_from(manifest.chunk_size)?;
    let frames: Arc<Vec<Bytes>> = Arc::new(
        (0..chunks)
            .map(|c| data.slice(c as usize * step..((c as usize + 1) * step).min(data.len())))
            .collect(),
    );
    let peer_rt = crate::task::runtime(workers)?;
    let swarm = peer_rt.block_on(open(manifest, dir))?;
    let (up_near, up_far) = tokio::io::duplex(LINK_BUFFER);
    let (down_near, down_far) = tokio::io::duplex(LINK_BUFFER);
    let token = CancellationToken::new();

    // The two ends outside the peer, on a thread of their own.
    let frames2 = frames.clone();
    let ends = std::thread::spawn(move || -> anyhow::Result<Instant> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let upstream = Connection::over(up_far, "forward".into(), 1 << 10);
            let up = tokio::spawn(upstream_end(upstream, frames2));
            let downstream = Connection::over(down_far, "forward".into(), MAX_MANIFEST_LEN);
            let done = downstream_end(downstream, chunks).await?;
            up.abort();
            Ok(done)
        })
    });

    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let hs = Handshake {
        conn: Connection::over(up_near, "upstream".into(), MAX_MANIFEST_LEN),
        assigned: Ranges::default(),
        heartbeat: KEEPALIVE_INTERVAL,
        empty: false,
        neighbour: None,
        publisher: None,
        plain: false,
    };
    let (s1, s2, t1, t2) = (swarm.clone(), swarm.clone(), token.clone(), token.clone());
    // A one-thread runtime runs its tasks only inside `block_on`: the wait is in there too.
    let done = peer_rt.block_on(async move {
        crate::task::spawn_named("forward fetch", async move {
            let told = ChunkSet::new(s1.manifest.chunk_count());
            super::fetch::ring(&s1, SourceKind::Neighbour, hs, told, &t1).await
        });
        crate::task::spawn_named("forward upload", async move {
            let conn = Connection::over(down_near, "downstream".into(), 1 << 10);
            super::upload::handle(conn, &s2, &t2).await
        });
        tokio::task::spawn_blocking(move || ends.join()).await
    });
    let done =
        done?.map_err(|_| anyhow::anyhow!("the upstream and downstream thread panicked"))??;
    let cpu = cpu_seconds() - cpu0;
    token.cancel();
    peer_rt.shutdown_timeout(Duration::from_secs(2));
    anyhow::ensure!(swarm.is_complete(), "the peer did not store every chunk");
    Ok(Forwarded {
        bytes: data.len() as u64,
        seconds: done.duration_since(t0).as_secs_f64(),
        cpu_seconds: cpu,
    })
}

/// The peer's swarm: a ring peer of `manifest` with an empty part file in `dir`, not synced.
async fn open(manifest: Manifest, dir: &Path) -> anyhow::Result<Arc<Swarm>> {
    let any = "127.0.0.1:9".parse()?;
    let config = Config {
        sync: false,
        seed: Some(7),
        events: Arc::new(EventSink::console("peer").quiet()),
        ..Config::ring(any, "127.0.0.1:9".parse()?, dir.to_path_buf())
    };
    let mode = config.mode();
    let swarm = Swarm::open(config, mode, manifest, 9, "forward".into()).await?;
    swarm.set_link_error(SourceKind::Neighbour, None);
    Ok(Arc::new(swarm))
}

/// The upstream: announces every chunk, then answers each request with its chunk.
async fn upstream_end(mut conn: Connection, frames: Arc<Vec<Bytes>>) -> anyhow::Result<()> {
    let all = Ranges::from_sorted(0..u32::try_from(frames.len())?);
    conn.send(Message::Have { chunks: all }).await?;
    while let Some(msg) = conn.recv("requests", STEP).await? {
        if let Message::Request { chunk, .. } = msg {
            let data = frames.get(chunk as usize).cloned().unwrap_or_default();
            conn.send(Message::chunk(chunk, data)).await?;
        }
    }
    Ok(())
}

/// The downstream: says hello as the peer's upload neighbour, asks for each chunk the peer
/// announces (`WINDOW` at a time) and drops it; returns when the last one arrived.
async fn downstream_end(mut conn: Connection, chunks: u32) -> anyhow::Result<Instant> {
    conn.send(Message::Hello {
        version: PROTOCOL_VERSION,
        role: Role::Neighbour,
        file: Some("forward.bin".into()),
        have: Ranges::default(),
        port: Some(9),
        node: None,
    })
    .await?;
    let (mut wanted, mut asked, mut got) = (std::collections::VecDeque::new(), 0usize, 0u32);
    while got < chunks {
        match conn.recv("chunks", STEP).await? {
            Some(Message::Have { chunks: ranges }) => {
                wanted.extend(ranges.0.iter().flat_map(|&[a, b]| a..=b));
            }
            Some(Message::Chunk { .. }) => {
                got += 1;
                asked -= 1;
            }
            Some(Message::Welcome { .. }) => {}
            Some(other) => anyhow::bail!("unexpected {other:?} from the peer"),
            None => anyhow::bail!("the peer closed the connection after {got} chunks"),
        }
        while asked < WINDOW
            && let Some(c) = wanted.pop_front()
        {
            conn.send(Message::request(c)).await?;
            asked += 1;
        }
    }
    let done = Instant::now();
    let all = Ranges::from_sorted(0..chunks);
    conn.send(Message::Have { chunks: all }).await?;
    Ok(done)
}

/// CPU seconds this process has used (all its threads, user and system).
fn cpu_seconds() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}
