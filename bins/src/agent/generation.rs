//! One set of credentials' worth of the agent's work: the tunnel session that carries them to the
//! server (in the params it presents), the reporter reading the cluster with them, and the probe of
//! the API servers. A cluster agent whose credentials change on disk starts a new [`Generation`]
//! with the new ones and stops the old once the new session is up ([`super::reload`]).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use rancher_tunnel::{
    Agent, AgentConfig, AllowList, LocalService, Metrics, PARAMS_HEADER, SessionConfig, TOKEN_HEADER,
    Transport, WsTransport,
};
use rustls::ClientConfig;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::api_servers::ApiServers;
use super::downstream::Downstream;
use super::reload::{KubeconfigWatch, Retirable};
use super::{AgentError, SHUTDOWN_DRAIN, downstream, header, report};
use crate::protocol::connect::TunnelParams;

/// What every generation of the tunnel shares.
pub(crate) struct TunnelSetup {
    /// The server's base URL, without a trailing slash.
    pub(crate) base: String,
    /// The registration token.
    pub(crate) token: String,
    /// Trusts the server's CA only.
    pub(crate) tls: Arc<ClientConfig>,
    /// A transport given from code instead of the WebSocket one.
    pub(crate) transport: Option<Arc<dyn Transport>>,
    pub(crate) session_config: SessionConfig,
    pub(crate) metrics: Metrics,
    /// `--api-server-alternate`.
    pub(crate) alternates: Vec<String>,
    /// The node agent's plan service.
    pub(crate) local_service: Option<(&'static str, Arc<dyn LocalService>)>,
    /// Runs each generation's session and streams on a thread of their own ([`spawn_tunnel`]).
    pub(crate) own_thread: bool,
}

/// The tasks of one generation.
pub(crate) struct Generation {
    stop: CancellationToken,
    /// Stops the reporter and the probe only (a retired generation's tunnel lives on a while).
    side_work: CancellationToken,
    transport: Arc<Retirable>,
    connected: watch::Receiver<bool>,
    tunnel: Option<JoinHandle<Result<(), AgentError>>>,
    reporter: Option<JoinHandle<()>>,
    probe: Option<JoinHandle<()>>,
}

impl TunnelSetup {
    /// Starts a generation presenting `params`: with `downstream`, its reporter and (given
    /// alternates) its API server probe too. It stops with `stop`, or [`Generation::stop`].
    ///
    /// # Errors
    /// [`AgentError::Config`] or [`AgentError::Tunnel`] for settings the tunnel refuses.
    pub(crate) fn start(
        &self,
        downstream: Option<Downstream>,
        params: &TunnelParams,
        stop: CancellationToken,
    ) -> Result<Generation, AgentError> {
        let api_address = params.cluster.as_ref().map(|c| c.address.clone());
        info!(
            api_server = api_address.as_deref().unwrap_or("-"),
            "destination policy: only the cluster's API server"
        );
        let policy = Arc::new(AllowList::new(api_address.clone()));
        let api_servers = match (&downstream, api_address.as_deref()) {
            (Some(d), Some(primary)) if !self.alternates.is_empty() => {
                info!(alternates = ?self.alternates, "API server streams fail over");
                Some((Arc::new(ApiServers::new(primary, &self.alternates)?), d.config.clone()))
            }
            _ => None,
        };

        let mut headers = HeaderMap::new();
        headers.insert(TOKEN_HEADER, header(&self.token, "CATTLE_TOKEN")?);
        headers.insert(PARAMS_HEADER, header(&params.encode(), "the tunnel params")?);
        let inner: Arc<dyn Transport> = match &self.transport {
            Some(t) => t.clone(),
            None => {
                let connect_url = format!("{}{}", self.base, rancher_tunnel::CONNECT_PATH);
                Arc::new(
                    WsTransport::new(&connect_url, self.tls.clone(), self.session_config.clone())
                        .map_err(AgentError::Tunnel)?,
                )
            }
        };
        let transport = Retirable::new(inner);
        let mut cfg = AgentConfig::default();
        cfg.headers = headers;
        cfg.session = self.session_config.clone();
        // Rancher's agent retries every few seconds; a server back from a restart should see its
        // agents within seconds, not after a 30 s backoff.
        cfg.backoff_initial = Duration::from_millis(500);
        cfg.backoff_max = Duration::from_secs(10);
        cfg.drain_timeout = SHUTDOWN_DRAIN;
        let mut agent =
            Agent::new(transport.clone(), policy, cfg, self.metrics.clone()).map_err(AgentError::Tunnel)?;
        if let Some((servers, _)) = &api_servers {
            agent = agent.with_dialer(servers.clone());
        }
        if let Some((name, service)) = &self.local_service {
            agent = agent.with_local_service(*name, service.clone());
        }
        let connected = agent.connected();
        let side_work = stop.child_token();

        let reporter = match downstream {
            Some(d) => {
                let http = reqwest::Client::builder()
                    .tls_backend_preconfigured((*self.tls).clone())
                    .connect_timeout(Duration::from_secs(10))
                    .timeout(Duration::from_secs(30))
                    // A busy cluster reports every few seconds and keeps its connection; a quiet
                    // one (most of a big fleet, reporting every few minutes) does not hold one open
                    // on the server in between.
                    .pool_idle_timeout(REPORT_CONNECTION_IDLE)
                    .build()
                    .map_err(|e| AgentError::Config(format!("building the report client: {e}")))?;
                let r = report::Reporter {
                    http,
                    url: format!("{}{}", self.base, crate::protocol::report::REPORT_PATH),
                    token: self.token.clone(),
                    client: d.client,
                };
                Some(tokio::spawn(r.run(agent.connected(), side_work.clone())))
            }
            None => None,
        };
        let probe = api_servers.map(|(servers, config)| servers.probe(config, side_work.clone()));
        let tunnel_stop = stop.clone();
        let tunnel = spawn_tunnel(self.own_thread, async move {
            let result = agent.run(tunnel_stop.clone()).await.map_err(AgentError::Tunnel);
            // A tunnel that ends by itself (a permanent error) takes the generation's other tasks along.
            tunnel_stop.cancel();
            result
        });
        Ok(Generation { stop, side_work, transport, connected, tunnel: Some(tunnel), reporter, probe })
    }
}

impl Generation {
    /// Waits until its tunnel session is up (now or later).
    pub(crate) async fn connected(&mut self) {
        let _ = self.connected.wait_for(|up| *up).await;
    }

