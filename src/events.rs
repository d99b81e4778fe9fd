//! Product events: the six things a peer reports (seed 002), as data.
//!
//! Every event becomes one readable console line (tracing, on stderr, target `event`) and,
//! with `--events FILE`, one JSON line:
//!
//! ```json
//! {"ts":1763775600.123456,"peer":"127.0.0.1:5001","event":"chunk_received","chunk":12,"neighbour":"127.0.0.1:5002","bytes":102400}
//! ```

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// The kinds of event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A verified chunk arrived from `neighbour`.
    ChunkReceived,
    /// A chunk was sent to `neighbour`.
    ChunkSent,
    /// A chunk-ID list arrived from `neighbour` (`count` ids).
    IdListReceived,
    /// A chunk-ID list was sent to `neighbour` (`count` ids).
    IdListSent,
    /// A chunk was requested from `neighbour`.
    ChunkRequested,
    /// `neighbour` asked for a chunk.
    RequestReceived,
    /// This node stopped serving `neighbour` (an uploader's `choke`).
    Choke,
    /// This node started serving `neighbour` (an uploader's `unchoke`).
    Unchoke,
    /// This node told source `neighbour` it wants chunks from it.
    Interested,
    /// This node told source `neighbour` it wants nothing more from it.
    NotInterested,
    /// Source `neighbour` died or broke off; reported to the directory.
    SourceLost,
    /// A verified chunk (or `count` of them, `chunk` the first) was registered with the
    /// directory `neighbour`: this node is a source for it from now on.
    ChunkRegistered,
    /// A joined ring peer's download neighbour is now `neighbour` (empty: none), as the
    /// directory re-stitched its ring.
    NeighbourChanged,
}

impl EventKind {
    /// Every kind, in the order the seed lists them.
    pub const ALL: [EventKind; 6] = [
        Self::ChunkReceived,
        Self::ChunkSent,
        Self::IdListReceived,
        Self::IdListSent,
        Self::ChunkRequested,
        Self::RequestReceived,
    ];
}

/// One event as written to the JSON-lines log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Seconds since the Unix epoch, with microseconds.
    pub ts: f64,
    /// Who reports it: the peer's listen address, or `owner`.
    pub peer: String,
    /// What happened.
    pub event: EventKind,
    /// The chunk, for chunk events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<u32>,
    /// The other side of the connection.
    pub neighbour: String,
    /// Chunk bytes, for chunk_received and chunk_sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Number of ids, for ID lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
}

/// A JSON-lines event file, shareable by several sinks (the demo writes every node's events
/// to one file).
///
/// Lines are buffered, and written by a flusher task on the tokio runtime that is woken by
/// every new line, so a line reaches the file promptly (readers such as tests can act on it at
/// once), while lines that arrive during a write are batched into the next one: one write
/// per event cost a 1 GiB ring nearly half its time. No thread of its own: under a
/// simulation's single-threaded runtime the flusher is one more task. A log made by
/// [`EventLog::create_buffered`] has no flusher and writes only when its buffer fills (for a
/// simulation, whose file nobody reads until the end). What is left is written when the last
/// handle is dropped, or by [`EventLog::flush`].
#[derive(Clone, Debug)]
pub struct EventLog {
    inner: Arc<LogFile>,
}

#[derive(Debug)]
struct LogFile {
    file: Mutex<BufWriter<File>>,
    /// Wakes the flusher; `None` for a buffered log.
    wake: Option<Arc<Notify>>,
}

impl Drop for LogFile {
    fn drop(&mut self) {
        flush_file(&self.file);
        if let Some(wake) = &self.wake {
            // The flusher finds the file gone and ends.
            wake.notify_one();
        }
    }
}

