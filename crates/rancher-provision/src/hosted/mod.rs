//! Hosted clusters: Kubernetes clusters a cloud runs the control plane of (EKS, GKE, AKS), created,
//! imported, upgraded and removed through the cloud's API with a cloud credential: the providers'
//! clients, their config checks and the credentials they sign in with.

pub mod aks;
pub mod credentials;
pub mod eks;
pub mod gke;
