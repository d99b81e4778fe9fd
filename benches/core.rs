//! Criterion benches of the per-chunk work on a peer's hot path: framing a message, hashing a
//! chunk, and writing and reading it in the chunk store (both layouts).
//!
//! Run with `cargo bench --bench core` (about a minute and a half); filter with a name, e.g.
//! `cargo bench --bench core -- hash`. Every group reports throughput in bytes, so criterion
//! prints MiB/s or GiB/s. `scripts/bench.sh` measures the whole ring end to end; the figures of
//! both are in BENCHMARKS.md.
//!
//! The store benches work on a temporary file in `TMPDIR` (default `/tmp`), so they measure
//! that file system and the page cache, not the disk: nothing is synced.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rand::{RngCore, SeedableRng};
use ringswarm::chunkset::Ranges;
use ringswarm::hash::Hash;
use ringswarm::manifest::{ChunkId, DEFAULT_CHUNK_SIZE, Manifest};
use ringswarm::protocol::{Message, MessageCodec};

#[path = "../tests/util/fixtures.rs"]
mod fixtures;
use ringswarm::store::{ChunkStore, Layout};
use tokio_util::codec::{Decoder, Encoder};

/// One chunk: 100 KiB, the default chunk size.
const CHUNK: usize = 100 * 1024;
/// Size of the file the store benches write and read: 320 chunks, so the part file and the
/// chunk folder stay in the page cache and every write overwrites an earlier one.
const STORE_FILE: usize = 320 * CHUNK;

/// Reproducible pseudo-random bytes (incompressible, like the files the ring moves).
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    data
}

/// Short runs, so that `cargo bench` stays under two minutes on a 2-core machine.
fn configured() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

/// The encoded frame of `msg`, as it would arrive on the socket.
fn frame_of(codec: &mut MessageCodec, msg: &Message) -> Bytes {
    let mut buf = BytesMut::new();
    codec.encode(msg.clone(), &mut buf).expect("encodable");
    buf.freeze()
}

fn bench_codec(c: &mut Criterion) {
    let chunk = Message::chunk(7, Bytes::from(random_bytes(CHUNK, 1)));
    // What a peer sends after storing one chunk, and a long list of scattered ids (every
    // other chunk of the first 2048), as after a restart with a fragmented store.
    let have_one = Message::Have {
        chunks: Ranges(vec![[417, 417]]),
    };
    let have_many = Message::Have {
        chunks: Ranges((0..1024).map(|i| [2 * i, 2 * i]).collect()),
    };
    let cases = [
        ("chunk 100KiB", chunk),
        ("have 1 range", have_one),
        ("have 1024 ranges", have_many),
    ];

    let mut group = c.benchmark_group("codec");
    for (name, msg) in &cases {
        let mut codec = MessageCodec::new(CHUNK);
        let frame = frame_of(&mut codec, msg);
        group.throughput(Throughput::Bytes(frame.len() as u64));

        // Encode into a reused buffer, as `Framed` does with its write buffer.
        let mut dst = BytesMut::with_capacity(frame.len());
        group.bench_function(format!("encode {name}"), |b| {
            b.iter(|| {
                dst.clear();
                codec
                    .encode(black_box(msg.clone()), &mut dst)
                    .expect("encodable");
                black_box(dst.len())
            })
        });

        // Decode one whole frame from a buffer (filling the buffer is not timed).
        group.bench_function(format!("decode {name}"), |b| {
            b.iter_batched(
                || BytesMut::from(&frame[..]),
                |mut src| codec.decode(&mut src).expect("decodable").expect("whole"),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn bench_hash(c: &mut Criterion) {
    let data = random_bytes(CHUNK, 2);
    let mut group = c.benchmark_group("hash");
    group.throughput(Throughput::Bytes(CHUNK as u64));
    group.bench_function("blake3 100KiB", |b| b.iter(|| Hash::of(black_box(&data))));
    group.finish();
}

/// A manifest of a fresh random file of [`STORE_FILE`] bytes in `dir`, and its bytes.
fn store_fixture(dir: &Path) -> (Manifest, Vec<u8>) {
    let data = random_bytes(STORE_FILE, 3);
    let path = dir.join("data.bin");
    std::fs::write(&path, &data).expect("writing the fixture");
    let manifest = Manifest::from_file(&path, DEFAULT_CHUNK_SIZE).expect("manifest");
    assert_eq!(manifest.chunk_count() as usize, STORE_FILE / CHUNK);
    (manifest, data)
}

fn chunk_bytes<'a>(m: &Manifest, data: &'a [u8], id: ChunkId) -> &'a [u8] {
    let start = usize::try_from(m.chunk_offset(id)).expect("small file");
    &data[start..start + m.chunk_len(id)]
}

fn bench_store(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("temp folder");
    let (manifest, data) = store_fixture(tmp.path());
    let ids: Vec<ChunkId> = manifest.chunk_ids().collect();

    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Bytes(CHUNK as u64));
    for (layout, name) in [
        (Layout::PartFile, "part file"),
        (Layout::ChunkFiles, "chunk files"),
    ] {
        let dir = tmp.path().join(name.replace(' ', "-"));
        let (store, _) = ChunkStore::open(&dir, &manifest, layout).expect("open store");
        // Fill the store first, so reads always find their chunk.
        for &id in &ids {
            store
                .write_chunk(id, chunk_bytes(&manifest, &data, id))
                .expect("write");
        }

        let mut next = ids.iter().cycle();
        group.bench_function(format!("write {name}"), |b| {
            b.iter(|| {
                let id = *next.next().expect("endless");
                store
                    .write_chunk(id, black_box(chunk_bytes(&manifest, &data, id)))
                    .expect("write");
            })
        });

        let mut next = ids.iter().cycle();
        group.bench_function(format!("read {name}"), |b| {
            b.iter(|| {
                let id = *next.next().expect("endless");
                store.read_chunk(id).expect("read")
            })
        });
    }
    group.finish();
}

/// The dashboard's snapshot of a 1,000-member ring of a 4,000-chunk file, each member holding
/// a different half: what the owner builds once a second while a page is open.
fn bench_dashboard(c: &mut Criterion) {
    let directory = fixtures::big_ring(1000);
    let dashboard = ringswarm::dashboard::Dashboard::new(directory, Some("h:1".into()), None);
    let bytes = dashboard.snapshot().len() as u64;
    let mut group = c.benchmark_group("dashboard");
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("snapshot_1000_members", |b| b.iter(|| dashboard.snapshot()));
    group.finish();
    eprintln!("dashboard snapshot of 1000 members: {bytes} bytes");
}

criterion_group! {
    name = benches;
    config = configured();
    targets = bench_codec, bench_hash, bench_store, bench_dashboard
}
criterion_main!(benches);
