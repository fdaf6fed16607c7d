//! Following a cluster's provisioning from `rancherctl cluster create --rke`: the cluster is read
//! over `/v3` once a second until it is active, fails for good, or the timeout passes. Each step's
//! change is one line (`[3/9] host node1: running (uploading etcd)`); on a terminal a progress bar
//! below the lines counts the steps done.

use std::io::IsTerminal;
use std::time::Duration;

use http::Method;
use indicatif::{ProgressBar, ProgressStyle};
use rancher_core::Conditions;
use rancher_core::model::{Cluster, ClusterState, ProvisioningStep, StepState};
use serde_json::Value;
use tokio::time::Instant;

use super::client::ApiClient;
use super::commands::path_segment;
use super::error::CliError;

/// How often the cluster is read (never faster).
const POLL: Duration = Duration::from_secs(1);
/// How long an active cluster is given to report its node count before the summary is printed.
const NODE_COUNT_GRACE: Duration = Duration::from_secs(30);
/// The default `--timeout`.
pub(super) const DEFAULT_TIMEOUT: &str = "20m";

/// Creates the cluster `name` with `spec` (its engine config set) and follows its provisioning for
/// `wait` (the server's warnings on stderr; the id first on a terminal).
///
/// # Errors
/// The server's refusal, or the provisioning's failure while followed.
pub(super) async fn create_cluster(
    client: &ApiClient,
    name: &str,
    spec: Value,
    fmt: super::output::Format,
    wait: Option<Duration>,
) -> Result<String, CliError> {
    let body = serde_json::json!({ "metadata": { "name": name }, "spec": spec });
    let (created, warnings) = client.call_with_warnings(Method::POST, "/v3/clusters", Some(&body)).await?;
    for w in warnings {
        eprintln!("Warning: {w}");
    }
    let id = created.get("id").and_then(Value::as_str).unwrap_or(name).to_owned();
    if wait.is_some() && fmt == super::output::Format::Table {
        println!("{id}");
    }
    report_or_follow(client, &id, fmt, wait, 0, &created, format!("{id}\n")).await
}

/// Replaces `spec.<field>` of the cluster `name` with `config` (read, changed, written back with the
/// version read: a concurrent change of that config is a Conflict, not lost; a concurrent status
/// write is not, the change is sent again) and follows the change for `wait`. `without` is the error
/// when the cluster has no such config.
///
/// # Errors
/// [`CliError::Input`] with `without`; the server's refusal; the change's failure while followed.
pub(super) async fn replace_config(
    client: &ApiClient,
    name: &str,
    field: &str,
    config: Value,
    without: &str,
    fmt: super::output::Format,
    wait: Option<Duration>,
) -> Result<String, CliError> {
    let path = format!("/v3/clusters/{}", path_segment(name)?);
    let cluster = client.call(Method::GET, &path, None).await?;
    let read = cluster.get("spec").and_then(|s| s.get(field)).filter(|v| !v.is_null()).cloned();
    let Some(read) = read else { return Err(CliError::Input(without.to_owned())) };
    // The server writes the cluster's status all along (its connection, its agent's reports): such a
    // write is sent again; a concurrent change of this config is the caller's to look at.
    let untouched = |now: &Value| now.get("spec").and_then(|s| s.get(field)) == Some(&read);
    let (updated, warnings) =
        client.put_changed(&path, cluster, |c| c["spec"][field] = config.clone(), untouched).await?;
    for w in warnings {
        eprintln!("Warning: {w}");
    }
    let generation = updated.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
    report_or_follow(client, name, fmt, wait, generation, &updated, format!("cluster {name} updated\n")).await
}

/// `--timeout`: a positive duration like `20m`, `90s` or `1h 30m`.
///
/// # Errors
/// A message naming the value when it is not a positive duration.
pub(super) fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d: jiff::SignedDuration =
        s.trim().parse().map_err(|e| format!("{s:?} is not a duration like 20m, 90s or 1h30m: {e}"))?;
    const LONGEST: Duration = Duration::from_secs(30 * 86_400);
    let d = Duration::try_from(d)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s:?}: the timeout must be longer than zero"))?;
    if d > LONGEST {
        return Err(format!("{s:?}: the timeout is at most 30 days"));
    }
    Ok(d)
}

