//! Every connection encrypted and authenticated: a Noise handshake, then [`SecureStream`].
//!
//! ```text
//! client                                              server
//!   | "RINGSWARM/2 noise XX\n" (or "… XXpsk0\n"), msg 1 (-> e) |
//!   |<------------------ "RINGSWARM/2 ok\n", msg 2 (<- e, ee, s, es)
//!   | msg 3 (-> s, se) ----------------------------------->|
//!   |<=========== sealed records, both ways ==============>|
//! ```
//!
//! The first line names the protocol version and the pattern, in the clear, so that a node
//! of another version, or one that has or lacks the swarm's shared secret, gets a one-line
//! answer (`RINGSWARM/2 refused: …`) instead of a hang. An old node that sends a plaintext
//! frame gets a plaintext `error` frame naming the version it needs. The pattern is
//! `Noise_XX_25519_AESGCM_BLAKE2s`; with a shared secret `Noise_XXpsk0_…`, keyed with the
//! secret from the first message, so a node without it learns nothing, not even the server's
//! key. Handshake messages are framed like records (2-byte length), at most
//! [`MAX_HANDSHAKE_MSG`] bytes. Both sides learn the other's static key ([`NodeId`]); the
//! client checks it against a pinned one (a ticket's `node=`) before it sends its own.

mod record;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::Encoder;

pub use record::{MAX_PLAIN, MAX_RECORD, SecureStream, TAMPERED};

use crate::auth::Secret;
use crate::key::{NodeId, NodeKey};
use crate::manifest::echo;
use crate::net::BoxStream;
use crate::protocol::{Message, MessageCodec, PROTOCOL_VERSION};

/// The pattern without a shared secret.
pub const PATTERN: &str = "Noise_XX_25519_AESGCM_BLAKE2s";
/// The pattern with one.
pub const PATTERN_PSK: &str = "Noise_XXpsk0_25519_AESGCM_BLAKE2s";
/// What every first line starts with.
const MAGIC: &[u8] = b"RINGSWARM/";
/// The longest first line.
const MAX_LINE: usize = 256;
/// The longest handshake message.
pub const MAX_HANDSHAKE_MSG: usize = 1024;

/// Who this node is on the wire: its key, and the swarm's pre-shared key when it has one.
#[derive(Clone)]
pub struct Identity {
    key: NodeKey,
    secret: Option<Secret>,
    psk: Option<[u8; 32]>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys themselves.
        write!(
            f,
            "Identity({}, secret: {})",
            self.key.id().short(),
            self.psk.is_some()
        )
    }
}

impl Identity {
    /// `key`, in the swarm of `secret` when there is one.
    pub fn new(key: NodeKey, secret: Option<Secret>) -> Self {
        let psk = secret.as_ref().map(Secret::psk);
        Self { key, secret, psk }
    }

    /// The swarm's shared secret, if any.
    pub fn secret(&self) -> Option<&Secret> {
        self.secret.as_ref()
    }

    /// A fresh random key and no shared secret: a node that keeps no identity.
    pub fn ephemeral() -> Self {
        Self::new(NodeKey::generate(), None)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.key.id()
    }

    /// Whether it holds a shared secret.
    pub fn has_psk(&self) -> bool {
        self.psk.is_some()
    }

    /// The Noise pattern's full name, and its name in the first line.
    fn pattern(&self) -> (&'static str, &'static str) {
        match self.psk {
            Some(_) => (PATTERN_PSK, "XXpsk0"),
            None => (PATTERN, "XX"),
        }
    }

    fn builder(&self) -> snow::Builder<'_> {
        let (pattern, _) = self.pattern();
        let resolver = snow::resolvers::FallbackResolver::new(
            Box::new(snow::resolvers::RingResolver),
            Box::new(snow::resolvers::DefaultResolver),
        );
        let b = snow::Builder::with_resolver(
            pattern.parse().expect("a valid pattern"),
            Box::new(resolver),
        )
        .prologue(PROLOGUE)
        .expect("one prologue")
        .local_private_key(self.key.private())
        .expect("one key");
        match &self.psk {
            Some(psk) => b.psk(0, psk).expect("one psk"),
            None => b,
        }
    }

    fn first_line(&self) -> String {
        let (_, pattern) = self.pattern();
        format!("RINGSWARM/{PROTOCOL_VERSION} noise {pattern}\n")
    }
}

/// Mixed into the handshake: a node of another version cannot complete it.
const PROLOGUE: &[u8] = b"ringswarm protocol 2";

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The other side said no, in its words (escaped).
    #[error("the other side refused the connection: {0}")]
    Refused(String),
    /// The other side speaks an older, plaintext protocol.
    #[error(
        "the other side speaks an older ringswarm protocol ({0}); this node needs protocol {PROTOCOL_VERSION} (encrypted): upgrade it"
    )]
    Old(String),
    /// The other side proved a key other than the pinned one.
    #[error(
        "the other side proved node key {proved}, not {pinned} as pinned (a ticket's node=): refusing it"
    )]
    WrongKey { pinned: NodeId, proved: NodeId },
    /// A handshake message failed to open or was malformed.
    #[error("handshake failed: {0}")]
    Failed(String),
    #[error("handshake: {0}")]
    Io(#[from] std::io::Error),
}

