//! The live dashboard of `file-owner --http PORT`: the page at `/` (embedded: no CDN, no
//! build step), a snapshot of the swarm at `GET /api/swarm`, and the same snapshot pushed
//! every [`UPDATE_EVERY`] as Server-Sent Events at `GET /api/events`.
//!
//! A snapshot is the directory's [`SwarmView`] plus, per member, its download rate and, per
//! file, its ticket. A rate is the chunk bytes the member gained per second between two
//! samples of its count at least [`RATE_SAMPLE`] apart: the dashboard's task samples every
//! member each [`UPDATE_EVERY`] whether or not anyone watches, so that a page loaded
//! mid-transfer draws real rates at once; a member sampled only once so far has no rate
//! (the page shows "—"), never a made-up 0. One task
//! builds each snapshot once for every client; each client's queue holds at most
//! [`CLIENT_QUEUE`] snapshots, and a client that falls further behind is dropped (its
//! browser reconnects at once, `retry: 1000`), never buffered without limit.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::response::sse::{Event, Sse};
use serde::Serialize;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::directory::Directory;
use crate::directory::view::SwarmView;

/// How often the page is sent a new snapshot.
pub const UPDATE_EVERY: Duration = Duration::from_secs(1);
/// Snapshots queued for one client at most; a client further behind is dropped.
pub const CLIENT_QUEUE: usize = 4;
/// The least time between two samples of a member's count for its rate.
pub const RATE_SAMPLE: Duration = Duration::from_millis(500);

/// The page, its script and style in one file.
pub const PAGE: &str = include_str!("dashboard.html");

/// What the dashboard knows besides the directory.
pub struct Dashboard {
    directory: Arc<Directory>,
    /// The directory as tickets name it (`HOST:PORT`), if tickets are shown.
    ticket_host: Option<String>,
    /// The directory's key, which tickets pin.
    ticket_node: Option<crate::key::NodeId>,
    /// Per (file id, member): when its count was last sampled, that count, and its rate
    /// (`None` until it has been sampled twice).
    last: Mutex<HashMap<(u32, String), Sample>>,
    feed: broadcast::Sender<Arc<str>>,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dashboard")
    }
}

/// A member's count when sampled, and the rate measured then.
type Sample = (Instant, u32, Option<f64>);

/// A snapshot as sent.
#[derive(Serialize)]
struct FeedSnapshot<'a> {
    #[serde(flatten)]
    view: &'a SwarmView,
    /// Per file id (as a string), its ticket.
    tickets: HashMap<String, String>,
    /// Per "FILE_ID ADDR", the member's download rate in bytes per second; absent for a
    /// member not yet sampled twice.
    rates: HashMap<String, f64>,
    /// When the snapshot was taken, in milliseconds since the Unix epoch.
    now_unix_ms: u64,
}

impl Dashboard {
    /// A dashboard of `directory`; tickets name `ticket_host` if given, and pin `ticket_node`.
    pub fn new(
        directory: Arc<Directory>,
        ticket_host: Option<String>,
        ticket_node: Option<crate::key::NodeId>,
    ) -> Arc<Self> {
        let (feed, _) = broadcast::channel(CLIENT_QUEUE);
        Arc::new(Self {
            directory,
            ticket_host,
            ticket_node,
            last: Mutex::new(HashMap::new()),
            feed,
        })
    }

    /// Samples every member's count now (see the module's notes); members gone are
    /// forgotten. Returns the rates, by "FILE_ID ADDR", of the members that have one.
    fn sample(
        &self,
        members: impl IntoIterator<Item = (u32, String, u32, u64)>,
    ) -> HashMap<String, f64> {
        let now = Instant::now();
        let mut rates = HashMap::new();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let mut seen = HashMap::with_capacity(last.len());
        for (file, addr, count, chunk_size) in members {
            let entry = match last.get(&(file, addr.clone())) {
                // Too soon after the last sample (another client's request): keep it.
                Some(&(t, held, rate)) if now.duration_since(t) < RATE_SAMPLE => (t, held, rate),
                Some(&(t, held, _)) => {
                    let dt = now.duration_since(t).as_secs_f64();
                    let gained = f64::from(count.saturating_sub(held));
                    (now, count, Some(gained * chunk_size as f64 / dt))
                }
                None => (now, count, None),
            };
            if let Some(rate) = entry.2 {
                rates.insert(format!("{file} {addr}"), rate);
            }
            seen.insert((file, addr), entry);
        }
        *last = seen;
        rates
    }

