//! [`EtcdStore`]: the store in etcd v3, so that several servers can share it (HA).
//!
//! Keys are `/rancher/<resource>/<namespace or _>/<name>`; values are the object's JSON without
//! `resourceVersion`, which is the key's etcd `mod_revision`. Create is a transaction on
//! `create_revision == 0`, update and delete on `mod_revision == <version read>`. Lists read pages at one
//! fixed revision (the continue token carries the next key and that revision). Watches of a resource
//! share one etcd watch fanned out in process (see `etcd_watch.rs`); a version older than that shared
//! history gets an etcd watch of its own from `version + 1`, and a compacted version is
//! [`Gone`](super::StoreError::Gone).
//!
//! When etcd loses its quorum (or the member reached cannot reach the leader), writes fail with
//! [`Unavailable`](super::StoreError::Unavailable) (a `503` for API clients) and reads are answered from
//! the member's own copy (a serializable read: what the member holds, possibly a little behind) instead of
//! failing: a replica keeps serving what the fleet was. Once a linearizable read has failed that way, reads
//! go to the member's copy for [`DEGRADED_FOR`] before trying consensus again, so that every request does
//! not wait out [`QUORUM_READ_WAIT`] first; writes always try, and work again as soon as etcd does.
//!
//! Lists come in key order, which is namespace-then-name order except when one namespace is a prefix
//! of another followed by `-` (`a-b` sorts before `a`).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, GetResponse, KeyValue, Txn, TxnOp,
};
use futures::StreamExt;
use serde_json::Value;
use tokio::time::Instant;

use super::etcd_watch::{self, Feeds};
use super::hub::{WatchFilter, watch_stream};
use super::object::{self, UpdatePlan};
use super::{
    Deleted, ListOptions, ObjectList, Preconditions, Store, StoreError, StoreResult, WatchEvent,
    WatchOptions, WatchStream, paging,
};

const ROOT: &str = "/rancher/";
/// Keys read per range request while filtering a page.
const BATCH: i64 = 500;
/// Attempts of an unconditional update or a delete racing other writers.
const ATTEMPTS: usize = 16;
/// How long a read waits for consensus (a linearizable read) before it is answered from the member's
/// own copy. A healthy etcd answers in milliseconds; one without quorum only after its request timeout.
const QUORUM_READ_WAIT: Duration = Duration::from_secs(2);
/// How often the client pings a connection that has had no answer for as long. No more often than
/// etcd takes pings (`--grpc-keepalive-min-time`, 5 s by default): a member slow to answer under
/// load that is pinged more often sends the client away (`GOAWAY`, "too many pings") and every
/// request in flight on the connection fails — thousands at once, each retried by its caller.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a ping may go unanswered before the connection counts as dead.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer the client takes from etcd. gRPC's default (4 MiB) is less than one page of a
/// list ([`BATCH`] objects of up to 1.5 MiB each, etcd's own limit on a request) or one batch of watch
/// events: 10,000 clusters changing at once sent the replicas' cluster watch a 4.3 MB message, which
/// failed the watch again at every restart.
pub(super) const MAX_MESSAGE: usize = 256 * 1024 * 1024;
/// How many requests one store has in flight at once; the rest wait their turn here. A member
/// given more than it can answer (thousands of agents reconnecting to several replicas) answers
/// every one late: reads pass [`QUORUM_READ_WAIT`], callers give up on requests already sent, and
/// each late answer to one is a stream the HTTP/2 client resets as forgotten — past 1,024 of those
/// it drops the connection, and every request on it fails. Queued here, a request costs etcd
/// nothing until its turn, and is never abandoned on the wire for waiting.
const MAX_IN_FLIGHT: usize = 64;
/// The resource whose requests skip that queue: leases say who is alive and who leads, and are
/// judged by deadlines. A lease renewal queued behind thousands of agents' reads missed its
/// deadline, and the controllers' leader stepped down four times while a fleet arrived. Leases are a
/// handful of keys renewed every few seconds, so their own lane stays short.
const PRIORITY_RESOURCE: &str = "leases";
/// How many requests on leases are in flight at once.
const MAX_PRIORITY_IN_FLIGHT: usize = 8;
/// After a read found no quorum, how long reads are answered from the member's copy without trying.
const DEGRADED_FOR: Duration = Duration::from_secs(5);

