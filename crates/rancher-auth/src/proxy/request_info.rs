//! What a Kubernetes API request is about — verb, group/version, namespace, resource, subresource,
//! name — read from its method, path and query the way the API server's `RequestInfoFactory` does.
//! The path is normalised once ([`normalize_path`]) and every field is read from the normalised form,
//! so `./`, `//`, `%2e` or `%2F` cannot make a request look like another.

use http::Method;

/// The parsed meaning of one Kubernetes API request.
///
/// ```
/// use rancher_auth::proxy::RequestInfo;
///
/// let info = RequestInfo::parse(&http::Method::GET, "/api/v1/namespaces/default/pods", Some("watch=true"));
/// assert_eq!(info.verb, "watch");
/// assert_eq!(info.namespace, "default");
/// assert_eq!(info.resource, "pods");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// `true` for `/api/...` and `/apis/...` resource paths, `false` for `/version`, `/healthz`, `/openapi/...`.
    pub is_resource_request: bool,
    /// The request path (after the cluster prefix).
    pub path: String,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`, `connect`
    /// (exec, attach, portforward — Kubernetes authorizes these as `create`), `proxy`; for non-resource
    /// requests the lower-case HTTP method.
    pub verb: String,
    /// `api` or `apis`.
    pub api_prefix: String,
    /// The API group; empty for the core group.
    pub api_group: String,
    /// The API version, e.g. `v1`.
    pub api_version: String,
    /// The namespace; empty for cluster-scoped resources.
    pub namespace: String,
    /// The plural resource, e.g. `pods`.
    pub resource: String,
    /// The subresource, e.g. `status`, `exec`, `log`.
    pub subresource: String,
    /// The object's name; empty for collections.
    pub name: String,
    /// Whether the path was already in normal form ([`NormalizedPath::canonical`]): no escapes that
    /// change it, no empty, `.` or `..` segments, no trailing slash.
    pub canonical_path: bool,
}

/// A request path as the API server reads it: percent-escapes decoded first (so `%2F` separates
/// segments, as Go's `URL.Path` does), then empty and `.` segments dropped and `..` resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NormalizedPath {
    /// The segments, decoded.
    pub segments: Vec<String>,
    /// Whether the raw path was exactly `/` followed by the segments joined with `/`.
    pub canonical: bool,
}

impl NormalizedPath {
    /// The normal form as a path: `/` and the segments joined with `/`.
    pub fn to_path(&self) -> String {
        format!("/{}", self.segments.join("/"))
    }
}

/// Normalises a raw request path (without the query).
///
/// ```
/// use rancher_auth::proxy::normalize_path;
///
/// let n = normalize_path("/api/v1/namespaces%2Fa/./b//../secrets/");
/// assert_eq!(n.to_path(), "/api/v1/namespaces/a/secrets");
/// assert!(!n.canonical);
/// assert!(normalize_path("/api/v1/namespaces/a/secrets").canonical);
/// ```
pub fn normalize_path(raw: &str) -> NormalizedPath {
    let decoded = percent_decode(raw);
    let mut segments: Vec<String> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s.to_owned()),
        }
    }
    let mut normal = NormalizedPath { segments, canonical: false };
    normal.canonical = normal.to_path() == raw;
    normal
}

/// Subresources that open a bidirectional stream (SPDY or WebSocket) to a pod.
const CONNECT_SUBRESOURCES: [&str; 3] = ["exec", "attach", "portforward"];

impl RequestInfo {
    /// Parses a request. `path` is the API server path (`/api/v1/...`), `query` the raw query string.
    pub fn parse(method: &Method, path: &str, query: Option<&str>) -> RequestInfo {
        let normal = normalize_path(path);
        let mut info = RequestInfo {
            path: path.to_owned(),
            verb: method.as_str().to_ascii_lowercase(),
            canonical_path: normal.canonical,
            ..Default::default()
        };
        let parts = normal.segments;
        if parts.len() < 3 || !(parts[0] == "api" || parts[0] == "apis") {
            return info;
        }
        let mut rest = &parts[..];
        info.api_prefix = rest[0].clone();
        rest = &rest[1..];
        if info.api_prefix == "apis" {
            if rest.len() < 3 {
                return info;
            }
            info.api_group = rest[0].clone();
            rest = &rest[1..];
        }
        info.api_version = rest[0].clone();
        rest = &rest[1..];

        // `/watch/...` and `/proxy/...` are the legacy verb-in-path forms.
        if rest[0] == "watch" || rest[0] == "proxy" {
            if rest.len() < 2 {
                return info;
            }
            info.verb = rest[0].clone();
            rest = &rest[1..];
        } else {
            info.verb = match *method {
                Method::POST => "create",
                Method::GET | Method::HEAD => "get",
                Method::PUT => "update",
                Method::PATCH => "patch",
                Method::DELETE => "delete",
                _ => "",
            }
            .to_owned();
        }
        info.is_resource_request = true;

        if rest[0] == "namespaces" && rest.len() > 1 {
            info.namespace = rest[1].clone();
            // `/namespaces/<ns>/status|finalize` are subresources of the namespace itself.
            if rest.len() > 2 && rest[2] != "status" && rest[2] != "finalize" {
                rest = &rest[2..];
            }
        }
        if rest.len() >= 3 && info.verb != "proxy" {
            info.subresource = rest[2].clone();
        }
        if rest.len() >= 2 {
            info.name = rest[1].clone();
        }
        info.resource = rest[0].clone();

        let query = Query(query.unwrap_or(""));
        if info.name.is_empty() && info.verb == "get" {
            info.verb = if query.flag("watch") { "watch" } else { "list" }.to_owned();
            if let Some(name) = query.get("fieldSelector").as_deref().and_then(exact_name_selector) {
                info.name = name;
            }
        }
        if info.name.is_empty() && info.verb == "delete" {
            info.verb = "deletecollection".to_owned();
        }
        if !info.name.is_empty() && CONNECT_SUBRESOURCES.contains(&info.subresource.as_str()) {
            info.verb = "connect".to_owned();
        }
        info
    }

