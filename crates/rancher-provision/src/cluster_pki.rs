//! The PKI of an RKE-style cluster: its certificate authorities, every component's certificate and the
//! service-account key, generated once per cluster and extended as hosts come and go
//! ([`ClusterPki::ensure`]). Stored with the cluster (it holds private keys: encrypt it at rest).
//!
//! Keys are ECDSA P-256; CAs are valid 10 years, other certificates 1 year.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use rancher_core::model::RkeConfig;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use serde::{Deserialize, Serialize};

use crate::rke_plans::RenderError;
use crate::rke_plans::hosts::{self, Host};

mod rotation;

pub use rotation::{ROTATABLE_SERVICES, RotateScope, RotationPhase, check_services};

/// The cluster CA: signs the API server's serving certificate and every client certificate of the
/// Kubernetes components; its key also signs CSRs in the controller manager.
pub const KUBE_CA: &str = "kube-ca";
/// The etcd CA: signs etcd's peer and server certificates and the API server's etcd client certificate.
pub const ETCD_CA: &str = "kube-etcd-ca";
/// The front-proxy CA (`--requestheader-client-ca-file`).
pub const FRONT_PROXY_CA: &str = "kube-apiserver-requestheader-ca";
/// The API server's serving certificate.
pub const KUBE_APISERVER: &str = "kube-apiserver";
/// The API server's client certificate towards etcd.
pub const APISERVER_ETCD_CLIENT: &str = "kube-apiserver-etcd-client";
/// The API server's client certificate towards kubelets (`--kubelet-client-certificate`).
pub const APISERVER_KUBELET_CLIENT: &str = "kube-apiserver-kubelet-client";
/// The API server's front-proxy client certificate (`--proxy-client-cert-file`).
pub const FRONT_PROXY_CLIENT: &str = "kube-apiserver-proxy-client";
/// kube-controller-manager's client certificate.
pub const CONTROLLER_MANAGER: &str = "kube-controller-manager";
/// kube-scheduler's client certificate.
pub const SCHEDULER: &str = "kube-scheduler";
/// The cluster admin's client certificate (`kube-admin`, group `system:masters`).
pub const ADMIN: &str = "kube-admin";
/// The cluster agent's client certificate (`rancher-cluster-agent`, group `system:masters`).
pub const CLUSTER_AGENT: &str = "kube-cluster-agent";

/// The name of etcd's peer certificate on the node named `node`.
pub fn etcd_peer(node: &str) -> String {
    format!("kube-etcd-peer-{node}")
}

/// The name of etcd's server certificate on the node named `node`.
pub fn etcd_server(node: &str) -> String {
    format!("kube-etcd-server-{node}")
}

/// The name of the kubelet's client certificate on the node named `node`.
pub fn kubelet(node: &str) -> String {
    format!("kube-node-{node}")
}

/// A certificate (not a CA) expiring within this many days is issued again by [`ClusterPki::ensure`].
pub const RENEW_DAYS: i64 = 30;

/// Why the PKI could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// The cluster configuration lacks what the PKI needs (a host address, an etcd host, …).
    #[error(transparent)]
    Config(#[from] RenderError),
    /// A rotation names a service that has no certificates of its own here.
    #[error("unknown service {name:?} to rotate certificates of (known: {known})")]
    UnknownService {
        /// The name given.
        name: String,
        /// The names this PKI knows, comma-separated.
        known: String,
    },
    /// A rotation cannot start as asked (a new CA for some services only, or a CA rotation under way).
    #[error("certificate rotation: {0}")]
    Rotation(String),
    /// A certificate or key could not be generated or read back.
    #[error("certificate {name}: {source}")]
    Generate {
        /// Which certificate.
        name: String,
        /// rcgen's reason.
        #[source]
        source: rcgen::Error,
    },
}

/// A PEM private key: serialized with the PKI, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretPem(String);

impl SecretPem {
    /// The PEM text (a private key: never log it).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretPem(<redacted>)")
    }
}

/// What a certificate is for (its extended key usages, or a CA).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Usage {
    /// A certificate authority.
    Ca,
    /// A TLS server.
    Server,
    /// A TLS client.
    Client,
    /// Both (etcd's peer and server certificates).
    ServerAndClient,
}

