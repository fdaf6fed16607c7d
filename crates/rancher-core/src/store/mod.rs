//! The [`Store`]: where the management model lives, with Kubernetes semantics.
//!
//! Objects are JSON documents keyed by `(resource, namespace, name)`. Every write gets a new
//! `resourceVersion` from one counter per store, so a list's version can be used to watch from exactly
//! that point. The semantics are those of the Kubernetes API server:
//!
//! * **create** fails with [`StoreError::AlreadyExists`]; it sets `uid`, `resourceVersion`,
//!   `generation = 1` and `creationTimestamp`, and completes `generateName`.
//! * **update** is a compare-and-swap on `metadata.resourceVersion` ([`StoreError::Conflict`] on a stale
//!   one; an empty version updates unconditionally). `uid` and `creationTimestamp` cannot change;
//!   `generation` grows when `spec` changes. Removing the last finalizer of an object that is
//!   Terminating deletes it.
//! * **delete** removes the object, or — while finalizers remain — sets `deletionTimestamp` and leaves it
//!   Terminating.
//! * **list** filters by namespace and label selector, pages with `limit` / `continue`.
//! * **watch** replays every change after a `resourceVersion`, then follows; a version older than the
//!   store keeps history for is [`StoreError::Gone`] (HTTP 410), and the client must list again.
//!
//! Backends: [`MemoryStore`] (tests), [`RedbStore`] (the embedded default, one file), and
//! `EtcdStore` behind the `etcd` feature (several servers share one etcd).

mod api;
mod error;
#[cfg(feature = "etcd")]
mod etcd;
#[cfg(feature = "etcd")]
mod etcd_watch;
mod hub;
mod layer;
mod local;
mod memory;
mod object;
mod paging;
mod redb;
mod selector;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod writer;

pub use api::{Api, TypedEvent};
pub use error::{StoreError, StoreResult};
#[cfg(feature = "etcd")]
pub use etcd::EtcdStore;
pub use layer::StoreLayer;
pub use memory::MemoryStore;
pub use redb::RedbStore;
pub use selector::{LabelSelector, Requirement};

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde_json::Value;

/// What a watch reports.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchEvent {
    /// The object was created (or existed when the watch began without a version).
    Added(Value),
    /// The object changed.
    Modified(Value),
    /// The object is gone; the value is its last state, with the version of the deletion.
    Deleted(Value),
    /// Nothing changed up to this `resourceVersion` (sent periodically so clients can resume cheaply).
    Bookmark(String),
}

/// A stream of watch events; an `Err` ends the stream (e.g. [`StoreError::Gone`]).
pub type WatchStream = BoxStream<'static, StoreResult<WatchEvent>>;

/// Which objects a list or watch covers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ListOptions {
    /// Only this namespace; `None` for all namespaces (or a cluster-scoped kind).
    pub namespace: Option<String>,
    /// Only objects whose labels match.
    pub label_selector: Option<LabelSelector>,
    /// At most this many items; the rest is behind `continue`.
    pub limit: Option<usize>,
    /// The token from a previous page's [`ObjectList::continue_token`].
    pub continue_token: Option<String>,
}

/// Where a watch starts and what it covers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WatchOptions {
    /// Only this namespace.
    pub namespace: Option<String>,
    /// Only objects whose labels match.
    pub label_selector: Option<LabelSelector>,
    /// Replay changes after this version. `None`: send every current object as `Added`, then follow.
    pub resource_version: Option<String>,
}

/// One page of a list.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObjectList {
    /// The store's version at the time of the list (of the first page, when paging).
    pub resource_version: String,
    /// The objects, ordered by namespace then name.
    pub items: Vec<Value>,
    /// Set when more items remain: pass it as [`ListOptions::continue_token`].
    pub continue_token: Option<String>,
}

/// What a delete did.
#[derive(Clone, Debug, PartialEq)]
pub enum Deleted {
    /// The object is gone; its last state.
    Gone(Value),
    /// Finalizers remain: the object is Terminating with `deletionTimestamp` set.
    Terminating(Value),
}

impl Deleted {
    /// The object's last (or current) state.
    pub fn into_value(self) -> Value {
        match self {
            Deleted::Gone(v) | Deleted::Terminating(v) => v,
        }
    }
}

/// Preconditions for a delete.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Preconditions {
    /// Delete only if the object still has this uid.
    pub uid: Option<String>,
    /// Delete only if the object is still at this version.
    pub resource_version: Option<String>,
}

/// A store of Kubernetes-style objects. See the [module docs](self) for the semantics every backend
/// must keep; `tests/it/conformance/mod.rs` checks them against each backend.
///
/// `resource` is the lower-case plural (`clusters`). `namespace` is `None` for cluster-scoped kinds.
/// Objects passed in must carry `metadata.name` (or `metadata.generateName` on create).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores a new object and returns it as stored.
    async fn create(&self, resource: &str, object: Value) -> StoreResult<Value>;
    /// Reads one object.
    async fn get(&self, resource: &str, namespace: Option<&str>, name: &str) -> StoreResult<Value>;
    /// Replaces an object, compare-and-swap on `metadata.resourceVersion`.
    async fn update(&self, resource: &str, object: Value) -> StoreResult<Value>;
    /// Deletes an object, or marks it Terminating while finalizers remain.
    async fn delete(
        &self,
        resource: &str,
        namespace: Option<&str>,
        name: &str,
        preconditions: Preconditions,
    ) -> StoreResult<Deleted>;
    /// Lists objects.
    async fn list(&self, resource: &str, options: &ListOptions) -> StoreResult<ObjectList>;
    /// Watches objects from a version.
    async fn watch(&self, resource: &str, options: &WatchOptions) -> StoreResult<WatchStream>;
    /// Whether every write this store has acknowledged is already ready on its open watches (the
    /// local backends hand a change to the watches before the write returns). A cache fed by a
    /// watch can then be as current as a read, by taking what its watch has ready before
    /// answering. `false` (the default, and etcd's): changes reach watches some time after.
    fn watch_is_immediate(&self) -> bool {
        false
    }
}
