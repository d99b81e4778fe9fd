//! The picker's tests.

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::chunkset::Ranges;
use crate::manifest::Manifest;

/// A peer of a 200-chunk file holding nothing, its neighbour connected and holding
/// `neighbour` (announced in that order).
fn setup(neighbour: &[u32]) -> (Manifest, Picker, RingLink) {
    let m = Manifest::for_tests(200);
    let picker = Picker::new(ChunkSet::new(m.chunk_count()), Instant::now());
    let mut ring = RingLink::new(Instant::now());
    ring.set_error(None, m.chunk_count());
    for &c in neighbour {
        ring.announced(&m, &Ranges::from_sorted([c])).unwrap();
    }
    (m, picker, ring)
}

/// Two copies of one chunk arriving at once: only one connection stores it.
#[test]
fn one_copy_of_a_chunk_is_stored() {
    let (m, mut picker, _) = setup(&[]);
    let id = m.chunk_id(7).unwrap();
    assert!(picker.claim(id));
    assert!(!picker.claim(id), "a second copy while the first is stored");
    picker.unclaim(id);
    picker.stored(id);
    assert!(!picker.claim(id), "a copy of a chunk held");
    assert_eq!(picker.fetched(), 1);
}

#[test]
fn the_neighbours_newest_chunk_is_picked_first() {
    let (m, mut picker, mut ring) = setup(&[3, 150, 70]);
    let mut rng = StdRng::seed_from_u64(1);
    picker.requested(m.chunk_id(70).unwrap(), SourceKind::Neighbour, false);
    let got = picker.pick(SourceKind::Neighbour, &mut ring, true, &mut rng);
    assert_eq!(got, Some((150, false)), "70 is pending: the next newest");
}

#[test]
fn suspect_chunks_are_not_asked_of_the_neighbour_while_the_owner_is_up() {
    let (m, mut picker, mut ring) = setup(&[9]);
    let mut rng = StdRng::seed_from_u64(1);
    picker.suspect(m.chunk_id(9).unwrap());
    assert_eq!(
        picker.pick(SourceKind::Neighbour, &mut ring, true, &mut rng),
        None
    );
    let (_, _, mut ring) = setup(&[9]);
    let got = picker.pick(SourceKind::Neighbour, &mut ring, false, &mut rng);
    assert_eq!(
        got,
        Some((9, false)),
        "with the owner down, the neighbour may serve it"
    );
}

#[test]
fn the_owner_is_asked_for_assigned_chunks_then_a_few_spare_ones_cancelled_once_announced() {
    let (m, mut picker, mut ring) = setup(&[0, 1, 2]);
    let mut rng = StdRng::seed_from_u64(1);
    let mut assigned = ChunkSet::new(m.chunk_count());
    assigned.insert(m.chunk_id(42).unwrap());
    picker.assign(&assigned);
    let first = picker.pick(SourceKind::Owner, &mut ring, true, &mut rng);
    assert_eq!(first, Some((42, false)));
    picker.requested(m.chunk_id(42).unwrap(), SourceKind::Owner, false);
    for _ in 0..SPARE_IN_FLIGHT {
        let (c, spare) = picker
            .pick(SourceKind::Owner, &mut ring, true, &mut rng)
            .expect("a spare chunk");
        assert!(spare && c > 2, "spare, and not one the neighbour has: {c}");
        picker.requested(m.chunk_id(c).unwrap(), SourceKind::Owner, spare);
    }
    assert_eq!(
        picker.pick(SourceKind::Owner, &mut ring, true, &mut rng),
        None,
        "at most SPARE_IN_FLIGHT spare requests"
    );
    let announced = ring.announced(&m, &Ranges::from_sorted(0..200)).unwrap();
    picker.neighbour_announced(&announced);
    assert_eq!(
        picker.take_owner_cancel().len(),
        SPARE_IN_FLIGHT as usize + 1,
        "every request at the owner, the assigned one too"
    );
    assert!(picker.take_owner_cancel().is_empty(), "taken once");
}

/// A chunk whose copy from the neighbour failed its check stays requested at the owner
/// when the neighbour announces it (again).
#[test]
fn a_suspect_chunk_stays_requested_at_the_owner() {
    let (m, mut picker, mut ring) = setup(&[]);
    let id = m.chunk_id(5).unwrap();
    picker.suspect(id);
    picker.requested(id, SourceKind::Owner, false);
    let other = m.chunk_id(6).unwrap();
    picker.requested(other, SourceKind::Owner, false);
    let announced = ring.announced(&m, &Ranges::from_sorted([5, 6])).unwrap();
    picker.neighbour_announced(&announced);
    assert_eq!(picker.take_owner_cancel(), vec![6]);
}

/// Behind a neighbour SLOW_BACKLOG chunks ahead, the owner is asked for any chunk, as an
/// ordinary request, and not cancelled when the neighbour announces it; that lasts while
/// the neighbour stays connected.
#[test]
fn behind_a_slow_neighbour_the_owner_is_asked_for_anything() {
    let (m, mut picker, mut ring) = setup(&(0..SLOW_BACKLOG).collect::<Vec<_>>());
    let mut rng = StdRng::seed_from_u64(1);
    let (c, spare) = picker
        .pick(SourceKind::Owner, &mut ring, true, &mut rng)
        .expect("a chunk");
    assert!(!spare, "an ordinary request");
    picker.requested(m.chunk_id(c).unwrap(), SourceKind::Owner, false);
    let later = m.chunk_id(199).unwrap();
    picker.requested(later, SourceKind::Owner, false);
    let announced = ring.announced(&m, &Ranges::from_sorted([199])).unwrap();
    assert_eq!(announced, [later]);
    picker.neighbour_announced(&announced);
    assert!(picker.take_owner_cancel().is_empty(), "kept at the owner");
    ring.set_error(Some("gone".into()), m.chunk_count());
    ring.set_error(None, m.chunk_count());
    let _ = picker.pick(SourceKind::Owner, &mut ring, true, &mut rng);
    assert!(
        !picker.slow_now,
        "a neighbour connected anew is judged afresh"
    );
}

/// The owner is not asked for a chunk the neighbour holds, even one handed to this peer:
/// it would wait there while the ring has it.
#[test]
fn what_the_neighbour_holds_is_not_asked_of_the_owner() {
    let (m, mut picker, mut ring) = setup(&[42]);
    let mut rng = StdRng::seed_from_u64(1);
    let mut assigned = ChunkSet::new(m.chunk_count());
    assigned.insert(m.chunk_id(42).unwrap());
    picker.assign(&assigned);
    for _ in 0..SPARE_IN_FLIGHT {
        let (c, spare) = picker
            .pick(SourceKind::Owner, &mut ring, true, &mut rng)
            .expect("a spare chunk");
        assert!(spare && c != 42, "{c}");
        picker.requested(m.chunk_id(c).unwrap(), SourceKind::Owner, spare);
    }
    picker.suspect(m.chunk_id(42).unwrap());
    let got = picker.pick(SourceKind::Owner, &mut ring, true, &mut rng);
    assert_eq!(got, Some((42, false)), "unless the neighbour's copy failed");
}
