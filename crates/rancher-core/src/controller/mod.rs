//! The controller runtime, built from kube-runtime's blocks on our [`Api`]:
//!
//! * [`watcher()`] — a stream of [`watcher::Event`]s: list, watch from the list's version, resume
//!   from the last version after a dropped watch, re-list on Gone, back off on errors.
//! * [`reflector()`] and [`reflector::Store`] — a cache of one kind any task can read, fed by a watcher.
//! * [`LeaderElection`] — one of several servers sharing a store runs the work that must run once.
//! * [`Controller`] — watches one kind (and, through [`Controller::watches`], secondary kinds mapped
//!   to it), queues the keys of changed objects and calls a reconcile function for each — one call
//!   per key at a time, `workers` calls at once — retrying failures with jittered exponential
//!   [`Backoff`] (or an error policy) and re-queueing everything on a resync period. A reconcile
//!   function `async fn(Arc<K>, Arc<Ctx>) -> Result<Action, E>` returns [`Action::requeue`] or
//!   [`Action::await_change`].
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
mod leader;
mod queue;
pub mod reflector;
mod runner;
pub mod watcher;

use std::time::Duration;

use futures::{Stream, StreamExt};

pub use backoff::Backoff;
pub use leader::{LeaderElection, LeaseTiming, LeaseTimingError};
pub use runner::Controller;

use crate::Resource;
use crate::store::Api;

/// Follows the objects `api` covers: lists them (in pages of [`watcher::Config::page_size`]), then
/// watches from the list's `resourceVersion`, and never ends.
///
/// * A watch that ends or fails resumes from the last version seen (no event is lost or repeated).
/// * When the store says that version is too old ([`StoreError::Gone`](crate::store::StoreError::Gone):
///   its history was overrun, etcd compacted it, the redb store restarted), the watcher lists again
///   and reports the list as [`Init`](watcher::Event::Init), [`InitApply`](watcher::Event::InitApply)
///   … [`InitDone`](watcher::Event::InitDone): what a consumer derived from objects not in that list
///   is stale (a [`reflector()`] drops them).
/// * Failures are reported as `Err` items ([`watcher::Error`], named for the step that failed) and
///   retried after the config's jittered exponential [`Backoff`]; the first event after a failure
///   resets it.
///
/// Poll it from a task that owns it (and stops polling on shutdown); it holds no task of its own.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use futures::StreamExt;
/// use rancher_core::controller::{watcher, watcher::{Config, Event}};
/// use rancher_core::model::{Cluster, ClusterSpec};
/// use rancher_core::store::{Api, MemoryStore};
///
/// let clusters: Api<Cluster> = Api::all(Arc::new(MemoryStore::new()));
/// clusters.create(&Cluster::new("a", ClusterSpec::default())).await?;
/// let mut events = std::pin::pin!(watcher(clusters.clone(), Config::default().page_size(100)));
/// assert_eq!(events.next().await.unwrap()?, Event::Init);
/// assert!(matches!(events.next().await.unwrap()?, Event::InitApply(c) if c.metadata.name == "a"));
/// assert_eq!(events.next().await.unwrap()?, Event::InitDone);
/// clusters.delete("a").await?;
/// assert!(matches!(events.next().await.unwrap()?, Event::Delete(c) if c.metadata.name == "a"));
/// # Ok(()) }
/// ```
///
/// # Following a kind to poke other work
///
/// The task that polls the watcher owns it; it ends on `stop`. After a re-list, a deletion may have
/// been missed (it happened while the watch was down), so `InitDone` means "anything may have changed".
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::sync::Arc;
/// use futures::StreamExt;
/// use rancher_core::controller::{watcher, watcher::{Config, Event}};
/// use rancher_core::model::Project;
/// use rancher_core::store::{Api, MemoryStore, Store};
/// use tokio_util::sync::CancellationToken;
///
/// fn poke(cluster: &str) {}
/// fn poke_all() {}
///
/// async fn follow_projects(store: Arc<dyn Store>, stop: CancellationToken) {
///     let mut events = std::pin::pin!(watcher(Api::<Project>::all(store), Config::default()));
///     while let Some(Some(event)) = stop.run_until_cancelled(events.next()).await {
///         match event {
///             Ok(Event::Apply(p) | Event::InitApply(p) | Event::Delete(p)) => {
///                 poke(p.metadata.namespace.as_deref().unwrap_or_default())
///             }
///             Ok(Event::InitDone) => poke_all(),
///             Ok(Event::Init) => {}
///             Err(e) => tracing::debug!("watching projects (it retries): {e}"),
///         }
///     }
/// }
/// let stop = CancellationToken::new();
/// let task = tokio::spawn(follow_projects(Arc::new(MemoryStore::new()), stop.clone()));
/// stop.cancel();
/// task.await.unwrap();
/// # }
/// ```
pub fn watcher<K: Resource>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static {
    watcher::stream(api, config)
}

/// Applies every event of `stream` (a [`watcher()`]) to `writer`'s cache and passes it on; readers
/// ([`reflector::Store`]) see each change before the consumer of the returned stream does.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use futures::StreamExt;
/// use rancher_core::controller::{ObjectRef, reflector, watcher};
/// use rancher_core::model::{Cluster, ClusterSpec};
/// use rancher_core::store::{Api, MemoryStore};
/// use tokio_util::sync::CancellationToken;
///
/// let clusters: Api<Cluster> = Api::all(Arc::new(MemoryStore::new()));
/// clusters.create(&Cluster::new("a", ClusterSpec::default())).await?;
/// let (reader, writer) = reflector::store::<Cluster>();
/// let stop = CancellationToken::new();
/// // The task that owns the watch; it ends on `stop`.
/// let feed = reflector(writer, watcher(clusters, watcher::Config::default()));
/// let task = tokio::spawn(stop.clone().run_until_cancelled_owned(feed.for_each(|_| async {})));
/// reader.wait_until_ready().await?;
/// assert!(reader.get(&ObjectRef::new("a")).is_some());
/// stop.cancel();
/// task.await?;
/// # Ok(()) }
/// ```
pub fn reflector<K, S>(mut writer: reflector::Writer<K>, stream: S) -> impl Stream<Item = S::Item> + Send
where
    K: Resource,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
{
    stream.map(move |item| {
        if let Ok(event) = &item {
            writer.apply_watcher_event(event);
        }
        item
    })
}

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
    /// The object `name` (of a cluster-scoped kind; add [`within`](Self::within) for a namespace).
    pub fn new(name: &str) -> Self {
        ObjectRef { namespace: None, name: name.to_owned() }
    }

    /// The same name in `namespace`.
    pub fn within(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.to_owned());
        self
    }

    /// The key of `object`.
    pub fn from_obj<K: Resource>(object: &K) -> Self {
        ObjectRef { namespace: object.meta().namespace.clone(), name: object.meta().name.clone() }
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
