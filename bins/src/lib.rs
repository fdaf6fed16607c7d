//! rancher (being written).
