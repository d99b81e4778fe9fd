//! Shared-secret swarms (`--secret`, or the `RINGSWARM_SECRET` environment variable).
//!
//! The secret is never sent. Two keys are derived from it (`blake3::derive_key`, then keyed
//! BLAKE3 of a fixed label): the pre-shared key of every connection's Noise handshake
//! ([`Secret::psk`], see `crate::secure`), without which no handshake completes, and the
//! bearer token of the owner's HTTP side ([`Secret::http_token`]). Neither reveals the secret
//! or the other key.

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

    /// The pre-shared key of the Noise handshake (`Noise_XXpsk0_…`): a keyed hash of a fixed
    /// label, so that it differs from the HTTP token.
    pub fn psk(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(b"ringswarm noise pre-shared key v1");
        *h.finalize().as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keys_depend_on_the_secret_and_differ() {
        let (a, b) = (
            Secret::new("open sesame").unwrap(),
            Secret::new("open sesame!").unwrap(),
        );
        assert_eq!(a.psk(), Secret::new("open sesame").unwrap().psk());
        assert_ne!(a.psk(), b.psk());
        assert_ne!(
            blake3::Hash::from_bytes(a.psk()).to_hex().to_string(),
            a.http_token()
        );
        assert!(a.accepts_http_token(&a.http_token()));
        assert!(!a.accepts_http_token(&b.http_token()));
        assert!(Secret::new("").is_err());
        assert_eq!(format!("{a:?}"), "Secret(…)");
    }
}
