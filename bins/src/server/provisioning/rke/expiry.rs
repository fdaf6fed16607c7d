//! A cluster's certificates as its status shows them: `status.certificatesExpiration` (each
//! certificate's expiry, Rancher's field) and the [`CONDITION`] condition that warns [`RENEW_DAYS`]
//! days before one expires. Written by the run once it changed the PKI ([`write`]), and by a sweep
//! at start and then hourly ([`run`]) from each cluster's stored state, since time passes without
//! any run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rancher_core::model::{CertExpiration, Cluster};
use rancher_core::store::{Api, Store, StoreError};
use rancher_core::{ConditionStatus, Conditions};
use rancher_provision::cluster_pki::{ClusterPki, RENEW_DAYS};
use tokio_util::sync::CancellationToken;

use super::state;
use crate::server::secrets::Sealer;

/// True while a certificate expires within [`RENEW_DAYS`] days (or has expired); its message names
/// them with their dates.
pub(crate) const CONDITION: &str = "CertificatesExpiring";
/// The reason of [`CONDITION`] when true.
pub(crate) const REASON_EXPIRING: &str = "ExpiresSoon";
/// How often the sweep looks at every cluster's dates.
const SWEEP: Duration = Duration::from_secs(3600);

/// Each certificate of `pki` (CAs included) with its expiry and subject, by name.
pub(crate) fn expirations(pki: &ClusterPki) -> BTreeMap<String, CertExpiration> {
    pki.certificates()
        .into_iter()
        .map(|c| {
            let e = CertExpiration { expiration_date: c.not_after.to_string(), common_name: c.common_name };
            (c.name, e)
        })
        .collect()
}

/// [`CONDITION`] for these dates at `now`: false when none expires within [`RENEW_DAYS`] days, else
/// true naming each one that does (soonest first). A date that does not parse counts as expiring.
pub(crate) fn condition(
    expirations: &BTreeMap<String, CertExpiration>,
    now: jiff::Timestamp,
) -> (ConditionStatus, &'static str, String) {
    let limit = now + jiff::SignedDuration::from_hours(24 * RENEW_DAYS);
    let mut soon: Vec<(Option<jiff::Timestamp>, &str)> = expirations
        .iter()
        .map(|(name, e)| (e.expiration_date.parse::<jiff::Timestamp>().ok(), name.as_str()))
        .filter(|(at, _)| at.is_none_or(|at| at <= limit))
        .collect();
    if soon.is_empty() {
        return (ConditionStatus::False, "", String::new());
    }
    soon.sort();
    let said: Vec<String> = soon
        .iter()
        .map(|(at, name)| match at {
            None => format!("{name} (no readable expiry date)"),
            Some(at) if *at <= now => format!("{name} expired on {}", day(*at)),
            Some(at) => format!("{name} expires on {} (in {} days)", day(*at), days_left(*at, now)),
        })
        .collect();
    let message = format!(
        "{}: rotate the certificates (rancherctl cluster rotate-certs; --new-ca for a CA)",
        said.join("; ")
    );
    (ConditionStatus::True, REASON_EXPIRING, message)
}

/// Whole days from `now` until `at` (negative once past).
pub(crate) fn days_left(at: jiff::Timestamp, now: jiff::Timestamp) -> i64 {
    (at.as_second() - now.as_second()).div_euclid(86_400)
}

fn day(at: jiff::Timestamp) -> String {
    at.to_zoned(jiff::tz::TimeZone::UTC).date().to_string()
}

/// Sets `status.certificatesExpiration` from `pki` and [`CONDITION`] from it; true when the cluster
/// changed.
pub(crate) fn apply(cluster: &mut Cluster, pki: &ClusterPki, now: jiff::Timestamp) -> bool {
    let wanted = expirations(pki);
    let mut changed = false;
    if cluster.status.certificates_expiration != wanted {
        cluster.status.certificates_expiration = wanted;
        changed = true;
    }
    changed | refresh(cluster, now)
}

/// Sets [`CONDITION`] from the dates in the cluster's status (none: left alone); true when it changed.
fn refresh(cluster: &mut Cluster, now: jiff::Timestamp) -> bool {
    if cluster.status.certificates_expiration.is_empty() {
        return false;
    }
    let (status, reason, message) = condition(&cluster.status.certificates_expiration, now);
    cluster.status.conditions.set_condition(CONDITION, status, reason, &message)
}

/// Writes the certificates of `pki` into the status of `cluster` (as it is in the store now; retried
/// on a conflict). For the run, after it stored a changed PKI.
///
/// # Errors
/// The store's, but not a cluster that is gone.
pub(crate) async fn write(
    store: &Arc<dyn Store>,
    cluster: &Cluster,
    pki: &ClusterPki,
) -> Result<(), StoreError> {
    let now = jiff::Timestamp::now();
    crate::server::provisioning::cluster_status::update(store, cluster, |c| apply(c, pki, now)).await
}

