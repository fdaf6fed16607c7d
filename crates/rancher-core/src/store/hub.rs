//! The watch hub of the local backends: a bounded history of changes for replay, and a broadcast of
//! new changes to every open watch. A watch that falls further behind than the broadcast buffer is
//! ended with [`StoreError::Gone`]; writers never wait for watchers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use serde_json::Value;
use tokio::sync::broadcast;

use super::object::matches;
use super::{LabelSelector, StoreError, StoreResult, WatchEvent, WatchStream};

/// What a write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

/// One committed write, as watchers see it.
#[derive(Debug)]
pub(crate) struct Change {
    /// The store revision of the write.
    pub(crate) revision: u64,
    pub(crate) kind: ChangeKind,
    pub(crate) resource: String,
    /// The new state (for a delete: the final state, carrying the deletion's version).
    pub(crate) object: Value,
    /// The state before, for modifications and deletions — only what watch filters look at (its
    /// namespace and labels), to tell a watch that an object left its selection.
    previous: Option<Value>,
}

impl Change {
    /// The change of `resource` at `revision` to `object`, from `previous`. The history holds
    /// thousands of changes: of `previous` it keeps only what watch filters read, not a second
    /// whole object per change.
    pub(crate) fn new(
        revision: u64,
        kind: ChangeKind,
        resource: &str,
        object: Value,
        previous: Option<&Value>,
    ) -> Self {
        let previous = previous.map(|p| {
            let mut meta = serde_json::Map::new();
            for field in ["namespace", "labels"] {
                if let Some(v) = p.get("metadata").and_then(|m| m.get(field)) {
                    meta.insert(field.to_owned(), v.clone());
                }
            }
            serde_json::json!({ "metadata": meta })
        });
        Change { revision, kind, resource: resource.to_owned(), object, previous }
    }
}

struct History {
    changes: VecDeque<Arc<Change>>,
    limit: usize,
    /// Replay is complete for every version `>= horizon`.
    horizon: u64,
    /// `None` once the hub is closed: its feed broke, every watch ends with Gone.
    sender: Option<broadcast::Sender<Arc<Change>>>,
}

/// History plus broadcast; one per store (per resource for etcd, fed by one shared etcd watch).
pub(crate) struct WatchHub {
    history: Mutex<History>,
}

/// Default number of changes kept for replay (a watch that starts or resumes from an older version
/// gets Gone and lists again). Each change holds its object as a JSON value (and the labels of the
/// state before), some 10 KB for a cluster: 10,000 changes of whole objects before and after held
/// 200 MB of a server with a thousand clusters (`benches/`'s `fleet_bench`). Live watchers do not need
/// it: they are fed as changes happen.
pub(crate) const DEFAULT_HISTORY: usize = 2_048;
/// How far (in changes) a live watcher may fall behind before it is ended with Gone.
pub(crate) const WATCH_BUFFER: usize = 8_192;

