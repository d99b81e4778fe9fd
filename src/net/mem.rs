//! An in-memory network for tests and simulations: every node on 127.0.0.1, each connection
//! a pair of `tokio::io::duplex` pipes. No socket, no thread: under tokio's paused clock, a
//! swarm on it runs in virtual time.
//!
//! Plain, a connection is one duplex pair: bytes arrive as soon as the other side reads. With
//! a [`LinkModel`], each direction of a connection goes through a relay that holds every
//! segment for the link's latency (plus a retransmission timeout when the segment is "lost"),
//! shares the receiving node's download cap fairly among its connections, and holds traffic
//! across a partition (see [`MemNet::partition`]) until it heals, as a real network silences
//! a link rather than closing it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::stream::{BoxStream, CONNECT_TIMEOUT};
use crate::rate::RateLimiter;
use crate::task::spawn_named;

/// Bytes in flight each way on one in-memory connection without a link model (the like of
/// a socket buffer).
pub const MEM_LINK_BUFFER: usize = 256 * 1024;
/// Bytes a modelled link holds in flight each way, at most: a sender gets ahead of the
/// receiver by this much (a TCP window), so at latency `L` a link moves at most
/// `LINK_WINDOW / 2L` bytes a second.
pub const LINK_WINDOW: usize = 1024 * 1024;
/// The largest segment a relay moves at once.
const SEGMENT: usize = 64 * 1024;
/// The least retransmission timeout of a lost segment (Linux's `TCP_RTO_MIN`).
pub const MIN_RTO: Duration = Duration::from_millis(200);

/// How a [`MemNet`]'s links behave.
#[derive(Clone, Debug, Default)]
pub struct LinkModel {
    /// One-way latency of every link.
    pub latency: Duration,
    /// Each link's latency differs from `latency` by up to this fraction, seeded per link.
    pub jitter: f64,
    /// The fraction of segments lost: each arrives a retransmission timeout (at least
    /// [`MIN_RTO`], or two round trips) late, and everything behind it waits (the stream
    /// stays in order).
    pub loss: f64,
    /// Every node's download cap, bytes per second, shared by its incoming connections.
    pub download: Option<u64>,
    /// Seeds the jitter and the losses.
    pub seed: u64,
}

type Inbox = mpsc::UnboundedSender<(BoxStream, SocketAddr)>;

/// An in-memory network (see the module docs).
#[derive(Debug, Default)]
pub struct MemNet {
    listeners: Mutex<BTreeMap<u16, Inbox>>,
    next_port: AtomicU16,
    model: Option<LinkModel>,
    /// Links made so far (seeds each link's jitter and losses).
    links: AtomicU64,
    /// Download caps by node (listening port), made on first use.
    downloads: Mutex<BTreeMap<u16, Arc<RateLimiter>>>,
    /// The nodes cut off from the rest, if a partition is on; bumped on every change.
    partition: crate::watch::Sender<Option<Arc<BTreeSet<u16>>>>,
}

/// The listening half of a [`MemNet`] port; the port is free again once it is dropped.
#[derive(Debug)]
pub struct MemListener {
    pub(super) net: Arc<MemNet>,
    pub(super) addr: SocketAddr,
    pub(super) rx: mpsc::UnboundedReceiver<(BoxStream, SocketAddr)>,
}

impl Drop for MemListener {
    fn drop(&mut self) {
        self.net.ports().remove(&self.addr.port());
    }
}

impl MemNet {
    /// A new, empty network; connections are plain duplex pairs.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A new, empty network whose links behave as `model` says.
    pub fn with_model(model: LinkModel) -> Arc<Self> {
        Arc::new(Self {
            model: Some(model),
            ..Self::default()
        })
    }

    fn ports(&self) -> MutexGuard<'_, BTreeMap<u16, Inbox>> {
        self.listeners.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn free_port(&self) -> u16 {
        loop {
            let p = 20_000u16.wrapping_add(self.next_port.fetch_add(1, Ordering::Relaxed));
            if p != 0 && !self.ports().contains_key(&p) {
                return p;
            }
        }
    }

