//! The progress of one provisioning run, step by step, shared between the run's tasks and the
//! `reconcile` calls that report it.

use std::sync::{Mutex, PoisonError};

use rancher_core::model::{ProvisioningProgress, ProvisioningStep, StepState};

/// Steps in display order; each host has its own step (`host <name>`), then the cluster-wide ones.
#[derive(Debug, Default)]
pub(super) struct Board {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    message: String,
    steps: Vec<ProvisioningStep>,
}

impl Board {
    /// A board with these steps, all pending.
    pub(super) fn new(steps: impl IntoIterator<Item = String>) -> Self {
        let steps = steps.into_iter().map(|name| ProvisioningStep { name, ..Default::default() }).collect();
        Board { inner: Mutex::new(Inner { message: "starting".into(), steps }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets a step's state and message (adds the step if it is new); records when it first runs
    /// and when it finishes.
    pub(super) fn set(&self, step: &str, state: StepState, message: impl Into<String>) {
        let mut inner = self.lock();
        let i = match inner.steps.iter().position(|s| s.name == step) {
            Some(i) => i,
            None => {
                inner.steps.push(ProvisioningStep { name: step.to_owned(), ..Default::default() });
                inner.steps.len() - 1
            }
        };
        let s = &mut inner.steps[i];
        let now = jiff::Timestamp::now();
        if s.started_at.is_none() && state != StepState::Pending {
            s.started_at = Some(now);
        }
        match state {
            StepState::Done | StepState::Failed => {
                if s.state != state {
                    s.finished_at = Some(now);
                }
            }
            _ => s.finished_at = None,
        }
        s.state = state;
        s.message = message.into();
    }

    /// Sets the sentence that says what happens now.
    pub(super) fn say(&self, message: impl Into<String>) {
        self.lock().message = message.into();
    }

    /// A copy for the cluster's status.
    pub(super) fn snapshot(&self) -> ProvisioningProgress {
        let inner = self.lock();
        ProvisioningProgress { message: inner.message.clone(), steps: inner.steps.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_keep_their_order_and_new_ones_are_appended() {
        let b = Board::new(["host a".to_owned(), "etcd".to_owned()]);
        b.set("etcd", StepState::Running, "2 of 3 members healthy");
        b.set("host a", StepState::Done, "");
        b.set("cluster agent", StepState::Pending, "");
        b.say("waiting for etcd");
        let p = b.snapshot();
        let names: Vec<_> = p.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["host a", "etcd", "cluster agent"]);
        assert_eq!((p.done(), p.total()), (1, 3));
        assert_eq!(p.steps[1].message, "2 of 3 members healthy");
        assert_eq!(p.message, "waiting for etcd");
        // When each step ran: a pending one has not started; a running one has not finished.
        assert!(p.steps[0].started_at.is_some() && p.steps[0].finished_at.is_some());
        assert!(p.steps[1].started_at.is_some() && p.steps[1].finished_at.is_none());
        assert!(p.steps[2].started_at.is_none());
        // Reporting the same state again keeps the times.
        let done_at = p.steps[0].finished_at;
        b.set("host a", StepState::Done, "still");
        assert_eq!(b.snapshot().steps[0].finished_at, done_at);
    }
}
