//! `RateLimiter`: a token bucket that caps a node's upload rate (`--upload-limit`).
//!
//! Shared by every upload connection of a node, so the cap is per node, not per link. A
//! sender asks for a chunk's bytes before sending it and sleeps until the bucket allows it.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A token bucket of `rate` bytes per second with a burst of `burst` bytes.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// A limiter of `rate` bytes per second with a burst of `burst` bytes (one chunk: any
    /// more would let a run beat the rate it is measured against).
    pub fn new(rate: u64, burst: u64) -> Self {
        let rate = rate.max(1) as f64;
        let burst = burst.max(1) as f64;
        Self {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Waits until `bytes` may be sent, and takes them from the bucket.
    pub async fn acquire(&self, bytes: u64) {
        let wait = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let (tokens, last) = *st;
            let tokens =
                (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.burst);
            let tokens = tokens - bytes as f64;
            *st = (tokens, now);
            if tokens >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-tokens / self.rate)
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn caps_the_rate() {
        let limiter = RateLimiter::new(1000, 100);
        let start = Instant::now();
        for _ in 0..30 {
            limiter.acquire(100).await;
        }
        // 3000 bytes at 1000 B/s, less the 100-byte burst: about 2.9 s.
        let t = start.elapsed().as_secs_f64();
        assert!((2.8..3.0).contains(&t), "{t}");
    }
}
