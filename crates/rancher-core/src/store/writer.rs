//! The write path of the local backends, with group commit. Writes are checked one at a time under one
//! lock, against the durable state plus the writes staged before them (so CAS and AlreadyExists stay
//! per write, in order); they are then made durable in batches: while one batch commits (one fsync),
//! later writes queue up and go together in the next. A write is acknowledged, and published to
//! watchers, only once its batch is durable; when a batch fails, it and every write staged after it fail.
//! One thread commits at a time; every other writer waits for its batch on a [`Ticket`], holding none.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde_json::Value;
use tokio::sync::oneshot;

use super::hub::{Change, ChangeKind, WatchHub};
use super::local::Backend;
use super::{StoreError, StoreResult};

/// A write checked and waiting for its batch.
struct Staged {
    key: String,
    change: Change,
    /// Told whether the write's batch became durable.
    done: oneshot::Sender<StoreResult<()>>,
}

/// What the writer lock guards.
pub(crate) struct WriterState {
    /// The last revision handed out (durable or staged).
    revision: u64,
    /// The last revision durable in the backend.
    durable: u64,
    /// The latest staged value of each key not yet durable, with its revision (`None`: deleted).
    overlay: HashMap<String, (u64, Option<Value>)>,
    /// Staged writes for the next batch, in revision order.
    queue: Vec<Staged>,
    /// A batch is being committed (by the thread that took it).
    committing: bool,
}

/// A staged write: resolves once the write is durable and published, or its batch failed.
pub(crate) struct Ticket(oneshot::Receiver<StoreResult<()>>);

impl Ticket {
    /// Waits, holding no thread, until the write is durable and published.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the write's batch (or an earlier one it depended on) failed.
    pub(crate) async fn durable(self) -> StoreResult<()> {
        self.0.await.unwrap_or_else(|_| Err(StoreError::Backend("the store's committer stopped".into())))
    }
}

impl WriterState {
    /// The revision the next write gets.
    pub(crate) fn next_revision(&self) -> u64 {
        self.revision + 1
    }

    /// Reads `key` as the next write must see it: staged writes first, then the backend.
    pub(crate) fn read<B: Backend>(&self, backend: &B, key: &str) -> StoreResult<Option<Value>> {
        match self.overlay.get(key) {
            Some((_, v)) => Ok(v.clone()),
            None => backend.get(key),
        }
    }

    /// Stages a checked write at [`next_revision`](Self::next_revision).
    pub(crate) fn stage(&mut self, key: &str, change: Change) -> Ticket {
        self.revision = change.revision;
        let value = (change.kind != ChangeKind::Deleted).then(|| change.object.clone());
        self.overlay.insert(key.to_owned(), (change.revision, value));
        let (done, ticket) = oneshot::channel();
        self.queue.push(Staged { key: key.to_owned(), change, done });
        Ticket(ticket)
    }
}

/// The writer lock, and the commit of what is staged under it.
pub(crate) struct Writer {
    state: Mutex<WriterState>,
}

impl Writer {
    /// A writer over a backend whose last durable revision is `revision`.
    pub(crate) fn new(revision: u64) -> Self {
        Writer {
            state: Mutex::new(WriterState {
                revision,
                durable: revision,
                overlay: HashMap::new(),
                queue: Vec::new(),
                committing: false,
            }),
        }
    }

    /// Takes the writer lock: writes are checked and staged under it.
    pub(crate) fn lock(&self) -> MutexGuard<'_, WriterState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// On a blocking backend, after staging: true when the caller is to have the queue committed
    /// ([`drive`](Self::drive) on a blocking thread) — when writes wait and no thread is committing or
    /// on its way to. Otherwise the committing thread takes the new writes in its next batch.
    pub(crate) fn claim(&self) -> bool {
        let mut st = self.lock();
        let claim = !st.committing && !st.queue.is_empty();
        st.committing |= claim;
        claim
    }

    /// Commits what is queued, after a [`claim`](Self::claim); returns the last batch's
    /// acknowledgements, to send once the thread has let go of the store.
    #[must_use]
    pub(crate) fn drive<B: Backend>(&self, backend: &B, hub: &WatchHub) -> Acks {
        self.commit_queued(self.lock(), backend, hub)
    }

