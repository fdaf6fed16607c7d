//! The watcher's types: the [`Event`]s it reports, its [`Config`] and its [`Error`]s. The stream itself
//! is [`controller::watcher`](super::watcher).
//!
//! A watcher lists the objects (page by page when [`Config::page_size`] is set), then watches from the
//! list's `resourceVersion`. When a watch ends it resumes from the last version it saw; when the store
//! says that version is too old ([`StoreError::Gone`]: history overrun, etcd compaction, a restarted
//! redb store) it lists again and reports the new list as [`Event::Init`] … [`Event::InitDone`], so a
//! consumer can rebuild what it derived. Failures are reported as `Err` items and retried with jittered
//! exponential [`Backoff`]; the stream itself never ends.

use std::collections::VecDeque;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};

use super::Backoff;
use crate::Resource;
use crate::store::{Api, LabelSelector, ListOptions, StoreError, TypedEvent, WatchOptions};

/// What a watcher reports.
#[derive(Clone, Debug, PartialEq)]
pub enum Event<K> {
    /// The object was created or changed.
    Apply(K),
    /// The object was deleted; its last state.
    Delete(K),
    /// A (re-)list starts: the objects up to the next [`InitDone`](Self::InitDone) are the whole set.
    Init,
    /// An object of the (re-)list.
    InitApply(K),
    /// The (re-)list is complete: objects not seen since [`Init`](Self::Init) no longer exist.
    InitDone,
}

impl<K> Event<K> {
    /// The object this event carries, if any.
    pub fn object(&self) -> Option<&K> {
        match self {
            Event::Apply(k) | Event::Delete(k) | Event::InitApply(k) => Some(k),
            Event::Init | Event::InitDone => None,
        }
    }

    /// The event with `f` applied to the object it carries, if any: to keep less of each object in
    /// a cache than the store holds.
    #[must_use]
    pub fn modify(mut self, f: impl FnOnce(&mut K)) -> Self {
        match &mut self {
            Event::Apply(k) | Event::Delete(k) | Event::InitApply(k) => f(k),
            Event::Init | Event::InitDone => {}
        }
        self
    }
}

/// Which objects a watcher follows and how it retries.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    /// Only objects whose labels match.
    pub label_selector: Option<LabelSelector>,
    /// List in pages of this many objects (`None`: one list call).
    pub page_size: Option<usize>,
    /// Delays between retries after failures.
    pub backoff: Backoff,
    /// After a failed watch, list again (reporting `Init` … `InitDone`) instead of resuming from the
    /// last version: for consumers that stop trusting their cache on an error and need a signal that
    /// it is current again.
    pub relist_after_error: bool,
}

impl Config {
    /// Only objects whose labels match `selector`.
    pub fn labels(mut self, selector: LabelSelector) -> Self {
        self.label_selector = Some(selector);
        self
    }

    /// List in pages of `n` objects.
    pub fn page_size(mut self, n: usize) -> Self {
        self.page_size = Some(n.max(1));
        self
    }

    /// Retry delays after failures.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// List again after a failed watch instead of resuming (see [`Config::relist_after_error`]).
    pub fn relist_after_error(mut self) -> Self {
        self.relist_after_error = true;
        self
    }
}

/// Why a step of the watcher failed. The watcher retries after a backoff; the error is reported so
/// that a consumer can log it or treat its cache as stale until the next event.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Listing the objects failed.
    #[error("listing failed: {0}")]
    InitialListFailed(#[source] StoreError),
    /// Starting a watch failed.
    #[error("starting the watch failed: {0}")]
    WatchStartFailed(#[source] StoreError),
    /// The watch reported an error (an undecodable object, the backend failed).
    #[error("the watch failed: {0}")]
    WatchFailed(#[source] StoreError),
}

type Watch<K> = BoxStream<'static, Result<TypedEvent<K>, StoreError>>;

enum Phase<K> {
    /// Nothing listed yet, or the last version is Gone.
    List,
    /// Listing: the version of the first page, the token of the next one.
    Paging { version: String, token: String },
    /// Listed or watched up to `version`; a watch starts from there.
    Resume { version: String },
    /// Following a watch.
    Watching { version: String, stream: Watch<K> },
}

struct State<K> {
    api: Api<K>,
    config: Config,
    phase: Phase<K>,
    pending: VecDeque<Result<Event<K>, Error>>,
    /// Failures (and restarts without progress) since the last event; sets the backoff.
    failures: u32,
    /// Wait this long before the next store call.
    delay: Duration,
}

/// The stream behind [`controller::watcher`](super::watcher).
pub(super) fn stream<K: Resource>(
    api: Api<K>,
    config: Config,
) -> impl Stream<Item = Result<Event<K>, Error>> + Send + 'static {
    let state = State {
        api,
        config,
        phase: Phase::List,
        pending: VecDeque::new(),
        failures: 0,
        delay: Duration::ZERO,
    };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(item) = st.pending.pop_front() {
                return Some((item, st));
            }
            if !st.delay.is_zero() {
                tokio::time::sleep(std::mem::take(&mut st.delay)).await;
            }
            st.step().await;
        }
    })
}

