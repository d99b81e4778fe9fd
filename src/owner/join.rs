//! A client's join at the owner, as one sequence of states, each step consuming the last:
//!
//! ```text
//! Opened::read ──Client(hello)──▶ Joining::find ──▶ Joining::place ──▶ Placed::welcome ──▶ session::Client
//!   opening, secret               file, have list     hand-out, membership,    `welcome` sent
//!                                                     neighbour, publisher
//! ```
//!
//! `find` and `place` touch no socket: a client they turn away gets a [`Refusal`], which the
//! caller sends. Refusals keep their words: clients and tests read them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tracing::info;

use super::member::Membership;
use super::place::{self, RingPlace};
use super::session::Client;
use super::shared::SharedFile;
use super::state::Owner;
use crate::chunkset::{ChunkSet, Ranges};
use crate::connection::{Connection, Hello, Opening};
use crate::events::EventKind;
use crate::manifest::ChunkId;
use crate::protocol::{MAX_RANGES_PER_MESSAGE, Message, Role};
use crate::{Error, Result};

/// What a connection opened with (after the handshake, which the shared secret, if any, is
/// part of).
pub(super) enum Opened {
    /// A client that will fetch chunks (a ring peer or a getter), or a publisher.
    Client(Hello),
    /// A directory query connection, with its first query if it opened with one.
    Queries(Option<Message>),
}

impl Opened {
    /// Reads the opening message: a `hello`, or a directory query.
    ///
    /// # Errors
    ///
    /// A bad opening (answered with an `error`).
    pub(super) async fn read(conn: &mut Connection) -> Result<Self> {
        let hello = match conn.recv_opening(true).await? {
            Opening::Hello(h) => h,
            Opening::Query(q) => return Ok(Self::Queries(Some(q))),
        };
        if hello.role == Role::Query {
            return Ok(Self::Queries(None));
        }
        Ok(Self::Client(hello))
    }
}

/// Why a step turned a client away: what it is told, and the error that ends its connection.
#[derive(Debug)]
pub(super) struct Refusal {
    told: String,
    error: Error,
}

impl Refusal {
    /// A refusal that says `msg` and ends the connection with [`Error::Refused`].
    fn new(msg: String) -> Self {
        Self {
            error: Error::Refused(msg.clone()),
            told: msg,
        }
    }

    /// Tells the client why, and returns the error that ends its connection.
    pub(super) async fn send(self, conn: &mut Connection) -> Error {
        conn.send_error(self.told).await;
        self.error
    }
}

/// A client whose file is found and whose have list fits it.
#[derive(Debug)]
pub(super) struct Joining {
    hello: Hello,
    /// The client's address as its connection saw it (`None`: not an `IP:PORT`).
    ip: Option<IpAddr>,
    shared: Arc<SharedFile>,
    held: ChunkSet,
}

impl Joining {
    /// The file `hello` asks for (by name, content hash or the directory's numeric id) and
    /// the chunks the client, connected from `remote`, holds of it.
    ///
    /// # Errors
    ///
    /// No such file, a withdrawn one, a bad have list, or a ring neighbour at the owner.
    pub(super) fn find(hello: Hello, remote: &str, owner: &Owner) -> Result<Self, Refusal> {
        let shared = owner
            .files
            .lookup(&owner.directory, hello.file.as_deref())
            .map_err(Refusal::new)?;
        let held =
            ChunkSet::try_from_ranges(&shared.manifest, &hello.have).map_err(|e| Refusal {
                told: format!("bad have list in hello: {e}"),
                error: e.into(),
            })?;
        if hello.role == Role::Neighbour {
            let msg = "this is a file owner, not a ring peer: connect as a peer or a getter";
            return Err(Refusal::new(msg.to_string()));
        }
        let ip = remote.parse::<SocketAddr>().ok().map(|a| a.ip());
        Ok(Self {
            hello,
            ip,
            shared,
            held,
        })
    }

