//! Authentication: bearer tokens (static, issued service-account tokens, or an authentication webhook),
//! client certificates, anonymous; and `Impersonate-*` headers, honoured only for callers RBAC allows.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use http::HeaderMap;
use serde_json::{Value, json};

use crate::rbac::{self, Attributes};
use crate::state::SimState;
use crate::status::ApiError;

/// Who is making a request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    /// User name (`admin`, `alice`, `system:serviceaccount:ns:name`).
    pub name: String,
    /// Stable id, if known.
    pub uid: String,
    /// Groups, including `system:authenticated` for authenticated users.
    pub groups: Vec<String>,
    /// Extra attributes (`Impersonate-Extra-*`).
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// An authenticated user with the given groups (`system:authenticated` is added).
    pub fn new(name: impl Into<String>, groups: &[&str]) -> Self {
        let mut groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        UserInfo { name: name.into(), groups, ..Default::default() }
    }

    pub(crate) fn anonymous() -> Self {
        UserInfo {
            name: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
            ..Default::default()
        }
    }

    /// The `user` object of TokenReview and SelfSubjectReview status.
    pub(crate) fn to_json(&self) -> Value {
        let mut v = json!({"username": self.name, "groups": self.groups});
        if !self.uid.is_empty() {
            v["uid"] = json!(self.uid);
        }
        if !self.extra.is_empty() {
            v["extra"] = json!(self.extra);
        }
        v
    }

    fn service_account(ns: &str, name: &str, uid: &str) -> Self {
        UserInfo {
            name: format!("system:serviceaccount:{ns}:{name}"),
            uid: uid.to_string(),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ],
            ..Default::default()
        }
    }
}

/// A token the sim accepts.
#[derive(Debug, Clone)]
enum TokenEntry {
    Static(UserInfo),
    /// Issued by `serviceaccounts/token`: valid while the service account exists.
    ServiceAccount {
        ns: String,
        name: String,
        uid: String,
    },
}

/// Static and issued bearer tokens.
#[derive(Default)]
pub(crate) struct Tokens(RwLock<HashMap<String, TokenEntry>>);

impl Tokens {
    pub(crate) fn add(&self, token: &str, user: UserInfo) {
        self.0.write().unwrap_or_else(|e| e.into_inner()).insert(token.to_string(), TokenEntry::Static(user));
    }
    pub(crate) fn add_service_account(&self, token: &str, ns: &str, name: &str, uid: &str) {
        self.0.write().unwrap_or_else(|e| e.into_inner()).insert(
            token.to_string(),
            TokenEntry::ServiceAccount { ns: ns.into(), name: name.into(), uid: uid.into() },
        );
    }
    fn get(&self, token: &str) -> Option<TokenEntry> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).get(token).cloned()
    }
}

/// Resolves a bearer token to a user: static tokens, issued service-account tokens (while the account
/// exists), then the authentication webhook if one is configured.
pub(crate) async fn authenticate_token(state: &SimState, token: &str) -> Option<UserInfo> {
    match state.tokens.get(token) {
        Some(TokenEntry::Static(u)) => return Some(u),
        Some(TokenEntry::ServiceAccount { ns, name, uid }) => {
            let sa = state.store.get("serviceaccounts", &ns, &name)?;
            return (crate::meta::uid(&sa) == uid).then(|| UserInfo::service_account(&ns, &name, &uid));
        }
        None => {}
    }
    let url = state.config.auth_webhook.as_deref()?;
    match crate::webhook::token_review(url, state.config.auth_webhook_ca.as_deref(), token).await {
        Ok(user) => user,
        Err(e) => {
            tracing::warn!(error = %e, "authentication webhook failed");
            None
        }
    }
}

