//! A store for the tests of what follows one: [`CutWatches`], whose watches can be cut and refused
//! (as while the store is unreachable), and which counts what it was asked. Built with the
//! `testing` feature (and in this crate's own tests); not for production use.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::watch;

use super::{
    ListOptions, MemoryStore, ObjectList, Store, StoreError, StoreLayer, StoreResult, WatchOptions,
    WatchStream,
};

/// A store over another whose watches can be cut: [`cut(true)`](Self::cut) ends every open watch
/// and refuses new ones with a backend error, until [`cut(false)`](Self::cut). Reads and writes
/// pass through. It counts the lists and the watches asked of it, and keeps the version each watch
/// started from.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use rancher_core::store::{Store, WatchOptions};
/// use rancher_core::store::testing::CutWatches;
///
/// let store = CutWatches::over_memory();
/// let as_store: Arc<dyn Store> = store.clone();
/// assert!(as_store.watch("clusters", &WatchOptions::default()).await.is_ok());
/// store.cut(true);
/// assert!(as_store.watch("clusters", &WatchOptions::default()).await.is_err());
/// assert_eq!(store.watches(), 2);
/// # });
/// ```
pub struct CutWatches {
    inner: Arc<dyn Store>,
    cut: watch::Sender<bool>,
    lists: AtomicUsize,
    watches: AtomicUsize,
    watch_versions: Mutex<Vec<Option<String>>>,
}

impl std::fmt::Debug for CutWatches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CutWatches").field("cut", &*self.cut.borrow()).finish_non_exhaustive()
    }
}

impl CutWatches {
    /// Over `inner`, its watches whole.
    pub fn new(inner: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(CutWatches {
            inner,
            cut: watch::channel(false).0,
            lists: AtomicUsize::new(0),
            watches: AtomicUsize::new(0),
            watch_versions: Mutex::default(),
        })
    }

    /// Over a fresh [`MemoryStore`].
    pub fn over_memory() -> Arc<Self> {
        Self::new(Arc::new(MemoryStore::new()))
    }

    /// `true`: every open watch ends and new ones fail; `false`: watches work again.
    pub fn cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }

    /// How many lists were asked of it.
    pub fn lists(&self) -> usize {
        self.lists.load(Ordering::SeqCst)
    }

    /// How many watches were asked of it (refused ones too).
    pub fn watches(&self) -> usize {
        self.watches.load(Ordering::SeqCst)
    }

    /// The version each watch asked of it started from, in order.
    pub fn watch_versions(&self) -> Vec<Option<String>> {
        self.watch_versions.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

#[async_trait]
impl StoreLayer for CutWatches {
    fn inner(&self) -> &dyn Store {
        &*self.inner
    }

    async fn list(&self, resource: &str, opts: &ListOptions) -> StoreResult<ObjectList> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        self.inner.list(resource, opts).await
    }

    async fn watch(&self, resource: &str, opts: &WatchOptions) -> StoreResult<WatchStream> {
        self.watches.fetch_add(1, Ordering::SeqCst);
        self.watch_versions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(opts.resource_version.clone());
        if *self.cut.borrow() {
            return Err(StoreError::backend(std::io::Error::other("the store's watches are cut (test)")));
        }
        let mut cut = self.cut.subscribe();
        let until = async move {
            let _ = cut.wait_for(|c| *c).await;
        };
        Ok(self.inner.watch(resource, opts).await?.take_until(until).boxed())
    }

    /// Its watches can be cut: a write is not promised to be on them.
    fn watch_is_immediate(&self) -> bool {
        false
    }
}
