//! The secrets of an `rkeConfig` at rest — the SSH private keys and the S3 secret key of etcd
//! snapshots — sealed when a cluster is written through `/v3`, shown as `"[sealed]"` when it is
//! read, and kept when an update sends `"[sealed]"` back.

use rancher_core::model::{RkeConfig, RkeS3BackupConfig};
use rancher_provision::ProvisionError;
use secrecy::SecretString;

use crate::server::secrets::{SEALED_PLACEHOLDER, Sealer, is_sealed};

/// The field of the S3 secret key, as errors name it.
const S3_SECRET_FIELD: &str = "spec.rkeConfig.services.etcd.backup_config.s3backupconfig.secret_key";

/// Where a key sits, to find the same place in the stored config.
#[derive(PartialEq, Eq)]
enum Slot {
    Cluster,
    /// A node, by address and port (its index may change between versions).
    Node(String, String),
    Bastion,
    /// `services.etcd.backup_config.s3backupconfig.secret_key`.
    S3Secret,
}

impl Slot {
    /// What the secret is, for a message asking for it.
    fn what(&self) -> &'static str {
        match self {
            Slot::S3Secret => "the S3 secret key",
            _ => "the private key",
        }
    }
}

fn s3_backup(cfg: &RkeConfig) -> Option<&RkeS3BackupConfig> {
    cfg.services.etcd.backup_config.as_ref()?.s3_backup_config.as_ref()
}

/// Each secret of `cfg` (every `ssh_key`, the S3 secret key) with its field path and slot.
fn slots_mut(cfg: &mut RkeConfig) -> Vec<(String, Slot, &mut String)> {
    let mut out = vec![("spec.rkeConfig.ssh_key".to_owned(), Slot::Cluster, &mut cfg.ssh_key)];
    for (i, n) in cfg.nodes.iter_mut().enumerate() {
        let slot = Slot::Node(n.address.clone(), n.port.clone());
        out.push((format!("spec.rkeConfig.nodes[{i}].ssh_key"), slot, &mut n.ssh_key));
    }
    if let Some(b) = &mut cfg.bastion_host {
        out.push(("spec.rkeConfig.bastion_host.ssh_key".to_owned(), Slot::Bastion, &mut b.ssh_key));
    }
    let s3 = cfg.services.etcd.backup_config.as_mut().and_then(|b| b.s3_backup_config.as_mut());
    if let Some(s3) = s3 {
        out.push((S3_SECRET_FIELD.to_owned(), Slot::S3Secret, &mut s3.secret_key));
    }
    out
}

fn stored<'a>(cfg: &'a RkeConfig, slot: &Slot) -> Option<&'a str> {
    match slot {
        Slot::Cluster => Some(cfg.ssh_key.as_str()),
        Slot::Node(address, port) => {
            cfg.nodes.iter().find(|n| &n.address == address && &n.port == port).map(|n| n.ssh_key.as_str())
        }
        Slot::Bastion => cfg.bastion_host.as_ref().map(|b| b.ssh_key.as_str()),
        Slot::S3Secret => s3_backup(cfg).map(|s3| s3.secret_key.as_str()),
    }
    .filter(|v| is_sealed(v))
}

/// Seals every plain secret of `cfg`; `"[sealed]"` takes the stored value of the same place in `old`.
///
/// # Errors
/// [`ProvisionError::InvalidSpec`] naming the field for `"[sealed]"` where nothing is stored, or a
/// sealed value a client sent that is not the stored one.
pub(crate) fn seal(
    cfg: &mut RkeConfig,
    old: Option<&RkeConfig>,
    sealer: &Sealer,
) -> Result<(), ProvisionError> {
    for (field, slot, value) in slots_mut(cfg) {
        if value.is_empty() {
            continue;
        }
        let kept = old.and_then(|o| stored(o, &slot));
        if value == SEALED_PLACEHOLDER {
            *value = kept
                .ok_or_else(|| {
                    ProvisionError::invalid_spec(
                        &field,
                        format!(
                            "\"[sealed]\" keeps a stored key, and none is stored here: send {}",
                            slot.what()
                        ),
                    )
                })?
                .to_owned();
        } else if is_sealed(value) {
            if kept != Some(value.as_str()) {
                return Err(ProvisionError::invalid_spec(
                    &field,
                    format!(
                        "a sealed value cannot be sent: send {}, or \"[sealed]\" to keep the stored one",
                        slot.what()
                    ),
                ));
            }
        } else {
            *value = sealer.seal(value);
        }
    }
    Ok(())
}

/// Replaces every secret by `"[sealed]"`, for a response.
pub(crate) fn redact(cfg: &mut RkeConfig) {
    for (_, _, value) in slots_mut(cfg) {
        if !value.is_empty() {
            SEALED_PLACEHOLDER.clone_into(value);
        }
    }
}

/// The S3 secret key of `cfg`'s etcd snapshots, opened (a plain one, written to the store by
/// other means than `/v3`, as is); `None` when no S3 upload is configured.
///
/// # Errors
/// [`ProvisionError::Permanent`] when the sealed value does not open with this server's key (the
/// message names the field, never the value).
pub(crate) fn s3_secret_key(
    cfg: &RkeConfig,
    sealer: &Sealer,
) -> Result<Option<SecretString>, ProvisionError> {
    let Some(s3) = s3_backup(cfg) else { return Ok(None) };
    let v = &s3.secret_key;
    if is_sealed(v) {
        let opened = sealer
            .open(v)
            .map_err(|e| ProvisionError::permanent(format!("opening {S3_SECRET_FIELD}: {e}")))?;
        Ok(Some(opened))
    } else {
        Ok(Some(SecretString::from(v.clone())))
    }
}