/// Where the lines go: a progress bar on a terminal, plain lines otherwise.
enum Sink {
    Bar(ProgressBar),
    Lines { stderr: bool },
}

impl Sink {
    fn new(stderr: bool) -> Sink {
        let terminal = if stderr { std::io::stderr().is_terminal() } else { std::io::stdout().is_terminal() };
        if !terminal {
            return Sink::Lines { stderr };
        }
        let bar = if stderr { ProgressBar::new(0) } else { ProgressBar::with_draw_target(Some(0), stdout()) };
        let style = ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} steps {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(200));
        Sink::Bar(bar)
    }

    fn line(&self, text: &str) {
        match self {
            Sink::Bar(bar) => bar.println(text),
            Sink::Lines { stderr: true } => eprintln!("{text}"),
            Sink::Lines { stderr: false } => println!("{text}"),
        }
    }

    fn progress(&self, done: usize, total: usize, now: &str) {
        if let Sink::Bar(bar) = self {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            bar.set_message(now.to_owned());
        }
    }

    fn finish(&self) {
        if let Sink::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

fn stdout() -> indicatif::ProgressDrawTarget {
    indicatif::ProgressDrawTarget::stdout()
}

fn state_word(s: StepState) -> &'static str {
    match s {
        StepState::Pending => "pending",
        StepState::Running => "running",
        StepState::Done => "done",
        StepState::Failed => "failed",
    }
}

/// One step as a line: `[3/9] host node1: running (uploading etcd)`.
fn step_line(index: usize, total: usize, step: &ProvisioningStep) -> String {
    let mut line = format!("[{}/{total}] {}: {}", index + 1, step.name, state_word(step.state));
    if !step.message.is_empty() {
        line.push_str(&format!(" ({})", step.message));
    }
    line
}

/// What changed between two reads of a cluster, as lines, and what a reader remembers of it.
#[derive(Default)]
struct Seen {
    steps: Vec<ProvisioningStep>,
    state: Option<ClusterState>,
    /// The message of the `Retrying` condition now (empty when not retrying).
    retrying: String,
    /// The last failure seen (`<step>: <message>` when a step failed), kept for the timeout's error:
    /// the run retried after it may be back at its first steps when the time is up.
    last_failure: String,
}

impl Seen {
    fn changes(&mut self, cluster: &Cluster) -> Vec<String> {
        let mut lines = Vec::new();
        let state = cluster.state();
        if self.state != Some(state) {
            lines.push(format!("cluster {}: {state}", cluster.metadata.name));
            self.state = Some(state);
        }
        let steps = cluster.status.provisioning.as_ref().map(|p| p.steps.clone()).unwrap_or_default();
        for (i, step) in steps.iter().enumerate() {
            let before = self.steps.iter().find(|s| s.name == step.name);
            // A new run after a retried failure starts its steps anew: that is the `retrying` line.
            let restarted = before.is_some() && step.state == StepState::Pending;
            if !restarted && before.is_none_or(|b| b.state != step.state || b.message != step.message) {
                lines.push(step_line(i, steps.len(), step));
                if step.state == StepState::Failed {
                    self.last_failure = format!("{}: {}", step.name, step.message);
                }
            }
        }
        self.steps = steps;
        // A failure that is retried says so only in the condition.
        let retrying = cluster
            .status
            .conditions
            .get_condition("Provisioned")
            .filter(|c| c.reason == "Retrying")
            .map(|c| c.message.clone())
            .unwrap_or_default();
        if retrying != self.retrying {
            if !retrying.is_empty() {
                lines.push(format!("retrying: {retrying}"));
                // A step's failure says more (which step); the condition only when none was seen.
                if self.last_failure.is_empty() {
                    self.last_failure = retrying.clone();
                }
            }
            self.retrying = retrying;
        }
        lines
    }
}

/// What is under way, for the bar's message and the timeout's error.
fn now_doing(cluster: &Cluster) -> String {
    let Some(p) = &cluster.status.provisioning else { return String::new() };
    let running: Vec<&str> =
        p.steps.iter().filter(|s| s.state == StepState::Running).map(|s| s.name.as_str()).collect();
    match (running.is_empty(), p.message.is_empty()) {
        (true, _) => p.message.clone(),
        (false, true) => running.join(", "),
        (false, false) => format!("{}: {}", running.join(", "), p.message),
    }
}

