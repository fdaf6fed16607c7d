//! What rancher-rs's test suites share, so that a helper is written once:
//!
//! - [`free_port`]: a loopback port reserved across concurrently running test processes;
//! - [`eventually`] and [`within`]: polling for what another process or task does;
//! - [`kubectl`]: the real `kubectl`, any installed version, with its own kubeconfig and `HOME`;
//! - [`Proc`]: a program under test as a child process logging to a file, killed on drop;
//! - with the `deployed-agent` feature, `deployed_agent::AgentSettings`: the kubelet's part for a
//!   cluster agent a server deployed (its settings read back from the cluster);
//! - [`etcd`]: real etcd members and clusters;
//! - [`ssh_hosts`]: real OpenSSH hosts, each in its own network and mount namespace;
//! - with the `aks` feature, `aks::AksStandIn`: Azure's token endpoint and AKS Resource Manager API in memory;
//! - [`moto`]: moto's server as S3-compatible storage (and EKS), optionally checking SigV4 signatures;
//! - with the `eks` feature, `eks::EksUpdateStandIn`: the EKS update operations moto lacks, in front of it;
//! - with the `gke` feature, `gke::GkeStandIn`: GKE's `container/v1` API and token endpoint in memory;
//! - with the `kube-control-plane` feature, `kube::ControlPlane`: a real Kubernetes 1.20 control plane;
//! - [`install_crypto`], and with the `http` feature [`insecure_client`] and [`client_trusting`].
//!
//! It depends on none of the project's crates, so every crate can use it as a dev-dependency; the
//! programs of the `rancher` crate are started by their path (`env!("CARGO_BIN_EXE_rancher-server")`
//! in that crate's tests).
//!
//! ```no_run
//! # async fn example() {
//! use std::time::Duration;
//! use rancher_test_support::{eventually, free_port, kubectl::Kubectl};
//!
//! let port = free_port();
//! let kubectl = Kubectl::new("1.33", "apiVersion: v1\nkind: Config\n");
//! let nodes = eventually(Duration::from_secs(30), "the nodes are listed", || async {
//!     let out = kubectl.run(&["get", "nodes", "-o", "name"]).await;
//!     out.ok.then_some(out.stdout)
//! })
//! .await;
//! # let _ = (port, nodes);
//! # }
//! ```

#[cfg(feature = "aks")]
pub mod aks;
#[cfg(feature = "browser")]
pub mod browser;
#[cfg(feature = "deployed-agent")]
pub mod deployed_agent;
#[cfg(feature = "eks")]
pub mod eks;
pub mod etcd;
#[cfg(feature = "gke")]
pub mod gke;
#[cfg(feature = "kube-control-plane")]
pub mod kube;
pub mod kubectl;
pub mod moto;
mod ports;
mod process;
pub mod ssh_hosts;
mod tls;
mod wait;

pub use ports::free_port;
pub use process::{Proc, read_log};
pub use tls::install_crypto;
#[cfg(feature = "http")]
pub use tls::{client_trusting, insecure_client};
pub use wait::{eventually, within};