    /// Whether the request is long-running (watch, exec/attach/port-forward, proxy, `logs?follow`), so no
    /// response timeout may be imposed on it.
    pub fn is_long_running(&self) -> bool {
        matches!(self.verb.as_str(), "watch" | "connect" | "proxy") || self.subresource == "log"
    }
}

/// `fieldSelector=metadata.name=<n>` (or `==`) alone names one object, as the API server treats it.
fn exact_name_selector(selector: &str) -> Option<String> {
    if selector.contains(',') {
        return None;
    }
    let value =
        selector.strip_prefix("metadata.name==").or_else(|| selector.strip_prefix("metadata.name="))?;
    let valid = !value.is_empty() && value != "." && value != ".." && !value.contains(['/', '%']);
    valid.then(|| value.to_owned())
}

/// A raw query string, read lazily.
struct Query<'a>(&'a str);

impl Query<'_> {
    /// The first value of `key`, percent-decoded (`+` is a space, as in forms).
    fn get(&self, key: &str) -> Option<String> {
        self.0.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == key).then(|| percent_decode(&v.replace('+', " ")))
        })
    }

    /// A boolean parameter as Go's `strconv.ParseBool` reads it; absent or unparsable is `false`.
    fn flag(&self, key: &str) -> bool {
        matches!(self.get(key).as_deref(), Some("1" | "t" | "T" | "true" | "TRUE" | "True"))
    }
}

