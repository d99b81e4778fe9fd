//! Uneven links (`demo --slow K:RATE`): peer K uploads at RATE instead of `--rate`, and the
//! meter's bound counts each peer's own cap.

use crate::Args;

/// One `--slow K:RATE`: peer `k` (1-based, in the demo's order) uploads at `rate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slow {
    pub k: u16,
    pub rate: u64,
}

/// Parses `K:RATE`, e.g. `3:2.5MiB/s`.
pub fn parse_slow(s: &str) -> Result<Slow, String> {
    let err =
        |why: String| format!("invalid --slow {s:?}: {why} (expected K:RATE, e.g. 3:2.5MiB/s)");
    let (k, rate) = s
        .split_once(':')
        .ok_or_else(|| err("no ':' between the peer and its rate".into()))?;
    let k = k
        .trim()
        .parse::<u16>()
        .ok()
        .filter(|&k| k >= 1)
        .ok_or_else(|| err(format!("{k:?} is not a peer number from 1")))?;
    let rate = ringswarm::cli::parse_rate(rate.trim()).map_err(err)?;
    Ok(Slow { k, rate })
}

/// Why `slow` does not fit a run of `peers` peers: a peer out of range, or one named twice.
pub fn check(slow: &[Slow], peers: u16) -> Result<(), String> {
    for (i, s) in slow.iter().enumerate() {
        if s.k > peers {
            return Err(format!(
                "--slow {}:…: there are only {peers} peers (K counts from 1)",
                s.k
            ));
        }
        if slow[..i].iter().any(|o| o.k == s.k) {
            return Err(format!("--slow names peer {} twice", s.k));
        }
    }
    Ok(())
}

/// Each peer's upload cap: `--rate`, or its `--slow` rate.
pub fn peer_rates(args: &Args) -> Vec<Option<u64>> {
    let mut rates = vec![args.rate; usize::from(args.peers)];
    for s in &args.slow {
        if let Some(r) = rates.get_mut(usize::from(s.k) - 1) {
            *r = Some(s.rate);
        }
    }
    rates
}

/// The fluid bound of a run of `size` bytes with these caps, when every upload is capped.
pub fn fluid_bound(
    size: u64,
    owner: Option<u64>,
    peers: &[Option<u64>],
    download: Option<u64>,
) -> Option<f64> {
    let peers: Vec<u64> = peers.iter().copied().collect::<Option<_>>()?;
    ringswarm::meter::fluid_bound(size, owner?, &peers, download)
}
