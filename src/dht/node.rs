//! `peer dht-node`: a plain DHT node (server mode), for a private network's bootstrap. It
//! logs the size of its routing table when it changes, and at most every [`REPORT_EVERY`].

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::discovery::{DhtOptions, Mainline};

/// How often the routing table's size is looked at.
pub const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Runs a DHT node of `options` until `token`; `on_start` is told its UDP address.
///
/// # Errors
///
/// The UDP socket cannot be bound.
pub async fn run_node(
    options: &DhtOptions,
    on_start: impl FnOnce(std::net::SocketAddr),
    token: CancellationToken,
) -> std::io::Result<()> {
    let dht = Mainline::start(&DhtOptions {
        server: true,
        ..options.clone()
    })?;
    on_start(dht.local_addr().await);
    let mut last = None;
    loop {
        let n = dht.routing_table_len().await;
        if last != Some(n) {
            tracing::info!("dht: {n} nodes in the routing table");
            last = Some(n);
        }
        tokio::select! {
            biased;
            () = token.cancelled() => return Ok(()),
            () = tokio::time::sleep(REPORT_EVERY) => {}
        }
    }
}
