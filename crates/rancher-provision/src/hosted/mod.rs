//! Hosted clusters: Kubernetes clusters a cloud runs the control plane of (EKS, GKE, AKS), created,
//! imported, upgraded and removed through the cloud's API with a cloud credential.

pub mod credentials;
