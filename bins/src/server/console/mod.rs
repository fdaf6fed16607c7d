//! The web console: one page and its script and style, built into the binary (nothing is fetched
//! from elsewhere at run time), served at `/` (`/dashboard/`), over the same `/v3` API and
//! authentication proxy as `rancherctl` with a browser session (the `R_SESS` cookie and its CSRF
//! token, see `rancher_auth::proxy::browser`).
//!
//! Its kubectl shell (`assets/kubectl.js`) runs in the page: it speaks kubectl's common commands to a
//! cluster's API through the authentication proxy as the logged-in user. Nothing of it runs on the
//! server, which never starts kubectl for a browser.
//!
//! Every answer here carries a Content-Security-Policy that allows scripts, styles and connections
//! from the server's own origin only (no inline script, no `eval`, no framing), and is not sniffed
//! as another type. The page and its assets are public: they hold no data; the data comes from the
//! API, which checks the session.

use axum::Router;
use axum::extract::Path;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use http::{HeaderValue, StatusCode, header};

use crate::server::error::ApiError;
use crate::server::state::AppState;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/console.js");
const KUBECTL: &str = include_str!("assets/kubectl.js");
const STYLE: &str = include_str!("assets/console.css");

/// What the console's pages may load and do.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// The console's routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/dashboard/") }))
        .route("/dashboard/", get(page))
        .route("/assets/{file}", get(asset))
}

fn secured(mut resp: Response, cache: &'static str) -> Response {
    let headers = resp.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, cache),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    resp
}

async fn page() -> Response {
    secured(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX).into_response(), "no-cache")
}

async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "console.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "kubectl.js" => (KUBECTL, "text/javascript; charset=utf-8"),
        "console.css" => (STYLE, "text/css; charset=utf-8"),
        _ => {
            return ApiError::NotFound(format!("the console has no asset {file:?}")).into_response();
        }
    };
    // Assets change with the binary; `no-cache` revalidates them (cheap: they are small).
    secured((StatusCode::OK, [(header::CONTENT_TYPE, kind)], body).into_response(), "no-cache")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_its_script_from_the_server_and_has_no_inline_script() {
        assert!(INDEX.contains(r#"<script type="module" src="/assets/console.js"></script>"#));
        // Only `src=` scripts: an inline one would be refused by the policy anyway.
        assert_eq!(INDEX.matches("<script").count(), INDEX.matches("<script type=\"module\" src=").count());
        assert!(!INDEX.contains("style="), "no inline style");
        assert!(!["onclick=", "onload=", "onerror=", "onsubmit="].iter().any(|h| INDEX.contains(h)));
        for script in [SCRIPT, KUBECTL] {
            assert!(
                !script.contains("innerHTML") && !script.contains("eval("),
                "text only through textContent"
            );
        }
        assert!(CONTENT_SECURITY_POLICY.contains("script-src 'self';"));
    }
}