#[cfg(test)]
mod tests {
    use rancher_core::model::{RkeBackupConfig, RkeBastionHost, RkeNode};
    use secrecy::ExposeSecret;

    use super::*;

    const KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n";

    fn cfg() -> RkeConfig {
        RkeConfig {
            ssh_key: KEY.into(),
            nodes: vec![
                RkeNode { address: "10.0.0.1".into(), ssh_key: format!("{KEY}node"), ..Default::default() },
                RkeNode { address: "10.0.0.2".into(), ..Default::default() },
            ],
            bastion_host: Some(RkeBastionHost {
                address: "b".into(),
                ssh_key: KEY.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    const S3_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn with_s3(secret: &str) -> RkeConfig {
        let mut c = RkeConfig::default();
        c.services.etcd.backup_config = Some(RkeBackupConfig {
            s3_backup_config: Some(RkeS3BackupConfig {
                access_key: "AKIDEXAMPLE".into(),
                secret_key: secret.into(),
                bucket_name: "snapshots".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        c
    }

    fn s3_field(c: &RkeConfig) -> &str {
        &s3_backup(c).unwrap().secret_key
    }

    #[test]
    fn the_s3_secret_key_is_sealed_redacted_kept_and_opened() {
        let sealer = Sealer::from_key(&[2; 32]);
        let mut stored_cfg = with_s3(S3_SECRET);
        seal(&mut stored_cfg, None, &sealer).unwrap();
        let sealed = s3_field(&stored_cfg).to_owned();
        assert!(is_sealed(&sealed) && !sealed.contains("wJalrXUtnFEMI"), "{sealed}");
        let json = serde_json::to_string(&stored_cfg).unwrap();
        assert!(!json.contains("wJalrXUtnFEMI") && json.contains("AKIDEXAMPLE"), "{json}");
        assert_eq!(s3_secret_key(&stored_cfg, &sealer).unwrap().unwrap().expose_secret(), S3_SECRET);

        let mut shown = stored_cfg.clone();
        redact(&mut shown);
        assert_eq!(s3_field(&shown), "[sealed]");

        let mut update = shown.clone();
        seal(&mut update, Some(&stored_cfg), &sealer).unwrap();
        assert_eq!(s3_field(&update), sealed, "\"[sealed]\" keeps the stored secret");

        let mut fresh = shown.clone();
        let err = seal(&mut fresh, None, &sealer).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{S3_SECRET_FIELD}: \"[sealed]\" keeps a stored key")), "{err}");
        assert!(err.contains("send the S3 secret key"), "{err}");
        let mut forged = with_s3(&sealer.seal("another"));
        let err = seal(&mut forged, Some(&stored_cfg), &sealer).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{S3_SECRET_FIELD}: a sealed value cannot be sent")), "{err}");

        let other = Sealer::from_key(&[3; 32]);
        let err = s3_secret_key(&stored_cfg, &other).unwrap_err().to_string();
        assert!(err.contains(S3_SECRET_FIELD) && !err.contains(&sealed), "{err}");
        assert!(s3_secret_key(&RkeConfig::default(), &sealer).unwrap().is_none());
    }

    #[test]
    fn keys_are_sealed_redacted_and_kept() {
        let sealer = Sealer::from_key(&[1; 32]);
        let mut stored_cfg = cfg();
        seal(&mut stored_cfg, None, &sealer).unwrap();
        assert!(!format!("{stored_cfg:?}").contains("OPENSSH"), "no key in plain text");
        assert_eq!(sealer.open(&stored_cfg.nodes[0].ssh_key).unwrap().expose_secret(), format!("{KEY}node"));
        assert!(stored_cfg.nodes[1].ssh_key.is_empty());

        let mut shown = stored_cfg.clone();
        redact(&mut shown);
        assert_eq!(
            [
                shown.ssh_key.as_str(),
                &shown.nodes[0].ssh_key,
                &shown.nodes[1].ssh_key,
                &shown.bastion_host.as_ref().unwrap().ssh_key
            ],
            ["[sealed]", "[sealed]", "", "[sealed]"]
        );

        // An update sending the placeholders back keeps the keys, even with the nodes reordered.
        let mut update = shown.clone();
        update.nodes.reverse();
        seal(&mut update, Some(&stored_cfg), &sealer).unwrap();
        assert_eq!(update.nodes[1].ssh_key, stored_cfg.nodes[0].ssh_key);
        assert_eq!(update.ssh_key, stored_cfg.ssh_key);

        let mut fresh = shown.clone();
        let err = seal(&mut fresh, None, &sealer).unwrap_err().to_string();
        assert!(err.starts_with("spec.rkeConfig.ssh_key: \"[sealed]\" keeps a stored key"), "{err}");
        let mut forged = cfg();
        forged.nodes[1].ssh_key = sealer.seal("another");
        let err = seal(&mut forged, Some(&stored_cfg), &sealer).unwrap_err().to_string();
        assert!(err.starts_with("spec.rkeConfig.nodes[1].ssh_key: a sealed value cannot be sent"), "{err}");
    }
}
