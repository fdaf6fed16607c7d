//! [`Controller`]: a watcher of the primary kind (keeping only its keys) and watchers of secondary
//! kinds mapped to primary keys feed a work queue; workers reconcile one key at a time each.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::queue::WorkQueue;
use super::watcher::{self, Event};
use super::{Action, Backoff, ObjectRef};
use crate::Resource;
use crate::store::{Api, StoreError};

/// Starts the feed of one secondary kind into the queue.
type SecondaryFeed =
    Box<dyn FnOnce(Arc<WorkQueue<ObjectRef>>, Backoff, CancellationToken) -> BoxFuture<'static, ()> + Send>;

/// A controller for kind `K`; configure it, then [`run`](Self::run) it.
pub struct Controller<K> {
    api: Api<K>,
    workers: usize,
    resync: Option<Duration>,
    backoff: Backoff,
    config: watcher::Config,
    secondaries: Vec<SecondaryFeed>,
}

impl<K: Resource> Controller<K> {
    /// A controller over the objects `api` covers: one worker, resync every 10 minutes, default backoff.
    pub fn new(api: Api<K>) -> Self {
        Controller {
            api,
            workers: 1,
            resync: Some(Duration::from_secs(600)),
            backoff: Backoff::default(),
            config: watcher::Config::default(),
            secondaries: Vec::new(),
        }
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

    /// Which primary objects to watch (label selector, list page size); the controller's
    /// [`backoff`](Self::backoff) replaces the config's.
    pub fn watcher_config(mut self, config: watcher::Config) -> Self {
        self.config = config;
        self
    }

    /// Also reconciles when an object of kind `S` changes, is deleted, or is listed (at start and
    /// after a re-list): `mapper` names the primary objects it concerns.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::{convert::Infallible, sync::Arc};
    /// use rancher_core::controller::{Action, Controller, ObjectRef};
    /// use rancher_core::model::{Cluster, Project};
    /// use rancher_core::store::{Api, MemoryStore, Store};
    /// use tokio_util::sync::CancellationToken;
    ///
    /// let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    /// // A project lives in its cluster's namespace: a change to it reconciles that cluster.
    /// let controller = Controller::new(Api::<Cluster>::all(store.clone()))
    ///     .watches(Api::<Project>::all(store), |p: &Project| {
    ///         p.metadata.namespace.as_deref().map(ObjectRef::new)
    ///     });
    /// async fn reconcile(_: Arc<Cluster>, _: Arc<()>) -> Result<Action, Infallible> {
    ///     Ok(Action::await_change())
    /// }
    /// let stop = CancellationToken::new();
    /// stop.cancel();
    /// controller.run(reconcile, Arc::new(()), stop).await;
    /// # }
    /// ```
    pub fn watches<S, I>(mut self, api: Api<S>, mapper: impl Fn(&S) -> I + Send + Sync + 'static) -> Self
    where
        S: Resource,
        I: IntoIterator<Item = ObjectRef>,
    {
        self.secondaries.push(Box::new(move |queue, backoff, stop| {
            async move {
                let config = watcher::Config::default().backoff(backoff);
                let mut events = std::pin::pin!(super::watcher(api, config));
                loop {
                    let event = tokio::select! {
                        biased;
                        () = stop.cancelled() => return,
                        ev = events.next() => ev,
                    };
                    match event {
                        Some(Ok(ev)) => {
                            if let Some(object) = ev.object() {
                                for key in mapper(object) {
                                    queue.add(key);
                                }
                            }
                        }
                        Some(Err(error)) => {
                            tracing::warn!(kind = S::KIND, %error, "watching a secondary kind")
                        }
                        None => return,
                    }
                }
            }
            .boxed()
        }));
        self
    }

    /// Runs until `stop` is cancelled, then waits for the reconciles in flight and returns.
    ///
    /// Objects that no longer exist when their key comes up are skipped. Errors returned by
    /// `reconcile` are logged and the key is retried with the controller's [`Backoff`] (exponential
    /// per key, reset by a success). For another retry policy, use
    /// [`run_with_error_policy`](Self::run_with_error_policy).
    pub async fn run<Ctx, E, F, Fut>(self, reconcile: F, ctx: Arc<Ctx>, stop: CancellationToken)
    where
        Ctx: Send + Sync + 'static,
        E: std::fmt::Display + Send + 'static,
        F: Fn(Arc<K>, Arc<Ctx>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Action, E>> + Send + 'static,
    {
        self.start(reconcile, None::<fn(Arc<K>, &E, Arc<Ctx>) -> Action>, ctx, stop).await;
    }

    /// [`run`](Self::run), but after a failed reconcile `error_policy(object, &error, ctx)` decides
    /// what happens: [`Action::requeue`] retries after the given delay, [`Action::await_change`] waits
    /// for the object to change (or the resync). Failures to read the object itself are still retried
    /// with the controller's backoff.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::{sync::Arc, time::Duration};
    /// use rancher_core::controller::{Action, Controller};
    /// use rancher_core::model::Cluster;
    /// use rancher_core::store::{Api, MemoryStore};
    /// use tokio_util::sync::CancellationToken;
    ///
    /// async fn reconcile(_: Arc<Cluster>, _: Arc<()>) -> Result<Action, String> {
    ///     Err("the downstream cluster is unreachable".into())
    /// }
    /// fn error_policy(_: Arc<Cluster>, _: &String, _: Arc<()>) -> Action {
    ///     Action::requeue(Duration::from_secs(30))
    /// }
    /// let clusters: Api<Cluster> = Api::all(Arc::new(MemoryStore::new()));
    /// let stop = CancellationToken::new();
    /// stop.cancel();
    /// Controller::new(clusters).run_with_error_policy(reconcile, error_policy, Arc::new(()), stop).await;
    /// # }
    /// ```
    pub async fn run_with_error_policy<Ctx, E, F, Fut, P>(
        self,
        reconcile: F,
        error_policy: P,
        ctx: Arc<Ctx>,
        stop: CancellationToken,
    ) where
        Ctx: Send + Sync + 'static,
        E: std::fmt::Display + Send + 'static,
        F: Fn(Arc<K>, Arc<Ctx>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Action, E>> + Send + 'static,
        P: Fn(Arc<K>, &E, Arc<Ctx>) -> Action + Send + Sync + 'static,
    {
        self.start(reconcile, Some(error_policy), ctx, stop).await;
    }

    async fn start<Ctx, E, F, Fut, P>(
        self,
        reconcile: F,
        error_policy: Option<P>,
        ctx: Arc<Ctx>,
        stop: CancellationToken,
    ) where
        Ctx: Send + Sync + 'static,
        E: std::fmt::Display + Send + 'static,
        F: Fn(Arc<K>, Arc<Ctx>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Action, E>> + Send + 'static,
        P: Fn(Arc<K>, &E, Arc<Ctx>) -> Action + Send + Sync + 'static,
    {
        let shared = Arc::new(Shared {
            api: self.api,
            queue: Arc::new(WorkQueue::new()),
            failures: Mutex::new(HashMap::new()),
            backoff: self.backoff,
            timers: TaskTracker::new(),
            stop: stop.clone(),
        });
        let handlers = Arc::new((reconcile, error_policy));
        let tasks = TaskTracker::new();
        tasks.spawn(shared.clone().feed(self.config.backoff(self.backoff), self.resync));
        for secondary in self.secondaries {
            tasks.spawn(secondary(shared.queue.clone(), self.backoff, stop.clone()));
        }
        for _ in 0..self.workers {
            let (shared, handlers, ctx) = (shared.clone(), handlers.clone(), ctx.clone());
            tasks.spawn(async move {
                loop {
                    let key = tokio::select! {
                        biased;
                        _ = shared.stop.cancelled() => break,
                        key = shared.queue.next() => match key { Some(k) => k, None => break },
                    };
                    shared.process(&key, &handlers.0, handlers.1.as_ref(), &ctx).await;
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
    queue: Arc<WorkQueue<ObjectRef>>,
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

    async fn process<Ctx, E, F, Fut, P>(
        self: &Arc<Self>,
        key: &ObjectRef,
        reconcile: &F,
        error_policy: Option<&P>,
        ctx: &Arc<Ctx>,
    ) where
        E: std::fmt::Display,
        F: Fn(Arc<K>, Arc<Ctx>) -> Fut,
        Fut: Future<Output = Result<Action, E>>,
        P: Fn(Arc<K>, &E, Arc<Ctx>) -> Action,
    {
        // The object as it is now: the queue may hold a key for a while.
        let store = self.api.store();
        let object = match store.get(K::PLURAL, key.namespace.as_deref(), &key.name).await {
            Ok(v) => serde_json::from_value::<K>(v).map(Arc::new).map_err(|e| e.to_string()),
            Err(StoreError::NotFound { .. }) => {
                self.succeeded(key);
                return;
            }
            Err(e) => Err(e.to_string()),
        };
        let object = match object {
            Ok(object) => object,
            Err(error) => {
                let delay = self.failed(key);
                tracing::warn!(kind = K::KIND, object = %key, %error, retry_in = ?delay, "reading the object to reconcile");
                self.enqueue_after(key.clone(), delay);
                return;
            }
        };
        match reconcile(object.clone(), ctx.clone()).await {
            Ok(action) => {
                self.succeeded(key);
                if let Some(d) = action.requeue_after() {
                    self.enqueue_after(key.clone(), d);
                }
            }
            Err(error) => {
                let delay = match error_policy {
                    Some(policy) => policy(object, &error, ctx.clone()).requeue_after(),
                    None => Some(self.failed(key)),
                };
                tracing::warn!(kind = K::KIND, object = %key, %error, retry_in = ?delay, "reconcile failed");
                if let Some(d) = delay {
                    self.enqueue_after(key.clone(), d);
                }
            }
        }
    }

    /// Follows the primary kind through a watcher (re-listing on Gone, backing off on errors),
    /// queueing every object listed or changed, and every known object each resync period.
    ///
    /// Only the keys are kept: a reconcile reads its object from the store when its key comes up,
    /// so a copy of every object here would only cost memory (a Cluster is some 5 KB, and a server
    /// runs several controllers of clusters).
    async fn feed(self: Arc<Self>, config: watcher::Config, resync: Option<Duration>) {
        let mut known: HashSet<ObjectRef> = HashSet::new();
        let mut relist: Option<HashSet<ObjectRef>> = None;
        let mut events = std::pin::pin!(super::watcher(self.api.clone(), config));
        let mut next_resync = resync.map(|p| tokio::time::Instant::now() + p);
        loop {
            let resync_at = next_resync;
            let event = tokio::select! {
                biased;
                _ = self.stop.cancelled() => return,
                _ = sleep_until_opt(resync_at) => {
                    next_resync = resync.map(|p| tokio::time::Instant::now() + p);
                    for key in &known {
                        self.queue.add(key.clone());
                    }
                    continue;
                }
                ev = events.next() => ev,
            };
            match event {
                Some(Ok(ev)) => match ev {
                    Event::Apply(k) => {
                        let key = ObjectRef::from_obj(&k);
                        known.insert(key.clone());
                        self.queue.add(key);
                    }
                    Event::Delete(k) => {
                        known.remove(&ObjectRef::from_obj(&k));
                    }
                    Event::Init => relist = Some(HashSet::new()),
                    Event::InitApply(k) => {
                        let key = ObjectRef::from_obj(&k);
                        relist.get_or_insert_default().insert(key.clone());
                        self.queue.add(key);
                    }
                    Event::InitDone => {
                        known = relist.take().unwrap_or_default();
                        known.shrink_to_fit();
                    }
                },
                Some(Err(error)) => tracing::warn!(kind = K::KIND, %error, "watching"),
                None => return,
            }
        }
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
