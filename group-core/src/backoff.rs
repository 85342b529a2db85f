//! Exponential backoff with jitter (KIP-580): `base * 2^attempts`, capped, times a random factor
//! in [0.8, 1.2], so that clients that failed together do not retry together.
//!
//! The randomness is a seeded generator per backoff, so that the sans-IO member retries on a
//! schedule its seed decides (a scenario's seed covers its retry timing). Code that does I/O and
//! has no seed to pass draws one with [`Jitter::from_process`].

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// SplitMix64: jitter needs spread, not unpredictability, and this is 64 bits of state with a
/// full period, so no crate is needed for it.
#[derive(Debug, Clone)]
pub(crate) struct Jitter {
    state: u64,
}

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

impl Jitter {
    pub(crate) fn seeded(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A generator for code without a seed of its own: successive calls in a process get
    /// different seeds, the first drawn from the wall clock.
    pub(crate) fn from_process() -> Self {
        Self::seeded(process_seed())
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// `d` times a random factor in [0.8, 1.2].
    pub(crate) fn spread(&mut self, d: Duration) -> Duration {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        d.mul_f64(0.8 + 0.4 * unit)
    }
}

/// A seed per call: the wall clock at the first call, then a step of the golden ratio per call.
#[allow(clippy::disallowed_methods)] // the one clock read that seeds unseeded I/O code
pub(crate) fn process_seed() -> u64 {
    static BASE: OnceLock<u64> = OnceLock::new();
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let base = *BASE.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    base.wrapping_add(CALLS.fetch_add(1, Ordering::Relaxed).wrapping_mul(GOLDEN))
}

/// Backoff state for one thing being retried.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    base: Duration,
    max: Duration,
    attempts: u32,
    jitter: Jitter,
}

impl Backoff {
    /// A backoff whose jitter comes from `jitter`.
    pub(crate) fn new(base: Duration, max: Duration, jitter: Jitter) -> Self {
        Self {
            base,
            max,
            attempts: 0,
            jitter,
        }
    }

    /// The delay before the next attempt; each call doubles the next one.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let exp = self.base.saturating_mul(1u32 << self.attempts.min(16));
        self.attempts = self.attempts.saturating_add(1);
        self.jitter.spread(exp.min(self.max))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_jitter_and_caps() {
        let mut b = Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(1),
            Jitter::from_process(),
        );
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

    #[test]
    fn a_seed_decides_the_delays_and_different_seeds_spread_them() {
        let delays = |seed| {
            let mut b = Backoff::new(
                Duration::from_millis(100),
                Duration::from_secs(10),
                Jitter::seeded(seed),
            );
            (0..8).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(delays(7), delays(7));
        assert_ne!(delays(7), delays(8));
        // Unseeded generators of one process differ from each other.
        let (mut a, mut b) = (Jitter::from_process(), Jitter::from_process());
        assert_ne!(a.next_u64(), b.next_u64());
    }
}
