//! An identity provider for your own directory, behind the `AuthProvider` trait, plugged into a real
//! server (`ServerBuilder::auth_provider`) together with an audit sink of your own
//! (`ServerBuilder::audit_sink`).
//!
//! This one reads a static team directory (users with SHA-256 password digests and their teams), the
//! shape of a small internal user database. The server treats it like LDAP or GitHub: it serves it at
//! `/v3-public/teamdirProviders/teamdir?action=login`, asks it for an [`Identity`] and uses the user
//! and group principals in impersonation headers and role bindings.
//!
//! ```sh
//! cargo run -p rancher-examples --example custom_auth_provider
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use rancher::server::Server;
use rancher_auth::providers::{AuthProvider, Credentials, Error, Identity, Principal, PrincipalKind, Result};
use rancher_auth::proxy::{AuditEvent, AuditSink};
use rancher_core::store::MemoryStore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const NAME: &str = "teamdir";

struct Member {
    display_name: String,
    password_sha256: String,
    teams: Vec<String>,
}

/// Users and teams from a static directory.
struct TeamDirectory {
    members: BTreeMap<String, Member>,
}

fn user(login: &str, display_name: &str) -> Principal {
    Principal {
        id: format!("{NAME}_user://{login}"),
        display_name: display_name.to_owned(),
        login_name: login.to_owned(),
        kind: PrincipalKind::User,
        provider: NAME.to_owned(),
    }
}

fn team(name: &str) -> Principal {
    Principal {
        id: format!("{NAME}_group://{name}"),
        display_name: name.to_owned(),
        login_name: name.to_owned(),
        kind: PrincipalKind::Group,
        provider: NAME.to_owned(),
    }
}

#[async_trait]
impl AuthProvider for TeamDirectory {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn authenticate(&self, credentials: &Credentials) -> Result<Identity> {
        let Credentials::Password { username, password } = credentials else {
            return Err(Error::Unsupported { provider: NAME, what: "authorization-code login" });
        };
        let member = self.members.get(username).ok_or(Error::InvalidCredentials)?;
        let digest = hex::encode(Sha256::digest(password.expose().as_bytes()));
        let matches: bool = digest.as_bytes().ct_eq(member.password_sha256.as_bytes()).into();
        if password.expose().is_empty() || !matches {
            return Err(Error::InvalidCredentials);
        }
        Ok(Identity {
            user: user(username, &member.display_name),
            groups: member.teams.iter().map(|t| team(t)).collect(),
        })
    }

    async fn search_principals<'a>(
        &self,
        query: &str,
        kind: Option<PrincipalKind>,
        _requester: Option<&'a Principal>,
    ) -> Result<Vec<Principal>> {
        let mut found = Vec::new();
        if kind != Some(PrincipalKind::Group) {
            found.extend(
                self.members
                    .iter()
                    .filter(|(login, _)| login.starts_with(query))
                    .map(|(l, m)| user(l, &m.display_name)),
            );
        }
        if kind != Some(PrincipalKind::User) {
            let mut teams: Vec<&String> = self.members.values().flat_map(|m| &m.teams).collect();
            teams.sort();
            teams.dedup();
            found.extend(teams.into_iter().filter(|t| t.starts_with(query)).map(|t| team(t)));
        }
        Ok(found)
    }

    async fn refresh_groups(&self, principal: &Principal) -> Result<Vec<Principal>> {
        let login = principal
            .id
            .strip_prefix(&format!("{NAME}_user://"))
            .ok_or_else(|| Error::ForeignPrincipal { provider: NAME, id: principal.id.clone() })?;
        let member = self
            .members
            .get(login)
            .ok_or_else(|| Error::PrincipalNotFound { provider: NAME, id: principal.id.clone() })?;
        Ok(member.teams.iter().map(|t| team(t)).collect())
    }
}

/// An audit sink of your own: here, one line per proxied request on standard error. A real one
/// would queue the event for a SIEM; `record` runs on the request's task and must not block.
struct StderrAudit;

impl AuditSink for StderrAudit {
    fn record(&self, event: &AuditEvent) {
        eprintln!("audit: {} {} {} -> {}", event.user, event.verb, event.path, event.status);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Every binary picks the process-wide TLS provider first: rancher-rs uses aws-lc-rs only.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut members = BTreeMap::new();
    members.insert(
        "ada".to_owned(),
        Member {
            display_name: "Ada Lovelace".into(),
            password_sha256: hex::encode(Sha256::digest(b"analytical-engine")),
            teams: vec!["platform".into(), "oncall".into()],
        },
    );

    // A real server on a free port, with the directory as a login provider and our audit sink.
    let data_dir = tempfile::tempdir()?;
    let server = Server::builder()
        .data_dir(data_dir.path())
        .store(Arc::new(MemoryStore::new()))
        .https_listen("127.0.0.1:0".parse()?)
        .auth_provider(Arc::new(TeamDirectory { members }))
        .audit_sink(Arc::new(StderrAudit))
        .build()
        .await?;
    let url = server.url();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(server.ca_pem().as_bytes())?)
        .build()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    // Log in through the provider's route, as `rancherctl` or the UI would.
    let login = format!("{url}/v3-public/{NAME}Providers/{NAME}?action=login");
    let wrong = http.post(&login).json(&json!({"username": "ada", "password": "wrong"})).send().await?;
    println!("wrong password: {}", wrong.status());
    let session: Value = http
        .post(&login)
        .json(&json!({"username": "ada", "password": "analytical-engine"}))
        .send()
        .await?
        .json()
        .await?;
    let token = session["token"].as_str().ok_or_else(|| anyhow::anyhow!("login failed: {session}"))?;
    println!(
        "{} logged in as {} with groups {}",
        session["spec"]["userPrincipal"], session["spec"]["userId"], session["spec"]["groupPrincipals"]
    );
    // The session token works on the management API (and on /k8s/clusters/<id>, where every request
    // reaches StderrAudit).
    let tokens = http.get(format!("{url}/v3/tokens")).bearer_auth(token).send().await?;
    println!("GET /v3/tokens with it: {}", tokens.status());

    let _ = stop.send(());
    running.await??;
    Ok(())
}
