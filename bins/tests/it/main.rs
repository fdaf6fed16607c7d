//! The `rancher` crate's integration tests, one binary: the real `rancher-server`, `rancher-agent` and
//! `rancherctl` started as processes, driven over HTTPS, raw TLS, `kubectl` and the CLI.
//!
//! One binary per crate, not one per file: each test binary links the whole dependency graph, and
//! on a small machine linking dominated the suite. Shared helpers live in `rancher-test-support`;
//! what only these tests use is in the modules below.

mod common;
mod hosted_support;
mod import_support;
mod nginx_support;
mod proxy_support;
mod raw_http;
mod rke_support;
mod tenancy_support;

mod ace_webhook;
mod agent_admission;
mod agent_image_e2e;
mod api;
mod audit_secrets_e2e;
mod browser_session_e2e;
mod cli;
mod cli_admin;
mod cli_join;
mod cli_kubectl;
mod cli_member;
mod cli_members;
mod cloud_credentials;
mod console_e2e;
mod disconnect_e2e;
mod front_door;
mod fuzz_v3;
mod grants;
mod hosted_aks;
#[cfg(feature = "eks")]
mod hosted_eks;
mod hosted_faults;
mod hosted_gke;
mod import_e2e;
mod kubeconfig_e2e;
mod lifecycle_e2e;
mod login_oidc;
mod membership_flows;
mod membership_table;
mod node_agent_e2e;
mod openapi;
mod plugins;
mod projects_api;
mod provisioning;
mod provisioning_handover;
mod proxy_e2e;
mod proxy_identity_e2e;
mod proxy_ldap;
mod replicas_e2e;
mod replicas_rolling;
mod rke_certs;
mod rke_cluster;
mod rke_config;
mod rke_day_one;
mod rke_day_two;
mod rke_faults;
mod rke_snapshot_actions;
mod rke_snapshots;
mod server_etcd;
mod server_flags;
mod server_url_e2e;
mod tenancy_projects;
mod tenancy_rbac;
mod tenancy_user_delete;
mod token_ttl;
mod tokens_e2e;
mod tunnel_kube_client;
mod tunnel_nginx;
mod user_lifecycle;