/// Decodes `%XX` escapes; malformed escapes are kept literally.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(method: Method, uri: &str) -> RequestInfo {
        let (path, query) = uri.split_once('?').map_or((uri, None), |(p, q)| (p, Some(q)));
        RequestInfo::parse(&method, path, query)
    }

    #[test]
    fn core_group_collections_and_objects() {
        let list = parse(Method::GET, "/api/v1/namespaces/default/pods");
        assert_eq!(
            (list.verb.as_str(), list.api_group.as_str(), list.api_version.as_str()),
            ("list", "", "v1")
        );
        assert_eq!(
            (list.namespace.as_str(), list.resource.as_str(), list.name.as_str()),
            ("default", "pods", "")
        );
        assert!(list.is_resource_request);

        let get = parse(Method::GET, "/api/v1/namespaces/default/pods/web-0");
        assert_eq!((get.verb.as_str(), get.name.as_str()), ("get", "web-0"));

        let nodes = parse(Method::GET, "/api/v1/nodes");
        assert_eq!(
            (nodes.verb.as_str(), nodes.namespace.as_str(), nodes.resource.as_str()),
            ("list", "", "nodes")
        );
    }

    #[test]
    fn verbs_follow_method_and_query() {
        assert_eq!(parse(Method::GET, "/api/v1/pods?watch=true&resourceVersion=5").verb, "watch");
        assert_eq!(parse(Method::GET, "/api/v1/pods?watch=1").verb, "watch");
        assert_eq!(parse(Method::GET, "/api/v1/pods?watch=false").verb, "list");
        assert_eq!(parse(Method::GET, "/api/v1/watch/namespaces/a/pods").verb, "watch");
        assert_eq!(parse(Method::POST, "/api/v1/namespaces/a/pods").verb, "create");
        assert_eq!(parse(Method::PUT, "/api/v1/namespaces/a/pods/p").verb, "update");
        assert_eq!(parse(Method::PATCH, "/api/v1/namespaces/a/pods/p").verb, "patch");
        assert_eq!(parse(Method::DELETE, "/api/v1/namespaces/a/pods/p").verb, "delete");
        assert_eq!(parse(Method::DELETE, "/api/v1/namespaces/a/pods").verb, "deletecollection");
    }

    #[test]
    fn named_groups_and_subresources() {
        let deploy = parse(Method::PUT, "/apis/apps/v1/namespaces/prod/deployments/web/status");
        assert_eq!(deploy.api_prefix, "apis");
        assert_eq!((deploy.api_group.as_str(), deploy.api_version.as_str()), ("apps", "v1"));
        assert_eq!(
            (deploy.resource.as_str(), deploy.name.as_str(), deploy.subresource.as_str()),
            ("deployments", "web", "status")
        );
        let crb = parse(Method::GET, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/admin");
        assert_eq!(
            (crb.api_group.as_str(), crb.namespace.as_str(), crb.verb.as_str()),
            ("rbac.authorization.k8s.io", "", "get")
        );
    }

    #[test]
    fn streaming_subresources_are_connect() {
        for sub in ["exec", "attach", "portforward"] {
            let info = parse(Method::POST, &format!("/api/v1/namespaces/a/pods/p/{sub}?command=echo"));
            assert_eq!((info.verb.as_str(), info.subresource.as_str()), ("connect", sub));
            assert!(info.is_long_running());
        }
        // WebSocket exec arrives as GET.
        assert_eq!(parse(Method::GET, "/api/v1/namespaces/a/pods/p/exec?command=ls").verb, "connect");
        let logs = parse(Method::GET, "/api/v1/namespaces/a/pods/p/log?follow=true");
        assert_eq!((logs.verb.as_str(), logs.subresource.as_str()), ("get", "log"));
        assert!(logs.is_long_running());
    }

    #[test]
    fn namespaces_themselves() {
        let ns = parse(Method::GET, "/api/v1/namespaces/default");
        assert_eq!(
            (ns.resource.as_str(), ns.name.as_str(), ns.namespace.as_str()),
            ("namespaces", "default", "default")
        );
        let fin = parse(Method::PUT, "/api/v1/namespaces/gone/finalize");
        assert_eq!(
            (fin.resource.as_str(), fin.name.as_str(), fin.subresource.as_str()),
            ("namespaces", "gone", "finalize")
        );
        let all = parse(Method::GET, "/api/v1/namespaces");
        assert_eq!((all.verb.as_str(), all.resource.as_str()), ("list", "namespaces"));
    }

    #[test]
    fn field_selector_on_name_names_the_object() {
        let info =
            parse(Method::GET, "/api/v1/namespaces/a/pods?fieldSelector=metadata.name%3Dweb-0&watch=true");
        assert_eq!((info.verb.as_str(), info.name.as_str()), ("watch", "web-0"));
        let many = parse(Method::GET, "/api/v1/pods?fieldSelector=metadata.name%3Da,status.phase%3DRunning");
        assert_eq!(many.name, "");
    }

    #[test]
    fn proxy_verb_keeps_the_rest_out_of_subresource() {
        let info = parse(Method::GET, "/api/v1/proxy/namespaces/a/services/web/some/path");
        assert_eq!(
            (info.verb.as_str(), info.resource.as_str(), info.name.as_str()),
            ("proxy", "services", "web")
        );
        assert_eq!(info.subresource, "");
    }

    #[test]
    fn non_resource_paths() {
        for path in ["/version", "/healthz", "/api", "/apis", "/apis/apps", "/openapi/v2", "/apis/apps/v1"] {
            let info = parse(Method::GET, path);
            assert!(!info.is_resource_request, "{path}");
            assert_eq!(info.verb, "get", "{path}");
        }
        // `/api/v1` alone is discovery, too short to name a resource.
        assert!(!parse(Method::GET, "/api/v1").is_resource_request);
    }

    #[test]
    fn every_spelling_of_a_path_parses_to_its_normal_form() {
        let want = parse(Method::POST, "/api/v1/namespaces/default/secrets");
        assert!(want.canonical_path);
        for spelling in [
            "/api/v1/namespaces/default/./secrets",
            "/api/v1/namespaces/default//secrets",
            "//api/v1/namespaces/default/secrets",
            "/api/v1/namespaces/default/%2e/secrets",
            "/api/v1/namespaces/default/%2E%2E/default/secrets",
            "/api/v1/namespaces/default/configmaps/../secrets",
            "/api/v1/namespaces/default/%73ecrets",
            "/api/v1/namespaces%2Fdefault%2Fsecrets",
            "/api/v1/namespaces/default/secrets/",
            "/api/v1/namespaces/default/secrets/.",
            "/x/../api/v1/namespaces/default/secrets",
            "/../../api/v1/namespaces/default/secrets",
        ] {
            let info = parse(Method::POST, spelling);
            assert!(!info.canonical_path, "{spelling}");
            assert_eq!(
                (info.verb.as_str(), info.namespace.as_str(), info.resource.as_str(), info.name.as_str()),
                (want.verb.as_str(), "default", "secrets", ""),
                "{spelling}"
            );
        }
    }

    #[test]
    fn normalisation_is_idempotent_and_canonical_paths_are_unchanged() {
        for raw in ["/", "", "/api", "/a/b/c", "/a//b", "/a/%2F/b", "/%", "/a/%zz", "/..", "/./."] {
            let once = normalize_path(raw);
            let twice = normalize_path(&once.to_path());
            assert_eq!(once.segments, twice.segments, "{raw}");
            assert!(twice.canonical || once.to_path().contains('%'), "{raw}");
        }
        assert!(normalize_path("/").canonical);
        assert!(!normalize_path("").canonical);
    }

    #[test]
    fn percent_escapes_in_segments_are_decoded() {
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
