//! Retry delays: exponential per key, capped, with jitter so that many failing keys do not retry in step.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The delay after the first failure (before jitter).
    pub base: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { base: Duration::from_millis(100), max: Duration::from_secs(60) }
    }
}

impl Backoff {
    /// The delay before retry number `failures` (1 for the first failure): `base * 2^(failures-1)`,
    /// capped at `max`, then scaled by a random factor in `[0.5, 1.0]`.
    pub fn delay(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(32);
        let raw = self.base.saturating_mul(1u32 << exp.min(31)).min(self.max);
        raw.mul_f64(rand::rng().random_range(0.5..=1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_and_is_capped() {
        let b = Backoff { base: Duration::from_millis(100), max: Duration::from_secs(2) };
        for (n, uncapped) in [(1, 100), (2, 200), (3, 400), (5, 1600), (6, 2000), (40, 2000)] {
            let d = b.delay(n);
            let full = Duration::from_millis(uncapped);
            assert!(d <= full && d >= full / 2, "failure {n}: {d:?}");
        }
    }
}
