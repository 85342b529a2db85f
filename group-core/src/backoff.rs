//! Exponential backoff with jitter (KIP-580): `base * 2^attempts`, capped, times a random factor
//! in [0.8, 1.2], so that clients that failed together do not retry together.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Backoff state for one thing being retried.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    base: Duration,
    max: Duration,
    attempts: u32,
}

impl Backoff {
    pub(crate) fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            attempts: 0,
        }
    }

    /// The delay before the next attempt; each call doubles the next one.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let exp = self.base.saturating_mul(1u32 << self.attempts.min(16));
        self.attempts = self.attempts.saturating_add(1);
        jitter(exp.min(self.max))
    }

    /// Forgets past failures.
    pub(crate) fn reset(&mut self) {
        self.attempts = 0;
    }

    /// Failed attempts since the last reset.
    pub(crate) fn attempts(&self) -> u32 {
        self.attempts
    }
}

/// `d` times a random factor in [0.8, 1.2].
pub(crate) fn jitter(d: Duration) -> Duration {
    // SplitMix64 over a process-wide counter seeded from the clock: jitter needs spread, not
    // unpredictability.
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut s = STATE.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    if s == 0 {
        s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        STATE.store(s, Ordering::Relaxed);
    }
    let mut z = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let factor = 0.8 + 0.4 * ((z >> 11) as f64 / (1u64 << 53) as f64);
    d.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_jitter_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let d0 = b.next_delay();
        let d1 = b.next_delay();
        let d2 = b.next_delay();
        assert!((80..=120).contains(&d0.as_millis()), "{d0:?}");
        assert!((160..=240).contains(&d1.as_millis()), "{d1:?}");
        assert!((320..=480).contains(&d2.as_millis()), "{d2:?}");
        for _ in 0..10 {
            assert!(b.next_delay() <= Duration::from_millis(1200));
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(120));
    }
}
