//! The Kubernetes semantics of the in-process backends, written once. [`LocalStore`] serialises writes,
//! applies the object rules of [`super::object`], keeps the revision counter and feeds the watch hub
//! (through the group-committing [`Writer`]); a [`Backend`] only keeps bytes (a map in memory, or a redb
//! file).

use std::sync::{Arc, MutexGuard};

use serde_json::Value;

use super::hub::{Change, ChangeKind, WatchFilter, WatchHub, watch_stream};
use super::object::{self, ObjectKey, UpdatePlan};
use super::writer::{Ticket, Writer, WriterState};
use super::{
    Deleted, ListOptions, ObjectList, Preconditions, StoreError, StoreResult, WatchEvent, WatchOptions,
    WatchStream, paging,
};

/// Where the local store keeps objects. Keys are opaque strings from [`storage_key`]; ordering of keys
/// is byte order.
pub(crate) trait Backend: Send + Sync + 'static {
    /// True when scans and commits do blocking I/O and must run on the blocking thread pool. A
    /// [`get`](Self::get) (one key) always runs on the caller's thread: a read of one object from
    /// the backend's cache costs a few microseconds, the blocking pool's hand-off and wake-up several
    /// times that (measured: a fifth of the server's CPU under proxy load went to the pool's futexes
    /// when the proxy's per-request token and user reads took it).
    const BLOCKING: bool;
    /// The last committed revision.
    fn revision(&self) -> StoreResult<u64>;
    /// Reads one object.
    fn get(&self, key: &str) -> StoreResult<Option<Value>>;
    /// The first `want` objects accepted by `filter` among keys starting with `prefix` and greater than
    /// `after`, in key order, each with its key; and the revision of the state they were read from.
    fn scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        want: usize,
        filter: &mut dyn FnMut(&Value) -> bool,
    ) -> StoreResult<(Vec<(String, Value)>, u64)>;
    /// Atomically (and durably, for persistent backends) applies `writes` in order — a value under a
    /// key, or `None` to remove it — and records `revision` as the last revision.
    fn commit(&self, revision: u64, writes: &[(&str, Option<&Value>)]) -> StoreResult<()>;
}

/// `resource NUL namespace NUL name`: NUL sorts before every name character, so keys order by
/// namespace, then name.
pub(crate) fn storage_key(resource: &str, namespace: Option<&str>, name: &str) -> String {
    format!("{resource}\0{}\0{name}", namespace.unwrap_or(""))
}

fn scan_prefix(resource: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("{resource}\0{ns}\0"),
        None => format!("{resource}\0"),
    }
}

/// Tuning of a local store.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LocalOptions {
    /// Changes kept for watch replay.
    pub(crate) history: usize,
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions { history: super::hub::DEFAULT_HISTORY }
    }
}

/// What a write returns once checked: its result, and the ticket to wait on when it staged a change.
struct Checked<T> {
    value: T,
    ticket: Option<Ticket>,
}

impl<T> Checked<T> {
    fn written(value: T, ticket: Ticket) -> Self {
        Checked { value, ticket: Some(ticket) }
    }

    /// A write that changes nothing (an unchanged update, a repeated delete of a terminating object).
    fn unwritten(value: T) -> Self {
        Checked { value, ticket: None }
    }

    fn map<U>(self, f: impl FnOnce(T) -> U) -> Checked<U> {
        Checked { value: f(self.value), ticket: self.ticket }
    }
}

/// A store with Kubernetes semantics over a [`Backend`].
pub(crate) struct LocalStore<B> {
    inner: Arc<Inner<B>>,
}

impl<B> Clone for LocalStore<B> {
    fn clone(&self) -> Self {
        LocalStore { inner: self.inner.clone() }
    }
}

struct Inner<B> {
    backend: B,
    /// Held while a write is checked; commits in batches.
    writer: Writer,
    hub: Arc<WatchHub>,
}

