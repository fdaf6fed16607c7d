//! rancher-provision's integration tests, one binary (each test binary links the whole dependency
//! graph): the SSH way in against real OpenSSH hosts in network namespaces.

mod ssh;