/// What a certificate says: kept with it, so a certificate whose subject or names should change (a
/// controlplane host added to the API server's names) is issued again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertSpec {
    /// Subject CN (the user name for client certificates).
    pub common_name: String,
    /// Subject O (the group for client certificates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// DNS names and IP addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sans: Vec<String>,
    /// What it is for.
    pub usage: Usage,
    /// The CA that signs it (its name in the PKI); none for a CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

/// One certificate with its key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertKey {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM.
    pub key_pem: SecretPem,
    /// When it expires.
    pub not_after: jiff::Timestamp,
    /// What it was issued for.
    pub spec: CertSpec,
}

/// One certificate's name, subject and expiry, for a view of the PKI without keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertInfo {
    /// The name in the PKI (`kube-apiserver`, `kube-node-<node>`).
    pub name: String,
    /// Subject CN.
    pub common_name: String,
    /// When it expires.
    pub not_after: jiff::Timestamp,
}

/// The cluster's certificates and keys. `Debug` shows names and expiries, never keys.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPki {
    /// Every certificate by name.
    #[serde(default)]
    certs: BTreeMap<String, CertKey>,
    /// The service-account token signing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    service_account_key: Option<SecretPem>,
    /// etcd's `--initial-cluster-token`, unique per cluster.
    #[serde(default)]
    etcd_cluster_token: String,
    /// A rotation to a new CA under way ([`ClusterPki::rotate`]); absent in states stored before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rotation: Option<rotation::CaRotation>,
}

impl std::fmt::Debug for ClusterPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterPki")
            .field("certs", &self.certs.iter().map(|(n, c)| (n, c.not_after)).collect::<BTreeMap<_, _>>())
            .field("service_account_key", &self.service_account_key.as_ref().map(|_| "<redacted>"))
            .field("rotation", &self.rotation_phase())
            .finish()
    }
}

impl ClusterPki {
    /// An empty PKI; [`ensure`](Self::ensure) fills it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates what `cfg` needs and the PKI lacks, keeps what exists, issues again a certificate whose
    /// subject or names changed or that expires within [`RENEW_DAYS`] (with its old key), and drops
    /// the certificates of hosts no longer in `cfg`. CAs are never issued again. Returns whether anything changed (then store it again).
    ///
    /// # Errors
    /// [`PkiError::Config`] when `cfg` lacks what the PKI needs (no etcd or controlplane host, a host
    /// without an address, a bad service range); [`PkiError::Generate`] when a key or certificate
    /// cannot be made.
    pub fn ensure(&mut self, cfg: &RkeConfig) -> Result<bool, PkiError> {
        let wanted = wanted(cfg)?;
        let mut changed = false;
        let mut fresh: BTreeSet<String> = BTreeSet::new();
        let renew_before = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * RENEW_DAYS);
        // CAs first (they are never issued again: that would invalidate every certificate).
        for (name, spec) in wanted.iter().filter(|(_, s)| s.usage == Usage::Ca) {
            if !self.certs.contains_key(name) {
                self.certs.insert(name.clone(), issue(name, spec, None, None)?);
                fresh.insert(name.clone());
                changed = true;
            }
        }
        for (name, spec) in wanted.iter().filter(|(_, s)| s.usage != Usage::Ca) {
            let issuer_name = spec.issuer.as_deref().unwrap_or(KUBE_CA);
            let current = self.certs.get(name);
            let up_to_date = current.is_some_and(|c| c.spec == *spec && c.not_after > renew_before)
                && !fresh.contains(issuer_name);
            if up_to_date {
                continue;
            }
            let issuer = self.issuer(issuer_name)?;
            let old_key = current.map(|c| key_from_pem(name, &c.key_pem)).transpose()?;
            let cert = issue(name, spec, Some(&issuer), old_key)?;
            self.certs.insert(name.clone(), cert);
            changed = true;
        }
        let before = self.certs.len();
        self.certs.retain(|name, _| wanted.contains_key(name));
        changed |= self.certs.len() != before;
        if self.service_account_key.is_none() {
            let key = KeyPair::generate()
                .map_err(|source| PkiError::Generate { name: "service-account key".into(), source })?;
            self.service_account_key = Some(SecretPem(key.serialize_pem()));
            changed = true;
        }
        if self.etcd_cluster_token.is_empty() {
            self.etcd_cluster_token = format!("etcd-cluster-{}", hex::encode(rand::random::<[u8; 8]>()));
            changed = true;
        }
        Ok(changed)
    }

    /// The CA named `ca` as the issuer of new certificates.
    fn issuer(&self, ca: &str) -> Result<Issuer<'static, KeyPair>, PkiError> {
        let missing =
            || PkiError::Generate { name: ca.to_owned(), source: rcgen::Error::CouldNotParseCertificate };
        let cert = self.certs.get(ca).ok_or_else(missing)?;
        Issuer::from_ca_cert_pem(&cert.cert_pem, key_from_pem(ca, &cert.key_pem)?)
            .map_err(|source| PkiError::Generate { name: ca.to_owned(), source })
    }

    /// The certificate named `name` (one of this module's constants or per-node names).
    pub fn get(&self, name: &str) -> Option<&CertKey> {
        self.certs.get(name)
    }

    /// Every certificate's name, subject and expiry, by name.
    pub fn certificates(&self) -> Vec<CertInfo> {
        self.certs
            .iter()
            .map(|(name, c)| CertInfo {
                name: name.clone(),
                common_name: c.spec.common_name.clone(),
                not_after: c.not_after,
            })
            .collect()
    }

    /// The service-account token signing key (PEM private key).
    pub fn service_account_key(&self) -> Option<&SecretPem> {
        self.service_account_key.as_ref()
    }

    /// The public half of the service-account key (PEM), for `--service-account-key-file`.
    ///
    /// # Errors
    /// [`PkiError::Generate`] when the key is missing or unreadable.
    pub fn service_account_public_pem(&self) -> Result<String, PkiError> {
        let pem = self.service_account_key.as_ref().ok_or_else(|| PkiError::Generate {
            name: "service-account key".into(),
            source: rcgen::Error::CouldNotParseKeyPair,
        })?;
        Ok(key_from_pem("service-account key", pem)?.public_key_pem())
    }

    /// etcd's `--initial-cluster-token` for this cluster.
    pub fn etcd_cluster_token(&self) -> &str {
        &self.etcd_cluster_token
    }
}

