//! Rancher's `/v3` body shape for projects and role template bindings, beside ours: a body may name
//! `clusterId`, `projectId`, `roleTemplateId`, `userId`, `userPrincipalId`, `groupPrincipalId`, `name`
//! and `description` at the top level, as Rancher's API and its clients do. [`ApiKind::rancher_fields_in`]
//! moves them into `metadata`/`spec` before the body is decoded (a field given in both shapes must
//! agree), and [`ApiKind::rancher_fields_out`] adds them to every response.
//!
//! [`ApiKind::rancher_fields_in`]: super::kind::ApiKind::rancher_fields_in
//! [`ApiKind::rancher_fields_out`]: super::kind::ApiKind::rancher_fields_out

use serde_json::{Map, Value};

use crate::server::error::{ApiError, ApiResult};

/// The principal id of a local user: `local://<user id>`.
pub(crate) const LOCAL_PRINCIPAL_PREFIX: &str = "local://";

/// Where one Rancher field goes in our shape: the top-level key, and the path under the object.
pub(crate) struct Field {
    /// Rancher's name, at the top level of the body.
    pub(crate) rancher: &'static str,
    /// Ours: `["spec", "clusterName"]`.
    pub(crate) ours: &'static [&'static str],
}

/// Rancher's `clusterId` ≙ `spec.clusterName`.
pub(crate) const CLUSTER_ID: Field = Field { rancher: "clusterId", ours: &["spec", "clusterName"] };
/// Rancher's `projectId` ≙ `spec.projectName` (`<cluster>:<p-xxxxx>`).
pub(crate) const PROJECT_ID: Field = Field { rancher: "projectId", ours: &["spec", "projectName"] };
/// Rancher's `roleTemplateId` ≙ `spec.roleTemplateName`.
pub(crate) const ROLE_TEMPLATE_ID: Field =
    Field { rancher: "roleTemplateId", ours: &["spec", "roleTemplateName"] };
/// Rancher's `userId` ≙ `spec.userName`.
pub(crate) const USER_ID: Field = Field { rancher: "userId", ours: &["spec", "userName"] };
/// Rancher's `groupPrincipalId` ≙ `spec.groupPrincipalName`.
pub(crate) const GROUP_PRINCIPAL_ID: Field =
    Field { rancher: "groupPrincipalId", ours: &["spec", "groupPrincipalName"] };
/// A binding's Rancher `name` ≙ `metadata.name`.
pub(crate) const BINDING_NAME: Field = Field { rancher: "name", ours: &["metadata", "name"] };
/// A project's Rancher `name` is what people see ≙ `spec.displayName` (its id is the server's).
pub(crate) const PROJECT_NAME: Field = Field { rancher: "name", ours: &["spec", "displayName"] };
/// Rancher's `description` ≙ `spec.description`.
pub(crate) const DESCRIPTION: Field = Field { rancher: "description", ours: &["spec", "description"] };

fn dotted(path: &[&str]) -> String {
    path.join(".")
}

/// The string at `path` under `map`, when there is one; `""` and `null` count as absent.
fn string_at<'m>(map: &'m Map<String, Value>, path: &[&str]) -> ApiResult<Option<&'m str>> {
    let (last, parents) = path.split_last().expect("a field path is never empty");
    let mut here = map;
    for p in parents {
        match here.get(*p) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Object(o)) => here = o,
            Some(_) => return Err(ApiError::invalid_field(p, "must be an object")),
        }
    }
    match here.get(*last) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::invalid_field(&dotted(path), "must be a string")),
    }
}

/// Sets the string at `path` under `map`, making the objects on the way.
fn set_at(map: &mut Map<String, Value>, path: &[&str], value: String) -> ApiResult<()> {
    let (last, parents) = path.split_last().expect("a field path is never empty");
    let mut here = map;
    for p in parents {
        let slot = here.entry((*p).to_owned()).or_insert_with(|| Value::Object(Map::new()));
        if slot.is_null() {
            *slot = Value::Object(Map::new());
        }
        here = slot.as_object_mut().ok_or_else(|| ApiError::invalid_field(p, "must be an object"))?;
    }
    here.insert((*last).to_owned(), Value::String(value));
    Ok(())
}

/// Takes Rancher's top-level string `rancher` out of the body; `None` when absent, null or empty.
fn take(map: &mut Map<String, Value>, rancher: &str) -> ApiResult<Option<String>> {
    match map.remove(rancher) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::invalid_field(rancher, "must be a string")),
    }
}

/// Puts `value` (from Rancher's field `rancher`) at `ours`, unless the body names a different value
/// there already.
fn put(map: &mut Map<String, Value>, rancher: &str, ours: &[&str], value: String) -> ApiResult<()> {
    match string_at(map, ours)? {
        Some(existing) if existing != value => Err(ApiError::invalid_field(
            rancher,
            format!(
                "{value:?} disagrees with {} {existing:?} in the same body: give one, or the same in both",
                dotted(ours)
            ),
        )),
        Some(_) => Ok(()),
        None => set_at(map, ours, value),
    }
}

