//! User and Token.

use serde::{Deserialize, Serialize};

use super::management_kind;
use crate::Condition;

management_kind!(
    /// A person (or robot) who can log in. Cluster-scoped; Rancher names them `u-xxxxx`.
    User, "users", namespaced = false, UserSpec, UserStatus
);

/// A user's settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct UserSpec {
    /// The name people see.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    /// The login name for the local provider.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    /// The argon2 PHC hash of the local password. Never returned by the API.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
    /// Whether the user must change the password at the next login.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub must_change_password: bool,
    /// Principals this user is known by: `local://u-xxxxx`, `openldap_user://…`, `github_user://…`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principal_ids: Vec<String>,
    /// A disabled user can neither log in nor use tokens.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// What the server observed of a user.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct UserStatus {
    /// Conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Group principals from the last login or refresh, per provider.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_principals: Vec<String>,
    /// When the user last logged in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub last_login: Option<jiff::Timestamp>,
}

management_kind!(
    /// An API token, `token-<id>:<secret>`. Only a salted hash of the secret is stored. Cluster-scoped.
    Token, "tokens", namespaced = false, TokenSpec, TokenStatus
);

/// A token's settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct TokenSpec {
    /// The user the token acts for.
    #[serde(default)]
    pub user_id: String,
    /// The provider the user logged in with (`local`, `openldap`, `github`, `oidc`, …).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub auth_provider: String,
    /// The user's principal at that provider.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_principal: String,
    /// Group principals at the time of login.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_principals: Vec<String>,
    /// Lifetime in milliseconds from creation; 0 never expires.
    #[serde(default)]
    pub ttl: i64,
    /// Idle lifetime in milliseconds from the last use; 0 disables the idle timeout.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub idle_ttl: i64,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// When set, the token works for this cluster only.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_name: String,
    /// `session` (a login), `kubeconfig`, or `api` (created by the user).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// True for tokens the user created from another token.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_derived: bool,
    /// A disabled token is refused.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// What the server keeps of a token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct TokenStatus {
    /// Conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The salted hash of the secret (`<scheme>$<salt>$<hash>`). Never returned by the API.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash: String,
    /// When the token expires, derived from creation and `ttl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub expires_at: Option<jiff::Timestamp>,
    /// True once expired.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expired: bool,
    /// When the token was last used (updated at most once a minute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub last_used_at: Option<jiff::Timestamp>,
}