/// Why provisioning failed for good: the failed step and its message, else the condition's.
fn failure(cluster: &Cluster) -> String {
    let name = &cluster.metadata.name;
    let condition =
        cluster.status.conditions.get_condition("Provisioned").map(|c| c.message.clone()).unwrap_or_default();
    let step = cluster
        .status
        .provisioning
        .as_ref()
        .and_then(|p| p.steps.iter().find(|s| s.state == StepState::Failed).cloned());
    match step {
        Some(s) if !s.message.is_empty() => {
            format!("cluster {name} failed at step {:?}: {}", s.name, s.message)
        }
        Some(s) => format!("cluster {name} failed at step {:?}: {condition}", s.name),
        None => format!("cluster {name} failed: {condition}"),
    }
}

/// True when the cluster reports as many nodes as its hosts (any count for a cluster not on hosts):
/// the kubelets register their Nodes shortly after the cluster turns active.
fn all_nodes_reported(cluster: &Cluster) -> bool {
    let hosts = cluster.spec.rke_config.as_ref().map_or(0, |c| c.nodes.len());
    cluster.status.node_count.is_some_and(|n| n as usize >= hosts)
}

/// The last line: the cluster's state, version and node count.
fn summary(cluster: &Cluster) -> String {
    let version = cluster.status.version.as_ref().map_or("unknown version", |v| v.git_version.as_str());
    let nodes = match cluster.status.node_count {
        Some(1) => "1 node".to_owned(),
        Some(n) => format!("{n} nodes"),
        None => "nodes not reported yet".to_owned(),
    };
    format!("cluster {} is {}: Kubernetes {version}, {nodes}\n", cluster.metadata.name, cluster.state())
}

/// What a command that changed cluster `id` prints: with no `wait`, `done` (or the server's
/// `answer` in a structured format); else the change followed for that long ([`follow`] from
/// `generation`) and its summary line (or the cluster as read last).
///
/// # Errors
/// As [`follow`].
pub(super) async fn report_or_follow(
    client: &ApiClient,
    id: &str,
    fmt: super::output::Format,
    wait: Option<Duration>,
    generation: i64,
    answer: &Value,
    done: String,
) -> Result<String, CliError> {
    use super::output::{Format, structured};
    let Some(timeout) = wait else {
        return match fmt {
            Format::Table => Ok(done),
            _ => structured(&fmt, answer),
        };
    };
    let (summary, last) = follow(client, id, timeout, fmt != Format::Table, generation).await?;
    match fmt {
        Format::Table => Ok(summary),
        _ => structured(&fmt, &last),
    }
}

