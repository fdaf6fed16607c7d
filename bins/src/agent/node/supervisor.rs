//! The plan's owner on the host: applies the newest plan (files, then stop what changed or left,
//! then start what is new, in plan order), and once a second checks every process — restarting the
//! dead with backoff, running health checks — and publishes the [`NodeStatus`]. On start it adopts the
//! processes a previous run left running. On stop it leaves every process running.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rancher_provision::plan::{NodePlan, NodeStatus, PlanProcess, ProcessStatus};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::process::{self, Running, STOP_GRACE};
use super::state::{Record, Spec, StateDir, log_tail};
use super::{files, health, validate};

/// How often processes are checked.
pub(crate) const TICK: Duration = Duration::from_secs(1);
/// First delay before restarting a dead process; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A process that ran this long before it died is restarted after [`BACKOFF_INITIAL`] again.
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// Lines of its log quoted when a process dies.
const LOG_LINES: usize = 5;

/// The status the API answers with: the supervisor writes it, the plan API reads it and records a
/// refused plan's error in it. The lock is held only to copy or assign.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) status: Mutex<NodeStatus>,
}

impl Shared {
    pub(crate) fn snapshot(&self) -> NodeStatus {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut NodeStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

struct Managed {
    name: String,
    spec: Spec,
    health: Option<rancher_provision::plan::HealthCheck>,
    run: Option<Running>,
    restarts: u32,
    /// The last exit or start failure.
    last_error: Option<String>,
    /// The last health check's failure while running.
    health_error: Option<String>,
    healthy: bool,
    backoff: Duration,
    /// When to (re)start it while it is not running.
    next_start: Option<Instant>,
    /// It ran before: the next start is a restart.
    ran: bool,
    started_at: Option<String>,
}

impl Managed {
    fn new(p: &PlanProcess) -> Managed {
        Managed {
            name: p.name.clone(),
            spec: Spec::from(p),
            health: p.health.clone(),
            run: None,
            restarts: 0,
            last_error: None,
            health_error: None,
            healthy: false,
            backoff: BACKOFF_INITIAL,
            next_start: Some(Instant::now()),
            ran: false,
            started_at: None,
        }
    }

    fn status(&self) -> ProcessStatus {
        let running = self.run.is_some();
        let last_error = match (&self.health_error, running && !self.healthy) {
            (Some(h), true) => Some(h.clone()),
            _ => self.last_error.clone(),
        };
        ProcessStatus {
            name: self.name.clone(),
            pid: self.run.as_ref().map(|r| r.pid),
            running,
            healthy: running && self.healthy,
            restarts: self.restarts,
            started_at: if running { self.started_at.clone() } else { None },
            last_error,
        }
    }

    fn record(&self) -> Option<Record> {
        let r = self.run.as_ref()?;
        Some(Record {
            pid: r.pid,
            start_ticks: r.start_ticks,
            cmdline: r.cmdline.clone(),
            spec: self.spec.clone(),
            restarts: self.restarts,
            started_at: self.started_at.clone(),
        })
    }
}

/// The supervisor's settings.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) state: StateDir,
    pub(crate) roots: Vec<PathBuf>,
}

pub(crate) struct Supervisor {
    cfg: Config,
    procs: Vec<Managed>,
    shared: Arc<Shared>,
    saved: BTreeMap<String, Record>,
}

impl Supervisor {
    /// Adopts what the previous run left running (as recorded in the state directory).
    pub(crate) fn recover(cfg: Config, shared: Arc<Shared>) -> (Supervisor, Option<NodePlan>) {
        let saved = cfg.state.load_records();
        let mut procs = Vec::new();
        for (name, rec) in &saved {
            match process::adopt(rec) {
                Some(run) => {
                    info!(process = %name, pid = rec.pid, "adopted a process still running from before");
                    procs.push(Managed {
                        name: name.clone(),
                        spec: rec.spec.clone(),
                        health: None,
                        run: Some(run),
                        restarts: rec.restarts,
                        last_error: None,
                        health_error: None,
                        healthy: false,
                        backoff: BACKOFF_INITIAL,
                        next_start: None,
                        ran: true,
                        started_at: rec.started_at.clone(),
                    });
                }
                None => info!(process = %name, pid = rec.pid, "a recorded process is gone; it starts anew"),
            }
        }
        let plan = cfg.state.load_plan();
        let mut s = Supervisor { cfg, procs, shared, saved };
        s.persist_records();
        (s, plan)
    }

