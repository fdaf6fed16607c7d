//! The reflector's cache: a [`Store`] any task can read, written by one [`Writer`] from a watcher's
//! events (through [`controller::reflector`](super::reflector)). A re-list replaces the whole content
//! at [`Event::InitDone`], so objects deleted while the watch was down disappear; until then readers
//! keep seeing the previous state.
//!
//! A cache made with [`indexed_store`] also keeps its objects by one key of theirs (the user a
//! binding names, the cluster it is in), so that a read of one key's objects costs what it returns,
//! not a scan of the whole cache ([`Store::indexed`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};

use tokio::sync::watch;

use super::ObjectRef;
use super::watcher::Event;
use crate::Resource;

/// A read handle on the cache; cheap to clone and share between tasks.
pub struct Store<K> {
    content: Arc<RwLock<Content<K>>>,
    ready: watch::Receiver<bool>,
}

/// An index's key of an object: `None` leaves the object out of the index.
pub type IndexKey<K> = fn(&K) -> Option<String>;

/// The objects, and the index when the cache has one.
struct Content<K> {
    objects: HashMap<ObjectRef, Arc<K>>,
    /// Key → the objects with that key.
    index: HashMap<String, HashSet<ObjectRef>>,
    key_of: Option<IndexKey<K>>,
}

impl<K> Content<K> {
    fn insert(&mut self, at: ObjectRef, object: Arc<K>) {
        if let Some(key_of) = self.key_of {
            let key = key_of(&object);
            if let Some(old) = self.objects.get(&at)
                && let Some(old_key) = key_of(old)
                && key.as_ref() != Some(&old_key)
            {
                self.unindex(&old_key, &at);
            }
            if let Some(key) = key {
                self.index.entry(key).or_default().insert(at.clone());
            }
        }
        self.objects.insert(at, object);
    }

    fn remove(&mut self, at: &ObjectRef) {
        if let Some(old) = self.objects.remove(at)
            && let Some(key) = self.key_of.and_then(|key_of| key_of(&old))
        {
            self.unindex(&key, at);
        }
    }

    fn unindex(&mut self, key: &str, at: &ObjectRef) {
        if let Some(refs) = self.index.get_mut(key) {
            refs.remove(at);
            if refs.is_empty() {
                self.index.remove(key);
            }
        }
    }

    /// Replaces everything with `objects`, indexed afresh.
    fn replace(&mut self, objects: HashMap<ObjectRef, Arc<K>>) {
        self.index.clear();
        if let Some(key_of) = self.key_of {
            for (at, object) in &objects {
                if let Some(key) = key_of(object) {
                    self.index.entry(key).or_default().insert(at.clone());
                }
            }
        }
        self.objects = objects;
    }
}

