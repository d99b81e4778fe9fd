//! `peer share`: a peer that publishes files of its own. It serves their chunks on its port
//! with the owner's serving code (choking, upload slots, rate limit: a getter meets it as a
//! source), and registers them with a directory (a tracker or a file owner) over one
//! connection: `hello` (role `publisher`, its port), then one `publish` per file, each
//! answered `published` with the file's id, then keep-alives. The directory lists each file
//! with this peer as a complete source for as long as that connection lives; a lost
//! connection is made again with backoff, and every file published again. Stopping (the
//! token) withdraws everything.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::auth::{self, Secret};
use crate::connection::{ConnWriter, Connection, IDLE_TIMEOUT, KEEPALIVE_INTERVAL};
use crate::driver::{self, Flow, Reading, Writing};
use crate::manifest::Manifest;
use crate::net::{Backoff, Endpoint, Listener};
use crate::owner::{self, SharedFile};
use crate::protocol::{MAX_MANIFEST_LEN, Message, PROTOCOL_VERSION, ProtocolError, Role};
use crate::{Error, Result};

/// A connection to the directory that lasted this long counts as progress: the backoff
/// starts again.
const STABLE: Duration = Duration::from_secs(30);

/// Told once every file is published: each file's id and manifest.
pub type OnPublished = Box<dyn FnOnce(&[(u32, Arc<Manifest>)]) + Send>;

/// What a publisher shares, where, and how.
pub struct Config {
    /// The directory to publish to.
    pub directory: Endpoint,
    /// The files, hashed and open.
    pub files: Vec<Arc<SharedFile>>,
    /// How its chunks are served (the owner's settings: events, cap, slots, secret).
    pub serve: owner::Config,
    /// The swarm's shared secret, proved to the directory too.
    pub secret: Option<Arc<Secret>>,
    /// This node's id, sent in `hello`.
    pub node: String,
    /// Told once, the first time every file is published: each file's id and manifest.
    pub on_published: Option<OnPublished>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("directory", &self.directory)
            .field("files", &self.files.len())
            .finish_non_exhaustive()
    }
}

/// Shares `config.files` on `listener` and publishes them until `token` is cancelled.
///
/// # Errors
///
/// The directory refused a file (a bad name, another publisher on this address): retrying
/// would not help.
pub async fn run(listener: Listener, config: Config, token: CancellationToken) -> Result<()> {
    let addr = listener.local_addr().map_err(ProtocolError::Io)?;
    let Config {
        directory,
        files,
        serve,
        secret,
        node,
        on_published,
    } = config;
    // Its own directory holds the getters it serves (their `locate` goes to `directory`).
    let local = owner::directory(&files, addr, crate::directory::DEFAULT_PEER_TTL);
    let serve = owner::Config {
        secret: secret.clone(),
        ..serve
    };
    let server = tokio::spawn(owner::run(
        listener,
        files.clone(),
        local,
        serve,
        token.child_token(),
    ));
    let mut publisher = Publisher {
        directory,
        files,
        secret,
        node,
        on_published,
    };
    let res = publish_loop(&mut publisher, addr.port(), &token).await;
    token.cancel();
    let _ = server.await;
    res
}

/// What publishing needs.
struct Publisher {
    directory: Endpoint,
    files: Vec<Arc<SharedFile>>,
    secret: Option<Arc<Secret>>,
    node: String,
    on_published: Option<OnPublished>,
}

/// Keeps the files published until `token` is cancelled.
async fn publish_loop(config: &mut Publisher, port: u16, token: &CancellationToken) -> Result<()> {
    let mut backoff = Backoff::default();
    while !token.is_cancelled() {
        let since = Instant::now();
        let res = tokio::select! {
            biased;
            () = token.cancelled() => return Ok(()),
            r = session(config, port, token) => r,
        };
        match res {
            Ok(()) => return Ok(()),
            Err(e @ Error::Refused(_)) | Err(e @ Error::Manifest(_)) => return Err(e),
            Err(e) => warn!("directory {}: {e}; publishing again", config.directory),
        }
        if since.elapsed() >= STABLE {
            backoff.reset();
        }
        tokio::select! {
            biased;
            () = token.cancelled() => return Ok(()),
            () = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
    Ok(())
}

/// One connection to the directory: the handshake, a `publish` per file, then keep-alives.
async fn session(config: &mut Publisher, port: u16, token: &CancellationToken) -> Result<()> {
    let endpoint = &config.directory;
    let (stream, remote) = endpoint.connect_stream().await.map_err(ProtocolError::Io)?;
    let mut conn = Connection::over(stream, remote, MAX_MANIFEST_LEN);
    let secret = config.secret.as_deref();
    let (nonce, nonce_hex) = auth::hello_nonce(secret);
    conn.send(Message::Hello {
        version: PROTOCOL_VERSION,
        role: Role::Publisher,
        file: None,
        have: crate::chunkset::Ranges::default(),
        port: Some(port),
        nonce: nonce_hex,
        node: Some(config.node.clone()),
    })
    .await?;
    let mut published = Vec::with_capacity(config.files.len());
    let mut heartbeat = KEEPALIVE_INTERVAL;
    for (i, f) in config.files.iter().enumerate() {
        let msg = Message::publish(f.manifest_json());
        let what = "waiting for published";
        let answer = match (i, secret, nonce) {
            (0, Some(s), Some(n)) => auth::client_then(&mut conn, s, n, msg, what).await?,
            _ => {
                conn.send(msg).await?;
                conn.recv(what, crate::connection::HANDSHAKE_TIMEOUT)
                    .await
                    .map_err(|e| match e {
                        ProtocolError::Remote(m) => Error::Refused(m),
                        e => e.into(),
                    })?
            }
        };
        match answer {
            Some(Message::Published {
                id, heartbeat_ms, ..
            }) => {
                heartbeat = Duration::from_millis(heartbeat_ms)
                    .clamp(Duration::from_millis(100), KEEPALIVE_INTERVAL);
                published.push((id, f.manifest.clone()));
            }
            other => {
                return Err(
                    ProtocolError::unexpected(other.as_ref(), "waiting for published").into(),
                );
            }
        }
    }
    info!(
        "published {} file(s) at {}",
        published.len(),
        config.directory
    );
    if let Some(tell) = config.on_published.take() {
        tell(&published);
    }
    driver::drive(conn, Listen, Beats(heartbeat), 1, token).await?;
    Err(Error::Protocol(ProtocolError::Io(std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "the directory closed the connection",
    ))))
}

/// The reader's side after publishing: keep-alives only.
struct Listen;

impl Reading for Listen {
    type Out = ();

    fn limit(&self) -> (&'static str, Duration) {
        ("waiting for the directory's keep-alive", IDLE_TIMEOUT)
    }

    async fn on_message(&mut self, msg: Message, _tx: &mpsc::Sender<()>) -> Result<()> {
        match msg {
            Message::Have { chunks } if chunks.is_empty() => Ok(()),
            other => Err(ProtocolError::unexpected(Some(&other), "publishing").into()),
        }
    }
}

/// The writer's side after publishing: a keep-alive within the directory's TTL.
struct Beats(Duration);

impl Writing for Beats {
    type Out = ();
    type Wake = ();

    fn keepalive(&self) -> Duration {
        self.0
    }

    async fn on_out(&mut self, (): (), _writer: &mut ConnWriter) -> Result<Flow> {
        Ok(Flow::Idle)
    }
}