    /// Applies plans from `plans` and supervises until `stop`; the processes keep running after.
    pub(crate) async fn run(
        mut self,
        initial: Option<NodePlan>,
        mut plans: watch::Receiver<Option<NodePlan>>,
        stop: CancellationToken,
    ) {
        if let Some(plan) = initial {
            self.apply(&plan).await;
        }
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                changed = plans.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let plan = plans.borrow_and_update().clone();
                    if let Some(plan) = plan {
                        self.apply(&plan).await;
                    }
                }
                _ = tick.tick() => self.supervise().await,
            }
        }
        info!("node agent stopping; the plan's processes keep running");
    }

    /// Writes the files, stops what changed or left, starts what is new; records the outcome.
    async fn apply(&mut self, plan: &NodePlan) {
        info!(revision = %plan.revision, "applying a plan");
        if let Err(e) = self.try_apply(plan).await {
            warn!(revision = %plan.revision, error = %e, "the plan could not be applied");
            self.shared.update(|s| s.error = Some(e));
            return;
        }
        if let Err(e) = self.cfg.state.save_plan(plan) {
            warn!(error = %e, "recording the applied plan failed");
        }
        let revision = plan.revision.clone();
        self.shared.update(|s| {
            s.applied_revision = revision;
            s.error = None;
        });
        self.supervise().await;
    }

    async fn try_apply(&mut self, plan: &NodePlan) -> Result<(), String> {
        validate::check(plan, &self.cfg.roots).map_err(|e| e.to_string())?;
        for f in &plan.files {
            files::write(f)?;
        }
        for p in &plan.processes {
            match std::fs::metadata(&p.binary) {
                Ok(m) if m.is_file() => {}
                Ok(_) => return Err(format!("process {:?}: binary {:?} is not a file", p.name, p.binary)),
                Err(e) => return Err(format!("process {:?}: binary {:?}: {e}", p.name, p.binary)),
            }
        }
        // Stop what left the plan or changed how it runs; keep the rest (a changed health check
        // alone applies in place).
        let mut kept: BTreeMap<String, Managed> = BTreeMap::new();
        for mut m in std::mem::take(&mut self.procs) {
            match plan.processes.iter().find(|p| p.name == m.name) {
                Some(p) if Spec::from(p) == m.spec => {
                    m.health = p.health.clone();
                    kept.insert(m.name.clone(), m);
                }
                other => {
                    let why = if other.is_some() { "its spec changed" } else { "it left the plan" };
                    if let Some(run) = m.run.take() {
                        info!(process = %m.name, pid = run.pid, why, "stopping");
                        run.stop(STOP_GRACE).await;
                    }
                    self.persist_without(&m.name);
                }
            }
        }
        for p in &plan.processes {
            let m = kept.remove(&p.name).unwrap_or_else(|| Managed::new(p));
            self.procs.push(m);
        }
        for i in 0..self.procs.len() {
            if self.procs[i].run.is_none() {
                self.start(i).await;
            }
        }
        self.persist_records();
        Ok(())
    }

    async fn start(&mut self, i: usize) {
        let log = self.cfg.state.log_path(&self.procs[i].name);
        let m = &mut self.procs[i];
        match process::start(&m.spec, &log).await {
            Ok(run) => {
                info!(process = %m.name, pid = run.pid, "started");
                if m.ran {
                    m.restarts += 1;
                }
                m.ran = true;
                m.healthy = false;
                m.health_error = None;
                m.next_start = None;
                m.started_at = Some(jiff::Timestamp::now().to_string());
                m.run = Some(run);
            }
            Err(e) => {
                warn!(process = %m.name, error = %e, retry_in = ?m.backoff, "start failed");
                m.last_error = Some(e);
                m.next_start = Some(Instant::now() + m.backoff);
                m.backoff = (m.backoff * 2).min(BACKOFF_MAX);
            }
        }
        self.persist_records();
    }

    /// One round: notice deaths, start what is due, check health, publish.
    async fn supervise(&mut self) {
        let now = Instant::now();
        for i in 0..self.procs.len() {
            let log = self.cfg.state.log_path(&self.procs[i].name);
            let m = &mut self.procs[i];
            if let Some(run) = &mut m.run
                && let Some(how) = run.exited()
            {
                if run.since.elapsed() >= STABLE_AFTER {
                    m.backoff = BACKOFF_INITIAL;
                }
                let tail = log_tail(&log, LOG_LINES);
                warn!(process = %m.name, pid = run.pid, %how, retry_in = ?m.backoff, "process died");
                m.last_error = Some(if tail.is_empty() {
                    how
                } else {
                    format!("{how}; last lines of its log:\n{tail}")
                });
                m.run = None;
                m.healthy = false;
                m.next_start = Some(now + m.backoff);
                m.backoff = (m.backoff * 2).min(BACKOFF_MAX);
                self.persist_records();
            }
            if self.procs[i].run.is_none() && self.procs[i].next_start.is_some_and(|t| t <= now) {
                self.start(i).await;
            }
        }
        let checks = self.procs.iter().map(|m| {
            let check = m.health.clone().filter(|_| m.run.is_some());
            let running = m.run.is_some();
            async move {
                match check {
                    Some(c) => health::check(&c).await,
                    None if running => Ok(()),
                    None => Err("not running".to_owned()),
                }
            }
        });
        let results = futures::future::join_all(checks).await;
        for (m, r) in self.procs.iter_mut().zip(results) {
            m.healthy = r.is_ok() && m.run.is_some();
            m.health_error = r.err().filter(|_| m.run.is_some());
        }
        let processes = self.procs.iter().map(Managed::status).collect();
        self.shared.update(|s| s.processes = processes);
    }

    fn persist_without(&mut self, name: &str) {
        let mut records = self.saved.clone();
        if records.remove(name).is_some() {
            self.write_records(records);
        }
    }

    fn persist_records(&mut self) {
        let records: BTreeMap<String, Record> =
            self.procs.iter().filter_map(|m| Some((m.name.clone(), m.record()?))).collect();
        self.write_records(records);
    }

    fn write_records(&mut self, records: BTreeMap<String, Record>) {
        if records == self.saved {
            return;
        }
        match self.cfg.state.save_records(&records) {
            Ok(()) => self.saved = records,
            Err(e) => warn!(error = %e, "recording the processes failed; a restart may not adopt them"),
        }
    }
}
