//! The store's tokens and users in memory, for the token check every request makes
//! ([`IdentityCache`]). Reading them from the store cost a seventh of the server's CPU per proxied
//! request (a read transaction and a JSON parse for each of the two objects).
//!
//! Revocation stays immediate: the cache is only used on a store whose watches have every
//! acknowledged write ready at once ([`Store::watch_is_immediate`], the local backends), and each
//! lookup first takes everything its watches have ready. A write that returned before the lookup
//! began is therefore in the cache; otherwise — another backend, a watch that failed and is
//! re-listing, a cache not listed yet — the caller reads the store, as before.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::{FutureExt as _, Stream, StreamExt as _};
use rancher_core::Resource;
use rancher_core::controller::watcher::{self, Config, Event};
use rancher_core::controller::{ObjectRef, reflector, watcher as watch_kind};
use rancher_core::model::{Token, User};
use rancher_core::store::{Api, Store};
use tokio_util::sync::{CancellationToken, DropGuard};

/// How often the watches are drained when no request does it, so that a quiet server's watches
/// neither fall behind the store's buffer nor wait long to finish a re-list.
const DRAIN_EVERY: Duration = Duration::from_millis(500);

type Feed<K> = Pin<Box<dyn Stream<Item = Result<Event<K>, watcher::Error>> + Send>>;

/// One kind: the watch feeding the reflector, and whether it is listed and following.
struct Follow<K> {
    feed: Feed<K>,
    reader: reflector::Store<K>,
    synced: bool,
}

impl<K: Resource> Follow<K> {
    fn new(store: &Arc<dyn Store>) -> Self {
        let (reader, writer) = reflector::store();
        let watch = watch_kind(Api::<K>::all(store.clone()), Config::default().relist_after_error());
        let feed = rancher_core::controller::reflector(writer, watch).boxed();
        Follow { feed, reader, synced: false }
    }

    /// Applies every event the watch has ready. `true` when the cache then holds every write
    /// acknowledged so far: listed, following, and nothing left to take.
    fn catch_up(&mut self) -> bool {
        loop {
            // Unconstrained: Tokio's cooperative budget must not make a ready event look pending.
            match tokio::task::unconstrained(self.feed.next()).now_or_never() {
                None => return self.synced,
                Some(Some(Ok(Event::InitApply(_)))) => {}
                Some(Some(Ok(Event::Init))) => self.synced = false,
                Some(Some(Ok(Event::InitDone | Event::Apply(_) | Event::Delete(_)))) => self.synced = true,
                Some(Some(Err(e))) => {
                    tracing::debug!(kind = K::KIND, "the identity cache's watch failed; re-listing: {e}");
                    self.synced = false;
                }
                Some(None) => {
                    self.synced = false;
                    return false;
                }
            }
        }
    }
}

struct Feeds {
    tokens: Follow<Token>,
    users: Follow<User>,
}

impl Feeds {
    fn catch_up(&mut self) -> bool {
        // Both, always: each must keep up with its watch.
        let tokens = self.tokens.catch_up();
        let users = self.users.catch_up();
        tokens && users
    }
}

/// Tokens and users, current as of every acknowledged write whenever [`IdentityCache::current`]
/// says so.
pub(crate) struct IdentityCache {
    feeds: Arc<Mutex<Feeds>>,
    _stop: DropGuard,
}

/// What a current cache holds for a token and its user.
pub(crate) struct Lookup {
    pub(crate) token: Option<Arc<Token>>,
    users: reflector::Store<User>,
}

impl Lookup {
    /// The user `id`, as current as the token.
    pub(crate) fn user(&self, id: &str) -> Option<Arc<User>> {
        self.users.get(&ObjectRef::new(id))
    }
}

impl IdentityCache {
    /// Follows `store`'s tokens and users, or `None` when its watches lag its writes (then every
    /// lookup must read the store). Needs a Tokio runtime (a task drains the watches).
    pub(crate) fn start(store: &Arc<dyn Store>) -> Option<Self> {
        if !store.watch_is_immediate() {
            return None;
        }
        let feeds = Arc::new(Mutex::new(Feeds { tokens: Follow::new(store), users: Follow::new(store) }));
        let stop = CancellationToken::new();
        let weak = Arc::downgrade(&feeds);
        tokio::spawn(stop.clone().run_until_cancelled_owned(async move {
            let mut tick = tokio::time::interval(DRAIN_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(feeds) = weak.upgrade() else { return };
                feeds.lock().unwrap_or_else(PoisonError::into_inner).catch_up();
            }
        }));
        Some(IdentityCache { feeds, _stop: stop.drop_guard() })
    }

