//! The agent side: connect out, serve the streams the server opens (dial header → policy →
//! dial → status → splice), reconnect with jittered exponential backoff, drain on shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use rand::Rng;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::config::SessionConfig;
use crate::dial_header::{self, DialStatus};
use crate::dialer::{Dialer, DirectDialer};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::policy::DestinationPolicy;
use crate::session::{self, Drain, SessionEnded};
use crate::stream::TunnelStream;
use crate::transport::{BoxedIo, Transport};

/// The network name under which the server reaches an agent's in-process services
/// ([`Agent::with_local_service`]): `TunnelServer::dial(key, LOCAL_NETWORK, "<service name>")`.
pub const LOCAL_NETWORK: &str = "local";

/// A service that lives inside the agent process and is reached through the tunnel by name, with
/// network [`LOCAL_NETWORK`] — no TCP listener on the host. The agent answers the dial "ok" and hands
/// the stream over; the service owns it until `serve` returns.
#[async_trait::async_trait]
pub trait LocalService: Send + Sync {
    /// Serves one stream the server opened (already past the dial header exchange).
    async fn serve(&self, stream: TunnelStream);
}

/// Settings of an [`Agent`].
#[derive(Clone)]
#[non_exhaustive]
pub struct AgentConfig {
    /// Headers sent on every connect: the agent's credentials (for example
    /// [`TOKEN_HEADER`](crate::TOKEN_HEADER) and [`PARAMS_HEADER`](crate::PARAMS_HEADER)).
    pub headers: HeaderMap,
    /// Session limits and keepalive.
    pub session: SessionConfig,
    /// First reconnect delay (the actual delay is jittered between half and all of it).
    pub backoff_initial: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
    /// How long the agent tries to connect to a destination.
    pub dial_timeout: Duration,
    /// How long the agent waits for a new stream's dial header.
    pub header_timeout: Duration,
    /// On shutdown, how long open streams may keep running before the session is closed.
    pub drain_timeout: Duration,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values are credentials: names only.
        f.debug_struct("AgentConfig")
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("session", &self.session)
            .field("backoff", &(self.backoff_initial, self.backoff_max))
            .finish_non_exhaustive()
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            headers: HeaderMap::new(),
            session: SessionConfig::default(),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            dial_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// The agent-side client. `run` keeps one session to the server open until shut down.
pub struct Agent {
    transport: Arc<dyn Transport>,
    policy: Arc<dyn DestinationPolicy>,
    cfg: AgentConfig,
    metrics: Metrics,
    connected: watch::Sender<bool>,
    local: Arc<HashMap<String, Arc<dyn LocalService>>>,
    dialer: Arc<dyn Dialer>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("cfg", &self.cfg)
            .field("local_services", &self.local.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// An agent that connects with `transport` and dials only what `policy` allows.
    ///
    /// # Errors
    /// [`Error::Config`] when the session config does not validate or the backoff is zero.
    pub fn new(
        transport: Arc<dyn Transport>,
        policy: Arc<dyn DestinationPolicy>,
        cfg: AgentConfig,
        metrics: Metrics,
    ) -> Result<Self> {
        cfg.session.validate()?;
        if cfg.backoff_initial.is_zero() || cfg.backoff_max < cfg.backoff_initial {
            return Err(Error::Config("backoff_initial must be non-zero and at most backoff_max".into()));
        }
        Ok(Self {
            transport,
            policy,
            cfg,
            metrics,
            connected: watch::channel(false).0,
            local: Arc::new(HashMap::new()),
            dialer: Arc::new(DirectDialer),
        })
    }

    /// Connects the streams the policy allowed with `dialer` instead of straight to their address
    /// ([`DirectDialer`]): for a destination with several equivalent addresses, such as an API server
    /// on every control-plane host. The policy still decides on the address the server asked for.
    pub fn with_dialer(mut self, dialer: Arc<dyn Dialer>) -> Self {
        self.dialer = dialer;
        self
    }

    /// Registers an in-process service: a dial with network [`LOCAL_NETWORK`] and address `name` is
    /// answered "ok" and handed to `service`; a dial to a local name nobody registered is refused.
    /// Local services are not subject to the [`DestinationPolicy`] (they are registered explicitly);
    /// registering a name again replaces the earlier service.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use rancher_tunnel::*;
    /// struct Hello;
    /// #[async_trait::async_trait]
    /// impl LocalService for Hello {
    ///     async fn serve(&self, mut stream: TunnelStream) {
    ///         use tokio::io::AsyncWriteExt;
    ///         let _ = stream.write_all(b"hello").await;
    ///     }
    /// }
    /// # fn demo(transport: Arc<dyn Transport>) -> Result<()> {
    /// let agent = Agent::new(transport, Arc::new(AllowList::default()), AgentConfig::default(),
    ///     Metrics::unregistered())?
    ///     .with_local_service("hello", Arc::new(Hello));
    /// # drop(agent); Ok(()) }
    /// ```
    pub fn with_local_service(mut self, name: impl Into<String>, service: Arc<dyn LocalService>) -> Self {
        Arc::make_mut(&mut self.local).insert(name.into(), service);
        self
    }

    /// Whether a session is up now; changes as the agent connects and disconnects.
    pub fn connected(&self) -> watch::Receiver<bool> {
        self.connected.subscribe()
    }

    /// Connects and serves until `shutdown` is cancelled, reconnecting after every failure with
    /// jittered exponential backoff. On shutdown, open streams get
    /// [`AgentConfig::drain_timeout`] to finish; new ones are answered "unavailable".
    ///
    /// # Errors
    /// Only permanent errors (see [`Error::is_retryable`]); everything else is retried.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<()> {
        let mut attempt: u32 = 0;
        loop {
            let connected = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                r = self.transport.connect(&self.cfg.headers) => r,
            };
            match connected {
                Ok(io) => {
                    info!("tunnel connected");
                    let started = Instant::now();
                    let reason = self.serve(io, &shutdown).await;
                    if shutdown.is_cancelled() {
                        info!(%reason, "tunnel agent stopped");
                        return Ok(());
                    }
                    if started.elapsed() >= self.cfg.backoff_max {
                        attempt = 0;
                    }
                    warn!(%reason, "tunnel session ended; reconnecting");
                }
                Err(e) if !e.is_retryable() => return Err(e),
                Err(Error::Busy { retry_after: Some(after) }) => {
                    // The server gave this agent its turn: come back then, not after a backoff that
                    // knows nothing of the server's queue (and would keep growing while it is free).
                    let delay = told_delay(after);
                    debug!(?delay, "the server is admitting others first; waiting for this agent's turn");
                    self.metrics.reconnects.inc();
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(delay) => {}
                    }
                    continue;
                }
                Err(e) => warn!(error = %e, "tunnel connect failed"),
            }
            let delay = backoff_delay(self.cfg.backoff_initial, self.cfg.backoff_max, attempt);
            attempt = attempt.saturating_add(1);
            self.metrics.reconnects.inc();
            debug!(?delay, attempt, "waiting before reconnect");
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    async fn serve(&self, io: BoxedIo, shutdown: &CancellationToken) -> String {
        let tracker = TaskTracker::new();
        let ctx = Arc::new(StreamCtx {
            policy: self.policy.clone(),
            metrics: self.metrics.clone(),
            dial_timeout: self.cfg.dial_timeout,
            header_timeout: self.cfg.header_timeout,
            shutdown: shutdown.clone(),
            local: self.local.clone(),
            dialer: self.dialer.clone(),
        });
        let spawner = tracker.clone();
        let (handle, driver) = session::start(
            io,
            &self.cfg.session,
            crate::mux::Mode::Client,
            move |stream, ended| {
                spawner.spawn(serve_stream(stream, ended.clone(), ctx.clone()));
            },
            Some(Drain { tracker, timeout: self.cfg.drain_timeout }),
            // An agent's session is never retired; the value is unused.
            self.cfg.drain_timeout,
        );
        self.metrics.sessions.inc();
        self.connected.send_replace(true);
        let mut driver = std::pin::pin!(driver);
        let reason = tokio::select! {
            reason = &mut driver => reason,
            () = shutdown.cancelled() => {
                handle.close();
                driver.await
            }
        };
        self.connected.send_replace(false);
        self.metrics.sessions.dec();
        reason
    }
}

/// The longest `Retry-After` an agent waits: a server (or something pretending to be one) cannot
/// park an agent for longer.
const MAX_TOLD_DELAY: Duration = Duration::from_secs(300);

/// The server's `Retry-After` (whole seconds) plus up to a second of jitter, so that the agents given
/// the same second do not arrive in the same millisecond; capped at [`MAX_TOLD_DELAY`].
fn told_delay(retry_after: Duration) -> Duration {
    retry_after.min(MAX_TOLD_DELAY) + Duration::from_secs(1).mul_f64(rand::rng().random_range(0.0..1.0))
}

/// Full-jitter-from-half: a delay between half and all of `initial × 2^attempt`, capped.
fn backoff_delay(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let cap = initial.saturating_mul(2u32.saturating_pow(attempt.min(20))).min(max);
    let half = cap / 2;
    half + cap.mul_f64(rand::rng().random_range(0.0..=0.5))
}

struct StreamCtx {
    policy: Arc<dyn DestinationPolicy>,
    metrics: Metrics,
    dial_timeout: Duration,
    header_timeout: Duration,
    shutdown: CancellationToken,
    local: Arc<HashMap<String, Arc<dyn LocalService>>>,
    dialer: Arc<dyn Dialer>,
}

async fn serve_stream(stream: crate::mux::Stream, ended: SessionEnded, ctx: Arc<StreamCtx>) {
    let mut s = TunnelStream::new(stream, &ended, ctx.metrics.clone(), None);
    let req = match tokio::time::timeout(ctx.header_timeout, dial_header::read_request(&mut s)).await {
        Ok(Ok(req)) => req,
        Ok(Err(e)) => {
            warn!(error = %e, "bad dial request from the server");
            let _ = dial_header::write_reply(&mut s, DialStatus::BadRequest, &e.to_string()).await;
            return;
        }
        Err(_) => {
            let _ = dial_header::write_reply(&mut s, DialStatus::BadRequest, "no dial header in time").await;
            return;
        }
    };
    let (network, address) = (req.network.as_str(), req.address.as_str());
    if ctx.shutdown.is_cancelled() {
        let _ = dial_header::write_reply(&mut s, DialStatus::Unavailable, "agent is shutting down").await;
        return;
    }
    if network == LOCAL_NETWORK {
        let Some(service) = ctx.local.get(address).cloned() else {
            warn!(address, "dial to an unknown local service refused");
            ctx.metrics.dial_error("refused");
            let _ = dial_header::write_reply(&mut s, DialStatus::Refused, "no such local service").await;
            return;
        };
        if dial_header::write_reply(&mut s, DialStatus::Ok, "").await.is_err() {
            return;
        }
        s.start_counting();
        service.serve(s).await;
        return;
    }
    if !ctx.policy.allows(network, address) {
        warn!(network, address, "dial refused by the destination policy");
        ctx.metrics.dial_error("refused");
        let _ = dial_header::write_reply(
            &mut s,
            DialStatus::Refused,
            "destination not allowed by the agent's policy",
        )
        .await;
        return;
    }
    if network != "tcp" {
        let _ = dial_header::write_reply(&mut s, DialStatus::Refused, "only tcp is supported").await;
        return;
    }
    let mut tcp = match ctx.dialer.dial(address, ctx.dial_timeout).await {
        Ok(tcp) => tcp,
        Err(e) => {
            let reason = if e.kind() == std::io::ErrorKind::TimedOut { "timeout" } else { "failed" };
            ctx.metrics.dial_error(reason);
            let _ = dial_header::write_reply(&mut s, DialStatus::Failed, &e.to_string()).await;
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    if dial_header::write_reply(&mut s, DialStatus::Ok, "").await.is_err() {
        return;
    }
    s.start_counting();
    // Half-close aware: EOF on one side shuts down writing on the other, the rest continues.
    if let Err(e) = crate::splice::splice(&mut s, &mut tcp).await {
        debug!(address, error = %e, "tunnel stream ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_jittered_and_capped() {
        let (i, m) = (Duration::from_secs(1), Duration::from_secs(30));
        for attempt in 0..40 {
            let d = backoff_delay(i, m, attempt);
            let cap = (i * 2u32.pow(attempt.min(20))).min(m);
            assert!(d >= cap / 2 && d <= cap, "attempt {attempt}: {d:?} outside [{:?}, {cap:?}]", cap / 2);
        }
        assert!(backoff_delay(i, m, 30) >= Duration::from_secs(15));
    }

    /// An agent told "come back in 5 s" comes back within a second after that, however often it
    /// is told, and a server's `Retry-After` of a day parks it for [`MAX_TOLD_DELAY`] at most.
    #[tokio::test(start_paused = true)]
    async fn a_busy_server_sets_when_the_agent_comes_back() {
        use std::sync::Mutex;

        use crate::transport::MockTransport;

        let attempts = Arc::new(Mutex::new(Vec::new()));
        let mut transport = MockTransport::new();
        let seen = attempts.clone();
        let start = Instant::now();
        transport.expect_connect().returning(move |_| {
            let mut seen = seen.lock().unwrap();
            seen.push(start.elapsed());
            Err(match seen.len() {
                1..=6 => Error::Busy { retry_after: Some(Duration::from_secs(5)) },
                7 => Error::Busy { retry_after: Some(Duration::from_secs(86_400)) },
                _ => Error::Config("stop here".into()),
            })
        });
        let agent = Agent::new(
            Arc::new(transport),
            Arc::new(|_: &str, _: &str| false),
            AgentConfig::default(),
            Metrics::default(),
        )
        .unwrap();
        let err = agent.run(CancellationToken::new()).await.unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
        let attempts = attempts.lock().unwrap();
        // The jitter is under a second, but the timer rounds a deadline up to its next millisecond:
        // a jitter of 0.9995 s comes back after exactly 6 s.
        for pair in attempts.windows(2).take(6) {
            let gap = pair[1] - pair[0];
            assert!(
                gap >= Duration::from_secs(5) && gap <= Duration::from_secs(6),
                "told 5 s, came back after {gap:?}: {attempts:?}"
            );
        }
        let parked = attempts[7] - attempts[6];
        assert!(parked >= MAX_TOLD_DELAY && parked <= MAX_TOLD_DELAY + Duration::from_secs(1), "{parked:?}");
    }
}
