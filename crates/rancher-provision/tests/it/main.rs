//! rancher-provision's integration tests, one binary (each test binary links the whole dependency
//! graph): what it renders, run by the real programs; the SSH way in against real OpenSSH hosts in
//! network namespaces.

mod aks;
mod applier;
#[cfg(feature = "eks")]
mod eks;
mod etcd_api;
mod etcd_snapshots;
mod gke;
mod rke_plans;
mod s3;
mod ssh;