    /// The token `name` and a handle on the users, when the cache holds every write acknowledged
    /// before this call; `None` when the caller must read the store.
    pub(crate) fn current(&self, name: &str) -> Option<Lookup> {
        let mut feeds = self.feeds.lock().unwrap_or_else(PoisonError::into_inner);
        if !feeds.catch_up() {
            return None;
        }
        let token = feeds.tokens.reader.get(&ObjectRef::new(name));
        Some(Lookup { token, users: feeds.users.reader.clone() })
    }
}

#[cfg(test)]
mod tests {
    use rancher_core::model::{TokenSpec, UserSpec};
    use rancher_core::store::MemoryStore;

    use super::*;

    async fn until_current(cache: &IdentityCache) {
        for _ in 0..200 {
            if cache.current("none").is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the cache did not list tokens and users within 5 s");
    }

    /// Revocation is immediate: whatever was written before a lookup, the lookup sees — checked
    /// right after each write returns, many times over, with no wait in between.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lookup_sees_every_write_that_returned_before_it() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let cache = IdentityCache::start(&store).expect("the memory store's watches are immediate");
        let tokens = Api::<Token>::all(store.clone());
        let users = Api::<User>::all(store.clone());
        users.create(&User::new("u-a", UserSpec { enabled: true, ..Default::default() })).await.unwrap();
        until_current(&cache).await;

        for i in 0..100 {
            let name = format!("token-{i}");
            let spec = TokenSpec { user_id: "u-a".into(), enabled: true, ..Default::default() };
            tokens.create(&Token::new(&name, spec)).await.unwrap();
            let seen = cache.current(&name).expect("current").token.expect("a new token is seen at once");
            assert!(seen.spec.enabled);

            let mut off = (*seen).clone();
            off.spec.enabled = false;
            tokens.update(&off).await.unwrap();
            let seen = cache.current(&name).unwrap().token.unwrap();
            assert!(!seen.spec.enabled, "round {i}: a disabled token is seen disabled at once");

            tokens.delete(&name).await.unwrap();
            assert!(
                cache.current(&name).unwrap().token.is_none(),
                "round {i}: a deleted token is gone at once"
            );

            let mut user = users.get("u-a").await.unwrap();
            user.spec.enabled = i % 2 == 1;
            users.update(&user).await.unwrap();
            let lookup = cache.current(&name).unwrap();
            assert_eq!(
                lookup.user("u-a").unwrap().spec.enabled,
                i % 2 == 1,
                "round {i}: the user as written"
            );
        }
    }

    /// A store whose watches lag its writes (etcd's) gets no cache: every check reads the store.
    #[tokio::test]
    async fn no_cache_over_a_store_whose_watches_lag() {
        struct Lagging(MemoryStore);
        #[async_trait::async_trait]
        impl Store for Lagging {
            async fn create(
                &self,
                r: &str,
                o: serde_json::Value,
            ) -> rancher_core::store::StoreResult<serde_json::Value> {
                self.0.create(r, o).await
            }
            async fn get(
                &self,
                r: &str,
                ns: Option<&str>,
                n: &str,
            ) -> rancher_core::store::StoreResult<serde_json::Value> {
                self.0.get(r, ns, n).await
            }
            async fn update(
                &self,
                r: &str,
                o: serde_json::Value,
            ) -> rancher_core::store::StoreResult<serde_json::Value> {
                self.0.update(r, o).await
            }
            async fn delete(
                &self,
                r: &str,
                ns: Option<&str>,
                n: &str,
                p: rancher_core::store::Preconditions,
            ) -> rancher_core::store::StoreResult<rancher_core::store::Deleted> {
                self.0.delete(r, ns, n, p).await
            }
            async fn list(
                &self,
                r: &str,
                o: &rancher_core::store::ListOptions,
            ) -> rancher_core::store::StoreResult<rancher_core::store::ObjectList> {
                self.0.list(r, o).await
            }
            async fn watch(
                &self,
                r: &str,
                o: &rancher_core::store::WatchOptions,
            ) -> rancher_core::store::StoreResult<rancher_core::store::WatchStream> {
                self.0.watch(r, o).await
            }
        }
        let store: Arc<dyn Store> = Arc::new(Lagging(MemoryStore::new()));
        assert!(IdentityCache::start(&store).is_none());
    }
}