/// A [`Store`] in etcd v3 (see the [module docs](self) for the layout).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use rancher_core::store::{EtcdStore, Store};
/// let store = EtcdStore::connect(&["http://127.0.0.1:2379".to_owned()]).await?;
/// store.create("clusters", serde_json::json!({"metadata": {"name": "demo"}})).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    feeds: Arc<Feeds>,
    /// Until when reads skip consensus (see the module docs); `None` until a read first found no quorum.
    degraded_until: Arc<Mutex<Option<Instant>>>,
    /// Turns to send a request ([`MAX_IN_FLIGHT`]).
    in_flight: Arc<tokio::sync::Semaphore>,
    /// Turns to send a request on a lease ([`PRIORITY_RESOURCE`]).
    priority: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore").finish_non_exhaustive()
    }
}

/// What etcd says (with code `Unknown` as often as not) when it has no quorum to serve a request.
const NO_QUORUM_MESSAGES: [&str; 4] = [
    "context deadline exceeded",
    "etcdserver: request timed out",
    "etcdserver: no leader",
    "etcdserver: leader changed",
];

pub(super) fn etcd_error(e: etcd_client::Error) -> StoreError {
    match &e {
        etcd_client::Error::GRpcStatus(s) if s.message().contains("compacted") => {
            StoreError::Gone { requested: "(compacted)".into(), oldest: s.message().to_owned() }
        }
        // No leader, a request that timed out waiting for consensus (etcd's own deadline, or the
        // client's: tonic calls that one cancelled), no member reachable, a connection that broke.
        etcd_client::Error::GRpcStatus(s)
            if matches!(s.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded)
                || (s.code() == tonic::Code::Cancelled && s.message().contains("Timeout expired"))
                || NO_QUORUM_MESSAGES.iter().any(|m| s.message().contains(m))
                || std::error::Error::source(s).is_some_and(|e| e.is::<tonic::transport::Error>()) =>
        {
            StoreError::Unavailable(Box::new(e))
        }
        etcd_client::Error::TransportError(_) => StoreError::Unavailable(Box::new(e)),
        _ => StoreError::backend(e),
    }
}

/// A KV client of `client` taking answers of up to [`MAX_MESSAGE`] (the store's and its watch feeds').
pub(super) fn kv_client(client: &Client) -> etcd_client::KvClient {
    client.kv_client().max_decoding_message_size(MAX_MESSAGE)
}

/// Whether `key` is a lease's ([`PRIORITY_RESOURCE`]).
fn is_priority(key: &[u8]) -> bool {
    key.strip_prefix(ROOT.as_bytes())
        .and_then(|k| k.strip_prefix(PRIORITY_RESOURCE.as_bytes()))
        .is_some_and(|k| k.first() == Some(&b'/'))
}

fn key(resource: &str, namespace: Option<&str>, name: &str) -> String {
    format!("{ROOT}{resource}/{}/{name}", namespace.unwrap_or("_"))
}

pub(super) fn prefix(resource: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("{ROOT}{resource}/{ns}/"),
        None => format!("{ROOT}{resource}/"),
    }
}

/// The first key after every key starting with `prefix`.
pub(super) fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    // Prefixes end in '/', so the last byte can always be incremented.
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

pub(super) fn decode(kv: &KeyValue) -> StoreResult<Value> {
    let mut v: Value = serde_json::from_slice(kv.value())
        .map_err(|e| StoreError::Backend(format!("corrupt record at {:?}: {e}", kv.key_str()).into()))?;
    object::set_revision(&mut v, kv.mod_revision() as u64);
    Ok(v)
}

