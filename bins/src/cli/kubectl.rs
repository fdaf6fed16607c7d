//! `rancherctl kubectl`: kubectl against one cluster, or one command across every cluster the user
//! may reach, through the server's proxy (`/k8s/clusters/<id>`) with the context's own token.
//!
//! The kubeconfig is made here, not asked of the server (which would mint a kubeconfig token per
//! cluster per run): one context per cluster, written to a private temporary directory (0700, the
//! file 0600) and removed when the command ends. With one cluster kubectl runs on the terminal (so
//! `exec -it` and `edit` work) and its exit code is rancherctl's. With `--all-clusters` it runs once
//! per cluster, at most `--concurrency` at once and each within `--timeout`, and the results are
//! one table: every line of each cluster's output behind the cluster's id, or its error; the exit
//! code is 1 when any cluster failed. A plain `get` across the fleet is read by rancherctl itself
//! ([`kubectl_get`]): one request per cluster instead of one kubectl process.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use http::Method;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::client::ApiClient;
use super::commands::{data, path_segment, str_at};
use super::config::Context;
use super::error::CliError;
use super::kubectl_get::{self, GetPlan};
use super::output::table;

/// `rancherctl kubectl`.
#[derive(Debug, clap::Args)]
pub struct KubectlArgs {
    /// The cluster (its id); not with --all-clusters.
    #[arg(required_unless_present = "all_clusters", conflicts_with = "all_clusters")]
    pub cluster: Option<String>,
    /// Every cluster you may reach (what `cluster ls` lists), in one table.
    #[arg(long, short = 'A')]
    pub all_clusters: bool,
    /// With --all-clusters: only the clusters whose labels match, e.g. `env=prod,tier!=edge,gpu`.
    #[arg(long, short = 'l', requires = "all_clusters")]
    pub selector: Option<String>,
    /// With --all-clusters: how many clusters are asked at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// With --all-clusters: how long one cluster may take.
    #[arg(long, default_value = "30s", value_parser = super::follow::parse_timeout)]
    pub timeout: Duration,
    /// The kubectl to run.
    #[arg(long, env = "RANCHERCTL_KUBECTL", default_value = "kubectl")]
    pub kubectl: PathBuf,
    /// kubectl's arguments, after `--`, e.g. `-- get nodes`.
    #[arg(last = true, required = true)]
    pub args: Vec<String>,
}

/// Runs the command; see the module documentation.
pub(super) async fn run(ctx: &Context, client: &ApiClient, args: KubectlArgs) -> Result<String, CliError> {
    if args.args.iter().any(|a| a == "--kubeconfig" || a.starts_with("--kubeconfig=") || a == "--context") {
        return Err(CliError::Input(
            "rancherctl chooses the kubeconfig and the context: leave out --kubeconfig and --context".into(),
        ));
    }
    let clusters = match &args.cluster {
        Some(one) => vec![path_segment(one)?.to_owned()],
        None => {
            let selector = Selector::parse(args.selector.as_deref().unwrap_or(""))?;
            let listed = data(client.call(Method::GET, "/v3/clusters", None).await?);
            let mut ids: Vec<String> = listed
                .iter()
                .filter(|c| selector.matches(c.pointer("/metadata/labels")))
                .map(|c| str_at(c, &["metadata", "name"]).to_owned())
                .filter(|id| path_segment(id).is_ok())
                .collect();
            ids.sort();
            ids
        }
    };
    if clusters.is_empty() {
        return Ok("no clusters matched\n".into());
    }
    if args.cluster.is_none()
        && let Some(plan) = GetPlan::parse(&args.args)
        && let Some(out) =
            kubectl_get::fan_out(client, plan, &clusters, args.concurrency, args.timeout).await?
    {
        return Ok(out);
    }
    let dir = PrivateDir::new()?;
    let kubeconfig = dir.path().join("kubeconfig");
    write_private(&kubeconfig, &kubeconfig_for(ctx, &clusters)?)?;
    match &args.cluster {
        Some(one) => interactive(&args, &kubeconfig, one).await,
        None => fan_out(&args, &kubeconfig, clusters).await,
    }
}

