//! The node agent's plan API: HTTP/1.1 on a tunnel stream the server opens with network `local` to
//! [`PLAN_SERVICE`](rancher_provision::plan::PLAN_SERVICE) (`"plan"`) — no port on the host.
//!
//! | Request | Answer |
//! |---|---|
//! | `PUT` [`PLAN_PATH`], a JSON `NodePlan` (at most [`MAX_PLAN_BYTES`]) | `202` `{"revision": …}`: checked, applied in the background (a newer plan supersedes one not yet applied); `400` bad JSON; `413` too large; `422` refused (the reason, naming the path, as text — also in the status's `error`) |
//! | `GET` [`STATUS_PATH`] | `200`, the JSON `NodeStatus` |

/// The plan: `PUT`.
pub const PLAN_PATH: &str = "/v1/plan";
/// The node's status: `GET`.
pub const STATUS_PATH: &str = "/v1/status";
/// The largest plan a node agent accepts.
pub const MAX_PLAN_BYTES: usize = 8 * 1024 * 1024;
/// The largest status or error body the server reads.
pub const MAX_STATUS_BYTES: usize = 1024 * 1024;
