//! `rancherctl cluster edit`: a cluster's settings that are not its engine's — the name people see,
//! the description, the authorized cluster endpoint, the role a project's members get by default.
//! Only the fields given change; the rest of the cluster is sent back as read.

use std::path::PathBuf;

use http::Method;
use serde_json::Value;

use super::OutputArg;
use super::client::ApiClient;
use super::commands::path_segment;
use super::error::CliError;
use super::output::{Format, structured};

/// The most a CA file may hold.
const MAX_CA_FILE: u64 = 1 << 20;

/// `rancherctl cluster edit`.
#[derive(Debug, clap::Args)]
pub struct EditArgs {
    /// The cluster's name.
    name: String,
    /// The name people see.
    #[arg(long)]
    display_name: Option<String>,
    /// Free text.
    #[arg(long)]
    description: Option<String>,
    /// Turn the authorized cluster endpoint on or off: with it on, kubeconfigs get a second context
    /// that reaches the cluster's API server directly, checked by the cluster's webhook.
    #[arg(long = "ace", visible_alias = "authorized-endpoint", value_name = "true|false")]
    ace: Option<bool>,
    /// Where the direct context points (`host[:port]`, a load balancer in front of the cluster's
    /// API servers); empty: the first control-plane host.
    #[arg(long, value_name = "HOST[:PORT]")]
    ace_fqdn: Option<String>,
    /// The CA certificates (PEM) the direct context trusts, when --ace-fqdn presents another CA
    /// than the cluster's; `-` reads standard input, an empty file clears them.
    #[arg(long, value_name = "FILE")]
    ace_ca_certs: Option<PathBuf>,
    /// The role template a project's members get by default.
    #[arg(long, value_name = "TEMPLATE")]
    default_project_member_role: Option<String>,
    /// Output format (JSON/YAML: the cluster as updated).
    #[command(flatten)]
    out: OutputArg,
}

impl EditArgs {
    /// The edits, as JSON pointers into the cluster and their new values.
    fn edits(&self) -> Result<Vec<(&'static str, Value)>, CliError> {
        let mut edits = Vec::new();
        let mut set = |pointer, value: Option<Value>| {
            if let Some(v) = value {
                edits.push((pointer, v));
            }
        };
        set("/spec/displayName", self.display_name.clone().map(Value::String));
        set("/spec/description", self.description.clone().map(Value::String));
        set("/spec/localClusterAuthEndpoint/enabled", self.ace.map(Value::Bool));
        set("/spec/localClusterAuthEndpoint/fqdn", self.ace_fqdn.clone().map(Value::String));
        set("/spec/localClusterAuthEndpoint/caCerts", self.ace_ca_certs.as_deref().map(read_ca).transpose()?);
        set(
            "/spec/defaultClusterRoleForProjectMembers",
            self.default_project_member_role.clone().map(Value::String),
        );
        if edits.is_empty() {
            return Err(CliError::Input(
                "nothing to change: give --display-name, --description, --ace, --ace-fqdn, --ace-ca-certs or \
                 --default-project-member-role"
                    .into(),
            ));
        }
        Ok(edits)
    }
}

fn read_ca(path: &std::path::Path) -> Result<Value, CliError> {
    let (text, from) = super::input::read_text(path, MAX_CA_FILE, "--ace-ca-certs")?;
    if !text.trim().is_empty() && !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err(CliError::Input(format!("{from} holds no PEM certificate")));
    }
    Ok(Value::String(text))
}

/// Sets `pointer` in `doc` to `value`, making the objects on the way.
fn set(doc: &mut Value, pointer: &str, value: Value) {
    let mut here = doc;
    for key in pointer.trim_start_matches('/').split('/') {
        if !here.is_object() {
            *here = Value::Object(Default::default());
        }
        here = here.as_object_mut().expect("made an object above").entry(key).or_insert(Value::Null);
    }
    *here = value;
}

/// Runs `rancherctl cluster edit`.
pub(super) async fn edit(client: &ApiClient, args: EditArgs) -> Result<String, CliError> {
    let edits = args.edits()?;
    let path = format!("/v3/clusters/{}", path_segment(&args.name)?);
    let cluster = client.call(Method::GET, &path, None).await?;
    let read: Vec<Option<Value>> = edits.iter().map(|(p, _)| cluster.pointer(p).cloned()).collect();
    // A concurrent status write is sent again; a concurrent change of a field being edited is the
    // caller's to look at.
    let apply = |c: &mut Value| {
        for (pointer, value) in &edits {
            set(c, pointer, value.clone());
        }
    };
    let untouched =
        |now: &Value| edits.iter().zip(&read).all(|((p, _), before)| now.pointer(p) == before.as_ref());
    let (updated, warnings) = client.put_changed(&path, cluster, apply, untouched).await?;
    for w in warnings {
        eprintln!("Warning: {w}");
    }
    match &args.out.output {
        Format::Table => {
            let changed: Vec<&str> = edits
                .iter()
                .zip(&read)
                .filter(|((_, new), old)| old.as_ref() != Some(new))
                .map(|((p, _), _)| p.trim_start_matches("/spec/"))
                .collect();
            Ok(if changed.is_empty() {
                format!("cluster {} unchanged\n", args.name)
            } else {
                format!("cluster {} updated: {}\n", args.name, changed.join(", ").replace('/', "."))
            })
        }
        fmt => structured(fmt, &updated),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_pointer_is_set_through_objects_it_makes() {
        let mut doc = json!({"spec": {"description": "x"}});
        set(&mut doc, "/spec/localClusterAuthEndpoint/enabled", json!(true));
        set(&mut doc, "/spec/description", json!("y"));
        assert_eq!(doc, json!({"spec": {"description": "y", "localClusterAuthEndpoint": {"enabled": true}}}));
    }

    #[test]
    fn an_edit_without_changes_or_with_a_file_that_is_not_pem_is_refused() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cmd {
            #[command(flatten)]
            edit: EditArgs,
        }
        let none = Cmd::parse_from(["x", "demo"]).edit.edits().unwrap_err();
        assert!(none.to_string().contains("nothing to change"), "{none}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, "not a certificate").unwrap();
        let args = Cmd::parse_from(["x", "demo", "--ace-ca-certs", file.to_str().unwrap()]).edit;
        assert!(args.edits().unwrap_err().to_string().contains("holds no PEM certificate"));
        let args = Cmd::parse_from(["x", "demo", "--ace", "true", "--ace-fqdn", "lb:6443"]).edit;
        assert_eq!(args.edits().unwrap().len(), 2);
    }
}