/// Bytes read from the stream during the handshake, and how to take lines and messages.
struct Wire {
    stream: BoxStream,
    buf: BytesMut,
}

impl Wire {
    /// Reads until `buf` holds `n` bytes.
    async fn fill(&mut self, n: usize) -> Result<(), HandshakeError> {
        while self.buf.len() < n {
            self.buf.reserve(n - self.buf.len());
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(HandshakeError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the connection closed during the handshake",
                )));
            }
        }
        Ok(())
    }

    /// The first line, without its `\n`. `Ok(None)`: the bytes do not start with
    /// [`MAGIC`] (a plaintext frame of an old node; they stay in `buf`).
    async fn line(&mut self) -> Result<Option<String>, HandshakeError> {
        let mut seen = 0;
        loop {
            let head = self.buf.len().min(MAGIC.len());
            if self.buf[..head] != MAGIC[..head] {
                return Ok(None);
            }
            if let Some(i) = self.buf[seen..].iter().position(|&b| b == b'\n') {
                let line = self.buf.split_to(seen + i + 1);
                let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                return Ok(Some(text));
            }
            seen = self.buf.len();
            if seen >= MAX_LINE {
                return Err(HandshakeError::Failed("first line too long".into()));
            }
            self.fill(seen + 1).await?;
        }
    }

    /// One handshake message.
    async fn message(&mut self) -> Result<BytesMut, HandshakeError> {
        self.fill(2).await?;
        let len = usize::from(u16::from_be_bytes([self.buf[0], self.buf[1]]));
        if len > MAX_HANDSHAKE_MSG {
            return Err(HandshakeError::Failed(format!(
                "a handshake message of {len} bytes (at most {MAX_HANDSHAKE_MSG})"
            )));
        }
        self.fill(2 + len).await?;
        self.buf.advance(2);
        Ok(self.buf.split_to(len))
    }

    async fn send(&mut self, line: Option<&str>, msg: Option<&[u8]>) -> Result<(), HandshakeError> {
        let mut out = Vec::new();
        if let Some(l) = line {
            out.extend_from_slice(l.as_bytes());
        }
        if let Some(m) = msg {
            let len = u16::try_from(m.len()).expect("a short handshake message");
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(m);
        }
        self.stream.write_all(&out).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// Refuses in one line, then closes.
    async fn refuse(mut self, why: &str) -> HandshakeError {
        let line = format!("RINGSWARM/{PROTOCOL_VERSION} refused: {why}\n");
        let _ = self.send(Some(&line), None).await;
        let _ = self.stream.shutdown().await;
        HandshakeError::Failed(why.to_string())
    }

    /// After a handshake, the stream sealed with its keys (the first of the split seals what
    /// the initiator sends).
    fn secure(self, mut noise: snow::HandshakeState) -> Result<SecureStream, HandshakeError> {
        if !noise.is_handshake_finished() {
            return Err(HandshakeError::Failed(
                "the handshake did not finish".into(),
            ));
        }
        let (to_responder, to_initiator) = noise.dangerously_get_raw_split();
        let (send, recv) = if noise.is_initiator() {
            (to_responder, to_initiator)
        } else {
            (to_initiator, to_responder)
        };
        let (send, recv) = (record::Cipher::new(&send), record::Cipher::new(&recv));
        Ok(SecureStream::new(self.stream, send, recv, self.buf))
    }
}

fn failed(e: snow::Error) -> HandshakeError {
    HandshakeError::Failed(e.to_string())
}

fn remote_id(noise: &snow::HandshakeState) -> Result<NodeId, HandshakeError> {
    let key = noise
        .get_remote_static()
        .ok_or_else(|| HandshakeError::Failed("no static key".into()))?;
    let key: [u8; 32] = key
        .try_into()
        .map_err(|_| HandshakeError::Failed("a static key not of 32 bytes".into()))?;
    Ok(NodeId::from_bytes(key))
}

