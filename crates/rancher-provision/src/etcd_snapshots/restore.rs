//! Restoring every member from one snapshot: the file checked (and copied) on each etcd host,
//! `etcdctl snapshot restore` into a new data directory on each, then the new directories swapped
//! in — the old ones kept aside until the caller sees the cluster healthy ([`cleanup_restore`]).

use std::path::Path;

use crate::etcd_api::{EtcdError, EtcdTls};
use crate::ssh::sh_quote;

use super::{EtcdHost, MAX_SNAPSHOT, SnapshotError, check_name, snapshot_file, ssh_err, store_on};

/// What to restore, and how the cluster's etcd is set up.
#[derive(Clone, Debug)]
pub struct RestoreSpec<'a> {
    /// The snapshot's name (its file is `<name>.db` in the snapshot directory).
    pub name: &'a str,
    /// Its SHA-256, as recorded when it was taken.
    pub sha256: &'a str,
    /// etcd's `--initial-cluster-token` (the cluster PKI's).
    pub token: &'a str,
    /// The cluster's `prefix_path`.
    pub prefix: &'a str,
    /// Where `etcdctl` is on the hosts (`<prefix>/opt/rke/bin/etcdctl`).
    pub etcdctl: &'a str,
}

/// What a restore did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Hosts the snapshot was copied to (they lacked it, or had a different file).
    pub copied_to: Vec<String>,
    /// Each host's previous data directory, kept aside (node name, path) until
    /// [`cleanup_restore`].
    pub set_aside: Vec<(String, String)>,
}

fn data_dir(prefix: &str) -> String {
    format!("{}/var/lib/etcd", prefix.trim_end_matches('/'))
}

/// Restores every member of `hosts` (all the cluster's etcd hosts) from the snapshot `spec.name`.
/// The caller has stopped etcd and the control plane on every host, and starts them again after
/// (etcd with its usual flags: the restored data carries the membership, so
/// `--initial-cluster-state` no longer matters). A host without the snapshot (or with another
/// file under its name) gets it from one that has it, through `scratch_dir` on the server.
///
/// # Errors
/// [`SnapshotError::StillRunning`] when etcd answers on a host; [`SnapshotError::NoEtcdctl`];
/// [`SnapshotError::Missing`] when no host has the snapshot with its checksum;
/// [`SnapshotError::Ssh`] for a host that fails (`etcdctl` refusing the file among them). Up to
/// the swap, nothing on the hosts changed but temporary directories; a swap that fails on one host
/// is undone on those already swapped.
pub async fn restore(
    hosts: &[EtcdHost],
    tls: &EtcdTls,
    spec: &RestoreSpec<'_>,
    scratch_dir: &Path,
) -> Result<RestoreReport, SnapshotError> {
    check_name(spec.name)?;
    if hosts.is_empty() {
        return Err(SnapshotError::InvalidInput("no etcd host".into()));
    }
    if spec.token.is_empty() {
        return Err(SnapshotError::InvalidInput("no etcd cluster token".into()));
    }
    for h in hosts {
        let etcd = h.etcd(tls)?.with_timeout(std::time::Duration::from_secs(5));
        match etcd.health().await {
            Err(EtcdError::Connect { .. }) => {}
            _ => return Err(SnapshotError::StillRunning { node: h.name.clone() }),
        }
        let found =
            h.session.exec(&format!("test -x {}", sh_quote(spec.etcdctl))).await.map_err(ssh_err(&h.name))?;
        if !found.success() {
            return Err(SnapshotError::NoEtcdctl { node: h.name.clone(), path: spec.etcdctl.to_owned() });
        }
    }
    let mut report = RestoreReport::default();
    ensure_everywhere(hosts, spec, scratch_dir, &mut report).await?;

    let file = snapshot_file(spec.prefix, spec.name);
    let data = data_dir(spec.prefix);
    let fresh = format!("{data}.restore-{}", spec.name);
    let initial = hosts.iter().map(|h| format!("{}={}", h.name, h.peer_url())).collect::<Vec<_>>().join(",");
    for h in hosts {
        let cmd = format!(
            "rm -rf -- {fresh} && ETCDCTL_API=3 {etcdctl} snapshot restore {file} --name {name} \
             --initial-cluster {initial} --initial-cluster-token {token} \
             --initial-advertise-peer-urls {peer} --data-dir {fresh}",
            fresh = sh_quote(&fresh),
            etcdctl = sh_quote(spec.etcdctl),
            file = sh_quote(&file),
            name = sh_quote(&h.name),
            initial = sh_quote(&initial),
            token = sh_quote(spec.token),
            peer = sh_quote(&h.peer_url()),
        );
        h.session.run(&cmd).await.map_err(ssh_err(&h.name))?;
    }

    let aside = format!("{data}.pre-restore-{}", jiff::Timestamp::now().strftime("%Y%m%d%H%M%S"));
    for h in hosts {
        let cmd = format!(
            "if [ -e {data} ]; then mv -- {data} {aside}; fi && mv -- {fresh} {data}",
            data = sh_quote(&data),
            aside = sh_quote(&aside),
            fresh = sh_quote(&fresh),
        );
        if let Err(e) = h.session.run(&cmd).await {
            // Put back what was swapped, so that the cluster is as it was.
            for (node, old) in &report.set_aside {
                let host = hosts.iter().find(|x| &x.name == node).expect("a swapped host");
                let undo = format!(
                    "rm -rf -- {data} && mv -- {old} {data}",
                    data = sh_quote(&data),
                    old = sh_quote(old)
                );
                if let Err(undo_err) = host.session.run(&undo).await {
                    tracing::error!(node = %node, error = %undo_err, "could not undo the restore's swap");
                }
            }
            return Err(ssh_err(&h.name)(e));
        }
        report.set_aside.push((h.name.clone(), aside.clone()));
    }
    tracing::info!(snapshot = spec.name, hosts = hosts.len(), "etcd restored from the snapshot");
    Ok(report)
}

