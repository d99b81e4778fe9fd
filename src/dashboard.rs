//! The live dashboard of `file-owner --http PORT`: the page at `/` (embedded: no CDN, no
//! build step), a snapshot of the swarm at `GET /api/swarm`, and the same snapshot pushed
//! every [`UPDATE_EVERY`] as Server-Sent Events at `GET /api/events`.
//!
//! A snapshot is the directory's [`SwarmView`] plus, per member, its download rate (chunk
//! bytes gained per second since the last snapshot) and, per file, its ticket. One task
//! builds each snapshot once for every client; each client's queue holds at most
//! [`CLIENT_QUEUE`] snapshots, and a client that falls further behind is dropped (its
//! browser reconnects at once, `retry: 1000`), never buffered without limit.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
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
const RATE_SAMPLE: Duration = Duration::from_millis(500);

/// The page, its script and style in one file.
pub const PAGE: &str = include_str!("dashboard.html");

/// What the dashboard knows besides the directory.
pub struct Dashboard {
    directory: Arc<Directory>,
    /// The directory as tickets name it (`HOST:PORT`), if tickets are shown.
    ticket_host: Option<String>,
    /// Per (file id, member): when its count was last sampled, that count, and its rate.
    last: Mutex<HashMap<(u32, String), Sample>>,
    feed: broadcast::Sender<Arc<str>>,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dashboard")
    }
}

/// A member's count when sampled, and the rate measured then.
type Sample = (Instant, u32, f64);

/// A snapshot as sent.
#[derive(Serialize)]
struct Snapshot<'a> {
    #[serde(flatten)]
    view: &'a SwarmView,
    /// Per file id (as a string), its ticket.
    tickets: HashMap<String, String>,
    /// Per "FILE_ID ADDR", the member's download rate in bytes per second.
    rates: HashMap<String, f64>,
    /// When the snapshot was taken, in milliseconds since the Unix epoch.
    now_unix_ms: u64,
}

impl Dashboard {
    /// A dashboard of `directory`; tickets name `ticket_host` if given.
    pub fn new(directory: Arc<Directory>, ticket_host: Option<String>) -> Arc<Self> {
        let (feed, _) = broadcast::channel(CLIENT_QUEUE);
        Arc::new(Self {
            directory,
            ticket_host,
            last: Mutex::new(HashMap::new()),
            feed,
        })
    }

    /// The swarm now, as JSON.
    pub fn snapshot(&self) -> String {
        let view = self.directory.view();
        let now = Instant::now();
        let mut rates = HashMap::new();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let mut seen = HashMap::with_capacity(last.len());
        for f in &view.files {
            for m in &f.members {
                let key = (f.file.id, m.addr.clone());
                let entry = match last.get(&key) {
                    // Too soon after the last sample (another client's request): keep it.
                    Some(&(t, count, rate)) if now.duration_since(t) < RATE_SAMPLE => {
                        (t, count, rate)
                    }
                    Some(&(t, count, _)) => {
                        let dt = now.duration_since(t).as_secs_f64();
                        let gained = f64::from(m.count.saturating_sub(count));
                        (now, m.count, gained * f.file.chunk_size as f64 / dt)
                    }
                    None => (now, m.count, 0.0),
                };
                rates.insert(format!("{} {}", f.file.id, m.addr), entry.2);
                seen.insert(key, entry);
            }
        }
        *last = seen;
        drop(last);
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
                            crate::ticket::Ticket::new(host.clone(), &m).to_string(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let snap = Snapshot {
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

    /// Builds a snapshot every [`UPDATE_EVERY`] while some client listens, until `token`.
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
        use futures::StreamExt;
        let rx = self.feed.subscribe();
        let first = self.snapshot();
        let head = futures::stream::once(async move { first });
        let tail = futures::stream::unfold(rx, |mut rx| async move {
            // Lagged: this client is dropped; closed: the owner is stopping.
            let s = rx.recv().await.ok()?;
            Some((s.to_string(), rx))
        });
        let stream = head.chain(tail).map(move |data| {
            let _held = &place;
            Ok(Event::default()
                .event("swarm")
                .retry(Duration::from_secs(1))
                .data(data))
        });
        Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
    }
}
