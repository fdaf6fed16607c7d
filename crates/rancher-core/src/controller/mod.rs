//! The controller runtime: watches one kind through an [`Api`], queues the keys of changed objects,
//! and calls a reconcile function for each — one call per key at a time, `workers` calls at once —
//! retrying failures with jittered exponential backoff and re-queueing everything on a resync period.
//!
//! Shaped like kube-runtime's `Controller`: a reconcile function `async fn(Arc<K>, Arc<Ctx>) ->
//! Result<Action, E>` returns [`Action::requeue`] or [`Action::await_change`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::{convert::Infallible, sync::Arc, time::Duration};
//! use rancher_core::controller::{Action, Controller};
//! use rancher_core::model::Cluster;
//! use rancher_core::store::{Api, MemoryStore};
//! use tokio_util::sync::CancellationToken;
//!
//! async fn reconcile(cluster: Arc<Cluster>, _ctx: Arc<()>) -> Result<Action, Infallible> {
//!     println!("saw {}", cluster.metadata.name);
//!     Ok(Action::await_change())
//! }
//!
//! let clusters: Api<Cluster> = Api::all(Arc::new(MemoryStore::new()));
//! let stop = CancellationToken::new();
//! let running = tokio::spawn(Controller::new(clusters).workers(4).run(reconcile, Arc::new(()), stop.clone()));
//! stop.cancel(); // returns once in-flight reconciles have finished
//! running.await.unwrap();
//! # }
//! ```

mod backoff;
mod queue;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use backoff::Backoff;
use queue::WorkQueue;

use crate::Resource;
use crate::store::{Api, ListOptions, StoreError, TypedEvent, WatchOptions};

/// What to do with an object after a successful reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Action {
    requeue_after: Option<Duration>,
}

impl Action {
    /// Reconcile the object again after `duration`, even if it does not change.
    pub fn requeue(duration: Duration) -> Self {
        Action { requeue_after: Some(duration) }
    }

    /// Reconcile again only when the object changes (or on the resync period).
    pub fn await_change() -> Self {
        Action { requeue_after: None }
    }

    /// The requeue delay, if any.
    pub fn requeue_after(&self) -> Option<Duration> {
        self.requeue_after
    }
}

/// Which object a queued key stands for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    /// The namespace, for namespaced kinds.
    pub namespace: Option<String>,
    /// The name.
    pub name: String,
}