    /// Commits queued writes in batches until none is left: a durable batch is published (under the
    /// lock, so watchers see batches in revision order) and acknowledged; a failed one fails with every
    /// write staged after it. Blocking backends commit without the lock, so writes arriving meanwhile
    /// join the next batch; the others commit under it. The last batch's acknowledgements are
    /// returned unsent: a writer that drops the store once acknowledged must find it closed (its file
    /// free to open again), not still held by the thread that committed.
    #[must_use]
    pub(crate) fn commit_queued<'a, B: Backend>(
        &'a self,
        mut st: MutexGuard<'a, WriterState>,
        backend: &B,
        hub: &WatchHub,
    ) -> Acks {
        let mut acks = Acks(Vec::new());
        while !st.queue.is_empty() {
            std::mem::take(&mut acks).send();
            st.committing = true;
            let batch = std::mem::take(&mut st.queue);
            let last = batch.last().map_or(st.durable, |s| s.change.revision);
            let writes: Vec<(&str, Option<&Value>)> = batch
                .iter()
                .map(|s| {
                    let value = (s.change.kind != ChangeKind::Deleted).then_some(&s.change.object);
                    (s.key.as_str(), value)
                })
                .collect();
            // A panicking backend fails its batch like an error would, instead of leaving every later
            // writer waiting for a commit that will never finish.
            let commit = || {
                catch_unwind(AssertUnwindSafe(|| backend.commit(last, &writes)))
                    .unwrap_or_else(|_| Err(StoreError::Backend("the backend panicked".into())))
            };
            let result = if B::BLOCKING {
                drop(st);
                let r = commit();
                st = self.lock();
                r
            } else {
                commit()
            };
            drop(writes);
            match result {
                Ok(()) => {
                    st.durable = last;
                    st.overlay.retain(|_, (revision, _)| *revision > last);
                    for Staged { change, done, .. } in batch {
                        hub.publish(change);
                        acks.0.push((done, Ok(())));
                    }
                }
                Err(e) => {
                    let e = e.to_string();
                    st.overlay.clear();
                    st.revision = st.durable;
                    let later = std::mem::take(&mut st.queue);
                    for Staged { done, .. } in batch.into_iter().chain(later) {
                        acks.0.push((done, Err(StoreError::Backend(format!("commit failed: {e}").into()))));
                    }
                }
            }
        }
        st.committing = false;
        acks
    }
}

/// Acknowledgements of committed (or failed) writes, not yet sent.
#[derive(Default)]
pub(crate) struct Acks(Vec<(oneshot::Sender<StoreResult<()>>, StoreResult<()>)>);

