//! rancher-provision (being written).