impl ObjectRef {
    fn of<K: Resource>(k: &K) -> Self {
        ObjectRef { namespace: k.meta().namespace.clone(), name: k.meta().name.clone() }
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// A controller for kind `K`; configure it, then [`run`](Self::run) it.
pub struct Controller<K> {
    api: Api<K>,
    workers: usize,
    resync: Option<Duration>,
    backoff: Backoff,
}

impl<K: Resource> Controller<K> {
    /// A controller over the objects `api` covers: one worker, resync every 10 minutes, default backoff.
    pub fn new(api: Api<K>) -> Self {
        Controller { api, workers: 1, resync: Some(Duration::from_secs(600)), backoff: Backoff::default() }
    }

    /// How many reconciles may run at once (for different keys). At least 1.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// Re-queue every object this often (`None`: never).
    pub fn resync(mut self, period: Option<Duration>) -> Self {
        self.resync = period.filter(|p| !p.is_zero());
        self
    }

    /// Retry delays after failed reconciles (and failed watches).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Runs until `stop` is cancelled, then waits for the reconciles in flight and returns.
    ///
    /// Objects that no longer exist when their key comes up are skipped. Errors returned by
    /// `reconcile` are logged and the key is retried with backoff.
    pub async fn run<Ctx, E, F, Fut>(self, reconcile: F, ctx: Arc<Ctx>, stop: CancellationToken)
    where
        Ctx: Send + Sync + 'static,
        E: std::fmt::Display + Send + 'static,
        F: Fn(Arc<K>, Arc<Ctx>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Action, E>> + Send + 'static,
    {
        let shared = Arc::new(Shared {
            api: self.api,
            queue: WorkQueue::new(),
            failures: Mutex::new(HashMap::new()),
            backoff: self.backoff,
            timers: TaskTracker::new(),
            stop: stop.clone(),
        });
        let reconcile = Arc::new(reconcile);
        let tasks = TaskTracker::new();
        tasks.spawn(shared.clone().feed(self.resync));
        for _ in 0..self.workers {
            let (shared, reconcile, ctx) = (shared.clone(), reconcile.clone(), ctx.clone());
            tasks.spawn(async move {
                loop {
                    let key = tokio::select! {
                        biased;
                        _ = shared.stop.cancelled() => break,
                        key = shared.queue.next() => match key { Some(k) => k, None => break },
                    };
                    shared.process(&key, &*reconcile, &ctx).await;
                    shared.queue.done(&key);
                }
            });
        }
        tasks.close();
        stop.cancelled().await;
        shared.queue.shut_down();
        tasks.wait().await;
        shared.timers.close();
        shared.timers.wait().await;
    }
}

struct Shared<K> {
    api: Api<K>,
    queue: WorkQueue<ObjectRef>,
    failures: Mutex<HashMap<ObjectRef, u32>>,
    backoff: Backoff,
    /// Delayed re-queues; they end on `stop`.
    timers: TaskTracker,
    stop: CancellationToken,
}

impl<K: Resource> Shared<K> {
    fn enqueue_after(self: &Arc<Self>, key: ObjectRef, delay: Duration) {
        let this = self.clone();
        self.timers.spawn(async move {
            tokio::select! {
                _ = this.stop.cancelled() => {}
                _ = tokio::time::sleep(delay) => this.queue.add(key),
            }
        });
    }

    fn failed(&self, key: &ObjectRef) -> Duration {
        let mut f = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let n = f.entry(key.clone()).or_insert(0);
        *n = n.saturating_add(1);
        self.backoff.delay(*n)
    }

    fn succeeded(&self, key: &ObjectRef) {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner).remove(key);
    }

    async fn process<Ctx, E, F, Fut>(self: &Arc<Self>, key: &ObjectRef, reconcile: &F, ctx: &Arc<Ctx>)
    where
        E: std::fmt::Display,
        F: Fn(Arc<K>, Arc<Ctx>) -> Fut,
        Fut: Future<Output = Result<Action, E>>,
    {
        let store = self.api.store();
        let object = match store.get(K::PLURAL, key.namespace.as_deref(), &key.name).await {
            Ok(v) => serde_json::from_value::<K>(v).map_err(|e| e.to_string()),
            Err(StoreError::NotFound { .. }) => {
                self.succeeded(key);
                return;
            }
            Err(e) => Err(e.to_string()),
        };
        let result = match object {
            Ok(object) => reconcile(Arc::new(object), ctx.clone()).await.map_err(|e| e.to_string()),
            Err(e) => Err(format!("reading the object: {e}")),
        };
        match result {
            Ok(action) => {
                self.succeeded(key);
                if let Some(d) = action.requeue_after {
                    self.enqueue_after(key.clone(), d);
                }
            }
            Err(error) => {
                let delay = self.failed(key);
                tracing::warn!(kind = K::KIND, object = %key, %error, retry_in = ?delay, "reconcile failed");
                self.enqueue_after(key.clone(), delay);
            }
        }
    }

    /// Lists, then watches from the list's version, queueing every object seen; re-lists on Gone,
    /// re-watches after other errors (with backoff), and re-queues everything each resync period.
    async fn feed(self: Arc<Self>, resync: Option<Duration>) {
        let mut version: Option<String> = None;
        let mut errors = 0u32;
        let mut next_resync = resync.map(|p| tokio::time::Instant::now() + p);
        loop {
            if self.stop.is_cancelled() {
                return;
            }
            if version.is_none() {
                match self.list_all().await {
                    Ok(v) => {
                        version = Some(v);
                        errors = 0;
                    }
                    Err(e) => {
                        errors += 1;
                        let delay = self.backoff.delay(errors);
                        tracing::warn!(kind = K::KIND, error = %e, retry_in = ?delay, "initial list failed");
                        if self.pause(delay).await {
                            return;
                        }
                        continue;
                    }
                }
            }
            let options = WatchOptions { resource_version: version.clone(), ..Default::default() };
            let mut stream = match self.api.watch(options).await {
                Ok(s) => s,
                Err(StoreError::Gone { .. }) => {
                    version = None;
                    continue;
                }
                Err(e) => {
                    errors += 1;
                    let delay = self.backoff.delay(errors);
                    tracing::warn!(kind = K::KIND, error = %e, retry_in = ?delay, "watch start failed");
                    if self.pause(delay).await {
                        return;
                    }
                    continue;
                }
            };
            loop {
                let resync_at = next_resync;
                let event = tokio::select! {
                    biased;
                    _ = self.stop.cancelled() => return,
                    _ = sleep_until_opt(resync_at) => {
                        next_resync = resync.map(|p| tokio::time::Instant::now() + p);
                        if let Err(e) = self.list_all().await {
                            tracing::warn!(kind = K::KIND, error = %e, "resync list failed");
                        }
                        continue;
                    }
                    ev = stream.next() => ev,
                };
                match event {
                    Some(Ok(ev)) => {
                        errors = 0;
                        let (object, queue) = match ev {
                            TypedEvent::Added(k) | TypedEvent::Modified(k) => (k, true),
                            TypedEvent::Deleted(k) => (k, false),
                            TypedEvent::Bookmark(rv) => {
                                version = Some(rv);
                                continue;
                            }
                        };
                        if !object.meta().resource_version.is_empty() {
                            version = Some(object.meta().resource_version.clone());
                        }
                        if queue {
                            self.queue.add(ObjectRef::of(&object));
                        }
                    }
                    Some(Err(StoreError::Gone { .. })) => {
                        tracing::info!(kind = K::KIND, "watch expired; listing again");
                        version = None;
                        break;
                    }
                    Some(Err(e)) => {
                        errors += 1;
                        let delay = self.backoff.delay(errors);
                        tracing::warn!(kind = K::KIND, error = %e, retry_in = ?delay, "watch failed");
                        if self.pause(delay).await {
                            return;
                        }
                        break;
                    }
                    None => break,
                }
            }
        }
    }

    /// Queues every object; returns the list's version.
    async fn list_all(&self) -> Result<String, StoreError> {
        let mut options = ListOptions::default();
        loop {
            let (items, page) = self.api.list_with(options.clone()).await?;
            for k in &items {
                self.queue.add(ObjectRef::of(k));
            }
            match page.continue_token {
                Some(t) => options.continue_token = Some(t),
                None => return Ok(page.resource_version),
            }
        }
    }

    /// Sleeps; true when stopped meanwhile.
    async fn pause(&self, delay: Duration) -> bool {
        tokio::select! {
            _ = self.stop.cancelled() => true,
            _ = tokio::time::sleep(delay) => false,
        }
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
