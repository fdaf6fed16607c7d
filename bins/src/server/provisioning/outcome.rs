//! What a provisioner's answer means for the cluster, with no I/O: the `Provisioned` condition, the
//! progress in `status.provisioning`, and when to call again.

use std::time::Duration;

use rancher_core::model::{Cluster, ProvisioningProgress, StepState};
use rancher_core::{ConditionStatus, Conditions};
use rancher_provision::{Progress, ProvisionError};

/// `Provisioned` reasons.
pub(crate) const REASON_PROVISIONING: &str = "Provisioning";
pub(crate) const REASON_RETRYING: &str = "Retrying";
pub(crate) const REASON_FAILED: &str = "Failed";
pub(crate) const REASON_INVALID_SPEC: &str = "InvalidSpec";
pub(crate) const REASON_NOT_IMPLEMENTED: &str = "NotImplemented";
pub(crate) const REASON_UNKNOWN_DRIVER: &str = "UnknownDriver";

/// When the controller calls the provisioner again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// When the cluster changes, its status included (waiting for its agent).
    OnChange,
    /// After this long, as the provisioner asked.
    After(Duration),
    /// After the next backoff delay (a transient failure).
    Backoff,
    /// Only when the user changes the spec (provisioned, or a failure retrying will not fix).
    SpecChange,
    /// Not at all: the reconcile was cancelled and the deletion takes over.
    Cancelled,
}

/// What to write to the cluster's status and when to call again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// `Provisioned`'s status, reason and message; `None` keeps what is there.
    pub(crate) condition: Option<(ConditionStatus, &'static str, String)>,
    /// The new `status.provisioning`; `None` keeps what is there.
    pub(crate) progress: Option<ProvisioningProgress>,
    pub(crate) next: Next,
}

impl Outcome {
    /// The outcome of one `reconcile` call on `cluster`.
    pub(crate) fn of(cluster: &Cluster, result: Result<Progress, ProvisionError>) -> Outcome {
        let failed = |reason, message: String| Outcome {
            condition: Some((ConditionStatus::False, reason, message.clone())),
            progress: Some(failed_progress(cluster, &message)),
            next: Next::SpecChange,
        };
        match result {
            Ok(Progress::InProgress { mut progress, after }) => {
                // A retry under way keeps saying why the last attempt failed until it gets through
                // (or fails again): otherwise the cause would flash by between two attempts.
                let retrying = cluster
                    .status
                    .conditions
                    .get_condition("Provisioned")
                    .filter(|c| c.status == ConditionStatus::Unknown && c.reason == REASON_RETRYING);
                let condition = match retrying {
                    Some(last) => {
                        progress.message =
                            format!("{} (the last attempt failed: {})", progress.message, last.message);
                        None
                    }
                    None => Some((ConditionStatus::Unknown, REASON_PROVISIONING, progress.message.clone())),
                };
                Outcome { condition, progress: Some(progress), next: Next::After(after) }
            }
            Ok(Progress::WaitingForAgent { progress }) => Outcome {
                condition: Some((ConditionStatus::True, "", String::new())),
                progress: Some(progress),
                next: Next::OnChange,
            },
            Ok(Progress::Done) => {
                let mut progress = cluster.status.provisioning.clone().unwrap_or_default();
                progress.message = "provisioned".into();
                for step in &mut progress.steps {
                    step.state = StepState::Done;
                }
                Outcome {
                    condition: Some((ConditionStatus::True, "", String::new())),
                    progress: Some(progress),
                    next: Next::SpecChange,
                }
            }
            Ok(Progress::Created { downstream, .. }) => failed(
                REASON_NOT_IMPLEMENTED,
                format!(
                    "the provisioner created the cluster at {}, but deploying the cluster agent from the \
                     server is not implemented yet: apply the import manifest in it instead",
                    downstream.api_endpoint
                ),
            ),
            Err(ProvisionError::Cancelled) => {
                Outcome { condition: None, progress: None, next: Next::Cancelled }
            }
            // The run stopped: its step shows as failed and the progress says why until the retry
            // reports again (`cluster get` shows both).
            Err(e @ ProvisionError::Transient(_)) => Outcome {
                condition: Some((ConditionStatus::Unknown, REASON_RETRYING, e.to_string())),
                progress: Some(failed_progress(cluster, &format!("retrying: {e}"))),
                next: Next::Backoff,
            },
            Err(e @ ProvisionError::InvalidSpec { .. }) => failed(REASON_INVALID_SPEC, e.to_string()),
            Err(e @ ProvisionError::NotImplemented(_)) => failed(REASON_NOT_IMPLEMENTED, e.to_string()),
            Err(e @ ProvisionError::Permanent(_)) => failed(REASON_FAILED, e.to_string()),
        }
    }

    /// A cluster whose driver nobody registered: one clear failure, no retries.
    pub(crate) fn unknown_driver(message: String) -> Outcome {
        Outcome {
            condition: Some((ConditionStatus::False, REASON_UNKNOWN_DRIVER, message)),
            progress: None,
            next: Next::SpecChange,
        }
    }

