//! The generic handlers: list, create, get, update and delete of any [`ApiKind`], with authorization,
//! input checks and the response shapes (`id`, `type`, collections).

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use http::{HeaderMap, StatusCode};
use rancher_core::store::Api;
use rancher_core::validation::dns1123_label;
use serde_json::{Map, Value};

use super::body::json_object;
use super::kind::{ApiKind, Ctx, object_id};
pub(crate) use super::list::list;
use super::visibility::Access;
use crate::server::auth::Caller;
use crate::server::error::{ApiError, ApiResult};
use crate::server::state::AppState;

/// The response form of one object: the object with secrets removed, plus `id` and `type`.
pub(crate) fn to_output<K: ApiKind>(mut obj: K) -> ApiResult<Value> {
    obj.redact();
    let id = object_id(&obj);
    let mut v = serde_json::to_value(&obj).map_err(ApiError::encode(K::KIND))?;
    if let Some(map) = v.as_object_mut() {
        obj.rancher_fields_out(map);
        map.insert("id".into(), id.into());
        map.insert("type".into(), K::TYPE.into());
    }
    Ok(v)
}

/// Splits a path id into `(namespace, name)`.
fn split_id<K: ApiKind>(id: &str) -> ApiResult<(Option<String>, String)> {
    if K::NAMESPACED {
        let (ns, name) = id.split_once(':').ok_or_else(|| {
            ApiError::NotFound(format!(
                "{} \"{id}\" not found: ids of {} look like <namespace>:<name>",
                K::PLURAL,
                K::PLURAL
            ))
        })?;
        Ok((Some(ns.to_owned()), name.to_owned()))
    } else {
        Ok((None, id.to_owned()))
    }
}

fn api<K: ApiKind>(state: &AppState, namespace: Option<&str>) -> Api<K> {
    match namespace {
        Some(ns) => Api::namespaced(state.store.clone(), ns),
        None => Api::all(state.store.clone()),
    }
}

/// Authorizes `verb` on one object: by global RBAC, by ownership for the kind's self-service verbs,
/// or, for member-managed kinds, by the roles held where the object belongs (and `get` by membership
/// there). An object the caller may not see is refused with 403 whether it exists or not, as
/// Kubernetes does, so ids cannot be probed.
pub(super) async fn authorize_object<K: ApiKind>(
    state: &AppState,
    caller: &Caller,
    verb: &str,
    namespace: Option<&str>,
    name: &str,
) -> ApiResult<()> {
    if caller.can(verb, K::PLURAL, Some(name)) {
        return Ok(());
    }
    let self_service = K::SELF_VERBS.contains(&verb);
    if (self_service || K::MEMBER_MANAGED)
        && let Some(obj) = api::<K>(state, namespace).get_opt(name).await?
    {
        if self_service && obj.owned_by(caller) {
            return Ok(());
        }
        if K::MEMBER_MANAGED {
            let mut access = Access::load(state, caller).await?;
            if access.allows(verb, &obj) || (verb == "get" && access.sees(&obj)) {
                return Ok(());
            }
        }
    }
    Err(caller.forbidden(verb, K::PLURAL, Some(name)))
}

/// Decodes a body into `K`, naming the field that does not fit.
fn decode<K: ApiKind>(map: Map<String, Value>) -> ApiResult<K> {
    serde_json::from_value(Value::Object(map))
        .map_err(|e| ApiError::BadRequest(format!("the body is not a valid {}: {e}", K::KIND)))
}

fn check_name(name: &str) -> ApiResult<()> {
    dns1123_label(name).map_err(|m| ApiError::invalid_field("metadata.name", m))
}

