//! The directory's tests: files, members, rings, probes, answers and views.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::chunkset::ChunkSet;
use crate::manifest::Manifest;
use crate::protocol::MAX_ANSWER_LEN;
use crate::protocol::Role;

fn dir(ttl: Duration) -> Directory {
    let a = Arc::new(Manifest {
        name: "alpha.bin".into(),
        ..Manifest::for_tests(10)
    });
    let b = Arc::new(Manifest {
        name: "Beta.iso".into(),
        ..Manifest::for_tests(5)
    });
    Directory::new(vec![a, b], "127.0.0.1:7000".parse().unwrap(), ttl)
}

/// A published file's manifest: "gamma.bin", 4 chunks.
fn gamma() -> Arc<Manifest> {
    Arc::new(Manifest {
        name: "gamma.bin".into(),
        ..Manifest::for_tests(4)
    })
}

fn set(count: u32, ids: impl IntoIterator<Item = u32>) -> ChunkSet {
    let m = Manifest::for_tests(count as usize);
    let mut s = ChunkSet::new(count);
    for i in ids {
        s.insert(m.chunk_id(i).unwrap());
    }
    s
}

#[test]
fn ids_names_and_search() {
    let d = dir(DEFAULT_PEER_TTL);
    assert_eq!(d.find("1"), Some(0));
    assert_eq!(d.find("2"), Some(1));
    assert_eq!(d.find("Beta.iso"), Some(1));
    assert_eq!(d.find("3"), None);
    assert_eq!(d.find("0"), None);
    let hits = d.search("BETA");
    assert_eq!(hits.files.len(), 1);
    assert_eq!(hits.files[0].id, 2);
    assert!(d.search("gamma").files.is_empty());
    assert_eq!(d.search("").files.len(), 2);
    let msg = d.locate("9").message.unwrap();
    assert_eq!(
        msg,
        "no file with id 9; the owner shares: 1 alpha.bin, 2 Beta.iso"
    );
}

/// A published file gets the next id; the same name and content is the same file, another
/// content another; it is listed, with no owner among its sources, only while a
/// publisher is a member.
#[tokio::test(start_paused = true)]
async fn published_files_are_listed_while_published() {
    let d = dir(DEFAULT_PEER_TTL);
    let m = gamma();
    let addr: SocketAddr = "127.0.0.1:9100".parse().unwrap();
    let (f, id) = d.publish(m.clone(), addr, None);
    assert_eq!(f, 2);
    let id = id.unwrap();
    let other_addr: SocketAddr = "127.0.0.1:9101".parse().unwrap();
    let (again, second) = d.publish(m.clone(), other_addr, None);
    assert_eq!(again, 2, "the same file");
    assert_eq!(
        d.publish(m.clone(), addr, None),
        (2, None),
        "one membership per address"
    );
    let mut other = (*m).clone();
    other.hash = crate::hash::Hash::of(b"other");
    let (third, third_id) = d.publish(Arc::new(other), addr, None);
    assert_eq!(third, 3, "another content, another id");
    assert!(!d.is_own(2) && d.is_own(1));
    assert_eq!(d.publishers(2), 2);
    let listed = d.list();
    assert_eq!(listed.files.len(), 4);
    let gamma = listed.files.iter().find(|f| f.id == 3).expect("listed");
    assert_eq!((gamma.complete_sources, gamma.partial_sources), (2, 0));
    let sources = d.locate("3").sources;
    assert!(
        sources.len() == 2 && sources[0].role == "publisher" && !sources[0].owner,
        "{sources:?}"
    );
    assert!(
        d.deregister(id).freed.is_empty(),
        "another publisher is left"
    );
    assert!(
        d.deregister(second.unwrap()).freed == vec![2],
        "freed with its last"
    );
    assert!(d.deregister(third_id.unwrap()).freed == vec![3]);
    assert_eq!(d.publishers(2), 0);
    assert_eq!(d.list().files.len(), 2, "gone with its publishers");
    assert_eq!(d.file_count(), 2, "and freed");
    assert_eq!(d.manifest(2), None);
    assert_eq!(d.find("3"), None, "its id is not found");
    assert_eq!(d.gone("gamma.bin").as_deref(), Some("gamma.bin"));
    assert!(
        d.no_such_file("gamma.bin")
            .contains("every publisher of \"gamma.bin\" has left")
    );
    // Published again, it is a new file with a new id: an old id never names another.
    let (f, _) = d.publish(m, addr, None);
    assert_eq!(f, 4);
}