impl EventLog {
    /// Opens `path` for appending (created if missing), with its flusher on the current
    /// tokio runtime (outside one, each line is written as it comes).
    ///
    /// # Errors
    ///
    /// The file cannot be opened.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Self::open(path, 0, None);
        }
        let wake = Arc::new(Notify::new());
        let log = Self::open(path, 64 * 1024, Some(wake.clone()))?;
        // The flusher holds the file only while it writes, so the last handle's drop (and
        // with it the final write) happens where it is dropped.
        let weak: Weak<LogFile> = Arc::downgrade(&log.inner);
        crate::task::spawn_named("event-log-flusher", async move {
            loop {
                wake.notified().await;
                let Some(log) = weak.upgrade() else { return };
                flush_file(&log.file);
            }
        });
        Ok(log)
    }

    /// Opens `path` for appending (created if missing), written only when 1 MiB of lines
    /// has gathered, on [`EventLog::flush`], and when the last handle is dropped.
    ///
    /// # Errors
    ///
    /// The file cannot be opened.
    pub fn create_buffered(path: &Path) -> std::io::Result<Self> {
        Self::open(path, 1 << 20, None)
    }

    fn open(path: &Path, buffer: usize, wake: Option<Arc<Notify>>) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            inner: Arc::new(LogFile {
                file: Mutex::new(BufWriter::with_capacity(buffer, file)),
                wake,
            }),
        })
    }

    /// Writes buffered lines to the file now.
    pub fn flush(&self) {
        flush_file(&self.inner.file);
    }

    fn append(&self, ev: &Event) {
        let mut line = serde_json::to_vec(ev).expect("events serialize");
        line.push(b'\n');
        {
            // Whole lines into the buffer, so a flush never splits one.
            let mut f = self.inner.file.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = f.write_all(&line) {
                tracing::warn!("writing event log: {e}");
            }
        }
        if let Some(wake) = &self.inner.wake {
            wake.notify_one();
        }
    }
}

/// Called with every event of a sink (the demo counts progress this way).
pub type Observer = Arc<dyn Fn(&Event) + Send + Sync>;

/// Where an event's `ts` comes from: seconds since the Unix epoch.
pub type Clock = Arc<dyn Fn() -> f64 + Send + Sync>;

/// A clock on tokio's time: `epoch` (seconds since the Unix epoch) plus the tokio time passed
/// since this call. Under a paused runtime that is virtual time, so the events of a simulated
/// run carry virtual timestamps, the same in every run.
pub fn tokio_clock(epoch: f64) -> Clock {
    let start = tokio::time::Instant::now();
    Arc::new(move || epoch + start.elapsed().as_secs_f64())
}

/// The wall clock: seconds since the Unix epoch, now.
pub fn wall_clock() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Where a node's events go: a console line each (unless quiet), a JSON-lines [`EventLog`],
/// and an [`Observer`], each optional.
pub struct EventSink {
    peer: String,
    console: bool,
    log: Option<EventLog>,
    observer: Option<Observer>,
    /// `None`: the wall clock.
    clock: Option<Clock>,
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSink")
            .field("peer", &self.peer)
            .field("console", &self.console)
            .field("log", &self.log.is_some())
            .field("observer", &self.observer.is_some())
            .field("clock", &self.clock.is_some())
            .finish()
    }
}

impl Drop for EventSink {
    fn drop(&mut self) {
        self.flush();
    }
}

impl EventSink {
    /// A sink that only logs to the console, labelled `peer`.
    pub fn console(peer: impl Into<String>) -> Self {
        Self {
            peer: peer.into(),
            console: true,
            log: None,
            observer: None,
            clock: None,
        }
    }

    /// A console sink that also appends JSON lines to `path` (created if missing).
    ///
    /// # Errors
    ///
    /// As [`EventLog::create`].
    pub fn with_file(peer: impl Into<String>, path: &Path) -> std::io::Result<Self> {
        Ok(Self::console(peer).log(EventLog::create(path)?))
    }

    /// Also appends every event to `log`.
    #[must_use]
    pub fn log(mut self, log: EventLog) -> Self {
        self.log = Some(log);
        self
    }