impl Acks {
    /// Tells each write's waiter.
    pub(crate) fn send(self) {
        for (done, result) in self.0 {
            let _ = done.send(result);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::store::local::{LocalOptions, LocalStore};
    use crate::store::memory::MemoryBytes;

    /// A blocking backend whose commits are slow (like an fsync), counted, and can be made to fail.
    #[derive(Default)]
    struct SlowBytes {
        inner: MemoryBytes,
        commits: AtomicUsize,
        fail_next: AtomicBool,
    }

    impl Backend for SlowBytes {
        const BLOCKING: bool = true;
        fn revision(&self) -> StoreResult<u64> {
            self.inner.revision()
        }
        fn get(&self, key: &str) -> StoreResult<Option<Value>> {
            self.inner.get(key)
        }
        fn scan(
            &self,
            prefix: &str,
            after: Option<&str>,
            want: usize,
            filter: &mut dyn FnMut(&Value) -> bool,
        ) -> StoreResult<(Vec<(String, Value)>, u64)> {
            self.inner.scan(prefix, after, want, filter)
        }
        fn commit(&self, revision: u64, writes: &[(&str, Option<&Value>)]) -> StoreResult<()> {
            std::thread::sleep(Duration::from_millis(20));
            self.commits.fetch_add(1, Ordering::SeqCst);
            if self.fail_next.swap(false, Ordering::SeqCst) {
                return Err(StoreError::Backend("disk full".into()));
            }
            self.inner.commit(revision, writes)
        }
    }

    fn store() -> LocalStore<SlowBytes> {
        LocalStore::new(SlowBytes::default(), LocalOptions::default()).unwrap()
    }

    async fn concurrently<T: Send + 'static>(
        n: usize,
        f: impl Fn(usize) -> futures::future::BoxFuture<'static, T>,
    ) -> Vec<T> {
        let tasks: Vec<_> = (0..n).map(|i| tokio::spawn(f(i))).collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_commits_and_each_is_acknowledged_durable() {
        let s = store();
        let created = concurrently(16, |i| {
            let s = s.clone();
            Box::pin(
                async move { s.create("clusters", json!({"metadata": {"name": format!("c{i}")}})).await },
            )
        })
        .await;
        let mut versions: Vec<u64> = created
            .iter()
            .map(|r| r.as_ref().unwrap()["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap())
            .collect();
        versions.sort_unstable();
        assert_eq!(versions, (1..=16).collect::<Vec<_>>());
        let commits = s.backend().commits.load(Ordering::SeqCst);
        assert!(commits < 16, "16 concurrent writes took {commits} commits");
        // Acknowledged means in the backend.
        for i in 0..16 {
            assert!(s.backend().inner.get(&format!("clusters\0\0c{i}")).unwrap().is_some());
        }
    }

    /// Writers waiting for their batch hold no thread: on a blocking pool of two threads, 64
    /// concurrent writes still go in a few batches (a writer parked on its batch would hold one of
    /// the two, and batches would carry two writes at most).
    #[test]
    fn waiting_writers_hold_no_thread() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let s = store();
        let created = rt.block_on(concurrently(64, |i| {
            let s = s.clone();
            Box::pin(
                async move { s.create("clusters", json!({"metadata": {"name": format!("c{i}")}})).await },
            )
        }));
        assert!(created.iter().all(Result::is_ok));
        let commits = s.backend().commits.load(Ordering::SeqCst);
        assert!(commits <= 16, "64 writes on two blocking threads took {commits} commits");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn semantic_checks_stay_per_write_within_a_batch() {
        let s = store();
        let results = concurrently(8, |_| {
            let s = s.clone();
            Box::pin(async move { s.create("clusters", json!({"metadata": {"name": "same"}})).await })
        })
        .await;
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
        assert!(
            results
                .iter()
                .flat_map(|r| r.as_ref().err())
                .all(|e| matches!(e, StoreError::AlreadyExists { .. }))
        );

        let base = results.into_iter().find_map(Result::ok).unwrap();
        let results = concurrently(8, |i| {
            let (s, mut obj) = (s.clone(), base.clone());
            obj["spec"] = json!({"writer": i});
            Box::pin(async move { s.update("clusters", obj).await })
        })
        .await;
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "one CAS on the same version wins");
        assert!(
            results.iter().flat_map(|r| r.as_ref().err()).all(|e| matches!(e, StoreError::Conflict { .. }))
        );
        let winner = results.into_iter().find_map(Result::ok).unwrap();
        assert_eq!(s.get("clusters", None, "same").await.unwrap(), winner);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_batch_fails_its_writes_and_stores_none_of_them() {
        let s = store();
        s.backend().fail_next.store(true, Ordering::SeqCst);
        let results = Arc::new(
            concurrently(8, |i| {
                let s = s.clone();
                Box::pin(
                    async move { s.create("clusters", json!({"metadata": {"name": format!("c{i}")}})).await },
                )
            })
            .await,
        );
        assert!(results.iter().any(|r| r.is_err()), "the first batch failed");
        for (i, r) in results.iter().enumerate() {
            let stored = s.get("clusters", None, &format!("c{i}")).await;
            match r {
                Ok(v) => assert_eq!(&stored.unwrap(), v),
                Err(e) => {
                    assert!(matches!(e, StoreError::Backend(_)), "{e:?}");
                    assert!(matches!(stored, Err(StoreError::NotFound { .. })), "failed c{i} was stored");
                }
            }
        }
        // The store goes on: a failed name can be created now.
        let failed = results.iter().position(|r| r.is_err()).unwrap();
        s.create("clusters", json!({"metadata": {"name": format!("c{failed}")}})).await.unwrap();
    }
}