/// A published file is held while any member of its swarm is left, even after its last
/// publisher: its ring goes on. The owner's own files are never freed.
#[tokio::test(start_paused = true)]
async fn a_published_file_is_freed_with_its_last_member() {
    let d = dir(DEFAULT_PEER_TTL);
    let m = gamma();
    let publisher: SocketAddr = "127.0.0.1:9100".parse().unwrap();
    let getter: SocketAddr = "127.0.0.1:9101".parse().unwrap();
    let (f, p) = d.publish(m, publisher, None);
    let g = d
        .register(f, getter, Role::Getter, ChunkSet::new(4), None)
        .unwrap();
    assert!(d.deregister(p.unwrap()).freed.is_empty());
    assert!(d.manifest(f).is_some(), "its getter is still in its swarm");
    assert!(
        d.list().files.iter().all(|x| x.id != 3),
        "but it is not offered"
    );
    let (dropped, left) = d.drop_addr(getter);
    assert_eq!((dropped, left.freed), (1, vec![f]));
    assert!(!d.deregister(g).was_member);
    assert_eq!(d.file_count(), 2);
    let own = d
        .register(0, getter, Role::Getter, ChunkSet::new(10), None)
        .unwrap();
    assert!(
        d.deregister(own).freed.is_empty(),
        "the owner's own file stays"
    );
    assert!(d.manifest(0).is_some());
}

/// The cost of publishing does not grow with the directory's history: 3 bursts of 2,000
/// files, each withdrawn, leave nothing behind, and members are found by address without
/// a scan.
#[tokio::test(start_paused = true)]
async fn bursts_of_publications_leave_nothing_behind() {
    let d = dir(DEFAULT_PEER_TTL);
    let addr: SocketAddr = "127.0.0.1:9100".parse().unwrap();
    for burst in 0..3u32 {
        let mut ids = Vec::new();
        for i in 0..2000u32 {
            let mut m = Manifest {
                name: format!("f{i}.bin"),
                ..Manifest::for_tests(4)
            };
            m.hash = crate::hash::Hash::of(format!("{burst}/{i}").as_bytes());
            let (_, id) = d.publish(Arc::new(m), addr, None);
            ids.push(id.unwrap());
        }
        assert_eq!(d.file_count(), 2002);
        assert_eq!(
            d.list().more + u32::try_from(d.list().files.len()).unwrap(),
            2002
        );
        for id in ids {
            assert_eq!(d.deregister(id).freed.len(), 1);
        }
        assert_eq!(d.file_count(), 2, "burst {burst} left nothing");
        let inner = d.inner();
        assert!(inner.by_name.len() == 2 && inner.by_content.len() == 2);
        assert!(inner.by_file.is_empty() && inner.by_addr.is_empty());
        assert_eq!(inner.gone.len(), MAX_GONE.min(2000 * (burst as usize + 1)));
    }
}

/// Joiners form a ring in join order, each downloading from the next and the last from
/// the first; a member leaving (or expiring) re-stitches it around the gap.
#[test]
fn a_ring_forms_in_join_order_and_restitches_around_a_gap() {
    let d = dir(Duration::from_millis(50));
    let addr = |i: u16| SocketAddr::from(([127, 0, 0, 1], 9300 + i));
    let ids: Vec<MemberId> = (0..4)
        .map(|i| {
            d.register(0, addr(i), Role::Joiner, set(10, []), None)
                .unwrap()
        })
        .collect();
    assert_eq!(d.join_ring(0, ids[0]), None, "alone");
    for &id in &ids[1..] {
        assert_eq!(d.join_ring(0, id), Some(addr(0)), "the last gets the first");
    }
    assert_eq!(
        d.join_ring(0, ids[3]),
        Some(addr(0)),
        "joining twice changes nothing"
    );
    let ring = |d: &Directory| -> Vec<Option<SocketAddr>> {
        ids.iter().map(|&id| d.neighbour_of(id)).collect()
    };
    assert_eq!(
        ring(&d),
        vec![Some(addr(1)), Some(addr(2)), Some(addr(3)), Some(addr(0))]
    );
    let mut changes = d.ring_changes();
    assert!(!changes.take_changed());
    let _ = d.deregister(ids[2]);
    assert!(changes.take_changed());
    assert_eq!(
        ring(&d),
        vec![Some(addr(1)), Some(addr(3)), None, Some(addr(0))]
    );
    let _ = d.deregister(ids[0]);
    assert_eq!(ring(&d), vec![None, Some(addr(3)), None, Some(addr(1))]);
    // A member of another file's ring is in its own ring.
    let other = d
        .register(1, addr(9), Role::Joiner, set(5, []), None)
        .unwrap();
    assert_eq!(d.join_ring(1, other), None);
    std::thread::sleep(Duration::from_millis(80));
    let _ = d.expire();
    assert_eq!(ring(&d), vec![None; 4], "all expired");
    assert_eq!(d.neighbour_of(other), None);
}

