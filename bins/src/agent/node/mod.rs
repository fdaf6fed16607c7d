//! The node agent's node work: it serves the plan API in-process through its tunnel session
//! ([`api`]), writes the plan's files and keeps its processes running ([`supervisor`]), adopting after
//! its own restart the processes still running ([`state`], [`procfs`]).
//!
//! Processes run detached from the node agent: stopping or killing it (even SIGKILL) leaves them
//! running, and the next node agent adopts them instead of starting duplicates.

mod api;
mod files;
mod health;
mod process;
mod procfs;
mod state;
mod supervisor;
mod validate;

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use rancher_tunnel::LocalService;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::AgentError;

/// Where the node agent keeps its state unless told otherwise (`--state-dir`).
pub(crate) const DEFAULT_STATE_DIR: &str = "/var/lib/rancher/node-agent";

/// Checks the allowed roots: absolute, without `..`; none given means `/`.
pub(crate) fn checked_roots(roots: &[PathBuf]) -> Result<Vec<PathBuf>, AgentError> {
    if roots.is_empty() {
        return Ok(vec![PathBuf::from("/")]);
    }
    roots
        .iter()
        .map(|r| {
            if !r.is_absolute() || r.components().any(|c| matches!(c, Component::ParentDir)) {
                return Err(AgentError::Config(format!(
                    "--plan-root {} must be an absolute path without \"..\"",
                    r.display()
                )));
            }
            Ok(r.clone())
        })
        .collect()
}

/// Stops the processes recorded in `state_dir` that still run as recorded and forgets the records
/// (see [`stop_node_processes`](crate::agent::stop_node_processes)).
pub(crate) async fn stop_recorded(state_dir: &Path) -> Result<Vec<String>, AgentError> {
    if !state_dir.is_dir() {
        return Ok(Vec::new());
    }
    let state = state::StateDir::open(state_dir).map_err(AgentError::Config)?;
    let mut stopped = Vec::new();
    for (name, record) in state.load_records() {
        if let Some(running) = process::adopt(&record) {
            running.stop(process::STOP_GRACE).await;
            stopped.push(name);
        }
    }
    state.save_records(&Default::default()).map_err(AgentError::Config)?;
    Ok(stopped)
}

/// The running node work: the plan API to register with the tunnel agent, and the supervisor's task
/// (it ends when `stop` is cancelled, leaving the processes running).
pub(crate) struct NodeWork {
    pub(crate) service: Arc<dyn LocalService>,
    pub(crate) task: JoinHandle<()>,
}

/// Opens the state directory, adopts what still runs, re-applies the last plan and starts
/// supervising.
///
/// # Errors
/// [`AgentError::Config`] when the state directory cannot be made.
pub(crate) fn start(
    state_dir: &Path,
    roots: Vec<PathBuf>,
    stop: CancellationToken,
) -> Result<NodeWork, AgentError> {
    let state = state::StateDir::open(state_dir).map_err(AgentError::Config)?;
    let shared = Arc::new(supervisor::Shared::default());
    let roots: Arc<[PathBuf]> = roots.into();
    let cfg = supervisor::Config { state, roots: roots.to_vec() };
    let (sup, initial) = supervisor::Supervisor::recover(cfg, shared.clone());
    let (plans, rx) = watch::channel(None);
    let task = tokio::spawn(sup.run(initial, rx, stop));
    let service = Arc::new(api::PlanApi { shared, plans, roots });
    Ok(NodeWork { service, task })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::state::{Record, Spec, StateDir};
    use super::*;

    #[tokio::test]
    async fn stopping_the_recorded_processes_stops_only_those_still_as_recorded_and_forgets_them() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("state");
        assert!(stop_recorded(&state_dir).await.unwrap().is_empty(), "no state: nothing to stop");
        let state = StateDir::open(&state_dir).unwrap();
        let spec = Spec { binary: "/bin/sleep".into(), args: vec!["60".into()], ..Default::default() };
        let running = process::start(&spec, &state.log_path("sleeper")).await.unwrap();
        let record = |start_ticks| Record {
            pid: running.pid,
            start_ticks,
            cmdline: running.cmdline.clone(),
            spec: spec.clone(),
            restarts: 0,
            started_at: None,
        };
        // Another record naming the same pid with another start time: a recycled pid, left alone.
        let records = BTreeMap::from([
            ("recycled".to_owned(), record(running.start_ticks + 1)),
            ("sleeper".to_owned(), record(running.start_ticks)),
        ]);
        state.save_records(&records).unwrap();
        let pid = running.pid;
        assert_eq!(stop_recorded(&state_dir).await.unwrap(), ["sleeper"]);
        assert!(!procfs::is_same(pid, running.start_ticks), "the sleeper still runs");
        assert!(state.load_records().is_empty());
    }
}
