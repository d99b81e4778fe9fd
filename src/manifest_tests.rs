//! The manifest's tests: chunking, names, chunk ids, reading and building.

use super::*;

fn layout(size: u64) -> (u64, u32) {
    chunk_layout(size, DEFAULT_CHUNK_SIZE).unwrap()
}

#[test]
fn chunking_follows_the_spec() {
    assert_eq!(layout(0).1, 0);
    assert_eq!(layout(1), (1, 1));
    assert_eq!(layout(4), (1, 4));
    assert_eq!(layout(5), (1, 5));
    assert_eq!(layout(7), (1, 7));
    assert_eq!(layout(511_999), (102_399, 6));
    assert_eq!(layout(512_000), (102_400, 5));
    assert_eq!(layout(512_001), (102_400, 6));
    assert_eq!(layout(3 * 1024 * 1024), (102_400, 31));
    assert_eq!(chunk_layout(100, 10).unwrap(), (10, 10));
    assert_eq!(chunk_layout(49, 10).unwrap(), (9, 6));
}

#[test]
fn every_file_of_five_bytes_or_more_has_five_chunks_and_sizes_sum() {
    for size in (5..2000).chain([511_999, 512_000, 1 << 20]) {
        for base in [1, 3, 64, 1000, DEFAULT_CHUNK_SIZE] {
            let (cs, count) = chunk_layout(size, base).unwrap();
            assert!(count >= 5, "size {size} base {base}");
            assert!(cs <= base);
            let m = fake(size, base);
            let sum: u64 = m.chunk_ids().map(|c| m.chunk_len(c) as u64).sum();
            assert_eq!(sum, size);
            assert!(m.chunk_ids().all(|c| m.chunk_len(c) > 0));
        }
    }
}

#[test]
fn rejects_bad_chunk_sizes() {
    assert!(matches!(
        chunk_layout(10, 0),
        Err(ManifestError::BadChunkSize(0))
    ));
    assert!(chunk_layout(10, MAX_CHUNK_SIZE + 1).is_err());
}

fn fake(size: u64, base: u64) -> Manifest {
    let (chunk_size, count) = chunk_layout(size, base).unwrap();
    Manifest {
        name: "f".into(),
        size,
        chunk_size,
        hash: Hash::of(b""),
        chunks: vec![Hash::of(b""); count as usize],
    }
}

#[test]
fn names_are_checked() {
    for bad in ["", ".", "..", "../x", "/etc/passwd", "a/b", "a\\b", "a\0b"] {
        assert!(check_name(bad).is_err(), "{bad:?}");
    }
    for good in [
        "file.bin",
        "..hidden",
        "a..b",
        "ünïcode.txt",
        "a\x1bb\u{202e}",
    ] {
        check_name(good).unwrap();
    }
    // The length counts the stored form: 85 × U+202E is 255 bytes, 765 once stored.
    check_name(&"a".repeat(MAX_NAME_LEN)).unwrap();
    assert!(check_name(&"a".repeat(MAX_NAME_LEN + 1)).is_err());
    check_name(&"\x07".repeat(MAX_NAME_LEN / 3)).unwrap();
    assert!(check_name(&"\x07".repeat(MAX_NAME_LEN / 3 + 1)).is_err());
    assert!(check_name(&"\u{202e}".repeat(85)).is_err());
    let err = check_name("x/\x1b]0;t\x07").unwrap_err().to_string();
    assert!(err.contains("x/\\u{1b}]0;t\\u{7}"), "{err}");
}

#[test]
fn names_are_stored_without_control_or_bidi_characters() {
    assert!(matches!(disk_name("movie.mkv"), Cow::Borrowed("movie.mkv")));
    assert_eq!(disk_name("100% ünï.txt"), "100% ünï.txt");
    assert_eq!(
        disk_name("ev\x1b]0;t\x07il\r\nfake\u{202e}gpj.exe"),
        "ev%1B]0;t%07il%0D%0Afake%E2%80%AEgpj.exe"
    );
    assert_eq!(
        disk_name("\u{61c}\u{200e}\u{200f}\u{202a}\u{2066}\u{2069}\u{7f}\u{9b}"),
        "%D8%9C%E2%80%8E%E2%80%8F%E2%80%AA%E2%81%A6%E2%81%A9%7F%C2%9B"
    );
}

