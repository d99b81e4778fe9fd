//! Shared-secret swarms (`--secret`, or the `RINGSWARM_SECRET` environment variable).
//!
//! A mutual challenge–response with a keyed BLAKE3 hash; the secret never crosses the wire.
//! Both sides derive a key from the secret (`blake3::derive_key`). Then:
//!
//! ```text
//! client                                         server
//!   | hello {…, nonce: Nc} ----------------------->|
//!   |<--- challenge {nonce: Ns, proof: H(k, "server" ‖ Nc ‖ Ns)}
//!   | proof {proof: H(k, "client" ‖ Ns ‖ Nc)} ---->|
//!   |<---------------------------- welcome …       |   (or, after a query hello, answers)
//! ```
//!
//! Nonces are 32 random bytes, fresh per connection, so a recorded proof is worth nothing on
//! another connection. Each side checks the other's proof (in constant time) before it sends
//! or accepts anything else: a server never serves a client that cannot prove it knows the
//! secret, and a client never takes a manifest or a chunk from a server that cannot. A server
//! with a secret refuses a `hello` without a nonce; a client with a secret refuses a server
//! that answers without a challenge. Without a secret on either side, nothing changes.

use rand::RngCore;

use crate::connection::{Connection, HANDSHAKE_TIMEOUT};
use crate::protocol::{Message, ProtocolError};
use crate::{Error, Result};

/// The environment variable read when `--secret` is not given.
pub const SECRET_ENV: &str = "RINGSWARM_SECRET";

const KEY_CONTEXT: &str = "ringswarm 2026-11-22 shared swarm secret v1";

/// A swarm's shared secret, as a derived key (the secret itself is not kept).
#[derive(Clone)]
pub struct Secret {
    key: [u8; 32],
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    /// The key for `secret`.
    ///
    /// # Errors
    ///
    /// An empty secret.
    pub fn new(secret: &str) -> Result<Self> {
        if secret.is_empty() {
            return Err(Error::Refused("the shared secret must not be empty".into()));
        }
        Ok(Self {
            key: blake3::derive_key(KEY_CONTEXT, secret.as_bytes()),
        })
    }

    /// The HTTP side's bearer token: a keyed hash of a fixed label, 64 hex digits. It opens
    /// the owner's HTTP API and dashboard (`Authorization: Bearer …`, or the cookie the login
    /// form sets) and nothing else; the secret cannot be recovered from it.
    pub fn http_token(&self) -> String {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(b"ringswarm http bearer token v1");
        h.finalize().to_hex().to_string()
    }

    /// Whether `token` is [`Secret::http_token`], compared in constant time.
    pub fn accepts_http_token(&self, token: &str) -> bool {
        let Ok(given) = blake3::Hash::from_hex(token.trim()) else {
            return false;
        };
        let expected = blake3::Hash::from_hex(self.http_token()).expect("hex of a hash");
        // `blake3::Hash`'s equality is constant-time.
        given == expected
    }

    fn mac(&self, side: &str, first: &[u8; 32], second: &[u8; 32]) -> blake3::Hash {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(side.as_bytes());
        h.update(first);
        h.update(second);
        h.finalize()
    }
}

/// A fresh random nonce, as sent in `hello.nonce`.
pub fn new_nonce() -> [u8; 32] {
    let mut n = [0u8; 32];
    rand::rng().fill_bytes(&mut n);
    n
}

fn hex(b: &[u8; 32]) -> String {
    blake3::Hash::from_bytes(*b).to_hex().to_string()
}

fn unhex(s: &str, what: &'static str) -> Result<[u8; 32], ProtocolError> {
    blake3::Hash::from_hex(s)
        .map(|h| *h.as_bytes())
        .map_err(|_| ProtocolError::MalformedHeader(format!("{what} is not 64 hex digits")))
}

/// The client's nonce for `hello`, if it has a secret.
pub fn hello_nonce(secret: Option<&Secret>) -> (Option<[u8; 32]>, Option<String>) {
    match secret {
        Some(_) => {
            let n = new_nonce();
            (Some(n), Some(hex(&n)))
        }
        None => (None, None),
    }
}