    /// Its session, once lost, is not dialed again: a newer generation's takes its place.
    pub(crate) fn retire(&self) {
        self.transport.retire();
    }

    /// Once a newer generation's session is up: stops reporting and probing, and lets the session
    /// serve what is under way on it until the server closes it (it retires a replaced session
    /// once its streams are done), `within` at most; then stops. In the background.
    pub(crate) fn hand_over(mut self, within: Duration) {
        self.side_work.cancel();
        tokio::spawn(async move {
            if tokio::time::timeout(within, self.finished()).await.is_err() {
                info!(?within, "the old session is still open; it closes now");
            }
            let _ = self.stop().await;
        });
    }

    /// Waits until its tunnel ends (on its stop, or a permanent error) and returns how it ended.
    pub(crate) async fn finished(&mut self) -> Result<(), AgentError> {
        let Some(tunnel) = self.tunnel.as_mut() else { return std::future::pending().await };
        let result =
            tunnel.await.unwrap_or_else(|e| Err(AgentError::Config(format!("the tunnel task failed: {e}"))));
        self.tunnel = None;
        result
    }

    /// Waits until its tunnel ends, then for its other tasks; returns how the tunnel ended.
    pub(crate) async fn stop_when_finished(mut self) -> Result<(), AgentError> {
        let result = self.finished().await;
        let _ = self.stop().await;
        result
    }

    /// Stops every task of the generation and waits for them; returns how its tunnel ended.
    pub(crate) async fn stop(mut self) -> Result<(), AgentError> {
        self.stop.cancel();
        let result = if self.tunnel.is_some() { self.finished().await } else { Ok(()) };
        for task in [self.reporter.take(), self.probe.take()].into_iter().flatten() {
            let _ = task.await;
        }
        result
    }
}

/// How long a tunnel thread waits for blocking work of its runtime (a DNS lookup) when it ends.
const TUNNEL_THREAD_SHUTDOWN: Duration = Duration::from_secs(1);

/// Starts `run`, a generation's tunnel: as a task of the runtime it is called from or, with
/// `own_thread`, on a thread of its own with a single-threaded runtime — where the session's driver
/// and every stream it serves run too (they are spawned from `run`). A proxied request's bytes then
/// cross one thread, from the session to the API server's connection and back, instead of waking
/// the runtime's workers in turn: about a sixth less of the agent's CPU per request
/// (`benches/README.md`). The thread ends with `run`, or as soon as nobody waits for it (the
/// returned task aborted or its runtime shut down), dropping `run` and its streams; the returned
/// task ends once they are dropped.
fn spawn_tunnel<F>(own_thread: bool, run: F) -> JoinHandle<Result<(), AgentError>>
where
    F: Future<Output = Result<(), AgentError>> + Send + 'static,
{
    if !own_thread {
        return tokio::spawn(run);
    }
    let (done, result) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new().name("tunnel".into()).spawn(move || {
        let mut done = done;
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(e) => {
                let _ = done.send(Err(AgentError::Config(format!("starting the tunnel's runtime: {e}"))));
                return;
            }
        };
        let outcome = runtime.block_on(async {
            tokio::select! {
                result = run => Some(result),
                () = done.closed() => None,
            }
        });
        // The streams still open are dropped before the tunnel is reported ended (a blocking
        // lookup still running is left to finish on its own).
        runtime.shutdown_timeout(TUNNEL_THREAD_SHUTDOWN);
        if let Some(result) = outcome {
            let _ = done.send(result);
        }
    });
    let thread = thread.map_err(|e| AgentError::Config(format!("starting the tunnel's thread: {e}")));
    tokio::spawn(async move {
        thread?;
        result.await.unwrap_or_else(|_| Err(AgentError::Config("the tunnel's thread failed".into())))
    })
}

