//! How the hosts of a run are: which process keeps failing, which host is not healthy yet and why —
//! from the statuses their node agents report.

use std::collections::BTreeMap;

use rancher_provision::plan::{NodePlan, NodeStatus, ProcessStatus};

/// How often a process may die before the run gives up on it (its node agent goes on restarting it
/// with its own backoff: 1 s, 2 s, 4 s … so this is about 7 s of failing).
const CRASH_LIMIT: u32 = 3;

/// The order in which the processes depend on each other: etcd first, then the API server, then
/// the rest (which cannot work, and may exit, while the API server is not up).
fn tier(process: &str) -> u8 {
    match process {
        "etcd" => 0,
        "kube-apiserver" => 1,
        _ => 2,
    }
}

/// The first process that keeps dying (down now, restarted at least [`CRASH_LIMIT`] times) although
/// everything it depends on is healthy on every host: `host NAME: PROCESS keeps failing …: why`.
pub(super) fn crash_looping(
    plans: &BTreeMap<String, NodePlan>,
    statuses: &BTreeMap<String, Option<NodeStatus>>,
) -> Option<String> {
    let all: Vec<(&String, &ProcessStatus)> = plans
        .iter()
        .filter_map(|(name, plan)| {
            let s = statuses.get(name)?.as_ref().filter(|s| s.applied_revision == plan.revision)?;
            Some(s.processes.iter().map(move |p| (name, p)))
        })
        .flatten()
        .collect();
    let applied = plans.len() == all.iter().map(|(n, _)| *n).collect::<std::collections::BTreeSet<_>>().len();
    all.iter().find_map(|(host, p)| {
        let dead = !p.running && p.restarts >= CRASH_LIMIT;
        let below_healthy = all.iter().filter(|(_, q)| tier(&q.name) < tier(&p.name)).all(|(_, q)| q.healthy);
        (dead && (below_healthy && (applied || tier(&p.name) == 0))).then(|| {
            let why = p.last_error.as_deref().unwrap_or("no error reported");
            format!("host {host}: {} keeps failing (restarted {} times): {why}", p.name, p.restarts)
        })
    })
}

/// The first host and process that is not healthy, and why.
pub(super) fn unhealthy(
    plans: &BTreeMap<String, NodePlan>,
    statuses: &BTreeMap<String, Option<NodeStatus>>,
) -> Option<String> {
    for (name, plan) in plans {
        match statuses.get(name) {
            Some(Some(s)) if s.applied_revision != plan.revision => {
                return Some(match &s.error {
                    Some(e) => format!("host {name}: the plan cannot be applied: {e}"),
                    None => format!("host {name}: applying its plan"),
                });
            }
            Some(Some(s)) => {
                if let Some(p) = s.processes.iter().find(|p| !p.healthy) {
                    let why = p.last_error.as_deref().unwrap_or(if p.running {
                        "not healthy yet"
                    } else {
                        "not running"
                    });
                    return Some(format!("host {name}: {} ({why})", p.name));
                }
            }
            _ => return Some(format!("host {name}: its node agent does not answer")),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(revision: &str, procs: &[(&str, bool, u32)]) -> Option<NodeStatus> {
        let processes = procs
            .iter()
            .map(|(name, running, restarts)| ProcessStatus {
                name: (*name).to_owned(),
                running: *running,
                healthy: *running,
                restarts: *restarts,
                last_error: (!running)
                    .then(|| "exited with exit status: 1; bind: address already in use".into()),
                ..Default::default()
            })
            .collect();
        Some(NodeStatus { applied_revision: revision.into(), error: None, processes })
    }

    fn plans(names: &[&str]) -> BTreeMap<String, NodePlan> {
        names
            .iter()
            .map(|n| ((*n).to_owned(), NodePlan { revision: "r1".into(), ..Default::default() }))
            .collect()
    }

    #[test]
    fn a_process_that_keeps_dying_fails_the_run_only_once_what_it_needs_is_healthy() {
        let plans = plans(&["n1", "n2"]);
        // etcd needs nothing: dying three times is a failure, named with its host and cause.
        let statuses = BTreeMap::from([
            ("n1".to_owned(), status("r1", &[("etcd", false, 3), ("kube-apiserver", false, 9)])),
            ("n2".to_owned(), None),
        ]);
        let why = crash_looping(&plans, &statuses).unwrap();
        assert_eq!(
            why,
            "host n1: etcd keeps failing (restarted 3 times): exited with exit status: 1; bind: address \
             already in use"
        );
        // The API server dies while etcd is not healthy: that is etcd's doing, not a fault of its own.
        let statuses = BTreeMap::from([
            ("n1".to_owned(), status("r1", &[("etcd", true, 0), ("kube-apiserver", false, 9)])),
            ("n2".to_owned(), status("r1", &[("etcd", true, 0)])),
        ]);
        assert!(
            crash_looping(&plans, &statuses).unwrap().starts_with("host n1: kube-apiserver keeps failing")
        );
        let statuses = BTreeMap::from([
            ("n1".to_owned(), status("r1", &[("etcd", true, 0), ("kube-apiserver", false, 9)])),
            ("n2".to_owned(), status("r1", &[("etcd", false, 1)])),
        ]);
        assert_eq!(crash_looping(&plans, &statuses), None);
        // A host that has not reported its plan yet may hold an unhealthy etcd.
        let statuses = BTreeMap::from([
            ("n1".to_owned(), status("r1", &[("etcd", true, 0), ("kube-apiserver", false, 9)])),
            ("n2".to_owned(), status("r0", &[])),
        ]);
        assert_eq!(crash_looping(&plans, &statuses), None);
        // Restarted a few times but running now, or not yet often: no failure.
        let statuses = BTreeMap::from([
            ("n1".to_owned(), status("r1", &[("etcd", true, 5)])),
            ("n2".to_owned(), status("r1", &[("etcd", false, 2)])),
        ]);
        assert_eq!(crash_looping(&plans, &statuses), None);
    }
}
