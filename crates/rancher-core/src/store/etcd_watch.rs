//! Watches of [`EtcdStore`](super::EtcdStore): one shared etcd watch per resource (a [`Feed`], started
//! on the first watch of that resource) feeds an in-process [`WatchHub`], which fans changes out to
//! every watcher and keeps a bounded history for replay. A version older than that history gets a
//! dedicated etcd watch from that revision ([`dedicated`]), which is Gone when etcd compacted it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, Event, EventType, GetOptions, WatchOptions as EtcdWatch};
use tokio::task::JoinHandle;

use super::etcd::{MAX_MESSAGE, decode, etcd_error, header_revision, kv_client, prefix, prefix_end};
use super::hub::{Change, ChangeKind, DEFAULT_HISTORY, WatchFilter, WatchHub};
use super::object;
use super::{StoreError, StoreResult, WatchEvent, WatchStream};

/// Attempts to re-open a feed's etcd watch after the stream broke (etcd member lost, ...).
const REOPEN_ATTEMPTS: u32 = 30;

/// The change an etcd event makes to `resource`; `None` for a delete whose previous value etcd no
/// longer has (nothing a watcher could be told).
fn to_change(resource: &str, ev: &Event) -> Option<StoreResult<Change>> {
    let kv = ev.kv()?;
    let revision = kv.mod_revision() as u64;
    let change = match ev.event_type() {
        EventType::Put => {
            let object = match decode(kv) {
                Ok(v) => v,
                Err(e) => return Some(Err(e)),
            };
            let kind = if kv.create_revision() == kv.mod_revision() {
                ChangeKind::Added
            } else {
                ChangeKind::Modified
            };
            let previous = ev.prev_kv().and_then(|p| decode(p).ok());
            Change::new(revision, kind, resource, object, previous.as_ref())
        }
        EventType::Delete => {
            let mut object = ev.prev_kv().and_then(|p| decode(p).ok())?;
            object::set_revision(&mut object, revision);
            let previous = object.clone();
            Change::new(revision, ChangeKind::Deleted, resource, object, Some(&previous))
        }
    };
    Some(Ok(change))
}

/// Opens an etcd watch of every key under `prefix` from `start` (inclusive), with previous values.
async fn open(client: &Client, prefix: &str, start: u64) -> StoreResult<etcd_client::WatchStream> {
    let options =
        EtcdWatch::new().with_range(prefix_end(prefix)).with_start_revision(start as i64).with_prev_key();
    let mut watches = client.watch_client().max_decoding_message_size(MAX_MESSAGE);
    watches.watch(prefix, Some(options)).await.map_err(etcd_error)
}

/// A watch of its own in etcd from `from + 1`: the path for versions older than the shared history.
pub(super) async fn dedicated(client: &Client, filter: WatchFilter, from: u64) -> StoreResult<WatchStream> {
    use futures::StreamExt;
    let prefix = prefix(&filter.resource, filter.namespace.as_deref());
    let stream = open(client, &prefix, from + 1).await?;
    let state = (stream, filter, from, VecDeque::<StoreResult<WatchEvent>>::new(), false);
    let live = futures::stream::unfold(state, |(mut stream, filter, last, mut pending, done)| async move {
        loop {
            if let Some(ev) = pending.pop_front() {
                let end = ev.is_err();
                return Some((ev, (stream, filter, last, pending, done || end)));
            }
            if done {
                return None;
            }
            let resp = match stream.message().await {
                Ok(Some(r)) => r,
                Ok(None) => return None,
                Err(e) => return Some((Err(etcd_error(e)), (stream, filter, last, pending, true))),
            };
            if resp.compact_revision() > 0 || resp.canceled() {
                let gone = StoreError::Gone {
                    requested: last.to_string(),
                    oldest: resp.compact_revision().to_string(),
                };
                pending.push_back(Err(gone));
                continue;
            }
            for ev in resp.events() {
                match to_change(&filter.resource, ev) {
                    Some(Ok(change)) => pending.extend(filter.event(&change).map(Ok)),
                    Some(Err(e)) => {
                        pending.push_back(Err(e));
                        break;
                    }
                    None => {}
                }
            }
        }
    });
    Ok(live.boxed())
}

/// One resource's shared etcd watch and the hub it feeds.
pub(super) struct Feed {
    pub(super) hub: Arc<WatchHub>,
    task: JoinHandle<()>,
}

/// The feeds of one store, by resource. Dropping the last clone of the store stops them.
#[derive(Default)]
pub(super) struct Feeds {
    feeds: tokio::sync::Mutex<HashMap<String, Arc<Feed>>>,
}

impl Drop for Feeds {
    fn drop(&mut self) {
        for feed in self.feeds.get_mut().values() {
            feed.task.abort();
        }
    }
}

impl Feeds {
    /// The running feed of `resource`, started now when there is none (or the last one broke).
    pub(super) async fn get(&self, client: &Client, resource: &str) -> StoreResult<Arc<Feed>> {
        let mut feeds = self.feeds.lock().await;
        if let Some(feed) = feeds.get(resource)
            && !feed.hub.is_closed()
        {
            return Ok(feed.clone());
        }
        let prefix = prefix(resource, None);
        // The revision the feed starts after: every later change of the resource reaches the hub.
        let options = GetOptions::new().with_range(prefix_end(&prefix)).with_count_only();
        let resp = kv_client(client).get(prefix.as_str(), Some(options)).await.map_err(etcd_error)?;
        let revision = header_revision(resp.header());
        let stream = open(client, &prefix, revision + 1).await?;
        let hub = Arc::new(WatchHub::new(revision, DEFAULT_HISTORY));
        let task = tokio::spawn(pump(client.clone(), resource.to_owned(), hub.clone(), stream, revision));
        let feed = Arc::new(Feed { hub, task });
        if let Some(old) = feeds.insert(resource.to_owned(), feed.clone()) {
            old.task.abort();
        }
        Ok(feed)
    }
}

/// Moves the changes of one etcd watch into `hub`, re-opening the watch from the last revision seen
/// when the stream breaks. Closes the hub (every watcher gets Gone and re-lists) when that revision
/// is compacted, a record is corrupt, or etcd stays unreachable.
async fn pump(
    client: Client,
    resource: String,
    hub: Arc<WatchHub>,
    mut stream: etcd_client::WatchStream,
    mut last: u64,
) {
    let prefix = prefix(&resource, None);
    loop {
        match stream.message().await {
            Ok(Some(resp)) => {
                if resp.compact_revision() > 0 || resp.canceled() {
                    tracing::warn!(%resource, last, "etcd watch compacted or canceled; watchers must re-list");
                    hub.close();
                    return;
                }
                for ev in resp.events() {
                    match to_change(&resource, ev) {
                        Some(Ok(change)) => {
                            last = change.revision;
                            hub.publish(change);
                        }
                        Some(Err(e)) => {
                            tracing::warn!(%resource, error = %e, "undecodable etcd record; watchers must re-list");
                            hub.close();
                            return;
                        }
                        None => {}
                    }
                }
            }
            Ok(None) | Err(_) => {
                let mut attempt = 0;
                stream = loop {
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt.min(10)))).await;
                    match open(&client, &prefix, last + 1).await {
                        Ok(s) => break s,
                        Err(e) if attempt + 1 >= REOPEN_ATTEMPTS => {
                            tracing::warn!(%resource, error = %e, "etcd watch lost; watchers must re-list");
                            hub.close();
                            return;
                        }
                        Err(_) => attempt += 1,
                    }
                };
            }
        }
    }
}
