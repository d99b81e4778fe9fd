//! The directory's client: one query to the owner, its answer parsed. Nothing here prints.

use crate::Error;
use crate::connection::HANDSHAKE_TIMEOUT;
use crate::directory::{Listing, Locations};
use crate::key::NodeId;
use crate::net::Endpoint;
use crate::protocol::{Message, ProtocolError};
use crate::secure::Identity;

/// Sends one query to the owner and returns the JSON body of its answer.
///
/// # Errors
///
/// The owner is unreachable, refuses, or answers with something else.
pub async fn ask(owner: &Endpoint, query: Message, me: &Identity) -> anyhow::Result<bytes::Bytes> {
    ask_proven(owner, query, me, None)
        .await
        .map(|(body, _)| body)
}

/// As [`ask`], refusing an owner that does not prove key `pin` (if given); with the key the
/// owner's handshake proved.
///
/// # Errors
///
/// As [`ask`].
async fn ask_proven(
    owner: &Endpoint,
    query: Message,
    me: &Identity,
    pin: Option<&NodeId>,
) -> anyhow::Result<(bytes::Bytes, Option<NodeId>)> {
    // On the owner endpoint's own network: TCP, or the in-memory one of a simulation.
    let mut conn = match crate::link::connect(owner, me, pin, 0).await {
        Ok(c) => c,
        Err(Error::Refused(msg)) => anyhow::bail!("the owner {msg}"),
        Err(e) => anyhow::bail!("cannot reach the owner {owner}: {e}"),
    };
    conn.accept_answers();
    conn.send(query).await?;
    let answer: Result<_, Error> = conn
        .recv("waiting for the answer", HANDSHAKE_TIMEOUT)
        .await
        .map_err(Into::into);
    match answer {
        Ok(Some(Message::Files { body, .. } | Message::Locations { body, .. })) => {
            Ok((body, conn.node()))
        }
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
    me: &Identity,
) -> anyhow::Result<Listing> {
    find_files_pinned(owner, text, me, None).await
}

/// As [`find_files`], refusing an owner that does not prove key `pin` (if given).
///
/// # Errors
///
/// As [`find_files`], or the owner proved another key.
pub async fn find_files_pinned(
    owner: &Endpoint,
    text: Option<String>,
    me: &Identity,
    pin: Option<&NodeId>,
) -> anyhow::Result<Listing> {
    let query = match text {
        Some(text) => Message::Search { text },
        None => Message::List,
    };
    let (body, node) = ask_proven(owner, query, me, pin).await?;
    let mut listing: Listing = serde_json::from_slice(&body)?;
    listing.node = node.map(|n| n.to_string());
    Ok(listing)
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
    me: &Identity,
) -> anyhow::Result<Locations> {
    locate_file_pinned(owner, file, me, None).await
}

/// As [`locate_file`], refusing an owner that does not prove key `pin` (if given).
///
/// # Errors
///
/// As [`locate_file`], or the owner proved another key.
pub async fn locate_file_pinned(
    owner: &Endpoint,
    file: String,
    me: &Identity,
    pin: Option<&NodeId>,
) -> anyhow::Result<Locations> {
    let query = Message::Locate { file };
    let (body, _) = ask_proven(owner, query, me, pin).await?;
    Ok(serde_json::from_slice(&body)?)
}