/// kubectl on the terminal; its exit code becomes rancherctl's.
async fn interactive(args: &KubectlArgs, kubeconfig: &Path, cluster: &str) -> Result<String, CliError> {
    let status = tokio::process::Command::new(&args.kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--context", cluster])
        .args(&args.args)
        .status()
        .await
        .map_err(|e| CliError::Config(format!("running {}: {e}", args.kubectl.display())))?;
    match status.code() {
        Some(0) => Ok(String::new()),
        code => Err(CliError::Exited(code.map_or(1, |c| u8::try_from(c).unwrap_or(1)))),
    }
}

/// What one cluster answered: its rows (without the cluster), or its error.
pub(super) struct Outcome {
    pub(super) cluster: String,
    pub(super) result: Result<Vec<Vec<String>>, String>,
}

async fn fan_out(args: &KubectlArgs, kubeconfig: &Path, clusters: Vec<String>) -> Result<String, CliError> {
    let answers = ask_each(clusters, args.concurrency, args.timeout, |cluster| {
        let mut cmd = tokio::process::Command::new(&args.kubectl);
        cmd.arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--context", &cluster])
            .args(["--request-timeout", &format!("{}s", args.timeout.as_secs().max(1))])
            .args(&args.args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        async move {
            match cmd.output().await {
                Err(e) => Err(format!("running kubectl: {e}")),
                Ok(out) if out.status.success() => {
                    Ok(String::from_utf8_lossy(&out.stdout).lines().map(|l| vec![l.to_owned()]).collect())
                }
                Ok(out) => {
                    let err = String::from_utf8_lossy(&out.stderr);
                    Err(err
                        .lines()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("kubectl failed")
                        .trim()
                        .to_owned())
                }
            }
        }
    })
    .await?;
    let outcomes = answers.into_iter().map(|(cluster, result)| Outcome { cluster, result }).collect();
    merged(&["OUTPUT".to_owned()], outcomes)
}

/// `ask` of every cluster, at most `concurrency` at once and each within `timeout` (past it, the
/// cluster's error is that it did not answer); the answers in cluster order.
pub(super) async fn ask_each<T, F, Fut>(
    clusters: Vec<String>,
    concurrency: u16,
    timeout: Duration,
    ask: F,
) -> Result<Vec<(String, Result<T, String>)>, CliError>
where
    T: Send + 'static,
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<T, String>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(usize::from(concurrency)));
    let mut tasks = tokio::task::JoinSet::new();
    for cluster in clusters {
        let (slots, asked) = (slots.clone(), ask(cluster.clone()));
        tasks.spawn(async move {
            let _slot = slots.acquire_owned().await;
            let result = tokio::time::timeout(timeout, asked)
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")));
            (cluster, result)
        });
    }
    let mut answers = Vec::new();
    while let Some(done) = tasks.join_next().await {
        answers.push(done.map_err(|e| CliError::Input(format!("a cluster's task failed: {e}")))?);
    }
    answers.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(answers)
}

/// One table of every cluster's rows behind its id (a cluster without rows gets an empty one), or
/// its error; [`CliError::SomeClustersFailed`] when any failed.
pub(super) fn merged(columns: &[String], outcomes: Vec<Outcome>) -> Result<String, CliError> {
    let total = outcomes.len();
    let mut rows = Vec::new();
    let mut failed = 0;
    for o in outcomes {
        match o.result {
            Ok(found) if found.is_empty() => rows.push(vec![o.cluster, String::new()]),
            Ok(found) => rows.extend(found.into_iter().map(|cells| {
                let mut row = vec![o.cluster.clone()];
                row.extend(cells);
                row
            })),
            Err(e) => {
                failed += 1;
                rows.push(vec![o.cluster, format!("error: {e}")]);
            }
        }
    }
    let headers: Vec<&str> = std::iter::once("CLUSTER").chain(columns.iter().map(String::as_str)).collect();
    let out = table(&headers, &rows);
    if failed > 0 {
        return Err(CliError::SomeClustersFailed { output: out, failed, total });
    }
    Ok(out)
}

/// A kubeconfig with one context per cluster, all reaching the server's proxy with the context's
/// token.
fn kubeconfig_for(ctx: &Context, clusters: &[String]) -> Result<String, CliError> {
    let mut server_fields = serde_json::Map::new();
    if let Some(ca) = &ctx.cacert {
        let b64 = base64::engine::general_purpose::STANDARD.encode(ca.as_bytes());
        server_fields.insert("certificate-authority-data".into(), json!(b64));
    }
    if ctx.insecure {
        server_fields.insert("insecure-skip-tls-verify".into(), json!(true));
    }
    let base = ctx.server.trim_end_matches('/');
    let named: Vec<(Value, Value)> = clusters
        .iter()
        .map(|c| {
            let mut cluster = server_fields.clone();
            cluster.insert("server".into(), json!(format!("{base}/k8s/clusters/{c}")));
            (
                json!({"name": c, "cluster": cluster}),
                json!({"name": c, "context": {"cluster": c, "user": "rancherctl"}}),
            )
        })
        .collect();
    let (clusters, contexts): (Vec<Value>, Vec<Value>) = named.into_iter().unzip();
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": clusters,
        "contexts": contexts,
        "users": [{"name": "rancherctl", "user": {"token": ctx.token}}],
    });
    serde_json::to_string_pretty(&doc).map_err(|e| CliError::Config(e.to_string()))
}