/// `POST /v3/<plural>`
pub(crate) async fn create<K: ApiKind>(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, HeaderMap, Json<Value>)> {
    // Member-managed kinds may also be created by roles held where the object belongs, known only
    // once the body is read.
    let global = caller.can("create", K::PLURAL, None);
    if !global && !K::MEMBER_MANAGED {
        return Err(caller.forbidden("create", K::PLURAL, None));
    }
    let mut map = json_object(&headers, body, state.body_limit).await?;
    map.remove("status");
    K::rancher_fields_in(&mut map)?;
    let mut obj: K = decode(map)?;
    {
        let meta = obj.meta_mut();
        meta.uid.clear();
        meta.resource_version.clear();
        meta.creation_timestamp = None;
        meta.deletion_timestamp = None;
    }
    if K::NAMESPACED {
        let ns = match obj.meta().namespace.clone().filter(|n| !n.is_empty()) {
            Some(ns) => ns,
            None => obj.namespace_from_spec().filter(|n| !n.is_empty()).ok_or_else(|| {
                ApiError::invalid_field("metadata.namespace", format!("a {} needs a namespace", K::KIND))
            })?,
        };
        dns1123_label(&ns).map_err(|m| ApiError::invalid_field("metadata.namespace", m))?;
        obj.meta_mut().namespace = Some(ns);
    } else {
        obj.meta_mut().namespace = None;
    }
    if !global && !Access::load(&state, &caller).await?.allows_create(&obj) {
        return Err(caller.forbidden("create", K::PLURAL, None));
    }
    let name = obj.meta().name.clone();
    if !name.is_empty() {
        check_name(&name)?;
    }
    let cx = Ctx::new(&state, &caller);
    obj.prepare_create(&cx).await?;
    let meta = obj.meta();
    match (meta.name.as_str(), meta.generate_name.as_deref()) {
        ("", None | Some("")) => return Err(ApiError::invalid_field("metadata.name", "a name is required")),
        ("", Some(prefix)) => {
            // The store appends 5 characters; the result must still be a DNS-1123 label.
            check_name(&format!("{prefix}x")).map_err(|_| {
                ApiError::invalid_field("metadata.generateName", format!("{prefix:?} is not a valid prefix"))
            })?;
        }
        (n, _) => check_name(n)?,
    }
    let ns = obj.meta().namespace.clone();
    let created = api::<K>(&state, ns.as_deref()).create(&obj).await?;
    created.after_create(&cx).await?;
    Ok((StatusCode::CREATED, cx.warning_headers(), Json(to_output(created)?)))
}

/// `GET /v3/<plural>/<id>`
pub(crate) async fn get<K: ApiKind>(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (ns, name) = split_id::<K>(&id)?;
    authorize_object::<K>(&state, &caller, "get", ns.as_deref(), &name).await?;
    let obj = api::<K>(&state, ns.as_deref()).get(&name).await?;
    Ok(Json(to_output(obj)?))
}

/// `PUT /v3/<plural>/<id>`: replaces metadata and spec; status stays as the controllers wrote it. A
/// `metadata.resourceVersion` in the body makes it a compare-and-swap (409 when stale).
pub(crate) async fn update<K: ApiKind>(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(HeaderMap, Json<Value>)> {
    let (ns, name) = split_id::<K>(&id)?;
    authorize_object::<K>(&state, &caller, "update", ns.as_deref(), &name).await?;
    let mut map = json_object(&headers, body, state.body_limit).await?;
    K::rancher_fields_in(&mut map)?;
    let objects = api::<K>(&state, ns.as_deref());
    let old = objects.get(&name).await?;
    let old_value = serde_json::to_value(&old).map_err(ApiError::encode(K::KIND))?;
    map.insert("status".into(), old_value.get("status").cloned().unwrap_or(Value::Null));
    let mut obj: K = decode(map)?;
    let meta = obj.meta_mut();
    if meta.name.is_empty() {
        meta.name = name.clone();
    }
    if meta.name != name {
        return Err(ApiError::BadRequest(format!(
            "the name in the body ({:?}) does not match the name in the path ({name:?})",
            meta.name
        )));
    }
    if K::NAMESPACED {
        match meta.namespace.as_deref() {
            None | Some("") => meta.namespace = ns.clone(),
            Some(n) if Some(n) != ns.as_deref() => {
                return Err(ApiError::BadRequest(format!(
                    "the namespace in the body ({n:?}) does not match the path ({:?})",
                    ns.unwrap_or_default()
                )));
            }
            Some(_) => {}
        }
    } else {
        meta.namespace = None;
    }
    let cx = Ctx::new(&state, &caller);
    old.check_change(&cx).await?;
    obj.prepare_update(&old, &cx).await?;
    let updated = objects.update(&obj).await?;
    Ok((cx.warning_headers(), Json(to_output(updated)?)))
}

/// `DELETE /v3/<plural>/<id>`: answers with the object's last state.
pub(crate) async fn delete<K: ApiKind>(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let (ns, name) = split_id::<K>(&id)?;
    authorize_object::<K>(&state, &caller, "delete", ns.as_deref(), &name).await?;
    let objects = api::<K>(&state, ns.as_deref());
    let obj = objects.get(&name).await?;
    obj.check_delete()?;
    let cx = Ctx::new(&state, &caller);
    obj.check_change(&cx).await?;
    let last = objects.delete(&name).await?.into_value();
    obj.after_delete(&cx).await;
    let last: K = serde_json::from_value(last).map_err(ApiError::encode(K::KIND))?;
    Ok(Json(to_output(last)?))
}
