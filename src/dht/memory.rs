//! An in-memory stand-in for the DHT ([`MemoryDht`]): every handle of one network sees every
//! announcement at once. For tests and the simulator, where the real one (its own thread,
//! clock and sockets) must not run.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use super::discovery::{Discovery, MAX_LOOKUP};

/// One node's handle on an in-memory DHT: it announces from `ip`.
#[derive(Clone, Debug)]
pub struct MemoryDht {
    ip: IpAddr,
    table: Arc<Mutex<HashMap<[u8; 20], Vec<SocketAddr>>>>,
}

impl MemoryDht {
    /// A new, empty network, and a handle on it announcing from `ip`.
    pub fn new(ip: IpAddr) -> Self {
        Self {
            ip,
            table: Arc::default(),
        }
    }

    /// Another handle on the same network, announcing from `ip`.
    #[must_use]
    pub fn handle(&self, ip: IpAddr) -> Self {
        Self {
            ip,
            table: self.table.clone(),
        }
    }

    /// Adds `addr` under `key` as if it had announced itself (a node that is gone, a liar).
    pub fn insert(&self, key: [u8; 20], addr: SocketAddr) {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let list = table.entry(key).or_default();
        if !list.contains(&addr) {
            list.push(addr);
        }
    }

    /// The addresses under `key` now.
    pub fn get(&self, key: &[u8; 20]) -> Vec<SocketAddr> {
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        table.get(key).cloned().unwrap_or_default()
    }
}

impl Discovery for MemoryDht {
    fn announce(&self, key: [u8; 20], port: u16) -> BoxFuture<'_, Result<(), String>> {
        self.insert(key, SocketAddr::new(self.ip, port));
        Box::pin(async { Ok(()) })
    }

    fn lookup(&self, key: [u8; 20]) -> BoxFuture<'_, Vec<SocketAddr>> {
        let mut found = self.get(&key);
        found.truncate(MAX_LOOKUP);
        Box::pin(async move { found })
    }
}
