//! `GET /v3/<plural>`: lists of any [`ApiKind`], narrowed to what the caller may see, with Rancher's
//! filter parameters (`clusterId=`, `projectId=`) and Kubernetes' paging (`limit=`, `continue=`).
//!
//! A caller allowed to list every object (by a global role) and asking for no filter is served page by
//! page by the store. Otherwise the list is filtered before it is paged: every object (matching the
//! label selector) is read, those the caller may not see or that do not match the filters are dropped,
//! and the page is cut from what is left, ordered by namespace and name. Its continue token names the
//! last object returned, so the next page starts after it even when objects come and go meanwhile.

use axum::Json;
use axum::extract::{RawQuery, State};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rancher_core::Resource;
use rancher_core::store::{Api, LabelSelector, ListOptions, Requirement};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::crud::to_output;
use super::kind::ApiKind;
use super::visibility::Access;
use crate::server::auth::Caller;
use crate::server::error::{ApiError, ApiResult};
use crate::server::state::AppState;

/// What a list asks for.
#[derive(Default)]
struct ListQuery {
    limit: Option<usize>,
    continue_token: Option<String>,
    label_selector: Option<LabelSelector>,
    /// Rancher filters the kind takes, as `(parameter, value)`.
    filters: Vec<(&'static str, String)>,
}

impl ListQuery {
    fn parse<K: ApiKind>(query: Option<&str>) -> ApiResult<Self> {
        let mut q = ListQuery::default();
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match k.as_ref() {
                "limit" => {
                    let n: usize = v
                        .parse()
                        .map_err(|_| ApiError::BadRequest(format!("limit {v:?} is not a number")))?;
                    q.limit = (n > 0).then_some(n);
                }
                "continue" if !v.is_empty() => q.continue_token = Some(v.into_owned()),
                "labelSelector" => {
                    q.label_selector =
                        Some(LabelSelector::parse(&v).map_err(|e| ApiError::BadRequest(e.to_string()))?)
                }
                param => {
                    // Other parameters are ignored, as Rancher ignores those it does not know.
                    if let Some(p) = K::LIST_FILTERS.iter().find(|p| **p == param)
                        && !v.is_empty()
                    {
                        check_filter(p, &v)?;
                        q.filters.push((p, v.into_owned()));
                    }
                }
            }
        }
        Ok(q)
    }
}

/// Refuses filter values that can match nothing because they are malformed.
fn check_filter(param: &str, value: &str) -> ApiResult<()> {
    if param == "projectId" && !value.split_once(':').is_some_and(|(c, p)| !c.is_empty() && !p.is_empty()) {
        return Err(ApiError::BadRequest(format!(
            "projectId {value:?} is not a project id: project ids look like <cluster>:<project>"
        )));
    }
    Ok(())
}

/// `GET /v3/<plural>?limit=&continue=&labelSelector=` and the kind's filters.
pub(crate) async fn list<K: ApiKind>(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    let mut q = ListQuery::parse::<K>(query.as_deref())?;
    let global = caller.can("list", K::PLURAL, None);
    let page = if global && q.filters.is_empty() {
        store_page::<K>(&state, q).await?
    } else if !global && !K::MEMBER_MANAGED {
        // Kinds whose objects belong to a user (tokens): the store narrows the list by label.
        let Some(own) = K::own_filter(&caller).filter(|_| K::SELF_VERBS.contains(&"list")) else {
            return Err(caller.forbidden("list", K::PLURAL, None));
        };
        q.label_selector
            .get_or_insert_with(LabelSelector::default)
            .requirements
            .push(Requirement::In(own.label.to_owned(), vec![own.value]));
        store_page::<K>(&state, q).await?
    } else {
        let mut access = if global { None } else { Some(Access::load(&state, &caller).await?) };
        let filters = std::mem::take(&mut q.filters);
        filtered_page::<K>(&state, q, |obj| {
            filters.iter().all(|(p, v)| obj.filter_value(p).as_deref() == Some(v.as_str()))
                && access.as_mut().is_none_or(|a| a.sees(obj))
        })
        .await?
    };
    let data = page.items.into_iter().map(to_output).collect::<ApiResult<Vec<_>>>()?;
    let mut out = json!({
        "type": "collection",
        "resourceType": K::TYPE,
        "data": data,
        "revision": page.revision,
    });
    if let Some(token) = page.continue_token {
        out["continue"] = token.clone().into();
        out["pagination"] = json!({ "next": token });
    }
    Ok(Json(out))
}