    /// Also calls `observer` with every event.
    #[must_use]
    pub fn observe(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The clock this sink stamps events with.
    pub fn clock_fn(&self) -> Clock {
        self.clock.clone().unwrap_or_else(|| Arc::new(wall_clock))
    }

    /// Stamps events with `clock` instead of the wall clock (see [`tokio_clock`]).
    #[must_use]
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// No console lines.
    #[must_use]
    pub fn quiet(mut self) -> Self {
        self.console = false;
        self
    }

    /// Writes buffered lines to the log file now.
    pub fn flush(&self) {
        if let Some(log) = &self.log {
            log.flush();
        }
    }

    /// The label events carry.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Records a chunk event.
    pub fn chunk(&self, kind: EventKind, chunk: u32, neighbour: &str, bytes: Option<u64>) {
        match kind {
            _ if !self.console => {}
            EventKind::ChunkReceived => tracing::info!(
                target: "event",
                "received chunk {chunk} ({} bytes) from {neighbour}",
                bytes.unwrap_or(0)
            ),
            EventKind::ChunkSent => tracing::info!(
                target: "event",
                "sent chunk {chunk} ({} bytes) to {neighbour}",
                bytes.unwrap_or(0)
            ),
            EventKind::ChunkRequested => {
                tracing::info!(target: "event", "requested chunk {chunk} from {neighbour}")
            }
            EventKind::RequestReceived => {
                tracing::info!(target: "event", "request for chunk {chunk} from {neighbour}")
            }
            _ => {}
        }
        self.write(kind, Some(chunk), neighbour, bytes, None);
    }

    /// Records a swarm event (choking, interest, a lost source) about `neighbour`.
    pub fn swarm(&self, kind: EventKind, neighbour: &str, detail: &str) {
        if self.console {
            let what = match kind {
                EventKind::Choke => "choked",
                EventKind::Unchoke => "unchoked",
                EventKind::Interested => "interested in",
                EventKind::NotInterested => "not interested in",
                EventKind::SourceLost => "lost source",
                EventKind::NeighbourChanged => "download neighbour is now",
                _ => "event with",
            };
            match (neighbour.is_empty(), detail.is_empty()) {
                (_, true) => tracing::info!(target: "event", "{what} {neighbour}"),
                (true, false) => tracing::info!(target: "event", "{what} ({detail})"),
                (false, false) => tracing::info!(target: "event", "{what} {neighbour} ({detail})"),
            }
        }
        self.write(kind, None, neighbour, None, None);
    }

    /// Records that `count` chunks, the first `first`, were registered with the directory.
    pub fn registered(&self, first: u32, count: u32, directory: &str) {
        if self.console {
            tracing::info!(
                target: "event",
                "registered {count} chunk(s) from chunk {first} with the directory {directory}"
            );
        }
        self.write(
            EventKind::ChunkRegistered,
            Some(first),
            directory,
            None,
            Some(count),
        );
    }

    /// Records an ID-list event of `count` ids.
    pub fn id_list(&self, kind: EventKind, count: u32, neighbour: &str) {
        match kind {
            _ if !self.console => {}
            EventKind::IdListSent => {
                tracing::info!(target: "event", "sent chunk-ID list ({count} ids) to {neighbour}")
            }
            _ => tracing::info!(
                target: "event",
                "received chunk-ID list ({count} ids) from {neighbour}"
            ),
        }
        self.write(kind, None, neighbour, None, Some(count));
    }

    fn write(
        &self,
        event: EventKind,
        chunk: Option<u32>,
        neighbour: &str,
        bytes: Option<u64>,
        count: Option<u32>,
    ) {
        if self.log.is_none() && self.observer.is_none() {
            return;
        }
        let ts = self.clock.as_ref().map_or_else(wall_clock, |c| c());
        let ev = Event {
            ts,
            peer: self.peer.clone(),
            event,
            chunk,
            neighbour: neighbour.to_string(),
            bytes,
            count,
        };
        if let Some(log) = &self.log {
            log.append(&ev);
        }
        if let Some(observer) = &self.observer {
            observer(&ev);
        }
    }
}

fn flush_file(f: &Mutex<BufWriter<File>>) {
    if let Err(e) = f.lock().unwrap_or_else(|p| p.into_inner()).flush() {
        tracing::warn!("writing event log: {e}");
    }
}

/// Reads a JSON-lines event log (for tests and reports).
///
/// # Errors
///
/// The file cannot be read or a line is not an [`Event`].
pub fn read_log(path: &Path) -> std::io::Result<Vec<Event>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(std::io::Error::other))
        .collect()
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
