//! Round-trip properties (proptest): every message through the codec, whole, split and cut
//! short; the chunk arithmetic for arbitrary sizes; chunk sets through their wire ranges.
//!
//! 256 cases per property (proptest's default, written out so it stays modest). A failing
//! case is shrunk and saved under `tests/proptest-regressions/` to be replayed first.

use std::collections::BTreeSet;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use proptest::sample::Index;
use ringswarm::chunkset::{ChunkSet, Ranges};
use ringswarm::hash::Hash;
use ringswarm::manifest::{
    DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, MAX_CHUNKS, Manifest, ManifestError, chunk_layout,
};
use ringswarm::protocol::{Message, MessageCodec, ProtocolError, Role};
use tokio_util::codec::{Decoder, Encoder};

/// Body limit of the codec under test: above every generated body.
const LIMIT: usize = 64 * 1024;

// --- strategies -------------------------------------------------------------------------------

/// Any text, with JSON's special characters (quotes, backslashes, controls) and non-ASCII
/// characters more often than chance would give them.
fn text() -> impl Strategy<Value = String> {
    let special = prop::sample::select(vec![
        '"', '\\', '/', '\0', '\n', '\t', '\u{7f}', '\u{2028}', 'é', 'ß', '漢', '😀', '{', '}',
    ]);
    prop::collection::vec(prop_oneof![3 => any::<char>(), 2 => special], 0..24)
        .prop_map(|chars| chars.into_iter().collect())
}

/// Wire ranges as a peer might send them: any bounds, not necessarily sorted or ordered.
fn ranges() -> impl Strategy<Value = Ranges> {
    let bound = prop_oneof![0..64u32, any::<u32>(), (u32::MAX - 2)..=u32::MAX];
    prop::collection::vec([bound.clone(), bound], 0..12).prop_map(Ranges)
}

/// A body of up to 4 KiB.
fn body() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..4096).prop_map(Bytes::from)
}

fn role() -> impl Strategy<Value = Role> {
    prop::sample::select(vec![Role::Peer, Role::Neighbour, Role::Getter, Role::Query])
}

/// Every variant of [`Message`] with arbitrary fields.
fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (
            any::<u32>(),
            role(),
            prop::option::of(text()),
            ranges(),
            any::<Option<u16>>(),
            prop::option::of(text()),
        )
            .prop_map(|(version, role, file, have, port, node)| Message::Hello {
                version,
                role,
                file,
                have,
                port,
                node,
            }),
        (ranges(), any::<Option<u64>>(), body()).prop_map(|(assigned, heartbeat, manifest)| {
            let mut msg = Message::welcome(assigned, manifest);
            if let Message::Welcome { heartbeat_ms, .. } = &mut msg {
                *heartbeat_ms = heartbeat;
            }
            msg
        }),
        ranges().prop_map(|chunks| Message::Have { chunks }),
        ranges().prop_map(|chunks| Message::Orphans { chunks }),
        (any::<u32>(), any::<bool>()).prop_map(|(chunk, spare)| Message::Request { chunk, spare }),
        (any::<u32>(), body()).prop_map(|(chunk, data)| Message::chunk(chunk, data)),
        Just(Message::List),
        text().prop_map(|text| Message::Search { text }),
        text().prop_map(|file| Message::Locate { file }),
        body().prop_map(Message::files),
        body().prop_map(Message::locations),
        (text(), any::<bool>())
            .prop_map(|(addr, bad_chunks)| Message::SourceLost { addr, bad_chunks }),
        Just(Message::Choke),
        Just(Message::Unchoke),
        Just(Message::Interested),
        Just(Message::NotInterested),
        any::<u32>().prop_map(|chunk| Message::Cancel { chunk }),
        text().prop_map(|message| Message::Error { message }),
    ]
}

fn encode(msg: &Message) -> BytesMut {
    let mut buf = BytesMut::new();
    MessageCodec::new(LIMIT)
        .encode(msg.clone(), &mut buf)
        .expect("every generated message encodes");
    buf
}

/// A file size from 0 to 4 GiB, biased to the edges of the chunking rule: under 5 bytes,
/// around 500 KiB (5 × 102,400) and around multiples of 102,400.
fn file_size() -> impl Strategy<Value = u64> {
    prop_oneof![
        0..5u64,
        5..64u64,
        (0..=40u64).prop_map(|d| 512_000 - 20 + d),
        (0..=41_943u64, -2i64..=2).prop_map(|(k, d)| (k * 102_400).saturating_add_signed(d)),
        0..=(4u64 << 30),
    ]
}

/// A nominal chunk size: mostly the default, sometimes any valid one, rarely an invalid one.
fn nominal_chunk_size() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => Just(DEFAULT_CHUNK_SIZE),
        2 => 1..=MAX_CHUNK_SIZE,
        2 => 1..=4096u64,
        1 => prop::sample::select(vec![0, MAX_CHUNK_SIZE + 1, u64::MAX]),
    ]
}