    /// Hands a ring peer its chunks, registers a client with an upload server in the
    /// directory for as long as its connection lives, and finds a joiner's download
    /// neighbour and a published file's publisher.
    ///
    /// # Errors
    ///
    /// A joiner that could not be registered (no port, or its address taken).
    pub(super) fn place(self, owner: &Owner) -> Result<Placed<'_>, Refusal> {
        let Self {
            hello,
            ip,
            shared,
            held,
        } = self;
        // A published file's ring is handed out by the publisher it is sent to (see
        // `welcome`).
        let assigned = if hello.role.is_ring() && !shared.is_published() {
            shared.hand_out(&held, owner.config.seed)
        } else {
            Vec::new()
        };
        let member = Membership::register(owner, ip, &shared, &hello, &held);
        info!(
            peer = %hello.label,
            file = %crate::manifest::display_name(&shared.manifest.name),
            role = ?hello.role,
            assigned = assigned.len(),
            holds = held.count(),
            registered = member.is_some(),
            "peer joined"
        );
        let neighbour = match (hello.role, &member) {
            (Role::Joiner, Some(m)) => place::neighbour(&owner.directory, &shared, m.id),
            (Role::Joiner, None) => return Err(Refusal::new(unregistered(ip, hello.port))),
            _ => None,
        };
        let publisher = place::publisher(&owner.directory, &shared, hello.role);
        Ok(Placed {
            hello,
            shared,
            assigned,
            member,
            neighbour,
            publisher,
        })
    }
}

/// Why a joiner could not be registered: its address is a member through another connection,
/// or it gave no port.
fn unregistered(ip: Option<IpAddr>, port: Option<u16>) -> String {
    match ip.zip(port.filter(|&p| p != 0)) {
        Some((ip, port)) => format!(
            "another node holds {}{} through another connection (the same address and port); \
             retrying until it leaves or its entry expires (--peer-ttl)",
            SocketAddr::new(ip, port),
            crate::error::ADDRESS_HELD
        ),
        None => {
            "peer join needs its own port (hello.port): a ring member must be reachable".to_string()
        }
    }
}

/// A client with its chunks, its directory membership and its place in the ring, to be
/// welcomed.
pub(super) struct Placed<'o> {
    hello: Hello,
    shared: Arc<SharedFile>,
    /// The chunks it was handed (a ring peer of a file the owner holds).
    assigned: Vec<ChunkId>,
    member: Option<Membership<'o>>,
    /// A joiner's download neighbour.
    neighbour: Option<SocketAddr>,
    /// The publisher that serves a published file's ring member its chunks.
    publisher: Option<SocketAddr>,
}

