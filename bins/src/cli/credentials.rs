//! `rancherctl credential create|ls|rm|rotate`: cloud credentials. Secrets are read from a file or
//! stdin (`-`), never from the command line (where `ps` and shell history would show them); the
//! server seals them and never shows them again.

use std::path::Path;

use http::Method;
use serde_json::{Value, json};

use super::client::ApiClient;
use super::commands::{data, list_output, path_segment, str_at};
use super::error::CliError;
use super::output::{Format, age, structured};
use super::{CredentialCommand, NewCredential};

/// The largest secret file read (a service-account key file is about 2.3 KiB).
const MAX_SECRET: u64 = 64 * 1024;

const COLUMNS: &[&str] = &["NAME", "CLOUD", "ID", "DESCRIPTION", "OWNER", "AGE"];

/// The config keys by cloud, with their secret field.
const CONFIGS: [(&str, &str, &str); 3] = [
    ("aws", "amazonec2credentialConfig", "secretKey"),
    ("gcp", "googlecredentialConfig", "authEncodedJson"),
    ("azure", "azurecredentialConfig", "clientSecret"),
];

/// The text of a secret file (`-`: stdin). One-line secrets (keys, client secrets) lose surrounding
/// whitespace, a key file is sent as it is.
fn read_secret(path: &Path, flag: &str, one_line: bool) -> Result<String, CliError> {
    let (mut text, from) = super::input::read_text(path, MAX_SECRET, flag)?;
    if one_line {
        text = text.trim().to_owned();
    }
    if text.trim().is_empty() {
        return Err(CliError::Input(format!("{flag}: {from} is empty")));
    }
    Ok(text)
}

/// The body of a new credential.
fn new_body(cloud: NewCredential) -> Result<(String, Value, Format), CliError> {
    let (name, description, key, config, out) = match cloud {
        NewCredential::Aws { name, description, access_key, secret_key_file, region, out } => {
            let secret = read_secret(&secret_key_file, "--secret-key-file", true)?;
            let config = json!({"accessKey": access_key, "secretKey": secret, "defaultRegion": region});
            (name, description, "amazonec2credentialConfig", config, out)
        }
        NewCredential::Gcp { name, description, key_file, out } => {
            let key = read_secret(&key_file, "--key-file", false)?;
            (name, description, "googlecredentialConfig", json!({"authEncodedJson": key}), out)
        }
        NewCredential::Azure {
            name,
            description,
            client_id,
            client_secret_file,
            subscription_id,
            tenant_id,
            environment,
            out,
        } => {
            let secret = read_secret(&client_secret_file, "--client-secret-file", true)?;
            let config = json!({
                "clientId": client_id,
                "clientSecret": secret,
                "subscriptionId": subscription_id,
                "tenantId": tenant_id,
                "environment": environment,
            });
            (name, description, "azurecredentialConfig", config, out)
        }
    };
    path_segment(&name)?;
    let body = json!({
        "metadata": {"name": name},
        "spec": {"displayName": name, "description": description, key: config},
    });
    Ok((name, body, out.output))
}

/// Which cloud a credential is for, and the identity it shows (access key, client id).
fn cloud_of(v: &Value) -> (&'static str, String) {
    for (cloud, key, _) in CONFIGS {
        if let Some(config) = v.pointer(&format!("/spec/{key}")).filter(|c| c.is_object()) {
            let id = match cloud {
                "aws" => str_at(config, &["accessKey"]),
                "azure" => str_at(config, &["clientId"]),
                _ => "",
            };
            return (cloud, id.to_owned());
        }
    }
    ("-", String::new())
}

fn dash(s: &str) -> String {
    if s.is_empty() { "-".into() } else { s.to_owned() }
}

fn row(v: &Value) -> Vec<String> {
    let (cloud, id) = cloud_of(v);
    let created = str_at(v, &["metadata", "creationTimestamp"]).parse().ok();
    vec![
        str_at(v, &["id"]).to_owned(),
        cloud.to_owned(),
        dash(&id),
        dash(str_at(v, &["spec", "description"])),
        dash(v.pointer("/metadata/labels/field.cattle.io~1creatorId").and_then(Value::as_str).unwrap_or("")),
        age(created),
    ]
}

/// Runs a `credential` command.
pub(super) async fn run(client: &ApiClient, cmd: CredentialCommand) -> Result<String, CliError> {
    match cmd {
        CredentialCommand::Create { cloud } => {
            let (name, body, out) = new_body(cloud)?;
            let created = client.call(Method::POST, "/v3/cloudcredentials", Some(&body)).await?;
            match out {
                Format::Table => Ok(format!("cloud credential {name} created\n")),
                _ => structured(&out, &created),
            }
        }
        CredentialCommand::Ls(o) => {
            let items = data(client.call(Method::GET, "/v3/cloudcredentials", None).await?);
            list_output(o.output, items, COLUMNS, row)
        }
        CredentialCommand::Rm { name } => {
            let path = format!("/v3/cloudcredentials/{}", path_segment(&name)?);
            client.call(Method::DELETE, &path, None).await?;
            Ok(format!("cloud credential {name} deleted\n"))
        }
        CredentialCommand::Rotate { name, secret_file } => {
            let path = format!("/v3/cloudcredentials/{}", path_segment(&name)?);
            let mut current = client.call(Method::GET, &path, None).await?;
            let (key, field) = CONFIGS
                .iter()
                .find(|(_, key, _)| current.pointer(&format!("/spec/{key}")).is_some_and(Value::is_object))
                .map(|(_, key, field)| (*key, *field))
                .ok_or_else(|| {
                    CliError::Http(format!("the server's answer for {name} holds no cloud config"))
                })?;
            let secret = read_secret(&secret_file, "--secret-file", key != "googlecredentialConfig")?;
            current["spec"][key][field] = Value::String(secret);
            client.call(Method::PUT, &path, Some(&current)).await?;
            Ok(format!("cloud credential {name}: {field} rotated\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_from_files_trimmed_when_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "  wJalrXUtnFEMI\n").unwrap();
        assert_eq!(read_secret(&file, "--secret-key-file", true).unwrap(), "wJalrXUtnFEMI");
        assert_eq!(read_secret(&file, "--key-file", false).unwrap(), "  wJalrXUtnFEMI\n");
        std::fs::write(&file, "\n").unwrap();
        let e = read_secret(&file, "--secret-key-file", true).unwrap_err().to_string();
        assert!(e.contains("--secret-key-file") && e.contains("is empty"), "{e}");
        let e = read_secret(&dir.path().join("none"), "--key-file", false).unwrap_err().to_string();
        assert!(e.starts_with("--key-file: reading"), "{e}");
    }

    #[test]
    fn rows_show_the_cloud_and_identity_never_a_secret() {
        let v = json!({
            "id": "cc-aws",
            "metadata": {"labels": {"field.cattle.io/creatorId": "u-abc"}},
            "spec": {"amazonec2credentialConfig": {"accessKey": "AKIAIOSFODNN7EXAMPLE", "secretKey": "[sealed]"}},
        });
        let r = row(&v);
        assert_eq!(r[..5], ["cc-aws", "aws", "AKIAIOSFODNN7EXAMPLE", "-", "u-abc"]);
        let gcp = json!({"id": "cc-g", "spec": {"googlecredentialConfig": {"authEncodedJson": "[sealed]"}}});
        assert_eq!(row(&gcp)[1..3], ["gcp", "-"]);
    }
}