/// A ring member's backlog is what its download neighbour holds beyond it; a neighbour
/// found SLOW_BACKLOG chunks ahead stays slow while it is the neighbour.
#[test]
fn a_slow_neighbour_stays_slow_until_the_ring_changes() {
    let d = dir(DEFAULT_PEER_TTL);
    let m = |n| Arc::new(Manifest::for_tests(n));
    let file = d.add_held(m(100));
    let addr = |i: u16| SocketAddr::from(([127, 0, 0, 1], 9500 + i));
    let join = |i, have| {
        let id = d.register(file, addr(i), Role::Joiner, have, None).unwrap();
        let _ = d.join_ring(file, id);
        id
    };
    let a = join(0, set(100, []));
    assert_eq!(d.ring_backlog(a), None, "alone: no neighbour");
    let b = join(1, set(100, 0..SLOW_BACKLOG - 1));
    assert_eq!(d.ring_backlog(a), Some(SLOW_BACKLOG - 1));
    assert_eq!(d.ring_backlog(b), Some(0));
    assert!(!d.behind_slow_neighbour(a), "one short of the backlog");
    d.add_chunks(b, &set(100, [SLOW_BACKLOG]));
    assert!(d.behind_slow_neighbour(a));
    d.add_chunks(a, &set(100, 0..=SLOW_BACKLOG));
    assert!(d.behind_slow_neighbour(a), "caught up, it stays slow");
    assert!(!d.behind_slow_neighbour(b));
    let _ = d.deregister(b);
    let _ = join(2, set(100, []));
    assert!(
        !d.behind_slow_neighbour(a),
        "a new neighbour is judged afresh"
    );
}

/// A published file's ring is sent to its earliest publisher still registered; a
/// publisher coming or going is a ring change (its ring members are told again).
#[tokio::test(start_paused = true)]
async fn a_published_ring_follows_its_earliest_publisher() {
    let d = dir(DEFAULT_PEER_TTL);
    let m = gamma();
    let mut changes = d.ring_changes();
    assert!(!changes.take_changed());
    let (a, b): (SocketAddr, SocketAddr) = (
        "127.0.0.1:9201".parse().unwrap(),
        "127.0.0.1:9202".parse().unwrap(),
    );
    let (f, ida) = d.publish(m, a, None);
    let ida = ida.unwrap();
    assert!(changes.take_changed(), "a publisher came");
    d.register(f, b, Role::Publisher, ChunkSet::full(4), None)
        .unwrap();
    d.register(
        f,
        "127.0.0.1:9203".parse().unwrap(),
        Role::Getter,
        ChunkSet::full(4),
        None,
    );
    assert_eq!(d.publisher(f), Some(a), "the earliest");
    assert!(changes.take_changed(), "another came");
    let _ = d.deregister(ida);
    assert!(changes.take_changed(), "a publisher left");
    assert_eq!(d.publisher(f), Some(b));
    assert_eq!(d.publisher(0), None, "the owner's own file has none");
}

/// A publisher its ring's members report for bad chunks is demoted once two distinct
/// members said so (one lying member cannot do it): the ring is sent to the next
/// publisher, and it is no longer listed as a source. With every publisher demoted, none
/// is named.
#[tokio::test(start_paused = true)]
async fn a_publisher_reported_for_bad_chunks_is_demoted_by_two_members() {
    let d = dir(DEFAULT_PEER_TTL);
    let m = gamma();
    let addr = |i: u16| SocketAddr::from(([127, 0, 0, 1], 9400 + i));
    let (f, liar) = d.publish(m.clone(), addr(0), None);
    let (_, honest) = d.publish(m, addr(1), None);
    let (liar, honest) = (liar.unwrap(), honest.unwrap());
    let joiners: Vec<MemberId> = (2..5)
        .map(|i| {
            d.register(f, addr(i), Role::Joiner, ChunkSet::new(4), None)
                .unwrap()
        })
        .collect();
    assert_eq!(d.publisher(f), Some(addr(0)));
    let mut changes = d.ring_changes();
    assert!(!changes.take_changed());
    let first = d.report_bad(joiners[0], addr(0)).unwrap();
    assert_eq!((first.reports, first.needed, first.demoted), (1, 2, false));
    let again = d.report_bad(joiners[0], addr(0)).unwrap();
    assert_eq!(
        (again.reports, again.demoted),
        (1, false),
        "one member counts once"
    );
    assert_eq!(d.publisher(f), Some(addr(0)));
    assert!(!changes.take_changed());
    assert_eq!(d.report_bad(joiners[0], addr(2)), None, "not a publisher");
    assert_eq!(d.report_bad(liar, addr(0)), None, "not by itself");
    let second = d.report_bad(joiners[1], addr(0)).unwrap();
    assert_eq!((second.demoted, second.publishers_left), (true, 1));
    assert!(
        changes.take_changed(),
        "its rings are told the next publisher"
    );
    assert_eq!(d.publisher(f), Some(addr(1)));
    let sources = d.locate("3").sources;
    assert!(
        sources.iter().all(|s| s.addr != addr(0).to_string()),
        "{sources:?}"
    );
    assert_eq!(d.list().files.len(), 3, "still offered by the honest one");
    d.report_bad(joiners[0], addr(1));
    let last = d.report_bad(joiners[2], addr(1)).unwrap();
    assert_eq!((last.demoted, last.publishers_left), (true, 0));
    assert_eq!(d.publisher(f), None, "none left");
    assert_eq!(d.list().files.len(), 2, "no longer offered");
    assert_eq!(d.publishers(f), 2, "both still members");
    let _ = d.deregister(honest);
}