impl<B: Backend> LocalStore<B> {
    pub(crate) fn new(backend: B, options: LocalOptions) -> StoreResult<Self> {
        let revision = backend.revision()?;
        Ok(LocalStore {
            inner: Arc::new(Inner {
                backend,
                writer: Writer::new(revision),
                hub: Arc::new(WatchHub::new(revision, options.history)),
            }),
        })
    }

    pub(crate) fn backend(&self) -> &B {
        &self.inner.backend
    }

    /// Checks and stages a write on the caller's thread (a few microseconds under the writer lock,
    /// like a [`get`](Backend::get)), has the queue committed — on the blocking pool for a blocking
    /// backend, by one thread at a time — and waits for the write to be durable holding no thread. In
    /// a connection storm, writers that each took a blocking thread to wait for their batch's fsync
    /// grew the pool to a hundred threads, each with its own allocator heap.
    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(&Inner<B>) -> StoreResult<Checked<T>>,
    {
        let checked = f(&self.inner)?;
        if B::BLOCKING && self.inner.writer.claim() {
            let inner = self.inner.clone();
            // Detached: once staged, a write is committed even if its caller stops waiting.
            drop(tokio::task::spawn_blocking(move || {
                let acks = inner.writer.drive(&inner.backend, &inner.hub);
                drop(inner);
                acks.send();
            }));
        }
        if let Some(ticket) = checked.ticket {
            ticket.durable().await?;
        }
        Ok(checked.value)
    }

    async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner<B>) -> StoreResult<T> + Send + 'static,
    {
        if B::BLOCKING {
            let inner = self.inner.clone();
            tokio::task::spawn_blocking(move || f(&inner)).await.map_err(StoreError::backend)?
        } else {
            f(&self.inner)
        }
    }

    pub(crate) async fn create(&self, resource: &str, object: Value) -> StoreResult<Value> {
        let resource = resource.to_owned();
        self.write(move |s| s.create(&resource, object)).await
    }

    pub(crate) async fn get(
        &self,
        resource: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> StoreResult<Value> {
        object::check_resource(resource)?;
        object::check_namespace(namespace)?;
        object::check_name(name)?;
        let key = storage_key(resource, namespace, name);
        self.inner
            .backend
            .get(&key)?
            .ok_or_else(|| StoreError::NotFound { resource: resource.to_owned(), name: name.to_owned() })
    }

    pub(crate) async fn update(&self, resource: &str, object: Value) -> StoreResult<Value> {
        let resource = resource.to_owned();
        self.write(move |s| s.update(&resource, object)).await
    }

    pub(crate) async fn delete(
        &self,
        resource: &str,
        namespace: Option<&str>,
        name: &str,
        preconditions: Preconditions,
    ) -> StoreResult<Deleted> {
        object::check_resource(resource)?;
        object::check_namespace(namespace)?;
        object::check_name(name)?;
        let key = ObjectKey { namespace: namespace.map(str::to_owned), name: name.to_owned() };
        let resource = resource.to_owned();
        self.write(move |s| s.delete(&resource, &key, &preconditions)).await
    }

    pub(crate) async fn list(&self, resource: &str, options: &ListOptions) -> StoreResult<ObjectList> {
        let (resource, options) = (resource.to_owned(), options.clone());
        self.run(move |s| s.list(&resource, &options)).await
    }

    pub(crate) async fn watch(&self, resource: &str, options: &WatchOptions) -> StoreResult<WatchStream> {
        object::check_resource(resource)?;
        object::check_namespace(options.namespace.as_deref())?;
        let from = match options.resource_version.as_deref() {
            None => None,
            Some(rv) => object::parse_version(rv)?.filter(|&v| v != 0),
        };
        let filter = WatchFilter {
            resource: resource.to_owned(),
            namespace: options.namespace.clone(),
            selector: options.label_selector.clone(),
        };
        let f = filter.clone();
        let (initial, replay, rx, start) = self
            .run(move |s| {
                let (initial, start) = match from {
                    Some(v) => (Vec::new(), v),
                    None => {
                        // Changes are published after they are durable, so every change after the
                        // snapshot's revision is in the hub's history or still to come.
                        let prefix = scan_prefix(&f.resource, f.namespace.as_deref());
                        let mut keep =
                            |v: &Value| object::matches(v, f.namespace.as_deref(), f.selector.as_ref());
                        let (items, at) = s.backend.scan(&prefix, None, usize::MAX, &mut keep)?;
                        let (replay, rx) = s.hub.subscribe(at)?;
                        let initial = items.into_iter().map(|(_, v)| WatchEvent::Added(v)).collect();
                        return Ok((initial, replay, rx, at));
                    }
                };
                let (replay, rx) = s.hub.subscribe(start)?;
                Ok((initial, replay, rx, start))
            })
            .await?;
        Ok(watch_stream(self.inner.hub.clone(), filter, initial, replay, rx, start))
    }
}