/// How long the report client keeps an unused connection to the server (reports follow changes
/// within seconds, or come every few minutes).
const REPORT_CONNECTION_IDLE: Duration = Duration::from_secs(15);

/// How long a new generation may take to connect before the old one stops anyway.
const TAKEOVER_WITHIN: Duration = Duration::from_secs(30);

/// How long the old generation's session may serve what is under way on it once the new one is
/// up: a little longer than the server keeps a replaced session
/// ([`rancher_tunnel::SessionConfig::replaced_drain`]'s default), so that the server ends it.
const HAND_OVER_WITHIN: Duration = Duration::from_secs(35);

/// Runs `current` until `stop` or its tunnel's end; each time the credentials change on disk
/// (`reloads`), connects again with them through a new generation and, once its session is up (the
/// server then has the new params, and retires the old session), hands over from the old
/// generation ([`Generation::hand_over`]). Returns how the last generation's tunnel ended.
pub(crate) async fn follow_credentials(
    setup: &TunnelSetup,
    mut current: Generation,
    mut reloads: KubeconfigWatch,
    kubeconfig: Option<&Path>,
    stop: &CancellationToken,
) -> Result<(), AgentError> {
    let mut failing: Option<[u8; 32]> = None;
    loop {
        let digest = tokio::select! {
            result = current.finished() => {
                let _ = current.stop().await;
                return result;
            }
            digest = reloads.changed() => digest,
        };
        let connected = tokio::select! {
            () = stop.cancelled() => continue,
            d = downstream::connect_any(kubeconfig, &setup.alternates) => d,
        };
        let d = match connected {
            Ok(d) => d,
            Err(e) => {
                // Tried again on the next poll; said once per change.
                if failing.replace(digest) != Some(digest) {
                    warn!(error = %e, "the changed credentials cannot be used yet; the session keeps the old ones");
                }
                continue;
            }
        };
        failing = None;
        info!("the credentials changed: a session with the new ones starts before the old one closes");
        let params = TunnelParams { cluster: Some(d.params.clone()), node: None };
        current.retire();
        let mut next = setup.start(Some(d), &params, stop.child_token())?;
        let taken_over = tokio::select! {
            () = next.connected() => {
                info!("the session with the new credentials is up; the old one finishes what is under way");
                true
            }
            () = tokio::time::sleep(TAKEOVER_WITHIN) => {
                warn!(within = ?TAKEOVER_WITHIN, "the session with the new credentials is not up yet; the old one closes anyway");
                false
            }
            () = stop.cancelled() => false,
        };
        reloads.taken(digest);
        let old = std::mem::replace(&mut current, next);
        if taken_over {
            old.hand_over(HAND_OVER_WITHIN);
        } else {
            let _ = old.stop().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread_name() -> Option<String> {
        std::thread::current().name().map(str::to_owned)
    }

    #[tokio::test]
    async fn a_tunnel_on_its_own_thread_runs_there_with_what_it_spawns_and_returns_its_result() {
        let ran = spawn_tunnel(true, async {
            let spawned = tokio::spawn(async { thread_name() }).await.expect("the spawned task");
            Err(AgentError::Server(format!("{:?} {:?}", thread_name(), spawned)))
        });
        let err = ran.await.expect("the waiting task").expect_err("the tunnel's own result");
        assert_eq!(err.to_string(), r#"server: Some("tunnel") Some("tunnel")"#);

        let here = spawn_tunnel(false, async { Err(AgentError::Server(format!("{:?}", thread_name()))) });
        let err = here.await.expect("the task").expect_err("its result");
        assert_ne!(err.to_string(), r#"server: Some("tunnel")"#);
    }

    #[tokio::test]
    async fn a_tunnel_thread_nobody_waits_for_stops_and_drops_its_work() {
        struct Dropped(std::sync::mpsc::Sender<()>);
        impl Drop for Dropped {
            fn drop(&mut self) {
                let _ = self.0.send(());
            }
        }
        let (dropped, was_dropped) = std::sync::mpsc::channel();
        let guard = Dropped(dropped);
        let handle = spawn_tunnel(true, async move {
            let _guard = guard;
            std::future::pending().await
        });
        tokio::task::yield_now().await;
        assert!(was_dropped.try_recv().is_err(), "the tunnel runs while it is waited for");
        handle.abort();
        let dropped = tokio::task::spawn_blocking(move || was_dropped.recv_timeout(Duration::from_secs(10)));
        assert!(dropped.await.expect("the waiter").is_ok(), "the thread dropped the tunnel's future");
    }

    #[tokio::test]
    async fn a_tunnel_thread_that_panics_is_a_failed_tunnel() {
        let handle = spawn_tunnel(true, async { panic!("a bug") });
        let err = handle.await.expect("the waiting task").expect_err("a failure");
        assert_eq!(err.to_string(), "configuration: the tunnel's thread failed");
    }
}
