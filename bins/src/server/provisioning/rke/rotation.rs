//! Certificate rotation as the run carries it out: a change of the PKI in the cluster's state that
//! the run then rolls over the hosts like any other change. [`advance`] is called each time every
//! host runs its current plan: it moves a rotation to new CAs to its next phase, or starts the
//! rotation `rkeConfig.rotate_certificates` asks for, once per request (`requested_at`).

use std::collections::BTreeSet;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rancher_core::model::{Cluster, RkeConfig};
use rancher_provision::cluster_pki::{self as pki, PkiError, RotateScope};

use super::state::RkeState;

/// The next step of certificate rotation, once every host runs its current plan: a rotation to new
/// CAs under way moves to its next phase ([`ClusterPki::advance`]); else a requested rotation not
/// started yet starts ([`ClusterPki::rotate`], its `requested_at` recorded in the state). Returns
/// true when the PKI changed: store the state, render the plans again and roll them; false when
/// there is nothing (more) to do.
///
/// A request that arrives while a rotation to new CAs is under way waits for it to end.
///
/// # Errors
/// [`PkiError`] when the request is invalid (validation refuses it first) or a certificate cannot
/// be issued; the state is unchanged then.
///
/// [`ClusterPki::advance`]: rancher_provision::cluster_pki::ClusterPki::advance
/// [`ClusterPki::rotate`]: rancher_provision::cluster_pki::ClusterPki::rotate
pub(super) fn advance(st: &mut RkeState, cfg: &RkeConfig) -> Result<bool, PkiError> {
    if st.pki.advance()? {
        return Ok(true);
    }
    let Some(request) = &cfg.rotate_certificates else { return Ok(false) };
    if st.rotation_started.as_deref() == Some(request.requested_at.as_str()) {
        return Ok(false);
    }
    let scope = RotateScope { new_ca: request.ca_certificates, services: request.services.clone() };
    st.pki.rotate(cfg, &scope)?;
    st.rotation_started = Some(request.requested_at.clone());
    Ok(true)
}

/// What the board says of a rotation under way (`None` when there is none), for the run's report.
pub(super) fn describe(st: &RkeState) -> Option<&'static str> {
    use rancher_provision::cluster_pki::RotationPhase;
    st.pki.rotation_phase().map(|phase| match phase {
        RotationPhase::TrustBoth => "rotating to new CAs (1 of 3): every host trusts the new and the old CAs",
        RotationPhase::NewLeaves => "rotating to new CAs (2 of 3): certificates of the new CAs",
    })
}

/// Whether the cluster agent's session carries the CAs the hosts trust now: the CA it reported on
/// its last connect (`status.caCert`, base64 of PEM) holds the same certificates as the kube CA's
/// trust bundle. A rotation to new CAs waits for it before its next phase, so that the server never
/// meets an API server certificate that the CA it checks with does not sign. (The agent connects
/// again with new certificates by itself, a few seconds after its host has them.)
pub(super) fn agent_trusts_current_ca(st: &RkeState, cluster: &Cluster) -> bool {
    let Some(bundle) = st.pki.trust_bundle(pki::KUBE_CA) else { return false };
    let Ok(reported) = STANDARD.decode(cluster.status.ca_cert.as_bytes()) else { return false };
    certificates(&bundle) == certificates(&String::from_utf8_lossy(&reported))
}

