//! Tickets: one line a user can paste that names a file and pins its content, like seed
//! 003's "magnet links".
//!
//! `ringswarm://HOST:PORT/<blake3 hash, 64 hex digits>?name=<name>&size=<bytes>&node=<id>`
//!
//! `HOST:PORT` is the directory to ask (a file owner or tracker); the hash is the whole file's
//! BLAKE3 hash, which the download checks the directory's manifest against (a directory that
//! names a different hash is refused); `name` and `size` are for people and for the checks
//! (the name is percent-encoded); `node`, the directory's node id (`rsw1…`, see
//! [`crate::key`]), pins the directory itself: a download refuses a directory whose handshake
//! proves another key. A ticket without `node` (made before keys) pins no key.

use std::fmt;
use std::str::FromStr;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::hash::Hash;
use crate::key::NodeId;
use crate::manifest::{Manifest, display_name, echo};

/// The scheme every ticket starts with.
pub const SCHEME: &str = "ringswarm://";

/// The longest ticket accepted, in bytes (a name is at most a few hundred bytes).
pub const MAX_TICKET_LEN: usize = 4096;

/// What a name keeps unencoded: letters, digits and `-._~` (RFC 3986's unreserved).
const NAME: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A parsed ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The directory's `HOST:PORT`.
    pub directory: String,
    /// The whole file's BLAKE3 hash.
    pub hash: Hash,
    /// The file's name.
    pub name: String,
    /// The file's size in bytes.
    pub size: u64,
    /// The directory's key, when the ticket pins it.
    pub node: Option<NodeId>,
}

impl Ticket {
    /// The ticket of `manifest` at the directory `directory` (`HOST:PORT`), whose key is
    /// `node`.
    pub fn new(directory: impl Into<String>, manifest: &Manifest, node: Option<NodeId>) -> Self {
        Self {
            directory: directory.into(),
            hash: manifest.hash,
            name: manifest.name.clone(),
            size: manifest.size,
            node,
        }
    }

    /// Whether `text` looks like a ticket (it starts with the scheme), so a command can tell
    /// a ticket from an owner address.
    pub fn looks_like(text: &str) -> bool {
        text.starts_with(SCHEME)
    }

    /// Checks that `manifest`, the directory's answer, is the file this ticket pins.
    ///
    /// # Errors
    ///
    /// A message naming both hashes (or sizes).
    pub fn check(&self, manifest: &Manifest) -> Result<(), String> {
        if manifest.hash != self.hash {
            return Err(format!(
                "the directory at {} names a different file: \"{}\" has blake3 {}, but the ticket pins {}",
                self.directory,
                display_name(&manifest.name),
                manifest.hash,
                self.hash
            ));
        }
        if manifest.size != self.size {
            return Err(format!(
                "the directory at {} says \"{}\" has {} bytes, but the ticket says {}",
                self.directory,
                display_name(&manifest.name),
                manifest.size,
                self.size
            ));
        }
        Ok(())
    }
}

impl fmt::Display for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME}{}/{}?name={}&size={}",
            self.directory,
            self.hash,
            utf8_percent_encode(&self.name, NAME),
            self.size
        )?;
        match &self.node {
            Some(node) => write!(f, "&node={node}"),
            None => Ok(()),
        }
    }
}

/// Why a ticket was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid ticket: {0} (expected {SCHEME}HOST:PORT/<64 hex digits>?name=NAME&size=BYTES[&node=ID])"
)]
pub struct TicketError(String);

fn bad(why: impl Into<String>) -> TicketError {
    TicketError(why.into())
}

impl FromStr for Ticket {
    type Err = TicketError;

    fn from_str(text: &str) -> Result<Self, TicketError> {
        if text.len() > MAX_TICKET_LEN {
            return Err(bad(format!(
                "{} bytes, longer than the {MAX_TICKET_LEN} a ticket may have",
                text.len()
            )));
        }
        let rest = text
            .strip_prefix(SCHEME)
            .ok_or_else(|| bad(format!("it does not start with {SCHEME}")))?;
        let (path, query) = rest
            .split_once('?')
            .ok_or_else(|| bad("no ?name=…&size=…"))?;
        let (directory, hash) = path
            .split_once('/')
            .ok_or_else(|| bad("no /HASH after HOST:PORT"))?;
        check_directory(directory)?;
        let hash: Hash = hash.parse().map_err(|_| {
            bad(format!(
                "{} is not a BLAKE3 hash of 64 hex digits",
                echo(hash)
            ))
        })?;
        let (mut name, mut size, mut node) = (None, None, None);
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "name" => {
                    let decoded = percent_decode_str(value)
                        .decode_utf8()
                        .map_err(|_| bad("the name is not UTF-8"))?;
                    name = Some(decoded.into_owned());
                }
                "size" => {
                    size = Some(value.parse::<u64>().map_err(|_| {
                        bad(format!("size {} is not a number of bytes", echo(value)))
                    })?);
                }
                "node" => {
                    node = Some(value.parse::<NodeId>().map_err(|e| bad(e.to_string()))?);
                }
                _ => {} // room for more
            }
        }
        let name = name
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad("no name"))?;
        let size = size.ok_or_else(|| bad("no size"))?;
        Ok(Self {
            directory: directory.to_string(),
            hash,
            name,
            size,
            node,
        })
    }
}

