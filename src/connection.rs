//! `Connection`: owns a framed socket and the address of the other side.
//!
//! Nothing else touches the socket, which may be any [`crate::net::Stream`]: TCP, or an
//! in-memory duplex in tests. Every wait is named and bounded: a timeout error says which
//! wait expired. A connection can be split into a reader and a writer, to run as two
//! futures whose first to end ends the connection.

use std::time::Duration;

use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use tokio::io::{ReadHalf, WriteHalf};
use tokio_util::codec::{Framed, FramedParts};

use crate::chunkset::Ranges;
use crate::key::NodeId;
use crate::net::{BoxStream, Stream, TcpStream};
use crate::protocol::{Message, MessageCodec, PROTOCOL_VERSION, ProtocolError, Role};

/// How long a handshake message (`hello`, `welcome`) may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may stay silent before it is dropped. Writers send a keep-alive
/// (an empty `have`) after [`KEEPALIVE_INTERVAL`] of silence, so only a dead or stuck
/// peer reaches this.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Silence after which a writer sends a keep-alive.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
/// How long one message may take to write.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
pub use crate::protocol::KEEP_BUFFER;

/// Gives back the room of `buf`, keeping its contents: after a large message went through
/// it (see [`MessageCodec::take_big_frame`]).
fn trim(buf: &mut BytesMut) {
    *buf = BytesMut::from(&buf[..]);
}

/// A client's `hello`, checked.
#[derive(Debug)]
pub struct Hello {
    /// Who is connecting.
    pub role: Role,
    /// The file it wants, if it said.
    pub file: Option<String>,
    /// What it holds (not yet checked against a manifest).
    pub have: Ranges,
    /// `IP:PORT` with the client's listening port when it gave one, for logs and events.
    pub label: String,
    /// The client's listening port, when it runs an upload server.
    pub port: Option<u16>,
    /// The client's node id, checked: 1 to [`MAX_NODE_ID`] hex digits.
    pub node: Option<String>,
}

/// The longest node id in `hello`, in hex digits.
pub const MAX_NODE_ID: usize = 64;

/// How a client opened a connection.
#[derive(Debug)]
pub enum Opening {
    /// To join a swarm.
    Hello(Hello),
    /// With a directory query (`list`, `search`, `locate`).
    Query(Message),
}

/// A framed connection to one remote node.
pub struct Connection {
    framed: Framed<BoxStream, MessageCodec>,
    remote: String,
    /// The other side's key, as its handshake proved it (`None`: no handshake, as in tests
    /// that wire handlers together directly).
    node: Option<NodeId>,
}

impl Connection {
    /// Wraps `stream`, accepting bodies of at most `max_body` bytes.
    pub fn new(stream: TcpStream, max_body: usize) -> Self {
        let remote = stream
            .peer_addr()
            .map_or_else(|_| "unknown".to_string(), |a| a.to_string());
        let _ = stream.set_nodelay(true);
        Self::over(stream, remote, max_body)
    }

    /// Wraps any `stream` whose other side is `remote` (`IP:PORT`, for logs, events and the
    /// directory), accepting bodies of at most `max_body` bytes.
    pub fn over(stream: impl Stream, remote: String, max_body: usize) -> Self {
        Self {
            framed: Framed::new(Box::new(stream), MessageCodec::new(max_body)),
            remote,
            node: None,
        }
    }

    /// Records the other side's key, proven by a handshake ([`crate::link`]).
    pub fn set_node(&mut self, node: NodeId) {
        self.node = Some(node);
    }

    /// The other side's key, as its handshake proved it.
    pub fn node(&self) -> Option<NodeId> {
        self.node
    }

    /// The node id a `hello` gives (`said`, checked hex), lower-cased; over a handshake, the
    /// proven key, and a `hello` that names another is refused.
    fn proven_node(&self, said: Option<String>) -> Result<Option<String>, ProtocolError> {
        let said = said.map(|n| n.to_ascii_lowercase());
        match self.node.map(|n| n.to_hex()) {
            None => Ok(said),
            Some(p) if said.as_ref().is_none_or(|s| *s == p) => Ok(Some(p)),
            Some(_) => Err(ProtocolError::MalformedHeader(
                "hello: node is not the key this connection's handshake proved".into(),
            )),
        }
    }

    /// The remote address, for logs and events.
    pub fn remote(&self) -> &str {
        &self.remote
    }

    /// Changes the body limit (e.g. to the chunk size once a manifest is known).
    pub fn set_max_body(&mut self, max_body: usize) {
        self.framed.codec_mut().set_max_body(max_body);
    }

    /// Accepts directory answers (`files`, `locations`) of up to
    /// [`crate::protocol::MAX_ANSWER_LEN`] bytes: for a client of the owner.
    pub fn accept_answers(&mut self) {
        self.framed
            .codec_mut()
            .set_max_answer(crate::protocol::MAX_ANSWER_LEN);
    }

