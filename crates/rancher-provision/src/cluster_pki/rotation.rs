//! Certificate rotation. Without a new CA it is one step: new certificates (with new keys) from the
//! same CAs, for every service or some. With new CAs it is three, each rolled over every host before
//! the next ([`ClusterPki::advance`]), so that no host ever holds a certificate its peers do not
//! trust: every CA file holds the new CA and the old ([`RotationPhase::TrustBoth`]); then every
//! certificate is issued again by the new CAs, the CA files still holding both
//! ([`RotationPhase::NewLeaves`]); then the CA files hold the new CAs only (the rotation is over).
//! The service-account key is never rotated: that would invalidate every service-account token.

use std::collections::BTreeMap;

use rancher_core::model::RkeConfig;
use serde::{Deserialize, Serialize};

use super::{
    APISERVER_ETCD_CLIENT, APISERVER_KUBELET_CLIENT, CONTROLLER_MANAGER, CertKey, ClusterPki,
    FRONT_PROXY_CLIENT, KUBE_APISERVER, KUBE_CA, PkiError, SCHEDULER, Usage, issue,
};

/// The services whose certificates can be rotated alone, by Rancher's names
/// (`rotateCertificates.services`). These clusters run no kube-proxy.
pub const ROTATABLE_SERVICES: [&str; 5] =
    ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet"];

/// What a rotation renews.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RotateScope {
    /// New CAs too: then every certificate is issued again (and `services` must be empty).
    #[serde(default)]
    pub new_ca: bool,
    /// The services whose certificates are issued again ([`ROTATABLE_SERVICES`]); empty: all of
    /// them, the admin's and the cluster agent's certificates included.
    #[serde(default)]
    pub services: Vec<String>,
}

/// Where a rotation to new CAs stands (between two rolls over the hosts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RotationPhase {
    /// Every CA file holds the new CA, then the old; every other certificate is still the old CA's.
    TrustBoth,
    /// Every certificate is the new CA's; the CA files still hold both CAs.
    NewLeaves,
}

/// The state of a rotation to new CAs, stored with the PKI.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "camelCase")]
pub(super) enum CaRotation {
    /// The new CAs exist (with their keys) and are trusted, but sign nothing yet.
    TrustBoth {
        /// By CA name.
        #[serde(rename = "newCas")]
        new_cas: BTreeMap<String, CertKey>,
    },
    /// The new CAs sign; the old ones (certificates only, their keys are gone) are still trusted.
    NewLeaves {
        /// By CA name: the old CA's certificate, PEM.
        #[serde(rename = "oldCas")]
        old_cas: BTreeMap<String, String>,
    },
}

/// Checks the service names of a rotation against [`ROTATABLE_SERVICES`].
///
/// # Errors
/// [`PkiError::UnknownService`] naming the first unknown one and the known ones.
pub fn check_services(services: &[String]) -> Result<(), PkiError> {
    match services.iter().find(|s| !ROTATABLE_SERVICES.contains(&s.as_str())) {
        None => Ok(()),
        Some(name) => {
            let mut known = ROTATABLE_SERVICES.join(", ");
            if name == "kube-proxy" {
                known.push_str("; these clusters run no kube-proxy");
            }
            Err(PkiError::UnknownService { name: name.clone(), known })
        }
    }
}

/// Whether the certificate `name` (not a CA) belongs to one of `services` (all when empty).
fn in_scope(name: &str, services: &[String]) -> bool {
    services.is_empty()
        || services.iter().any(|s| match s.as_str() {
            "etcd" => name.starts_with("kube-etcd-peer-") || name.starts_with("kube-etcd-server-"),
            "kube-apiserver" => {
                [KUBE_APISERVER, APISERVER_ETCD_CLIENT, APISERVER_KUBELET_CLIENT, FRONT_PROXY_CLIENT]
                    .contains(&name)
            }
            "kube-controller-manager" => name == CONTROLLER_MANAGER,
            "kube-scheduler" => name == SCHEDULER,
            "kubelet" => name.starts_with("kube-node-"),
            _ => false,
        })
}

/// `a` then `b`, one PEM after the other.
fn bundle(a: &str, b: &str) -> String {
    if a.ends_with('\n') { format!("{a}{b}") } else { format!("{a}\n{b}") }
}

