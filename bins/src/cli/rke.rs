//! `rancherctl cluster create NAME --rke cluster.yml`: a cluster on SSH hosts. The file is checked
//! with the server's own functions before anything is sent, and the keys it names by path travel
//! inline (the server seals them); then the provisioning is followed ([`super::follow`]) unless
//! `--no-wait`. Also the downloads of such a cluster: `cluster rkestate` and
//! `cluster admin-kubeconfig` (files written 0600: they hold the cluster's CA keys).

use std::path::{Path, PathBuf};

use http::Method;
use rancher_core::model::RkeConfig;
use rancher_provision::ProvisionError;
use rancher_provision::rke::{MAX_CLUSTER_YML_BYTES, parse_cluster_yml, validate};
use serde_json::{Value, json};

use super::client::ApiClient;
use super::error::CliError;
use super::output::Format;

/// The largest SSH key file sent (64 KiB).
const MAX_KEY_BYTES: u64 = 64 * 1024;

/// A problem of the file as the user sees it: the file, the field, what is wrong.
fn in_file(file: &Path, e: ProvisionError) -> CliError {
    CliError::Input(format!("{}: {e}", file.display()))
}

/// Reads a small file whole, refusing one over `limit` bytes.
fn read_limited(path: &Path, limit: u64) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?.take(limit + 1).read_to_string(&mut text)?;
    if text.len() as u64 > limit {
        return Err(std::io::Error::other(format!("larger than {limit} bytes")));
    }
    Ok(text)
}

/// `~/x` under the home directory; other paths as they are.
fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), dirs::home_dir()) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(path),
    }
}

/// Puts the contents of `path` into `key` when it can be read here. Returns a note for the user when
/// it cannot: the server then reads the path from its own filesystem.
pub(super) fn inline(key: &mut String, path: &mut String, field: &str) -> Result<Option<String>, CliError> {
    if !key.is_empty() || path.is_empty() {
        return Ok(None);
    }
    let local = expand_home(path);
    match read_limited(&local, MAX_KEY_BYTES) {
        Ok(text) if text.trim().is_empty() => {
            Err(CliError::Input(format!("{field}: {} is empty", local.display())))
        }
        Ok(text) => {
            *key = text;
            path.clear();
            Ok(None)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Some(format!(
            "{field}: {} is not here: the server will read it from its own filesystem",
            local.display()
        ))),
        Err(e) => Err(CliError::Input(format!("{field}: reading {}: {e}", local.display()))),
    }
}

/// Reads, parses and checks a cluster.yml, the keys named by readable paths inlined. Returns the
/// config and notes for the user.
///
/// # Errors
/// [`CliError::Input`] naming the file and the field.
pub(super) fn load(file: &Path) -> Result<(RkeConfig, Vec<String>), CliError> {
    let text = read_limited(file, MAX_CLUSTER_YML_BYTES as u64)
        .map_err(|e| CliError::Input(format!("reading {}: {e}", file.display())))?;
    let mut cfg = parse_cluster_yml(&text).map_err(|e| in_file(file, e))?;
    let mut notes = Vec::new();
    notes.extend(inline(&mut cfg.ssh_key, &mut cfg.ssh_key_path, "rkeConfig.ssh_key_path")?);
    for (i, n) in cfg.nodes.iter_mut().enumerate() {
        let field = format!("rkeConfig.nodes[{i}].ssh_key_path");
        notes.extend(inline(&mut n.ssh_key, &mut n.ssh_key_path, &field)?);
    }
    if let Some(b) = &mut cfg.bastion_host {
        notes.extend(inline(&mut b.ssh_key, &mut b.ssh_key_path, "rkeConfig.bastion_host.ssh_key_path")?);
    }
    validate(&cfg).map_err(|e| in_file(file, e))?;
    Ok((cfg, notes))
}

/// [`load`], its notes told on stderr, as the `rkeConfig` to send.
fn load_for_sending(file: &Path) -> Result<Value, CliError> {
    let (cfg, notes) = load(file)?;
    for note in notes {
        eprintln!("note: {note}");
    }
    serde_json::to_value(&cfg).map_err(|e| CliError::Input(format!("encoding the cluster.yml: {e}")))
}

/// `rancherctl cluster create NAME --rke FILE`; `wait`: follow the provisioning for that long.
pub(super) async fn create(
    client: &ApiClient,
    name: &str,
    description: &str,
    file: &Path,
    fmt: Format,
    wait: Option<std::time::Duration>,
) -> Result<String, CliError> {
    let rke_config = load_for_sending(file)?;
    let spec = json!({ "displayName": name, "description": description, "rkeConfig": rke_config });
    super::follow::create_cluster(client, name, spec, fmt, wait).await
}

