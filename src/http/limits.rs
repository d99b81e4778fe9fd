//! What one client may hold of an HTTP side, so that no client locks the others out: at most
//! [`MAX_CONNECTIONS_PER_ADDRESS`] connections and [`MAX_EVENT_STREAMS_PER_ADDRESS`] event
//! streams (`GET /api/events`) per client address, under the server's own cap of
//! [`super::MAX_HTTP_CONNECTIONS`]. A connection over its address's cap is answered 429 and
//! closed at once, before it asks anything; an event stream over it is answered 429 (with
//! `Connection: close`). Each refusal is counted in [`HttpRefusals`] (`/metrics`).
//!
//! An address is an IPv4 address, or an IPv6 address's /64 (one host usually holds a whole
//! /64); an IPv4-mapped IPv6 address counts as its IPv4 address.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use crate::metrics::{HttpRefusal, HttpRefusals};

/// Connections one client address may hold open at once.
pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 32;
/// Event streams (`GET /api/events`) one client address may hold open at once: a dashboard
/// tab holds one.
pub const MAX_EVENT_STREAMS_PER_ADDRESS: usize = 8;

/// The per-address caps of one HTTP side, and what they refused.
#[derive(Debug)]
pub struct Limits {
    connections: Arc<PerAddress>,
    event_streams: Arc<PerAddress>,
    refused: HttpRefusals,
}

impl Limits {
    /// The default caps, counting refusals in `refused`.
    pub fn new(refused: HttpRefusals) -> Arc<Self> {
        Arc::new(Self {
            connections: PerAddress::new(MAX_CONNECTIONS_PER_ADDRESS),
            event_streams: PerAddress::new(MAX_EVENT_STREAMS_PER_ADDRESS),
            refused,
        })
    }

    /// A connection's place for a client at `ip`, or `None` (counted) when its address is
    /// at its cap.
    pub fn connection(&self, ip: IpAddr) -> Option<Place> {
        self.take(&self.connections, ip, HttpRefusal::AddressConnections)
    }

    /// An event stream's place for a client at `ip`, or `None` (counted) when its address
    /// is at its cap.
    pub fn event_stream(&self, ip: IpAddr) -> Option<Place> {
        self.take(&self.event_streams, ip, HttpRefusal::AddressEventStreams)
    }

    /// Counts a refusal for `reason`.
    pub fn refused(&self, reason: HttpRefusal) {
        self.refused.count(reason);
    }

    fn take(&self, of: &Arc<PerAddress>, ip: IpAddr, reason: HttpRefusal) -> Option<Place> {
        let place = of.take(ip);
        if place.is_none() {
            self.refused(reason);
        }
        place
    }
}

/// Places under one cap, counted per address. An address is in the map only while it holds
/// a place, so the map holds at most as many entries as places are held.
#[derive(Debug)]
struct PerAddress {
    max: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

impl PerAddress {
    fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            held: Mutex::new(HashMap::new()),
        })
    }

    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<Place> {
        let key = address_key(ip);
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = held.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Place {
            of: self.clone(),
            key,
        })
    }
}

/// One place held under a per-address cap; given back when dropped.
#[derive(Debug)]
pub struct Place {
    of: Arc<PerAddress>,
    key: IpAddr,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut held = self.of.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.key);
            }
        }
    }
}

/// What a client address is counted under: an IPv4 address, or an IPv6 address's /64.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_has_its_own_cap_and_places_come_back() {
        let refused = HttpRefusals::default();
        let limits = Limits::new(refused.clone());
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let held: Vec<Place> = (0..MAX_CONNECTIONS_PER_ADDRESS)
            .map(|_| limits.connection(a).unwrap())
            .collect();
        assert!(limits.connection(a).is_none());
        assert!(limits.connection(b).is_some(), "another address is served");
        assert_eq!(refused.get(HttpRefusal::AddressConnections), 1);
        drop(held);
        assert!(limits.connection(a).is_some(), "places come back");
        assert!(limits.connections.held.lock().unwrap().is_empty());
        let streams: Vec<Place> = (0..MAX_EVENT_STREAMS_PER_ADDRESS)
            .map(|_| limits.event_stream(a).unwrap())
            .collect();
        assert!(limits.event_stream(a).is_none());
        assert!(limits.event_stream(b).is_some());
        assert_eq!(refused.get(HttpRefusal::AddressEventStreams), 1);
        drop(streams);
    }

    #[test]
    fn an_ipv6_64_is_one_address_and_mapped_ipv4_is_ipv4() {
        let k = |s: &str| address_key(s.parse().unwrap());
        assert_eq!(k("2001:db8:1:2::1"), k("2001:db8:1:2:ffff::9"));
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
        assert_eq!(k("::ffff:127.0.0.1"), k("127.0.0.1"));
    }
}
