//! `/v3/cloudcredentials`: cloud credentials (AWS keys, a GCP service-account key, an Azure client
//! credential). Their secret fields are checked, then sealed before they are stored, and never
//! returned (`"[sealed]"` stands for each; sent back in an update, it keeps the stored value). Only
//! the owner (the creator, label `field.cattle.io/creatorId`) and those whose global roles reach every
//! credential (admins) see them: anyone else gets 404, as for a credential that does not exist. One
//! that a cluster names cannot be deleted (409 naming the clusters).

use async_trait::async_trait;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use http::HeaderMap;
use rancher_core::Resource;
use rancher_core::model::{CREATOR_ID_LABEL, CloudCredential, CloudCredentialSpec};
use rancher_core::store::{Api, StoreError};
use serde_json::{Map, Value};

use super::crud;
use super::kind::{ApiKind, Ctx, OwnFilter, generated_name};
use super::rancher_shape::{self, DESCRIPTION, Field};
use crate::server::auth::Caller;
use crate::server::cloud_credentials::clusters_using;
use crate::server::error::{ApiError, ApiResult};
use crate::server::secrets::{SEALED_PLACEHOLDER, Sealer, is_sealed};
use crate::server::state::AppState;

/// Rancher's `name` of a cloud credential is what people see (its id is the server's `cc-xxxxx`).
const CREDENTIAL_NAME: Field = Field { rancher: "name", ours: &["spec", "displayName"] };
/// The configs Rancher's body carries at its top level.
const CONFIGS: [&str; 3] = ["amazonec2credentialConfig", "googlecredentialConfig", "azurecredentialConfig"];

#[async_trait]
impl ApiKind for CloudCredential {
    const TYPE: &'static str = "cloudCredential";
    const SELF_VERBS: &'static [&'static str] = &["get", "list", "update", "delete"];

    fn owned_by(&self, caller: &Caller) -> bool {
        !self.owner().is_empty() && self.owner() == caller.user_id()
    }

    fn own_filter(caller: &Caller) -> Option<OwnFilter> {
        Some(OwnFilter { label: CREATOR_ID_LABEL, value: caller.user_id().to_owned() })
    }

    fn redact(&mut self) {
        for s in self.spec.secrets_mut() {
            if !s.value.is_empty() {
                SEALED_PLACEHOLDER.clone_into(s.value);
            }
        }
    }

    /// Rancher's body: `name` (shown), `description` and the config at the top level.
    fn rancher_fields_in(map: &mut Map<String, Value>) -> ApiResult<()> {
        rancher_shape::fields_in(map, &[CREDENTIAL_NAME, DESCRIPTION])?;
        for key in CONFIGS {
            let Some(config) = map.remove(key).filter(|v| !v.is_null()) else { continue };
            let spec = map.entry("spec").or_insert_with(|| Value::Object(Map::new()));
            if spec.is_null() {
                *spec = Value::Object(Map::new());
            }
            let spec =
                spec.as_object_mut().ok_or_else(|| ApiError::invalid_field("spec", "must be an object"))?;
            match spec.get(key) {
                Some(ours) if !ours.is_null() && *ours != config => {
                    return Err(ApiError::invalid_field(
                        key,
                        format!("disagrees with spec.{key} in the same body: give one, or the same in both"),
                    ));
                }
                _ => {
                    spec.insert(key.to_owned(), config);
                }
            }
        }
        Ok(())
    }

    fn rancher_fields_out(&self, map: &mut Map<String, Value>) {
        rancher_shape::fields_out(
            map,
            [("name", self.spec.display_name.as_str()), ("description", self.spec.description.as_str())],
        );
    }

    async fn prepare_create(&mut self, cx: &Ctx<'_>) -> ApiResult<()> {
        if self.metadata.name.is_empty() && self.metadata.generate_name.is_none() {
            self.metadata.name = generated_name("cc-");
        }
        if self.spec.display_name.is_empty() {
            self.spec.display_name = self.metadata.name.clone();
        }
        // The owner is whoever creates it, whatever the body says.
        self.metadata.labels.insert(CREATOR_ID_LABEL.to_owned(), cx.caller.user_id().to_owned());
        seal(&mut self.spec, None, &cx.state.sealer)
    }

    /// The owner stays; the cloud cannot change (clusters were made with it); `"[sealed]"` keeps a
    /// secret, a new value rotates it.
    async fn prepare_update(&mut self, old: &Self, cx: &Ctx<'_>) -> ApiResult<()> {
        match old.metadata.labels.get(CREATOR_ID_LABEL) {
            Some(owner) => self.metadata.labels.insert(CREATOR_ID_LABEL.to_owned(), owner.clone()),
            None => self.metadata.labels.remove(CREATOR_ID_LABEL),
        };
        if self.spec.display_name.is_empty() {
            self.spec.display_name = old.spec.display_name.clone();
        }
        let (new, was) = (self.spec.provider(), old.spec.provider());
        if let (Ok(new), Ok(was)) = (new, was)
            && new != was
        {
            return Err(ApiError::invalid_field(
                "spec",
                format!("a credential's cloud cannot change ({was} to {new}): create another credential"),
            ));
        }
        seal(&mut self.spec, Some(&old.spec), &cx.state.sealer)
    }
}

