//! [`MemoryStore`]: every object in a map in memory. For tests and short-lived servers.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{PoisonError, RwLock};

use serde_json::Value;

use super::StoreResult;
use super::local::{Backend, LocalOptions, LocalStore, delegate_store};

/// A [`Store`](super::Store) in memory, with the full Kubernetes semantics (see the
/// [module docs](super)). Cheap to clone: clones share the same objects.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use rancher_core::store::{MemoryStore, Store};
/// let store = MemoryStore::new();
/// let created = store.create("clusters", serde_json::json!({"metadata": {"name": "demo"}})).await?;
/// assert_eq!(created["metadata"]["resourceVersion"], "1");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    local: LocalStore<MemoryBytes>,
}

impl MemoryStore {
    /// An empty store keeping the default watch history (2,048 changes).
    pub fn new() -> Self {
        Self::with_history(super::hub::DEFAULT_HISTORY)
    }

    /// An empty store keeping `changes` changes for watch replay; a watch from an older version is
    /// [`Gone`](super::StoreError::Gone).
    pub fn with_history(changes: usize) -> Self {
        let local = LocalStore::new(MemoryBytes::default(), LocalOptions { history: changes });
        match local {
            Ok(local) => MemoryStore { local },
            // The memory backend cannot fail to report its revision.
            Err(_) => unreachable!("memory backend revision is infallible"),
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.local.backend().state.read().unwrap_or_else(PoisonError::into_inner).1.len();
        f.debug_struct("MemoryStore").field("objects", &n).finish()
    }
}

delegate_store!(MemoryStore);

#[derive(Default)]
pub(crate) struct MemoryBytes {
    state: RwLock<(u64, BTreeMap<String, Value>)>,
}

impl Backend for MemoryBytes {
    const BLOCKING: bool = false;

    fn revision(&self) -> StoreResult<u64> {
        Ok(self.state.read().unwrap_or_else(PoisonError::into_inner).0)
    }

    fn get(&self, key: &str) -> StoreResult<Option<Value>> {
        Ok(self.state.read().unwrap_or_else(PoisonError::into_inner).1.get(key).cloned())
    }

    fn scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        want: usize,
        filter: &mut dyn FnMut(&Value) -> bool,
    ) -> StoreResult<(Vec<(String, Value)>, u64)> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let start = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Included(prefix),
        };
        let items = state
            .1
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(_, v)| filter(v))
            .take(want)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok((items, state.0))
    }

    fn commit(&self, revision: u64, writes: &[(&str, Option<&Value>)]) -> StoreResult<()> {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state.0 = revision;
        for (key, value) in writes {
            match value {
                Some(v) => state.1.insert((*key).to_owned(), (*v).clone()),
                None => state.1.remove(*key),
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use serde_json::json;

    use super::*;
    use crate::store::{Store, StoreError, WatchOptions};

    #[tokio::test]
    async fn a_watcher_that_falls_behind_is_ended_with_gone_and_writers_never_wait() {
        let store = MemoryStore::new();
        let mut w = store.watch("clusters", &WatchOptions::default()).await.unwrap();
        let mut obj =
            store.create("clusters", json!({"metadata": {"name": "a"}, "spec": {"n": 0}})).await.unwrap();
        for n in 1..=(super::super::hub::WATCH_BUFFER as i64 + 10) {
            obj["spec"]["n"] = json!(n);
            obj = store.update("clusters", obj).await.unwrap();
        }
        let mut saw_gone = false;
        while let Some(ev) = w.next().await {
            if let Err(e) = ev {
                assert!(matches!(e, StoreError::Gone { .. }), "{e:?}");
                saw_gone = true;
            }
        }
        assert!(saw_gone, "the lagging watch must end with Gone");
    }
}
