//! The chunk sets' tests: ranges in and out (checked, a word at a time), random picks.

use super::*;

fn manifest(chunks: usize) -> Manifest {
    Manifest::for_tests(chunks)
}

#[test]
fn ranges_round_trip() {
    let m = manifest(200);
    let mut s = ChunkSet::new(200);
    for i in [0, 1, 2, 5, 63, 64, 65, 199] {
        assert!(s.insert(m.chunk_id(i).unwrap()));
    }
    assert!(!s.insert(m.chunk_id(5).unwrap()));
    let r = s.to_ranges();
    assert_eq!(r.0, vec![[0, 2], [5, 5], [63, 65], [199, 199]]);
    assert_eq!(
        serde_json::to_string(&r).unwrap(),
        "[[0,2],[5,5],[63,65],[199,199]]"
    );
    assert_eq!(ChunkSet::try_from_ranges(&m, &r).unwrap(), s);
    assert_eq!(s.count(), 8);
    assert!(s.remove(m.chunk_id(64).unwrap()));
    assert_eq!(s.count(), 7);
}

#[test]
fn pick_random_finds_only_set_bits() {
    let mut rng = rand::rng();
    let mut s = ChunkSet::new(300);
    assert_eq!(pick_random(5, |w| s.words()[w], &mut rng), None);
    let m = manifest(300);
    for i in [3, 150, 299] {
        s.insert(m.chunk_id(i).unwrap());
    }
    let mut seen = std::collections::HashSet::new();
    for _ in 0..500 {
        let p = pick_random(5, |w| s.words()[w], &mut rng).unwrap();
        assert!([3, 150, 299].contains(&p));
        seen.insert(p);
    }
    assert_eq!(seen.len(), 3);
    let mut t = ChunkSet::new(300);
    t.insert(m.chunk_id(150).unwrap());
    assert_eq!(s.difference(&t), vec![3, 299]);
    t.union_with(&s);
    assert_eq!(t.count(), 3);
}

#[test]
fn full_set_is_one_range() {
    let s = ChunkSet::full(130);
    assert!(s.is_full());
    assert_eq!(s.to_ranges().0, vec![[0, 129]]);
    assert!(ChunkSet::full(0).is_full());
}

#[test]
fn out_of_range_and_reversed_are_refused() {
    let m = manifest(10);
    let mut s = ChunkSet::new(10);
    assert!(matches!(
        s.extend_from_ranges(&m, &Ranges(vec![[0, 3], [8, 10]])),
        Err(ManifestError::ChunkOutOfRange { chunk: 10, .. })
    ));
    assert_eq!(s.count(), 0, "nothing added on error");
    assert!(s.extend_from_ranges(&m, &Ranges(vec![[5, 4]])).is_err());
}

#[test]
fn overlapping_unsorted_and_too_many_ranges_are_refused() {
    let m = manifest(1000);
    let mut s = ChunkSet::new(1000);
    let overlap = Ranges(vec![[0, 999], [0, 999]]);
    let err = s.extend_from_ranges(&m, &overlap).unwrap_err();
    assert!(matches!(err, ManifestError::BadRanges(_)), "{err}");
    assert!(err.to_string().contains("sorted and disjoint"), "{err}");
    let unsorted = Ranges(vec![[10, 20], [5, 6]]);
    assert!(matches!(
        s.extend_from_ranges(&m, &unsorted),
        Err(ManifestError::BadRanges(_))
    ));
    let many = Ranges(
        (0..=MAX_RANGES_PER_MESSAGE as u32)
            .map(|i| [i, i])
            .collect(),
    );
    let m2 = manifest(MAX_RANGES_PER_MESSAGE + 1);
    let err = ChunkSet::try_from_ranges(&m2, &many).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} chunk ranges in one message exceed the limit of {MAX_RANGES_PER_MESSAGE}",
            MAX_RANGES_PER_MESSAGE + 1
        )
    );
    assert_eq!(s.count(), 0, "nothing added on error");
    // A summary on disk may hold any number of ranges.
    assert_eq!(
        ChunkSet::try_from_stored_ranges(&m2, &many)
            .unwrap()
            .count(),
        8193
    );
}

#[test]
fn ranges_are_set_a_word_at_a_time() {
    let m = manifest(1000);
    let mut s = ChunkSet::new(1000);
    let added = s
        .extend_from_ranges(&m, &Ranges(vec![[3, 70], [127, 128], [999, 999]]))
        .unwrap();
    let want: Vec<u32> = (3..=70).chain([127, 128, 999]).collect();
    assert_eq!(added.iter().map(|c| c.get()).collect::<Vec<_>>(), want);
    assert_eq!(s.count(), want.len() as u32);
    assert_eq!(s.to_ranges().0, vec![[3, 70], [127, 128], [999, 999]]);
    // Again, plus a little: only the new ids are reported.
    let added = s.extend_from_ranges(&m, &Ranges(vec![[0, 71]])).unwrap();
    assert_eq!(
        added.iter().map(|c| c.get()).collect::<Vec<_>>(),
        vec![0, 1, 2, 71]
    );
    let full = ChunkSet::try_from_ranges(&m, &Ranges(vec![[0, 999]])).unwrap();
    assert!(full.is_full());
    assert_eq!(full, ChunkSet::full(1000));
}

#[test]
fn ranges_from_words_match_ranges_from_ids() {
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(7);
    for len in [0u32, 1, 63, 64, 65, 128, 200, 1000] {
        let m = manifest(len as usize);
        for density in [0.0, 0.1, 0.5, 0.9, 1.0] {
            let mut s = ChunkSet::new(len);
            for i in 0..len {
                if rand::Rng::random_bool(&mut rng, density) {
                    s.insert(m.chunk_id(i).unwrap());
                }
            }
            let slow = Ranges::from_sorted(s.indices());
            assert_eq!(s.to_ranges(), slow, "len {len} density {density}");
            let cut = s.to_ranges_capped(3);
            assert_eq!(cut.0[..], slow.0[..slow.len().min(3)]);
        }
    }
}