    fn trim_buffers(&mut self) {
        if self.framed.codec_mut().take_big_frame() {
            trim(self.framed.read_buffer_mut());
            trim(self.framed.write_buffer_mut());
        }
    }

    /// Receives one message within `limit`; `Ok(None)` is a clean close.
    ///
    /// # Errors
    ///
    /// A decode error, an I/O error, or [`ProtocolError::Timeout`] naming `what`.
    pub async fn recv(
        &mut self,
        what: &'static str,
        limit: Duration,
    ) -> Result<Option<Message>, ProtocolError> {
        let res = recv_from(&mut self.framed, what, limit).await;
        self.trim_buffers();
        res
    }

    /// As [`Connection::recv`], but a bad frame or an expired wait is answered with an `error`
    /// message (saying what was wrong) before the error is returned and the connection dropped.
    ///
    /// # Errors
    ///
    /// As [`Connection::recv`].
    pub async fn recv_answering(
        &mut self,
        what: &'static str,
        limit: Duration,
    ) -> Result<Option<Message>, ProtocolError> {
        let res = self.recv(what, limit).await;
        if let Err(e) = &res
            && !matches!(e, ProtocolError::Io(_) | ProtocolError::Remote(_))
        {
            self.send_error(e.to_string()).await;
        }
        res
    }

    /// Receives the client's `hello` within [`HANDSHAKE_TIMEOUT`] and checks its version;
    /// anything else is answered with an `error` and returned as the error.
    ///
    /// # Errors
    ///
    /// A bad or missing `hello`, a version mismatch, or an I/O error.
    pub async fn recv_hello(&mut self) -> Result<Hello, ProtocolError> {
        match self.recv_opening(false).await? {
            Opening::Hello(h) => Ok(h),
            Opening::Query(_) => Err(ProtocolError::Bug("a query passed as hello")),
        }
    }

    /// As [`Connection::recv_hello`], but when `queries` is true a directory query (`list`,
    /// `search`, `locate`) may open the connection instead.
    ///
    /// # Errors
    ///
    /// As [`Connection::recv_hello`].
    pub async fn recv_opening(&mut self, queries: bool) -> Result<Opening, ProtocolError> {
        let msg = self
            .recv_answering("waiting for hello", HANDSHAKE_TIMEOUT)
            .await?;
        let e = match msg {
            Some(q) if queries && q.is_query() => return Ok(Opening::Query(q)),
            Some(Message::Hello {
                version,
                role,
                file,
                have,
                port,
                node,
            }) if version == PROTOCOL_VERSION
                && node.as_deref().is_none_or(|n| {
                    (1..=MAX_NODE_ID).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_hexdigit())
                }) =>
            {
                // Name the client by its listening port, as its own events do.
                let label = match (port, self.remote.rsplit_once(':')) {
                    (Some(p), Some((ip, _))) => format!("{ip}:{p}"),
                    _ => self.remote.clone(),
                };
                match self.proven_node(node) {
                    Ok(node) => {
                        return Ok(Opening::Hello(Hello {
                            role,
                            file,
                            have,
                            label,
                            port,
                            node,
                        }));
                    }
                    Err(e) => e,
                }
            }
            Some(Message::Hello { version, .. }) if version != PROTOCOL_VERSION => {
                ProtocolError::Version { got: version }
            }
            Some(Message::Hello { .. }) => ProtocolError::MalformedHeader(format!(
                "hello: node must be 1 to {MAX_NODE_ID} hex digits"
            )),
            other => ProtocolError::unexpected(other.as_ref(), "waiting for hello"),
        };
        self.send_error(e.to_string()).await;
        Err(e)
    }

    /// Sends one message within [`WRITE_TIMEOUT`], flushing it.
    ///
    /// # Errors
    ///
    /// An encode or I/O error, or [`ProtocolError::Timeout`].
    pub async fn send(&mut self, msg: Message) -> Result<(), ProtocolError> {
        let res = tokio::time::timeout(WRITE_TIMEOUT, send_via(&mut self.framed, msg))
            .await
            .map_err(|_| ProtocolError::Timeout("writing a message"))?;
        self.trim_buffers();
        res
    }

    /// Sends an `error` message (best effort, within 1 s) before the connection is dropped.
    pub async fn send_error(&mut self, message: String) {
        let msg = Message::Error { message };
        let _ = tokio::time::timeout(Duration::from_secs(1), self.framed.send(msg)).await;
    }

    /// Splits into a reader and a writer.
    pub fn split(self) -> (ConnReader, ConnWriter) {
        let parts = self.framed.into_parts();
        let (read, write) = tokio::io::split(parts.io);
        let max_body = parts.codec.max_body();
        let max_answer = parts.codec.max_answer();
        // `from_parts`, so that bytes already read are decoded before the socket is read again.
        let mut read_parts = FramedParts::new::<Message>(read, parts.codec);
        read_parts.read_buf = parts.read_buf;
        let stream = Framed::from_parts(read_parts);
        let mut out = MessageCodec::new(max_body);
        out.set_max_answer(max_answer);
        let mut write_parts = FramedParts::new::<Message>(write, out);
        write_parts.write_buf = parts.write_buf;
        let sink = Framed::from_parts(write_parts);
        (
            ConnReader {
                stream,
                remote: self.remote.clone(),
            },
            ConnWriter {
                sink,
                remote: self.remote,
            },
        )
    }
}

