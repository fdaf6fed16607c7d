//! The checks of [`CloudCredentialSpec::validate`](super::CloudCredentialSpec::validate), one function
//! per provider. A message names the field and the rule, and never quotes a secret.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use super::credential::{
    AWS_SECRET_FIELD, AZURE_ENVIRONMENTS, AZURE_SECRET_FIELD, Amazonec2CredentialConfig,
    AzureCredentialConfig, GCP_SECRET_FIELD, GoogleCredentialConfig, InvalidCredential,
};

/// The largest secret accepted (a service-account key file is about 2.3 KiB).
const MAX_SECRET: usize = 64 * 1024;

fn err(field: &str, message: impl Into<String>) -> InvalidCredential {
    InvalidCredential::new(field, message)
}

/// A plain secret: present, not too long, no control characters (a pasted newline) around it.
fn secret_text(
    field: &str,
    value: &str,
    plain: &dyn Fn(&str) -> bool,
    multiline: bool,
) -> Result<bool, InvalidCredential> {
    if value.is_empty() {
        return Err(err(field, "is required"));
    }
    if !plain(value) {
        return Ok(false);
    }
    if value.len() > MAX_SECRET {
        return Err(err(field, format!("is {} bytes long; at most {MAX_SECRET} are accepted", value.len())));
    }
    let bad = |c: char| c.is_control() && !(multiline && c.is_whitespace());
    if value.chars().any(bad) || (!multiline && value.chars().any(char::is_whitespace)) {
        return Err(err(field, "must not contain spaces or control characters"));
    }
    Ok(true)
}

pub(super) fn aws(
    c: &Amazonec2CredentialConfig,
    plain: &dyn Fn(&str) -> bool,
) -> Result<(), InvalidCredential> {
    const FIELD: &str = "spec.amazonec2credentialConfig.accessKey";
    let key = &c.access_key;
    if key.is_empty() {
        return Err(err(FIELD, "is required"));
    }
    // IAM's AccessKeyId: 16 to 128 word characters; in practice 20 upper-case letters and digits.
    if !(16..=128).contains(&key.len()) || !key.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return Err(err(
            FIELD,
            "is not an AWS access key id: 16 to 128 upper-case letters and digits, like AKIAIOSFODNN7EXAMPLE",
        ));
    }
    secret_text(AWS_SECRET_FIELD, &c.secret_key, plain, false)?;
    let region = &c.default_region;
    let shaped = region.split('-').count() >= 3
        && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && region.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && region.bytes().last().is_some_and(|b| b.is_ascii_digit())
        && !region.contains("--");
    if !region.is_empty() && !shaped {
        return Err(err(
            "spec.amazonec2credentialConfig.defaultRegion",
            format!("{region:?} is not an AWS region like us-west-2"),
        ));
    }
    Ok(())
}

/// The string member `key` of the key file, or an error naming it.
fn member<'a>(key: &'a serde_json::Map<String, Value>, name: &str) -> Result<&'a str, InvalidCredential> {
    match key.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            Err(err(GCP_SECRET_FIELD, format!("the service-account key has no {name:?}")))
        }
        Some(_) => Err(err(GCP_SECRET_FIELD, format!("the service-account key's {name:?} must be a string"))),
    }
}

/// Whether `uri` is `https://<host>…`, or `http://` to this machine (a test's token endpoint).
fn secure_uri(uri: &str) -> bool {
    let rest = match (uri.strip_prefix("https://"), uri.strip_prefix("http://")) {
        (Some(rest), _) => Some((rest, false)),
        (None, Some(rest)) => Some((rest, true)),
        _ => None,
    };
    let Some((rest, http)) = rest else { return false };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    !host.is_empty() && !uri.chars().any(char::is_whitespace) && (!http || loopback)
}

/// Whether `pem` is one PKCS#8 `PRIVATE KEY` block with a base64 body.
fn private_key_pem(pem: &str) -> bool {
    let pem = pem.trim();
    let Some(body) = pem
        .strip_prefix("-----BEGIN PRIVATE KEY-----")
        .and_then(|rest| rest.strip_suffix("-----END PRIVATE KEY-----"))
    else {
        return false;
    };
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(b64).is_ok_and(|der| der.len() > 64)
}