fn encode(object: &Value) -> StoreResult<Vec<u8>> {
    let mut v = object.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    serde_json::to_vec(&v).map_err(StoreError::backend)
}

pub(super) fn header_revision(h: Option<&etcd_client::ResponseHeader>) -> u64 {
    h.map_or(0, |h| h.revision() as u64)
}

impl EtcdStore {
    /// Connects to etcd at `endpoints` (`http://host:port`); requests are balanced over them and fail
    /// over when one goes away.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when no endpoint can be reached.
    pub async fn connect(endpoints: &[String]) -> StoreResult<Self> {
        if endpoints.is_empty() {
            return Err(StoreError::Invalid("no etcd endpoints given".into()));
        }
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout(Duration::from_secs(10))
            .with_keep_alive(KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT);
        let client = Client::connect(endpoints, Some(options)).await.map_err(etcd_error)?;
        Ok(EtcdStore {
            client,
            feeds: Arc::default(),
            degraded_until: Arc::default(),
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
            priority: Arc::new(tokio::sync::Semaphore::new(MAX_PRIORITY_IN_FLIGHT)),
        })
    }

    /// Compacts etcd's history up to `revision`: watches from older versions become Gone.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when etcd refuses (e.g. the revision is already compacted).
    pub async fn compact(&self, revision: u64) -> StoreResult<()> {
        let _turn = self.turn(&self.in_flight).await;
        let options = etcd_client::CompactionOptions::new().with_physical();
        self.kv().compact(revision as i64, Some(options)).await.map_err(etcd_error)?;
        Ok(())
    }

    /// A read for a reader: by consensus while etcd has it, else from the member's own copy (see the
    /// module docs).
    async fn get_kv(&self, key: Vec<u8>, options: GetOptions) -> StoreResult<GetResponse> {
        let _turn = self.turn_for(&key).await;
        let mut kv = self.kv();
        if !self.degraded() {
            let consensus =
                tokio::time::timeout(QUORUM_READ_WAIT, kv.get(key.clone(), Some(options.clone())));
            let error = match consensus.await {
                Ok(Ok(resp)) => return Ok(resp),
                Ok(Err(e)) => match etcd_error(e) {
                    StoreError::Unavailable(e) => e.to_string(),
                    e => return Err(e),
                },
                Err(_) => format!("no answer by consensus within {QUORUM_READ_WAIT:?}"),
            };
            // Said once per degraded spell: the reads in flight when etcd stopped answering all
            // time out together (thousands of them under load), and each would say it again.
            let now = Instant::now();
            let was = self
                .degraded_until
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .replace(now + DEGRADED_FOR);
            if was.is_none_or(|until| until <= now) {
                tracing::warn!(%error, "etcd has no quorum: reads are answered from the member's own copy, writes fail");
            }
        }
        kv.get(key, Some(options.with_serializable())).await.map_err(etcd_error)
    }

    /// A KV client taking answers of up to [`MAX_MESSAGE`].
    fn kv(&self) -> etcd_client::KvClient {
        kv_client(&self.client)
    }

