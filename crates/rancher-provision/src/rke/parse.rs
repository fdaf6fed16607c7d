//! Reading a `cluster.yml`.

use rancher_core::model::RkeConfig;

use crate::ProvisionError;

/// The largest cluster.yml accepted (1 MiB): far more than any real one, small enough to parse safely.
pub const MAX_CLUSTER_YML_BYTES: usize = 1 << 20;

/// Parses a `cluster.yml` (Rancher's RKE shape). Keys rancher-rs does not implement land in the
/// `unsupported` maps (and [`validate`](super::validate) warns about them).
///
/// ```
/// let cfg = rancher_provision::rke::parse_cluster_yml("nodes:\n  - address: 10.0.0.1\n    role: [etcd]\n")?;
/// assert_eq!(cfg.nodes[0].role, ["etcd"]);
/// # Ok::<(), rancher_provision::ProvisionError>(())
/// ```
///
/// # Errors
/// [`ProvisionError::InvalidSpec`] on field `rkeConfig` for input over [`MAX_CLUSTER_YML_BYTES`] or YAML
/// that does not fit the shape; the message names the line and column. The input itself is never
/// quoted (it may hold private keys).
pub fn parse_cluster_yml(text: &str) -> Result<RkeConfig, ProvisionError> {
    if text.len() > MAX_CLUSTER_YML_BYTES {
        return Err(ProvisionError::invalid_spec(
            "rkeConfig",
            format!("the cluster.yml is {} bytes: at most {MAX_CLUSTER_YML_BYTES} are accepted", text.len()),
        ));
    }
    serde_saphyr::from_str(text).map_err(|e| {
        // The error's first line names the place and the problem; the lines after it quote the
        // input, which may hold a private key.
        let full = e.to_string();
        let first = full.lines().next().unwrap_or("").trim();
        let first = first.strip_prefix("error: ").unwrap_or(first);
        ProvisionError::invalid_spec("rkeConfig", format!("the cluster.yml does not parse: {first}"))
    })
}
