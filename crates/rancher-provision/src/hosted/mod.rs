//! Clusters a cloud provider runs for us (hosted Kubernetes): the provider clients below the
//! provisioners.

pub mod aks;