impl<'o> Placed<'o> {
    /// Sends `welcome`: the manifest, the assigned chunks, and for a ring peer its download
    /// neighbour (a joiner's) and the publisher that serves its chunks (a published file's).
    /// The session to serve it follows.
    ///
    /// # Errors
    ///
    /// The send failed.
    pub(super) async fn welcome(self, conn: &mut Connection, owner: &Owner) -> Result<Client<'o>> {
        let Self {
            hello,
            shared,
            assigned,
            member,
            neighbour,
            publisher,
        } = self;
        // Assignments are contiguous runs (see `assign`), so this cut never bites in practice.
        let mut ranges = Ranges::from_sorted(assigned.iter().map(|c| c.get()));
        ranges.0.truncate(MAX_RANGES_PER_MESSAGE);
        let count = u32::try_from(assigned.len()).unwrap_or(u32::MAX);
        let events = &owner.config.events;
        events.id_list(EventKind::IdListSent, count, &hello.label);
        let heartbeat = owner.directory.ttl() / 3;
        conn.send(Message::Welcome {
            assigned: ranges,
            len: shared.manifest_json.len() as u64,
            heartbeat_ms: Some(u64::try_from(heartbeat.as_millis()).unwrap_or(u64::MAX)),
            neighbour: neighbour.map(|a| a.to_string()),
            empty: shared.is_published(),
            publisher: publisher.map(|a| a.to_string()),
            manifest: shared.manifest_json.clone(),
        })
        .await?;
        let id = member.as_ref().map(|m| m.id);
        let told = (neighbour, publisher);
        let place = RingPlace::of(&owner.directory, &shared, hello.role, id, told);
        Ok(Client {
            shared,
            label: hello.label,
            role: hello.role,
            member,
            place,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::connection::HANDSHAKE_TIMEOUT;
    use crate::protocol::MAX_MANIFEST_LEN;

    const TTL: Duration = Duration::from_secs(45);

    /// A 10-chunk file in memory, for 5 expected peers (2 chunks each).
    fn file(name: &str) -> Arc<SharedFile> {
        let data = Bytes::from(vec![7u8; 10_000]);
        Arc::new(SharedFile::from_memory(name, data, 1000, 5).unwrap())
    }

    fn hello(role: Role, file: Option<&str>, port: Option<u16>) -> Hello {
        Hello {
            role,
            file: file.map(Into::into),
            have: Ranges::default(),
            label: "127.0.0.1:40000".into(),
            port,
            node: None,
        }
    }

    /// The refusal a step ended with; panics if it went on.
    fn refusal<T>(step: Result<T, Refusal>) -> Refusal {
        match step {
            Ok(_) => panic!("the step went on"),
            Err(r) => r,
        }
    }

    /// A refusal says `told` and ends the connection with the same words.
    fn assert_refused(r: &Refusal, told: &str) {
        assert_eq!(r.told, told);
        assert!(matches!(&r.error, Error::Refused(m) if m == told), "{r:?}");
    }

    #[test]
    fn the_only_file_is_found_with_the_chunks_held() {
        let owner = Owner::for_tests(vec![file("data.bin")], TTL);
        let mut h = hello(Role::Getter, None, None);
        h.have = Ranges(vec![[0, 2]]);
        let joining = Joining::find(h, "127.0.0.1:40000", &owner).unwrap();
        assert_eq!(joining.shared.manifest.name, "data.bin");
        assert_eq!(joining.held.count(), 3);
        assert_eq!(joining.ip, Some([127, 0, 0, 1].into()));
    }

    #[test]
    fn a_file_not_shared_is_refused_with_the_names_shared() {
        let owner = Owner::for_tests(vec![file("a.bin"), file("b.bin")], TTL);
        let names = owner.directory.offered_names(false);
        let h = hello(Role::Peer, Some("nope.bin"), None);
        let r = refusal(Joining::find(h, "127.0.0.1:40000", &owner));
        assert_refused(
            &r,
            &format!("owner does not share \"nope.bin\"; it shares: {names}"),
        );
        let r = refusal(Joining::find(hello(Role::Peer, None, None), "x", &owner));
        let told = format!("owner shares 2 files; choose one with --file NAME: {names}");
        assert_refused(&r, &told);
    }

    #[test]
    fn a_withdrawn_file_is_refused_as_changed() {
        let shared = file("data.bin");
        let owner = Owner::for_tests(vec![shared.clone()], TTL);
        shared.withdraw();
        let h = hello(Role::Peer, Some("data.bin"), None);
        let r = refusal(Joining::find(h, "127.0.0.1:40000", &owner));
        assert_refused(&r, &shared.changed_message());
    }

    #[test]
    fn a_bad_have_list_is_answered_but_not_a_refusal() {
        let owner = Owner::for_tests(vec![file("data.bin")], TTL);
        let mut h = hello(Role::Peer, None, None);
        h.have = Ranges(vec![[0, 99]]);
        let r = refusal(Joining::find(h, "127.0.0.1:40000", &owner));
        assert!(r.told.starts_with("bad have list in hello: "), "{}", r.told);
        assert!(!matches!(r.error, Error::Refused(_)), "{r:?}");
    }

    #[test]
    fn a_ring_neighbour_is_sent_elsewhere() {
        let owner = Owner::for_tests(vec![file("data.bin")], TTL);
        let h = hello(Role::Neighbour, None, None);
        let r = refusal(Joining::find(h, "127.0.0.1:40000", &owner));
        let told = "this is a file owner, not a ring peer: connect as a peer or a getter";
        assert_refused(&r, told);
    }

    /// `find` then `place`: a client in `role` with an upload server on `port`, from `remote`.
    fn try_place<'o>(
        owner: &'o Owner,
        (role, port): (Role, Option<u16>),
        remote: &str,
    ) -> Result<Placed<'o>, Refusal> {
        Joining::find(hello(role, None, port), remote, owner).and_then(|j| j.place(owner))
    }

