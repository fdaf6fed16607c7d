//! Leader election over a [`Lease`] in the store, for the work that must run on one server of
//! several sharing a store — the way Kubernetes' controller manager elects over a
//! `coordination.k8s.io` Lease (client-go's `leaderelection`).
//!
//! A candidate reads the lease every `retry_period`. It takes the lease when nobody holds it, or when
//! the holder has not renewed it for `lease_duration` as this candidate's own clock measures from the
//! moment it saw the last change (so the servers' clocks need not agree). Every write is a
//! compare-and-swap on the lease's `resourceVersion`: of two candidates only one wins. The leader
//! renews every `retry_period`; when it has not renewed for `renew_deadline` (shorter than the lease
//! duration: it steps down before anyone may take over) it stops leading. On stop it releases the
//! lease, so that another candidate takes over at its next try rather than after the lease runs out.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::sync::Arc;
//! use rancher_core::controller::LeaderElection;
//! use rancher_core::store::MemoryStore;
//! use tokio_util::sync::CancellationToken;
//!
//! let store = Arc::new(MemoryStore::new());
//! let election = LeaderElection::new(store, "controllers", "server-a");
//! let mut leader = election.leader();
//! let stop = CancellationToken::new();
//! let running = tokio::spawn(election.run(stop.clone(), |term: CancellationToken| async move {
//!     // Run the singletons until `term` is cancelled (leadership lost, or stop).
//!     term.cancelled().await;
//! }));
//! leader.wait_for(|l| l.as_deref() == Some("server-a")).await.unwrap();
//! stop.cancel();
//! running.await.unwrap();
//! # }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Resource;
use crate::model::{Lease, LeaseSpec};
use crate::store::{Api, Store, StoreError, StoreResult};

/// How long a lease lasts and how often it is tried and renewed. The defaults are Kubernetes'
/// controller manager's: 15 s, 10 s, 2 s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTiming {
    /// How long another candidate waits, from the last change it saw, before taking the lease over.
    pub lease_duration: Duration,
    /// How long the leader keeps leading without a successful renewal.
    pub renew_deadline: Duration,
    /// How often a candidate tries, and the leader renews.
    pub retry_period: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        LeaseTiming {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// The timing given to [`LeaderElection::timing`] does not fit together.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "lease timing: need lease duration ({lease_duration:?}) > renew deadline ({renew_deadline:?}) > retry \
     period ({retry_period:?}) > 0, the lease duration in whole seconds"
)]
pub struct LeaseTimingError {
    lease_duration: Duration,
    renew_deadline: Duration,
    retry_period: Duration,
}

/// One candidate for the leadership of one lease; see the module documentation.
pub struct LeaderElection {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: LeaseTiming,
    leader: watch::Sender<Option<String>>,
}

impl std::fmt::Debug for LeaderElection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderElection")
            .field("name", &self.name)
            .field("identity", &self.identity)
            .field("timing", &self.timing)
            .finish_non_exhaustive()
    }
}

/// The last version of the lease a candidate saw, and when (by its own clock).
struct Observed {
    resource_version: String,
    at: Instant,
}

impl LeaderElection {
    /// A candidate called `identity` (unique among the servers) for the lease `name`.
    pub fn new(store: Arc<dyn Store>, name: &str, identity: &str) -> Self {
        LeaderElection {
            api: Api::all(store),
            name: name.to_owned(),
            identity: identity.to_owned(),
            timing: LeaseTiming::default(),
            leader: watch::channel(None).0,
        }
    }

    /// Other timing than the default.
    ///
    /// # Errors
    /// [`LeaseTimingError`] unless lease duration > renew deadline > retry period > 0 and the lease
    /// duration is whole seconds (the lease records seconds).
    pub fn timing(mut self, timing: LeaseTiming) -> Result<Self, LeaseTimingError> {
        let fits = timing.lease_duration > timing.renew_deadline
            && timing.renew_deadline > timing.retry_period
            && !timing.retry_period.is_zero()
            && timing.lease_duration.subsec_nanos() == 0;
        if !fits {
            return Err(LeaseTimingError {
                lease_duration: timing.lease_duration,
                renew_deadline: timing.renew_deadline,
                retry_period: timing.retry_period,
            });
        }
        self.timing = timing;
        Ok(self)
    }

    /// Who holds the lease, as this candidate last saw it (`None` until it has read it, or while
    /// nobody holds it).
    pub fn leader(&self) -> watch::Receiver<Option<String>> {
        self.leader.subscribe()
    }

