//! The plans of a cluster's hosts: rancher-provision renders them from the config and the PKI; the
//! server says where the bundle's binaries are on a host and how the cluster agent finds the server.

use std::collections::BTreeMap;

use rancher_core::model::RkeConfig;
use rancher_provision::plan::NodePlan;
use rancher_provision::rke_plans::{self, ClusterAgent, ComponentPaths, RenderError};
use secrecy::SecretString;

use super::hosts::AgentBoot;
use super::layout::HostLayout;
use super::state::RkeState;

/// Every host's plan; the first control-plane host also runs the cluster agent (the node agent's
/// binary in cluster mode).
pub(super) fn render(
    cfg: &RkeConfig,
    st: &RkeState,
    layout: &HostLayout,
    boot: &AgentBoot<'_>,
) -> Result<BTreeMap<String, NodePlan>, RenderError> {
    let paths = ComponentPaths {
        etcd: layout.binary("etcd"),
        kube_apiserver: layout.binary("kube-apiserver"),
        kube_controller_manager: layout.binary("kube-controller-manager"),
        kube_scheduler: layout.binary("kube-scheduler"),
        kubelet: layout.binary("kubelet"),
        cluster_agent: Some(ClusterAgent {
            binary: layout.binary("node-agent"),
            server_url: boot.server_url.to_owned(),
            ca_checksum: boot.ca_checksum.to_owned(),
            token: SecretString::from(boot.token.to_owned()),
        }),
    };
    rke_plans::render_plans(cfg, &st.pki, &paths)
}
