//! Checking a source a getter or a ring member reported lost (`source_lost`): the owner tries
//! it itself and drops it from the directory only when it does not answer either. A source
//! answers when its upload server replies to a `hello` (with `welcome`, a challenge or an
//! error): a member that registered a port and accepts connections there but never serves is
//! dropped as surely as one that is gone. A publisher reported for bad chunks is counted
//! towards its demotion instead.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};

use super::files::Files;
use crate::chunkset::Ranges;
use crate::directory::{Directory, MemberId};
use crate::protocol::{Message, PROTOCOL_VERSION, Role};
use crate::secure::Identity;

/// How long the owner's probe may take to connect, and then to be answered.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// A getter could not reach `addr`: if it is a member and the owner cannot reach it either
/// (within [`PROBE_TIMEOUT`]), it is dropped from the directory at once. Probes are limited
/// (see [`Directory::start_probe`]); they run on the owner's own network, `net` (`None`: TCP),
/// as the owner (`me`).
pub(super) fn check_lost_source(
    (directory, files): (&Arc<Directory>, &Arc<Files>),
    (net, me): (Option<&Arc<crate::net::MemNet>>, &Arc<Identity>),
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
    let me = me.clone();
    // Only the member itself counts: another node answering at its address does not.
    let pin = directory
        .node_at(sa)
        .and_then(|n| crate::key::NodeId::from_hex(&n));
    crate::task::spawn_named("probe", async move {
        let answers = answers(&target, &me, pin.as_ref()).await;
        directory.end_probe();
        if answers {
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

/// The member `reporter` left the publisher at `addr` for sending bad chunks: counted towards
/// demoting it (see [`Directory::report_bad`]).
pub(super) fn report_bad_source(
    directory: &Directory,
    reporter: MemberId,
    addr: &str,
    label: &str,
) {
    let Ok(sa) = addr.parse::<SocketAddr>() else {
        return;
    };
    let Some(r) = directory.report_bad(reporter, sa) else {
        debug!(from = %label, "bad chunks reported from {sa}, no publisher of its file; ignored");
        return;
    };
    let file = crate::manifest::display_name(&r.file);
    if !r.demoted {
        info!(
            from = %label,
            "publisher {sa} of {file} sent bad chunks ({} of {} reports needed to demote it)",
            r.reports,
            r.needed
        );
    } else if r.publishers_left > 0 {
        warn!(
            "publisher {sa} of {file} sent bad chunks to {} members: demoted; its rings move to another publisher ({} left)",
            r.reports, r.publishers_left
        );
    } else {
        warn!(
            "publisher {sa} of {file} sent bad chunks to {} members: demoted; no trusted publisher of it is left",
            r.reports
        );
    }
}

/// Whether `target` completes a handshake within [`PROBE_TIMEOUT`] (proving the key `pin`,
/// the member's, when known) and answers a getter's `hello` within as long again: any message
/// counts (a `welcome`, an error). The probe then closes.
async fn answers(
    target: &crate::net::Endpoint,
    me: &Identity,
    pin: Option<&crate::key::NodeId>,
) -> bool {
    let Ok(Ok(mut conn)) =
        tokio::time::timeout(PROBE_TIMEOUT, crate::link::connect(target, me, pin, 0)).await
    else {
        return false;
    };
    let hello = Message::Hello {
        version: PROTOCOL_VERSION,
        role: Role::Getter,
        file: None,
        have: Ranges::default(),
        port: None,
        node: None,
    };
    if tokio::time::timeout(PROBE_TIMEOUT, conn.send(hello))
        .await
        .is_err()
    {
        return false;
    }
    // A frame larger than a header (a `welcome` carries the manifest) is cut off by the
    // body limit, and still proves an answer.
    !matches!(
        conn.recv("a probe's answer", PROBE_TIMEOUT).await,
        Err(crate::protocol::ProtocolError::Timeout(_) | crate::protocol::ProtocolError::Io(_))
            | Ok(None)
    )
}
