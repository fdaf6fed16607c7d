//! rancher-sim (being written).
