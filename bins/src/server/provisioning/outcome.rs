//! What a provisioner's answer means for the cluster, with no I/O: the `Provisioned` condition, the
//! progress in `status.provisioning`, when to call again, and — for a cluster handed over — what
//! deploying its agent came to ([`Outcome::created`]).

use std::time::Duration;

use rancher_core::model::{Cluster, ProvisioningProgress, StepState};
use rancher_core::{ConditionStatus, Conditions};
use rancher_provision::{Progress, ProvisionError};

use super::agent_deploy::{
    AGENT_MANIFEST_APPLIED, APPLIED_ANNOTATION, Handover, REASON_APPLIED_BY_USER, REASON_REFUSED,
    REASON_UNREACHABLE,
};

/// `Provisioned` reasons.
pub(crate) const REASON_PROVISIONING: &str = "Provisioning";
pub(crate) const REASON_RETRYING: &str = "Retrying";
pub(crate) const REASON_FAILED: &str = "Failed";
pub(crate) const REASON_INVALID_SPEC: &str = "InvalidSpec";
pub(crate) const REASON_NOT_IMPLEMENTED: &str = "NotImplemented";
/// The cluster's API server refused the server's deployment of the agent (TLS, 401, 403).
pub(crate) const REASON_AGENT_REFUSED: &str = "AgentDeployRefused";
pub(crate) const REASON_UNKNOWN_DRIVER: &str = "UnknownDriver";

/// When the controller calls the provisioner again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// When the cluster changes, its status included (waiting for its agent).
    OnChange,
    /// When the cluster changes, or after this long at the latest (a handed-over cluster waiting
    /// for its agent: the deployment's bound, or the next try of an unreachable endpoint).
    OnChangeOr(Duration),
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
    /// What to record of the agent's deployment; `None` keeps what is there.
    pub(crate) agent: Option<AgentMark>,
    pub(crate) next: Next,
}

/// The [`AGENT_MANIFEST_APPLIED`] condition to write, and the [`APPLIED_ANNOTATION`] record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AgentMark {
    pub(crate) status: ConditionStatus,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
    /// `Some`: what was applied now (the annotation).
    pub(crate) record: Option<String>,
    /// The condition's `lastUpdateTime` moves even when nothing else changes: it dates the attempt
    /// the next one is timed from.
    pub(crate) attempted: bool,
}

