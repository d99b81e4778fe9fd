//! A peer's side of the DHT ([`Config::dht`](super::config::Config::dht)): once whole, it
//! announces its file there for as long as it serves ([`announce`]); while its directory is
//! unreachable, the nodes the DHT names for the file become sources ([`named`],
//! [`getter_sources`]; the ring's fall-back asks too, see [`super::sources`]).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use super::getter::Getter;
use super::swarm::Swarm;
use crate::dht::{MAX_CANDIDATES, key_of};
use crate::net::Backoff;
use crate::task::spawn_tracked;

/// How long a getter's directory must be unreachable before the DHT is asked; the wait
/// between asks then doubles, up to [`DHT_ASK_MAX`], while the directory stays unreachable.
pub const DHT_ASK_AFTER: Duration = Duration::from_secs(2);
/// The longest wait between two asks of the DHT.
pub const DHT_ASK_MAX: Duration = Duration::from_secs(60);

/// With a DHT, announces the (whole, verified) file on this peer's serving port until
/// `child` is cancelled: when the peer stops serving. A getter that does not linger does
/// not serve: it announces nothing.
pub(super) fn announce(swarm: &Swarm, tasks: &TaskTracker, child: &CancellationToken) {
    let Some(dht) = swarm.config.dht.clone() else {
        return;
    };
    let getter = matches!(swarm.mode, super::config::Mode::Getter(_));
    if getter && swarm.config.linger.is_some_and(|l| l.is_zero()) {
        return;
    }
    let hash = swarm.manifest.hash;
    let keys = move || vec![(hash, key_of(&hash))];
    let announcing = crate::dht::announce_every(dht, keys, swarm.port, child.clone());
    spawn_tracked(tasks, "dht-announce", announcing);
}

/// The nodes the DHT names for this peer's file, as `IP:PORT`, at most [`MAX_CANDIDATES`],
/// this peer itself left out; none without a DHT. The lookup's first answers only, unless
/// `full` (see [`crate::dht::Discovery::lookup_first`]). They are untrusted: a source's
/// manifest must match this peer's, and every chunk its hash, as from any other source.
pub(super) async fn named(swarm: &Swarm, full: bool) -> Vec<String> {
    let Some(dht) = &swarm.config.dht else {
        return Vec::new();
    };
    let mine = |a: &std::net::SocketAddr| {
        a.port() == swarm.port && (a.ip().is_loopback() || a.ip().is_unspecified())
    };
    let key = key_of(&swarm.manifest.hash);
    let found = if full {
        dht.lookup(key).await
    } else {
        dht.lookup_first(key).await
    };
    found
        .into_iter()
        .filter(|a| !mine(a))
        .take(MAX_CANDIDATES)
        .map(|a| a.to_string())
        .collect()
}

/// A getter's DHT side: asks the DHT for sources once at start, as BitTorrent clients add
/// the DHT's peers to the tracker's; then, while its directory (the owner link) is
/// unreachable and the file incomplete, again [`DHT_ASK_AFTER`] after the link went down
/// and ever less often. What it names joins the pool. Until `token` is cancelled.
pub(super) async fn getter_sources(getter: Arc<Getter>, token: CancellationToken) {
    let swarm = getter.swarm.clone();
    if swarm.config.dht.is_none() {
        return;
    }
    let first = tokio::select! {
        biased;
        () = token.cancelled() => return,
        named = named(&swarm, false) => named,
    };
    let n = first.len();
    let added = getter.found(first);
    if added > 0 {
        info!("the DHT named {n} node(s) for this file, {added} new: fetching from them too");
    }
    let mut changed = swarm.changed.subscribe();
    let mut wait = Backoff::new(DHT_ASK_AFTER, DHT_ASK_MAX);
    loop {
        // Wait for the directory to be unreachable.
        while swarm.owner_link_up() {
            wait.reset();
            tokio::select! {
                biased;
                () = token.cancelled() => return,
                _ = changed.changed() => {}
            }
        }
        tokio::select! {
            biased;
            () = token.cancelled() => return,
            () = tokio::time::sleep(wait.next_delay()) => {}
        }
        if swarm.is_complete() {
            return;
        }
        if swarm.owner_link_up() {
            continue;
        }
        let addrs = tokio::select! {
            biased;
            () = token.cancelled() => return,
            named = named(&swarm, true) => named,
        };
        let n = addrs.len();
        let added = getter.found(addrs);
        if added > 0 {
            // Pick without the directory's availability: it may never come.
            getter.no_directory();
            info!(
                "the directory is unreachable; the DHT named {n} node(s), {added} new: fetching from them"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::super::getter::choose_sources;
    use super::super::testing::getter;
    use crate::directory::Locations;

    fn addrs(range: std::ops::Range<u16>) -> Vec<String> {
        range.map(|p| format!("10.0.1.1:{p}")).collect()
    }

    #[tokio::test]
    async fn sources_the_dht_names_are_bounded_kept_and_not_counted_twice() {
        let getter = getter().await;
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_eq!(getter.found(addrs(1000..1010)), 10);
        // The owner link's endpoint is connected already.
        assert_eq!(getter.found(vec!["10.0.0.1:5000".into()]), 0);
        // Already known: not again; past the bound: not at all.
        assert_eq!(getter.found(addrs(1005..1100)), super::MAX_CANDIDATES - 10);
        assert_eq!(getter.found(addrs(2000..2010)), 0);
        // A directory's answer that does not list them keeps them.
        let none: Locations = serde_json::from_str(r#"{"sources": []}"#).unwrap();
        getter.located(none);
        let chosen = choose_sources(&getter, 100, &mut rng);
        assert_eq!(chosen.len(), super::MAX_CANDIDATES, "{chosen:?}");
        assert!(chosen.iter().all(|a| a.starts_with("10.0.1.1:1")));
    }
}
