//! The reflector's cache: a [`Store`] any task can read, written by one [`Writer`] from a watcher's
//! events (through [`controller::reflector`](super::reflector)). A re-list replaces the whole content
//! at [`Event::InitDone`], so objects deleted while the watch was down disappear; until then readers
//! keep seeing the previous state.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use tokio::sync::watch;

use super::ObjectRef;
use super::watcher::Event;
use crate::Resource;

/// A read handle on the cache; cheap to clone and share between tasks.
pub struct Store<K> {
    objects: Arc<RwLock<HashMap<ObjectRef, Arc<K>>>>,
    ready: watch::Receiver<bool>,
}

impl<K> Clone for Store<K> {
    fn clone(&self) -> Self {
        Store { objects: self.objects.clone(), ready: self.ready.clone() }
    }
}

impl<K> std::fmt::Debug for Store<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("ready", &*self.ready.borrow()).finish_non_exhaustive()
    }
}

/// The writer was dropped before the cache was ever filled.
#[derive(Debug, thiserror::Error)]
#[error("the reflector's writer was dropped before the first list completed")]
pub struct WriterDropped;

impl<K: Resource> Store<K> {
    /// The object `key`, if the cache has it.
    pub fn get(&self, key: &ObjectRef) -> Option<Arc<K>> {
        self.objects.read().unwrap_or_else(PoisonError::into_inner).get(key).cloned()
    }

    /// Every object in the cache (in no particular order).
    pub fn state(&self) -> Vec<Arc<K>> {
        self.objects.read().unwrap_or_else(PoisonError::into_inner).values().cloned().collect()
    }

    /// The objects for which `f` holds.
    pub fn find(&self, mut f: impl FnMut(&K) -> bool) -> Vec<Arc<K>> {
        let objects = self.objects.read().unwrap_or_else(PoisonError::into_inner);
        objects.values().filter(|k| f(k)).cloned().collect()
    }

    /// How many objects the cache holds.
    pub fn len(&self) -> usize {
        self.objects.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// True when the cache holds no object.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True once the first list has been applied.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits until the first list has been applied.
    ///
    /// # Errors
    /// [`WriterDropped`] when the writer went away before that.
    pub async fn wait_until_ready(&self) -> Result<(), WriterDropped> {
        let mut ready = self.ready.clone();
        ready.wait_for(|r| *r).await.map(|_| ()).map_err(|_| WriterDropped)
    }
}

/// The one writer of a [`Store`]; feed it a watcher's events.
pub struct Writer<K> {
    objects: Arc<RwLock<HashMap<ObjectRef, Arc<K>>>>,
    ready: watch::Sender<bool>,
    /// The re-list being collected, between `Init` and `InitDone`.
    relist: Option<HashMap<ObjectRef, Arc<K>>>,
}

/// An empty cache: the reader and its writer.
pub fn store<K: Resource>() -> (Store<K>, Writer<K>) {
    let objects = Arc::new(RwLock::new(HashMap::new()));
    let (ready, rx) = watch::channel(false);
    (Store { objects: objects.clone(), ready: rx }, Writer { objects, ready, relist: None })
}

impl<K: Resource> Writer<K> {
    /// A reader of this writer's cache.
    pub fn as_reader(&self) -> Store<K> {
        Store { objects: self.objects.clone(), ready: self.ready.subscribe() }
    }

    /// Applies one watcher event.
    pub fn apply_watcher_event(&mut self, event: &Event<K>) {
        match event {
            Event::Apply(k) => {
                self.write().insert(ObjectRef::from_obj(k), Arc::new(k.clone()));
            }
            Event::Delete(k) => {
                self.write().remove(&ObjectRef::from_obj(k));
            }
            Event::Init => self.relist = Some(HashMap::new()),
            Event::InitApply(k) => {
                self.relist.get_or_insert_default().insert(ObjectRef::from_obj(k), Arc::new(k.clone()));
            }
            Event::InitDone => {
                *self.write() = self.relist.take().unwrap_or_default();
                self.ready.send_replace(true);
            }
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<ObjectRef, Arc<K>>> {
        self.objects.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Cluster, ClusterSpec};

    fn cluster(name: &str, description: &str) -> Cluster {
        Cluster::new(name, ClusterSpec { description: description.into(), ..Default::default() })
    }

    fn names(store: &Store<Cluster>) -> Vec<String> {
        let mut names: Vec<String> = store.state().iter().map(|c| c.metadata.name.clone()).collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn a_relist_replaces_the_content_at_init_done_and_drops_what_vanished() {
        let (reader, mut writer) = store::<Cluster>();
        assert!(!reader.is_ready());
        for ev in [Event::Init, Event::InitApply(cluster("a", "v0")), Event::InitApply(cluster("b", "v0"))] {
            writer.apply_watcher_event(&ev);
        }
        assert!(!reader.is_ready() && reader.is_empty(), "nothing is visible before InitDone");
        writer.apply_watcher_event(&Event::InitDone);
        reader.wait_until_ready().await.unwrap();
        assert_eq!(names(&reader), ["a", "b"]);

        writer.apply_watcher_event(&Event::Apply(cluster("a", "v1")));
        writer.apply_watcher_event(&Event::Apply(cluster("c", "v0")));
        writer.apply_watcher_event(&Event::Delete(cluster("b", "v0")));
        assert_eq!(names(&reader), ["a", "c"]);
        assert_eq!(reader.get(&ObjectRef::new("a")).unwrap().spec.description, "v1");

        // A re-list after Gone: "c" was deleted while the watch was down, "d" created.
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitApply(cluster("a", "v2")));
        assert_eq!(names(&reader), ["a", "c"], "the old state stays readable during a re-list");
        writer.apply_watcher_event(&Event::InitApply(cluster("d", "v0")));
        writer.apply_watcher_event(&Event::InitDone);
        assert_eq!(names(&reader), ["a", "d"]);
        assert_eq!(reader.get(&ObjectRef::new("a")).unwrap().spec.description, "v2");
        assert!(reader.get(&ObjectRef::new("c")).is_none());
    }

    #[tokio::test]
    async fn waiting_readers_learn_when_the_writer_goes_away_unfilled() {
        let (reader, writer) = store::<Cluster>();
        drop(writer);
        assert!(reader.wait_until_ready().await.is_err());
    }
}