    /// Stands for the lease until `stop`. Each time it wins, `lead` is called with a token cancelled
    /// when the leadership ends (lost, or `stop`); the future it returns should then finish soon, and
    /// is waited for before this candidate stands again or returns. On `stop` the lease is released.
    pub async fn run<F, Fut>(self, stop: CancellationToken, mut lead: F)
    where
        F: FnMut(CancellationToken) -> Fut,
        Fut: Future<Output = ()>,
    {
        let mut observed: Option<Observed> = None;
        loop {
            // Stand until elected.
            loop {
                match self.try_acquire_or_renew(&mut observed).await {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e) => tracing::warn!(lease = %self.name, "reading the lease: {e}"),
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(jittered(self.timing.retry_period)) => {}
                }
            }
            tracing::info!(lease = %self.name, identity = %self.identity, "became the leader");
            let term = stop.child_token();
            let leading = lead(term.clone());
            let renewing = self.keep_renewing(&mut observed, &stop);
            tokio::pin!(leading);
            tokio::select! {
                () = &mut leading => {
                    term.cancel();
                    self.release().await;
                    return;
                }
                () = renewing => {}
            }
            term.cancel();
            leading.await;
            if stop.is_cancelled() {
                self.release().await;
                return;
            }
            tracing::warn!(lease = %self.name, identity = %self.identity, "lost the leadership");
            self.leader.send_replace(None);
        }
    }

    /// Renews every retry period; returns when `stop` is cancelled or no renewal has succeeded for
    /// the renew deadline.
    async fn keep_renewing(&self, observed: &mut Option<Observed>, stop: &CancellationToken) {
        let mut renewed = Instant::now();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.timing.retry_period) => {}
            }
            let attempt = tokio::time::timeout_at(
                renewed + self.timing.renew_deadline,
                self.try_acquire_or_renew(observed),
            )
            .await;
            match attempt {
                Ok(Ok(true)) => renewed = Instant::now(),
                Ok(Ok(false)) => return,
                Ok(Err(e)) => tracing::warn!(lease = %self.name, "renewing the lease: {e}"),
                Err(_) => {}
            }
            if renewed.elapsed() >= self.timing.renew_deadline {
                return;
            }
        }
    }

    /// One try: takes the lease if it is free or has run out, renews it if held. `Ok(true)` when this
    /// candidate holds it afterwards.
    async fn try_acquire_or_renew(&self, observed: &mut Option<Observed>) -> StoreResult<bool> {
        let now = Timestamp::now();
        let Some(lease) = self.api.get_opt(&self.name).await? else {
            let fresh = Lease::new(
                &self.name,
                LeaseSpec {
                    holder_identity: self.identity.clone(),
                    lease_duration_seconds: self.duration_seconds(),
                    acquire_time: Some(now),
                    renew_time: Some(now),
                    lease_transitions: 0,
                },
            );
            return match self.api.create(&fresh).await {
                Ok(created) => Ok(self.observe(observed, &created)),
                Err(StoreError::AlreadyExists { .. }) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let changed = observed.as_ref().is_none_or(|o| o.resource_version != lease.meta().resource_version);
        if changed {
            self.observe(observed, &lease);
        }
        let holder = &lease.spec.holder_identity;
        let since_change = observed.as_ref().map_or(Duration::ZERO, |o| o.at.elapsed());
        let running = Duration::from_secs(u64::from(lease.spec.lease_duration_seconds));
        if !holder.is_empty() && *holder != self.identity && since_change < running {
            return Ok(false);
        }
        let mut next = lease.clone();
        if *holder != self.identity {
            next.spec.holder_identity = self.identity.clone();
            next.spec.acquire_time = Some(now);
            next.spec.lease_transitions = lease.spec.lease_transitions.saturating_add(1);
        }
        next.spec.renew_time = Some(now);
        next.spec.lease_duration_seconds = self.duration_seconds();
        match self.api.update(&next).await {
            Ok(updated) => Ok(self.observe(observed, &updated)),
            // Another candidate wrote first.
            Err(StoreError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Records `lease` as the last version seen; true when this candidate holds it.
    fn observe(&self, observed: &mut Option<Observed>, lease: &Lease) -> bool {
        *observed =
            Some(Observed { resource_version: lease.meta().resource_version.clone(), at: Instant::now() });
        let holder = &lease.spec.holder_identity;
        self.leader.send_if_modified(|seen| {
            let now = (!holder.is_empty()).then(|| holder.clone());
            let modified = *seen != now;
            *seen = now;
            modified
        });
        *holder == self.identity
    }

    /// Gives the lease up if this candidate still holds it, so another may take it at once.
    async fn release(&self) {
        let released = async {
            let mut lease = self.api.get(&self.name).await?;
            if lease.spec.holder_identity != self.identity {
                return Ok(());
            }
            lease.spec.holder_identity.clear();
            lease.spec.renew_time = Some(Timestamp::now());
            self.api.update(&lease).await.map(drop)
        };
        match tokio::time::timeout(self.timing.retry_period, released).await {
            Ok(Ok(())) => tracing::info!(lease = %self.name, identity = %self.identity, "released the lease"),
            Ok(Err(e)) => tracing::warn!(lease = %self.name, "releasing the lease: {e}"),
            Err(_) => {
                tracing::warn!(lease = %self.name, "releasing the lease: the store did not answer in time")
            }
        }
        self.leader.send_replace(None);
    }

    fn duration_seconds(&self) -> u32 {
        u32::try_from(self.timing.lease_duration.as_secs()).unwrap_or(u32::MAX)
    }
}

/// `period` plus up to a fifth more, so that candidates started together do not try in step.
fn jittered(period: Duration) -> Duration {
    period + period.mul_f64(rand::random::<f64>() * 0.2)
}

#[cfg(test)]
mod tests;
