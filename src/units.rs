//! Sizes for people: `3.0 MiB` (the engine's messages and the binaries' output alike).

/// A duration in seconds for people, to the millisecond: `1.234 s`.
pub fn human_secs(s: f64) -> String {
    format!("{s:.3} s")
}

/// A size for people: `3.0 MiB`.
pub fn human_size(n: u64) -> String {
    human_size_f64(n as f64)
}

/// As [`human_size`], for measured (fractional) amounts such as bytes per second.
pub fn human_size_f64(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
