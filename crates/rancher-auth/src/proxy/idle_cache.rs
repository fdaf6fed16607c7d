//! A map of per-cluster values that forgets entries nobody used for a while (the per-cluster HTTP
//! clients of [`crate::proxy::forward`]). The lock is held only for map operations, never across I/O.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

struct Entry<T> {
    value: Arc<T>,
    last_used: Instant,
}

struct Inner<T> {
    entries: HashMap<String, Entry<T>>,
    last_sweep: Instant,
}

/// Values keyed by cluster id, dropped after `idle` without a lookup.
pub(crate) struct IdleCache<T> {
    idle: Duration,
    inner: Mutex<Inner<T>>,
}

impl<T> IdleCache<T> {
    pub(crate) fn new(idle: Duration) -> Self {
        IdleCache { idle, inner: Mutex::new(Inner { entries: HashMap::new(), last_sweep: Instant::now() }) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        // A panic while holding the lock cannot leave the map half-updated; keep using it.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The value for `key` if it is cached and was used within the idle period; marks it used.
    pub(crate) fn get(&self, key: &str) -> Option<Arc<T>> {
        let now = Instant::now();
        let mut inner = self.lock();
        if now.duration_since(inner.last_sweep) >= self.idle {
            let idle = self.idle;
            inner.entries.retain(|_, e| now.duration_since(e.last_used) < idle);
            inner.last_sweep = now;
        }
        let entry = inner.entries.get_mut(key)?;
        if now.duration_since(entry.last_used) >= self.idle {
            inner.entries.remove(key);
            return None;
        }
        entry.last_used = now;
        Some(entry.value.clone())
    }

    /// Caches `value` for `key`, replacing any earlier one.
    pub(crate) fn insert(&self, key: &str, value: Arc<T>) {
        self.lock().entries.insert(key.to_owned(), Entry { value, last_used: Instant::now() });
    }

    /// Forgets `key`.
    pub(crate) fn remove(&self, key: &str) {
        self.lock().entries.remove(key);
    }

    /// How many entries are held (idle ones are counted until the next sweep).
    pub(crate) fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_entries_are_evicted_and_used_ones_kept() {
        let cache = IdleCache::new(Duration::from_secs(60));
        cache.insert("busy", Arc::new(1));
        cache.insert("quiet", Arc::new(2));
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(40)).await;
            assert_eq!(cache.get("busy").as_deref(), Some(&1));
        }
        // `quiet` was last used 120 s ago: the sweep dropped it.
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get("quiet"), None);
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(cache.get("busy"), None);
        assert_eq!(cache.len(), 0);
    }

    #[tokio::test]
    async fn remove_forgets_at_once() {
        let cache = IdleCache::new(Duration::from_secs(60));
        cache.insert("c1", Arc::new("client"));
        cache.remove("c1");
        assert!(cache.get("c1").is_none());
    }
}