    /// Waits for a turn to send a request on `key`, held until its answer is in: in the lane of
    /// leases for a lease ([`PRIORITY_RESOURCE`]), else in the common one ([`MAX_IN_FLIGHT`]).
    async fn turn_for(&self, key: &[u8]) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.turn(if is_priority(key) { &self.priority } else { &self.in_flight }).await
    }

    /// Waits for a turn in `lane` (one of this store's), held until the answer is in.
    async fn turn<'a>(
        &'a self,
        lane: &'a tokio::sync::Semaphore,
    ) -> Option<tokio::sync::SemaphorePermit<'a>> {
        // The semaphores are never closed.
        lane.acquire().await.ok()
    }

    /// Whether reads skip consensus now.
    fn degraded(&self) -> bool {
        self.degraded_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|at| at > Instant::now())
    }

    /// An object for `get`: see [`get_kv`](Self::get_kv).
    async fn read(&self, key: &str) -> StoreResult<Option<Value>> {
        let resp = self.get_kv(key.as_bytes().to_vec(), GetOptions::new()).await?;
        resp.kvs().first().map(decode).transpose()
    }

    /// An object and its version for a write that depends on it: by consensus, always (a copy a
    /// little behind would only make the write fail its comparison).
    async fn read_for_write(&self, key: &str) -> StoreResult<Option<(Value, i64)>> {
        let resp = {
            let _turn = self.turn_for(key.as_bytes()).await;
            self.kv().get(key, None).await.map_err(etcd_error)?
        };
        match resp.kvs().first() {
            Some(kv) => Ok(Some((decode(kv)?, kv.mod_revision()))),
            None => Ok(None),
        }
    }

    /// Writes `value` (or deletes, when `None`) if the key is still at `mod_revision`; the new revision,
    /// or `None` when the comparison failed.
    async fn swap(&self, key: &str, mod_revision: i64, value: Option<Vec<u8>>) -> StoreResult<Option<u64>> {
        let op = match value {
            Some(v) => TxnOp::put(key, v, None),
            None => TxnOp::delete(key, None),
        };
        let txn =
            Txn::new().when([Compare::mod_revision(key, CompareOp::Equal, mod_revision)]).and_then([op]);
        let resp = {
            let _turn = self.turn_for(key.as_bytes()).await;
            self.kv().txn(txn).await.map_err(etcd_error)?
        };
        Ok(resp.succeeded().then(|| header_revision(resp.header())))
    }

    /// Reads keys in `[start, end)` at `revision` (0: now) until `want` values pass `keep`; returns them
    /// with their keys, and the revision read at.
    async fn range(
        &self,
        mut start: Vec<u8>,
        end: &[u8],
        revision: i64,
        want: usize,
        keep: &(dyn Fn(&Value) -> bool + Sync),
    ) -> StoreResult<(Vec<(String, Value)>, u64)> {
        let mut out = Vec::new();
        let mut revision = revision;
        loop {
            let options =
                GetOptions::new().with_range(end.to_vec()).with_limit(BATCH).with_revision(revision);
            let resp = self.get_kv(start.clone(), options).await?;
            if revision == 0 {
                revision = header_revision(resp.header()) as i64;
            }
            for kv in resp.kvs() {
                let v = decode(kv)?;
                if keep(&v) {
                    out.push((String::from_utf8_lossy(kv.key()).into_owned(), v));
                    if out.len() >= want {
                        return Ok((out, revision as u64));
                    }
                }
            }
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => return Ok((out, revision as u64)),
            }
        }
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn create(&self, resource: &str, mut object: Value) -> StoreResult<Value> {
        object::check_resource(resource)?;
        let generated = object.pointer("/metadata/name").and_then(Value::as_str).is_none_or(str::is_empty);
        let template = object.clone();
        for _ in 0..ATTEMPTS {
            let k = object::prepare_create(&mut object, &mut |_| Ok(false))?;
            object::stamp_created(&mut object, 0)?;
            let key = key(resource, k.namespace.as_deref(), &k.name);
            let txn = Txn::new()
                .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key.as_str(), encode(&object)?, None)]);
            let resp = {
                let _turn = self.turn_for(key.as_bytes()).await;
                self.kv().txn(txn).await.map_err(etcd_error)?
            };
            if resp.succeeded() {
                object::set_revision(&mut object, header_revision(resp.header()));
                return Ok(object);
            }
            if !generated {
                return Err(StoreError::AlreadyExists { resource: resource.to_owned(), name: k.name });
            }
            object = template.clone();
        }
        Err(StoreError::Backend("no free generated name found".into()))
    }

    async fn get(&self, resource: &str, namespace: Option<&str>, name: &str) -> StoreResult<Value> {
        object::check_resource(resource)?;
        object::check_namespace(namespace)?;
        object::check_name(name)?;
        match self.read(&key(resource, namespace, name)).await? {
            Some(v) => Ok(v),
            None => Err(StoreError::NotFound { resource: resource.to_owned(), name: name.to_owned() }),
        }
    }

    async fn update(&self, resource: &str, object: Value) -> StoreResult<Value> {
        object::check_resource(resource)?;
        let k = object::key_of(&object)?;
        let key = key(resource, k.namespace.as_deref(), &k.name);
        let not_found = || StoreError::NotFound { resource: resource.to_owned(), name: k.name.clone() };
        for _ in 0..ATTEMPTS {
            let (old, mod_revision) = self.read_for_write(&key).await?.ok_or_else(not_found)?;
            // A client-supplied version makes a lost race a Conflict (checked by plan_update on retry).
            let (value, result) = match object::plan_update(resource, &old, object.clone())? {
                UpdatePlan::Unchanged => return Ok(old),
                UpdatePlan::Write(new) => (Some(encode(&new)?), new),
                UpdatePlan::Delete(last) => (None, last),
            };
            if let Some(revision) = self.swap(&key, mod_revision, value).await? {
                let mut result = result;
                object::set_revision(&mut result, revision);
                return Ok(result);
            }
        }
        Err(StoreError::Conflict { resource: resource.to_owned(), name: k.name })
    }

    async fn delete(
        &self,
        resource: &str,
        namespace: Option<&str>,
        name: &str,
        preconditions: Preconditions,
    ) -> StoreResult<Deleted> {
        object::check_resource(resource)?;
        object::check_namespace(namespace)?;
        object::check_name(name)?;
        let key = key(resource, namespace, name);
        for _ in 0..ATTEMPTS {
            let (old, mod_revision) = self.read_for_write(&key).await?.ok_or_else(|| {
                StoreError::NotFound { resource: resource.to_owned(), name: name.to_owned() }
            })?;
            object::check_preconditions(resource, name, &old, &preconditions)?;
            let terminating = !object::finalizers_of(&old).is_empty();
            if terminating && object::is_terminating(&old) {
                return Ok(Deleted::Terminating(old));
            }
            let mut new = old.clone();
            let value = if terminating {
                object::mark_terminating(&mut new);
                Some(encode(&new)?)
            } else {
                None
            };
            if let Some(revision) = self.swap(&key, mod_revision, value).await? {
                object::set_revision(&mut new, revision);
                return Ok(if terminating { Deleted::Terminating(new) } else { Deleted::Gone(new) });
            }
        }
        Err(StoreError::Conflict { resource: resource.to_owned(), name: name.to_owned() })
    }

    async fn list(&self, resource: &str, options: &ListOptions) -> StoreResult<ObjectList> {
        object::check_resource(resource)?;
        let namespace = options.namespace.as_deref();
        object::check_namespace(namespace)?;
        let prefix = prefix(resource, namespace);
        let (start, revision) = match options.continue_token.as_deref() {
            None | Some("") => (prefix.as_bytes().to_vec(), 0),
            Some(token) => {
                let c = paging::decode(token, resource, namespace)?;
                if !c.after.starts_with(&prefix) || c.revision == 0 {
                    return Err(StoreError::Invalid(format!("invalid continue token {token:?}")));
                }
                let mut start = c.after.into_bytes();
                start.push(0);
                (start, c.revision as i64)
            }
        };
        let limit = options.limit.filter(|&l| l > 0);
        let want = limit.map_or(usize::MAX, |l| l.saturating_add(1));
        let selector = options.label_selector.clone();
        let keep = move |v: &Value| object::matches(v, None, selector.as_ref());
        let (mut items, revision) = self.range(start, &prefix_end(&prefix), revision, want, &keep).await?;
        let mut continue_token = None;
        if let Some(l) = limit
            && items.len() > l
        {
            items.truncate(l);
            let last = items.last().map(|(k, _)| k.as_str()).unwrap_or_default();
            continue_token = Some(paging::encode(resource, namespace, last, revision));
        }
        Ok(ObjectList {
            resource_version: revision.to_string(),
            items: items.into_iter().map(|(_, v)| v).collect(),
            continue_token,
        })
    }

    async fn watch(&self, resource: &str, options: &WatchOptions) -> StoreResult<WatchStream> {
        object::check_resource(resource)?;
        let namespace = options.namespace.as_deref();
        object::check_namespace(namespace)?;
        let from = match options.resource_version.as_deref() {
            None => None,
            Some(rv) => object::parse_version(rv)?.filter(|&v| v != 0),
        };
        let filter = WatchFilter {
            resource: resource.to_owned(),
            namespace: options.namespace.clone(),
            selector: options.label_selector.clone(),
        };
        // Started before the list below, so the hub has every change after the list's revision.
        let feed = self.feeds.get(&self.client, resource).await?;
        let prefix = prefix(resource, namespace);
        let (initial, from) = match from {
            Some(v) => (Vec::new(), v),
            None => {
                let f = filter.clone();
                let keep = move |v: &Value| object::matches(v, None, f.selector.as_ref());
                let (items, rev) = self
                    .range(prefix.as_bytes().to_vec(), &prefix_end(&prefix), 0, usize::MAX, &keep)
                    .await?;
                (items.into_iter().map(|(_, v)| WatchEvent::Added(v)).collect::<Vec<_>>(), rev)
            }
        };
        match feed.hub.subscribe(from) {
            Ok((replay, rx)) => Ok(watch_stream(feed.hub.clone(), filter, initial, replay, rx, from)),
            // Older than the shared history (or the feed just broke): a watch of its own.
            Err(_) => {
                let live = etcd_watch::dedicated(&self.client, filter, from).await?;
                Ok(futures::stream::iter(initial.into_iter().map(Ok)).chain(live).boxed())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lease_keys_take_the_lease_lane() {
        assert!(is_priority(b"/rancher/leases/_/controllers"));
        assert!(is_priority(b"/rancher/leases/"));
        for other in
            [&b"/rancher/leasesx/_/a"[..], b"/rancher/clusters/_/leases", b"/rancher/", b"leases/_/a"]
        {
            assert!(!is_priority(other), "{}", String::from_utf8_lossy(other));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lease_is_read_and_written_while_every_other_turn_is_taken() {
        let etcd = rancher_test_support::etcd::Etcd::start(1).await;
        let store = EtcdStore::connect(&etcd.endpoints()).await.unwrap();
        store.create("clusters", serde_json::json!({"metadata": {"name": "c1"}})).await.unwrap();
        // Every common turn taken, as by requests an overloaded member has not answered yet.
        let busy = store.in_flight.clone().acquire_many_owned(MAX_IN_FLIGHT as u32).await.unwrap();

        let lease = serde_json::json!({"metadata": {"name": "controllers"}, "spec": {"holderIdentity": "a"}});
        let wait = Duration::from_secs(5);
        let created = tokio::time::timeout(wait, store.create("leases", lease)).await;
        let mut created = created.expect("a lease is written without a common turn").unwrap();
        created["spec"]["holderIdentity"] = "b".into();
        let updated = tokio::time::timeout(wait, store.update("leases", created)).await;
        assert_eq!(updated.expect("renewed without a common turn").unwrap()["spec"]["holderIdentity"], "b");

        let queued =
            tokio::time::timeout(Duration::from_millis(500), store.get("clusters", None, "c1")).await;
        assert!(queued.is_err(), "a cluster's read waits for a turn");
        drop(busy);
        let read = tokio::time::timeout(wait, store.get("clusters", None, "c1")).await;
        assert_eq!(read.expect("read once a turn is free").unwrap()["metadata"]["name"], "c1");
    }
}