/// Moves each of `fields` from Rancher's shape into ours (see the module docs).
///
/// # Errors
/// 422 naming the field when a Rancher field is not a string, or disagrees with ours.
pub(crate) fn fields_in(map: &mut Map<String, Value>, fields: &[Field]) -> ApiResult<()> {
    for f in fields {
        if let Some(v) = take(map, f.rancher)? {
            put(map, f.rancher, f.ours, v)?;
        }
    }
    Ok(())
}

/// Rancher's `userPrincipalId`: a local user's (`local://<id>`) names the user, any other principal
/// goes to `spec.userPrincipalName`.
///
/// # Errors
/// As [`fields_in`]; also 422 for `local://` without an id.
pub(crate) fn user_principal_in(map: &mut Map<String, Value>) -> ApiResult<()> {
    const FIELD: &str = "userPrincipalId";
    let Some(principal) = take(map, FIELD)? else { return Ok(()) };
    match principal.strip_prefix(LOCAL_PRINCIPAL_PREFIX) {
        Some("") => Err(ApiError::invalid_field(FIELD, "local:// needs a user id after it")),
        Some(id) => put(map, FIELD, USER_ID.ours, id.to_owned()),
        None => put(map, FIELD, &["spec", "userPrincipalName"], principal),
    }
}

/// Adds `(rancher name, value)` pairs to a response, leaving out empty values.
pub(crate) fn fields_out<'a>(
    map: &mut Map<String, Value>,
    fields: impl IntoIterator<Item = (&'a str, &'a str)>,
) {
    for (name, value) in fields {
        if !value.is_empty() {
            map.insert(name.to_owned(), Value::String(value.to_owned()));
        }
    }
}

/// The `userPrincipalId` of a binding's subject: its principal, or the local principal of its user.
pub(crate) fn user_principal_out(user_name: &str, user_principal_name: &str) -> String {
    match (user_principal_name, user_name) {
        ("", "") => String::new(),
        ("", id) => format!("{LOCAL_PRINCIPAL_PREFIX}{id}"),
        (p, _) => p.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn rancher_fields_move_under_spec() {
        let mut m = obj(json!({"projectId": "c1:p-abcde", "roleTemplateId": "project-member",
                               "userId": "u-12345", "name": "alice-member"}));
        fields_in(&mut m, &[PROJECT_ID, ROLE_TEMPLATE_ID, USER_ID, BINDING_NAME]).unwrap();
        assert_eq!(
            Value::Object(m),
            json!({"metadata": {"name": "alice-member"},
                   "spec": {"projectName": "c1:p-abcde", "roleTemplateName": "project-member",
                            "userName": "u-12345"}})
        );
    }

    #[test]
    fn both_shapes_must_agree() {
        let mut m = obj(json!({"clusterId": "c1", "spec": {"clusterName": "c1"}}));
        fields_in(&mut m, &[CLUSTER_ID]).unwrap();
        assert_eq!(m["spec"]["clusterName"], "c1");
        let mut m = obj(json!({"clusterId": "c1", "spec": {"clusterName": "c2"}}));
        let e = fields_in(&mut m, &[CLUSTER_ID]).unwrap_err().to_string();
        assert!(e.contains("clusterId") && e.contains("spec.clusterName") && e.contains("c2"), "{e}");
        let mut m = obj(json!({"clusterId": 7}));
        assert!(fields_in(&mut m, &[CLUSTER_ID]).unwrap_err().to_string().contains("must be a string"));
        let mut m = obj(json!({"clusterId": "c1", "spec": "nope"}));
        assert!(fields_in(&mut m, &[CLUSTER_ID]).is_err());
    }

    #[test]
    fn principals_name_local_users_or_stay_principals() {
        let mut m = obj(json!({"userPrincipalId": "local://u-12345"}));
        user_principal_in(&mut m).unwrap();
        assert_eq!(Value::Object(m), json!({"spec": {"userName": "u-12345"}}));
        let mut m = obj(json!({"userPrincipalId": "openldap_user://uid=a,dc=x"}));
        user_principal_in(&mut m).unwrap();
        assert_eq!(Value::Object(m), json!({"spec": {"userPrincipalName": "openldap_user://uid=a,dc=x"}}));
        let mut m = obj(json!({"userPrincipalId": "local://"}));
        assert!(user_principal_in(&mut m).is_err());
        let mut m = obj(json!({"userPrincipalId": "local://u-1", "spec": {"userName": "u-2"}}));
        assert!(user_principal_in(&mut m).is_err());
    }

    #[test]
    fn responses_carry_non_empty_fields() {
        let mut m = Map::new();
        fields_out(&mut m, [("clusterId", "c1"), ("userId", "")]);
        assert_eq!(Value::Object(m), json!({"clusterId": "c1"}));
        assert_eq!(user_principal_out("u-1", ""), "local://u-1");
        assert_eq!(user_principal_out("u-1", "ldap://x"), "ldap://x");
        assert_eq!(user_principal_out("", ""), "");
    }
}
