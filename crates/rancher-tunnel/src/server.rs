//! The server side: the registry of sessions by client key, dialing through them, and the
//! `/v3/connect` upgrade handler.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::broadcast;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::config::{SessionConfig, StreamUse};
use crate::dial_header::{self, DialStatus};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::session::{self, SessionHandle};
use crate::stream::TunnelStream;
use crate::transport::{BoxedIo, Transport, WsTransport};

/// A change in which sessions the server holds. Delivered to every [`TunnelServer::subscribe`]r.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// A session for `client_key` is now registered (it replaced any older one).
    Connected {
        /// The key the [`Authorizer`](crate::Authorizer) gave the session.
        client_key: String,
        /// Unique per server process; tells sessions of the same key apart.
        session_id: u64,
    },
    /// A session ended and was removed from the registry.
    Disconnected {
        /// The session's client key.
        client_key: String,
        /// The id from its `Connected` event.
        session_id: u64,
        /// Why it ended (peer closed, dead-peer timeout, protocol error, replaced…).
        reason: String,
        /// True when a newer session for the same key had already replaced this one, so the
        /// client is still connected.
        replaced: bool,
    },
}

struct Entry {
    id: u64,
    handle: SessionHandle,
}

struct Inner {
    /// Ordered, so that the keys of one prefix (a cluster's node agents) are a range.
    sessions: Mutex<BTreeMap<String, Entry>>,
    events: broadcast::Sender<SessionEvent>,
    cfg: SessionConfig,
    metrics: Metrics,
    next_id: AtomicU64,
    transport: Arc<dyn Transport>,
    tasks: TaskTracker,
}

/// The registry of agent sessions and the way to dial through them. Cheap to clone.
///
/// The tunnel knows nothing of clusters: a *client key* is whatever string the embedding
/// server's [`Authorizer`](crate::Authorizer) returns for a connecting agent. To fall back from
/// one key to another (Rancher's node agent standing in for a missing cluster agent), call
/// [`dial`](Self::dial) with the first key and, on [`Error::NoSession`], with the second.
#[derive(Clone)]
pub struct TunnelServer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TunnelServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelServer").field("sessions", &self.session_count()).finish()
    }
}

impl TunnelServer {
    /// A server with the default WebSocket transport.
    ///
    /// # Errors
    /// [`Error::Config`] when `cfg` does not validate.
    pub fn new(cfg: SessionConfig, metrics: Metrics) -> Result<Self> {
        let transport = Arc::new(WsTransport::acceptor(cfg.clone()));
        Self::with_transport(cfg, metrics, transport)
    }

    /// A server whose upgraded connections are wrapped by `transport` (its `accept` side).
    ///
    /// # Errors
    /// [`Error::Config`] when `cfg` does not validate.
    pub fn with_transport(
        cfg: SessionConfig,
        metrics: Metrics,
        transport: Arc<dyn Transport>,
    ) -> Result<Self> {
        cfg.validate()?;
        let (events, _) = broadcast::channel(1024);
        Ok(Self {
            inner: Arc::new(Inner {
                sessions: Mutex::new(BTreeMap::new()),
                events,
                cfg,
                metrics,
                next_id: AtomicU64::new(1),
                transport,
                tasks: TaskTracker::new(),
            }),
        })
    }

    /// Connect and disconnect events from now on. The channel is bounded (1,024 events): a
    /// subscriber that falls behind gets `RecvError::Lagged` and should re-read
    /// [`client_keys`](Self::client_keys).
    pub fn subscribe(&self) -> broadcast::Receiver<SessionEvent> {
        self.inner.events.subscribe()
    }

    /// Whether a session for `client_key` is registered.
    pub fn has_session(&self, client_key: &str) -> bool {
        self.lock().contains_key(client_key)
    }

