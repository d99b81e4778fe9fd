//! Fuzz target: arbitrary bytes into `Manifest::from_json`, as a `welcome` body from the wire.
//!
//! Checked: nothing panics; whatever parses has a safe file name (one plain path component:
//! not empty, `.` or `..`, no `/`, `\` or NUL, not absolute, at most `MAX_NAME_LEN` bytes),
//! consistent chunk arithmetic by the manifest's own methods (offsets contiguous from 0,
//! every chunk but the last of `chunk_size`, lengths summing to `size`, ids past the count
//! refused), and round-trips through serde_json to an equal manifest and the same JSON.

#![no_main]

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use ringswarm::manifest::{MAX_CHUNK_SIZE, MAX_CHUNKS, MAX_NAME_LEN, Manifest};

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Manifest::from_json(data) else {
        return;
    };
    check_name(&m.name);
    check_chunks(&m);
    check_round_trip(&m);
});

fn check_name(name: &str) {
    assert!(!name.is_empty() && name.len() <= MAX_NAME_LEN, "{name:?}");
    assert!(!name.contains(['/', '\\', '\0']), "{name:?}");
    let path = Path::new(name);
    assert!(path.is_relative() && !path.has_root(), "{name:?}");
    let mut parts = path.components();
    assert!(
        matches!(parts.next(), Some(Component::Normal(p)) if p == name),
        "{name:?} is not one plain component"
    );
    assert!(parts.next().is_none(), "{name:?} has several components");
}

fn check_chunks(m: &Manifest) {
    assert!((1..=MAX_CHUNK_SIZE).contains(&m.chunk_size), "{m:?}");
    let count = m.chunk_count();
    assert!(count <= MAX_CHUNKS);
    assert_eq!(count as usize, m.chunks.len());
    assert_eq!(m.chunk_ids().count(), m.chunks.len());
    assert!(m.chunk_id(count).is_err());
    let mut end = 0u64;
    for (i, id) in m.chunk_ids().enumerate() {
        assert_eq!(id.index(), i);
        assert_eq!(m.chunk_id(id.get()).ok(), Some(id));
        assert_eq!(m.chunk_offset(id), end, "chunk {id} of {m:?}");
        let len = m.chunk_len(id) as u64;
        assert!(len >= 1, "empty chunk {id} of {m:?}");
        if id.get() + 1 < count {
            assert_eq!(len, m.chunk_size, "chunk {id} of {m:?}");
        } else {
            assert!(len <= m.chunk_size, "last chunk of {m:?}");
        }
        assert_eq!(m.chunk_hash(id), m.chunks[i]);
        end += len;
    }
    assert_eq!(end, m.size, "chunks of {m:?} do not sum to its size");
}

fn check_round_trip(m: &Manifest) {
    let json = serde_json::to_vec(m).expect("a parsed manifest serializes");
    let back = Manifest::from_json(&json)
        .unwrap_or_else(|e| panic!("{m:?} serialized as {json:?} does not parse: {e}"));
    assert_eq!(&back, m);
    assert_eq!(serde_json::to_vec(&back).unwrap(), json, "JSON not stable");
}