fn key_from_pem(name: &str, pem: &SecretPem) -> Result<KeyPair, PkiError> {
    KeyPair::from_pem(pem.expose()).map_err(|source| PkiError::Generate { name: name.to_owned(), source })
}

/// Every certificate `cfg` needs, by name.
fn wanted(cfg: &RkeConfig) -> Result<BTreeMap<String, CertSpec>, PkiError> {
    let hosts = hosts::hosts(cfg)?;
    let service_ip = hosts::kubernetes_service_ip(cfg)?;
    let domain = hosts::cluster_domain(cfg);
    let mut w = BTreeMap::new();
    let ca = |cn: &str| CertSpec {
        common_name: cn.to_owned(),
        organization: None,
        sans: vec![],
        usage: Usage::Ca,
        issuer: None,
    };
    let client = |cn: &str, o: Option<&str>, issuer: &str| CertSpec {
        common_name: cn.to_owned(),
        organization: o.map(str::to_owned),
        sans: vec![],
        usage: Usage::Client,
        issuer: Some(issuer.to_owned()),
    };
    w.insert(KUBE_CA.to_owned(), ca("kube-ca"));
    w.insert(ETCD_CA.to_owned(), ca("kube-etcd-ca"));
    w.insert(FRONT_PROXY_CA.to_owned(), ca("kube-apiserver-requestheader-ca"));

    let mut api_sans: Vec<String> = vec![];
    for h in hosts.iter().filter(|h| h.controlplane) {
        api_sans.extend([h.address.to_owned(), h.internal.to_owned()]);
    }
    api_sans.extend(cfg.authentication.sans.iter().cloned());
    api_sans.extend([
        service_ip.to_string(),
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        format!("kubernetes.default.svc.{domain}"),
        "localhost".into(),
        "127.0.0.1".into(),
    ]);
    w.insert(
        KUBE_APISERVER.to_owned(),
        CertSpec {
            common_name: "kube-apiserver".into(),
            organization: None,
            sans: dedup(api_sans),
            usage: Usage::Server,
            issuer: Some(KUBE_CA.into()),
        },
    );
    w.insert(APISERVER_ETCD_CLIENT.to_owned(), client("kube-apiserver-etcd-client", None, ETCD_CA));
    w.insert(
        APISERVER_KUBELET_CLIENT.to_owned(),
        client("kube-apiserver-kubelet-client", Some("system:masters"), KUBE_CA),
    );
    w.insert(FRONT_PROXY_CLIENT.to_owned(), client("kube-apiserver-proxy-client", None, FRONT_PROXY_CA));
    w.insert(CONTROLLER_MANAGER.to_owned(), client("system:kube-controller-manager", None, KUBE_CA));
    w.insert(SCHEDULER.to_owned(), client("system:kube-scheduler", None, KUBE_CA));
    w.insert(ADMIN.to_owned(), client("kube-admin", Some("system:masters"), KUBE_CA));
    w.insert(CLUSTER_AGENT.to_owned(), client("rancher-cluster-agent", Some("system:masters"), KUBE_CA));

    for h in &hosts {
        w.insert(kubelet(&h.name), client(&format!("system:node:{}", h.name), Some("system:nodes"), KUBE_CA));
        if h.etcd {
            let sans = etcd_sans(h);
            for (name, cn) in [(etcd_peer(&h.name), "kube-etcd-peer"), (etcd_server(&h.name), "kube-etcd")] {
                let spec = CertSpec {
                    common_name: format!("{cn}-{}", h.name),
                    organization: None,
                    sans: sans.clone(),
                    usage: Usage::ServerAndClient,
                    issuer: Some(ETCD_CA.into()),
                };
                w.insert(name, spec);
            }
        }
    }
    Ok(w)
}

