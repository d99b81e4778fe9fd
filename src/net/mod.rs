//! Endpoints and connecting: the one place socket types come from.
//!
//! An [`Endpoint`] is what a user types: `5001` (meaning 127.0.0.1:5001) or `HOST:PORT`.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

pub use tokio::net::{TcpListener, TcpStream};

mod mem;
mod stream;

pub use mem::{LINK_WINDOW, LinkModel, MEM_LINK_BUFFER, MIN_RTO, MemListener, MemNet};
pub use stream::{BoxStream, CONNECT_TIMEOUT, Stream};

/// Connections a listener queues before they are accepted: as many as the owner serves at
/// once, so a burst of connecting peers waits in the queue, not on the kernel's SYN retries
/// (std's default is 128; the kernel caps it at `net.core.somaxconn`).
pub const LISTEN_BACKLOG: u32 = 1024;

/// Listens on `addr` with [`LISTEN_BACKLOG`] (and `SO_REUSEADDR`, as `TcpListener::bind`).
///
/// # Errors
///
/// The socket, bind or listen error.
pub fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The first wait between connection attempts.
pub const BACKOFF_START: Duration = Duration::from_millis(50);
/// The longest wait between connection attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// A [`MemNet`]'s listeners and endpoints, here beside the types they make.
impl MemNet {
    /// Listens on `port` (0: a free one).
    ///
    /// # Errors
    ///
    /// `AddrInUse` when something listens there already.
    pub fn listen(self: &Arc<Self>, port: u16) -> std::io::Result<Listener> {
        self.listen_port(port).map(Listener::Mem)
    }

    /// The endpoint of `port` on this network, for a connector the network does not know
    /// (no download cap, on no side of a partition).
    pub fn endpoint(self: &Arc<Self>, port: u16) -> Endpoint {
        self.endpoint_from(0, port)
    }

    /// The endpoint of `port` for the node listening on `from`: its connections count
    /// against `from`'s download cap and are cut by a partition between the two.
    pub fn endpoint_from(self: &Arc<Self>, from: u16, port: u16) -> Endpoint {
        Endpoint {
            mem: Some(self.clone()),
            from,
            ..Endpoint::local(port)
        }
    }
}

/// Where a file owner or peer listens: a host and port on TCP, or a port of an in-memory
/// [`MemNet`] (for tests and simulations).
#[derive(Clone, Debug)]
pub struct Endpoint {
    host: String,
    port: u16,
    mem: Option<Arc<MemNet>>,
    /// On a [`MemNet`]: the node that connects (its listening port; 0: unknown).
    from: u16,
}

impl PartialEq for Endpoint {
    fn eq(&self, other: &Self) -> bool {
        let same_net = match (&self.mem, &other.mem) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        same_net && self.host == other.host && self.port == other.port
    }
}

impl Eq for Endpoint {}

/// A listening socket: TCP, or a port of a [`MemNet`].
#[derive(Debug)]
pub enum Listener {
    /// A TCP listener.
    Tcp(TcpListener),
    /// A port of an in-memory network.
    Mem(MemListener),
}

impl From<TcpListener> for Listener {
    fn from(l: TcpListener) -> Self {
        Self::Tcp(l)
    }
}

/// Bytes a served connection keeps written but not yet sent, at most (`TCP_NOTSENT_LOWAT`):
/// a little over a chunk. A server writes the chunks asked of it; without this, the kernel
/// queued megabytes of them behind a slow uplink (all the requests a client has in flight),
/// so a `cancel` came too late and the owner sent a quarter of the file twice on a shaped
/// network (BENCHMARKS.md, "Shaped network"). Data in flight is not limited: a fast link
/// keeps its whole window.
pub const UNSENT_LOWAT: u32 = 128 * 1024;