#[test]
fn members_come_and_go() {
    let d = dir(Duration::from_millis(50));
    let addr: SocketAddr = "127.0.0.1:9001".parse().unwrap();
    let id = d
        .register(0, addr, Role::Getter, set(10, [0, 1]), None)
        .unwrap();
    assert_eq!(d.list().files[0].partial_sources, 1);
    assert!(d.add_chunks(id, &set(10, 2..10)));
    let info = &d.list().files[0];
    assert_eq!((info.complete_sources, info.partial_sources), (2, 0));
    let loc = d.locate("alpha.bin");
    assert_eq!(loc.sources.len(), 2);
    assert!(loc.sources[0].owner);
    assert_eq!(loc.sources[1].addr, "127.0.0.1:9001");
    assert_eq!(loc.sources[1].count, 10);
    // The same address again does not take over the live registration.
    assert_eq!(d.register(0, addr, Role::Peer, set(10, []), None), None);
    assert!(d.is_registered(id));
    assert_eq!(d.peers()[0].count, 10);
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(d.expire().0, vec![addr]);
    assert!(!d.heartbeat(id));
    assert!(d.peers().is_empty());
}

#[test]
fn answers_stay_under_the_answer_limit() {
    // 1,000 members each holding every other chunk of a 100,000-chunk file: listed in
    // full, that is 1,000 × 50,000 ranges.
    let chunks = 100_000u32;
    let m = Arc::new(Manifest {
        name: "big.bin".into(),
        ..Manifest::for_tests(chunks as usize)
    });
    let d = Directory::new(vec![m], "127.0.0.1:7000".parse().unwrap(), DEFAULT_PEER_TTL);
    let every_other = set(chunks, (0..chunks).step_by(2));
    for i in 0..1000u16 {
        let addr = SocketAddr::from(([127, 0, 0, 1], 10_000 + i));
        d.register(0, addr, Role::Getter, every_other.clone(), None);
    }
    let full = set(chunks, 0..chunks);
    d.register(0, "127.0.0.2:9".parse().unwrap(), Role::Peer, full, None);
    let loc = d.locate("1");
    let len = serde_json::to_vec(&loc).unwrap().len();
    assert!(len <= MAX_ANSWER_LEN, "answer of {len} bytes");
    let listed = u32::try_from(loc.sources.len()).unwrap() - 1; // the owner
    assert!(listed >= 10, "only {listed} sources fit");
    assert_eq!(listed + loc.more_sources, 1001);
    // The complete member is listed, before those that fit by address.
    assert!(
        loc.sources
            .iter()
            .any(|s| s.addr == "127.0.0.2:9" && s.complete)
    );
    for s in &loc.sources[1..] {
        assert!(s.chunks.len() <= MAX_SOURCE_RANGES);
        assert!(s.count == 50_000 || s.count == chunks, "{}", s.count);
    }
    let addrs: Vec<SocketAddr> = loc.sources[1..]
        .iter()
        .map(|s| s.addr.parse().unwrap())
        .collect();
    assert!(addrs.windows(2).all(|w| w[0] < w[1]), "by address");
}

#[test]
fn only_members_are_probed_one_at_a_time_and_seldom() {
    let d = dir(DEFAULT_PEER_TTL);
    let member: SocketAddr = "127.0.0.1:9001".parse().unwrap();
    let stranger: SocketAddr = "127.0.0.1:9999".parse().unwrap();
    d.register(0, member, Role::Peer, set(10, []), None);
    assert!(!d.start_probe(stranger), "not a member");
    assert!(d.start_probe(member));
    assert!(!d.start_probe(member), "probed a moment ago");
    d.end_probe();
    assert!(!d.start_probe(member), "still within PROBE_EVERY");
    // At most MAX_PROBES at once.
    let others: Vec<SocketAddr> = (0..=u16::try_from(MAX_PROBES).unwrap())
        .map(|i| SocketAddr::from(([127, 0, 0, 1], 9100 + i)))
        .collect();
    for a in &others {
        d.register(0, *a, Role::Getter, set(10, []), None);
    }
    let started = others.iter().filter(|a| d.start_probe(**a)).count();
    assert_eq!(started, MAX_PROBES);
}
