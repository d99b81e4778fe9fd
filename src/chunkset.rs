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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
#[path = "chunkset_tests.rs"]
mod tests;