/// A nominal chunk size and a file size, which is sometimes within 3 bytes of 5 × nominal.
fn size_and_nominal() -> impl Strategy<Value = (u64, u64)> {
    nominal_chunk_size().prop_flat_map(|base| {
        let edge = (0..=6u64)
            .prop_map(move |d| base.saturating_mul(5).saturating_add(d).saturating_sub(3));
        (prop_oneof![3 => file_size(), 1 => edge], Just(base))
    })
}

/// A set of chunk ids as a bitmap of up to ~1,600 chunks, made of runs so that ranges of
/// every length, gaps of one and adjacent runs all occur.
fn chunk_bits() -> impl Strategy<Value = Vec<bool>> {
    prop::collection::vec((any::<bool>(), 1usize..40), 0..40).prop_map(|runs| {
        runs.into_iter()
            .flat_map(|(held, n)| std::iter::repeat_n(held, n))
            .collect()
    })
}

/// A manifest of `chunks` one-byte chunks (only its chunk count matters here).
fn manifest_of(chunks: u32) -> Manifest {
    Manifest {
        name: "f".into(),
        size: chunks.into(),
        chunk_size: 1,
        hash: Hash::of(b""),
        chunks: vec![Hash::of(b""); chunks as usize],
    }
}

/// Checks that `ranges` are each in order, sorted, disjoint and not adjacent.
fn check_canonical(ranges: &Ranges) -> Result<(), TestCaseError> {
    for &[a, b] in &ranges.0 {
        prop_assert!(a <= b, "reversed range {a}-{b} in {ranges:?}");
    }
    for w in ranges.0.windows(2) {
        prop_assert!(
            u64::from(w[0][1]) + 1 < u64::from(w[1][0]),
            "ranges {:?} and {:?} overlap, touch or are out of order",
            w[0],
            w[1]
        );
    }
    Ok(())
}

fn expand(ranges: &Ranges) -> Vec<u32> {
    ranges.0.iter().flat_map(|&[a, b]| a..=b).collect()
}

