//! `rancherctl wait CLUSTER --for …`: block until a cluster has a condition, reaches a state, or is
//! gone — as `kubectl wait` does for Kubernetes objects. The cluster is read once a second; on a
//! terminal a spinner on stderr shows what it is now. A timeout is exit code 8.

use std::io::IsTerminal;
use std::time::Duration;

use http::Method;
use indicatif::{ProgressBar, ProgressStyle};
use rancher_core::ConditionStatus;
use rancher_core::model::Cluster;
use tokio::time::Instant;

use super::client::ApiClient;
use super::commands::path_segment;
use super::error::CliError;

/// How often the cluster is read.
const POLL: Duration = Duration::from_secs(1);

/// `rancherctl wait`.
#[derive(Debug, clap::Args)]
pub struct WaitArgs {
    /// The cluster's name.
    cluster: String,
    /// What to wait for: `condition=NAME` (status True; `condition=NAME=False` for another status),
    /// `state=STATE` (active, waiting, provisioning, updating, unavailable, error, …), or `delete`.
    #[arg(long = "for", value_name = "CONDITION", value_parser = Wanted::parse)]
    wanted: Wanted,
    /// How long to wait before giving up: `30s`, `5m`, `1h`.
    #[arg(long, default_value = "5m", value_parser = super::follow::parse_timeout)]
    timeout: Duration,
}

/// What `--for` asks.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Wanted {
    Condition(String, ConditionStatus),
    State(String),
    Delete,
}

const STATES: &[&str] =
    &["removing", "pending", "provisioning", "waiting", "updating", "active", "unavailable", "error"];

impl Wanted {
    fn parse(s: &str) -> Result<Self, String> {
        if s == "delete" {
            return Ok(Wanted::Delete);
        }
        if let Some(rest) = s.strip_prefix("condition=") {
            let (name, status) = rest.split_once('=').unwrap_or((rest, "True"));
            let status = match status.to_ascii_lowercase().as_str() {
                "true" => ConditionStatus::True,
                "false" => ConditionStatus::False,
                "unknown" => ConditionStatus::Unknown,
                _ => return Err(format!("{status:?} is not a condition status: True, False or Unknown")),
            };
            if name.is_empty() {
                return Err("condition= needs a condition's name, e.g. condition=Ready".into());
            }
            return Ok(Wanted::Condition(name.to_owned(), status));
        }
        if let Some(state) = s.strip_prefix("state=") {
            let state = state.to_ascii_lowercase();
            if !STATES.contains(&state.as_str()) {
                return Err(format!("{state:?} is not a cluster state: {}", STATES.join(", ")));
            }
            return Ok(Wanted::State(state));
        }
        Err(format!("{s:?}: wait --for condition=NAME[=STATUS], state=STATE or delete"))
    }

    fn describe(&self) -> String {
        match self {
            Wanted::Condition(name, status) => format!("condition {name}={}", status_word(*status)),
            Wanted::State(state) => format!("state {state}"),
            Wanted::Delete => "deletion".into(),
        }
    }

    /// Whether `cluster` (None: gone) is what was asked for.
    fn met(&self, cluster: Option<&Cluster>) -> bool {
        match (self, cluster) {
            (Wanted::Delete, c) => c.is_none(),
            (_, None) => false,
            (Wanted::State(s), Some(c)) => c.state().as_str() == s,
            (Wanted::Condition(name, status), Some(c)) => c
                .status
                .conditions
                .iter()
                .any(|cond| cond.type_.eq_ignore_ascii_case(name) && cond.status == *status),
        }
    }
}

fn status_word(s: ConditionStatus) -> &'static str {
    match s {
        ConditionStatus::True => "True",
        ConditionStatus::False => "False",
        ConditionStatus::Unknown => "Unknown",
    }
}

