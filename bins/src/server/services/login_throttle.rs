//! Brute-force slowing for logins, keyed so that an attacker slows themselves, not the user they aim
//! at. Failures are counted per (username, client address) and per client address; each is locked
//! out after a few failures, for a delay that doubles with every further failure. A username's
//! failures from all addresses together only *slow* its logins (a fixed delay before the check), so
//! nobody can lock another user out. Locked-out attempts get 429 with `Retry-After` before the
//! password is even checked.
//!
//! An attempt is counted when it starts ([`LoginThrottle::begin`]), before the slow password check,
//! so parallel guesses cannot slip past the limit between a check and a count; a success gives its
//! count back and clears its own (username, address) pair only.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::server::listener::client_of;

/// A login refused before its password is checked: its (username, address) pair or its address is
/// locked out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("too many failed logins: try again in {wait_secs} s")]
pub(crate) struct Throttled {
    /// Seconds until the lockout ends (rounded up; may be 0 just before it does).
    pub(crate) wait_secs: u32,
}

impl Throttled {
    /// What `Retry-After` says: the wait, at least one second.
    pub(crate) fn retry_after_secs(self) -> u32 {
        self.wait_secs.max(1)
    }
}

/// The thresholds and delays of a [`LoginThrottle`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct ThrottlePolicy {
    /// Failures of one username from one client address within `window` before that pair is locked out.
    pub(crate) per_pair: u32,
    /// Failures from one client address (any usernames) within `window` before it is locked out.
    pub(crate) per_ip: u32,
    /// Failures of one username from all addresses within `window` before its logins are slowed.
    pub(crate) per_user_slow: u32,
    /// The delay before each check of a username that has passed `per_user_slow`.
    pub(crate) slow_delay: Duration,
    /// Failures older than this are forgotten.
    pub(crate) window: Duration,
    /// The first lockout; each further failure doubles it.
    pub(crate) base_delay: Duration,
    /// The longest lockout.
    pub(crate) max_delay: Duration,
    /// The most counters kept; beyond it the expired, then the unlocked ones are forgotten.
    pub(crate) max_entries: usize,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        ThrottlePolicy {
            per_pair: 5,
            per_ip: 20,
            per_user_slow: 50,
            slow_delay: Duration::from_secs(1),
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
    /// The first failure of the window.
    first: Instant,
    /// The latest failure: a lockout runs from here.
    last: Instant,
}

/// A username as a fixed-size digest: the counters' memory does not grow with what clients send.
type UserKey = [u8; 16];

fn user_key(username: &str) -> UserKey {
    let digest = Sha256::digest(username.trim().to_lowercase().as_bytes());
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    Pair(UserKey, Option<IpAddr>),
    Ip(IpAddr),
    User(UserKey),
}

/// Counts failed logins per (username, address), per address and per username.
#[derive(Debug, Default)]
pub(crate) struct LoginThrottle {
    policy: ThrottlePolicy,
    failures: Mutex<HashMap<Key, Failures>>,
}

/// A login attempt in progress, counted as a failure until it says otherwise.
#[must_use = "an attempt counts as a failure unless it is marked succeeded or not checked"]
pub(crate) struct Attempt<'a> {
    throttle: &'a LoginThrottle,
    /// When it was counted.
    at: Instant,
    /// Each counter it added to, with that counter's previous latest failure.
    keys: Vec<(Key, Instant)>,
}

