//! Checking a source a getter reported lost (`source_lost`): the owner tries it itself and
//! drops it from the directory only when it cannot reach it either.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};

use super::Files;
use crate::directory::Directory;

/// How long the owner's probe may take to connect.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// A getter could not reach `addr`: if it is a member and the owner cannot reach it either
/// (within [`PROBE_TIMEOUT`]), it is dropped from the directory at once. Probes are limited
/// (see [`Directory::start_probe`]); they run on the owner's own network, `net` (`None`: TCP).
pub(super) fn check_lost_source(
    (directory, files): (&Arc<Directory>, &Arc<Files>),
    net: Option<&Arc<crate::net::MemNet>>,
    addr: &str,
    reporter: &str,
) {
    let Ok(sa) = addr.parse::<SocketAddr>() else {
        warn!(from = %reporter, "source_lost names {addr:?}, not an IP:PORT; ignored");
        return;
    };
    if !directory.start_probe(sa) {
        debug!(from = %reporter, "source_lost names {sa}: not a member, or probed lately; ignored");
        return;
    }
    let (directory, files) = (directory.clone(), files.clone());
    let reporter = reporter.to_string();
    let target = crate::net::Endpoint::on(net, sa);
    tokio::spawn(async move {
        let probe = tokio::time::timeout(PROBE_TIMEOUT, target.connect_stream()).await;
        directory.end_probe();
        if matches!(probe, Ok(Ok(_))) {
            info!(from = %reporter, "{sa} reported lost but answers; kept");
        } else {
            let (dropped, left) = directory.drop_addr(sa);
            files.forget(&left.freed);
            if dropped > 0 {
                info!(from = %reporter, "{sa} reported lost and unreachable; dropped from the directory");
            }
        }
    });
}