    /// Applies the outcome to `cluster`; true when anything changed.
    pub(crate) fn apply(&self, cluster: &mut Cluster) -> bool {
        let mut changed = false;
        if let Some((status, reason, message)) = &self.condition {
            changed |= cluster.status.conditions.set_condition("Provisioned", *status, reason, message);
        }
        if let Some(progress) = &self.progress
            && cluster.status.provisioning.as_ref() != Some(progress)
        {
            cluster.status.provisioning = Some(progress.clone());
            changed = true;
        }
        changed
    }
}

/// The last progress with the running step marked failed.
fn failed_progress(cluster: &Cluster, message: &str) -> ProvisioningProgress {
    let mut progress = cluster.status.provisioning.clone().unwrap_or_default();
    progress.message = message.to_owned();
    for step in &mut progress.steps {
        if step.state == StepState::Running {
            step.state = StepState::Failed;
        }
    }
    progress
}

#[cfg(test)]
mod tests {
    use rancher_core::model::ClusterState;
    use rancher_provision::{Downstream, DownstreamCredential};

    use super::*;

    fn cluster() -> Cluster {
        Cluster::new("c-x", Default::default())
    }

    #[test]
    fn progress_then_done_walks_the_condition_to_true_and_marks_every_step() {
        let mut c = cluster();
        let progress = ProvisioningProgress::new("machines")
            .step("machines", StepState::Running, "1 of 2")
            .step("kubernetes", StepState::Pending, "");
        let o = Outcome::of(&c, Ok(Progress::InProgress { progress, after: Duration::from_secs(2) }));
        assert_eq!(o.next, Next::After(Duration::from_secs(2)));
        assert!(o.apply(&mut c));
        assert!(!o.apply(&mut c), "the same outcome again changes nothing");
        assert_eq!(c.state(), ClusterState::Provisioning);
        let o = Outcome::of(&c, Ok(Progress::Done));
        assert!(o.apply(&mut c));
        assert!(c.status.conditions.is_true("Provisioned"));
        let p = c.status.provisioning.unwrap();
        assert_eq!((p.done(), p.total()), (2, 2));
    }

    #[test]
    fn failures_say_whether_they_are_retried() {
        let mut c = cluster();
        c.status.provisioning = Some(ProvisioningProgress::new("x").step("vpc", StepState::Running, ""));
        let o = Outcome::of(&c, Err(ProvisionError::transient("the API is throttling us")));
        assert_eq!(o.next, Next::Backoff);
        assert_eq!(o.condition.as_ref().unwrap().0, ConditionStatus::Unknown);
        let p = o.progress.as_ref().unwrap();
        assert_eq!(p.message, "retrying: the API is throttling us");
        assert_eq!(p.steps[0].state, StepState::Failed, "the step that was running stopped");
        // The next attempt's progress keeps the cause in the condition and says it in its message.
        let mut retried = c.clone();
        o.apply(&mut retried);
        let again = ProvisioningProgress::new("connecting").step("vpc", StepState::Running, "");
        let o2 = Outcome::of(
            &retried,
            Ok(Progress::InProgress { progress: again, after: Duration::from_secs(2) }),
        );
        assert_eq!(o2.condition, None);
        assert_eq!(
            o2.progress.unwrap().message,
            "connecting (the last attempt failed: the API is throttling us)"
        );
        let o = Outcome::of(&c, Err(ProvisionError::permanent("quota exhausted")));
        assert_eq!(o.next, Next::SpecChange);
        o.apply(&mut c);
        assert_eq!(c.state(), ClusterState::Error);
        assert_eq!(c.status.provisioning.unwrap().steps[0].state, StepState::Failed);
        let o = Outcome::of(&cluster(), Err(ProvisionError::Cancelled));
        assert_eq!(o.next, Next::Cancelled);
        assert!(!o.apply(&mut cluster()), "a cancelled reconcile writes nothing");
    }

    #[test]
    fn a_handed_over_cluster_is_an_explicit_not_implemented_and_keeps_no_credential() {
        let downstream = Downstream {
            api_endpoint: "https://10.0.0.9:6443".into(),
            ca_pem: String::new(),
            credential: DownstreamCredential::BearerToken("s3cr3t".to_owned().into()),
        };
        let progress = ProvisioningProgress::new("cluster created");
        let mut c = cluster();
        let o = Outcome::of(&c, Ok(Progress::Created { progress, downstream }));
        assert!(o.apply(&mut c));
        let p = c.status.conditions.get_condition("Provisioned").unwrap();
        assert_eq!((p.status, p.reason.as_str()), (ConditionStatus::False, REASON_NOT_IMPLEMENTED));
        assert!(p.message.contains("https://10.0.0.9:6443") && p.message.contains("not implemented"));
        assert!(!serde_json::to_string(&c).unwrap().contains("s3cr3t"));
    }
}
