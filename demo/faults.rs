//! The faults of a simulated run (`demo --sim --crash/--leave/--late/--partition`): who, and
//! when, drawn from the seed, so the same options give the same faults.

use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::Args;

/// What happens to one peer.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fate {
    /// When it starts (joins late when not zero).
    pub start: Duration,
    /// When it crashes; it restarts, empty, `Args::restart_after` later.
    pub crash: Option<Duration>,
    /// When it leaves for good.
    pub leave: Option<Duration>,
}

impl Fate {
    /// Whether the run waits for this peer to complete.
    pub fn must_complete(&self) -> bool {
        self.leave.is_none()
    }
}

/// A partition: from `at`, for `for_`, the first half of the peers is cut off from the
/// owner and the other half.
#[derive(Clone, Copy, Debug)]
pub struct Partition {
    pub at: Duration,
    pub for_: Duration,
}

/// Parses `AT:FOR` (seconds), e.g. `1.5:2`.
pub fn parse_partition(s: &str) -> Result<Partition, String> {
    let err = || format!("invalid partition {s:?}: expected AT:FOR in seconds, e.g. 1.5:2");
    let (at, for_) = s.split_once(':').ok_or_else(err)?;
    let secs = |v: &str| {
        v.trim()
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x >= 0.0 && *x < 1e6)
            .map(Duration::from_secs_f64)
            .ok_or_else(err)
    };
    Ok(Partition {
        at: secs(at)?,
        for_: secs(for_)?,
    })
}

/// Each peer's fate: `--crash`, `--leave` and `--late` peers drawn without overlap, their
/// moments uniform within the fault window.
pub fn fates(args: &Args, window: Duration) -> anyhow::Result<Vec<Fate>> {
    let n = usize::from(args.peers);
    let (crash, leave, late) = (args.crash, args.leave, args.late);
    if crash + leave + late > n {
        anyhow::bail!(
            "--crash {crash}, --leave {leave} and --late {late} need {} peers, there are {n}",
            crash + leave + late
        );
    }
    if leave >= n {
        anyhow::bail!("--leave {leave} would leave no peer to complete");
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed.unwrap_or(0) ^ 0xfa17);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    let mut fates = vec![Fate::default(); n];
    let moment = |rng: &mut rand::rngs::StdRng| window.mul_f64(rng.random_range(0.05..0.95));
    for &i in &order[..crash] {
        fates[i].crash = Some(moment(&mut rng));
    }
    for &i in &order[crash..crash + leave] {
        fates[i].leave = Some(moment(&mut rng));
    }
    for &i in &order[crash + leave..crash + leave + late] {
        fates[i].start = moment(&mut rng);
    }
    Ok(fates)
}

/// The fault window: faults fall within the time the run should take (its fluid bound when
/// caps are given, else 1 s), unless `--faults-within` says otherwise.
pub fn window(args: &Args) -> Duration {
    if let Some(w) = args.faults_within {
        return Duration::from_secs_f64(w);
    }
    let owner = args.owner_rate.or(args.rate);
    let peers = crate::slow::peer_rates(args);
    crate::slow::fluid_bound(args.size, owner, &peers, args.download_rate)
        .map_or(Duration::from_secs(1), Duration::from_secs_f64)
}
