//! The owner's side of directory queries (`list`, `search`, `locate`): a connection that
//! opens with one, or says `hello` as a querier, gets answers until it closes; a client being
//! served chunks may `locate` too.

use bytes::Bytes;

use crate::connection::{Connection, HANDSHAKE_TIMEOUT};
use crate::directory::Directory;
use crate::protocol::{Message, ProtocolError};
use crate::{Error, Result};

/// Answers directory queries, `first` and then each the client sends, until it closes or
/// stays silent after an answer (silence before the first query is an error).
///
/// # Errors
///
/// A message that is not a query (answered with an `error`), silence before the first query,
/// or a failed send.
pub(super) async fn answer_queries(
    mut conn: Connection,
    first: Option<Message>,
    directory: &Directory,
) -> Result<()> {
    let mut next = first;
    let mut answered = false;
    loop {
        let q = match next.take() {
            Some(q) => q,
            None => match conn
                .recv_answering("waiting for a query", HANDSHAKE_TIMEOUT)
                .await
            {
                Ok(Some(q)) if q.is_query() => q,
                Ok(None) => return Ok(()),
                Err(ProtocolError::Timeout(_)) if answered => return Ok(()),
                Ok(Some(other)) => {
                    let doing = if answered {
                        "answering queries"
                    } else {
                        "waiting for a query"
                    };
                    let e = ProtocolError::unexpected(Some(&other), doing);
                    conn.send_error(e.to_string()).await;
                    return Err(e.into());
                }
                Err(e) => return Err(e.into()),
            },
        };
        conn.send(answer(&q, directory)?).await?;
        answered = true;
    }
}

/// The answer to query `q`.
///
/// # Errors
///
/// `q` is not a query, or its answer does not serialise (both bugs).
pub(super) fn answer(q: &Message, directory: &Directory) -> Result<Message> {
    let body = match q {
        Message::List => serde_json::to_vec(&directory.list()),
        Message::Search { text } => serde_json::to_vec(&directory.search(text)),
        Message::Locate { file } => {
            return Ok(Message::locations(Bytes::from(
                serde_json::to_vec(&directory.locate(file))
                    .map_err(|e| Error::Bug(e.to_string()))?,
            )));
        }
        _ => return Err(Error::Bug(format!("{} is not a query", q.kind()))),
    }
    .map_err(|e| Error::Bug(e.to_string()))?;
    Ok(Message::files(Bytes::from(body)))
}