impl Outcome {
    /// The outcome of one `reconcile` call on `cluster`.
    pub(crate) fn of(cluster: &Cluster, result: Result<Progress, ProvisionError>) -> Outcome {
        let failed = |reason, message: String| Outcome {
            condition: Some((ConditionStatus::False, reason, message.clone())),
            progress: Some(failed_progress(cluster, &message)),
            agent: None,
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
                Outcome { condition, progress: Some(progress), agent: None, next: Next::After(after) }
            }
            Ok(Progress::WaitingForAgent { progress }) => Outcome {
                condition: Some((ConditionStatus::True, "", String::new())),
                progress: Some(progress),
                agent: None,
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
                    agent: None,
                    next: Next::SpecChange,
                }
            }
            // The controller deploys the agent first and calls `created`; without that I/O the
            // hand-over has simply not been acted on yet.
            Ok(Progress::Created { progress, .. }) => Outcome::created(
                cluster,
                progress,
                Handover::Failed { message: "the cluster agent is not deployed yet".into(), transient: true },
            ),
            Err(ProvisionError::Cancelled) => {
                Outcome { condition: None, progress: None, agent: None, next: Next::Cancelled }
            }
            // The run stopped: its step shows as failed and the progress says why until the retry
            // reports again (`cluster get` shows both).
            Err(e @ ProvisionError::Transient(_)) => Outcome {
                condition: Some((ConditionStatus::Unknown, REASON_RETRYING, e.to_string())),
                progress: Some(failed_progress(cluster, &format!("retrying: {e}"))),
                agent: None,
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
            agent: None,
            next: Next::SpecChange,
        }
    }

    /// The outcome of a provisioner's hand-over (`Created` with `progress`) once the controller has
    /// acted on it (`handover`).
    ///
    /// A cluster whose agent was deployed — or whose endpoint is unreachable, so that the user
    /// deploys it — is `Provisioned` and waits for the agent, as an imported cluster does; its
    /// progress says what happened and, when unreachable, shows the import command. A refusal is a
    /// failure (`Provisioned=False`, [`REASON_AGENT_REFUSED`]) retried with backoff: a new
    /// credential (a rotated cloud credential) comes with the next hand-over.
    pub(crate) fn created(cluster: &Cluster, progress: ProvisioningProgress, handover: Handover) -> Outcome {
        let waiting = |mut progress: ProvisioningProgress, message: String, deployed: StepState| {
            progress.message = message;
            progress.step("cluster agent deployed", deployed, "").step(
                "cluster agent connected",
                StepState::Running,
                "",
            )
        };
        let provisioned = Some((ConditionStatus::True, "", String::new()));
        let mark = |status, reason, message: String, record: Option<String>, attempted| {
            Some(AgentMark { status, reason, message, record, attempted })
        };
        match handover {
            Handover::Applied { endpoint, record } => Outcome {
                condition: provisioned,
                progress: Some(waiting(
                    progress,
                    format!("the cluster agent was deployed through {endpoint}; waiting for it to connect"),
                    StepState::Done,
                )),
                agent: mark(
                    ConditionStatus::True,
                    "",
                    format!("applied through {endpoint}"),
                    Some(record),
                    true,
                ),
                next: Next::OnChangeOr(super::agent_deploy::REDEPLOY_AFTER),
            },
            Handover::AwaitingAgent { endpoint, recheck } => Outcome {
                condition: provisioned,
                progress: Some(waiting(
                    progress,
                    format!("the cluster agent was deployed through {endpoint}; waiting for it to connect"),
                    StepState::Done,
                )),
                agent: None,
                next: Next::OnChangeOr(recheck),
            },
            Handover::Connected | Handover::AppliedByUser { .. } => {
                let mut progress = progress;
                progress.message = "provisioned".into();
                progress = progress.step("cluster agent deployed", StepState::Done, "").step(
                    "cluster agent connected",
                    StepState::Done,
                    "",
                );
                for step in &mut progress.steps {
                    step.state = StepState::Done;
                }
                let agent = match handover {
                    Handover::AppliedByUser { endpoint, record } => mark(
                        ConditionStatus::True,
                        REASON_APPLIED_BY_USER,
                        format!(
                            "the server could not reach {endpoint}; the agent connected after the import \
                             manifest was applied in the cluster"
                        ),
                        Some(record),
                        false,
                    ),
                    _ => None,
                };
                Outcome { condition: provisioned, progress: Some(progress), agent, next: Next::SpecChange }
            }
            Handover::Unreachable { message, tried, recheck } => Outcome {
                condition: provisioned,
                progress: Some(waiting(progress, message.clone(), StepState::Running)),
                // A try made now is dated; otherwise the last one stands.
                agent: if tried {
                    mark(ConditionStatus::False, REASON_UNREACHABLE, message, None, true)
                } else {
                    None
                },
                next: Next::OnChangeOr(recheck),
            },
            Handover::Refused { message } => {
                let message = format!("deploying the cluster agent: {message}");
                Outcome {
                    condition: Some((ConditionStatus::False, REASON_AGENT_REFUSED, message.clone())),
                    progress: Some(failed_progress(cluster, &message)),
                    agent: mark(ConditionStatus::False, REASON_REFUSED, message, None, true),
                    next: Next::Backoff,
                }
            }
            Handover::Failed { message, transient } => {
                let message = format!("deploying the cluster agent: {message}");
                let (status, reason, next) = if transient {
                    (ConditionStatus::Unknown, REASON_RETRYING, Next::Backoff)
                } else {
                    (ConditionStatus::False, REASON_FAILED, Next::SpecChange)
                };
                Outcome {
                    condition: Some((status, reason, message.clone())),
                    progress: Some(failed_progress(cluster, &message)),
                    agent: None,
                    next,
                }
            }
            Handover::Cancelled => {
                Outcome { condition: None, progress: None, agent: None, next: Next::Cancelled }
            }
        }
    }

    /// Applies the outcome to `cluster`; true when anything changed.
    pub(crate) fn apply(&self, cluster: &mut Cluster) -> bool {
        let mut changed = false;
        if let Some(mark) = &self.agent {
            let conditions = &mut cluster.status.conditions;
            changed |=
                conditions.set_condition(AGENT_MANIFEST_APPLIED, mark.status, mark.reason, &mark.message);
            if mark.attempted
                && let Some(c) = conditions.iter_mut().find(|c| c.type_ == AGENT_MANIFEST_APPLIED)
            {
                c.last_update_time = Some(jiff::Timestamp::now());
                changed = true;
            }
            if let Some(record) = &mark.record
                && cluster.metadata.annotations.get(APPLIED_ANNOTATION) != Some(record)
            {
                cluster.metadata.annotations.insert(APPLIED_ANNOTATION.to_owned(), record.clone());
                changed = true;
            }
        }
        if let Some((status, reason, message)) = &self.condition {
            changed |= cluster.status.conditions.set_condition("Provisioned", *status, reason, message);
        }
        if let Some(progress) = &self.progress
            && cluster.status.provisioning.as_ref() != Some(progress)
        {
            cluster.status.provisioning = Some(progress.clone());
            changed = true;
        }
        // The summary conditions follow in the same write (a cluster just provisioned reads
        // `waiting` at once, not `provisioning` until the cluster controller has caught up).
        if changed {
            rancher_core::cluster::derive(cluster);
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

    fn handed_over(c: &Cluster, handover: Handover) -> (Outcome, Cluster) {
        let progress = ProvisioningProgress::new("cluster created").step("cluster", StepState::Done, "");
        let o = Outcome::created(c, progress, handover);
        let mut after = c.clone();
        o.apply(&mut after);
        (o, after)
    }

    #[test]
    fn a_deployed_agent_leaves_the_cluster_provisioned_and_waiting_for_it() {
        let applied = Handover::Applied { endpoint: "https://10.0.0.9:6443".into(), record: "1/ab".into() };
        let (o, c) = handed_over(&cluster(), applied);
        assert_eq!(o.next, Next::OnChangeOr(super::super::agent_deploy::REDEPLOY_AFTER));
        assert!(c.status.conditions.is_true("Provisioned"));
        assert_eq!(c.state(), ClusterState::Waiting, "in the same write");
        let p = c.status.provisioning.as_ref().unwrap();
        assert!(
            p.message.contains("deployed through https://10.0.0.9:6443") && p.message.contains("waiting")
        );
        assert_eq!((p.done(), p.total()), (2, 3), "the agent's connection is the step left");
        let mark = c.status.conditions.get_condition(AGENT_MANIFEST_APPLIED).unwrap();
        assert_eq!(mark.status, ConditionStatus::True);
        assert_eq!(c.metadata.annotations.get(APPLIED_ANNOTATION).map(String::as_str), Some("1/ab"));
        // Once the agent is connected the hand-over is done, and stays done until the spec changes.
        let (o, c) = handed_over(&c, Handover::Connected);
        assert_eq!(o.next, Next::SpecChange);
        let p = c.status.provisioning.as_ref().unwrap();
        assert_eq!((p.message.as_str(), p.done(), p.total()), ("provisioned", 3, 3));
    }

    #[test]
    fn an_unreachable_endpoint_waits_with_the_import_command_and_dates_only_real_tries() {
        let message = "the server cannot reach … kubectl apply -f https://r/v3/import/t_c.yaml".to_owned();
        let tried =
            Handover::Unreachable { message: message.clone(), tried: true, recheck: Duration::from_secs(60) };
        let (o, c) = handed_over(&cluster(), tried);
        assert_eq!(o.next, Next::OnChangeOr(Duration::from_secs(60)));
        assert!(
            c.status.conditions.is_true("Provisioned"),
            "the cluster exists; the agent is the user's now"
        );
        assert_eq!(c.state(), ClusterState::Waiting, "in the same write");
        assert_eq!(c.status.provisioning.as_ref().unwrap().message, message);
        let mark = c.status.conditions.get_condition(AGENT_MANIFEST_APPLIED).unwrap();
        assert_eq!((mark.status, mark.reason.as_str()), (ConditionStatus::False, REASON_UNREACHABLE));
        let not_tried = Handover::Unreachable { message, tried: false, recheck: Duration::from_secs(30) };
        let (o, again) = handed_over(&c, not_tried);
        assert!(o.agent.is_none());
        assert!(!o.apply(&mut again.clone()), "waiting for the next try writes nothing");
        // The user's import connects the agent: recorded as theirs.
        let by_user =
            Handover::AppliedByUser { endpoint: "https://10.0.0.9:6443".into(), record: "1/ab".into() };
        let (_, c) = handed_over(&again, by_user);
        let mark = c.status.conditions.get_condition(AGENT_MANIFEST_APPLIED).unwrap();
        assert_eq!((mark.status, mark.reason.as_str()), (ConditionStatus::True, REASON_APPLIED_BY_USER));
    }

    #[test]
    fn a_refusal_is_a_failure_retried_with_backoff_that_keeps_no_credential() {
        let refused = Handover::Refused {
            message:
                "https://10.0.0.9:6443 refused the server: the credential was not accepted (401 Unauthorized)"
                    .into(),
        };
        let (o, c) = handed_over(&cluster(), refused);
        assert_eq!(o.next, Next::Backoff);
        let p = c.status.conditions.get_condition("Provisioned").unwrap();
        assert_eq!((p.status, p.reason.as_str()), (ConditionStatus::False, REASON_AGENT_REFUSED));
        assert!(p.message.contains("401"), "{}", p.message);
        assert_eq!(c.state(), ClusterState::Error);
        let failed = Handover::Failed { message: "x".into(), transient: false };
        assert_eq!(handed_over(&cluster(), failed).0.next, Next::SpecChange);
    }

    #[test]
    fn a_hand_over_nobody_acted_on_is_retried_and_keeps_no_credential() {
        let downstream = Downstream {
            api_endpoint: "https://10.0.0.9:6443".into(),
            ca_pem: String::new(),
            credential: DownstreamCredential::BearerToken("s3cr3t".to_owned().into()),
        };
        let progress = ProvisioningProgress::new("cluster created");
        let mut c = cluster();
        let o = Outcome::of(&c, Ok(Progress::Created { progress, downstream }));
        assert_eq!(o.next, Next::Backoff);
        assert!(o.apply(&mut c));
        assert!(!serde_json::to_string(&c).unwrap().contains("s3cr3t"));
    }
}
