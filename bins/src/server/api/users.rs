//! Users: generated ids `u-xxxxx`, unique usernames, write-only passwords (argon2), default global roles.

use async_trait::async_trait;
use rancher_auth::password;
use rancher_auth::token::USER_ID_LABEL;
use rancher_core::model::{GlobalRole, GlobalRoleBinding, GlobalRoleBindingSpec, Token, User};
use rancher_core::store::{Api, LabelSelector, ListOptions, Store};
use std::sync::Arc;

use super::kind::{ApiKind, Ctx, generated_name};
use crate::server::auth::Caller;
use crate::server::error::{ApiError, ApiResult};

/// Hashes a new password after the strength check, within the process-wide limit on password hashing
/// (argon2 is slow on purpose).
pub(crate) async fn hash_new_password(pw: String) -> ApiResult<String> {
    password::check_strength(&pw).map_err(|e| ApiError::invalid_field("spec.password", e.to_string()))?;
    Ok(crate::server::hashing::hash(pw).await?)
}

/// The user with this login name, if any.
pub(crate) async fn find_by_username(store: &Arc<dyn Store>, username: &str) -> ApiResult<Option<User>> {
    Ok(Api::<User>::all(store.clone()).list().await?.into_iter().find(|u| u.spec.username == username))
}

fn check_username(username: &str) -> ApiResult<()> {
    if username.is_empty() {
        return Err(ApiError::invalid_field("spec.username", "a username is required"));
    }
    if username.len() > 128 || username.chars().any(|c| c.is_whitespace() || c.is_control() || c == ':') {
        return Err(ApiError::invalid_field(
            "spec.username",
            format!("{username:?} is not a valid username: at most 128 characters, no spaces or ':'"),
        ));
    }
    Ok(())
}

/// The deterministic name of the binding of `user` to `role`, so bootstrap and retries stay idempotent.
pub(crate) fn binding_name(user: &str, role: &str) -> String {
    format!("{user}-{role}")
}

/// Binds `user` to `role` unless bound already.
pub(crate) async fn bind_global_role(store: &Arc<dyn Store>, user: &str, role: &str) -> ApiResult<()> {
    let grb = GlobalRoleBinding::new(
        &binding_name(user, role),
        GlobalRoleBindingSpec { user_name: user.into(), global_role_name: role.into(), ..Default::default() },
    );
    match Api::<GlobalRoleBinding>::all(store.clone()).create(&grb).await {
        Ok(_) | Err(rancher_core::store::StoreError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[async_trait]
impl ApiKind for User {
    const TYPE: &'static str = "user";
    const SELF_VERBS: &'static [&'static str] = &["get"];

    fn owned_by(&self, caller: &Caller) -> bool {
        self.metadata.name == caller.user_id()
    }

    fn redact(&mut self) {
        self.spec.password.clear();
    }

    async fn prepare_create(&mut self, cx: &Ctx<'_>) -> ApiResult<()> {
        if self.metadata.name.is_empty() && self.metadata.generate_name.is_none() {
            self.metadata.name = generated_name("u-");
        }
        check_username(&self.spec.username)?;
        if find_by_username(&cx.state.store, &self.spec.username).await?.is_some() {
            return Err(ApiError::AlreadyExists(format!("username {:?} is taken", self.spec.username)));
        }
        if self.spec.password.is_empty() {
            return Err(ApiError::invalid_field("spec.password", "a password is required"));
        }
        self.spec.password = hash_new_password(std::mem::take(&mut self.spec.password)).await?;
        let principal = format!("local://{}", self.metadata.name);
        if !self.spec.principal_ids.contains(&principal) {
            self.spec.principal_ids.push(principal);
        }
        if self.spec.display_name.is_empty() {
            self.spec.display_name = self.spec.username.clone();
        }
        Ok(())
    }

    async fn prepare_update(&mut self, old: &Self, cx: &Ctx<'_>) -> ApiResult<()> {
        check_username(&self.spec.username)?;
        if self.spec.username != old.spec.username
            && find_by_username(&cx.state.store, &self.spec.username).await?.is_some()
        {
            return Err(ApiError::AlreadyExists(format!("username {:?} is taken", self.spec.username)));
        }
        self.spec.password = if self.spec.password.is_empty() {
            old.spec.password.clone()
        } else {
            hash_new_password(std::mem::take(&mut self.spec.password)).await?
        };
        Ok(())
    }

    async fn after_create(&self, cx: &Ctx<'_>) -> ApiResult<()> {
        for role in Api::<GlobalRole>::all(cx.state.store.clone()).list().await? {
            if role.spec.new_user_default {
                bind_global_role(&cx.state.store, &self.metadata.name, &role.metadata.name).await?;
            }
        }
        Ok(())
    }

    fn check_delete(&self) -> ApiResult<()> {
        Ok(())
    }

    async fn after_delete(&self, cx: &Ctx<'_>) {
        // Tokens of a deleted user are refused anyway (their user is gone); removing them and the
        // user's bindings keeps the store clean. Failures are logged, not fatal: the user is gone.
        let store = &cx.state.store;
        let id = &self.metadata.name;
        let selector = LabelSelector::from_equalities([(USER_ID_LABEL, id.as_str())]);
        let tokens: Api<Token> = Api::all(store.clone());
        let options = ListOptions { label_selector: Some(selector), ..Default::default() };
        if let Ok((list, _)) = tokens.list_with(options).await {
            for t in list {
                if let Err(e) = tokens.delete(&t.metadata.name).await {
                    tracing::warn!(user = %id, token = %t.metadata.name, "removing a deleted user's token: {e}");
                }
            }
        }
        let grbs: Api<GlobalRoleBinding> = Api::all(store.clone());
        if let Ok(list) = grbs.list().await {
            for b in list.into_iter().filter(|b| &b.spec.user_name == id) {
                if let Err(e) = grbs.delete(&b.metadata.name).await {
                    tracing::warn!(user = %id, binding = %b.metadata.name, "removing a deleted user's binding: {e}");
                }
            }
        }
    }
}
