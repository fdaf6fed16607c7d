//! The management API's logic apart from HTTP: tokens, users, local logins and their throttle, and
//! the access policy (what a user holds where, who may grant what, who may reach a cluster). Each
//! takes the store and returns a typed error whose variants name the step that failed; `api/`
//! parses requests, calls these, and turns the errors into Kubernetes `Status` responses
//! (`error.rs`, the one place that does).

pub(crate) mod access;
pub(crate) mod login;
mod login_throttle;
pub(crate) mod tokens;
pub(crate) mod users;