impl ClusterPki {
    /// Starts a rotation: first makes what `cfg` needs ([`ensure`](Self::ensure)); then, without a
    /// new CA, issues again (with new keys) every certificate of `scope.services` (all when empty),
    /// and the rotation is done; with a new CA, makes the new CAs and enters
    /// [`RotationPhase::TrustBoth`]: roll the plans, then [`advance`](Self::advance).
    ///
    /// # Errors
    /// [`PkiError::UnknownService`] for a service not in [`ROTATABLE_SERVICES`];
    /// [`PkiError::Rotation`] for a new CA with services named, or while a rotation to new CAs is
    /// under way; [`ensure`](Self::ensure)'s errors. Nothing changes on an error.
    pub fn rotate(&mut self, cfg: &RkeConfig, scope: &RotateScope) -> Result<(), PkiError> {
        check_services(&scope.services)?;
        if scope.new_ca && !scope.services.is_empty() {
            return Err(PkiError::Rotation(
                "a new CA issues every certificate again: name no services with it".into(),
            ));
        }
        if let Some(phase) = self.rotation_phase() {
            return Err(PkiError::Rotation(format!(
                "a rotation to new CAs is under way (phase {phase:?}): it has to end first"
            )));
        }
        let mut next = self.clone();
        next.ensure(cfg)?;
        if scope.new_ca {
            let mut new_cas = BTreeMap::new();
            for (name, ca) in next.certs.iter().filter(|(_, c)| c.spec.usage == Usage::Ca) {
                new_cas.insert(name.clone(), issue(name, &ca.spec, None, None)?);
            }
            next.rotation = Some(CaRotation::TrustBoth { new_cas });
        } else {
            let names: Vec<String> = next
                .certs
                .iter()
                .filter(|(n, c)| c.spec.usage != Usage::Ca && in_scope(n, &scope.services))
                .map(|(n, _)| n.clone())
                .collect();
            next.reissue(&names)?;
        }
        *self = next;
        Ok(())
    }

    /// Moves a rotation to new CAs to its next phase, once every host runs the plans of this one:
    /// from [`TrustBoth`](RotationPhase::TrustBoth) the new CAs sign every certificate again (new
    /// keys); from [`NewLeaves`](RotationPhase::NewLeaves) the old CAs are dropped and the rotation
    /// is over. Returns whether anything changed (then store the PKI and roll the plans again);
    /// false when no rotation is under way.
    ///
    /// # Errors
    /// [`PkiError::Generate`] when a certificate cannot be issued; nothing changes then.
    pub fn advance(&mut self) -> Result<bool, PkiError> {
        let mut next = self.clone();
        match next.rotation.take() {
            None => return Ok(false),
            Some(CaRotation::TrustBoth { new_cas }) => {
                let mut old_cas = BTreeMap::new();
                for (name, new) in new_cas {
                    if let Some(old) = next.certs.insert(name.clone(), new) {
                        old_cas.insert(name, old.cert_pem);
                    }
                }
                let leaves: Vec<String> = next
                    .certs
                    .iter()
                    .filter(|(_, c)| c.spec.usage != Usage::Ca)
                    .map(|(n, _)| n.clone())
                    .collect();
                next.reissue(&leaves)?;
                next.rotation = Some(CaRotation::NewLeaves { old_cas });
            }
            Some(CaRotation::NewLeaves { .. }) => {}
        }
        *self = next;
        Ok(true)
    }

    /// The phase of a rotation to new CAs under way, if one is.
    pub fn rotation_phase(&self) -> Option<RotationPhase> {
        self.rotation.as_ref().map(|r| match r {
            CaRotation::TrustBoth { .. } => RotationPhase::TrustBoth,
            CaRotation::NewLeaves { .. } => RotationPhase::NewLeaves,
        })
    }

    /// What a host trusts for the CA named `ca` (PEM): its certificate, or during a rotation to new
    /// CAs the new CA's then the old one's.
    pub fn trust_bundle(&self, ca: &str) -> Option<String> {
        let current = &self.certs.get(ca)?.cert_pem;
        let other = match &self.rotation {
            Some(CaRotation::TrustBoth { new_cas }) => new_cas.get(ca).map(|n| bundle(&n.cert_pem, current)),
            Some(CaRotation::NewLeaves { old_cas }) => old_cas.get(ca).map(|old| bundle(current, old)),
            None => None,
        };
        Some(other.unwrap_or_else(|| current.clone()))
    }

    /// Issues the certificates `names` again with new keys, each by its issuer as the PKI holds it.
    fn reissue(&mut self, names: &[String]) -> Result<(), PkiError> {
        let mut issuers = BTreeMap::new();
        for name in names {
            let spec = self.certs[name].spec.clone();
            let ca = spec.issuer.clone().unwrap_or_else(|| KUBE_CA.to_owned());
            if !issuers.contains_key(&ca) {
                let issuer = self.issuer(&ca)?;
                issuers.insert(ca.clone(), issuer);
            }
            let cert = issue(name, &spec, Some(&issuers[&ca]), None)?;
            self.certs.insert(name.clone(), cert);
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "rotation_tests.rs"]
mod tests;