/// The base64 bodies of the PEM certificates in `pem`, whitespace removed.
fn certificates(pem: &str) -> BTreeSet<String> {
    pem.split("-----BEGIN CERTIFICATE-----")
        .skip(1)
        .filter_map(|block| block.split("-----END CERTIFICATE-----").next())
        .map(|body| body.split_whitespace().collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use rancher_core::model::{RkeNode, RkeRotateCertificates};
    use rancher_provision::cluster_pki::{ClusterPki, RotationPhase};

    use super::*;

    fn cfg(rotate: Option<RkeRotateCertificates>) -> RkeConfig {
        RkeConfig {
            nodes: vec![
                RkeNode {
                    address: "10.0.0.1".into(),
                    hostname_override: "cp1".into(),
                    role: vec!["etcd".into(), "controlplane".into()],
                    ..Default::default()
                },
                RkeNode {
                    address: "10.0.0.2".into(),
                    hostname_override: "w2".into(),
                    role: vec!["worker".into()],
                    ..Default::default()
                },
            ],
            rotate_certificates: rotate,
            ..Default::default()
        }
    }

    fn state(c: &RkeConfig) -> RkeState {
        let mut pki = ClusterPki::new();
        pki.ensure(c).unwrap();
        RkeState { pki, ..Default::default() }
    }

    fn request(ca: bool, services: &[&str], at: &str) -> Option<RkeRotateCertificates> {
        Some(RkeRotateCertificates {
            ca_certificates: ca,
            services: services.iter().map(|s| (*s).to_owned()).collect(),
            requested_at: at.into(),
        })
    }

    #[test]
    fn a_request_is_carried_out_once_and_a_new_ca_takes_three_rolls() {
        let mut st = state(&cfg(None));
        assert!(!advance(&mut st, &cfg(None)).unwrap(), "nothing asked");

        let c = cfg(request(true, &[], "2024-05-01T10:00:00Z"));
        let ca = st.pki.get("kube-ca").unwrap().cert_pem.clone();
        assert!(advance(&mut st, &c).unwrap(), "started");
        assert_eq!(st.rotation_started.as_deref(), Some("2024-05-01T10:00:00Z"));
        assert_eq!(st.pki.rotation_phase(), Some(RotationPhase::TrustBoth));
        assert!(describe(&st).unwrap().contains("1 of 3"));
        assert!(advance(&mut st, &c).unwrap());
        assert_eq!(st.pki.rotation_phase(), Some(RotationPhase::NewLeaves));
        assert_ne!(st.pki.get("kube-ca").unwrap().cert_pem, ca, "the new CA signs");
        // The state survives the store mid-rotation.
        let mut st: RkeState = serde_json::from_str(&serde_json::to_string(&st).unwrap()).unwrap();
        assert!(advance(&mut st, &c).unwrap());
        assert_eq!((st.pki.rotation_phase(), describe(&st)), (None, None));
        assert!(!advance(&mut st, &c).unwrap(), "done: the same request is not carried out again");

        // A new request (a new time) is; one service's certificates only.
        let c = cfg(request(false, &["kubelet"], "2024-06-01T10:00:00Z"));
        let before = st.pki.clone();
        assert!(advance(&mut st, &c).unwrap());
        assert_eq!(st.pki.rotation_phase(), None, "one step");
        assert_ne!(st.pki.get("kube-node-w2"), before.get("kube-node-w2"));
        assert_eq!(st.pki.get("kube-apiserver"), before.get("kube-apiserver"));
        assert!(!advance(&mut st, &c).unwrap());
    }

    #[test]
    fn a_bad_request_fails_and_leaves_the_state_alone() {
        let mut st = state(&cfg(None));
        let c = cfg(request(false, &["kube-proxy"], "2024-05-01T10:00:00Z"));
        let err = advance(&mut st, &c).unwrap_err().to_string();
        assert!(err.contains("these clusters run no kube-proxy"), "{err}");
        assert_eq!(st.rotation_started, None);
    }

    #[test]
    fn the_agent_trusts_the_current_ca_when_it_reported_the_same_certificates() {
        let mut st = state(&cfg(None));
        let mut cluster = Cluster::default();
        let report = |pem: &str| STANDARD.encode(pem);
        let old = st.pki.trust_bundle(pki::KUBE_CA).unwrap();
        assert!(!agent_trusts_current_ca(&st, &cluster), "nothing reported yet");
        cluster.status.ca_cert = report(&old);
        assert!(agent_trusts_current_ca(&st, &cluster));
        // Line ends and wrapping do not matter, the certificates do.
        cluster.status.ca_cert = report(&old.replace('\n', "\r\n"));
        assert!(agent_trusts_current_ca(&st, &cluster));

        let c = cfg(request(true, &[], "2024-05-01T10:00:00Z"));
        assert!(advance(&mut st, &c).unwrap());
        let both = st.pki.trust_bundle(pki::KUBE_CA).unwrap();
        assert!(!agent_trusts_current_ca(&st, &cluster), "the agent still has the old CA only");
        cluster.status.ca_cert = report(&both);
        assert!(agent_trusts_current_ca(&st, &cluster));
        cluster.status.ca_cert = "not base64!".into();
        assert!(!agent_trusts_current_ca(&st, &cluster));
    }
}
