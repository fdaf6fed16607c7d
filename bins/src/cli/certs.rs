//! `rancherctl cluster rotate-certs NAME [--new-ca] [--service S]...` (the cluster's
//! `rotateCertificates` action) and `rancherctl cluster certs NAME`: each certificate's expiry, from
//! the cluster's `status.certificatesExpiration`, soonest first.

use http::Method;
use serde_json::{Value, json};

use super::client::ApiClient;
use super::commands::path_segment;
use super::error::CliError;
use super::output::{Format, structured, table};

/// The condition that warns of certificates close to their expiry.
const EXPIRING: &str = "CertificatesExpiring";

/// Asks for the rotation; returns the server's message.
pub(super) async fn rotate(
    client: &ApiClient,
    name: &str,
    new_ca: bool,
    services: &[String],
    wait: Option<std::time::Duration>,
) -> Result<String, CliError> {
    if new_ca && !services.is_empty() {
        return Err(CliError::Input(
            "--new-ca issues every certificate again: give no --service with it".into(),
        ));
    }
    let path = format!("/v3/clusters/{}?action=rotateCertificates", path_segment(name)?);
    let body = json!({"caCertificates": new_ca, "services": services});
    let answer = client.call(Method::POST, &path, Some(&body)).await?;
    let message = answer.get("message").and_then(Value::as_str).unwrap_or("rotation requested");
    let Some(timeout) = wait else {
        return Ok(format!("{message}; follow it with: rancherctl cluster get {name}\n"));
    };
    println!("{message}");
    // The request is a change of the spec: follow the generation it made.
    let cluster = client.call(Method::GET, &format!("/v3/clusters/{}", path_segment(name)?), None).await?;
    let generation = cluster.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
    let (summary, _) = super::follow::follow(client, name, timeout, false, generation).await?;
    Ok(summary)
}

/// The certificates' table (or the status field as JSON/YAML).
pub(super) async fn show(client: &ApiClient, name: &str, fmt: Format) -> Result<String, CliError> {
    let c = client.call(Method::GET, &format!("/v3/clusters/{}", path_segment(name)?), None).await?;
    let expirations = c.pointer("/status/certificatesExpiration").cloned().unwrap_or(json!({}));
    if fmt != Format::Table {
        return structured(&fmt, &expirations);
    }
    let Some(map) = expirations.as_object().filter(|m| !m.is_empty()) else {
        return Err(CliError::Input(format!(
            "cluster {name} shows no certificates: only clusters built on hosts have them, once provisioned"
        )));
    };
    let mut out = render(map, jiff::Timestamp::now());
    let warning = c.pointer("/status/conditions").and_then(Value::as_array).and_then(|cs| {
        cs.iter().find(|c| c["type"] == EXPIRING && c["status"] == "True")?["message"].as_str()
    });
    if let Some(w) = warning {
        out.push_str(&format!("\nwarning: {w}\n"));
    }
    Ok(out)
}

/// CERTIFICATE, COMMON NAME, EXPIRES (UTC), DAYS LEFT; soonest first, then by name.
fn render(map: &serde_json::Map<String, Value>, now: jiff::Timestamp) -> String {
    let mut rows: Vec<(Option<jiff::Timestamp>, Vec<String>)> = map
        .iter()
        .map(|(cert, e)| {
            let date = e["expirationDate"].as_str().unwrap_or("");
            let at = date.parse::<jiff::Timestamp>().ok();
            let (expires, left) = match at {
                Some(at) => (
                    at.strftime("%Y-%m-%d %H:%M").to_string(),
                    (at.as_second() - now.as_second()).div_euclid(86_400).to_string(),
                ),
                None => (if date.is_empty() { "?".to_owned() } else { date.to_owned() }, "?".to_owned()),
            };
            let cn = e["commonName"].as_str().unwrap_or("").to_owned();
            (at, vec![cert.clone(), cn, expires, left])
        })
        .collect();
    rows.sort_by(|a, b| (a.0.is_none(), a.0, &a.1[0]).cmp(&(b.0.is_none(), b.0, &b.1[0])));
    let rows: Vec<Vec<String>> = rows.into_iter().map(|(_, r)| r).collect();
    table(&["CERTIFICATE", "COMMON NAME", "EXPIRES (UTC)", "DAYS LEFT"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_the_soonest_first_with_days_left() {
        let map = json!({
            "kube-ca": {"expirationDate": "2034-05-01T00:00:00Z", "commonName": "kube-ca"},
            "kube-node-w3": {"expirationDate": "2024-05-20T12:00:00Z", "commonName": "system:node:w3"},
            "kube-admin": {"expirationDate": "2024-04-30T00:00:00Z", "commonName": "kube-admin"},
            "odd": {"expirationDate": "soon"},
        });
        let now: jiff::Timestamp = "2024-05-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            render(map.as_object().unwrap(), now),
            "CERTIFICATE   COMMON NAME     EXPIRES (UTC)     DAYS LEFT\n\
             kube-admin    kube-admin      2024-04-30 00:00  -1\n\
             kube-node-w3  system:node:w3  2024-05-20 12:00  19\n\
             kube-ca       kube-ca         2034-05-01 00:00  3652\n\
             odd                           soon              ?\n"
        );
    }
}