/// One page of a list.
struct Page<K> {
    items: Vec<K>,
    revision: String,
    continue_token: Option<String>,
}

/// One page as the store cuts it.
async fn store_page<K: ApiKind>(state: &AppState, q: ListQuery) -> ApiResult<Page<K>> {
    let options = ListOptions {
        limit: q.limit,
        continue_token: q.continue_token,
        label_selector: q.label_selector,
        ..Default::default()
    };
    let (items, page) = Api::<K>::all(state.store.clone()).list_with(options).await?;
    Ok(Page { items, revision: page.resource_version, continue_token: page.continue_token })
}

/// Where a filtered list's next page starts: after the object with this `namespace/name`.
#[derive(Serialize, Deserialize)]
struct FilteredContinue {
    /// Format version.
    v: u8,
    /// The resource listed.
    r: String,
    /// The `namespace/name` of the last object returned.
    a: String,
}

fn sort_key<K: Resource>(obj: &K) -> String {
    let meta = obj.meta();
    format!("{}/{}", meta.namespace.as_deref().unwrap_or_default(), meta.name)
}

fn decode_continue<K: ApiKind>(token: &str) -> ApiResult<String> {
    let bad = || ApiError::BadRequest(format!("invalid continue token {token:?}: start the list again"));
    let bytes = URL_SAFE_NO_PAD.decode(token.trim()).map_err(|_| bad())?;
    let t: FilteredContinue = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if t.v != 1 || t.r != K::PLURAL || t.a.is_empty() {
        return Err(bad());
    }
    Ok(t.a)
}

fn encode_continue<K: ApiKind>(after: String) -> String {
    let t = FilteredContinue { v: 1, r: K::PLURAL.to_owned(), a: after };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&t).unwrap_or_default())
}

/// Every object matching the label selector that `keep` accepts, paged after filtering.
async fn filtered_page<K: ApiKind>(
    state: &AppState,
    q: ListQuery,
    mut keep: impl FnMut(&K) -> bool,
) -> ApiResult<Page<K>> {
    let after = q.continue_token.as_deref().map(decode_continue::<K>).transpose()?;
    let api = Api::<K>::all(state.store.clone());
    let mut options = ListOptions { label_selector: q.label_selector, ..Default::default() };
    let (mut all, first) = api.list_with(options.clone()).await?;
    let mut next = first.continue_token;
    while let Some(token) = next {
        options.continue_token = Some(token);
        let (more, page) = api.list_with(options.clone()).await?;
        all.extend(more);
        next = page.continue_token;
    }
    let mut kept: Vec<(String, K)> = all
        .into_iter()
        .map(|obj| (sort_key(&obj), obj))
        .filter(|(key, obj)| after.as_ref().is_none_or(|a| key > a) && keep(obj))
        .collect();
    kept.sort_by(|a, b| a.0.cmp(&b.0));
    let mut continue_token = None;
    if let Some(limit) = q.limit
        && kept.len() > limit
    {
        kept.truncate(limit);
        continue_token = kept.last().map(|(key, _)| encode_continue::<K>(key.clone()));
    }
    Ok(Page {
        items: kept.into_iter().map(|(_, obj)| obj).collect(),
        revision: first.resource_version,
        continue_token,
    })
}

#[cfg(test)]
mod tests {
    use rancher_core::model::{Cluster, Project};

    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_belong_to_their_list() {
        let t = encode_continue::<Project>("east/p-abcde".into());
        assert_eq!(decode_continue::<Project>(&t).unwrap(), "east/p-abcde");
        assert!(decode_continue::<Cluster>(&t).is_err(), "a projects token does not page clusters");
        assert!(decode_continue::<Project>("not a token").is_err());
        assert!(
            decode_continue::<Project>(&URL_SAFE_NO_PAD.encode(br#"{"v":1,"r":"projects","a":""}"#)).is_err()
        );
    }

    #[test]
    fn project_ids_in_filters_name_a_cluster_and_a_project() {
        assert!(check_filter("projectId", "east:p-abcde").is_ok());
        for bad in ["east", "east:", ":p-abcde"] {
            assert!(check_filter("projectId", bad).is_err(), "{bad}");
        }
        assert!(check_filter("clusterId", "east").is_ok());
    }
}