#[test]
fn long_text_is_cut_and_escaped() {
    assert_eq!(display_cut("short\x1b", 100), "short\\u{1b}");
    let long = format!("\x1b]0;t\x07{}", "é".repeat(100));
    let shown = display_cut(&long, 10);
    assert_eq!(shown, "\\u{1b}]0;t\\u{7}éé … (196 more bytes)");
}

#[test]
fn offered_names_must_be_the_name_asked_for() {
    check_offered_name(Some("movie.mkv"), "movie.mkv").unwrap();
    check_offered_name(Some("2"), "movie.mkv").unwrap(); // by directory id
    check_offered_name(None, "movie.mkv").unwrap(); // the only file
    for (asked, offered) in [("movie.mkv", ".bashrc"), ("movie.mkv", "victim.txt")] {
        let err = check_offered_name(Some(asked), offered).unwrap_err();
        assert!(matches!(err, ManifestError::NameMismatch { .. }), "{err}");
    }
    assert!(check_offered_name(None, "../x").is_err());
    assert!(check_offered_name(Some("2"), "a/b").is_err());
}

#[test]
fn names_are_displayed_escaped() {
    let shown = |n: &str| display_name(n).to_string();
    assert_eq!(shown("movie.mkv"), "movie.mkv");
    assert_eq!(shown("ünïcode.txt"), "ünïcode.txt");
    assert_eq!(shown("a\x1b[2Jb"), "a\\u{1b}[2Jb");
    assert_eq!(shown("two\nlines\r"), "two\\u{a}lines\\u{d}");
    assert_eq!(shown("evil\u{202e}vkm.exe"), "evil\\u{202e}vkm.exe");
    assert_eq!(
        shown("\u{2066}x\u{2069}\u{7f}\u{9b}"),
        "\\u{2066}x\\u{2069}\\u{7f}\\u{9b}"
    );
    assert_eq!(shown("back\\slash"), "back\\\\slash");
    assert_eq!(format!("[{:<6}]", display_name("ab")), "[ab    ]");
    assert_eq!(format!("[{:<6}]", display_name("a\nb")), "[a\\u{a}b]");
}

#[test]
fn chunk_ids_are_range_checked() {
    let m = fake(10, 1);
    assert_eq!(m.chunk_id(9).unwrap().get(), 9);
    let err = m.chunk_id(10).unwrap_err();
    assert_eq!(
        err.to_string(),
        "chunk 10 is out of range: the file has 10 chunks"
    );
}

#[test]
fn from_file_hashes_chunks_and_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.bin");
    let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    let m = Manifest::from_file(&path, DEFAULT_CHUNK_SIZE).unwrap();
    assert_eq!(m.name, "data.bin");
    assert_eq!(m.chunk_size, 200);
    assert_eq!(m.chunk_count(), 5);
    assert_eq!(m.hash, Hash::of(&data));
    assert_eq!(m.chunks[4], Hash::of(&data[800..]));
    let json = serde_json::to_vec(&m).unwrap();
    assert_eq!(Manifest::from_json(&json).unwrap(), m);
}

#[test]
fn from_json_rejects_unsafe_or_inconsistent() {
    let mut m = fake(10, DEFAULT_CHUNK_SIZE);
    m.name = "../x".into();
    let json = serde_json::to_vec(&m).unwrap();
    assert!(matches!(
        Manifest::from_json(&json),
        Err(ManifestError::UnsafeName(_))
    ));
    let mut m = fake(10, DEFAULT_CHUNK_SIZE);
    m.chunks.pop();
    let json = serde_json::to_vec(&m).unwrap();
    assert!(matches!(
        Manifest::from_json(&json),
        Err(ManifestError::Inconsistent(_))
    ));
}

/// One chunk over the limit says what the limit is and what was sent, never "need N,
/// found N".
#[test]
fn a_manifest_over_the_chunk_limit_names_the_limit() {
    let count = MAX_CHUNKS as usize + 1;
    let mut m = fake(10, DEFAULT_CHUNK_SIZE);
    (m.size, m.chunk_size) = (count as u64, 1);
    m.chunks = vec![m.chunks[0]; count];
    let err = m.validate().unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "inconsistent manifest: {count} bytes in chunks of 1 need {count} chunks, over the limit of {MAX_CHUNKS} chunks per file; {count} chunk hashes were sent"
        )
    );
}
