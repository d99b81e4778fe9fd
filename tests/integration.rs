//! The only integration-test crate (one link step): each module is one area.

// `args![..]` builds argument vectors that are often passed by reference.
#![allow(clippy::useless_vec, clippy::cast_possible_truncation)]

// Shared helpers: spawning binaries, ports, polling, diagnostics.
mod util;
// The binaries end to end: rings, file sizes, layouts, CLI errors.
mod cli;
// Kill and restart, tampered chunks, owner leaving, event log.
mod recovery;
// The durable store under SIGKILL: every chunk a summary names is intact, both layouts.
mod durable;
// Raw-socket bad input against in-process owner and peer.
mod protocol;
// The owner's directory: list, search, locate, the --http API, members and --peer-ttl.
mod directory;
// scripts/ring.sh end to end.
mod script;
// The HTML run report: summary, charts, escaping, headless Chromium.
mod report;
// The demo binary: owner and peers in one process, meter, report files.
mod demo;
// peer get: multi-source downloads, rarest first, fall-over.
mod getter;
// Round-trip properties (proptest): codec, chunk arithmetic, chunk-id ranges.
mod properties;
// Shared-secret swarms (--secret) and encrypted links: what a relay sees, a flipped bit.
mod secret;
// Node keys, pinned tickets, bad key files, a plaintext node.
mod keys;
// The peer's folder against hostile owners and planted files: names, no clobbering.
mod fs_safety;
// Regression tests of issue 9's hostile-input fixes: ranges, backoff, stalls, probes.
mod hostile;
// scripts/netns-ring.sh: six hosts in network namespaces, tc shaping, a kill and restart (root only).
mod netns;
// A ring over an in-memory network under the paused clock (net::MemNet).
mod memnet;
// `demo --sim`: determinism, virtual time, fault options.
mod sim;
// In-process twins of the engine tests: owner and peers on a MemNet, virtual time.
mod engine;
// peer share and file-owner --tracker: publishers, a directory with no files of its own.
mod share;
// peer join: a ring the directory assembles and re-stitches.
mod join;
// Hostile names in every log line and on disk; long, hostile tickets echoed short.
mod escape;
// The owner's live dashboard, in process and in headless Chromium.
mod dashboard;
// peer app: two apps and a tracker, clicked through in headless Chromium.
mod app;
// --dht: a private DHT of `peer dht-node`s on loopback finds a ticket's file when its tracker is gone.
mod dht;
// GET /metrics of the owner and a peer: format negotiation, promtool, every family from the start.
mod metrics;