/// A label selector of `key=value`, `key==value`, `key!=value` and `key` terms, comma separated.
#[derive(Debug, Default, PartialEq, Eq)]
struct Selector(Vec<(String, Term)>);

#[derive(Debug, PartialEq, Eq)]
enum Term {
    Equals(String),
    NotEquals(String),
    Exists,
}

impl Selector {
    fn parse(s: &str) -> Result<Self, CliError> {
        let bad =
            |t: &str| CliError::Input(format!("{t:?} is not a selector term (key=value, key!=value or key)"));
        let mut terms = Vec::new();
        for t in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (key, term) = if let Some((k, v)) = t.split_once("!=") {
                (k, Term::NotEquals(v.trim().to_owned()))
            } else if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
                (k, Term::Equals(v.trim().to_owned()))
            } else {
                (t, Term::Exists)
            };
            let key = key.trim();
            if key.is_empty() || key.contains(['=', '!', ' ']) {
                return Err(bad(t));
            }
            terms.push((key.to_owned(), term));
        }
        Ok(Selector(terms))
    }

    fn matches(&self, labels: Option<&Value>) -> bool {
        let labels: BTreeMap<&str, &str> = labels
            .and_then(Value::as_object)
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.as_str(), v.as_str()?))).collect())
            .unwrap_or_default();
        self.0.iter().all(|(key, term)| match term {
            Term::Equals(v) => labels.get(key.as_str()) == Some(&v.as_str()),
            Term::NotEquals(v) => labels.get(key.as_str()) != Some(&v.as_str()),
            Term::Exists => labels.contains_key(key.as_str()),
        })
    }
}

/// A directory only this user may read, removed with what is in it when dropped.
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn new() -> Result<Self, CliError> {
        let base = std::env::temp_dir();
        for attempt in 0..16u32 {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let dir = base.join(format!("rancherctl-{}-{nanos:x}-{attempt}", std::process::id()));
            let mut builder = std::fs::DirBuilder::new();
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            match builder.create(&dir) {
                Ok(()) => return Ok(PrivateDir(dir)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(CliError::Config(format!(
                        "a temporary directory in {}: {e}",
                        base.display()
                    )));
                }
            }
        }
        Err(CliError::Config(format!("no free temporary directory name in {}", base.display())))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write_private(path: &Path, contents: &str) -> Result<(), CliError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut file = opts.open(path).map_err(|e| CliError::Config(format!("{}: {e}", path.display())))?;
    file.write_all(contents.as_bytes()).map_err(|e| CliError::Config(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_match_labels_as_kubectl_does() {
        let labels = json!({"env": "prod", "tier": "core"});
        let m = |s: &str| Selector::parse(s).unwrap().matches(Some(&labels));
        assert!(m("") && m("env=prod") && m("env==prod") && m("env=prod,tier") && m("gpu!=yes"));
        assert!(!m("env=dev") && !m("gpu") && !m("tier!=core") && !m("env=prod,gpu"));
        assert!(!Selector::parse("env=prod").unwrap().matches(None));
        assert!(Selector::parse("=x").is_err() && Selector::parse("a b").is_err());
    }

    #[test]
    fn the_kubeconfig_has_a_context_per_cluster_through_the_proxy() {
        let ctx = Context {
            name: "admin@h".into(),
            server: "https://h:8443/".into(),
            user: "admin".into(),
            token: "token-abc:secret".into(),
            cacert: Some("-----BEGIN CERTIFICATE-----\n".into()),
            insecure: false,
        };
        let doc: Value =
            serde_json::from_str(&kubeconfig_for(&ctx, &["a".into(), "b".into()]).unwrap()).unwrap();
        assert_eq!(doc["clusters"][1]["cluster"]["server"], "https://h:8443/k8s/clusters/b");
        assert!(doc["clusters"][0]["cluster"]["certificate-authority-data"].is_string());
        assert_eq!(doc["contexts"][0]["context"]["cluster"], "a");
        assert_eq!(doc["users"][0]["user"]["token"], "token-abc:secret");
    }

    #[test]
    fn the_temporary_directory_is_private_and_removed() {
        let dir = PrivateDir::new().unwrap();
        let file = dir.path().join("kubeconfig");
        write_private(&file, "x").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777, 0o700);
            assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let path = dir.path().to_owned();
        drop(dir);
        assert!(!path.exists());
    }
}