fn etcd_sans(h: &Host<'_>) -> Vec<String> {
    dedup(vec![
        h.address.to_owned(),
        h.internal.to_owned(),
        "127.0.0.1".into(),
        "localhost".into(),
        h.name.clone(),
    ])
}

/// Without duplicates, first occurrence kept (the order is part of the spec, so keep it stable).
fn dedup(v: Vec<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    v.into_iter().filter(|s| !s.is_empty() && seen.insert(s.clone())).collect()
}

/// Valid from today (UTC) to the same day `years` later; returns the end.
fn set_validity(params: &mut CertificateParams, years: i16) -> jiff::Timestamp {
    let today = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date();
    // 29 February has no twin in most years: the 28th keeps every year's date valid.
    let end = jiff::civil::date(today.year() + years, today.month(), today.day().min(28));
    let to_rcgen = |d: jiff::civil::Date| {
        rcgen::date_time_ymd(i32::from(d.year()), d.month().unsigned_abs(), d.day().unsigned_abs())
    };
    params.not_before = to_rcgen(today);
    params.not_after = to_rcgen(end);
    end.to_zoned(jiff::tz::TimeZone::UTC).map(|z| z.timestamp()).unwrap_or_default()
}

fn issue(
    name: &str,
    spec: &CertSpec,
    issuer: Option<&Issuer<'_, KeyPair>>,
    key: Option<KeyPair>,
) -> Result<CertKey, PkiError> {
    let err = |source| PkiError::Generate { name: name.to_owned(), source };
    let key = match key {
        Some(k) => k,
        None => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(err)?,
    };
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    params.distinguished_name.push(DnType::CommonName, spec.common_name.as_str());
    if let Some(o) = &spec.organization {
        params.distinguished_name.push(DnType::OrganizationName, o.as_str());
    }
    params.subject_alt_names = spec
        .sans
        .iter()
        .map(|s| match s.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName(s.as_str().try_into()?)),
        })
        .collect::<Result<_, rcgen::Error>>()
        .map_err(err)?;
    let mut serial = rand::random::<[u8; 16]>();
    serial[0] = (serial[0] & 0x7f) | 0x01; // positive and without a leading zero byte
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let not_after = set_validity(&mut params, if spec.usage == Usage::Ca { 10 } else { 1 });
    match spec.usage {
        Usage::Ca => {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
        }
        usage => {
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.use_authority_key_identifier_extension = true;
            params.extended_key_usages = match usage {
                Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
                Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
                _ => vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
            };
        }
    }
    let cert = match issuer {
        Some(issuer) => params.signed_by(&key, issuer).map_err(err)?,
        None => params.self_signed(&key).map_err(err)?,
    };
    Ok(CertKey {
        cert_pem: cert.pem(),
        key_pem: SecretPem(key.serialize_pem()),
        not_after,
        spec: spec.clone(),
    })
}

#[cfg(test)]
#[path = "cluster_pki_tests.rs"]
mod tests;
