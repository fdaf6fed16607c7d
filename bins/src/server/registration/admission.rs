//! How fast agents' sessions are admitted ([`ConnectAdmission`]): after a restart of the server (or
//! of every replica) every agent of the fleet reconnects within seconds, each session costing a
//! token check, a supervisor and its first lists of the cluster. Sessions are admitted at a bounded
//! rate with a burst of one second's worth; the rest are answered `503` with `Retry-After`, and the
//! agents come back after their jittered backoff, spreading the herd out.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The default rate: ten thousand agents are back in under a minute.
pub const DEFAULT_AGENT_CONNECT_RATE: u32 = 250;

/// A token bucket over agents' session requests.
#[derive(Debug)]
pub(crate) struct ConnectAdmission {
    /// Sessions per second; the bucket holds as many.
    rate: f64,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl ConnectAdmission {
    /// Admits `per_second` sessions per second, with a burst of as many; `None` for 0 (unbounded).
    pub(crate) fn new(per_second: u32) -> Option<Self> {
        (per_second > 0).then(|| {
            let rate = f64::from(per_second);
            ConnectAdmission { rate, bucket: Mutex::new(Bucket { tokens: rate, at: Instant::now() }) }
        })
    }

    /// Takes a token, or says how long until one is there (rounded up to whole seconds, for
    /// `Retry-After`).
    pub(crate) fn admit(&self) -> Result<(), Duration> {
        let mut b = self.bucket.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * self.rate).min(self.rate);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - b.tokens) / self.rate;
            Err(Duration::from_secs_f64(wait.ceil().max(1.0)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_one_second_then_the_rate() {
        let admission = ConnectAdmission::new(10).unwrap();
        let admitted = (0..25).filter(|_| admission.admit().is_ok()).count();
        assert_eq!(admitted, 10, "a second's worth at once");
        assert_eq!(admission.admit(), Err(Duration::from_secs(1)));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let admitted = (0..25).filter(|_| admission.admit().is_ok()).count();
        assert_eq!(admitted, 5, "half a second later, half as many");
        tokio::time::sleep(Duration::from_secs(60)).await;
        let admitted = (0..25).filter(|_| admission.admit().is_ok()).count();
        assert_eq!(admitted, 10, "an idle minute does not save up more than a second's worth");
        assert!(ConnectAdmission::new(0).is_none(), "0: unbounded");
    }
}