/// Checks `spec` and seals its plain secrets; `"[sealed]"` takes the stored value from `old`.
///
/// # Errors
/// 422 naming the field: a check failed, `"[sealed]"` where nothing is stored, or a sealed value the
/// client sent that is not the stored one (sealed text of another credential is not accepted).
fn seal(spec: &mut CloudCredentialSpec, old: Option<&CloudCredentialSpec>, sealer: &Sealer) -> ApiResult<()> {
    spec.normalize();
    let mut old = old.cloned().unwrap_or_default();
    let stored: Vec<(&'static str, String)> =
        old.secrets_mut().into_iter().map(|s| (s.field, s.value.clone())).collect();
    for s in spec.secrets_mut() {
        let kept = stored.iter().find(|(f, v)| *f == s.field && is_sealed(v)).map(|(_, v)| v);
        if *s.value == SEALED_PLACEHOLDER {
            *s.value = kept
                .ok_or_else(|| {
                    ApiError::invalid_field(
                        s.field,
                        format!(
                            "{SEALED_PLACEHOLDER:?} keeps a stored secret, and none is stored here: send \
                             the secret"
                        ),
                    )
                })?
                .clone();
        } else if is_sealed(s.value) && kept != Some(&*s.value) {
            return Err(ApiError::invalid_field(
                s.field,
                "a sealed value is accepted only as the one stored here: send the secret itself",
            ));
        }
    }
    spec.validate(|v| !is_sealed(v)).map_err(|e| ApiError::invalid_field(&e.field, e.message))?;
    for s in spec.secrets_mut() {
        if !is_sealed(s.value) {
            *s.value = sealer.seal(s.value);
        }
    }
    Ok(())
}

/// Lets the caller on only when they may see the credential `name` (by their global roles, or as its
/// owner); anyone else is told it does not exist.
async fn visible(state: &AppState, caller: &Caller, name: &str) -> ApiResult<()> {
    if caller.can("get", CloudCredential::PLURAL, Some(name)) {
        return Ok(());
    }
    match Api::<CloudCredential>::all(state.store.clone()).get_opt(name).await? {
        Some(cc) if cc.owned_by(caller) => Ok(()),
        _ => Err(StoreError::NotFound { resource: CloudCredential::PLURAL.into(), name: name.into() }.into()),
    }
}

/// `GET /v3/cloudcredentials/<id>`
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    visible(&state, &caller, &id).await?;
    crud::get::<CloudCredential>(State(state), caller, Path(id)).await
}

/// `PUT /v3/cloudcredentials/<id>`
pub(crate) async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(HeaderMap, Json<Value>)> {
    visible(&state, &caller, &id).await?;
    crud::update::<CloudCredential>(State(state), caller, Path(id), headers, body).await
}