impl WatchHub {
    /// A hub whose history starts at `revision` (older versions are Gone).
    pub(crate) fn new(revision: u64, history_limit: usize) -> Self {
        let (sender, _) = broadcast::channel(WATCH_BUFFER);
        WatchHub {
            history: Mutex::new(History {
                changes: VecDeque::new(),
                limit: history_limit.max(1),
                horizon: revision,
                sender: Some(sender),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a committed change and hands it to every open watch.
    pub(crate) fn publish(&self, change: Change) {
        let change = Arc::new(change);
        let mut h = self.lock();
        h.changes.push_back(change.clone());
        while h.changes.len() > h.limit {
            if let Some(old) = h.changes.pop_front() {
                h.horizon = old.revision;
            }
        }
        if let Some(sender) = &h.sender {
            // No receivers is fine.
            let _ = sender.send(change);
        }
    }

    /// Ends every open watch (after the changes already sent) with Gone, and refuses new ones: the
    /// hub's feed can no longer guarantee that no change is missed.
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    pub(crate) fn close(&self) {
        self.lock().sender = None;
    }

    /// True once [`close`](Self::close)d.
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().sender.is_none()
    }

    /// The oldest version a watch can start from.
    pub(crate) fn horizon(&self) -> u64 {
        self.lock().horizon
    }

    /// The changes after `from` (all resources) and a receiver for later ones, with no gap between.
    pub(crate) fn subscribe(&self, from: u64) -> StoreResult<Subscription> {
        let h = self.lock();
        if from < h.horizon {
            return Err(StoreError::Gone { requested: from.to_string(), oldest: h.horizon.to_string() });
        }
        let Some(sender) = &h.sender else {
            return Err(StoreError::Gone { requested: from.to_string(), oldest: "(closed)".into() });
        };
        let replay = h.changes.iter().filter(|c| c.revision > from).cloned().collect();
        Ok((replay, sender.subscribe()))
    }
}

/// The changes to replay and the receiver of later ones.
pub(crate) type Subscription = (Vec<Arc<Change>>, broadcast::Receiver<Arc<Change>>);

/// The filter of one watch.
#[derive(Clone)]
pub(crate) struct WatchFilter {
    pub(crate) resource: String,
    pub(crate) namespace: Option<String>,
    pub(crate) selector: Option<LabelSelector>,
}

impl WatchFilter {
    fn covers(&self, object: &Value) -> bool {
        matches(object, self.namespace.as_deref(), self.selector.as_ref())
    }

    /// What this watch should see of a change: objects moving into the selection are Added, moving
    /// out are Deleted, as the Kubernetes watch cache reports them.
    pub(crate) fn event(&self, change: &Change) -> Option<WatchEvent> {
        if change.resource != self.resource {
            return None;
        }
        let now = self.covers(&change.object);
        let before = change.previous.as_ref().is_some_and(|p| self.covers(p));
        match change.kind {
            ChangeKind::Added => now.then(|| WatchEvent::Added(change.object.clone())),
            ChangeKind::Deleted => (now || before).then(|| WatchEvent::Deleted(change.object.clone())),
            ChangeKind::Modified => match (before, now) {
                (true, true) => Some(WatchEvent::Modified(change.object.clone())),
                (false, true) => Some(WatchEvent::Added(change.object.clone())),
                (true, false) => Some(WatchEvent::Deleted(change.object.clone())),
                (false, false) => None,
            },
        }
    }
}

struct Follow {
    filter: WatchFilter,
    rx: broadcast::Receiver<Arc<Change>>,
    last: u64,
    hub: Arc<WatchHub>,
    done: bool,
}

/// A watch stream: `initial` events, then the replayed changes, then live ones.
pub(crate) fn watch_stream(
    hub: Arc<WatchHub>,
    filter: WatchFilter,
    initial: Vec<WatchEvent>,
    replay: Vec<Arc<Change>>,
    rx: broadcast::Receiver<Arc<Change>>,
    from: u64,
) -> WatchStream {
    let last = replay.last().map_or(from, |c| c.revision);
    let replayed: Vec<StoreResult<WatchEvent>> =
        initial.into_iter().chain(replay.iter().filter_map(|c| filter.event(c))).map(Ok).collect();
    let follow = Follow { filter, rx, last, hub, done: false };
    let live = futures::stream::unfold(follow, |mut st| async move {
        loop {
            if st.done {
                return None;
            }
            match st.rx.recv().await {
                Ok(change) => {
                    if change.revision <= st.last {
                        continue;
                    }
                    st.last = change.revision;
                    if let Some(ev) = st.filter.event(&change) {
                        return Some((Ok(ev), st));
                    }
                }
                // Lagged: the watcher fell behind the buffer. Closed: the hub's feed broke.
                Err(broadcast::error::RecvError::Lagged(_) | broadcast::error::RecvError::Closed) => {
                    st.done = true;
                    let err = StoreError::Gone {
                        requested: st.last.to_string(),
                        oldest: st.hub.horizon().to_string(),
                    };
                    return Some((Err(err), st));
                }
            }
        }
    });
    futures::stream::iter(replayed).chain(live).boxed()
}