/// `HOST:PORT`, with a port of 1–65535 and a host of letters, digits, `-`, `.` (or an IPv6
/// address in brackets).
fn check_directory(directory: &str) -> Result<(), TicketError> {
    let (host, port) = directory
        .rsplit_once(':')
        .ok_or_else(|| bad(format!("{} is not HOST:PORT", echo(directory))))?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err(bad(format!("port {} is not 1 to 65535", echo(port)))),
    }
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
    let v6 = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_ok());
    if host.is_empty() || !(v6 || host.chars().all(plain)) {
        return Err(bad(format!(
            "host {} is not a name or an address",
            echo(host)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(name: &str) -> Manifest {
        let mut m = Manifest::for_tests(3);
        m.name = name.into();
        m
    }

    #[test]
    fn a_ticket_round_trips_with_any_name() {
        for name in ["big.iso", "a b&c=d?e/f#g", "ünï cødé 🐝", "100%"] {
            let t = Ticket::new("127.0.0.1:6000", &manifest(name), None);
            let text = t.to_string();
            assert!(text.starts_with("ringswarm://127.0.0.1:6000/"), "{text}");
            assert!(!text[SCHEME.len()..].contains(' '), "{text}");
            assert_eq!(text.parse::<Ticket>().unwrap(), t, "{text}");
        }
        let t = Ticket::new("[::1]:6000", &manifest("x"), None);
        assert_eq!(t.to_string().parse::<Ticket>().unwrap(), t);
    }

    #[test]
    fn a_bad_ticket_says_what_is_wrong() {
        let good = Ticket::new("h:1", &manifest("x"), None).to_string();
        let hash = good.split('/').nth(3).unwrap().split('?').next().unwrap();
        for (text, why) in [
            (
                "http://h:1/x?name=a&size=1".to_string(),
                "does not start with",
            ),
            (format!("ringswarm://h:1/{hash}"), "no ?name"),
            (
                format!("ringswarm://h/{hash}?name=a&size=1"),
                "not HOST:PORT",
            ),
            (
                format!("ringswarm://h:0/{hash}?name=a&size=1"),
                "port \"0\"",
            ),
            (
                format!("ringswarm://h;x:1/{hash}?name=a&size=1"),
                "host \"h;x\"",
            ),
            (
                "ringswarm://h:1/abc?name=a&size=1".to_string(),
                "64 hex digits",
            ),
            (format!("ringswarm://h:1/{hash}?size=1"), "no name"),
            (format!("ringswarm://h:1/{hash}?name=a"), "no size"),
            (
                format!("ringswarm://h:1/{hash}?name=a&size=-1"),
                "not a number",
            ),
            (
                format!("ringswarm://h:1/{hash}?name=%ff&size=1"),
                "not UTF-8",
            ),
            (
                "ringswarm://".to_string() + &"a".repeat(5000),
                "longer than",
            ),
        ] {
            let e = text.parse::<Ticket>().unwrap_err().to_string();
            assert!(
                e.contains(why) && e.starts_with("invalid ticket: "),
                "{text}: {e}"
            );
        }
    }

    /// What a bad ticket's error repeats of it is escaped and cut: a ticket's own escape
    /// sequences never reach the terminal, and a long one gives a short line.
    #[test]
    fn a_bad_ticket_is_echoed_short_and_escaped() {
        let esc = "\x1b]0;pwned\x07\x1b[2J\u{202e}";
        let pad = "a".repeat(3000);
        let good = Ticket::new("h:1", &manifest("x"), None).to_string();
        let hash = good.split('/').nth(3).unwrap().split('?').next().unwrap();
        for text in [
            format!("ringswarm://h:1/{esc}{pad}?name=a&size=1"),
            format!("ringswarm://h{esc}:1/{hash}?name=a&size=1"),
            format!("ringswarm://h:{esc}{pad}/{hash}?name=a&size=1"),
            format!("ringswarm://h:1/{hash}?name=a&size={esc}{pad}"),
            format!("ringswarm://{esc}{pad}/{hash}?name=a&size=1"),
            format!("ringswarm://{esc}{}", "a".repeat(130_000)),
        ] {
            let e = text.parse::<Ticket>().unwrap_err().to_string();
            assert!(e.len() < 400, "{} bytes: {e}", e.len());
            assert!(
                !e.chars().any(|c| c.is_control() || c == '\u{202e}'),
                "{e:?}"
            );
        }
        let mut m = manifest("evil\x1b[2J\u{202e}txt.exe");
        m.hash = Hash::of(b"other");
        let e = Ticket::new("h:1", &manifest("x"), None)
            .check(&m)
            .unwrap_err();
        assert!(e.contains("\"evil\\u{1b}[2J\\u{202e}txt.exe\""), "{e}");
    }

    #[test]
    fn a_ticket_refuses_a_manifest_of_other_content() {
        let m = manifest("x");
        let t = Ticket::new("h:1", &m, None);
        assert!(t.check(&m).is_ok());
        let mut other = m.clone();
        other.hash = Hash::of(b"other");
        let e = t.check(&other).unwrap_err();
        assert!(
            e.contains("names a different file") && e.contains("ticket pins"),
            "{e}"
        );
    }
}
