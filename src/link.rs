//! Opening a [`Connection`] the only way the nodes do: encrypted and authenticated (see
//! [`crate::secure`]). A client connects and runs the handshake's first side, a server the
//! other side on what it accepted; both within [`HANDSHAKE_TIMEOUT`], and the connection
//! knows the key the other side proved ([`Connection::node`]).

use crate::connection::{Connection, HANDSHAKE_TIMEOUT};
use crate::key::NodeId;
use crate::net::{BoxStream, Endpoint};
use crate::protocol::ProtocolError;
use crate::secure::{self, HandshakeError, Identity};
use crate::{Error, Result};

/// Connects to `endpoint` as `me`, accepting bodies of at most `max_body` bytes; with `pin`,
/// only a server that proves that key.
///
/// # Errors
///
/// The connect failed or timed out ([`ProtocolError::Io`], worth retrying), or the handshake
/// was refused or failed ([`Error::Refused`], naming the server and why: a shared secret
/// that differs, another protocol version, a key other than the pinned one).
pub async fn connect(
    endpoint: &Endpoint,
    me: &Identity,
    pin: Option<&NodeId>,
    max_body: usize,
) -> Result<Connection> {
    let (stream, remote) = endpoint.connect_stream().await.map_err(ProtocolError::Io)?;
    let shake = tokio::time::timeout(HANDSHAKE_TIMEOUT, secure::client(stream, me, pin));
    let (stream, node) = match shake.await {
        Err(_) => return Err(ProtocolError::Timeout("in the encryption handshake").into()),
        Ok(Err(HandshakeError::Io(e))) => return Err(ProtocolError::Io(e).into()),
        Ok(Err(e)) => return Err(Error::Refused(format!("{remote}: {e}"))),
        Ok(Ok(s)) => s,
    };
    let mut conn = Connection::over(stream, remote, max_body);
    conn.set_node(node);
    Ok(conn)
}

/// Runs the server's side of the handshake as `me` on `stream`, accepted from `remote`.
///
/// # Errors
///
/// The handshake failed, was refused (the client was told why), or took longer than
/// [`HANDSHAKE_TIMEOUT`].
pub async fn accept(
    stream: BoxStream,
    remote: String,
    me: &Identity,
    max_body: usize,
) -> std::result::Result<Connection, HandshakeError> {
    let shake = tokio::time::timeout(HANDSHAKE_TIMEOUT, secure::server(stream, me));
    let (stream, node) = shake.await.map_err(|_| {
        HandshakeError::Failed(format!(
            "no handshake within {}s",
            HANDSHAKE_TIMEOUT.as_secs()
        ))
    })??;
    let mut conn = Connection::over(stream, remote, max_body);
    conn.set_node(node);
    Ok(conn)
}