impl Listener {
    /// The next connection and the address it comes from (TCP streams get `TCP_NODELAY`, and
    /// on Linux, unless from loopback, [`UNSENT_LOWAT`]).
    ///
    /// # Errors
    ///
    /// An accept error, or a closed in-memory network.
    pub async fn accept(&mut self) -> std::io::Result<(BoxStream, SocketAddr)> {
        match self {
            Self::Tcp(l) => {
                let (stream, addr) = l.accept().await?;
                let _ = stream.set_nodelay(true);
                // Loopback has no uplink to queue behind, and the limit costs wake-ups (4 %
                // more CPU on the 256 MiB ring here).
                #[cfg(any(target_os = "linux", target_os = "android"))]
                if !addr.ip().is_loopback() {
                    let _ = socket2::SockRef::from(&stream).set_tcp_notsent_lowat(UNSENT_LOWAT);
                }
                Ok((Box::new(stream), addr))
            }
            Self::Mem(l) => l.rx.recv().await.ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "in-memory network closed")
            }),
        }
    }

    /// The in-memory network it listens on; `None` for TCP. A node that must connect
    /// somewhere (the owner probing a reported source) does so on its own network.
    pub fn mem_net(&self) -> Option<Arc<MemNet>> {
        match self {
            Self::Tcp(_) => None,
            Self::Mem(l) => Some(l.net.clone()),
        }
    }

    /// The address it listens on.
    ///
    /// # Errors
    ///
    /// As [`TcpListener::local_addr`].
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            Self::Tcp(l) => l.local_addr(),
            Self::Mem(l) => Ok(l.addr),
        }
    }
}

impl Endpoint {
    /// An endpoint on 127.0.0.1.
    pub fn local(port: u16) -> Self {
        Self {
            host: "127.0.0.1".into(),
            port,
            mem: None,
            from: 0,
        }
    }

    /// `addr` on `net` (in memory), or on TCP when `net` is `None`.
    pub fn on(net: Option<&Arc<MemNet>>, addr: SocketAddr) -> Self {
        match net {
            Some(n) => n.endpoint(addr.port()),
            None => Self {
                host: addr.ip().to_string(),
                port: addr.port(),
                mem: None,
                from: 0,
            },
        }
    }

    /// `addr` (a port or `HOST:PORT`, as another node reported it) on this endpoint's
    /// network: in memory, for the same connecting node, when this one is.
    ///
    /// # Errors
    ///
    /// `addr` is not an endpoint.
    pub fn sibling(&self, addr: &str) -> Result<Self, ParseEndpointError> {
        let parsed: Self = addr.parse()?;
        Ok(match &self.mem {
            Some(net) => net.endpoint_from(self.from, parsed.port),
            None => parsed,
        })
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Opens a connection: TCP (with [`CONNECT_TIMEOUT`]), or on the endpoint's in-memory
    /// network. Returns the stream and the other side's address.
    ///
    /// # Errors
    ///
    /// As [`Endpoint::connect`]; `ConnectionRefused` where nothing listens in memory.
    pub async fn connect_stream(&self) -> std::io::Result<(BoxStream, String)> {
        if let Some(net) = &self.mem {
            return net.connect(self.from, self.port).await;
        }
        let stream = self.connect().await?;
        let remote = stream
            .peer_addr()
            .map_or_else(|_| self.to_string(), |a| a.to_string());
        Ok((Box::new(stream), remote))
    }

    /// Opens a TCP connection, with [`CONNECT_TIMEOUT`].
    ///
    /// # Errors
    ///
    /// The connect or name-lookup error, or a timeout.
    pub async fn connect(&self) -> std::io::Result<TcpStream> {
        let addr = (self.host.as_str(), self.port);
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The error for a string that is neither a port nor `HOST:PORT`.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid endpoint {}: expected a port (5001) or HOST:PORT (10.0.0.2:5001, [::1]:5001)",
    crate::manifest::echo(.0)
)]
pub struct ParseEndpointError(String);

impl FromStr for Endpoint {
    type Err = ParseEndpointError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseEndpointError(s.to_string());
        if let Ok(port) = s.parse::<u16>() {
            return Ok(Self::local(port));
        }
        let (host, port) = s.rsplit_once(':').ok_or_else(err)?;
        let port = port.parse::<u16>().map_err(|_| err())?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        // A host name or address is printable ASCII: no '/', no spaces, and none of the
        // control or bidirectional characters that an address from another node could carry
        // into a log line.
        if host.is_empty() || !host.bytes().all(|b| b.is_ascii_graphic() && b != b'/') {
            return Err(err());
        }
        Ok(Self {
            host: host.to_string(),
            port,
            mem: None,
            from: 0,
        })
    }
}