    /// Listens on `port` (0: a free one): the port's listener ([`MemNet::listen`] wraps it).
    ///
    /// # Errors
    ///
    /// `AddrInUse` when something listens there already.
    pub(super) fn listen_port(self: &Arc<Self>, port: u16) -> std::io::Result<MemListener> {
        let port = if port == 0 { self.free_port() } else { port };
        let mut ports = self.ports();
        if ports.contains_key(&port) {
            return Err(std::io::ErrorKind::AddrInUse.into());
        }
        let (tx, rx) = mpsc::unbounded_channel();
        ports.insert(port, tx);
        drop(ports);
        Ok(MemListener {
            net: self.clone(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            rx,
        })
    }

    /// Cuts the nodes listening on `side` off from every other node until
    /// [`MemNet::heal`]: their links carry nothing (traffic waits, as on a real network)
    /// and new connections between the sides time out after [`CONNECT_TIMEOUT`].
    pub fn partition(&self, side: impl IntoIterator<Item = u16>) {
        self.partition
            .send_replace(Some(Arc::new(side.into_iter().collect())));
    }

    /// Ends a partition: held traffic flows again.
    pub fn heal(&self) {
        self.partition.send_replace(None);
    }

    fn cut(&self, a: u16, b: u16) -> bool {
        self.partition
            .borrow()
            .as_ref()
            .is_some_and(|side| side.contains(&a) != side.contains(&b))
    }

    fn download_cap(&self, node: u16) -> Option<Arc<RateLimiter>> {
        let rate = self.model.as_ref()?.download?;
        if node == 0 {
            return None;
        }
        let mut caps = self.downloads.lock().unwrap_or_else(|p| p.into_inner());
        let cap = caps
            .entry(node)
            .or_insert_with(|| Arc::new(RateLimiter::new(rate, SEGMENT as u64)));
        Some(cap.clone())
    }

    /// Connects node `from` (0: unknown) to `port`.
    pub(super) async fn connect(
        self: &Arc<Self>,
        from: u16,
        port: u16,
    ) -> std::io::Result<(BoxStream, String)> {
        let inbox = || {
            self.ports()
                .get(&port)
                .cloned()
                .ok_or(std::io::ErrorKind::ConnectionRefused)
        };
        let remote = format!("127.0.0.1:{port}");
        let Some(model) = &self.model else {
            let (client, server) = tokio::io::duplex(MEM_LINK_BUFFER);
            self.deliver(inbox()?, Box::new(server))?;
            return Ok((Box::new(client), remote));
        };
        if self.cut(from, port) {
            tokio::time::sleep(CONNECT_TIMEOUT).await;
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connect timed out",
            ));
        }
        let link = self.link(model, from, port);
        // The handshake's round trip.
        tokio::time::sleep(link.latency * 2).await;
        let inbox = inbox()?;
        let (client, client_far) = tokio::io::duplex(MEM_LINK_BUFFER);
        let (server_far, server) = tokio::io::duplex(MEM_LINK_BUFFER);
        let (cr, cw) = tokio::io::split(client_far);
        let (sr, sw) = tokio::io::split(server_far);
        spawn_named("sim-relay", relay(cr, sw, link.direction(self, port)));
        spawn_named("sim-relay", relay(sr, cw, link.direction(self, from)));
        self.deliver(inbox, Box::new(server))?;
        Ok((Box::new(client), remote))
    }

    fn deliver(&self, inbox: Inbox, server: BoxStream) -> std::io::Result<()> {
        let from = SocketAddr::from(([127, 0, 0, 1], self.free_port()));
        inbox
            .send((server, from))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
    }

    fn link(self: &Arc<Self>, model: &LinkModel, a: u16, b: u16) -> MemLink {
        let n = self.links.fetch_add(1, Ordering::Relaxed);
        let mut rng = rand::rngs::StdRng::seed_from_u64(model.seed ^ n.wrapping_mul(0x9e37_79b9));
        let spread = model.jitter.clamp(0.0, 1.0);
        let factor = 1.0
            + if spread > 0.0 {
                rng.random_range(-spread..=spread)
            } else {
                0.0
            };
        let latency = model.latency.mul_f64(factor);
        MemLink {
            net: self.clone(),
            ends: (a, b),
            latency,
            rto: MIN_RTO.max(latency * 4),
            loss: model.loss.clamp(0.0, 1.0),
            seed: rng.random(),
        }
    }
}

/// One connection's behaviour, before it is split into its two directions.
struct MemLink {
    net: Arc<MemNet>,
    ends: (u16, u16),
    latency: Duration,
    rto: Duration,
    loss: f64,
    seed: u64,
}

/// One direction of a link: what its relay needs.
struct Direction {
    net: Arc<MemNet>,
    ends: (u16, u16),
    latency: Duration,
    rto: Duration,
    loss: f64,
    rng: rand::rngs::StdRng,
    download: Option<Arc<RateLimiter>>,
}

impl MemLink {
    fn direction(&self, net: &MemNet, to: u16) -> Direction {
        Direction {
            net: self.net.clone(),
            ends: self.ends,
            latency: self.latency,
            rto: self.rto,
            loss: self.loss,
            rng: rand::rngs::StdRng::seed_from_u64(self.seed ^ u64::from(to)),
            download: net.download_cap(to),
        }
    }
}