impl<K> Clone for Store<K> {
    fn clone(&self) -> Self {
        Store { content: self.content.clone(), ready: self.ready.clone() }
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
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Content<K>> {
        self.content.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The object `key`, if the cache has it.
    pub fn get(&self, key: &ObjectRef) -> Option<Arc<K>> {
        self.read().objects.get(key).cloned()
    }

    /// Every object in the cache (in no particular order).
    pub fn state(&self) -> Vec<Arc<K>> {
        self.read().objects.values().cloned().collect()
    }

    /// The objects for which `f` holds.
    pub fn find(&self, mut f: impl FnMut(&K) -> bool) -> Vec<Arc<K>> {
        self.read().objects.values().filter(|k| f(k)).cloned().collect()
    }

    /// The objects whose index key is `key`, for which `f` holds (in no particular order). A cache
    /// made without an index has no keys: nothing.
    pub fn indexed(&self, key: &str, mut f: impl FnMut(&K) -> bool) -> Vec<Arc<K>> {
        let content = self.read();
        let Some(refs) = content.index.get(key) else { return Vec::new() };
        refs.iter().filter_map(|at| content.objects.get(at)).filter(|k| f(k)).cloned().collect()
    }

    /// How many objects the cache holds.
    pub fn len(&self) -> usize {
        self.read().objects.len()
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
    content: Arc<RwLock<Content<K>>>,
    ready: watch::Sender<bool>,
    /// The re-list being collected, between `Init` and `InitDone`.
    relist: Option<HashMap<ObjectRef, Arc<K>>>,
}

/// An empty cache: the reader and its writer.
pub fn store<K: Resource>() -> (Store<K>, Writer<K>) {
    with_index(None)
}

/// An empty cache that keeps its objects by `key_of` too ([`Store::indexed`]): the reader and its
/// writer.
pub fn indexed_store<K: Resource>(key_of: IndexKey<K>) -> (Store<K>, Writer<K>) {
    with_index(Some(key_of))
}

fn with_index<K: Resource>(key_of: Option<IndexKey<K>>) -> (Store<K>, Writer<K>) {
    let content = Arc::new(RwLock::new(Content { objects: HashMap::new(), index: HashMap::new(), key_of }));
    let (ready, rx) = watch::channel(false);
    (Store { content: content.clone(), ready: rx }, Writer { content, ready, relist: None })
}

impl<K: Resource> Writer<K> {
    /// A reader of this writer's cache.
    pub fn as_reader(&self) -> Store<K> {
        Store { content: self.content.clone(), ready: self.ready.subscribe() }
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
                let relisted = self.relist.take().unwrap_or_default();
                self.write().replace(relisted);
                self.ready.send_replace(true);
            }
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Content<K>> {
        self.content.write().unwrap_or_else(PoisonError::into_inner)
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
    async fn the_index_follows_applies_deletes_key_changes_and_relists() {
        // Indexed by description; an empty one leaves the cluster out.
        let (reader, mut writer) =
            indexed_store::<Cluster>(|c| Some(c.spec.description.clone()).filter(|d| !d.is_empty()));
        let by = |key: &str| {
            let mut names: Vec<String> =
                reader.indexed(key, |_| true).iter().map(|c| c.metadata.name.clone()).collect();
            names.sort();
            names
        };
        for ev in [Event::Init, Event::InitApply(cluster("a", "x")), Event::InitApply(cluster("b", "x"))] {
            writer.apply_watcher_event(&ev);
        }
        assert!(by("x").is_empty(), "nothing is indexed before InitDone");
        writer.apply_watcher_event(&Event::InitDone);
        assert_eq!(by("x"), ["a", "b"]);
        assert_eq!(reader.indexed("x", |c| c.metadata.name == "b").len(), 1, "the filter applies");

        writer.apply_watcher_event(&Event::Apply(cluster("a", "y")));
        assert_eq!((by("x"), by("y")), (vec!["b".to_owned()], vec!["a".to_owned()]), "a moved keys");
        writer.apply_watcher_event(&Event::Apply(cluster("c", "")));
        writer.apply_watcher_event(&Event::Delete(cluster("b", "x")));
        assert!(by("x").is_empty() && by("").is_empty());
        assert_eq!(names(&reader), ["a", "c"], "unindexed objects are still held");

        // A re-list: "a" changed key and "d" appeared while the watch was down.
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitApply(cluster("a", "x")));
        writer.apply_watcher_event(&Event::InitApply(cluster("d", "y")));
        writer.apply_watcher_event(&Event::InitDone);
        assert_eq!((by("x"), by("y")), (vec!["a".to_owned()], vec!["d".to_owned()]));

        let (plain, mut w) = store::<Cluster>();
        w.apply_watcher_event(&Event::Apply(cluster("a", "x")));
        assert!(plain.indexed("x", |_| true).is_empty(), "a cache without an index has no keys");
    }

    #[tokio::test]
    async fn waiting_readers_learn_when_the_writer_goes_away_unfilled() {
        let (reader, writer) = store::<Cluster>();
        drop(writer);
        assert!(reader.wait_until_ready().await.is_err());
    }
}
