//! What the connection to the owner (the directory) does besides fetching: the optional part
//! of a fetch session (see [`super`]). A ring peer's reports a download neighbour that
//! does not serve and publishers that sent bad chunks; a getter's reports the sources it lost
//! and asks where the chunks are. (Registering chunks is the `have` every fetch announces.)

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::info;

use crate::Result;
use crate::chunkset::ChunkSet;
use crate::connection::ConnWriter;
use crate::driver::Flow;
use crate::peer::swarm::Swarm;
use crate::protocol::Message;

/// How long a ring peer's download neighbour may not serve (unreachable, or silent after
/// connecting) before the peer reports it to the directory (`source_lost`), which probes it
/// and drops it from the ring if it does not answer.
pub const REPORT_LOST_AFTER: Duration = Duration::from_secs(2);

/// How often a getter asks the directory where chunks are, while it lacks some (the owner
/// connection's writer asks).
pub const LOCATE_EVERY: Duration = Duration::from_secs(1);

/// What a getter's caller gives its owner connection.
pub(in crate::peer) struct OwnerDuties<'a> {
    /// The sources lost, to report; `None` once the sender is gone.
    pub(in crate::peer) lost_rx: Option<&'a mut mpsc::UnboundedReceiver<String>>,
    /// The chunks the owner has been told of.
    pub(in crate::peer) registered: ChunkSet,
}

/// The owner duties of one fetch session, while it runs.
pub(super) enum Duties<'a> {
    /// A ring peer's: the download neighbour seen down, its address, since when (as seen
    /// here), and when it was last reported.
    Ring(Option<(String, Instant, Option<Instant>)>),
    /// A getter's: the lost sources to report, and when to ask `locate` next.
    Getter {
        lost_rx: Option<&'a mut mpsc::UnboundedReceiver<String>>,
        next_locate: Instant,
    },
}

/// What woke a fetch session's writer besides a request.
pub(super) enum FetchWake {
    /// A source was lost (`None`: no more will be reported).
    Lost(Option<String>),
    /// Time to ask the owner where the file is.
    Locate,
    /// Time to report the download neighbour, or this peer's chunks changed: the writer's
    /// next flush sees to it.
    Changed,
}

impl<'a> Duties<'a> {
    /// A getter's, with `lost_rx`; the first `locate` at once.
    pub(super) fn getter(lost_rx: Option<&'a mut mpsc::UnboundedReceiver<String>>) -> Self {
        Self::Getter {
            lost_rx,
            next_locate: Instant::now(),
        }
    }

    /// Sends the reports that are due (they put off no keep-alive).
    pub(super) async fn flush(&mut self, swarm: &Swarm, writer: &mut ConnWriter) -> Result<()> {
        let Self::Ring(lost) = self else {
            return Ok(());
        };
        if let Some((addr, due)) = lost_neighbour(swarm, lost)
            && due <= Instant::now()
        {
            info!(
                "download neighbour {addr} has not served for {}s; reported to the directory",
                REPORT_LOST_AFTER.as_secs()
            );
            let bad_chunks = false;
            writer
                .send(Message::SourceLost { addr, bad_chunks })
                .await?;
            if let Some((_, _, told)) = lost {
                *told = Some(Instant::now());
            }
        }
        for addr in swarm.take_bad_sources() {
            info!("publisher {addr} sent bad chunks; reported to the directory");
            let bad_chunks = true;
            writer
                .send(Message::SourceLost { addr, bad_chunks })
                .await?;
        }
        Ok(())
    }

    /// Waits for a lost source, a `locate` due, or a report due. Only waits.
    pub(super) async fn wake(&mut self, swarm: &Swarm) -> FetchWake {
        match self {
            Self::Ring(lost) => match lost_neighbour(swarm, lost) {
                Some((_, due)) => tokio::time::sleep_until(due).await,
                None => std::future::pending().await,
            },
            Self::Getter {
                lost_rx,
                next_locate,
            } => {
                let locate_due = !swarm.is_complete();
                let lost = lost_rx.as_deref_mut();
                return tokio::select! {
                    biased;
                    addr = async { lost.expect("guarded").recv().await }, if lost.is_some() => FetchWake::Lost(addr),
                    () = tokio::time::sleep_until(*next_locate), if locate_due => FetchWake::Locate,
                    else => std::future::pending().await,
                };
            }
        }
        FetchWake::Changed
    }

    /// Acts on what [`Duties::wake`] returned.
    pub(super) async fn on_wake(
        &mut self,
        wake: FetchWake,
        swarm: &Swarm,
        writer: &mut ConnWriter,
    ) -> Result<Flow> {
        let Self::Getter {
            lost_rx,
            next_locate,
        } = self
        else {
            return Ok(Flow::Idle);
        };
        match wake {
            FetchWake::Lost(Some(addr)) => {
                let bad_chunks = false;
                writer
                    .send(Message::SourceLost { addr, bad_chunks })
                    .await?;
            }
            FetchWake::Lost(None) => {
                *lost_rx = None;
                return Ok(Flow::Idle);
            }
            FetchWake::Locate => {
                let file = swarm.manifest.name.clone();
                writer.send(Message::Locate { file }).await?;
                *next_locate = Instant::now() + LOCATE_EVERY;
            }
            FetchWake::Changed => return Ok(Flow::Idle),
        }
        Ok(Flow::Sent)
    }
}

/// While the download neighbour does not serve: its address and when to report it (after
/// [`REPORT_LOST_AFTER`], then at most every [`crate::directory::PROBE_EVERY`], when the
/// directory may probe it again). `lost` is what was seen and told so far.
fn lost_neighbour(
    swarm: &Swarm,
    lost: &mut Option<(String, Instant, Option<Instant>)>,
) -> Option<(String, Instant)> {
    let down = swarm.neighbour_down_since();
    let addr = swarm.neighbour.borrow().as_ref().map(ToString::to_string);
    let (Some(addr), Some(down), false) = (addr, down, swarm.is_complete()) else {
        *lost = None;
        return None;
    };
    if lost.as_ref().is_none_or(|(a, _, _)| *a != addr) {
        *lost = Some((addr, down.max(Instant::now()), None));
    }
    let (addr, since, told) = lost.as_ref()?;
    let due = match told {
        Some(t) => *t + crate::directory::PROBE_EVERY,
        None => *since + REPORT_LOST_AFTER,
    };
    Some((addr.clone(), due))
}
