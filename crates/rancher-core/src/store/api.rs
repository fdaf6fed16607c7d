//! [`Api`]: typed access to one kind in a [`Store`].

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::Value;

use super::{Deleted, ListOptions, Preconditions, Store, StoreError, StoreResult, WatchEvent, WatchOptions};
use crate::Resource;

/// Typed access to the objects of kind `K`, optionally within one namespace.
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use rancher_core::{model::{Cluster, ClusterSpec}, store::{Api, MemoryStore}};
/// let store = Arc::new(MemoryStore::new());
/// let clusters: Api<Cluster> = Api::all(store);
/// let created = clusters.create(&Cluster::new("demo", ClusterSpec::default())).await?;
/// assert_eq!(created.metadata.generation, 1);
/// # Ok(()) }
/// ```
pub struct Api<K> {
    store: Arc<dyn Store>,
    namespace: Option<String>,
    _kind: std::marker::PhantomData<fn() -> K>,
}

impl<K> Clone for Api<K> {
    fn clone(&self) -> Self {
        Api { store: self.store.clone(), namespace: self.namespace.clone(), _kind: std::marker::PhantomData }
    }
}

/// A watch event with the object decoded.
#[derive(Clone, Debug, PartialEq)]
pub enum TypedEvent<K> {
    /// Created, or present when the watch began.
    Added(K),
    /// Changed.
    Modified(K),
    /// Gone; its last state.
    Deleted(K),
    /// Nothing changed up to this version.
    Bookmark(String),
}

impl<K: Resource> Api<K> {
    /// All objects of the kind (every namespace, for namespaced kinds).
    pub fn all(store: Arc<dyn Store>) -> Self {
        Api { store, namespace: None, _kind: std::marker::PhantomData }
    }

    /// The objects in one namespace.
    pub fn namespaced(store: Arc<dyn Store>, namespace: &str) -> Self {
        Api { store, namespace: Some(namespace.to_owned()), _kind: std::marker::PhantomData }
    }

    /// The store behind this Api.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn encode(&self, object: &K) -> StoreResult<Value> {
        let mut v = serde_json::to_value(object).map_err(|e| StoreError::Invalid(e.to_string()))?;
        if let (Some(ns), Some(meta)) = (&self.namespace, v.get_mut("metadata"))
            && meta.get("namespace").is_none_or(Value::is_null)
        {
            meta["namespace"] = Value::String(ns.clone());
        }
        if let Some(obj) = v.as_object_mut() {
            obj.insert("apiVersion".into(), K::API_VERSION.into());
            obj.insert("kind".into(), K::KIND.into());
        }
        Ok(v)
    }

    fn decode(v: Value) -> StoreResult<K> {
        serde_json::from_value(v)
            .map_err(|e| StoreError::Invalid(format!("stored {} does not decode: {e}", K::KIND)))
    }

    fn ns<'a>(&'a self, object_ns: Option<&'a str>) -> Option<&'a str> {
        object_ns.or(self.namespace.as_deref())
    }

    /// Creates the object.
    pub async fn create(&self, object: &K) -> StoreResult<K> {
        Self::decode(self.store.create(K::PLURAL, self.encode(object)?).await?)
    }

    /// Reads the object called `name`.
    pub async fn get(&self, name: &str) -> StoreResult<K> {
        Self::decode(self.store.get(K::PLURAL, self.ns(None), name).await?)
    }

    /// Reads the object called `name`, or `None` when it does not exist.
    pub async fn get_opt(&self, name: &str) -> StoreResult<Option<K>> {
        match self.get(name).await {
            Ok(k) => Ok(Some(k)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Replaces the object (compare-and-swap on its `resourceVersion`).
    pub async fn update(&self, object: &K) -> StoreResult<K> {
        Self::decode(self.store.update(K::PLURAL, self.encode(object)?).await?)
    }

    /// Deletes the object called `name` (or marks it Terminating while finalizers remain).
    pub async fn delete(&self, name: &str) -> StoreResult<Deleted> {
        self.store.delete(K::PLURAL, self.ns(None), name, Preconditions::default()).await
    }

    /// Lists every object (all pages).
    pub async fn list(&self) -> StoreResult<Vec<K>> {
        let mut options = ListOptions { namespace: self.namespace.clone(), ..Default::default() };
        let mut out = Vec::new();
        loop {
            let page = self.store.list(K::PLURAL, &options).await?;
            for v in page.items {
                out.push(Self::decode(v)?);
            }
            match page.continue_token {
                Some(t) => options.continue_token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// Lists with options (one page).
    pub async fn list_with(&self, mut options: ListOptions) -> StoreResult<(Vec<K>, super::ObjectList)> {
        if options.namespace.is_none() {
            options.namespace = self.namespace.clone();
        }
        let mut page = self.store.list(K::PLURAL, &options).await?;
        let items =
            std::mem::take(&mut page.items).into_iter().map(Self::decode).collect::<StoreResult<_>>()?;
        Ok((items, page))
    }

    /// Watches the kind; see [`Store::watch`].
    pub async fn watch(
        &self,
        mut options: WatchOptions,
    ) -> StoreResult<BoxStream<'static, StoreResult<TypedEvent<K>>>> {
        if options.namespace.is_none() {
            options.namespace = self.namespace.clone();
        }
        let stream = self.store.watch(K::PLURAL, &options).await?;
        Ok(stream
            .map(|ev| {
                Ok(match ev? {
                    WatchEvent::Added(v) => TypedEvent::Added(Self::decode(v)?),
                    WatchEvent::Modified(v) => TypedEvent::Modified(Self::decode(v)?),
                    WatchEvent::Deleted(v) => TypedEvent::Deleted(Self::decode(v)?),
                    WatchEvent::Bookmark(rv) => TypedEvent::Bookmark(rv),
                })
            })
            .boxed())
    }
}