impl LoginThrottle {
    /// A throttle with `policy`.
    pub(crate) fn new(policy: ThrottlePolicy) -> Self {
        LoginThrottle { policy, failures: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Failures>> {
        self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The failure threshold of `key` that locks it out, if any (a username alone is never locked).
    fn lockout_limit(&self, key: &Key) -> Option<u32> {
        match key {
            Key::Pair(..) => Some(self.policy.per_pair),
            Key::Ip(_) => Some(self.policy.per_ip),
            Key::User(_) => None,
        }
    }

    /// Until when `f` locks `key` out: from the latest failure, the base delay doubled for every
    /// failure past the limit, capped.
    fn locked_until(&self, key: &Key, f: &Failures) -> Option<Instant> {
        let limit = self.lockout_limit(key)?;
        let p = self.policy;
        (f.count >= limit).then(|| {
            let doublings = (f.count - limit).min(20);
            f.last + p.base_delay.saturating_mul(1 << doublings).min(p.max_delay)
        })
    }

    /// Starts a login attempt for `username` from `ip`: refused with 429 while its (username, address)
    /// pair or its address is locked out; otherwise counted as a failure at once, and delayed when the
    /// username has failed often from everywhere.
    ///
    /// # Errors
    /// [`Throttled`] with the seconds until the lockout ends.
    pub(crate) async fn begin(&self, username: &str, ip: Option<IpAddr>) -> Result<Attempt<'_>, Throttled> {
        let user = user_key(username);
        let ip = ip.map(client_of);
        let mut keys = vec![Key::Pair(user, ip), Key::User(user)];
        keys.extend(ip.map(Key::Ip));
        let now = Instant::now();
        let (counted, slow) = {
            let mut map = self.lock();
            let wait = keys
                .iter()
                .filter_map(|k| self.locked_until(k, map.get(k)?))
                .filter(|until| *until > now)
                .map(|until| until - now)
                .max();
            if let Some(wait) = wait {
                let wait_secs =
                    u32::try_from(wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).unwrap_or(u32::MAX);
                return Err(Throttled { wait_secs });
            }
            self.make_room(&mut map, now);
            let mut slow = false;
            let mut counted = Vec::with_capacity(keys.len());
            for key in keys {
                let f = map.entry(key).or_insert(Failures { count: 0, first: now, last: now });
                if now.duration_since(f.first) >= self.policy.window {
                    // Not locked (checked above): the window starts afresh.
                    *f = Failures { count: 0, first: now, last: now };
                }
                counted.push((key, f.last));
                f.count = f.count.saturating_add(1);
                f.last = now;
                slow |= matches!(key, Key::User(_)) && f.count > self.policy.per_user_slow;
            }
            (counted, slow)
        };
        if slow {
            tokio::time::sleep(self.policy.slow_delay).await;
        }
        Ok(Attempt { throttle: self, at: now, keys: counted })
    }

    /// Keeps the map under `max_entries`: first the expired counters go, then the ones not locking
    /// anything, and only as a last resort all of them.
    fn make_room(&self, map: &mut HashMap<Key, Failures>, now: Instant) {
        let p = self.policy;
        if map.len() < p.max_entries {
            return;
        }
        let locked = |k: &Key, f: &Failures| self.locked_until(k, f).is_some_and(|u| u > now);
        map.retain(|k, f| now.duration_since(f.first) < p.window || locked(k, f));
        if map.len() >= p.max_entries * 9 / 10 {
            map.retain(|k, f| locked(k, f));
        }
        if map.len() >= p.max_entries {
            map.clear();
        }
    }

    /// Takes back the failure an attempt counted, and its mark as the latest failure unless a later
    /// one came since.
    fn uncount(&self, attempt: &Attempt<'_>) {
        let mut map = self.lock();
        for (key, previous_last) in &attempt.keys {
            if let Some(f) = map.get_mut(key) {
                f.count = f.count.saturating_sub(1);
                if f.last == attempt.at {
                    f.last = *previous_last;
                }
                if f.count == 0 {
                    map.remove(key);
                }
            }
        }
    }
}

impl Attempt<'_> {
    /// The password was wrong: the failure stays counted.
    pub(crate) fn failed(self) {}

    /// The password was right: this attempt is not a failure, and its (username, address) pair starts
    /// afresh. The address's and the username's other failures stay.
    pub(crate) fn succeeded(self) {
        self.throttle.uncount(&self);
        let mut map = self.throttle.lock();
        for (key, _) in &self.keys {
            if matches!(key, Key::Pair(..)) {
                map.remove(key);
            }
        }
    }

    /// The password was not checked (the provider or the store failed, or the server was busy).
    pub(crate) fn not_checked(self) {
        self.throttle.uncount(&self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> LoginThrottle {
        LoginThrottle::new(ThrottlePolicy { per_pair: 3, per_ip: 5, per_user_slow: 8, ..Default::default() })
    }

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    /// `Some(seconds)` of Retry-After when refused, `None` when the attempt may go on (and fails).
    async fn fail(t: &LoginThrottle, user: &str, from: Option<IpAddr>) -> Option<u32> {
        match t.begin(user, from).await {
            Ok(attempt) => {
                attempt.failed();
                None
            }
            Err(throttled) => Some(throttled.retry_after_secs()),
        }
    }

    async fn refused(t: &LoginThrottle, user: &str, from: Option<IpAddr>) -> Option<u32> {
        match t.begin(user, from).await {
            Ok(attempt) => {
                attempt.not_checked();
                None
            }
            Err(throttled) => Some(throttled.retry_after_secs()),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_pair_locks_with_doubling_delays_and_only_the_pair() {
        let t = throttle();
        assert_eq!(fail(&t, "bob", ip(1)).await, None);
        assert_eq!(fail(&t, "Bob ", ip(1)).await, None, "usernames are compared trimmed, in lower case");
        assert_eq!(fail(&t, "bob", ip(1)).await, None);
        assert_eq!(refused(&t, "bob", ip(1)).await, Some(1));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(fail(&t, "bob", ip(1)).await, None);
        assert_eq!(refused(&t, "bob", ip(1)).await, Some(2));
        // Bob from elsewhere, and others from this address, are not locked out.
        assert_eq!(refused(&t, "bob", ip(2)).await, None);
        assert_eq!(refused(&t, "alice", ip(1)).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_address_locks_after_its_own_limit() {
        let t = throttle();
        for user in ["a", "b", "c", "d", "e"] {
            assert_eq!(fail(&t, user, ip(1)).await, None);
        }
        assert_eq!(refused(&t, "f", ip(1)).await, Some(1), "any username from the address");
        assert_eq!(refused(&t, "f", ip(2)).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn parallel_attempts_are_counted_before_they_are_checked() {
        let t = throttle();
        let mut started = Vec::new();
        for _ in 0..10 {
            if let Ok(attempt) = t.begin("bob", ip(1)).await {
                started.push(attempt);
            }
        }
        assert_eq!(started.len(), 3, "only the pair's limit gets as far as a password check");
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_clears_its_pair_only() {
        let t = throttle();
        for user in ["x", "y", "z", "w"] {
            assert_eq!(fail(&t, user, ip(1)).await, None);
        }
        assert_eq!(fail(&t, "bob", ip(1)).await, None);
        assert_eq!(refused(&t, "v", ip(1)).await, Some(1), "the address has failed 5 times");
        tokio::time::advance(Duration::from_secs(1)).await;
        // Another user's success from the address gives back its own count only: the lockout is not
        // lengthened, and not lifted either.
        t.begin("mallory", ip(1)).await.unwrap().succeeded();
        assert_eq!(fail(&t, "v", ip(1)).await, None);
        assert_eq!(refused(&t, "v", ip(1)).await, Some(2), "the address's count was not reset");

        let t = throttle();
        assert_eq!(fail(&t, "bob", ip(3)).await, None);
        assert_eq!(fail(&t, "bob", ip(3)).await, None);
        t.begin("bob", ip(3)).await.unwrap().succeeded();
        assert_eq!(fail(&t, "bob", ip(3)).await, None);
        assert_eq!(fail(&t, "bob", ip(3)).await, None);
        assert_eq!(refused(&t, "bob", ip(3)).await, None, "the pair started afresh");
    }

    #[tokio::test(start_paused = true)]
    async fn many_addresses_slow_a_username_but_never_lock_it() {
        let t = throttle();
        for from in 1..=8 {
            assert_eq!(fail(&t, "admin", ip(from)).await, None);
        }
        let started = Instant::now();
        let attempt = t.begin("admin", ip(100)).await.expect("never locked out");
        assert_eq!(started.elapsed(), Duration::from_secs(1), "slowed by the fixed delay");
        attempt.succeeded();
    }

    #[tokio::test(start_paused = true)]
    async fn old_failures_are_forgotten() {
        let t = throttle();
        assert_eq!(fail(&t, "bob", None).await, None);
        assert_eq!(fail(&t, "bob", None).await, None);
        tokio::time::advance(Duration::from_secs(16 * 60)).await;
        assert_eq!(fail(&t, "bob", None).await, None);
        assert_eq!(fail(&t, "bob", None).await, None);
        assert_eq!(refused(&t, "bob", None).await, None, "the failures before the window no longer count");
    }

    #[tokio::test(start_paused = true)]
    async fn delays_are_capped() {
        let window = Duration::from_secs(10 * 86_400);
        let t = LoginThrottle::new(ThrottlePolicy { per_pair: 3, window, ..Default::default() });
        for _ in 0..40 {
            assert_eq!(fail(&t, "bob", None).await, None);
            tokio::time::advance(Duration::from_secs(15 * 60)).await;
        }
        assert_eq!(fail(&t, "bob", None).await, None);
        assert_eq!(refused(&t, "bob", None).await, Some(15 * 60));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_table_forgets_unlocked_counters_before_lockouts() {
        let t = LoginThrottle::new(ThrottlePolicy { max_entries: 50, ..Default::default() });
        for _ in 0..5 {
            let _ = fail(&t, "bob", ip(1)).await;
        }
        assert!(refused(&t, "bob", ip(1)).await.is_some());
        for i in 0..100 {
            t.begin(&format!("spray-{i}"), None).await.unwrap().failed();
        }
        assert!(t.lock().len() <= 52, "{} counters", t.lock().len());
        assert!(refused(&t, "bob", ip(1)).await.is_some(), "the lockout survived the spray");
    }
}