impl<B: Backend> Inner<B> {
    fn writer(&self) -> MutexGuard<'_, WriterState> {
        self.writer.lock()
    }

    /// Stages one checked write at the next revision. A non-blocking backend commits it at once (under
    /// the lock); on a blocking one, [`LocalStore::write`] has it committed.
    fn commit(
        &self,
        mut w: MutexGuard<'_, WriterState>,
        resource: &str,
        key: &str,
        kind: ChangeKind,
        mut object: Value,
        previous: Option<Value>,
    ) -> StoreResult<Checked<Value>> {
        let next = w.next_revision();
        object::set_revision(&mut object, next);
        let change = Change::new(next, kind, resource, object.clone(), previous.as_ref());
        let ticket = w.stage(key, change);
        if !B::BLOCKING {
            self.writer.commit_queued(w, &self.backend, &self.hub).send();
        }
        Ok(Checked::written(object, ticket))
    }

    fn create(&self, resource: &str, mut object: Value) -> StoreResult<Checked<Value>> {
        object::check_resource(resource)?;
        let w = self.writer();
        let key = object::prepare_create(&mut object, &mut |k| {
            Ok(w.read(&self.backend, &storage_key(resource, k.namespace.as_deref(), &k.name))?.is_some())
        })?;
        let skey = storage_key(resource, key.namespace.as_deref(), &key.name);
        if w.read(&self.backend, &skey)?.is_some() {
            return Err(StoreError::AlreadyExists { resource: resource.to_owned(), name: key.name });
        }
        object::stamp_created(&mut object, w.next_revision())?;
        self.commit(w, resource, &skey, ChangeKind::Added, object, None)
    }

    fn update(&self, resource: &str, object: Value) -> StoreResult<Checked<Value>> {
        object::check_resource(resource)?;
        let key = object::key_of(&object)?;
        let skey = storage_key(resource, key.namespace.as_deref(), &key.name);
        let w = self.writer();
        let old = w
            .read(&self.backend, &skey)?
            .ok_or_else(|| StoreError::NotFound { resource: resource.to_owned(), name: key.name.clone() })?;
        match object::plan_update(resource, &old, object)? {
            UpdatePlan::Unchanged => Ok(Checked::unwritten(old)),
            UpdatePlan::Write(new) => self.commit(w, resource, &skey, ChangeKind::Modified, new, Some(old)),
            UpdatePlan::Delete(last) => self.commit(w, resource, &skey, ChangeKind::Deleted, last, Some(old)),
        }
    }

    fn delete(
        &self,
        resource: &str,
        key: &ObjectKey,
        preconditions: &Preconditions,
    ) -> StoreResult<Checked<Deleted>> {
        let skey = storage_key(resource, key.namespace.as_deref(), &key.name);
        let w = self.writer();
        let old = w
            .read(&self.backend, &skey)?
            .ok_or_else(|| StoreError::NotFound { resource: resource.to_owned(), name: key.name.clone() })?;
        object::check_preconditions(resource, &key.name, &old, preconditions)?;
        if !object::finalizers_of(&old).is_empty() {
            if object::is_terminating(&old) {
                return Ok(Checked::unwritten(Deleted::Terminating(old)));
            }
            let mut new = old.clone();
            object::mark_terminating(&mut new);
            let checked = self.commit(w, resource, &skey, ChangeKind::Modified, new, Some(old))?;
            return Ok(checked.map(Deleted::Terminating));
        }
        let checked = self.commit(w, resource, &skey, ChangeKind::Deleted, old.clone(), Some(old))?;
        Ok(checked.map(Deleted::Gone))
    }

    fn list(&self, resource: &str, options: &ListOptions) -> StoreResult<ObjectList> {
        object::check_resource(resource)?;
        let namespace = options.namespace.as_deref();
        object::check_namespace(namespace)?;
        let prefix = scan_prefix(resource, namespace);
        let (after, first_revision) = match options.continue_token.as_deref() {
            None | Some("") => (None, None),
            Some(token) => {
                let c = paging::decode(token, resource, namespace)?;
                if !c.after.starts_with(&prefix) {
                    return Err(StoreError::Invalid(format!("invalid continue token {token:?}")));
                }
                (Some(c.after), Some(c.revision))
            }
        };
        let limit = options.limit.filter(|&l| l > 0);
        let want = limit.map_or(usize::MAX, |l| l.saturating_add(1));
        let mut keep = |v: &Value| object::matches(v, namespace, options.label_selector.as_ref());
        let (mut items, revision) = self.backend.scan(&prefix, after.as_deref(), want, &mut keep)?;
        let mut continue_token = None;
        if let Some(l) = limit
            && items.len() > l
        {
            items.truncate(l);
            let last = items.last().map(|(k, _)| k.as_str()).unwrap_or_default();
            continue_token =
                Some(paging::encode(resource, namespace, last, first_revision.unwrap_or(revision)));
        }
        Ok(ObjectList {
            resource_version: first_revision.unwrap_or(revision).to_string(),
            items: items.into_iter().map(|(_, v)| v).collect(),
            continue_token,
        })
    }
}

