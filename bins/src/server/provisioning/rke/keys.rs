//! The SSH private keys of an `rkeConfig` at rest: sealed when a cluster is written through `/v3`,
//! shown as `"[sealed]"` when it is read, and kept when an update sends `"[sealed]"` back.

use rancher_core::model::RkeConfig;
use rancher_provision::ProvisionError;

use crate::server::secrets::{SEALED_PLACEHOLDER, Sealer, is_sealed};

/// Where a key sits, to find the same place in the stored config.
#[derive(PartialEq, Eq)]
enum Slot {
    Cluster,
    /// A node, by address and port (its index may change between versions).
    Node(String, String),
    Bastion,
}

/// Each `ssh_key` of `cfg` with its field path and slot.
fn slots_mut(cfg: &mut RkeConfig) -> Vec<(String, Slot, &mut String)> {
    let mut out = vec![("spec.rkeConfig.ssh_key".to_owned(), Slot::Cluster, &mut cfg.ssh_key)];
    for (i, n) in cfg.nodes.iter_mut().enumerate() {
        let slot = Slot::Node(n.address.clone(), n.port.clone());
        out.push((format!("spec.rkeConfig.nodes[{i}].ssh_key"), slot, &mut n.ssh_key));
    }
    if let Some(b) = &mut cfg.bastion_host {
        out.push(("spec.rkeConfig.bastion_host.ssh_key".to_owned(), Slot::Bastion, &mut b.ssh_key));
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
    }
    .filter(|v| is_sealed(v))
}

/// Seals every plain key of `cfg`; `"[sealed]"` takes the stored value of the same place in `old`.
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
                        "\"[sealed]\" keeps a stored key, and none is stored here: send the private key",
                    )
                })?
                .to_owned();
        } else if is_sealed(value) {
            if kept != Some(value.as_str()) {
                return Err(ProvisionError::invalid_spec(
                    &field,
                    "a sealed value cannot be sent: send the private key, or \"[sealed]\" to keep the stored one",
                ));
            }
        } else {
            *value = sealer.seal(value);
        }
    }
    Ok(())
}

/// Replaces every key by `"[sealed]"`, for a response.
pub(crate) fn redact(cfg: &mut RkeConfig) {
    for (_, _, value) in slots_mut(cfg) {
        if !value.is_empty() {
            SEALED_PLACEHOLDER.clone_into(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use rancher_core::model::{RkeBastionHost, RkeNode};
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