impl<K: Resource> State<K> {
    /// A failure reported to the consumer; the next store call waits a backoff.
    fn fail(&mut self, error: Error) {
        self.failures = self.failures.saturating_add(1);
        self.delay = self.config.backoff.delay(self.failures);
        tracing::debug!(kind = K::KIND, %error, retry_in = ?self.delay, "watcher");
        self.pending.push_back(Err(error));
    }

    /// A restart that is not an error (Gone, a watch that ended): immediate the first time since
    /// the last event, else backed off so a store that keeps refusing is not hammered.
    fn restart(&mut self) {
        self.failures = self.failures.saturating_add(1);
        self.delay =
            if self.failures == 1 { Duration::ZERO } else { self.config.backoff.delay(self.failures - 1) };
    }

    fn list_options(&self, token: Option<String>) -> ListOptions {
        ListOptions {
            label_selector: self.config.label_selector.clone(),
            limit: self.config.page_size,
            continue_token: token,
            ..Default::default()
        }
    }

    async fn step(&mut self) {
        match std::mem::replace(&mut self.phase, Phase::List) {
            Phase::List => match self.api.list_with(self.list_options(None)).await {
                Ok((items, page)) => {
                    self.pending.push_back(Ok(Event::Init));
                    self.pending.extend(items.into_iter().map(|k| Ok(Event::InitApply(k))));
                    self.listed(page.resource_version, page.continue_token);
                }
                Err(e) => self.fail(Error::InitialListFailed(e)),
            },
            Phase::Paging { version, token } => {
                match self.api.list_with(self.list_options(Some(token))).await {
                    Ok((items, page)) => {
                        self.pending.extend(items.into_iter().map(|k| Ok(Event::InitApply(k))));
                        self.listed(version, page.continue_token);
                    }
                    // The first page's version was compacted while paging: start over.
                    Err(StoreError::Gone { .. }) => self.restart(),
                    Err(e) => self.fail(Error::InitialListFailed(e)),
                }
            }
            Phase::Resume { version } => {
                let options = WatchOptions {
                    label_selector: self.config.label_selector.clone(),
                    resource_version: Some(version.clone()),
                    ..Default::default()
                };
                match self.api.watch(options).await {
                    Ok(stream) => self.phase = Phase::Watching { version, stream },
                    Err(StoreError::Gone { .. }) => {
                        tracing::debug!(kind = K::KIND, %version, "watch version is gone; listing again");
                        self.restart();
                    }
                    Err(e) => {
                        self.resume_or_relist(version);
                        self.fail(Error::WatchStartFailed(e));
                    }
                }
            }
            Phase::Watching { mut version, mut stream } => match stream.next().await {
                Some(Ok(event)) => {
                    self.failures = 0;
                    let event = match event {
                        TypedEvent::Added(k) | TypedEvent::Modified(k) => Some(Event::Apply(k)),
                        TypedEvent::Deleted(k) => Some(Event::Delete(k)),
                        TypedEvent::Bookmark(rv) => {
                            version = rv;
                            None
                        }
                    };
                    if let Some(event) = event {
                        let seen = event.object().map(|k| k.meta().resource_version.as_str());
                        if let Some(rv) = seen.filter(|rv| !rv.is_empty()) {
                            version = rv.to_owned();
                        }
                        self.pending.push_back(Ok(event));
                    }
                    self.phase = Phase::Watching { version, stream };
                }
                Some(Err(StoreError::Gone { .. })) => {
                    tracing::debug!(kind = K::KIND, %version, "watch expired; listing again");
                    self.restart();
                }
                // One object did not decode: report it, keep following.
                Some(Err(e @ StoreError::Invalid(_))) => {
                    self.pending.push_back(Err(Error::WatchFailed(e)));
                    self.phase = Phase::Watching { version, stream };
                }
                Some(Err(e)) => {
                    self.resume_or_relist(version);
                    self.fail(Error::WatchFailed(e));
                }
                None => {
                    tracing::debug!(kind = K::KIND, %version, "watch ended; resuming");
                    self.restart();
                    self.phase = Phase::Resume { version };
                }
            },
        }
    }

    /// After a failed watch: resume from `version`, or list again when so configured.
    fn resume_or_relist(&mut self, version: String) {
        self.phase = if self.config.relist_after_error { Phase::List } else { Phase::Resume { version } };
    }

    /// After a page: the next page, or the end of the list and a watch from its version.
    fn listed(&mut self, version: String, token: Option<String>) {
        match token {
            Some(token) => self.phase = Phase::Paging { version, token },
            None => {
                self.pending.push_back(Ok(Event::InitDone));
                self.phase = Phase::Resume { version };
            }
        }
    }
}