/// Once now and then every [`SWEEP`] until `stop`: [`sweep`].
pub(crate) async fn run(store: Arc<dyn Store>, sealer: Arc<Sealer>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP);
    while stop.run_until_cancelled(tick.tick()).await.is_some() {
        if let Err(e) = sweep(&store, &sealer, jiff::Timestamp::now()).await {
            tracing::warn!("certificate expiry: {e}");
        }
    }
}

/// Brings the status of every cluster built on hosts that has a stored state up to date with its
/// PKI at `now` ([`apply`]); a state that cannot be read is logged and skipped.
///
/// # Errors
/// The store's.
pub(crate) async fn sweep(
    store: &Arc<dyn Store>,
    sealer: &Sealer,
    now: jiff::Timestamp,
) -> Result<(), StoreError> {
    for cluster in Api::<Cluster>::all(store.clone()).list().await? {
        if cluster.spec.rke_config.is_none() || cluster.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let pki = match state::load(store.as_ref(), sealer, &cluster).await {
            Ok(Some((st, _))) => st.pki,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(cluster = %cluster.metadata.name, "certificate expiry: {e}");
                continue;
            }
        };
        if pki.certificates().is_empty() {
            continue;
        }
        crate::server::provisioning::cluster_status::update(store, &cluster, |c| apply(c, &pki, now)).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rancher_core::model::RkeNode;

    use super::*;

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    fn dates(pairs: &[(&str, &str)]) -> BTreeMap<String, CertExpiration> {
        pairs
            .iter()
            .map(|(n, d)| {
                ((*n).to_owned(), CertExpiration { expiration_date: (*d).into(), ..Default::default() })
            })
            .collect()
    }

    #[test]
    fn the_condition_warns_thirty_days_ahead_naming_the_certificates_soonest_first() {
        let now = at("2024-05-01T00:00:00Z");
        let fine = dates(&[("kube-ca", "2034-05-01T00:00:00Z"), ("kube-apiserver", "2024-06-01T00:00:00Z")]);
        assert_eq!(condition(&fine, now), (ConditionStatus::False, "", String::new()));
        let soon = dates(&[
            ("kube-ca", "2034-05-01T00:00:00Z"),
            ("kube-node-w3", "2024-05-20T12:00:00Z"),
            ("kube-apiserver", "2024-05-31T00:00:00Z"),
            ("kube-admin", "2024-04-30T00:00:00Z"),
        ]);
        let (status, reason, message) = condition(&soon, now);
        assert_eq!((status, reason), (ConditionStatus::True, REASON_EXPIRING));
        assert_eq!(
            message,
            "kube-admin expired on 2024-04-30; kube-node-w3 expires on 2024-05-20 (in 19 days); \
             kube-apiserver expires on 2024-05-31 (in 30 days): rotate the certificates (rancherctl \
             cluster rotate-certs; --new-ca for a CA)"
        );
        let bad = dates(&[("kube-ca", "someday")]);
        assert!(condition(&bad, now).2.starts_with("kube-ca (no readable expiry date)"));
        assert_eq!(days_left(at("2024-05-02T23:00:00Z"), now), 1);
        assert_eq!(days_left(at("2024-04-30T23:00:00Z"), now), -1);
    }

    #[test]
    fn the_status_lists_every_certificate_and_the_condition_follows_time() {
        let cfg = rancher_core::model::RkeConfig {
            nodes: vec![RkeNode {
                address: "10.0.0.1".into(),
                hostname_override: "n1".into(),
                role: vec!["etcd".into(), "controlplane".into(), "worker".into()],
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut pki = ClusterPki::new();
        pki.ensure(&cfg).unwrap();
        let mut cluster = Cluster::default();
        let now = jiff::Timestamp::now();
        assert!(apply(&mut cluster, &pki, now));
        let e = &cluster.status.certificates_expiration;
        assert_eq!(e.len(), pki.certificates().len());
        assert_eq!(e["kube-node-n1"].common_name, "system:node:n1");
        assert_eq!(e["kube-ca"].expiration_date, pki.get("kube-ca").unwrap().not_after.to_string());
        let json = serde_json::to_value(&cluster.status).unwrap();
        assert!(json["certificatesExpiration"]["kube-apiserver"]["expirationDate"].is_string(), "{json}");
        assert!(!cluster.status.conditions.is_true(CONDITION));
        assert!(cluster.status.conditions.get_condition(CONDITION).is_some(), "false, and there");
        assert!(!apply(&mut cluster, &pki, now), "nothing new");
        // 340 days on, the leaves (one year) are within 30 days; the CAs (ten years) are not.
        let later = now + jiff::SignedDuration::from_hours(24 * 340);
        assert!(refresh(&mut cluster, later));
        let c = cluster.status.conditions.get_condition(CONDITION).unwrap();
        assert_eq!((c.status, c.reason.as_str()), (ConditionStatus::True, REASON_EXPIRING));
        assert!(
            c.message.contains("kube-apiserver expires on") && !c.message.contains("kube-ca "),
            "{}",
            c.message
        );
        // A cluster without dates is left alone.
        assert!(!refresh(&mut Cluster::default(), later));
    }
}
