//! `pods/<name>/log`: a few deterministic lines per container; `follow` keeps the stream open (one
//! heartbeat line every few seconds) until the pod is gone; `tailLines`, `timestamps`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use serde_json::Value;

use crate::api::ResourceRequest;
use crate::http_util::{Body, text_response};
use crate::state::SimState;
use crate::status::ApiError;

/// Interval between lines of a followed log.
const FOLLOW_EVERY: Duration = Duration::from_secs(2);

/// The container a log or exec request is for: the named one, or the only/default one.
pub(crate) fn pick_container(pod: &Value, wanted: Option<&str>) -> Result<String, ApiError> {
    let name = crate::meta::name(pod);
    let names: Vec<String> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(String::from))
        .collect();
    match wanted.filter(|w| !w.is_empty()) {
        Some(w) if names.iter().any(|n| n == w) => Ok(w.to_string()),
        Some(w) => Err(ApiError::bad_request(format!("container {w} is not valid for pod {name}"))),
        None => {
            if let Some(d) =
                pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"].as_str()
                && names.iter().any(|n| n == d)
            {
                return Ok(d.to_string());
            }
            match names.as_slice() {
                [one] => Ok(one.clone()),
                [] => Err(ApiError::bad_request(format!("pod {name} has no containers"))),
                many => Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    many.join(" ")
                ))),
            }
        }
    }
}

fn static_lines(pod: &Value, container: &str) -> Vec<String> {
    let image = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == container)
        .and_then(|c| c["image"].as_str())
        .unwrap_or("");
    vec![
        format!("rancher-sim: container {container} starting (image {image})"),
        format!(
            "rancher-sim: pod {}/{} on node {}",
            crate::meta::namespace(pod),
            crate::meta::name(pod),
            pod["spec"]["nodeName"].as_str().unwrap_or("<none>")
        ),
        format!("rancher-sim: container {container} ready"),
    ]
}

fn stamp(line: &str, timestamps: bool) -> String {
    if timestamps { format!("{} {line}\n", crate::meta::now()) } else { format!("{line}\n") }
}

pub(crate) fn handle(state: &Arc<SimState>, rr: &ResourceRequest) -> Result<Response<Body>, ApiError> {
    let pod = state
        .store
        .get("pods", &rr.namespace, &rr.name)
        .ok_or_else(|| ApiError::not_found("", "pods", &rr.name))?;
    let container = pick_container(&pod, rr.query.get("container"))?;
    if rr.query.flag("previous") {
        return Err(ApiError::bad_request(format!(
            "previous terminated container \"{container}\" in pod \"{}\" not found",
            rr.name
        )));
    }
    if pod["status"]["phase"] == "Pending" {
        return Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{}\" is waiting to start: ContainerCreating",
            rr.name
        )));
    }
    let timestamps = rr.query.flag("timestamps");
    let mut lines = static_lines(&pod, &container);
    if let Some(tail) = rr.query.int("tailLines")? {
        let tail = tail.max(0) as usize;
        let skip = lines.len().saturating_sub(tail);
        lines.drain(..skip);
    }
    let text: String = lines.iter().map(|l| stamp(l, timestamps)).collect();
    if !rr.query.flag("follow") {
        return Ok(text_response(200, text));
    }
    let uid = crate::meta::uid(&pod).to_string();
    let st = state.clone();
    let (ns, name) = (rr.namespace.clone(), rr.name.clone());
    let first = Some(Bytes::from(text));
    let stream = futures::stream::unfold((first, 0u64), move |(first, n)| {
        let st = st.clone();
        let (ns, name, uid) = (ns.clone(), name.clone(), uid.clone());
        let container = container.clone();
        async move {
            if let Some(b) = first {
                return Some((Ok::<_, std::convert::Infallible>(Frame::data(b)), (None, n)));
            }
            tokio::select! {
                _ = tokio::time::sleep(FOLLOW_EVERY) => {}
                _ = st.cancel.cancelled() => return None,
            }
            let alive = st.store.get("pods", &ns, &name).is_some_and(|p| crate::meta::uid(&p) == uid);
            if !alive {
                return None;
            }
            let line = stamp(&format!("rancher-sim: container {container} heartbeat {}", n + 1), timestamps);
            Some((Ok(Frame::data(Bytes::from(line))), (None, n + 1)))
        }
    });
    let mut resp = Response::new(StreamBody::new(stream).boxed());
    resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(resp)
}
