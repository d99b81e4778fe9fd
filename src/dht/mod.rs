//! Discovery without a directory: the BitTorrent mainline DHT (BEP 5), through the `mainline`
//! crate. With `--dht`, a node that serves a whole file announces it in the DHT under a key
//! derived from the file's hash ([`key_of`]); a getter whose ticket's directory is gone finds
//! those nodes there ([`resolve`]) and fetches from them, checking everything as from any
//! source: the manifest must match the hash the ticket pins, and every chunk its hash.
//!
//! **The key** is the first 20 bytes of BLAKE3(`"ringswarm dht v1 "` ‖ the file's 32-byte
//! BLAKE3 hash): 20 bytes, as BEP 5's info-hashes are. Anyone who knows the file's hash
//! (everyone who holds a ticket or the file) can compute it and ask the DHT who announced it:
//! the public DHT learns which addresses and ports share which files, though not their names.
//!
//! **Announcing** ([`announce_every`]) happens at start (a file shared later within
//! [`LOOK_EVERY`]) and then every [`ANNOUNCE_EVERY`] (BEP 5 nodes forget a peer after about
//! 30 minutes); stopping stops it, and the DHT forgets the address within that time.
//!
//! The engine sees the DHT through [`Discovery`], so another implementation (an in-memory one
//! for the simulator) can stand in for the real one.
//!
//! Here: the announcer. `discovery` holds the key, [`Discovery`] and [`Mainline`] (the real
//! DHT); `memory` the in-memory stand-in ([`MemoryDht`]); `resolve` asks the directory first,
//! then the DHT; `node` is `peer dht-node`.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::hash::Hash;

mod discovery;
mod memory;
mod node;
mod resolve;

pub use discovery::{
    ANNOUNCE_EVERY, DhtOptions, Discovery, KEY_CONTEXT, LOOKUP_LIMIT, MAX_LOOKUP, Mainline, key_of,
};
pub use memory::MemoryDht;
pub use node::run_node;
pub use resolve::{ASK_LIMIT, MAX_CANDIDATES, Resolved, resolve};

/// How often the keys to announce are looked at (a new one is announced then).
pub const LOOK_EVERY: Duration = Duration::from_secs(2);

/// Announces each key `keys()` gives on `port`: a new key within [`LOOK_EVERY`], each again
/// every [`ANNOUNCE_EVERY`], until `token`. A failed announce is logged and tried again after
/// the backoff, which grows until one succeeds.
pub async fn announce_every(
    dht: Arc<dyn Discovery>,
    keys: impl Fn() -> Vec<(Hash, [u8; 20])>,
    port: u16,
    token: CancellationToken,
) {
    use std::collections::HashMap;
    use tokio::time::Instant;
    let mut announced: HashMap<[u8; 20], Instant> = HashMap::new();
    let mut backoff = crate::net::Backoff::default();
    let mut retry_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let wanted = keys();
        announced.retain(|k, _| wanted.iter().any(|(_, w)| w == k));
        if retry_at.is_none_or(|t| now >= t) {
            retry_at = None;
            for (hash, key) in wanted {
                if announced
                    .get(&key)
                    .is_some_and(|t| now.duration_since(*t) < ANNOUNCE_EVERY)
                {
                    continue;
                }
                let outcome = tokio::select! {
                    biased;
                    () = token.cancelled() => return,
                    r = dht.announce(key, port) => r,
                };
                match outcome {
                    Ok(()) => {
                        tracing::info!("announced {} in the DHT (port {port})", hash.short());
                        announced.insert(key, now);
                        backoff.reset();
                    }
                    Err(e) => {
                        let wait = backoff.next_delay();
                        tracing::warn!(
                            "announcing {} in the DHT failed ({e}): is a bootstrap node reachable? trying again in {wait:?}",
                            hash.short()
                        );
                        retry_at = Some(now + wait);
                        break;
                    }
                }
            }
        }
        tokio::select! {
            biased;
            () = token.cancelled() => return,
            () = tokio::time::sleep(LOOK_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod resolve_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_20_bytes_of_the_files_hash_under_a_context() {
        let h = Hash::of(b"a file");
        let key = key_of(&h);
        let mut whole = KEY_CONTEXT.to_vec();
        whole.extend_from_slice(h.as_bytes());
        assert_eq!(&key[..], &blake3::hash(&whole).as_bytes()[..20]);
        assert_ne!(key_of(&Hash::of(b"another")), key);
    }
}