/// Implements [`Store`](super::Store) for a newtype around a [`LocalStore`].
macro_rules! delegate_store {
    ($ty:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::Store for $ty {
            async fn create(
                &self,
                resource: &str,
                object: serde_json::Value,
            ) -> $crate::store::StoreResult<serde_json::Value> {
                self.local.create(resource, object).await
            }
            async fn get(
                &self,
                resource: &str,
                namespace: Option<&str>,
                name: &str,
            ) -> $crate::store::StoreResult<serde_json::Value> {
                self.local.get(resource, namespace, name).await
            }
            async fn update(
                &self,
                resource: &str,
                object: serde_json::Value,
            ) -> $crate::store::StoreResult<serde_json::Value> {
                self.local.update(resource, object).await
            }
            async fn delete(
                &self,
                resource: &str,
                namespace: Option<&str>,
                name: &str,
                preconditions: $crate::store::Preconditions,
            ) -> $crate::store::StoreResult<$crate::store::Deleted> {
                self.local.delete(resource, namespace, name, preconditions).await
            }
            async fn list(
                &self,
                resource: &str,
                options: &$crate::store::ListOptions,
            ) -> $crate::store::StoreResult<$crate::store::ObjectList> {
                self.local.list(resource, options).await
            }
            async fn watch(
                &self,
                resource: &str,
                options: &$crate::store::WatchOptions,
            ) -> $crate::store::StoreResult<$crate::store::WatchStream> {
                self.local.watch(resource, options).await
            }

            fn watch_is_immediate(&self) -> bool {
                true
            }
        }
    };
}
pub(crate) use delegate_store;