/// The client's side of the handshake on `stream`: returns the sealed stream and the
/// server's proven key. With `pin`, a server proving another key is refused before this node
/// sends its own.
///
/// # Errors
///
/// [`HandshakeError`]: refused, an old server, the wrong key, a failed message, or I/O.
pub async fn client(
    stream: BoxStream,
    me: &Identity,
    pin: Option<&NodeId>,
) -> Result<(SecureStream, NodeId), HandshakeError> {
    let mut noise = me.builder().build_initiator().map_err(failed)?;
    let mut wire = Wire {
        stream,
        buf: BytesMut::new(),
    };
    let mut msg = [0u8; MAX_HANDSHAKE_MSG];
    let n = noise.write_message(&[], &mut msg).map_err(failed)?;
    wire.send(Some(&me.first_line()), Some(&msg[..n])).await?;
    let Some(line) = wire.line().await? else {
        return Err(HandshakeError::Old(old_answer(&mut wire).await));
    };
    let ours = format!("RINGSWARM/{PROTOCOL_VERSION}");
    match line.split_once(' ') {
        Some((v, "ok")) if v == ours => {}
        Some((v, said)) if v == ours => {
            let said = said.strip_prefix("refused: ").unwrap_or(said);
            return Err(HandshakeError::Refused(echo(said).to_string()));
        }
        _ => {
            let v = line.split(' ').next().unwrap_or_default();
            return Err(HandshakeError::Refused(format!(
                "it answered {}; this node speaks ringswarm protocol {PROTOCOL_VERSION}",
                echo(v)
            )));
        }
    }
    let reply = wire.message().await?;
    noise.read_message(&reply, &mut msg).map_err(failed)?;
    let server = remote_id(&noise)?;
    if let Some(pinned) = pin
        && *pinned != server
    {
        let _ = wire.stream.shutdown().await;
        return Err(HandshakeError::WrongKey {
            pinned: *pinned,
            proved: server,
        });
    }
    let n = noise.write_message(&[], &mut msg).map_err(failed)?;
    wire.send(None, Some(&msg[..n])).await?;
    Ok((wire.secure(noise)?, server))
}

/// What an old server said to our first line: its plaintext `error` frame, if it sent one.
async fn old_answer(wire: &mut Wire) -> String {
    let read = async {
        wire.fill(4).await.ok()?;
        let len = usize::try_from(u32::from_be_bytes([
            wire.buf[0],
            wire.buf[1],
            wire.buf[2],
            wire.buf[3],
        ]))
        .ok()?;
        if len > 4096 {
            return None;
        }
        wire.fill(4 + len).await.ok()?;
        let mut codec = MessageCodec::new(0);
        match tokio_util::codec::Decoder::decode(&mut codec, &mut wire.buf) {
            Ok(Some(Message::Error { message })) => Some(format!("it said: {}", echo(&message))),
            _ => None,
        }
    };
    read.await
        .unwrap_or_else(|| "it answered in plaintext".to_string())
}

/// The server's side of the handshake on `stream`: returns the sealed stream and the
/// client's proven key. A client of another version, or with or without a shared secret
/// where this node differs, is answered in one line; an old plaintext client with an
/// `error` frame.
///
/// # Errors
///
/// As [`client`].
pub async fn server(
    stream: BoxStream,
    me: &Identity,
) -> Result<(SecureStream, NodeId), HandshakeError> {
    let mut wire = Wire {
        stream,
        buf: BytesMut::new(),
    };
    let Some(line) = wire.line().await? else {
        let why = format!(
            "this node speaks ringswarm protocol {PROTOCOL_VERSION} (encrypted with Noise, see \
             PROTOCOL.md): upgrade the connecting node"
        );
        let mut out = BytesMut::new();
        let _ = MessageCodec::new(0).encode(
            Message::Error {
                message: why.clone(),
            },
            &mut out,
        );
        let _ = wire.stream.write_all(&out).await;
        let _ = wire.stream.shutdown().await;
        return Err(HandshakeError::Old(
            "a plaintext hello; it was told to upgrade".into(),
        ));
    };
    let mut words = line.split(' ');
    let version = words.next().and_then(|v| v.strip_prefix("RINGSWARM/"));
    if version != Some(&PROTOCOL_VERSION.to_string()) {
        let why = format!(
            "this node speaks ringswarm protocol {PROTOCOL_VERSION}, not {}",
            echo(version.unwrap_or("?"))
        );
        return Err(wire.refuse(&why).await);
    }
    let psk = match (words.next(), words.next()) {
        (Some("noise"), Some("XX")) => false,
        (Some("noise"), Some("XXpsk0")) => true,
        _ => return Err(wire.refuse("unknown handshake pattern").await),
    };
    if psk != me.has_psk() {
        let why = if me.has_psk() {
            "this swarm needs its shared secret (--secret or RINGSWARM_SECRET)"
        } else {
            "this node has no shared secret: connect without --secret"
        };
        return Err(wire.refuse(why).await);
    }
    let mut noise = me.builder().build_responder().map_err(failed)?;
    let first = wire.message().await?;
    let mut msg = [0u8; MAX_HANDSHAKE_MSG];
    if noise.read_message(&first, &mut msg).is_err() {
        let why = if psk {
            "wrong shared secret"
        } else {
            "a bad first handshake message"
        };
        return Err(wire.refuse(why).await);
    }
    let n = noise.write_message(&[], &mut msg).map_err(failed)?;
    let ok = format!("RINGSWARM/{PROTOCOL_VERSION} ok\n");
    wire.send(Some(&ok), Some(&msg[..n])).await?;
    let last = wire.message().await?;
    noise.read_message(&last, &mut msg).map_err(failed)?;
    let client = remote_id(&noise)?;
    Ok((wire.secure(noise)?, client))
}

#[cfg(test)]
mod tests;
