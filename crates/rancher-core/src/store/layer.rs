//! [`StoreLayer`]: a store that wraps another and changes only some of what it does — times each
//! call, records writes, fails on demand in a test — written as the methods it changes; every other
//! call goes to the store inside unchanged, and the layer is a [`Store`].

use async_trait::async_trait;
use serde_json::Value;

use super::{Deleted, ListOptions, ObjectList, Preconditions, Store, StoreResult, WatchOptions, WatchStream};

/// A [`Store`] made of another, [`inner`](Self::inner), and the methods it overrides; each default
/// passes the call through. Every `StoreLayer` is a `Store`, used as one (`Arc<dyn Store>`): with
/// both traits in scope, a method called on the layer itself is ambiguous (`Store::get(&layer, …)`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use rancher_core::store::{MemoryStore, Store, StoreLayer, StoreResult};
///
/// /// Counts the objects created through it.
/// struct Counting {
///     inner: MemoryStore,
///     created: AtomicUsize,
/// }
///
/// #[async_trait::async_trait]
/// impl StoreLayer for Counting {
///     fn inner(&self) -> &dyn Store {
///         &self.inner
///     }
///     async fn create(&self, resource: &str, object: serde_json::Value) -> StoreResult<serde_json::Value> {
///         self.created.fetch_add(1, Ordering::Relaxed);
///         self.inner.create(resource, object).await
///     }
/// }
///
/// let counting = Arc::new(Counting { inner: MemoryStore::new(), created: AtomicUsize::new(0) });
/// let store: Arc<dyn Store> = counting.clone();
/// store.create("clusters", serde_json::json!({"metadata": {"name": "demo"}})).await?;
/// assert_eq!(store.get("clusters", None, "demo").await?["metadata"]["name"], "demo");
/// assert_eq!(counting.created.load(Ordering::Relaxed), 1);
/// # Ok(()) }
/// ```
#[async_trait]
pub trait StoreLayer: Send + Sync + 'static {
    /// The store the calls this layer does not change go to.
    fn inner(&self) -> &dyn Store;

    /// [`Store::create`].
    async fn create(&self, resource: &str, object: Value) -> StoreResult<Value> {
        self.inner().create(resource, object).await
    }
    /// [`Store::get`].
    async fn get(&self, resource: &str, namespace: Option<&str>, name: &str) -> StoreResult<Value> {
        self.inner().get(resource, namespace, name).await
    }
    /// [`Store::update`].
    async fn update(&self, resource: &str, object: Value) -> StoreResult<Value> {
        self.inner().update(resource, object).await
    }
    /// [`Store::delete`].
    async fn delete(
        &self,
        resource: &str,
        namespace: Option<&str>,
        name: &str,
        preconditions: Preconditions,
    ) -> StoreResult<Deleted> {
        self.inner().delete(resource, namespace, name, preconditions).await
    }
    /// [`Store::list`].
    async fn list(&self, resource: &str, options: &ListOptions) -> StoreResult<ObjectList> {
        self.inner().list(resource, options).await
    }
    /// [`Store::watch`].
    async fn watch(&self, resource: &str, options: &WatchOptions) -> StoreResult<WatchStream> {
        self.inner().watch(resource, options).await
    }
    /// [`Store::watch_is_immediate`].
    fn watch_is_immediate(&self) -> bool {
        self.inner().watch_is_immediate()
    }
}

#[async_trait]
impl<L: StoreLayer> Store for L {
    async fn create(&self, resource: &str, object: Value) -> StoreResult<Value> {
        StoreLayer::create(self, resource, object).await
    }
    async fn get(&self, resource: &str, namespace: Option<&str>, name: &str) -> StoreResult<Value> {
        StoreLayer::get(self, resource, namespace, name).await
    }
    async fn update(&self, resource: &str, object: Value) -> StoreResult<Value> {
        StoreLayer::update(self, resource, object).await
    }
    async fn delete(
        &self,
        resource: &str,
        namespace: Option<&str>,
        name: &str,
        preconditions: Preconditions,
    ) -> StoreResult<Deleted> {
        StoreLayer::delete(self, resource, namespace, name, preconditions).await
    }
    async fn list(&self, resource: &str, options: &ListOptions) -> StoreResult<ObjectList> {
        StoreLayer::list(self, resource, options).await
    }
    async fn watch(&self, resource: &str, options: &WatchOptions) -> StoreResult<WatchStream> {
        StoreLayer::watch(self, resource, options).await
    }
    fn watch_is_immediate(&self) -> bool {
        StoreLayer::watch_is_immediate(self)
    }
}
