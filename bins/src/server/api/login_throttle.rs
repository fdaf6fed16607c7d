//! Brute-force slowing for logins: after a few failures within a window, a username (or a client
//! address) is locked out for a delay that doubles with every further failure; a success clears it.
//! Locked-out attempts get 429 with `Retry-After` before the password is even checked.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The thresholds and delays of a [`LoginThrottle`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct ThrottlePolicy {
    /// Failures of one username within `window` before it is locked out.
    pub(crate) per_user: u32,
    /// Failures from one client address within `window` before it is locked out.
    pub(crate) per_ip: u32,
    /// Failures older than this are forgotten.
    pub(crate) window: Duration,
    /// The first lockout; each further failure doubles it.
    pub(crate) base_delay: Duration,
    /// The longest lockout.
    pub(crate) max_delay: Duration,
    /// The most usernames and addresses tracked; the oldest are forgotten beyond it.
    pub(crate) max_entries: usize,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        ThrottlePolicy {
            per_user: 5,
            per_ip: 20,
            window: Duration::from_secs(15 * 60),
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15 * 60),
            max_entries: 100_000,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    first: Instant,
    locked_until: Option<Instant>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Ip(IpAddr),
}

/// Counts failed logins per username and per client address.
#[derive(Debug, Default)]
pub(crate) struct LoginThrottle {
    policy: ThrottlePolicy,
    failures: Mutex<HashMap<Key, Failures>>,
}

impl LoginThrottle {
    /// A throttle with `policy`.
    pub(crate) fn new(policy: ThrottlePolicy) -> Self {
        LoginThrottle { policy, failures: Mutex::new(HashMap::new()) }
    }

    fn keys(username: &str, ip: Option<IpAddr>) -> impl Iterator<Item = Key> {
        std::iter::once(Key::User(username.trim().to_lowercase())).chain(ip.map(Key::Ip))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Failures>> {
        self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `Some(wait)` when the username or the address is locked out now.
    pub(crate) fn check(&self, username: &str, ip: Option<IpAddr>) -> Option<Duration> {
        let now = Instant::now();
        let map = self.lock();
        Self::keys(username, ip)
            .filter_map(|k| map.get(&k)?.locked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max()
    }

    /// Records a failed attempt.
    pub(crate) fn failed(&self, username: &str, ip: Option<IpAddr>) {
        let now = Instant::now();
        let p = self.policy;
        let mut map = self.lock();
        if map.len() >= p.max_entries {
            map.retain(|_, f| {
                now.duration_since(f.first) < p.window || f.locked_until.is_some_and(|u| u > now)
            });
            if map.len() >= p.max_entries {
                map.clear();
            }
        }
        for key in Self::keys(username, ip) {
            let limit = if matches!(key, Key::User(_)) { p.per_user } else { p.per_ip };
            let f = map.entry(key).or_insert(Failures { count: 0, first: now, locked_until: None });
            if now.duration_since(f.first) >= p.window && f.locked_until.is_none_or(|u| u <= now) {
                *f = Failures { count: 0, first: now, locked_until: None };
            }
            f.count += 1;
            if f.count >= limit {
                let doublings = (f.count - limit).min(20);
                let delay = p.base_delay.saturating_mul(1 << doublings).min(p.max_delay);
                f.locked_until = Some(now + delay);
            }
        }
    }

    /// Records a success: the username and the address start afresh.
    pub(crate) fn succeeded(&self, username: &str, ip: Option<IpAddr>) {
        let mut map = self.lock();
        for key in Self::keys(username, ip) {
            map.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> LoginThrottle {
        LoginThrottle::new(ThrottlePolicy { per_user: 3, per_ip: 5, ..Default::default() })
    }

    #[tokio::test(start_paused = true)]
    async fn locks_out_after_n_failures_with_doubling_delays() {
        let t = throttle();
        let ip = Some("10.0.0.1".parse().unwrap());
        t.failed("bob", ip);
        t.failed("Bob", ip);
        assert_eq!(t.check("bob", ip), None);
        t.failed("bob", ip);
        assert_eq!(t.check("bob", ip), Some(Duration::from_secs(1)));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(t.check("bob", ip), None);
        t.failed("bob", ip);
        assert_eq!(t.check("bob", ip), Some(Duration::from_secs(2)));
        t.failed("bob", ip);
        assert_eq!(t.check("bob", None), Some(Duration::from_secs(4)));
        // The address has failed 5 times: other usernames from it wait too, others elsewhere do not.
        assert!(t.check("alice", ip).is_some());
        assert_eq!(t.check("alice", Some("10.0.0.2".parse().unwrap())), None);
    }

    #[tokio::test(start_paused = true)]
    async fn success_resets_and_old_failures_are_forgotten() {
        let t = throttle();
        t.failed("bob", None);
        t.failed("bob", None);
        t.succeeded("bob", None);
        t.failed("bob", None);
        assert_eq!(t.check("bob", None), None);
        tokio::time::advance(Duration::from_secs(16 * 60)).await;
        t.failed("bob", None);
        t.failed("bob", None);
        assert_eq!(t.check("bob", None), None, "the failure before the window no longer counts");
    }

    #[tokio::test(start_paused = true)]
    async fn delays_are_capped() {
        let t = throttle();
        for _ in 0..40 {
            t.failed("bob", None);
        }
        assert_eq!(t.check("bob", None), Some(Duration::from_secs(15 * 60)));
    }
}
