//! The plans of a cluster's hosts: rancher-provision renders them from the config and the PKI; the
//! server says where the bundle's binaries are on a host and how the cluster agent finds the server.

use std::collections::BTreeMap;

use rancher_core::model::RkeConfig;
use rancher_provision::bundle::Bundle;
use rancher_provision::plan::NodePlan;
use rancher_provision::rke_plans::{self, ClusterAgent, ComponentPaths, RenderError};
use secrecy::SecretString;

use super::hosts::AgentBoot;
use super::layout::HostLayout;
use super::state::RkeState;

/// Every host's plan for `bundle`; the first control-plane host also runs the cluster agent (the
/// node agent's binary in cluster mode). etcd hosts keep the join flags the state records.
pub(super) fn render(
    cfg: &RkeConfig,
    bundle: &Bundle,
    st: &RkeState,
    layout: &HostLayout,
    boot: &AgentBoot<'_>,
) -> Result<BTreeMap<String, NodePlan>, RenderError> {
    let binary = |component: &str| match bundle.components.get(component) {
        Some(c) => Ok(layout.component_binary(component, &c.sha256)),
        None => Err(RenderError::Invalid {
            field: format!("binaries.{component}"),
            message: format!("the bundle {} has no {component}", bundle.version),
        }),
    };
    let paths = ComponentPaths {
        etcd: binary("etcd")?,
        kube_apiserver: binary("kube-apiserver")?,
        kube_controller_manager: binary("kube-controller-manager")?,
        kube_scheduler: binary("kube-scheduler")?,
        kubelet: binary("kubelet")?,
        cluster_agent: Some(ClusterAgent {
            binary: layout.binary("node-agent"),
            server_url: boot.server_url.to_owned(),
            ca_checksum: boot.ca_checksum.to_owned(),
            token: SecretString::from(boot.token.to_owned()),
        }),
        args: bundle.components.iter().map(|(name, c)| (name.clone(), c.args.clone())).collect(),
    };
    rke_plans::render_plans_with(cfg, &st.pki, &paths, &st.etcd_joins)
}
