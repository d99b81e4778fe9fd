//! The DHT as the engine sees it ([`Discovery`]), the key a file is announced under
//! ([`key_of`]), and the real one ([`Mainline`]).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures::future::BoxFuture;

use crate::hash::Hash;

/// How often a file is announced again.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(15 * 60);
/// The most addresses one lookup returns.
pub const MAX_LOOKUP: usize = 64;
/// How long one lookup may take.
pub const LOOKUP_LIMIT: Duration = Duration::from_secs(20);
/// What the key is derived with (see the module's notes).
pub const KEY_CONTEXT: &[u8] = b"ringswarm dht v1 ";

/// The DHT key of the file whose hash is `hash`.
pub fn key_of(hash: &Hash) -> [u8; 20] {
    let mut h = blake3::Hasher::new();
    h.update(KEY_CONTEXT);
    h.update(hash.as_bytes());
    let mut key = [0u8; 20];
    key.copy_from_slice(&h.finalize().as_bytes()[..20]);
    key
}

/// A DHT as the engine uses it: announce a key, look one up.
pub trait Discovery: Send + Sync + std::fmt::Debug {
    /// Announces that this node serves `key` on `port`; why it could not, in words.
    fn announce(&self, key: [u8; 20], port: u16) -> BoxFuture<'_, Result<(), String>>;
    /// The addresses announced for `key` (at most [`MAX_LOOKUP`], within [`LOOKUP_LIMIT`]).
    fn lookup(&self, key: [u8; 20]) -> BoxFuture<'_, Vec<SocketAddr>>;

    /// The first addresses found for `key`, as soon as there are some (a lookup's first
    /// answers and those within [`FIRST_GRACE`] of them); all of [`Discovery::lookup`] if the
    /// DHT cannot tell them apart.
    fn lookup_first(&self, key: [u8; 20]) -> BoxFuture<'_, Vec<SocketAddr>> {
        self.lookup(key)
    }
}

/// How long a lookup's first answers wait for more before they are tried.
pub const FIRST_GRACE: Duration = Duration::from_millis(100);

/// How to run the real DHT.
#[derive(Clone, Debug, Default)]
pub struct DhtOptions {
    /// Bootstrap nodes (`HOST:PORT`); `None`: the public mainline bootstrap nodes.
    pub bootstrap: Option<Vec<String>>,
    /// The UDP port; `None` or 0: any free one (never the mainline default, 6881, which
    /// another client on the machine may hold).
    pub port: Option<u16>,
    /// The address to bind; `None`: all (0.0.0.0).
    pub bind: Option<Ipv4Addr>,
    /// Answer other nodes' queries (a bootstrap node does); a client only asks.
    pub server: bool,
}

/// The real mainline DHT (its own thread and UDP socket).
pub struct Mainline(mainline::async_dht::AsyncDht);

impl std::fmt::Debug for Mainline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mainline")
    }
}

impl Mainline {
    /// Starts a DHT node of `options`.
    ///
    /// # Errors
    ///
    /// The UDP socket cannot be bound.
    pub fn start(options: &DhtOptions) -> std::io::Result<Self> {
        let mut b = mainline::Dht::builder();
        match &options.bootstrap {
            Some(list) if list.is_empty() => {
                b.no_bootstrap();
            }
            Some(list) => {
                b.bootstrap(list);
            }
            None => {}
        }
        b.port(options.port.unwrap_or(0));
        if let Some(bind) = options.bind {
            b.bind_address(bind);
        }
        if options.server {
            b.server_mode();
        }
        Ok(Self(b.build()?.as_async()))
    }

    /// The UDP address it listens on.
    pub async fn local_addr(&self) -> SocketAddr {
        self.0.info().await.local_addr().into()
    }

    /// The addresses announced for `key`: all the lookup finds (within [`LOOKUP_LIMIT`]), or
    /// with `first`, those of its first answers and [`FIRST_GRACE`] after them.
    async fn collect(&self, key: [u8; 20], first: bool) -> Vec<SocketAddr> {
        use futures::StreamExt;
        let Ok(id) = mainline::Id::from_bytes(key) else {
            return Vec::new();
        };
        let mut found: Vec<SocketAddr> = Vec::new();
        let mut stream = self.0.get_peers(id);
        let deadline = tokio::time::Instant::now() + LOOKUP_LIMIT;
        let mut until = deadline;
        while found.len() < MAX_LOOKUP {
            let Ok(Some(batch)) = tokio::time::timeout_at(until, stream.next()).await else {
                break;
            };
            for a in batch.into_iter().map(SocketAddr::V4) {
                if !found.contains(&a) {
                    found.push(a);
                }
            }
            if first && !found.is_empty() {
                until = until.min(tokio::time::Instant::now() + FIRST_GRACE);
            }
        }
        found.truncate(MAX_LOOKUP);
        found
    }

    /// The nodes in its routing table now.
    pub async fn routing_table_len(&self) -> usize {
        self.0.to_bootstrap().await.len()
    }
}

impl Discovery for Mainline {
    fn announce(&self, key: [u8; 20], port: u16) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let id = mainline::Id::from_bytes(key).map_err(|e| e.to_string())?;
            self.0
                .announce_peer(id, Some(port))
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        })
    }

    fn lookup(&self, key: [u8; 20]) -> BoxFuture<'_, Vec<SocketAddr>> {
        Box::pin(self.collect(key, false))
    }

    fn lookup_first(&self, key: [u8; 20]) -> BoxFuture<'_, Vec<SocketAddr>> {
        Box::pin(self.collect(key, true))
    }
}
