//! rancher-provision's integration tests: what it renders, run by the real programs.

mod applier;
mod rke_plans;
