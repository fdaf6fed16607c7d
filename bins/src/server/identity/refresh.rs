//! Group refresh: every `refreshInterval` the groups of users who logged in through an external
//! provider are re-read from it and written to the user's status and to their tokens from that provider,
//! the two places the proxy reads `Impersonate-Group` from.

use std::sync::Arc;

use rancher_auth::providers::{AuthProvider, Error as ProviderError, Principal, PrincipalKind};
use rancher_core::model::{Token, User};
use rancher_core::store::{Api, Store, StoreError};

use super::Providers;

/// Runs forever: one pass every `providers.refresh_interval`.
pub(crate) async fn run(providers: Providers, store: Arc<dyn Store>) {
    let mut tick = tokio::time::interval(providers.refresh_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = pass(&providers, &store).await {
            tracing::warn!(error = %e, "group refresh pass failed");
        }
    }
}

/// The provider a principal id (`<provider>_user://…`) belongs to, among the registered ones.
async fn provider_of(providers: &Providers, principal: &str) -> Option<Arc<dyn AuthProvider>> {
    let (prefix, _) = principal.split_once("_user://")?;
    providers.get(prefix).await.and_then(Result::ok)
}

/// One pass over every provider user.
pub(crate) async fn pass(providers: &Providers, store: &Arc<dyn Store>) -> Result<(), StoreError> {
    let users: Api<User> = Api::all(store.clone());
    for user in users.list().await? {
        for principal in user.spec.principal_ids.iter().filter(|p| !p.starts_with("local://")) {
            let Some(provider) = provider_of(providers, principal).await else { continue };
            let p = Principal {
                id: principal.clone(),
                display_name: user.spec.display_name.clone(),
                login_name: String::new(),
                kind: PrincipalKind::User,
                provider: provider.name().to_owned(),
            };
            match provider.refresh_groups(&p).await {
                Ok(groups) => {
                    let ids: Vec<String> = groups.into_iter().map(|g| g.id).collect();
                    apply(store, &user.metadata.name, provider.name(), &ids).await?;
                }
                // Not logged in through this server since it started: nothing to refresh with.
                Err(ProviderError::LoginRequired { .. }) => {}
                Err(e) => tracing::warn!(user = %user.metadata.name, error = %e, "group refresh failed"),
            }
        }
    }
    Ok(())
}

/// Writes `groups` to the user's status and their `provider` tokens, where they differ.
async fn apply(
    store: &Arc<dyn Store>,
    user_id: &str,
    provider: &str,
    groups: &[String],
) -> Result<(), StoreError> {
    let users: Api<User> = Api::all(store.clone());
    for _ in 0..8 {
        let Some(mut u) = users.get_opt(user_id).await? else { return Ok(()) };
        if u.status.group_principals == groups {
            break;
        }
        u.status.group_principals = groups.to_vec();
        match users.update(&u).await {
            Ok(_) => break,
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    let tokens: Api<Token> = Api::all(store.clone());
    for mut t in tokens.list().await? {
        if t.spec.user_id != user_id || t.spec.auth_provider != provider || t.spec.group_principals == groups
        {
            continue;
        }
        t.spec.group_principals = groups.to_vec();
        match tokens.update(&t).await {
            Ok(_) | Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
