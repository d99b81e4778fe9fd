//! `ChunkSet`: which chunks of a file a node holds, and its compact wire form.
//!
//! In memory a set is a bitmap; on the wire it is a list of inclusive ranges
//! (`[[0, 9], [12, 12]]`), so a full or nearly full set of a 10 GB file stays a few bytes.

use serde::{Deserialize, Serialize};

use crate::manifest::{ChunkId, Manifest, ManifestError};

/// The most ranges one message's id list may hold, so its header stays well under the
/// header limit (a range is at most 24 bytes of JSON). Longer lists continue in further
/// `have` messages; a receiver refuses a message with more.
pub const MAX_RANGES_PER_MESSAGE: usize = 8 * 1024;

/// Inclusive chunk ranges as they travel in `have`, `hello` and `orphans` messages.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Ranges(pub Vec<[u32; 2]>);

impl Ranges {
    /// The number of ranges (what a header's size depends on).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no ranges.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks a list received from elsewhere against a file of `chunks` chunks: at most `max`
    /// ranges, each `[start, end]` with start ≤ end < `chunks`, sorted and disjoint (each
    /// starts after the previous one ends). One pass, so the cost is linear in the list.
    ///
    /// # Errors
    ///
    /// [`ManifestError::TooManyRanges`], [`ManifestError::ChunkOutOfRange`], or
    /// [`ManifestError::BadRanges`] for a reversed, unsorted or overlapping range.
    pub fn check(&self, chunks: u32, max: usize) -> Result<(), ManifestError> {
        if self.0.len() > max {
            return Err(ManifestError::TooManyRanges {
                got: self.0.len(),
                max,
            });
        }
        let mut prev: Option<u32> = None;
        for &[a, b] in &self.0 {
            if a > b {
                return Err(ManifestError::BadRanges(format!(
                    "range {a}-{b} is reversed"
                )));
            }
            if b >= chunks {
                return Err(ManifestError::ChunkOutOfRange {
                    chunk: b,
                    count: chunks,
                });
            }
            if let Some(p) = prev
                && a <= p
            {
                return Err(ManifestError::BadRanges(format!(
                    "range {a}-{b} does not start after the previous one ends ({p}): ranges must be sorted and disjoint"
                )));
            }
            prev = Some(b);
        }
        Ok(())
    }

    /// Ranges covering exactly `ids`, which must be sorted.
    pub fn from_sorted(ids: impl IntoIterator<Item = u32>) -> Self {
        let mut out: Vec<[u32; 2]> = Vec::new();
        for id in ids {
            match out.last_mut() {
                Some(r) if r[1].checked_add(1) == Some(id) => r[1] = id,
                _ => out.push([id, id]),
            }
        }
        Self(out)
    }
}

/// A set of chunk ids of one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkSet {
    bits: Vec<u64>,
    len: u32,
    count: u32,
}

impl ChunkSet {
    /// An empty set for a file of `len` chunks.
    pub fn new(len: u32) -> Self {
        Self {
            bits: vec![0; (len as usize).div_ceil(64)],
            len,
            count: 0,
        }
    }

    /// The set of all `len` chunks.
    pub fn full(len: u32) -> Self {
        let mut s = Self::new(len);
        for i in 0..len {
            s.insert_index(i);
        }
        s
    }

    /// The set that `ranges` names: a wire list, checked as [`Ranges::check`] does.
    ///
    /// # Errors
    ///
    /// As [`Ranges::check`] with [`MAX_RANGES_PER_MESSAGE`].
    pub fn try_from_ranges(manifest: &Manifest, ranges: &Ranges) -> Result<Self, ManifestError> {
        let mut s = Self::new(manifest.chunk_count());
        s.extend_from_ranges(manifest, ranges)?;
        Ok(s)
    }

    /// The set that a list of any length names (a summary on disk), checked as
    /// [`Ranges::check`] does but without the per-message cap.
    ///
    /// # Errors
    ///
    /// As [`Ranges::check`].
    pub fn try_from_stored_ranges(
        manifest: &Manifest,
        ranges: &Ranges,
    ) -> Result<Self, ManifestError> {
        ranges.check(manifest.chunk_count(), usize::MAX)?;
        let mut s = Self::new(manifest.chunk_count());
        s.insert_ranges(ranges, |_| {});
        Ok(s)
    }

    /// Adds every id of a wire list `ranges`; returns the ids that were new, in order. The
    /// cost is linear in the message and in the ids added: ranges are checked first, then set
    /// a 64-bit word at a time.
    ///
    /// # Errors
    ///
    /// As [`Ranges::check`] with [`MAX_RANGES_PER_MESSAGE`]; on error nothing was added.
    pub fn extend_from_ranges(
        &mut self,
        manifest: &Manifest,
        ranges: &Ranges,
    ) -> Result<Vec<ChunkId>, ManifestError> {
        ranges.check(manifest.chunk_count(), MAX_RANGES_PER_MESSAGE)?;
        let mut added = Vec::new();
        self.insert_ranges(ranges, |i| added.extend(manifest.chunk_id(i).ok()));
        Ok(added)
    }

    /// Sets the bits of checked `ranges` word by word, calling `new` for each id not held.
    fn insert_ranges(&mut self, ranges: &Ranges, mut new: impl FnMut(u32)) {
        for &[a, b] in &ranges.0 {
            let (first, last) = ((a / 64) as usize, (b / 64) as usize);
            for w in first..=last {
                let lo = if w == first { a % 64 } else { 0 };
                let hi = if w == last { b % 64 } else { 63 };
                let mask = (u64::MAX >> (63 - hi)) & (u64::MAX << lo);
                let fresh = mask & !self.bits[w];
                if fresh == 0 {
                    continue;
                }
                self.bits[w] |= fresh;
                self.count += fresh.count_ones();
                let base = u32::try_from(w * 64).expect("≤ MAX_CHUNKS");
                for bit in set_bits(std::iter::once(fresh)) {
                    new(base + bit);
                }
            }
        }
    }