/// Makes sure every host has the snapshot with its checksum, copying it from one that has.
async fn ensure_everywhere(
    hosts: &[EtcdHost],
    spec: &RestoreSpec<'_>,
    scratch_dir: &Path,
    report: &mut RestoreReport,
) -> Result<(), SnapshotError> {
    let file = snapshot_file(spec.prefix, spec.name);
    let (mut have, mut lack) = (Vec::new(), Vec::new());
    for h in hosts {
        match super::sha256_on(&h.session, &file).await.map_err(ssh_err(&h.name))? {
            Some(sum) if sum == spec.sha256 => have.push(h),
            _ => lack.push(h),
        }
    }
    if lack.is_empty() {
        return Ok(());
    }
    let Some(from) = have.first() else {
        return Err(SnapshotError::Missing { name: spec.name.to_owned(), sha256: spec.sha256.to_owned() });
    };
    let local = |source| SnapshotError::Local { path: scratch_dir.to_owned(), source };
    tokio::fs::create_dir_all(scratch_dir).await.map_err(local)?;
    let copy = scratch_dir.join(format!("{}.db.copy", spec.name));
    let local = |source| SnapshotError::Local { path: copy.clone(), source };
    let mut out = tokio::fs::File::create(&copy).await.map_err(local)?;
    let fetched = from.session.download(&file, &mut out, MAX_SNAPSHOT).await.map_err(ssh_err(&from.name));
    drop(out);
    let result = async {
        let (_, sum) = fetched?;
        if sum != spec.sha256 {
            return Err(SnapshotError::Missing {
                name: spec.name.to_owned(),
                sha256: spec.sha256.to_owned(),
            });
        }
        for h in lack {
            store_on(h, spec.prefix, spec.name, &copy, spec.sha256).await.map_err(ssh_err(&h.name))?;
            report.copied_to.push(h.name.clone());
        }
        Ok(())
    }
    .await;
    let _ = tokio::fs::remove_file(&copy).await;
    result
}

/// Removes the data directories a restore set aside (and any half-made restore directory), once
/// the caller has seen the restored cluster healthy. Returns the hosts that failed, with why.
pub async fn cleanup_restore(hosts: &[EtcdHost], prefix: &str) -> Vec<(String, String)> {
    let data = data_dir(prefix);
    let cmd = format!("rm -rf -- {d}.pre-restore-* {d}.restore-*", d = sh_quote(&data));
    let mut failed = Vec::new();
    for h in hosts {
        if let Err(e) = h.session.run(&cmd).await {
            failed.push((h.name.clone(), e.to_string()));
        }
    }
    failed
}
