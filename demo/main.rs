//! `demo`: an owner and N peers in one process (issue 3). For now it points at the ring script.

fn main() {
    eprintln!("demo: not built yet; run scripts/ring.sh for a five-peer ring");
    std::process::exit(2);
}