/// Authenticates a request from its `Authorization` header or the client certificate identity.
pub(crate) async fn authenticate(
    state: &SimState,
    headers: &HeaderMap,
    cert_identity: Option<&(String, Vec<String>)>,
) -> Result<UserInfo, ApiError> {
    if let Some(auth) = headers.get(http::header::AUTHORIZATION) {
        let auth = auth.to_str().map_err(|_| ApiError::unauthorized())?;
        let token = auth
            .strip_prefix("Bearer ")
            .or_else(|| auth.strip_prefix("bearer "))
            .map(str::trim)
            .ok_or_else(ApiError::unauthorized)?;
        return authenticate_token(state, token).await.ok_or_else(ApiError::unauthorized);
    }
    if let Some((user, groups)) = cert_identity {
        let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
        return Ok(UserInfo::new(user.clone(), &groups));
    }
    Ok(UserInfo::anonymous())
}

fn forbidden_impersonation(caller: &UserInfo, resource: &str, group: &str, name: &str, ns: &str) -> ApiError {
    let scope =
        if ns.is_empty() { "at the cluster scope".to_string() } else { format!("in the namespace \"{ns}\"") };
    ApiError::forbidden(
        format!(
            "{resource} \"{name}\" is forbidden: User \"{}\" cannot impersonate resource \"{resource}\" in API group \"{group}\" {scope}",
            caller.name
        ),
        json!({"name": name, "group": group, "kind": resource}),
    )
}

/// Applies `Impersonate-*` headers. Each impersonated attribute needs the `impersonate` verb on the
/// matching resource (users, groups, serviceaccounts, uids, userextras/<key>).
pub(crate) fn impersonate(
    state: &SimState,
    caller: UserInfo,
    headers: &HeaderMap,
) -> Result<UserInfo, ApiError> {
    let user = headers.get("impersonate-user").and_then(|v| v.to_str().ok()).map(str::to_string);
    let groups: Vec<String> = headers
        .get_all("impersonate-group")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    let uid = headers.get("impersonate-uid").and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in headers {
        if let Some(key) = k.as_str().strip_prefix("impersonate-extra-")
            && let Ok(v) = v.to_str()
        {
            let key = percent_decode(key);
            extra.entry(key).or_default().push(v.to_string());
        }
    }
    if user.is_none() {
        if !groups.is_empty() || uid.is_some() || !extra.is_empty() {
            return Err(ApiError::internal(
                "requested [impersonate] without impersonating a user: Impersonate-User is required",
            ));
        }
        return Ok(caller);
    }
    let user = user.unwrap_or_default();
    let check = |attrs: Attributes, resource: &str, group: &str, name: &str, ns: &str| {
        if rbac::authorize(&state.store, &caller, &attrs).allowed {
            Ok(())
        } else {
            Err(forbidden_impersonation(&caller, resource, group, name, ns))
        }
    };
    let sa = user.strip_prefix("system:serviceaccount:").and_then(|r| r.split_once(':'));
    let mut result = match sa {
        Some((ns, name)) => {
            check(
                Attributes::resource("impersonate", "", "serviceaccounts", ns, name),
                "serviceaccounts",
                "",
                name,
                ns,
            )?;
            UserInfo::service_account(ns, name, "")
        }
        None => {
            check(Attributes::resource("impersonate", "", "users", "", &user), "users", "", &user, "")?;
            UserInfo { name: user.clone(), ..Default::default() }
        }
    };
    for g in &groups {
        check(Attributes::resource("impersonate", "", "groups", "", g), "groups", "", g, "")?;
    }
    if let Some(uid) = &uid {
        check(
            Attributes::resource("impersonate", "authentication.k8s.io", "uids", "", uid),
            "uids",
            "authentication.k8s.io",
            uid,
            "",
        )?;
        result.uid = uid.clone();
    }
    for (k, vals) in &extra {
        for v in vals {
            let mut a = Attributes::resource("impersonate", "authentication.k8s.io", "userextras", "", v);
            a.subresource = k.clone();
            check(a, &format!("userextras/{k}"), "authentication.k8s.io", v, "")?;
        }
    }
    if sa.is_none() {
        result.groups = groups;
    } else {
        result.groups.extend(groups);
    }
    if result.name != "system:anonymous" && !result.groups.iter().any(|g| g == "system:authenticated") {
        result.groups.push("system:authenticated".into());
    }
    result.extra = extra;
    Ok(result)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
