//! The management API's routes: public endpoints, login, and authenticated CRUD under `/v3`.

mod audit;
mod body;
mod cloud_credentials;
mod clusters;
mod creator;
mod crud;
mod etcd_backups;
mod kind;
mod list;
mod login;
mod namespaces;
mod openapi;
mod principals;
mod provisioners;
mod proxied;
mod public;
mod rancher_shape;
mod roles;
mod rotate_certs;
mod schemas;
mod settings;
mod tokens;
mod users;
mod visibility;

pub(crate) use body::json_object as read_json_object;
pub(crate) use etcd_backups::{
    BACKUP as BACKUP_ETCD, RESTORE as RESTORE_FROM_ETCD_BACKUP, backup_etcd, restore_from_etcd_backup,
};
pub(crate) use kind::generated_name;
pub(crate) use login::login as local_login;
pub(crate) use rotate_certs::{ACTION as ROTATE_CERTIFICATES, rotate_certificates};
pub(crate) use tokens::created_response as created_token_response;

use std::any::Any;

use axum::Router;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{Method, StatusCode, Uri};
use rancher_core::model::{
    CloudCredential, Cluster, ClusterRoleTemplateBinding, GlobalRole, GlobalRoleBinding, Project,
    ProjectRoleTemplateBinding, RoleTemplate, Token, User,
};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::classify::ServerErrorsFailureClass;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

use self::kind::ApiKind;
use crate::server::auth;
use crate::server::error::ApiError;
use crate::server::metrics;
use crate::server::state::AppState;

/// Adds `GET/POST /v3/<plural>` and `GET/PUT/DELETE /v3/<plural>/{id}` for one kind.
fn kind_routes<K: ApiKind>(router: Router<AppState>) -> Router<AppState> {
    router.route(&format!("/v3/{}", K::PLURAL), get(crud::list::<K>).post(crud::create::<K>)).route(
        &format!("/v3/{}/{{id}}", K::PLURAL),
        get(crud::get::<K>).put(crud::update::<K>).delete(crud::delete::<K>),
    )
}

async fn not_found(uri: Uri) -> Response {
    ApiError::NotFound(format!("the server could not find the requested resource {}", uri.path()))
        .into_response()
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    ApiError::MethodNotAllowed(format!("{method} is not supported on {}", uri.path())).into_response()
}

/// A failed response, as the request's span ends: at `ERROR`, but a `503` only at `DEBUG` — the
/// server says why it is unavailable where it decides to be (a store that does not answer, a server
/// stopping), and the agents it defers in a reconnect storm are counted, not logged one by one.
fn log_failure(class: ServerErrorsFailureClass, latency: std::time::Duration, _span: &tracing::Span) {
    match class {
        ServerErrorsFailureClass::StatusCode(StatusCode::SERVICE_UNAVAILABLE) => {
            tracing::debug!(?latency, "response failed: 503 Service Unavailable");
        }
        class => tracing::error!(classification = %class, ?latency, "response failed"),
    }
}

/// The span each request's debug logs carry: method, path and version — never the query (an exec
/// command line, a search) and never a registration token (see [`loggable_path`]).
fn request_span<B>(req: &http::Request<B>) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %req.method(),
        path = %loggable_path(req.uri().path()),
        version = ?req.version(),
    )
}

/// A request path as logs may show it: the `<token>_<cluster>.yaml` of an import URL is a credential
/// (it lets anyone fetch the agent's manifest and connect as the cluster), so only the cluster stays.
fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    const IMPORT: &str = "/v3/import/";
    match path.strip_prefix(IMPORT) {
        Some(file) => {
            let cluster = file.rsplit_once('_').map_or("", |(_, c)| c);
            format!("{IMPORT}<redacted>_{cluster}").into()
        }
        None => path.into(),
    }
}

/// The value of `key` in a request's query string, decoded (the first, when it is given twice).
pub(crate) fn query_value(query: Option<&str>, key: &str) -> Option<String> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

fn panic_response(_: Box<dyn Any + Send + 'static>) -> Response {
    ApiError::Internal("the server hit a bug handling this request".into()).into_response()
}