/// Follows cluster `id` until it is active (returns the summary line and the cluster as read last),
/// fails for good, or `timeout` passes. Lines go to stderr with `to_stderr` (structured output keeps
/// stdout for the object), else to stdout. `generation`: the spec's version to follow (after an
/// update): until the server has reconciled it, the cluster shows the outcome of the spec before.
///
/// # Errors
/// [`CliError::Provisioning`] naming the failed step, [`CliError::TimedOut`] with what was under way
/// at the timeout; the
/// client's errors when the cluster cannot be read (a 404 when it was deleted meanwhile).
pub(super) async fn follow(
    client: &ApiClient,
    id: &str,
    timeout: Duration,
    to_stderr: bool,
    generation: i64,
) -> Result<(String, Value), CliError> {
    let path = format!("/v3/clusters/{}", path_segment(id)?);
    let sink = Sink::new(to_stderr);
    let deadline = Instant::now() + timeout;
    let mut seen = Seen::default();
    let mut active_since: Option<Instant> = None;
    let result = loop {
        let raw = match client.call(Method::GET, &path, None).await {
            Ok(v) => v,
            Err(e) => break Err(e),
        };
        let cluster: Cluster = match serde_json::from_value(raw.clone()) {
            Ok(c) => c,
            Err(e) => break Err(CliError::Http(format!("the server's cluster {id} does not parse: {e}"))),
        };
        for line in seen.changes(&cluster) {
            sink.line(&line);
        }
        let p = cluster.status.provisioning.clone().unwrap_or_default();
        sink.progress(p.done(), p.total(), &now_doing(&cluster));
        let current = cluster.status.observed_generation.unwrap_or(0) >= generation;
        match cluster.state() {
            _ if !current => active_since = None,
            ClusterState::Active => {
                let since = *active_since.get_or_insert_with(Instant::now);
                if all_nodes_reported(&cluster) || since.elapsed() >= NODE_COUNT_GRACE {
                    break Ok((summary(&cluster), raw));
                }
            }
            ClusterState::Error => break Err(CliError::Provisioning(failure(&cluster))),
            ClusterState::Removing => {
                break Err(CliError::Provisioning(format!("cluster {id} is being deleted")));
            }
            _ => active_since = None,
        }
        if Instant::now() + POLL > deadline {
            // Not another read: the one at the deadline would come sooner than a second after this.
            tokio::time::sleep_until(deadline).await;
            let doing = now_doing(&cluster);
            let mut msg = format!(
                "timed out after {} waiting for cluster {id} to be active (it is {})",
                jiff::SignedDuration::try_from(timeout)
                    .map_or_else(|_| format!("{timeout:?}"), |d| format!("{d:#}")),
                cluster.state()
            );
            if !doing.is_empty() {
                msg.push_str(&format!(": {doing}"));
            }
            if !seen.last_failure.is_empty() {
                msg.push_str(&format!("; retrying after the last failure: {}", seen.last_failure));
            }
            break Err(CliError::TimedOut(msg));
        }
        tokio::time::sleep(POLL).await;
    };
    sink.finish();
    result
}

#[cfg(test)]
mod tests {
    use rancher_core::ConditionStatus;
    use rancher_core::model::{ClusterSpec, ProvisioningProgress};

    use super::*;

    fn cluster(steps: &[(&str, StepState, &str)]) -> Cluster {
        let mut c = Cluster::new("solo", ClusterSpec::default());
        let mut p = ProvisioningProgress::new("working");
        for (n, s, m) in steps {
            p = p.step(*n, *s, *m);
        }
        c.status.provisioning = Some(p);
        c.status.conditions.set_condition("Provisioned", ConditionStatus::Unknown, "Provisioning", "");
        c
    }

    /// A stand-in API for one cluster whose PUTs conflict `conflicts` times; between its first and
    /// second GET the cluster's status changes, and its `rkeConfig` too when `config_moves`.
    async fn conflicting_api(
        conflicts: u32,
        config_moves: bool,
    ) -> (String, std::sync::Arc<std::sync::Mutex<(u32, u32)>>) {
        use axum::extract::State;
        use axum::routing::get;
        use std::sync::{Arc, Mutex};
        // (GETs, PUTs)
        let calls = Arc::new(Mutex::new((0u32, 0u32)));
        let app = axum::Router::new()
            .route(
                "/v3/clusters/solo",
                get(move |State(calls): State<Arc<Mutex<(u32, u32)>>>| async move {
                    let mut c = calls.lock().unwrap();
                    c.0 += 1;
                    let config = if config_moves && c.0 > 1 { "theirs" } else { "first" };
                    axum::Json(serde_json::json!({
                        "metadata": {"name": "solo", "resourceVersion": c.0.to_string(), "generation": 1},
                        "spec": {"rkeConfig": {"version": config}},
                        "status": {"reads": c.0},
                    }))
                })
                .put(
                    move |State(calls): State<Arc<Mutex<(u32, u32)>>>,
                          axum::Json(body): axum::Json<Value>| async move {
                        let mut c = calls.lock().unwrap();
                        c.1 += 1;
                        if c.1 <= conflicts {
                            let status = rancher_core::Status::failure(
                                409,
                                "Conflict",
                                "the object has been modified",
                            );
                            return (
                                http::StatusCode::CONFLICT,
                                axum::Json(serde_json::to_value(status).unwrap()),
                            );
                        }
                        (http::StatusCode::OK, axum::Json(body))
                    },
                ),
            )
            .with_state(calls.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, calls)
    }

