//! An identity provider for your own directory, behind the `AuthProvider` trait.
//!
//! This one reads a static team directory (users with SHA-256 password digests and their teams), the
//! shape of a small internal user database. The server treats it like LDAP or GitHub: it asks for an
//! [`Identity`] and uses the user and group principals in impersonation headers and role bindings.
//!
//! ```sh
//! cargo run -p rancher-examples --example custom_auth_provider
//! ```

use std::collections::BTreeMap;

use async_trait::async_trait;
use rancher_auth::providers::{AuthProvider, Credentials, Error, Identity, Principal, PrincipalKind, Result};
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut members = BTreeMap::new();
    members.insert(
        "ada".to_owned(),
        Member {
            display_name: "Ada Lovelace".into(),
            password_sha256: hex::encode(Sha256::digest(b"analytical-engine")),
            teams: vec!["platform".into(), "oncall".into()],
        },
    );
    let provider: Box<dyn AuthProvider> = Box::new(TeamDirectory { members });

    let who = provider.authenticate(&Credentials::password("ada", "analytical-engine")).await?;
    let groups: Vec<&str> = who.groups.iter().map(|g| g.id.as_str()).collect();
    println!("{} ({}) is in {groups:?}", who.user.id, who.user.display_name);

    let refused = provider.authenticate(&Credentials::password("ada", "wrong")).await.unwrap_err();
    println!("wrong password: {refused}");

    let teams = provider.search_principals("p", Some(PrincipalKind::Group), None).await?;
    println!("teams starting with p: {:?}", teams.iter().map(|t| &t.id).collect::<Vec<_>>());
    Ok(())
}