pub(super) fn gcp(c: &GoogleCredentialConfig, plain: &dyn Fn(&str) -> bool) -> Result<(), InvalidCredential> {
    if !secret_text(GCP_SECRET_FIELD, &c.auth_encoded_json, plain, true)? {
        return Ok(());
    }
    // Parsed as a plain value: a typed parse's errors could quote the key's text.
    let parsed: Value = serde_json::from_str(&c.auth_encoded_json).map_err(|e| {
        err(
            GCP_SECRET_FIELD,
            format!("is not a service-account key file (JSON): line {} column {}", e.line(), e.column()),
        )
    })?;
    let Value::Object(key) = parsed else {
        return Err(err(GCP_SECRET_FIELD, "is not a service-account key file: a JSON object is expected"));
    };
    if member(&key, "type")? != "service_account" {
        return Err(err(
            GCP_SECRET_FIELD,
            "is not a service-account key: its \"type\" must be \"service_account\" (download a key for a \
             service account, not a user's credentials)",
        ));
    }
    if !member(&key, "client_email")?.contains('@') {
        return Err(err(
            GCP_SECRET_FIELD,
            "the service-account key's \"client_email\" is not an email address",
        ));
    }
    if !private_key_pem(member(&key, "private_key")?) {
        return Err(err(
            GCP_SECRET_FIELD,
            "the service-account key's \"private_key\" is not a PEM PKCS#8 private key \
             (-----BEGIN PRIVATE KEY----- …)",
        ));
    }
    if !secure_uri(member(&key, "token_uri")?) {
        return Err(err(GCP_SECRET_FIELD, "the service-account key's \"token_uri\" must be an https URL"));
    }
    Ok(())
}

/// Whether `id` is a UUID in its usual form (`8-4-4-4-12` hex digits).
fn uuid(id: &str) -> bool {
    id.len() == 36 && uuid::Uuid::try_parse(id).is_ok()
}