/// What the cluster is now, in a few words: its state and, when waiting for a condition, that
/// condition's status.
fn now(wanted: &Wanted, cluster: Option<&Cluster>) -> String {
    let Some(c) = cluster else { return "gone".into() };
    let mut s = format!("state {}", c.state());
    if let Wanted::Condition(name, _) = wanted {
        match c.status.conditions.iter().find(|cond| cond.type_.eq_ignore_ascii_case(name)) {
            Some(cond) => {
                s.push_str(&format!(", {name}={}", status_word(cond.status)));
                if !cond.message.is_empty() {
                    s.push_str(&format!(" ({})", cond.message));
                }
            }
            None => s.push_str(&format!(", no {name} condition yet")),
        }
    }
    s
}

/// Runs `rancherctl wait`.
pub(super) async fn run(client: &ApiClient, args: WaitArgs) -> Result<String, CliError> {
    let path = format!("/v3/clusters/{}", path_segment(&args.cluster)?);
    let deadline = Instant::now() + args.timeout;
    let spinner = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    let what = args.wanted.describe();
    let result = loop {
        let cluster = match client.call(Method::GET, &path, None).await {
            Ok(v) => Some(serde_json::from_value::<Cluster>(v).map_err(|e| {
                CliError::Http(format!("the server's cluster {} does not parse: {e}", args.cluster))
            })?),
            Err(CliError::Api(s)) if s.code == 404 && args.wanted == Wanted::Delete => None,
            Err(e) => break Err(e),
        };
        if args.wanted.met(cluster.as_ref()) {
            break Ok(match args.wanted {
                Wanted::Delete => format!("cluster/{} deleted\n", args.cluster),
                _ => format!("cluster/{} {what} met\n", args.cluster),
            });
        }
        let doing = now(&args.wanted, cluster.as_ref());
        if let Some(bar) = &spinner {
            bar.set_message(format!("waiting for cluster {} to reach {what}: {doing}", args.cluster));
        }
        if Instant::now() + POLL > deadline {
            tokio::time::sleep_until(deadline).await;
            let waited = jiff::SignedDuration::try_from(args.timeout)
                .map_or_else(|_| format!("{:?}", args.timeout), |d| format!("{d:#}"));
            break Err(CliError::TimedOut(format!(
                "timed out after {waited} waiting for cluster {} to reach {what} (it is: {doing})",
                args.cluster
            )));
        }
        tokio::time::sleep(POLL).await;
    };
    if let Some(bar) = spinner {
        bar.finish_and_clear();
    }
    result
}

#[cfg(test)]
mod tests {
    use rancher_core::Conditions;
    use rancher_core::model::ClusterSpec;

    use super::*;

    #[test]
    fn for_reads_conditions_states_and_delete_as_kubectl_wait_does() {
        assert_eq!(
            Wanted::parse("condition=Ready"),
            Ok(Wanted::Condition("Ready".into(), ConditionStatus::True))
        );
        assert_eq!(
            Wanted::parse("condition=Connected=false"),
            Ok(Wanted::Condition("Connected".into(), ConditionStatus::False))
        );
        assert_eq!(Wanted::parse("state=Active"), Ok(Wanted::State("active".into())));
        assert_eq!(Wanted::parse("delete"), Ok(Wanted::Delete));
        assert!(Wanted::parse("state=happy").unwrap_err().contains("not a cluster state"));
        assert!(Wanted::parse("condition=Ready=maybe").unwrap_err().contains("not a condition status"));
        assert!(Wanted::parse("ready").unwrap_err().contains("wait --for"));
    }

    #[test]
    fn a_condition_is_met_only_with_the_status_asked_for() {
        let mut c = Cluster::new("demo", ClusterSpec::default());
        let ready = Wanted::parse("condition=Ready").unwrap();
        assert!(!ready.met(Some(&c)));
        assert_eq!(now(&ready, Some(&c)), "state pending, no Ready condition yet");
        c.status.conditions.set_condition("Ready", ConditionStatus::False, "NotReady", "agent gone");
        assert!(!ready.met(Some(&c)));
        assert!(now(&ready, Some(&c)).ends_with("Ready=False (agent gone)"));
        c.status.conditions.set_condition("Ready", ConditionStatus::True, "", "");
        assert!(ready.met(Some(&c)));
        assert!(Wanted::parse("condition=ready").unwrap().met(Some(&c)), "as kubectl wait: any case");
        assert!(!ready.met(None));
        assert!(Wanted::Delete.met(None));
    }
}
