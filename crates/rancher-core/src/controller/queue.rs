//! The work queue: keys waiting to be reconciled, deduplicated, never handed to two workers at once.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

struct State<T> {
    ready: VecDeque<T>,
    /// Keys in `ready`.
    queued: HashSet<T>,
    /// Keys a worker holds.
    processing: HashSet<T>,
    /// Keys added while a worker held them: queued again when it is done.
    dirty: HashSet<T>,
    shut_down: bool,
}

/// A deduplicating work queue in the manner of client-go's: a key added while queued is not queued
/// twice; a key added while a worker holds it is queued again once that worker calls [`done`](Self::done).
pub(crate) struct WorkQueue<T> {
    state: Mutex<State<T>>,
    notify: Notify,
}

impl<T: Clone + Eq + Hash> WorkQueue<T> {
    pub(crate) fn new() -> Self {
        WorkQueue {
            state: Mutex::new(State {
                ready: VecDeque::new(),
                queued: HashSet::new(),
                processing: HashSet::new(),
                dirty: HashSet::new(),
                shut_down: false,
            }),
            notify: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `key` unless it is queued already.
    pub(crate) fn add(&self, key: T) {
        let mut s = self.lock();
        if s.shut_down || s.queued.contains(&key) {
            return;
        }
        if s.processing.contains(&key) {
            s.dirty.insert(key);
            return;
        }
        s.queued.insert(key.clone());
        s.ready.push_back(key);
        drop(s);
        self.notify.notify_one();
    }

    /// The next key; the caller holds it until [`done`](Self::done). `None` once shut down.
    pub(crate) async fn next(&self) -> Option<T> {
        loop {
            let notified = self.notify.notified();
            {
                let mut s = self.lock();
                if s.shut_down {
                    return None;
                }
                if let Some(key) = s.ready.pop_front() {
                    s.queued.remove(&key);
                    s.processing.insert(key.clone());
                    let more = !s.ready.is_empty();
                    drop(s);
                    if more {
                        // Wake another worker: notify_one keeps at most one permit.
                        self.notify.notify_one();
                    }
                    return Some(key);
                }
            }
            notified.await;
        }
    }

    /// Releases a key taken with [`next`](Self::next), queueing it again if it was added meanwhile.
    pub(crate) fn done(&self, key: &T) {
        let mut s = self.lock();
        s.processing.remove(key);
        if s.dirty.remove(key) && !s.shut_down {
            s.queued.insert(key.clone());
            s.ready.push_back(key.clone());
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Ends [`next`](Self::next) for every worker.
    pub(crate) fn shut_down(&self) {
        self.lock().shut_down = true;
        self.notify.notify_waiters();
    }

    /// Keys queued (not counting those being processed).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().ready.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dedups_and_requeues_keys_added_while_processing() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        let a = q.next().await.unwrap();
        assert_eq!(a, "a");
        q.add("a"); // while held: not handed out again yet
        assert_eq!(q.next().await, Some("b"));
        assert_eq!(q.len(), 0);
        q.done(&"a");
        assert_eq!(q.next().await, Some("a"));
        q.shut_down();
        assert_eq!(q.next().await, None);
    }
}
