//! The store's tokens and users in memory, for the token check every request makes
//! ([`IdentityCache`]). Reading them from the store cost a seventh of the server's CPU per proxied
//! request (a read transaction and a JSON parse for each of the two objects).
//!
//! Revocation stays immediate: the cache is only used on a store whose watches have every
//! acknowledged write ready at once ([`Store::watch_is_immediate`], the local backends), and each
//! lookup first takes everything its watches have ready. A write that returned before the lookup
//! began is therefore in the cache. Otherwise — another backend, a watch that failed or is being
//! opened again — the caller reads the store, as before.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt as _, StreamExt as _};
use rancher_core::Resource;
use rancher_core::model::{Token, User};
use rancher_core::store::{Store, StoreResult, WatchEvent, WatchOptions, WatchStream};
use tokio_util::sync::{CancellationToken, DropGuard};

/// How often the watches are drained when no request does it, so that a quiet server's watches
/// neither fall behind the store's buffer nor wait long to be opened again.
const DRAIN_EVERY: Duration = Duration::from_millis(500);
/// Wait after a watch failed before opening it again.
const REOPEN_AFTER: Duration = Duration::from_secs(1);

/// Where one kind's watch is.
enum Watch {
    /// Being opened: from its first event on, every object is sent, then every change.
    Opening(BoxFuture<'static, StoreResult<WatchStream>>),
    /// Open; `objects` holds what it sent so far.
    Open(WatchStream),
    /// Failed; opened again at this instant.
    Failed(Pin<Box<tokio::time::Sleep>>),
}

/// One kind's objects by name, and the watch keeping them.
struct Follow<K> {
    store: Arc<dyn Store>,
    watch: Watch,
    objects: HashMap<String, Arc<K>>,
}

impl<K: Resource> Follow<K> {
    fn new(store: &Arc<dyn Store>) -> Self {
        Follow { watch: Self::open(store), store: store.clone(), objects: HashMap::new() }
    }

    fn open(store: &Arc<dyn Store>) -> Watch {
        let store = store.clone();
        Watch::Opening(Box::pin(async move { store.watch(K::PLURAL, &WatchOptions::default()).await }))
    }

    fn failed(&mut self, why: &dyn std::fmt::Display) {
        tracing::debug!(
            kind = K::KIND,
            "the identity cache's watch failed; reading the store until it is back: {why}"
        );
        self.watch = Watch::Failed(Box::pin(tokio::time::sleep(REOPEN_AFTER)));
    }

    /// Takes every event the watch has ready (opening it again where it failed). `true` when the
    /// objects then include every write acknowledged so far: the watch is open and has nothing
    /// more ready.
    fn catch_up(&mut self) -> bool {
        loop {
            match &mut self.watch {
                Watch::Failed(wait) => match wait.as_mut().now_or_never() {
                    Some(()) => self.watch = Self::open(&self.store),
                    None => return false,
                },
                Watch::Opening(opening) => match opening.as_mut().now_or_never() {
                    None => return false,
                    Some(Ok(stream)) => {
                        // The new watch sends every object first: start from nothing.
                        self.objects.clear();
                        self.watch = Watch::Open(stream);
                    }
                    Some(Err(e)) => self.failed(&e),
                },
                Watch::Open(stream) => {
                    // Unconstrained: Tokio's cooperative budget must not make a ready event look
                    // pending.
                    match tokio::task::unconstrained(stream.next()).now_or_never() {
                        None => return true,
                        Some(Some(Ok(event))) => self.apply(event),
                        Some(Some(Err(e))) => self.failed(&e),
                        Some(None) => self.failed(&"the watch ended"),
                    }
                }
            }
        }
    }

    fn apply(&mut self, event: WatchEvent) {
        let (value, deleted) = match event {
            WatchEvent::Added(v) | WatchEvent::Modified(v) => (v, false),
            WatchEvent::Deleted(v) => (v, true),
            WatchEvent::Bookmark(_) => return,
        };
        let name = value.pointer("/metadata/name").and_then(|n| n.as_str()).unwrap_or_default().to_owned();
        if deleted {
            self.objects.remove(&name);
            return;
        }
        match serde_json::from_value::<K>(value) {
            Ok(object) => {
                self.objects.insert(name, Arc::new(object));
            }
            Err(e) => {
                // Left out: a check finds no such object and refuses, as a store read would.
                tracing::warn!(kind = K::KIND, name, "a stored object does not decode: {e}");
                self.objects.remove(&name);
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
/// answers.
pub(crate) struct IdentityCache {
    feeds: Arc<Mutex<Feeds>>,
    _stop: DropGuard,
}

/// A token and its user, from a current cache.
pub(crate) struct Lookup {
    pub(crate) token: Option<Arc<Token>>,
    pub(crate) user: Option<Arc<User>>,
}

impl IdentityCache {
    /// Follows `store`'s tokens and users, or `None` when its watches lag its writes (then every
    /// check must read the store). Needs a Tokio runtime (a task drains the watches).
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

    /// The token `name` and the user it names, when the cache holds every write acknowledged
    /// before this call; `None` when the caller must read the store.
    pub(crate) fn current(&self, name: &str) -> Option<Lookup> {
        let mut feeds = self.feeds.lock().unwrap_or_else(PoisonError::into_inner);
        if !feeds.catch_up() {
            return None;
        }
        let token = feeds.tokens.objects.get(name).cloned();
        let user = token.as_ref().and_then(|t| feeds.users.objects.get(&t.spec.user_id).cloned());
        Some(Lookup { token, user })
    }
}

#[cfg(test)]
mod tests {
    use rancher_core::model::{TokenSpec, UserSpec};
    use rancher_core::store::{Api, MemoryStore};

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
            let spec = TokenSpec { user_id: "u-a".into(), enabled: true, ..Default::default() };
            tokens.create(&Token::new(&name, spec)).await.unwrap();
            let lookup = cache.current(&name).unwrap();
            assert_eq!(lookup.user.unwrap().spec.enabled, i % 2 == 1, "round {i}: the user as written");
            tokens.delete(&name).await.unwrap();
        }
    }

    /// Until its watches are open and drained, the cache answers nothing (the caller reads the
    /// store) rather than "no such token".
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cache_still_opening_its_watches_sends_callers_to_the_store() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let spec = TokenSpec { user_id: "u-a".into(), enabled: true, ..Default::default() };
        Api::<Token>::all(store.clone()).create(&Token::new("token-old", spec)).await.unwrap();
        let cache = IdentityCache::start(&store).unwrap();
        let mut answered = false;
        for _ in 0..2000 {
            if let Some(lookup) = cache.current("token-old") {
                assert!(lookup.token.is_some(), "a current cache holds the token written before it started");
                answered = true;
                break;
            }
            tokio::task::yield_now().await;
        }
        until_current(&cache).await;
        assert!(cache.current("token-old").unwrap().token.is_some(), "answered early: {answered}");
    }
}