pub(super) fn azure(
    c: &AzureCredentialConfig,
    plain: &dyn Fn(&str) -> bool,
) -> Result<(), InvalidCredential> {
    for (field, id) in [
        ("spec.azurecredentialConfig.clientId", &c.client_id),
        ("spec.azurecredentialConfig.subscriptionId", &c.subscription_id),
        ("spec.azurecredentialConfig.tenantId", &c.tenant_id),
    ] {
        if id.is_empty() {
            return Err(err(field, "is required"));
        }
        if !uuid(id) {
            return Err(err(
                field,
                format!("{id:?} is not a UUID like 00000000-0000-0000-0000-000000000000"),
            ));
        }
    }
    secret_text(AZURE_SECRET_FIELD, &c.client_secret, plain, false)?;
    if !AZURE_ENVIRONMENTS.contains(&c.environment.as_str()) {
        return Err(err(
            "spec.azurecredentialConfig.environment",
            format!("{:?} is not one of {}", c.environment, AZURE_ENVIRONMENTS.join(", ")),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::credential::{CloudCredentialSpec, CloudProvider};
    use super::*;

    /// A PEM block whose body is 96 bytes of base64 (the checks read the framing, not the key).
    fn pem() -> String {
        format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", STANDARD.encode([7u8; 96]))
    }

    fn key_json(edit: impl FnOnce(&mut Value)) -> String {
        let mut v = json!({
            "type": "service_account",
            "project_id": "demo",
            "private_key_id": "abc",
            "private_key": pem(),
            "client_email": "robot@demo.iam.gserviceaccount.com",
            "token_uri": "https://oauth2.googleapis.com/token",
        });
        edit(&mut v);
        v.to_string()
    }

    fn aws_spec(access: &str, secret: &str, region: &str) -> CloudCredentialSpec {
        CloudCredentialSpec {
            amazonec2credential_config: Some(Amazonec2CredentialConfig {
                access_key: access.into(),
                secret_key: secret.into(),
                default_region: region.into(),
            }),
            ..Default::default()
        }
    }

    fn gcp_spec(json: String) -> CloudCredentialSpec {
        CloudCredentialSpec {
            googlecredential_config: Some(GoogleCredentialConfig { auth_encoded_json: json }),
            ..Default::default()
        }
    }

    const UUID: &str = "3f2504e0-4f89-11d3-9a0c-0305e82c3301";

    fn azure_spec(edit: impl FnOnce(&mut AzureCredentialConfig)) -> CloudCredentialSpec {
        let mut c = AzureCredentialConfig {
            client_id: UUID.into(),
            client_secret: "azure~secret.value".into(),
            subscription_id: UUID.into(),
            tenant_id: UUID.into(),
            ..Default::default()
        };
        edit(&mut c);
        CloudCredentialSpec { azurecredential_config: Some(c), ..Default::default() }
    }

    fn field_of(spec: &CloudCredentialSpec) -> String {
        spec.validate(|v| !v.starts_with("sealed:")).unwrap_err().field
    }

    #[test]
    fn good_credentials_pass() {
        let plain = |v: &str| !v.starts_with("sealed:");
        assert_eq!(
            aws_spec("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG", "us-gov-west-1").validate(plain),
            Ok(CloudProvider::Aws)
        );
        assert_eq!(aws_spec("AKIAIOSFODNN7EXAMPLE", "s", "").validate(plain), Ok(CloudProvider::Aws));
        assert_eq!(gcp_spec(key_json(|_| {})).validate(plain), Ok(CloudProvider::Gcp));
        let loopback = key_json(|v| v["token_uri"] = json!("http://127.0.0.1:4444/token"));
        assert_eq!(gcp_spec(loopback).validate(plain), Ok(CloudProvider::Gcp));
        assert_eq!(azure_spec(|_| {}).validate(plain), Ok(CloudProvider::Azure));
        let china = azure_spec(|c| c.environment = "AzureChinaCloud".into());
        assert_eq!(china.validate(plain), Ok(CloudProvider::Azure));
        // A sealed (already checked) secret is not checked again.
        assert!(gcp_spec("sealed:v1:AAAA".into()).validate(plain).is_ok());
    }

    #[test]
    fn each_bad_field_is_named() {
        let both = CloudCredentialSpec {
            googlecredential_config: Some(GoogleCredentialConfig::default()),
            ..aws_spec("AKIAIOSFODNN7EXAMPLE", "s", "")
        };
        let cases = [
            (CloudCredentialSpec::default(), "spec"),
            (both, "spec"),
            (aws_spec("", "s", ""), "spec.amazonec2credentialConfig.accessKey"),
            (aws_spec("akia-lower", "s", ""), "spec.amazonec2credentialConfig.accessKey"),
            (aws_spec("AKIASHORT", "s", ""), "spec.amazonec2credentialConfig.accessKey"),
            (aws_spec("AKIAIOSFODNN7EXAMPLE", "", ""), AWS_SECRET_FIELD),
            (aws_spec("AKIAIOSFODNN7EXAMPLE", "with space", ""), AWS_SECRET_FIELD),
            (aws_spec("AKIAIOSFODNN7EXAMPLE", "s", "Oregon"), "spec.amazonec2credentialConfig.defaultRegion"),
            (gcp_spec(String::new()), GCP_SECRET_FIELD),
            (gcp_spec("{not json".into()), GCP_SECRET_FIELD),
            (gcp_spec("[]".into()), GCP_SECRET_FIELD),
            (gcp_spec(key_json(|v| v["type"] = json!("authorized_user"))), GCP_SECRET_FIELD),
            (gcp_spec(key_json(|v| v["client_email"] = json!("robot"))), GCP_SECRET_FIELD),
            (gcp_spec(key_json(|v| v["private_key"] = json!("MIIEvQ"))), GCP_SECRET_FIELD),
            (
                gcp_spec(key_json(|v| v["token_uri"] = json!("http://oauth2.googleapis.com/token"))),
                GCP_SECRET_FIELD,
            ),
            (
                gcp_spec(key_json(|v| {
                    v.as_object_mut().unwrap().remove("token_uri");
                })),
                GCP_SECRET_FIELD,
            ),
            (azure_spec(|c| c.client_id = "not-a-uuid".into()), "spec.azurecredentialConfig.clientId"),
            (azure_spec(|c| c.subscription_id = String::new()), "spec.azurecredentialConfig.subscriptionId"),
            (
                azure_spec(|c| c.tenant_id = "contoso.onmicrosoft.com".into()),
                "spec.azurecredentialConfig.tenantId",
            ),
            (azure_spec(|c| c.client_secret = String::new()), AZURE_SECRET_FIELD),
            (
                azure_spec(|c| c.environment = "AzureMoonCloud".into()),
                "spec.azurecredentialConfig.environment",
            ),
        ];
        for (i, (spec, field)) in cases.iter().enumerate() {
            assert_eq!(field_of(spec), *field, "case {i}: {spec:?}");
        }
    }

    #[test]
    fn messages_never_quote_the_key() {
        let secret = "PRIVATE-MATERIAL-1234";
        for json in [
            format!(
                "{{\"type\": \"service_account\", \"private_key\": \"{secret}\", \"client_email\": \"a@b\"}}"
            ),
            format!("{{\"type\": 5, \"x\": \"{secret}\"}}"),
            format!("{{\"{secret}\": tru}}"),
            format!("{{\"type\": \"{secret}\"}}"),
        ] {
            let e = gcp_spec(json).validate(|_| true).unwrap_err().to_string();
            assert!(!e.contains(secret), "{e}");
        }
        let e = aws_spec("AKIAIOSFODNN7EXAMPLE", &format!("{secret} x"), "").validate(|_| true).unwrap_err();
        assert!(!e.to_string().contains(secret), "{e}");
    }

    #[test]
    fn normalize_fills_the_azure_cloud_and_trims_ids() {
        let mut spec = azure_spec(|c| {
            c.environment = String::new();
            c.tenant_id = format!(" {} ", UUID.to_uppercase());
        });
        spec.normalize();
        let c = spec.azurecredential_config.unwrap();
        assert_eq!(c.environment, "AzurePublicCloud");
        assert_eq!(c.tenant_id, UUID);
    }
}
