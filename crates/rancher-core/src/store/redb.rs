//! [`RedbStore`]: the embedded default backend, one redb file.
//!
//! Objects are stored as JSON bytes in one table keyed by resource, namespace and name; the revision
//! counter lives in a second table and is written in the same transaction as every object, with
//! [`Durability::Immediate`], so an acknowledged write survives a crash or power loss.
//!
//! Watch history is kept in memory only: after a restart a watch may start from the current
//! revision onward, and an older version is [`Gone`](super::StoreError::Gone), as after a compaction
//! in etcd. Clients re-list, as Kubernetes clients do.

use std::ops::Bound;
use std::path::{Path, PathBuf};

use redb::{Database, Durability, ReadableDatabase, TableDefinition};
use serde_json::Value;

use super::local::{Backend, LocalOptions, LocalStore, delegate_store};
use super::{StoreError, StoreResult};

const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REVISION: &str = "revision";

/// redb's page cache (reads and the write buffer). redb's own default, 1 GiB, keeps the whole file
/// resident as it grows — some 8 KiB per cluster of a fleet's server, found by heaptrack — while
/// the pages a server reads again and again (users, tokens, the clusters it proxies to) are few;
/// the rest is read through the kernel's page cache when a list needs it.
const CACHE_BYTES: usize = 32 << 20;

/// A [`Store`](super::Store) in one redb file, with the full Kubernetes semantics (see the
/// [module docs](super)). Cheap to clone: clones share the open database.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use rancher_core::store::{RedbStore, Store};
/// let dir = tempfile::tempdir()?;
/// let store = RedbStore::open(dir.path().join("rancher.redb"))?;
/// store.create("clusters", serde_json::json!({"metadata": {"name": "demo"}})).await?;
/// drop(store);
/// let reopened = RedbStore::open(dir.path().join("rancher.redb"))?;
/// assert_eq!(reopened.get("clusters", None, "demo").await?["metadata"]["name"], "demo");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedbStore {
    local: LocalStore<RedbBytes>,
}

impl RedbStore {
    /// Opens the store file at `path`, creating it when missing.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the file cannot be opened or created, is not a redb file, or is
    /// held by another process.
    pub fn open(path: impl AsRef<Path>) -> StoreResult<Self> {
        Self::open_with_history(path, super::hub::DEFAULT_HISTORY)
    }

    /// Like [`open`](Self::open), keeping `changes` changes in memory for watch replay.
    ///
    /// # Errors
    /// As for [`open`](Self::open).
    pub fn open_with_history(path: impl AsRef<Path>, changes: usize) -> StoreResult<Self> {
        let path = path.as_ref().to_owned();
        // A file its last process did not close (killed, or the store never dropped) is repaired
        // as it opens: a full read of it, which takes a while on a large store.
        let repairing = path.display().to_string();
        let said = std::sync::atomic::AtomicBool::new(false);
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .set_repair_callback(move |_| {
                if !said.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    tracing::warn!(path = %repairing, "the store was not closed cleanly: repairing it");
                }
            })
            .create(&path)
            .map_err(StoreError::backend)?;
        let mut txn = db.begin_write().map_err(StoreError::backend)?;
        txn.set_durability(Durability::Immediate).map_err(StoreError::backend)?;
        {
            txn.open_table(OBJECTS).map_err(StoreError::backend)?;
            txn.open_table(META).map_err(StoreError::backend)?;
        }
        txn.commit().map_err(StoreError::backend)?;
        let local = LocalStore::new(RedbBytes { db, path }, LocalOptions { history: changes })?;
        Ok(RedbStore { local })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.local.backend().path
    }
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").field("path", &self.local.backend().path).finish()
    }
}

delegate_store!(RedbStore);

pub(crate) struct RedbBytes {
    db: Database,
    path: PathBuf,
}

fn decode(bytes: &[u8]) -> StoreResult<Value> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Backend(format!("corrupt record: {e}").into()))
}

impl Backend for RedbBytes {
    const BLOCKING: bool = true;

    fn revision(&self) -> StoreResult<u64> {
        let txn = self.db.begin_read().map_err(StoreError::backend)?;
        let meta = txn.open_table(META).map_err(StoreError::backend)?;
        Ok(meta.get(REVISION).map_err(StoreError::backend)?.map_or(0, |g| g.value()))
    }

    fn get(&self, key: &str) -> StoreResult<Option<Value>> {
        let txn = self.db.begin_read().map_err(StoreError::backend)?;
        let table = txn.open_table(OBJECTS).map_err(StoreError::backend)?;
        match table.get(key).map_err(StoreError::backend)? {
            Some(g) => Ok(Some(decode(g.value())?)),
            None => Ok(None),
        }
    }

    fn scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        want: usize,
        filter: &mut dyn FnMut(&Value) -> bool,
    ) -> StoreResult<(Vec<(String, Value)>, u64)> {
        let txn = self.db.begin_read().map_err(StoreError::backend)?;
        let table = txn.open_table(OBJECTS).map_err(StoreError::backend)?;
        let meta = txn.open_table(META).map_err(StoreError::backend)?;
        let revision = meta.get(REVISION).map_err(StoreError::backend)?.map_or(0, |g| g.value());
        let start = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Included(prefix),
        };
        let mut out = Vec::new();
        for entry in table.range::<&str>((start, Bound::Unbounded)).map_err(StoreError::backend)? {
            if out.len() >= want {
                break;
            }
            let (k, v) = entry.map_err(StoreError::backend)?;
            let key = k.value();
            if !key.starts_with(prefix) {
                break;
            }
            let value = decode(v.value())?;
            if filter(&value) {
                out.push((key.to_owned(), value));
            }
        }
        Ok((out, revision))
    }

    /// One transaction, one fsync, for a whole batch of writes (see `writer.rs`).
    fn commit(&self, revision: u64, writes: &[(&str, Option<&Value>)]) -> StoreResult<()> {
        let mut txn = self.db.begin_write().map_err(StoreError::backend)?;
        txn.set_durability(Durability::Immediate).map_err(StoreError::backend)?;
        {
            let mut objects = txn.open_table(OBJECTS).map_err(StoreError::backend)?;
            for (key, value) in writes {
                match value {
                    Some(v) => {
                        let bytes = serde_json::to_vec(v).map_err(StoreError::backend)?;
                        objects.insert(*key, bytes.as_slice()).map_err(StoreError::backend)?;
                    }
                    None => {
                        objects.remove(*key).map_err(StoreError::backend)?;
                    }
                }
            }
            let mut meta = txn.open_table(META).map_err(StoreError::backend)?;
            meta.insert(REVISION, revision).map_err(StoreError::backend)?;
        }
        txn.commit().map_err(StoreError::backend)
    }
}
