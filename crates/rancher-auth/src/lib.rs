//! Authentication and authorization for rancher-rs.
//!
//! * [`password`] — argon2id hashes of local passwords and the minimum-strength rule.
//! * [`token`] — API tokens `token-<id>:<secret>`: generation, salted hashes, reading them from a
//!   request (Bearer, Basic, the `R_SESS` cookie), expiry.
//! * [`rbac`] — does a set of RBAC rules allow a request, and does it hold every permission of another
//!   set ([`rbac::covers`], for escalation checks)?
//! * [`rbac_render`] — role templates and their cluster/project bindings rendered into the
//!   ClusterRoles, ClusterRoleBindings and RoleBindings of a downstream cluster.
//!
//! Auth providers (LDAP, GitHub, OIDC), rendering role templates to downstream RBAC, and the
//! authentication proxy's layers come later in this crate.
//!
//! ```
//! use jiff::Timestamp;
//! use rancher_auth::token::{self, ApiToken};
//! use rancher_core::model::{Token, TokenSpec};
//!
//! // Issue a token: keep only the hash, show the secret once.
//! let issued = ApiToken::generate();
//! let mut stored = Token::new(issued.name(), TokenSpec { user_id: "u-abcde".into(), enabled: true, ..Default::default() });
//! stored.status.hash = issued.hash();
//!
//! // Later, a request presents it.
//! let mut headers = http::HeaderMap::new();
//! headers.insert("authorization", format!("Bearer {}", issued.expose()).parse().unwrap());
//! let presented = ApiToken::from_headers(&headers).unwrap().unwrap();
//! token::verify(&presented, &stored, Timestamp::now()).unwrap();
//! ```

#[doc(hidden)]
pub mod fuzzing;
pub mod password;
pub mod providers;
pub mod proxy;
pub mod rbac;
pub mod rbac_render;
pub mod token;