/// The server's side, right after a `hello` carrying `nonce` from `who`: with a secret,
/// challenge the client and check its proof; without, nothing.
///
/// # Errors
///
/// The client sent no nonce or a wrong proof (it has been sent an `error`), or the
/// connection failed.
pub async fn server(
    conn: &mut Connection,
    secret: Option<&Secret>,
    nonce: Option<&str>,
    who: &str,
) -> Result<()> {
    let Some(secret) = secret else {
        return Ok(());
    };
    let Some(nonce) = nonce else {
        let msg = "this swarm needs the shared secret: start with --secret or RINGSWARM_SECRET";
        conn.send_error(msg.into()).await;
        return Err(Error::Refused(format!(
            "{who} did not offer the shared secret"
        )));
    };
    let client_nonce = match unhex(nonce, "hello nonce") {
        Ok(n) => n,
        Err(e) => {
            conn.send_error(e.to_string()).await;
            return Err(e.into());
        }
    };
    let ours = new_nonce();
    conn.send(Message::Challenge {
        nonce: hex(&ours),
        proof: secret
            .mac("server", &client_nonce, &ours)
            .to_hex()
            .to_string(),
    })
    .await?;
    let proof = match conn
        .recv_answering("waiting for the proof of the secret", HANDSHAKE_TIMEOUT)
        .await?
    {
        Some(Message::Proof { proof }) => proof,
        other => {
            let e =
                ProtocolError::unexpected(other.as_ref(), "waiting for the proof of the secret");
            conn.send_error(e.to_string()).await;
            return Err(e.into());
        }
    };
    let expected = secret.mac("client", &ours, &client_nonce);
    // `blake3::Hash` compares in constant time.
    if blake3::Hash::from_hex(&proof).ok() != Some(expected) {
        conn.send_error("wrong shared secret".into()).await;
        return Err(Error::Refused(format!(
            "{who} does not know the shared secret (wrong proof); refused"
        )));
    }
    Ok(())
}

/// The client's side, after sending `hello` with `nonce` (from [`hello_nonce`]): reads the
/// server's first answer; with a secret, checks the challenge, sends the proof and reads the
/// next answer. Returns the answer that follows the handshake (`welcome`).
///
/// # Errors
///
/// The server refused, could not prove it knows the secret, or asked for none although this
/// client has one; or the connection failed.
pub async fn client(
    conn: &mut Connection,
    secret: Option<&Secret>,
    nonce: Option<[u8; 32]>,
    what: &'static str,
) -> Result<Option<Message>> {
    let first = conn.recv(what, HANDSHAKE_TIMEOUT).await.map_err(remote)?;
    let (Some(secret), Some(ours)) = (secret, nonce) else {
        if matches!(first, Some(Message::Challenge { .. })) {
            return Err(Error::Refused(format!(
                "{} needs the shared secret: start with --secret or RINGSWARM_SECRET",
                conn.remote()
            )));
        }
        return Ok(first);
    };
    prove(conn, secret, ours, first).await?;
    conn.recv(what, HANDSHAKE_TIMEOUT).await.map_err(remote)
}

/// As [`client`] for a `query` hello (a secret is required): after the proof, sends `next`
/// (the query) and returns its answer; the server sends nothing in between.
///
/// # Errors
///
/// As [`client`].
pub async fn client_then(
    conn: &mut Connection,
    secret: &Secret,
    nonce: [u8; 32],
    next: Message,
    what: &'static str,
) -> Result<Option<Message>> {
    let first = conn.recv(what, HANDSHAKE_TIMEOUT).await.map_err(remote)?;
    prove(conn, secret, nonce, first).await?;
    conn.send(next).await?;
    conn.recv(what, HANDSHAKE_TIMEOUT).await.map_err(remote)
}

/// Checks the server's `challenge` (`first`) against our nonce `ours`, then sends our proof.
async fn prove(
    conn: &mut Connection,
    secret: &Secret,
    ours: [u8; 32],
    first: Option<Message>,
) -> Result<()> {
    let Some(Message::Challenge { nonce, proof }) = first else {
        return Err(Error::Refused(format!(
            "{} asked for no proof of the shared secret: it is not part of this swarm",
            conn.remote()
        )));
    };
    let theirs = unhex(&nonce, "challenge nonce")?;
    if blake3::Hash::from_hex(&proof).ok() != Some(secret.mac("server", &ours, &theirs)) {
        conn.send_error("wrong shared secret".into()).await;
        return Err(Error::Refused(format!(
            "{} holds a different shared secret (its proof does not match ours): check \
             --secret or RINGSWARM_SECRET on both sides",
            conn.remote()
        )));
    }
    conn.send(Message::Proof {
        proof: secret.mac("client", &theirs, &ours).to_hex().to_string(),
    })
    .await?;
    Ok(())
}

fn remote(e: ProtocolError) -> Error {
    match e {
        ProtocolError::Remote(msg) => Error::Refused(msg),
        e => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_depend_on_the_secret_the_side_and_both_nonces() {
        let (a, b) = (
            Secret::new("open sesame").unwrap(),
            Secret::new("open sesame!").unwrap(),
        );
        let (n1, n2) = (new_nonce(), new_nonce());
        assert_eq!(a.mac("client", &n1, &n2), a.mac("client", &n1, &n2));
        assert_ne!(a.mac("client", &n1, &n2), b.mac("client", &n1, &n2));
        assert_ne!(a.mac("client", &n1, &n2), a.mac("server", &n1, &n2));
        assert_ne!(a.mac("client", &n1, &n2), a.mac("client", &n2, &n1));
        assert!(Secret::new("").is_err());
        assert_eq!(format!("{a:?}"), "Secret(…)");
    }
}