/// The whole HTTP application.
pub(crate) fn router(state: AppState) -> Router {
    let mut v3 = Router::new().route("/v3/tokens", get(crud::list::<Token>).post(tokens::post)).route(
        "/v3/tokens/{id}",
        get(crud::get::<Token>).put(crud::update::<Token>).delete(crud::delete::<Token>),
    );
    v3 = kind_routes::<Cluster>(v3);
    v3 = v3.route("/v3/clusters/{id}", post(crate::server::kubeconfig::cluster_action));
    v3 = kind_routes::<Project>(v3);
    v3 = v3
        .route("/v3/clusters/{id}/namespaces", get(namespaces::list))
        .route("/v3/clusters/{id}/namespaces/{ns}", post(namespaces::action));
    v3 = v3.route("/v3/users", get(users::list).post(users::post)).route(
        "/v3/users/{id}",
        get(crud::get::<User>).put(crud::update::<User>).delete(crud::delete::<User>),
    );
    v3 = kind_routes::<GlobalRole>(v3);
    v3 = kind_routes::<GlobalRoleBinding>(v3);
    v3 = kind_routes::<RoleTemplate>(v3);
    v3 = kind_routes::<ClusterRoleTemplateBinding>(v3);
    v3 = kind_routes::<ProjectRoleTemplateBinding>(v3);
    v3 = v3
        .route(
            "/v3/cloudcredentials",
            get(crud::list::<CloudCredential>).post(crud::create::<CloudCredential>),
        )
        .route(
            "/v3/cloudcredentials/{id}",
            get(cloud_credentials::get).put(cloud_credentials::update).delete(cloud_credentials::delete),
        );
    v3 = v3.route("/v3/principals", post(principals::post));
    v3 = v3
        .route("/v3/schemas", get(schemas::list))
        .route("/v3/auditlog", get(audit::list))
        .route("/v3/provisioners", get(provisioners::list))
        .route("/v3/settings", get(settings::list))
        .route("/v3/settings/{name}", get(settings::get).put(settings::change).delete(settings::change));
    let v3 = v3.merge(crate::server::registration::routes::authenticated());
    let v3 = v3.route_layer(middleware::from_fn_with_state(state.clone(), auth::authenticate));

    let public = Router::new()
        .route("/ping", get(public::ping))
        .route("/healthz", get(public::healthz))
        .route("/readyz", get(public::readyz))
        .route("/metrics", get(public::metrics))
        .route("/cacerts", get(public::cacerts_pem))
        .route("/v3/settings/cacerts", get(public::cacerts_setting))
        .route(openapi::PATH, get(openapi::serve))
        // Every identity provider, `local` and the plugged-in ones alike, by kind and name.
        .route("/v3-public/authProviders", get(crate::server::identity::routes::list))
        .route("/v3-public/{kind}/{name}", crate::server::identity::routes::methods())
        .merge(crate::server::registration::routes::public());

    // What every route runs under, outermost first.
    let front = tower::ServiceBuilder::new()
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(SetSensitiveRequestHeadersLayer::new(SENSITIVE_HEADERS))
        .layer(TraceLayer::new_for_http().make_span_with(request_span).on_failure(log_failure));

    // The proxy authenticates by itself (the same tokens) and answers with Kubernetes Status; a
    // request for a cluster another replica holds goes to that replica. It runs under the same front
    // layers, composed once with it: see [`proxied`].
    let proxied = front.clone().service(proxied::Proxied::new(state.clone()));

    let metrics = state.metrics.clone();
    let rest = Router::new()
        .merge(public)
        .merge(crate::server::console::routes())
        .merge(v3)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(middleware::from_fn_with_state(metrics, metrics::track_requests))
        .layer(front);
    Router::new().route_service(proxied::ROUTE, proxied).merge(rest)
}

/// Headers whose values never reach a log: credentials.
const SENSITIVE_HEADERS: [http::HeaderName; 4] = [
    http::header::AUTHORIZATION,
    http::header::COOKIE,
    http::HeaderName::from_static("x-api-tunnel-token"),
    http::HeaderName::from_static("x-api-tunnel-params"),
];

#[cfg(test)]
mod tests {
    use super::loggable_path;

    #[test]
    fn import_urls_lose_their_token_in_logs() {
        assert_eq!(
            loggable_path("/v3/import/abcdef0123456789_c-xyz.yaml"),
            "/v3/import/<redacted>_c-xyz.yaml"
        );
        assert_eq!(loggable_path("/v3/import/abcdef0123456789"), "/v3/import/<redacted>_");
        assert_eq!(loggable_path("/v3/clusters/c-xyz"), "/v3/clusters/c-xyz");
    }
}