/// `rancherctl cluster update NAME --rke FILE`: the cluster's `rkeConfig` replaced (read, changed,
/// written back with the version read: a concurrent change of the `rkeConfig` is a Conflict, not
/// lost; one of its status is not); `wait`: follow the rollout for that long.
pub(super) async fn update(
    client: &ApiClient,
    name: &str,
    file: &Path,
    fmt: Format,
    wait: Option<std::time::Duration>,
) -> Result<String, CliError> {
    let rke_config = load_for_sending(file)?;
    let without = format!("cluster {name} is not built on hosts (it has no rkeConfig)");
    super::follow::replace_config(client, name, "rkeConfig", rke_config, &without, fmt, wait).await
}

/// `rancherctl cluster rkestate NAME [-o FILE]`: the cluster's state as RKE's `cluster.rkestate`.
pub(super) async fn rkestate(client: &ApiClient, name: &str, out: Option<&Path>) -> Result<String, CliError> {
    let answer = download(client, name, "exportState").await?;
    let state = answer
        .get("state")
        .filter(|v| v.is_object())
        .ok_or_else(|| CliError::Http("the server's exportState answer has no \"state\"".into()))?;
    let mut text = serde_json::to_string_pretty(state)
        .map_err(|e| CliError::Http(format!("encoding the cluster's state: {e}")))?;
    text.push('\n');
    deliver(text, out, &format!("the state of cluster {name}"))
}

/// `rancherctl cluster admin-kubeconfig NAME [-o FILE]`: `kube_config_<name>.yml`, straight to the
/// cluster's API server with the admin certificate.
pub(super) async fn admin_kubeconfig(
    client: &ApiClient,
    name: &str,
    out: Option<&Path>,
) -> Result<String, CliError> {
    let answer = download(client, name, "exportAdminKubeconfig").await?;
    let mut config = answer.get("config").and_then(Value::as_str).map(str::to_owned).ok_or_else(|| {
        CliError::Http("the server's exportAdminKubeconfig answer has no \"config\"".into())
    })?;
    if !config.ends_with('\n') {
        config.push('\n');
    }
    deliver(config, out, &format!("the admin kubeconfig of cluster {name}"))
}

async fn download(client: &ApiClient, name: &str, action: &str) -> Result<Value, CliError> {
    let path = format!("/v3/clusters/{}?action={action}", super::commands::path_segment(name)?);
    client.call(Method::POST, &path, None).await
}

/// `text` on stdout, or written to `out` (0600) with a line saying so.
fn deliver(text: String, out: Option<&Path>, what: &str) -> Result<String, CliError> {
    let Some(path) = out else { return Ok(text) };
    write_private(path, text.as_bytes())
        .map_err(|e| CliError::Config(format!("writing {}: {e}", path.display())))?;
    Ok(format!("wrote {what} to {} (mode 0600: it holds the cluster's CA keys)\n", path.display()))
}

/// Writes `bytes` to `path` readable by its owner only, also when the file existed with a wider mode.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn downloads_are_written_owner_only_even_over_a_wider_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kube_config_solo.yml");
        std::fs::write(&path, "old and longer content").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let said = deliver("new\n".into(), Some(&path), "the admin kubeconfig of cluster solo").unwrap();
        assert!(said.starts_with("wrote the admin kubeconfig of cluster solo to "), "{said}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(deliver("as is".into(), None, "x").unwrap(), "as is");
    }

    #[test]
    fn key_paths_readable_here_travel_inline_others_stay_for_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id_ed25519");
        std::fs::write(&key, "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n").unwrap();
        let yml = dir.path().join("cluster.yml");
        std::fs::write(
            &yml,
            format!(
                "nodes:\n  - address: 10.0.0.1\n    role: [etcd, controlplane, worker]\n    ssh_key_path: {}\n  \
                 - address: 10.0.0.2\n    role: [worker]\n    ssh_key_path: /nonexistent/id_rsa\n",
                key.display()
            ),
        )
        .unwrap();
        let (cfg, notes) = load(&yml).unwrap();
        assert!(
            cfg.nodes[0].ssh_key.starts_with("-----BEGIN OPENSSH") && cfg.nodes[0].ssh_key_path.is_empty()
        );
        assert_eq!(cfg.nodes[1].ssh_key_path, "/nonexistent/id_rsa");
        assert_eq!(notes.len(), 1);
        assert!(
            notes[0].starts_with("rkeConfig.nodes[1].ssh_key_path: /nonexistent/id_rsa is not here"),
            "{notes:?}"
        );

        std::fs::write(&yml, "nodes:\n  - address: 10.0.0.1\n    role: [etcd, master]\n    ssh_key: k\n")
            .unwrap();
        let err = load(&yml).unwrap_err().to_string();
        assert!(err.ends_with("cluster.yml: rkeConfig.nodes[0].role[1]: \"master\" is not a role: the roles are etcd, controlplane, worker"), "{err}");
    }
}