// --- properties -------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every message encodes and decodes to an equal message, leaving nothing behind; EOF
    /// after it is a clean close.
    #[test]
    fn every_message_round_trips(msg in message()) {
        let mut buf = encode(&msg);
        let mut codec = MessageCodec::new(LIMIT);
        codec.set_max_answer(LIMIT);
        prop_assert_eq!(codec.decode(&mut buf).unwrap(), Some(msg));
        prop_assert!(buf.is_empty());
        prop_assert!(codec.decode_eof(&mut buf).unwrap().is_none());
    }

    /// A frame that arrives in two pieces, split anywhere, decodes only once it is whole.
    #[test]
    fn a_frame_split_anywhere_decodes_once_whole(msg in message(), at in any::<Index>()) {
        let bytes = encode(&msg);
        let at = at.index(bytes.len() + 1);
        let mut codec = MessageCodec::new(LIMIT);
        codec.set_max_answer(LIMIT);
        let mut buf = BytesMut::from(&bytes[..at]);
        if at < bytes.len() {
            prop_assert_eq!(codec.decode(&mut buf).unwrap(), None);
            buf.extend_from_slice(&bytes[at..]);
        }
        prop_assert_eq!(codec.decode(&mut buf).unwrap(), Some(msg));
        prop_assert!(buf.is_empty());
    }

    /// A frame cut short is never a message: decoding waits for more, and EOF there is a reset
    /// that counts every byte received.
    #[test]
    fn a_frame_cut_short_is_never_a_message(msg in message(), cut in any::<Index>()) {
        let bytes = encode(&msg);
        let cut = 1 + cut.index(bytes.len() - 1);
        let mut codec = MessageCodec::new(LIMIT);
        codec.set_max_answer(LIMIT);
        let mut buf = BytesMut::from(&bytes[..cut]);
        prop_assert_eq!(codec.decode(&mut buf).unwrap(), None);
        match codec.decode_eof(&mut buf) {
            Err(ProtocolError::ResetMidFrame(n)) => prop_assert_eq!(n, cut),
            other => prop_assert!(false, "cut at {cut} of {}: {other:?}", bytes.len()),
        }
    }

    /// Several messages back to back, fed in pieces of arbitrary sizes, decode to the same
    /// messages in order, then a clean EOF.
    #[test]
    fn a_stream_in_pieces_decodes_to_the_same_messages(
        msgs in prop::collection::vec(message(), 1..6),
        pieces in prop::collection::vec(1usize..700, 1..8),
    ) {
        let mut stream = BytesMut::new();
        for msg in &msgs {
            stream.extend_from_slice(&encode(msg));
        }
        let mut codec = MessageCodec::new(LIMIT);
        codec.set_max_answer(LIMIT);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for piece in pieces.iter().cycle() {
            if stream.is_empty() {
                break;
            }
            let piece = stream.split_to((*piece).min(stream.len()));
            buf.extend_from_slice(&piece);
            while let Some(msg) = codec.decode(&mut buf).unwrap() {
                got.push(msg);
            }
        }
        prop_assert!(codec.decode_eof(&mut buf).unwrap().is_none());
        prop_assert_eq!(got, msgs);
    }

    /// The chunking rule for any size and nominal chunk size: chunk count and size, every
    /// chunk but the last of the chunk size, contiguous offsets, lengths summing to the size.
    #[test]
    fn chunk_layout_follows_the_rule((size, base) in size_and_nominal()) {
        if base == 0 || base > MAX_CHUNK_SIZE {
            let got = chunk_layout(size, base);
            let ok = matches!(got, Err(ManifestError::BadChunkSize(b)) if b == base);
            prop_assert!(ok, "nominal {base}: {got:?}");
            return Ok(());
        }
        // The rule as the README states it.
        let rule_chunk_size = match size {
            0 => base,
            1..=4 => 1,
            _ if size < 5 * base => size / 5,
            _ => base,
        };
        if size.div_ceil(rule_chunk_size) > u64::from(MAX_CHUNKS) {
            let got = chunk_layout(size, base);
            let ok = matches!(got, Err(ManifestError::TooManyChunks { size: s }) if s == size);
            prop_assert!(ok, "{size} bytes, nominal {base}: {got:?}");
            return Ok(());
        }
        let (chunk_size, count) = chunk_layout(size, base).unwrap();
        prop_assert_eq!(chunk_size, rule_chunk_size);
        prop_assert!((1..=base).contains(&chunk_size));
        match size {
            0 => prop_assert_eq!(count, 0),
            1..=4 => prop_assert_eq!(u64::from(count), size, "one chunk per byte"),
            _ => prop_assert!(count >= 5, "{size} bytes in {count} chunks"),
        }

        let m = Manifest {
            name: "f".into(),
            size,
            chunk_size,
            hash: Hash::of(b""),
            chunks: vec![Hash::of(b""); count as usize],
        };
        m.validate().unwrap();
        prop_assert_eq!(m.chunk_count(), count);
        prop_assert!(m.chunk_id(count).is_err());
        // Every chunk of small files; the first and last few of large ones.
        let ids: Vec<u32> = if count <= 4096 {
            (0..count).collect()
        } else {
            (0..3).chain(count - 3..count).collect()
        };
        let mut last: Option<(u32, u64)> = None; // (id, end) of the chunk checked before
        for n in ids {
            let id = m.chunk_id(n).unwrap();
            let (offset, len) = (m.chunk_offset(id), m.chunk_len(id) as u64);
            match last {
                None => prop_assert_eq!(offset, 0),
                Some((prev, end)) if prev + 1 == n => {
                    prop_assert_eq!(offset, end, "chunk {} not contiguous", n);
                }
                Some(_) => prop_assert_eq!(offset, u64::from(n) * chunk_size),
            }
            if n + 1 < count {
                prop_assert_eq!(len, chunk_size, "chunk {} of {}", n, count);
            } else {
                prop_assert!((1..=chunk_size).contains(&len), "last chunk of {len} bytes");
            }
            last = Some((n, offset + len));
        }
        let end = last.map_or(0, |(_, end)| end);
        prop_assert_eq!(end, size, "chunks end at the file's end");
    }

    /// A set of chunk ids → wire ranges → set is the same set, and the ranges are canonical.
    #[test]
    fn chunk_sets_round_trip_through_ranges(bits in chunk_bits()) {
        let n = u32::try_from(bits.len()).unwrap();
        let m = manifest_of(n);
        let ids: Vec<u32> = (0..n).filter(|&i| bits[i as usize]).collect();
        let mut set = ChunkSet::new(n);
        for &i in &ids {
            prop_assert!(set.insert(m.chunk_id(i).unwrap()));
        }
        let ranges = set.to_ranges();
        check_canonical(&ranges)?;
        prop_assert_eq!(&ranges, &Ranges::from_sorted(ids.iter().copied()));
        prop_assert_eq!(expand(&ranges), ids.clone());
        prop_assert!(ranges.0.iter().all(|&[_, b]| b < n));
        let back = ChunkSet::try_from_ranges(&m, &ranges).unwrap();
        prop_assert_eq!(back.count() as usize, ids.len());
        prop_assert_eq!(&back, &set);
        let json = serde_json::to_string(&ranges).unwrap();
        prop_assert_eq!(serde_json::from_str::<Ranges>(&json).unwrap(), ranges);
    }

    /// `Ranges::from_sorted` over the whole `u32` range, up to `u32::MAX`: canonical ranges
    /// that name exactly the ids given.
    #[test]
    fn ranges_from_sorted_name_exactly_the_ids(
        ids in prop::collection::btree_set(
            prop_oneof![0..64u32, any::<u32>(), (u32::MAX - 64)..=u32::MAX],
            0..64,
        ),
    ) {
        let ranges = Ranges::from_sorted(ids.iter().copied());
        check_canonical(&ranges)?;
        prop_assert_eq!(expand(&ranges).into_iter().collect::<BTreeSet<u32>>(), ids);
    }
}
