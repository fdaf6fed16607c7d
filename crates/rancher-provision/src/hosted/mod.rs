//! Clusters a cloud runs for us (EKS, GKE, AKS): the providers' clients, their config checks and
//! the credentials they sign in with.

pub mod gke;
