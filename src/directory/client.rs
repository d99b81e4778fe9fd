//! The directory's client: one query to the owner, its answer parsed. Nothing here prints.

use crate::Error;
use crate::auth::{self, Secret};
use crate::chunkset::Ranges;
use crate::connection::{Connection, HANDSHAKE_TIMEOUT};
use crate::directory::{Listing, Locations};
use crate::net::Endpoint;
use crate::protocol::{Message, PROTOCOL_VERSION, ProtocolError, Role};

/// Sends one query to the owner and returns the JSON body of its answer.
///
/// # Errors
///
/// The owner is unreachable, refuses, or answers with something else.
pub async fn ask(
    owner: &Endpoint,
    query: Message,
    secret: Option<&Secret>,
) -> anyhow::Result<bytes::Bytes> {
    // On the owner endpoint's own network: TCP, or the in-memory one of a simulation.
    let (stream, remote) = owner
        .connect_stream()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the owner {owner}: {e}"))?;
    let mut conn = Connection::over(stream, remote, 0);
    conn.accept_answers();
    let answer = match secret {
        // With a secret: prove it in a `query` hello, then ask.
        Some(secret) => {
            let (nonce, nonce_hex) = auth::hello_nonce(Some(secret));
            conn.send(Message::Hello {
                version: PROTOCOL_VERSION,
                role: Role::Query,
                file: None,
                have: Ranges::default(),
                port: None,
                nonce: nonce_hex,
                node: None,
            })
            .await?;
            let nonce = nonce.expect("a nonce with a secret");
            auth::client_then(&mut conn, secret, nonce, query, "waiting for the answer").await
        }
        None => {
            conn.send(query).await?;
            conn.recv("waiting for the answer", HANDSHAKE_TIMEOUT)
                .await
                .map_err(Into::into)
        }
    };
    match answer {
        Ok(Some(Message::Files { body, .. } | Message::Locations { body, .. })) => Ok(body),
        Ok(Some(other)) => anyhow::bail!("the owner answered with {}", other.kind()),
        Ok(None) => anyhow::bail!("the owner {owner} closed the connection without answering"),
        Err(Error::Protocol(ProtocolError::Remote(msg)) | Error::Refused(msg)) => {
            anyhow::bail!("the owner {owner} refused: {msg}")
        }
        Err(e) => Err(e.into()),
    }
}

/// The owner's files: every one when `text` is `None` (a `list`), else those whose name
/// contains `text` in any case (a `search`).
///
/// # Errors
///
/// As [`ask`], or an answer that is not a listing.
pub async fn find_files(
    owner: &Endpoint,
    text: Option<String>,
    secret: Option<&Secret>,
) -> anyhow::Result<Listing> {
    let query = match text {
        Some(text) => Message::Search { text },
        None => Message::List,
    };
    Ok(serde_json::from_slice(&ask(owner, query, secret).await?)?)
}

/// Which source holds which chunks of `file`, an id or a name (a `locate`); an unknown file
/// is an answer with a message, not an error.
///
/// # Errors
///
/// As [`ask`], or an answer that is not a location list.
pub async fn locate_file(
    owner: &Endpoint,
    file: String,
    secret: Option<&Secret>,
) -> anyhow::Result<Locations> {
    let query = Message::Locate { file };
    Ok(serde_json::from_slice(&ask(owner, query, secret).await?)?)
}