/// `DELETE /v3/cloudcredentials/<id>`: refused while a cluster names the credential.
pub(crate) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    visible(&state, &caller, &id).await?;
    let users = clusters_using(&state.store, &id).await?;
    if !users.is_empty() {
        return Err(ApiError::Conflict(format!(
            "cloud credential {id:?} is in use by cluster(s) {}: delete them or give them another \
             credential first",
            users.join(", ")
        )));
    }
    crud::delete::<CloudCredential>(State(state), caller, Path(id)).await
}

#[cfg(test)]
mod tests {
    use rancher_core::model::{Amazonec2CredentialConfig, AzureCredentialConfig};

    use super::*;

    fn aws(secret: &str) -> CloudCredentialSpec {
        CloudCredentialSpec {
            amazonec2credential_config: Some(Amazonec2CredentialConfig {
                access_key: "AKIAIOSFODNN7EXAMPLE".into(),
                secret_key: secret.into(),
                default_region: String::new(),
            }),
            ..Default::default()
        }
    }

    fn secret_of(spec: &CloudCredentialSpec) -> String {
        spec.amazonec2credential_config.as_ref().unwrap().secret_key.clone()
    }

    #[test]
    fn seals_keeps_on_placeholder_and_rotates() {
        let sealer = Sealer::from_key(&[9; 32]);
        let mut first = aws("wJalrXUtnFEMI-one");
        seal(&mut first, None, &sealer).unwrap();
        let sealed = secret_of(&first);
        assert!(is_sealed(&sealed) && !sealed.contains("wJalr"));

        let mut kept = aws(SEALED_PLACEHOLDER);
        seal(&mut kept, Some(&first), &sealer).unwrap();
        assert_eq!(secret_of(&kept), sealed);
        let mut resent = aws(&sealed);
        seal(&mut resent, Some(&first), &sealer).unwrap();
        assert_eq!(secret_of(&resent), sealed);

        let mut rotated = aws("wJalrXUtnFEMI-two");
        seal(&mut rotated, Some(&first), &sealer).unwrap();
        use secrecy::ExposeSecret;
        assert_eq!(sealer.open(&secret_of(&rotated)).unwrap().expose_secret(), "wJalrXUtnFEMI-two");

        // "[sealed]" with nothing stored, and sealed text from elsewhere, are refused.
        let e = seal(&mut aws(SEALED_PLACEHOLDER), None, &sealer).unwrap_err();
        assert!(e.to_string().contains("spec.amazonec2credentialConfig.secretKey"), "{e}");
        let foreign = sealer.seal("wJalrXUtnFEMI-other");
        let e = seal(&mut aws(&foreign), Some(&first), &sealer).unwrap_err();
        assert!(e.to_string().contains("only as the one stored here"), "{e}");
        // A placeholder for a field of another cloud keeps nothing.
        let mut azure = CloudCredentialSpec {
            azurecredential_config: Some(AzureCredentialConfig {
                client_secret: SEALED_PLACEHOLDER.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(seal(&mut azure, Some(&first), &sealer).is_err());
    }

    #[test]
    fn redacts_every_secret_and_takes_ranchers_body() {
        let mut cc = CloudCredential::new("cc-x", aws("sealed:v1:AAAA"));
        cc.redact();
        assert_eq!(secret_of(&cc.spec), SEALED_PLACEHOLDER);

        let mut map = serde_json::json!({
            "type": "cloudCredential",
            "name": "prod keys",
            "amazonec2credentialConfig": {"accessKey": "AKIAIOSFODNN7EXAMPLE", "secretKey": "s"},
        })
        .as_object()
        .unwrap()
        .clone();
        CloudCredential::rancher_fields_in(&mut map).unwrap();
        let cc: CloudCredential = serde_json::from_value(Value::Object(map)).unwrap();
        assert_eq!(cc.spec.display_name, "prod keys");
        assert_eq!(cc.spec.amazonec2credential_config.unwrap().access_key, "AKIAIOSFODNN7EXAMPLE");
    }
}