    /// The client keys that hold a session now.
    pub fn client_keys(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// The client keys that hold a session now and start with `prefix`, in order; costs the
    /// number of such keys, not the number of sessions.
    pub fn client_keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        self.lock()
            .range::<str, _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded))
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// How many sessions are held now.
    pub fn session_count(&self) -> usize {
        self.lock().len()
    }

    /// The metrics this server counts into.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The transport used for accepted connections.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.inner.transport
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        // A panic while holding this lock cannot leave the map half-updated (single inserts and
        // removes), so a poisoned lock is still usable.
        self.inner.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens a stream to `network`/`address` (for example `tcp`, `10.0.0.1:6443`) through the
    /// session of `client_key`. Fails at once when no session exists.
    ///
    /// # Errors
    /// [`Error::NoSession`]; [`Error::DialRefused`] / [`Error::DialFailed`] when the agent
    /// refuses or cannot connect (the session carries on); [`Error::StreamLimit`] at the stream
    /// limit; [`Error::Timeout`] when the agent does not answer within
    /// [`SessionConfig::dial_reply_timeout`].
    pub async fn dial(&self, client_key: &str, network: &str, address: &str) -> Result<TunnelStream> {
        self.dial_for(client_key, network, address, StreamUse::Request).await
    }

    /// Like [`dial`](Self::dial), for a stream used as `use_` says: a
    /// [`StreamUse::LongRunning`] one may not take the session's last
    /// [`SessionConfig::reserved_streams`] slots.
    ///
    /// # Errors
    /// As [`dial`](Self::dial).
    pub async fn dial_for(
        &self,
        client_key: &str,
        network: &str,
        address: &str,
        use_: StreamUse,
    ) -> Result<TunnelStream> {
        let res = self.dial_inner(client_key, network, address, use_).await;
        if let Err(e) = &res {
            self.inner.metrics.dial_error(match e {
                Error::NoSession(_) => "no_session",
                Error::DialRefused { .. } => "refused",
                Error::DialFailed { .. } => "failed",
                Error::OpenStream(_) | Error::SessionClosed | Error::StreamLimit { .. } => "open",
                Error::Timeout { .. } => "timeout",
                _ => "protocol",
            });
            debug!(client_key, network, address, error = %e, "tunnel dial failed");
        }
        res
    }

    /// Like [`dial`](Self::dial), but waits up to `wait` for a session to appear first; a session
    /// that is ending when dialed (its agent leaving) counts as none.
    ///
    /// # Errors
    /// [`Error::NoSessionWithin`] when none appeared; otherwise as [`dial`](Self::dial).
    pub async fn dial_timeout(
        &self,
        client_key: &str,
        network: &str,
        address: &str,
        wait: Duration,
    ) -> Result<TunnelStream> {
        let mut events = self.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if self.has_session(client_key) {
                match self.dial(client_key, network, address).await {
                    // The session is ending (its agent left): wait for the next one.
                    Err(Error::SessionClosed) => {}
                    done => return done,
                }
            }
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Err(_) => {
                    self.inner.metrics.dial_error("no_session");
                    return Err(Error::NoSessionWithin { key: client_key.to_string(), waited: wait });
                }
                Ok(Err(broadcast::error::RecvError::Closed)) => return Err(Error::SessionClosed),
                // Connected for our key, another key, or lagged: re-check the registry.
                Ok(_) => {}
            }
        }
    }

    async fn dial_inner(
        &self,
        client_key: &str,
        network: &str,
        address: &str,
        use_: StreamUse,
    ) -> Result<TunnelStream> {
        let header = dial_header::encode_request(network, address)?;
        let current = || self.lock().get(client_key).map(|e| (e.id, e.handle.clone()));
        let (id, handle) = current().ok_or_else(|| Error::NoSession(client_key.to_string()))?;
        let limit = self.inner.cfg.dial_reply_timeout;
        // Opening counts against the same limit: a wedged session must not hang the caller.
        let (mut stream, status, msg) = tokio::time::timeout(limit, async {
            let first = self.dial_on(&handle, &header, use_).await;
            // Replaced (its agent perhaps leaving) between the lookup and the dial, which did not
            // reach the destination: the dial goes to the newer session.
            let not_sent = matches!(first, Err(Error::SessionClosed) | Ok((_, DialStatus::Unavailable, _)));
            match current() {
                Some((newer, handle)) if not_sent && newer != id => {
                    self.dial_on(&handle, &header, use_).await
                }
                _ => first,
            }
        })
        .await
        .map_err(|_| Error::Timeout { what: "waiting for the agent's dial reply", after: limit })??;
        let (network, address, reason) = (network.to_string(), address.to_string(), msg);
        match status {
            DialStatus::Ok => {
                stream.start_counting();
                Ok(stream)
            }
            DialStatus::Refused => Err(Error::DialRefused { network, address, reason }),
            DialStatus::Failed | DialStatus::Unavailable => {
                Err(Error::DialFailed { network, address, reason })
            }
            DialStatus::BadRequest => {
                Err(Error::Protocol(format!("agent rejected the dial header: {reason}")))
            }
        }
    }

    /// Opens a stream on `handle`'s session, sends the dial `header` and reads the agent's reply.
    async fn dial_on(
        &self,
        handle: &SessionHandle,
        header: &[u8],
        use_: StreamUse,
    ) -> Result<(TunnelStream, DialStatus, String)> {
        let (stream, slot) = handle.open(use_).await?;
        let mut stream = TunnelStream::new(stream, handle.ended(), self.inner.metrics.clone(), Some(slot));
        stream.write_all(header).await?;
        stream.flush().await?;
        let (status, msg) = dial_header::read_reply(&mut stream).await?;
        Ok((stream, status, msg))
    }

    /// Runs a session over an accepted byte stream (already through the transport's
    /// `accept`) and registers it under `client_key`, replacing (and retiring) any older session
    /// of that key. Returns the session id. [`accept_upgrade`](Self::accept_upgrade) calls this;
    /// call it yourself for a custom transport.
    pub fn serve_session(&self, client_key: String, io: BoxedIo) -> u64 {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (handle, driver) = session::start(
            io,
            &self.inner.cfg,
            crate::mux::Mode::Server,
            // Agents open no streams towards the server: the multiplexer resets any they try.
            |_, _| {},
            None,
            self.inner.cfg.replaced_drain,
        );
        let old = self.lock().insert(client_key.clone(), Entry { id, handle });
        if let Some(old) = old {
            // Make before break: what is under way on the older session (a request waiting for
            // its reply, a watch) finishes there; new streams take the newer one.
            info!(client_key, old = old.id, new = id, "newer tunnel session replaces the older one");
            old.handle.retire();
        }
        self.inner.metrics.sessions.inc();
        let _ = self
            .inner
            .events
            .send(SessionEvent::Connected { client_key: client_key.clone(), session_id: id });
        info!(client_key, session_id = id, "tunnel session connected");
        self.inner.tasks.spawn(self.session_task(client_key, id, driver));
        id
    }

    /// The task of session `id`: its driver, then the bookkeeping of its end. What follows the
    /// driver is synchronous, so it is a map and not an async block awaiting the driver: such a
    /// block holds the driver twice (captured, and again as what it awaits), for as long as the
    /// session lives.
    fn session_task(
        &self,
        client_key: String,
        id: u64,
        driver: impl Future<Output = String> + Send + 'static,
    ) -> impl Future<Output = ()> + Send + 'static {
        let this = self.clone();
        driver.map(move |reason| {
            let replaced = {
                let mut map = this.lock();
                match map.get(&client_key) {
                    Some(e) if e.id == id => {
                        map.remove(&client_key);
                        false
                    }
                    _ => true,
                }
            };
            this.inner.metrics.sessions.dec();
            if reason.starts_with("closed locally") || reason.starts_with("peer closed") {
                info!(client_key, session_id = id, %reason, replaced, "tunnel session ended");
            } else {
                warn!(client_key, session_id = id, %reason, replaced, "tunnel session failed");
            }
            let _ = this.inner.events.send(SessionEvent::Disconnected {
                client_key,
                session_id: id,
                reason,
                replaced,
            });
        })
    }

    /// Closes the session of `client_key`, if any. Returns whether there was one.
    pub fn close_session(&self, client_key: &str) -> bool {
        match self.lock().get(client_key) {
            Some(e) => {
                e.handle.close();
                true
            }
            None => false,
        }
    }

    /// Closes every session and waits (up to `wait`) until their tasks have finished.
    pub async fn shutdown(&self, wait: Duration) {
        for entry in self.lock().values() {
            entry.handle.close();
        }
        self.inner.tasks.close();
        if tokio::time::timeout(wait, self.inner.tasks.wait()).await.is_err() {
            warn!("tunnel sessions still closing after {wait:?}");
        }
        self.inner.tasks.reopen();
    }

    pub(crate) fn spawn_tracked<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.inner.tasks.spawn(fut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_keys_of_a_prefix_are_those_and_only_those() {
        let server = TunnelServer::new(SessionConfig::default(), Metrics::unregistered()).unwrap();
        let mut peers = Vec::new();
        for key in ["b:n1", "a:n2", "a", "ab:n1", "a:n1", "a;"] {
            let (ours, theirs) = tokio::io::duplex(1024);
            server.serve_session(key.to_owned(), Box::new(ours));
            peers.push(theirs);
        }
        assert_eq!(server.client_keys_with_prefix("a:"), ["a:n1", "a:n2"]);
        assert_eq!(server.client_keys_with_prefix("b:"), ["b:n1"]);
        assert!(server.client_keys_with_prefix("c:").is_empty());
        assert_eq!(server.session_count(), 6);
    }

    /// Every connected agent holds one session task for as long as it is connected: ten thousand
    /// of them are ten thousand times its size. The task holds the driver once (an async block that
    /// awaited it held it twice, 3.8 KB a session), and the driver its connection once.
    #[tokio::test]
    async fn a_session_task_is_the_size_of_its_driver() {
        let server = TunnelServer::new(SessionConfig::default(), Metrics::unregistered()).unwrap();
        let (ours, _theirs) = tokio::io::duplex(1024);
        let cfg = SessionConfig::default();
        let (_handle, driver) = session::start(
            Box::new(ours),
            &cfg,
            crate::mux::Mode::Server,
            |_, _| {},
            None,
            Duration::from_secs(1),
        );
        let driver_size = std::mem::size_of_val(&driver);
        let task = server.session_task("c:n".into(), 1, driver);
        let task_size = std::mem::size_of_val(&task);
        assert!(
            task_size <= driver_size + 64,
            "a session task of {task_size} bytes for a driver of {driver_size}"
        );
        assert!(driver_size <= 1024, "a session driver of {driver_size} bytes");
    }
}
