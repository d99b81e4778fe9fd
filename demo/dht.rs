//! A simulated run's DHT (`demo --sim --dht`): the in-memory stand-in
//! ([`ringswarm::dht::MemoryDht`]) on every node, the owner's crash (`--owner-crash`) and the
//! peers that start after it, which find their sources there as `peer join TICKET --dht`
//! would. The real DHT (its own thread, clock and sockets) is never on this path.

use std::sync::{Arc, Mutex};

use ringswarm::dht::{Discovery, MemoryDht, Resolved};
use ringswarm::manifest::Manifest;
use ringswarm::peer;
use ringswarm::ticket::Ticket;
use tokio_util::sync::CancellationToken;

/// The stand-in, the ticket the peers hold, and whether the owner is gone.
pub struct SimDht {
    table: MemoryDht,
    ticket: Ticket,
    /// Cancelled when the owner crashed.
    pub owner_gone: CancellationToken,
}

impl SimDht {
    /// A new stand-in for `manifest`, shared by the owner at `owner_port` whose key is `node`.
    pub fn new(manifest: &Manifest, owner_port: u16, node: ringswarm::key::NodeId) -> Self {
        let loopback = std::net::Ipv4Addr::LOCALHOST.into();
        Self {
            table: MemoryDht::new(loopback),
            ticket: Ticket::new(format!("127.0.0.1:{owner_port}"), manifest, Some(node)),
            owner_gone: CancellationToken::new(),
        }
    }

    /// A node's handle on the stand-in (every node of a simulation is on 127.0.0.1).
    pub fn handle(&self) -> Arc<dyn Discovery> {
        Arc::new(self.table.handle(std::net::Ipv4Addr::LOCALHOST.into()))
    }

    /// The owner announces its file on `port` until `token` is cancelled.
    pub fn announce_owner(&self, port: u16, token: CancellationToken) {
        let hash = self.ticket.hash;
        let keys = move || vec![(hash, ringswarm::dht::key_of(&hash))];
        tokio::spawn(ringswarm::dht::announce_every(
            self.handle(),
            keys,
            port,
            token,
        ));
    }

    /// `config` for a peer (re)starting at `now`: while the owner is up, as it is; once it
    /// is gone, a getter of the first source the DHT names that serves the file, the
    /// ticket's directory asked first (as `peer join TICKET --dht`).
    pub async fn start(&self, config: peer::Config, now: f64, label: &str) -> peer::Config {
        if !self.owner_gone.is_cancelled() {
            return config;
        }
        let dht = self.handle();
        let found = ringswarm::dht::resolve(&self.ticket, &config.owner, &config.identity, &*dht);
        match found.await {
            Ok(Resolved::Source { source, named, .. }) => {
                println!(
                    "{now:8.3}s  peer {label}: no directory; the DHT named {named} node(s): fetching from {source}"
                );
                let pin = Ticket {
                    node: None,
                    ..self.ticket.clone()
                };
                peer::Config {
                    get: Some(peer::GetConfig {
                        max_sources: peer::DEFAULT_MAX_SOURCES,
                    }),
                    join: false,
                    pin: Some(pin),
                    neighbour: source.clone(),
                    owner: source,
                    ..config
                }
            }
            Ok(Resolved::Directory) => config,
            Err(why) => {
                println!("{now:8.3}s  peer {label}: {why}");
                config
            }
        }
    }
}

/// Which peers the run still waits for: the first completion and the last are moments the
/// run acts on (the owner's crash; the end of the getters' serving).
pub struct Finish {
    awaited: Mutex<Vec<bool>>,
    /// Cancelled when a peer first holds the whole file.
    pub first: CancellationToken,
    /// Cancelled when every awaited peer has completed.
    pub all: CancellationToken,
}

impl Finish {
    /// Waits for each peer whose `awaited` is true.
    pub fn new(awaited: Vec<bool>) -> Self {
        Self {
            awaited: Mutex::new(awaited),
            first: CancellationToken::new(),
            all: CancellationToken::new(),
        }
    }

    /// Peer `i` completed.
    pub fn completed(&self, i: usize) {
        self.first.cancel();
        let mut awaited = self.awaited.lock().unwrap_or_else(|p| p.into_inner());
        awaited[i] = false;
        if !awaited.contains(&true) {
            self.all.cancel();
        }
    }
}