    /// The swarm now, as JSON.
    pub fn snapshot(&self) -> String {
        let view = self.directory.view();
        let rates = self.sample(view.files.iter().flat_map(|f| {
            f.members
                .iter()
                .map(|m| (f.file.id, m.addr.clone(), m.count, f.file.chunk_size))
        }));
        let tickets = self
            .ticket_host
            .as_ref()
            .map(|host| {
                view.files
                    .iter()
                    .filter_map(|f| {
                        let m = self.directory.manifest(f.file.id as usize - 1)?;
                        Some((
                            f.file.id.to_string(),
                            crate::ticket::Ticket::new(host.clone(), &m, self.ticket_node)
                                .to_string(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let snap = FeedSnapshot {
            view: &view,
            tickets,
            rates,
            now_unix_ms: u64::try_from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis(),
            )
            .unwrap_or(u64::MAX),
        };
        serde_json::to_string(&snap).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The page, with the swarm now inlined so that it draws before the feed's first event.
    /// The JSON's `<` are escaped, so no name can end the script element.
    pub fn page(&self) -> String {
        let json = self.snapshot().replace('<', "\\u003c");
        PAGE.replacen(
            "<!--INITIAL-->",
            &format!("<script id=\"initial\" type=\"application/json\">{json}</script>"),
            1,
        )
    }

    /// Samples every member's count every [`UPDATE_EVERY`], and builds a snapshot then
    /// while some client listens, until `token`.
    pub async fn run(self: Arc<Self>, token: CancellationToken) {
        let mut tick = tokio::time::interval(UPDATE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = token.cancelled() => return,
                _ = tick.tick() => {}
            }
            if self.feed.receiver_count() > 0 {
                let _ = self.feed.send(Arc::from(self.snapshot()));
            } else {
                self.sample(self.directory.member_counts());
            }
        }
    }

    /// The live feed for one client: the swarm now, then every new snapshot; it ends when
    /// the client falls more than [`CLIENT_QUEUE`] snapshots behind. `place` (the client
    /// address's event-stream place, if any) is held until the feed ends.
    pub fn events(
        self: &Arc<Self>,
        place: Option<crate::http::limits::Place>,
    ) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>> + use<>> {
        crate::http::feed::sse(self.snapshot(), self.feed.subscribe(), "swarm", place)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunkset::ChunkSet;
    use crate::manifest::Manifest;
    use crate::protocol::Role;

    fn rates(d: &Dashboard) -> serde_json::Value {
        let snap: serde_json::Value = serde_json::from_str(&d.snapshot()).unwrap();
        snap["rates"].clone()
    }

    /// A member sampled once has no rate (the page shows "—"), not a rate of 0; sampled again
    /// at least `RATE_SAMPLE` later, it has what it gained per second.
    #[tokio::test(start_paused = true)]
    async fn a_rate_needs_two_samples() {
        let m = Manifest::for_tests(10);
        let directory = Arc::new(Directory::new(
            vec![Arc::new(m.clone())],
            "127.0.0.1:1".parse().unwrap(),
            crate::directory::DEFAULT_PEER_TTL,
        ));
        let id = directory
            .register(
                0,
                "127.0.0.1:9".parse().unwrap(),
                Role::Getter,
                ChunkSet::new(10),
                None,
            )
            .unwrap();
        let d = Dashboard::new(directory.clone(), None, None);
        assert_eq!(rates(&d), serde_json::json!({}), "sampled once: no rate");
        let mut gained = ChunkSet::new(10);
        gained.insert(m.chunk_id(0).unwrap());
        gained.insert(m.chunk_id(1).unwrap());
        directory.add_chunks(id, &gained);
        tokio::time::advance(Duration::from_secs(2)).await;
        // As the dashboard's task does between snapshots, with no one watching.
        d.sample(directory.member_counts());
        let want = 2.0 * m.chunk_size as f64 / 2.0;
        assert_eq!(rates(&d), serde_json::json!({ "1 127.0.0.1:9": want }));
    }
}