    /// The number of chunks the file has (not the number in the set).
    pub fn capacity(&self) -> u32 {
        self.len
    }

    /// The number of chunks in the set.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// True when every chunk of the file is in the set.
    pub fn is_full(&self) -> bool {
        self.count == self.len
    }

    /// True when `id` is in the set.
    pub fn contains(&self, id: ChunkId) -> bool {
        self.contains_index(id.get())
    }

    fn contains_index(&self, i: u32) -> bool {
        i < self.len && self.bits[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    /// Adds `id`; returns true if it was not in the set.
    pub fn insert(&mut self, id: ChunkId) -> bool {
        self.insert_index(id.get())
    }

    fn insert_index(&mut self, i: u32) -> bool {
        let (w, b) = ((i / 64) as usize, 1u64 << (i % 64));
        if self.bits[w] & b != 0 {
            return false;
        }
        self.bits[w] |= b;
        self.count += 1;
        true
    }

    /// Removes `id`; returns true if it was in the set.
    pub fn remove(&mut self, id: ChunkId) -> bool {
        let i = id.get();
        let (w, b) = ((i / 64) as usize, 1u64 << (i % 64));
        if self.bits[w] & b == 0 {
            return false;
        }
        self.bits[w] &= !b;
        self.count -= 1;
        true
    }

    /// The bitmap words: bit `i % 64` of word `i / 64` is chunk `i`; bits past the last
    /// chunk are always 0.
    pub fn words(&self) -> &[u64] {
        &self.bits
    }

    /// The ids in the set, ascending, as raw indices.
    pub fn indices(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(|&i| self.contains_index(i))
    }

    /// The set as wire ranges.
    pub fn to_ranges(&self) -> Ranges {
        self.to_ranges_capped(usize::MAX)
    }

    /// The first `max` ranges of the set, found a word at a time: the cost is the number of
    /// words plus the ranges made, however many ids they cover.
    pub fn to_ranges_capped(&self, max: usize) -> Ranges {
        let mut out: Vec<[u32; 2]> = Vec::new();
        let mut open: Option<u32> = None; // start of the run that reaches the current bit
        for (w, &word) in self.bits.iter().enumerate() {
            let base = u32::try_from(w * 64).expect("≤ MAX_CHUNKS");
            let mut bit = 0u32;
            while bit < 64 {
                let rest = word >> bit;
                if open.is_some() {
                    // Length of the run of ones from `bit`.
                    let ones = (!rest).trailing_zeros().min(64 - bit);
                    bit += ones;
                    if bit < 64 {
                        out.push([open.take().expect("open"), base + bit - 1]);
                        if out.len() == max {
                            return Ranges(out);
                        }
                    }
                } else {
                    if rest == 0 {
                        break;
                    }
                    bit += rest.trailing_zeros();
                    open = Some(base + bit);
                }
            }
        }
        if let Some(start) = open {
            out.push([start, self.len - 1]);
        }
        Ranges(out)
    }
}

/// Picks a uniformly placed random chunk index among the set bits of the words
/// `mask(0) .. mask(words - 1)`: a random starting word, then the first non-zero word from
/// there (wrapping), then a random set bit of that word. `None` when every word is 0.
pub fn pick_random(
    words: usize,
    mask: impl Fn(usize) -> u64,
    rng: &mut impl rand::Rng,
) -> Option<u32> {
    if words == 0 {
        return None;
    }
    let start = rng.random_range(0..words);
    for k in 0..words {
        let w = (start + k) % words;
        let bits = mask(w);
        if bits != 0 {
            let mut nth = rng.random_range(0..bits.count_ones());
            let mut b = bits;
            loop {
                let tz = b.trailing_zeros();
                if nth == 0 {
                    return u32::try_from(w * 64).ok().map(|base| base + tz);
                }
                nth -= 1;
                b &= b - 1;
            }
        }
    }
    None
}

/// The indices of the set bits of `words` (bit `i` of word `w` is index `64·w + i`),
/// ascending.
pub fn set_bits(words: impl Iterator<Item = u64>) -> impl Iterator<Item = u32> {
    words.enumerate().flat_map(|(w, word)| {
        let base = u32::try_from(w * 64).expect("≤ MAX_CHUNKS");
        std::iter::successors((word != 0).then_some(word), |&b| {
            let next = b & (b - 1);
            (next != 0).then_some(next)
        })
        .map(move |b| base + b.trailing_zeros())
    })
}

impl ChunkSet {
    /// The ids in `self` but not in `other`, ascending (both sets must be of one file).
    pub fn difference(&self, other: &ChunkSet) -> Vec<u32> {
        let mut out = Vec::new();
        for (w, (&a, &b)) in self.bits.iter().zip(&other.bits).enumerate() {
            let mut d = a & !b;
            while d != 0 {
                let tz = d.trailing_zeros();
                out.push(u32::try_from(w * 64).expect("≤ MAX_CHUNKS") + tz);
                d &= d - 1;
            }
        }
        out
    }

    /// Adds every id of `other` (of the same file).
    pub fn union_with(&mut self, other: &ChunkSet) {
        for (a, &b) in self.bits.iter_mut().zip(&other.bits) {
            *a |= b;
        }
        self.count = self.bits.iter().map(|w| w.count_ones()).sum();
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
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
}
