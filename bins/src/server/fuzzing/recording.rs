//! A [`Store`] that remembers every write, so a fuzz harness can check what one request changed and
//! put the store back as it was before the next.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rancher_core::store::{Deleted, MemoryStore, Preconditions, Store, StoreLayer, StoreResult};
use serde_json::Value;

/// One write, with what it replaced.
#[derive(Clone, Debug)]
pub(crate) enum Change {
    Created { resource: String, object: Value },
    Updated { resource: String, old: Value, new: Value },
    Deleted { resource: String, old: Value },
}

impl Change {
    pub(crate) fn resource(&self) -> &str {
        match self {
            Change::Created { resource, .. }
            | Change::Updated { resource, .. }
            | Change::Deleted { resource, .. } => resource,
        }
    }
}

/// A [`MemoryStore`] whose writes are logged until [`Recording::reset`] undoes them.
#[derive(Default)]
pub(crate) struct Recording {
    inner: MemoryStore,
    log: Mutex<Vec<Change>>,
}

fn key(object: &Value) -> (Option<String>, String) {
    let meta = &object["metadata"];
    let namespace = meta["namespace"].as_str().filter(|n| !n.is_empty()).map(str::to_owned);
    (namespace, meta["name"].as_str().unwrap_or_default().to_owned())
}

impl Recording {
    fn push(&self, change: Change) {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).push(change);
    }

    /// Forgets the writes so far: they stay.
    pub(crate) fn reset_log(&self) {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The writes since the last reset.
    pub(crate) fn changes(&self) -> Vec<Change> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Undoes every write since the last reset, newest first.
    pub(crate) async fn reset(self: &Arc<Self>) {
        let changes = std::mem::take(&mut *self.log.lock().unwrap_or_else(|p| p.into_inner()));
        for change in changes.into_iter().rev() {
            match change {
                Change::Created { resource, object } => {
                    let (ns, name) = key(&object);
                    let gone =
                        self.inner.delete(&resource, ns.as_deref(), &name, Preconditions::default()).await;
                    if let Ok(Deleted::Terminating(mut left)) = gone {
                        // Finalizers hold it: removing them completes the delete.
                        left["metadata"]["finalizers"] = Value::Array(Vec::new());
                        let _ = self.inner.update(&resource, left).await;
                    }
                }
                Change::Updated { resource, mut old, .. } => {
                    let (ns, name) = key(&old);
                    if let Ok(now) = self.inner.get(&resource, ns.as_deref(), &name).await {
                        old["metadata"]["resourceVersion"] = now["metadata"]["resourceVersion"].clone();
                        let _ = self.inner.update(&resource, old).await;
                    }
                }
                Change::Deleted { resource, mut old } => {
                    let (ns, name) = key(&old);
                    if self.inner.get(&resource, ns.as_deref(), &name).await.is_err() {
                        old["metadata"]["resourceVersion"] = Value::Null;
                        let _ = self.inner.create(&resource, old).await;
                    }
                }
            }
        }
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

#[async_trait]
impl StoreLayer for Recording {
    fn inner(&self) -> &dyn Store {
        &self.inner
    }

    async fn create(&self, resource: &str, object: Value) -> StoreResult<Value> {
        let created = self.inner.create(resource, object).await?;
        self.push(Change::Created { resource: resource.to_owned(), object: created.clone() });
        Ok(created)
    }

    async fn update(&self, resource: &str, object: Value) -> StoreResult<Value> {
        let (ns, name) = key(&object);
        let old = self.inner.get(resource, ns.as_deref(), &name).await.ok();
        let new = self.inner.update(resource, object).await?;
        if let Some(old) = old {
            self.push(Change::Updated { resource: resource.to_owned(), old, new: new.clone() });
        }
        Ok(new)
    }

    async fn delete(
        &self,
        resource: &str,
        namespace: Option<&str>,
        name: &str,
        preconditions: Preconditions,
    ) -> StoreResult<Deleted> {
        let old = self.inner.get(resource, namespace, name).await.ok();
        let deleted = self.inner.delete(resource, namespace, name, preconditions).await?;
        if let Some(old) = old {
            self.push(Change::Deleted { resource: resource.to_owned(), old });
        }
        Ok(deleted)
    }
}