/// The one backoff rule of every reconnecting part: the wait before the next attempt starts
/// short, doubles after each attempt that made no progress, is capped, and starts again only
/// after real progress (which the caller judges: a chunk stored, a session that lasted). A
/// session that fails at once (a bad message, a full disk, a file that changed) is so retried
/// ever more slowly, not in a storm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    start: Duration,
    max: Duration,
    next: Duration,
}

impl Default for Backoff {
    /// A connection's: from [`BACKOFF_START`], doubling to [`BACKOFF_MAX`].
    fn default() -> Self {
        Self::new(BACKOFF_START, BACKOFF_MAX)
    }
}

impl Backoff {
    /// Waits from `start`, doubling up to `max`.
    pub const fn new(start: Duration, max: Duration) -> Self {
        Self {
            start,
            max,
            next: start,
        }
    }

    /// The wait before the next attempt; the one after it is twice as long, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        d
    }

    /// Starts again from the shortest wait (after real progress).
    pub fn reset(&mut self) {
        self.next = self.start;
    }

    /// Books how an attempt went: progress starts the waits again from the shortest.
    /// Returns `progressed`.
    pub fn after(&mut self, progressed: bool) -> bool {
        if progressed {
            self.reset();
        }
        progressed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ports_and_host_ports() {
        assert_eq!(
            "5001".parse::<Endpoint>().unwrap().to_string(),
            "127.0.0.1:5001"
        );
        assert_eq!(
            "example.org:80".parse::<Endpoint>().unwrap().to_string(),
            "example.org:80"
        );
        assert_eq!(
            "[::1]:7".parse::<Endpoint>().unwrap().to_string(),
            "[::1]:7"
        );
        for bad in [
            "",
            "x",
            "70000",
            "host:",
            ":5",
            "a b:5",
            "a\x1b]0;t\x07b:5",
            "a\nb:5",
            "evil\u{202e}:5",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad:?}");
        }
        // The error repeats what was given escaped, and at most 100 bytes of it.
        let long = format!("\x1b[2J{}", "h".repeat(100_000));
        let e = long.parse::<Endpoint>().unwrap_err().to_string();
        assert!(e.starts_with("invalid endpoint \"\\u{1b}[2Jhhh"), "{e}");
        assert!(e.len() < 300 && !e.contains('\x1b'), "{e}");
    }

    #[test]
    fn backoff_is_capped() {
        let mut b = Backoff::default();
        let delays: Vec<_> = (0..10).map(|_| b.next_delay()).collect();
        assert_eq!(delays[0], BACKOFF_START);
        assert_eq!(*delays.last().unwrap(), BACKOFF_MAX);
        b.reset();
        assert_eq!(b.next_delay(), BACKOFF_START);
    }

    /// A burst of 300 connections to a listener that is not accepting yet is queued whole:
    /// with std's backlog of 128, the rest waited on SYN retries for as long as nobody
    /// accepted.
    #[tokio::test]
    async fn a_burst_of_connections_waits_in_the_listen_queue() {
        let listener = listen(([127, 0, 0, 1], 0).into()).unwrap();
        let addr = listener.local_addr().unwrap();
        let connects = (0..300).map(|_| TcpStream::connect(addr));
        let all =
            tokio::time::timeout(Duration::from_secs(30), futures::future::join_all(connects))
                .await
                .expect("connections still waiting after 30 s: the listen queue is too short");
        assert!(all.iter().all(Result::is_ok), "a connect failed");
        drop(listener);
    }
}