    /// As [`try_place`], for a client that is not refused.
    fn place<'o>(owner: &'o Owner, client: (Role, Option<u16>), remote: &str) -> Placed<'o> {
        try_place(owner, client, remote).unwrap_or_else(|r| panic!("{r:?}"))
    }

    #[test]
    fn a_ring_peer_is_handed_its_share_and_a_getter_none() {
        let owner = Owner::for_tests(vec![file("data.bin")], TTL);
        let peer = place(&owner, (Role::Peer, Some(7001)), "127.0.0.1:1");
        assert_eq!(peer.assigned.len(), 2);
        assert!(peer.member.is_some() && peer.neighbour.is_none() && peer.publisher.is_none());
        let getter = place(&owner, (Role::Getter, None), "127.0.0.1:2");
        assert!(getter.assigned.is_empty() && getter.member.is_none());
        let members = owner.directory.peers();
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].addr, "127.0.0.1:7001");
        drop(peer);
        assert!(owner.directory.peers().is_empty(), "a dropped join leaves");
    }

    #[test]
    fn joiners_are_placed_at_the_end_of_the_ring() {
        let owner = Owner::for_tests(vec![file("data.bin")], TTL);
        let first = place(&owner, (Role::Joiner, Some(7001)), "127.0.0.1:1");
        assert_eq!(first.neighbour, None, "alone in its ring");
        let second = place(&owner, (Role::Joiner, Some(7002)), "127.0.0.1:2");
        assert_eq!(second.neighbour, Some("127.0.0.1:7001".parse().unwrap()));
    }

    #[test]
    fn a_joiner_that_cannot_be_registered_is_told_why() {
        let owner = Owner::for_tests(vec![file("data.bin")], TTL);
        let r = refusal(try_place(&owner, (Role::Joiner, None), "127.0.0.1:1"));
        let told = "peer join needs its own port (hello.port): a ring member must be reachable";
        assert_refused(&r, told);
        let _held = place(&owner, (Role::Joiner, Some(7001)), "127.0.0.1:1");
        let r = refusal(try_place(&owner, (Role::Joiner, Some(7001)), "127.0.0.1:2"));
        let told = format!(
            "another node holds 127.0.0.1:7001{} through another connection (the same address and port); \
             retrying until it leaves or its entry expires (--peer-ttl)",
            crate::error::ADDRESS_HELD
        );
        assert_refused(&r, &told);
        assert!(r.error.is_busy(), "worth retrying");
    }

    /// `welcome` over an in-memory stream: the manifest, the chunks handed out, the heartbeat
    /// for the directory's TTL, and the neighbour; the session gets the membership.
    #[tokio::test(start_paused = true)]
    async fn welcome_says_what_the_joiner_was_handed_and_where_it_sits() {
        let owner = Owner::for_tests(vec![file("data.bin")], TTL);
        let _first = place(&owner, (Role::Joiner, Some(7001)), "127.0.0.1:1");
        let placed = place(&owner, (Role::Joiner, Some(7002)), "127.0.0.1:2");
        let handed = Ranges::from_sorted(placed.assigned.iter().map(|c| c.get()));
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let mut conn = Connection::over(ours, "127.0.0.1:2".into(), 0);
        let client = placed.welcome(&mut conn, &owner).await.unwrap();
        assert!(client.member.is_some() && client.place.is_some());
        let mut theirs = Connection::over(theirs, "owner".into(), MAX_MANIFEST_LEN);
        let got = theirs.recv("welcome", HANDSHAKE_TIMEOUT).await.unwrap();
        let Some(Message::Welcome {
            assigned,
            heartbeat_ms,
            neighbour,
            empty,
            publisher,
            manifest,
            ..
        }) = got
        else {
            panic!("{got:?}");
        };
        assert_eq!(assigned, handed);
        assert_eq!(heartbeat_ms, Some(15_000));
        assert_eq!(neighbour.as_deref(), Some("127.0.0.1:7001"));
        assert!(!empty && publisher.is_none());
        assert_eq!(manifest, client.shared.manifest_json());
    }
}
