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
        let steps = steps
            .into_iter()
            .map(|name| ProvisioningStep { name, state: StepState::Pending, message: String::new() })
            .collect();
        Board { inner: Mutex::new(Inner { message: "starting".into(), steps }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets a step's state and message (adds the step if it is new).
    pub(super) fn set(&self, step: &str, state: StepState, message: impl Into<String>) {
        let mut inner = self.lock();
        let message = message.into();
        match inner.steps.iter_mut().find(|s| s.name == step) {
            Some(s) => {
                s.state = state;
                s.message = message;
            }
            None => inner.steps.push(ProvisioningStep { name: step.to_owned(), state, message }),
        }
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
    }
}