/// Sends `msg` on `framed`. A chunk or a large body (a manifest, an answer) is not copied
/// into the write buffer: the frame's head and the body are written together from their own
/// buffers (one vectored write on TCP). So forwarding a chunk costs no copy in the process,
/// and a client that says `hello` and never reads costs the socket's buffers, not a copy of
/// the manifest per connection.
async fn send_via<T>(
    framed: &mut Framed<T, MessageCodec>,
    msg: Message,
) -> Result<(), ProtocolError>
where
    T: tokio::io::AsyncWrite + Unpin,
{
    use bytes::Buf;
    use tokio::io::AsyncWriteExt;
    let body = match msg.body() {
        Some(b) if b.len() > KEEP_BUFFER || matches!(msg, Message::Chunk { .. }) => b.clone(),
        _ => return framed.send(msg).await,
    };
    framed.flush().await?;
    let mut head = BytesMut::new();
    crate::protocol::encode_head(&msg, &mut head)?;
    let io = framed.get_mut();
    io.write_all_buf(&mut head.chain(body)).await?;
    io.flush().await?;
    Ok(())
}

async fn recv_from<S>(stream: &mut S, what: &'static str, limit: Duration) -> RecvResult
where
    S: futures::Stream<Item = Result<Message, ProtocolError>> + Unpin,
{
    match tokio::time::timeout(limit, stream.next()).await {
        Err(_) => Err(ProtocolError::Timeout(what)),
        Ok(None) => Ok(None),
        Ok(Some(Ok(Message::Error { message }))) => {
            Err(ProtocolError::Remote(remote_text(&message)))
        }
        Ok(Some(r)) => r.map(Some),
    }
}

type RecvResult = Result<Option<Message>, ProtocolError>;

/// The longest part of another node's `error` text that is kept (logs, the final error).
pub const MAX_REMOTE_TEXT: usize = 1024;

/// Another node's `error` text as it may be shown: control characters and bidirectional
/// overrides escaped and cut after [`MAX_REMOTE_TEXT`] bytes (see
/// [`crate::manifest::display_cut`]).
fn remote_text(message: &str) -> String {
    crate::manifest::display_cut(message, MAX_REMOTE_TEXT)
}

/// The receiving half of a [`Connection`].
pub struct ConnReader {
    stream: Framed<ReadHalf<BoxStream>, MessageCodec>,
    remote: String,
}

impl ConnReader {
    /// As [`Connection::recv`]. An `error` message from the remote becomes
    /// [`ProtocolError::Remote`].
    ///
    /// # Errors
    ///
    /// As [`Connection::recv`].
    pub async fn recv(&mut self, what: &'static str, limit: Duration) -> RecvResult {
        let res = recv_from(&mut self.stream, what, limit).await;
        if self.stream.codec_mut().take_big_frame() {
            trim(self.stream.read_buffer_mut());
        }
        res
    }

    /// The remote address.
    pub fn remote(&self) -> &str {
        &self.remote
    }

    /// Reads and drops messages until the remote closes, for at most `limit`: after a
    /// half-close, so that unread data never turns the close into a reset that could destroy
    /// the last message sent.
    pub async fn drain(&mut self, limit: Duration) {
        let _ = tokio::time::timeout(limit, async {
            while let Some(Ok(_)) = self.stream.next().await {}
        })
        .await;
    }
}

/// The sending half of a [`Connection`].
pub struct ConnWriter {
    sink: Framed<WriteHalf<BoxStream>, MessageCodec>,
    remote: String,
}

impl ConnWriter {
    /// As [`Connection::send`].
    ///
    /// # Errors
    ///
    /// As [`Connection::send`].
    pub async fn send(&mut self, msg: Message) -> Result<(), ProtocolError> {
        let res = tokio::time::timeout(WRITE_TIMEOUT, send_via(&mut self.sink, msg))
            .await
            .map_err(|_| ProtocolError::Timeout("writing a message"))?;
        if self.sink.codec_mut().take_big_frame() {
            trim(self.sink.write_buffer_mut());
        }
        res
    }

    /// Flushes and half-closes the connection (TCP FIN), within 1 s.
    pub async fn close(&mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.sink.close()).await;
    }

    /// As [`Connection::send_error`].
    pub async fn send_error(&mut self, message: String) {
        let msg = Message::Error { message };
        let _ = tokio::time::timeout(Duration::from_secs(1), self.sink.send(msg)).await;
    }

    /// The remote address.
    pub fn remote(&self) -> &str {
        &self.remote
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ConnReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnReader")
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ConnWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnWriter")
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[path = "connection_tests.rs"]
mod tests;
