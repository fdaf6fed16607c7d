//! rancher-auth (being written).