/// Moves bytes from `from` to `to`, each segment held for the link's latency (and a
/// retransmission timeout when lost), at most [`LINK_WINDOW`] bytes in flight; ends (closing
/// `to`) when `from` ends or `to` is gone.
async fn relay(
    mut from: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    to: impl tokio::io::AsyncWrite + Unpin + Send + 'static,
    mut dir: Direction,
) {
    let (tx, rx) = mpsc::channel::<(Instant, Bytes)>(LINK_WINDOW / SEGMENT);
    let (net, ends, download) = (dir.net.clone(), dir.ends, dir.download.take());
    let writer = spawn_named("sim-deliver", deliver(rx, to, net, ends, download));
    let mut last_due = Instant::now();
    loop {
        let mut buf = BytesMut::with_capacity(SEGMENT);
        match from.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let mut due = Instant::now() + dir.latency;
        if dir.loss > 0.0 && dir.rng.random_bool(dir.loss) {
            due += dir.rto;
        }
        last_due = last_due.max(due);
        if tx.send((last_due, buf.freeze())).await.is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// The delivering half of [`relay`]: waits for each segment's time, for a partition to heal
/// and for the receiver's download cap, then writes it.
async fn deliver(
    mut rx: mpsc::Receiver<(Instant, Bytes)>,
    mut to: impl tokio::io::AsyncWrite + Unpin,
    net: Arc<MemNet>,
    ends: (u16, u16),
    download: Option<Arc<RateLimiter>>,
) {
    let mut partition = net.partition.subscribe();
    while let Some((due, segment)) = rx.recv().await {
        tokio::time::sleep_until(due).await;
        while net.cut(ends.0, ends.1) {
            if partition.changed().await.is_err() {
                return;
            }
        }
        if let Some(cap) = &download {
            cap.acquire(segment.len() as u64).await;
        }
        if to.write_all(&segment).await.is_err() {
            return;
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A modelled link delays every byte by its latency and holds it through a partition.
    #[tokio::test(start_paused = true)]
    async fn latency_and_partitions_hold_bytes() {
        let net = MemNet::with_model(LinkModel {
            latency: Duration::from_millis(50),
            ..LinkModel::default()
        });
        let mut server = net.listen(7000).unwrap();
        let started = Instant::now();
        let (mut client, _) = net
            .endpoint_from(7001, 7000)
            .connect_stream()
            .await
            .unwrap();
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(100),
            "one round trip"
        );
        let (mut conn, _) = server.accept().await.unwrap();
        let sent = Instant::now();
        client.write_all(b"hello").await.unwrap();
        let mut got = [0u8; 5];
        conn.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
        assert_eq!(sent.elapsed(), Duration::from_millis(50));

        net.partition([7001]);
        client.write_all(b"again").await.unwrap();
        let read = tokio::time::timeout(Duration::from_secs(10), conn.read_exact(&mut got)).await;
        assert!(read.is_err(), "nothing crosses a partition");
        let refused = net.endpoint_from(7001, 7000).connect_stream().await;
        assert!(refused.is_err(), "a connect across it times out");
        net.heal();
        conn.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"again", "held bytes arrive once it heals");
    }

    /// A node's download cap is shared by its connections: two senders of 1 MiB each to one
    /// node capped at 1 MiB/s take two seconds together.
    #[tokio::test(start_paused = true)]
    async fn a_download_cap_is_shared_by_a_nodes_links() {
        let net = MemNet::with_model(LinkModel {
            download: Some(1 << 20),
            ..LinkModel::default()
        });
        let mut server = net.listen(7000).unwrap();
        let started = Instant::now();
        let mut readers = Vec::new();
        for from in [7001, 7002] {
            let (mut client, _) = net
                .endpoint_from(from, 7000)
                .connect_stream()
                .await
                .unwrap();
            let (mut conn, _) = server.accept().await.unwrap();
            tokio::spawn(async move {
                client.write_all(&vec![1u8; 1 << 20]).await.unwrap();
                client.shutdown().await.unwrap();
            });
            readers.push(tokio::spawn(async move {
                let mut all = Vec::new();
                conn.read_to_end(&mut all).await.unwrap();
                all.len()
            }));
        }
        for r in readers {
            assert_eq!(r.await.unwrap(), 1 << 20);
        }
        let took = started.elapsed().as_secs_f64();
        assert!((1.9..2.1).contains(&took), "{took} s for 2 MiB at 1 MiB/s");
    }
}
