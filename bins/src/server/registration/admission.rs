//! How fast agents' sessions are admitted ([`ConnectAdmission`]): after a restart of the server (or
//! of every replica) every agent of the fleet reconnects within seconds, each session costing a
//! token check, a supervisor and its first lists of the cluster. Sessions are admitted at a bounded
//! rate with a burst of one second's worth; the rest are answered `503` with a `Retry-After` that
//! gives each its own turn: the first refused agent the next free second, the next one a
//! `1/rate` later, and so on — a queue kept as one instant, so ten thousand agents come back
//! spread over the forty seconds that 250 a second takes, instead of all retrying every second
//! (each retry a TLS handshake) or backing off for longer than the queue needs.

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
    /// The end of the turns handed out so far: the next refused agent's turn starts here (or at
    /// the next token, if that is later).
    promised: Instant,
}

/// The latest turn handed out: with more agents waiting than that, the last ones share it and are
/// given another when they come back. Bounds what a flood of unauthenticated requests can do to the
/// agents' wait.
const MAX_TURN: Duration = Duration::from_secs(120);

impl ConnectAdmission {
    /// Admits `per_second` sessions per second, with a burst of as many; `None` for 0 (unbounded).
    pub(crate) fn new(per_second: u32) -> Option<Self> {
        (per_second > 0).then(|| {
            let rate = f64::from(per_second);
            let now = Instant::now();
            ConnectAdmission { rate, bucket: Mutex::new(Bucket { tokens: rate, at: now, promised: now }) }
        })
    }

    /// Takes a token, or hands out the caller's turn: how long until it, rounded up to whole
    /// seconds for `Retry-After` (at least one, at most [`MAX_TURN`]).
    pub(crate) fn admit(&self) -> Result<(), Duration> {
        let mut b = self.bucket.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * self.rate).min(self.rate);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        let next_token = now + Duration::from_secs_f64((1.0 - b.tokens) / self.rate);
        let turn = b.promised.max(next_token).min(now + MAX_TURN);
        b.promised = turn + Duration::from_secs_f64(1.0 / self.rate);
        Err(Duration::from_secs(turn.duration_since(now).as_secs_f64().ceil().max(1.0) as u64))
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
        // Fifteen refused before it, a tenth of a second apart: this one's turn is in the second second.
        assert_eq!(admission.admit(), Err(Duration::from_secs(2)));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let admitted = (0..25).filter(|_| admission.admit().is_ok()).count();
        assert_eq!(admitted, 5, "half a second later, half as many");
        tokio::time::sleep(Duration::from_secs(60)).await;
        let admitted = (0..25).filter(|_| admission.admit().is_ok()).count();
        assert_eq!(admitted, 10, "an idle minute does not save up more than a second's worth");
        assert!(ConnectAdmission::new(0).is_none(), "0: unbounded");
    }

    /// A thousand agents at once against 100 a second: the first second's worth are in, the rest
    /// are given turns spread evenly over the nine seconds the rate needs for them, and each
    /// coming back at its turn is admitted.
    #[tokio::test(start_paused = true)]
    async fn refused_agents_are_given_turns_spread_over_the_queue() {
        let admission = ConnectAdmission::new(100).unwrap();
        let mut turns = Vec::new();
        for _ in 0..1000 {
            if let Err(wait) = admission.admit() {
                turns.push(wait.as_secs());
            }
        }
        assert_eq!(turns.len(), 900);
        let mut per_second = std::collections::BTreeMap::new();
        for t in &turns {
            *per_second.entry(*t).or_insert(0u32) += 1;
        }
        assert_eq!(
            per_second.keys().copied().collect::<Vec<_>>(),
            (1..=9).collect::<Vec<_>>(),
            "{per_second:?}"
        );
        assert!(
            per_second.values().all(|n| (99..=101).contains(n)),
            "one second's worth per second: {per_second:?}"
        );

        // Everyone comes back at its turn (Retry-After is a lower bound: they come within that second).
        turns.sort_unstable();
        let mut admitted = 0;
        let mut clock = 0;
        for t in turns {
            if t > clock {
                tokio::time::sleep(Duration::from_secs(t - clock)).await;
                clock = t;
            }
            admitted += usize::from(admission.admit().is_ok());
        }
        assert!(admitted >= 890, "agents coming back at their turn get in: {admitted} of 900");
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_cannot_push_the_turns_out_for_ever() {
        let admission = ConnectAdmission::new(10).unwrap();
        let last = (0..100_000).filter_map(|_| admission.admit().err()).last().unwrap();
        assert_eq!(last, MAX_TURN);
        tokio::time::sleep(MAX_TURN * 2).await;
        assert!(admission.admit().is_ok(), "once the flood is over the queue is empty again");
        assert_eq!(admission.admit().err(), None);
    }
}
