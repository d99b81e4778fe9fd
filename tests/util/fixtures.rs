//! Fixtures shared by the tests and the benchmarks (`benches/core.rs` includes this file by
//! path): they use the library only.

use std::sync::Arc;

use ringswarm::chunkset::ChunkSet;
use ringswarm::directory::Directory;
use ringswarm::manifest::Manifest;
use ringswarm::protocol::Role;

/// A directory whose one file, `big.bin` of 4,000 chunks, has a ring of `members` joiners
/// (at 127.0.0.1:20000 and up), each holding a different half of it: the dashboard at scale.
pub fn big_ring(members: u16) -> Arc<Directory> {
    let m = Manifest::from_bytes("big.bin", &vec![7u8; 4000 * 1024], 1024).unwrap();
    let directory = Arc::new(Directory::new(
        vec![Arc::new(m.clone())],
        "127.0.0.1:1".parse().unwrap(),
        ringswarm::directory::DEFAULT_PEER_TTL,
    ));
    for i in 0..members {
        let mut have = ChunkSet::new(4000);
        for c in 0..2000u32 {
            have.insert(m.chunk_id((c + u32::from(i) * 7) % 4000).unwrap());
        }
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 20_000 + i));
        let id = directory
            .register(0, addr, Role::Joiner, have, None)
            .unwrap();
        directory.join_ring(0, id);
    }
    directory
}