    /// The server writes a cluster's status all along: an update that meets a Conflict from such a
    /// write is sent again on the cluster as it is now; one that meets a change of the very config it
    /// replaces is refused, not lost.
    #[tokio::test]
    async fn an_update_goes_again_after_a_status_write_but_not_over_a_new_config() {
        let config = serde_json::json!({"version": "mine"});
        let (url, calls) = conflicting_api(1, false).await;
        let client = ApiClient::new(&url, None, false, Some("t".into())).unwrap();
        let fmt = super::super::output::Format::Table;
        let out = replace_config(&client, "solo", "rkeConfig", config.clone(), "none", fmt.clone(), None)
            .await
            .unwrap();
        assert_eq!(out, "cluster solo updated\n");
        assert_eq!(*calls.lock().unwrap(), (2, 2), "read again and sent again");

        let (url, calls) = conflicting_api(1, true).await;
        let client = ApiClient::new(&url, None, false, Some("t".into())).unwrap();
        let e = replace_config(&client, "solo", "rkeConfig", config, "none", fmt, None).await.unwrap_err();
        assert!(matches!(&e, CliError::Api(s) if s.reason == "Conflict"), "{e}");
        assert_eq!(*calls.lock().unwrap(), (2, 1), "not sent over the other change");
    }

    #[test]
    fn only_changes_make_lines() {
        let mut seen = Seen::default();
        let c = cluster(&[("certificates", StepState::Done, ""), ("host node1", StepState::Running, "")]);
        assert_eq!(
            seen.changes(&c),
            ["cluster solo: provisioning", "[1/2] certificates: done", "[2/2] host node1: running"]
        );
        assert!(seen.changes(&c).is_empty());
        let mut c = cluster(&[
            ("certificates", StepState::Done, ""),
            ("host node1", StepState::Running, "uploading etcd"),
        ]);
        assert_eq!(seen.changes(&c), ["[2/2] host node1: running (uploading etcd)"]);
        c.status.conditions.set_condition(
            "Provisioned",
            ConditionStatus::Unknown,
            "Retrying",
            "host node1: unreachable",
        );
        assert_eq!(seen.changes(&c), ["retrying: host node1: unreachable"]);
        assert_eq!(now_doing(&c), "host node1: working");
        // The next run starts over: its steps back to pending make no lines, their progress does.
        let again =
            cluster(&[("certificates", StepState::Pending, ""), ("host node1", StepState::Pending, "")]);
        assert!(seen.changes(&again).is_empty());
        let again = cluster(&[("certificates", StepState::Done, ""), ("host node1", StepState::Pending, "")]);
        assert_eq!(seen.changes(&again), ["[1/2] certificates: done"]);
        assert_eq!(seen.last_failure, "host node1: unreachable");
        let failed =
            cluster(&[("certificates", StepState::Done, ""), ("host node1", StepState::Failed, "refused")]);
        seen.changes(&failed);
        assert_eq!(seen.last_failure, "host node1: refused");
    }

    #[test]
    fn a_failure_names_the_failed_step_and_the_summary_the_version_and_nodes() {
        let mut c = cluster(&[("certificates", StepState::Done, ""), ("host node1", StepState::Failed, "")]);
        c.status.conditions.set_condition("Provisioned", ConditionStatus::False, "Failed", "auth refused");
        assert_eq!(c.state(), ClusterState::Error);
        assert_eq!(failure(&c), "cluster solo failed at step \"host node1\": auth refused");
        c.status.provisioning.as_mut().unwrap().steps[1].message = "node1: key refused".into();
        assert_eq!(failure(&c), "cluster solo failed at step \"host node1\": node1: key refused");

        c.status.node_count = Some(3);
        c.status.version = Some(rancher_core::model::KubernetesVersion {
            git_version: "v1.20.2".into(),
            ..Default::default()
        });
        assert!(summary(&c).ends_with(": Kubernetes v1.20.2, 3 nodes\n"), "{}", summary(&c));
    }

    #[test]
    fn timeouts_are_positive_durations() {
        assert_eq!(parse_timeout("20m").unwrap(), Duration::from_secs(1200));
        assert_eq!(parse_timeout("90s").unwrap(), Duration::from_secs(90));
        assert!(parse_timeout("0s").unwrap_err().contains("longer than zero"));
        assert!(parse_timeout("soon").unwrap_err().starts_with("\"soon\" is not a duration"));
        assert!(parse_timeout("2562047788015215h").is_err(), "no deadline overflows");
    }
}
