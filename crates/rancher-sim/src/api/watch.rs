//! Watch: chunked JSON lines of `{"type", "object"}` from a resourceVersion, with bookmarks,
//! `timeoutSeconds`, `sendInitialEvents`, Table output, and an ERROR event (410) when the requested
//! version has left the event log.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::ResourceRequest;
use super::crud::Filter;
use crate::http_util::{Body, Wants};
use crate::resources::ResourceDef;
use crate::state::SimState;
use crate::status::ApiError;
use crate::store::EventType;
use crate::{meta, table};

/// How often a watch that allows bookmarks gets one: "roughly every minute", as the API server's
/// watch cache sends them (a fleet of sims with six watches each would otherwise spend its idle
/// time on bookmarks).
const BOOKMARK_EVERY: Duration = Duration::from_secs(60);

struct Watch {
    state: Arc<SimState>,
    def: ResourceDef,
    key: String,
    ns: Option<String>,
    name: Option<String>,
    filter: Filter,
    wants: Wants,
    include_object: Option<String>,
    rx: tokio::sync::watch::Receiver<u64>,
    last_rv: u64,
    pending: VecDeque<Bytes>,
    deadline: Instant,
    bookmarks: bool,
    next_bookmark: Instant,
    sent_columns: bool,
    done: bool,
}

impl Watch {
    fn selected(&self, o: &Value) -> bool {
        self.ns.as_deref().is_none_or(|ns| meta::namespace(o) == ns)
            && self.name.as_deref().is_none_or(|n| meta::name(o) == n)
            && self.filter.matches(o)
    }

    fn push(&mut self, ty: &str, obj: &Value) {
        let object = match self.wants {
            Wants::Table if ty != "BOOKMARK" && ty != "ERROR" => {
                let rv = meta::resource_version(obj).to_string();
                let mut t = table::render(
                    &self.def,
                    &[Arc::new(obj.clone())],
                    &rv,
                    self.include_object.as_deref(),
                    !self.sent_columns,
                );
                self.sent_columns = true;
                if t["columnDefinitions"].is_null() {
                    t["columnDefinitions"] = json!([]);
                }
                t
            }
            _ => obj.clone(),
        };
        let mut line = serde_json::to_vec(&json!({"type": ty, "object": object})).unwrap_or_default();
        line.push(b'\n');
        self.pending.push_back(Bytes::from(line));
    }

    fn bookmark(&mut self, initial_end: bool) {
        let mut md = json!({"resourceVersion": self.last_rv.to_string()});
        if initial_end {
            md["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.def.kind, "apiVersion": self.def.api_version(), "metadata": md});
        self.push("BOOKMARK", &obj);
    }

    fn collect(&mut self) {
        match self.state.store.events_since(&self.key, self.last_rv) {
            Ok((events, rv)) => {
                for e in events {
                    let now = self.selected(&e.object);
                    let before = e.prev.as_deref().is_some_and(|p| self.selected(p));
                    match (e.kind, before, now) {
                        // Started matching the selector: the watcher sees it arrive.
                        (EventType::Modified, false, true) => self.push("ADDED", &e.object),
                        // Stopped matching: the watcher sees it leave, with its previous content at
                        // the new resourceVersion, as the API server's watch cache sends it.
                        (EventType::Modified, true, false) => {
                            let mut gone = e.prev.as_deref().cloned().unwrap_or(Value::Null);
                            meta::metadata_mut(&mut gone)
                                .insert("resourceVersion".into(), json!(meta::resource_version(&e.object)));
                            self.push("DELETED", &gone)
                        }
                        (EventType::Modified, false, false) => {}
                        (EventType::Deleted, _, _) if now || before => self.push("DELETED", &e.object),
                        (kind, _, true) => self.push(kind.as_str(), &e.object),
                        _ => {}
                    }
                }
                self.last_rv = rv;
            }
            Err(oldest) => {
                let e = ApiError::gone(format!("too old resource version: {} ({oldest})", self.last_rv));
                self.push("ERROR", &e.to_status());
                self.done = true;
            }
        }
    }

    async fn next(mut self) -> Option<(Result<Frame<Bytes>, std::convert::Infallible>, Self)> {
        loop {
            if let Some(b) = self.pending.pop_front() {
                return Some((Ok(Frame::data(b)), self));
            }
            if self.done {
                return None;
            }
            self.rx.borrow_and_update();
            self.collect();
            if !self.pending.is_empty() || self.done {
                continue;
            }
            let cancel = self.state.cancel.clone();
            tokio::select! {
                r = self.rx.changed() => if r.is_err() { self.done = true },
                _ = tokio::time::sleep_until(self.deadline) => self.done = true,
                _ = tokio::time::sleep_until(self.next_bookmark), if self.bookmarks => {
                    self.next_bookmark = Instant::now() + BOOKMARK_EVERY;
                    self.bookmark(false);
                }
                _ = cancel.cancelled() => self.done = true,
            }
        }
    }
}

pub(super) fn serve(
    state: &Arc<SimState>,
    rr: &ResourceRequest,
    wants: Wants,
) -> Result<Response<Body>, ApiError> {
    let filter = Filter::from_query(rr)?;
    let timeout = rr.query.int("timeoutSeconds")?.unwrap_or(1800).clamp(1, 4 * 3600) as u64;
    let key = rr.def.key();
    let ns = (rr.def.namespaced && !rr.namespace.is_empty()).then(|| rr.namespace.clone());
    let name = (!rr.name.is_empty()).then(|| rr.name.clone()).or_else(|| {
        crate::selectors::FieldSelector::parse(rr.query.get("fieldSelector").unwrap_or(""))
            .ok()
            .and_then(|f| f.name().map(String::from))
    });
    let send_initial = rr.query.get("sendInitialEvents") == Some("true");
    let rv_param = rr.query.get("resourceVersion").unwrap_or("");
    let rx = state.store.subscribe();
    let mut w = Watch {
        state: state.clone(),
        def: rr.def.clone(),
        key: key.clone(),
        ns,
        name,
        filter,
        wants,
        include_object: rr.query.get("includeObject").map(String::from),
        rx,
        last_rv: 0,
        pending: VecDeque::new(),
        deadline: Instant::now() + Duration::from_secs(timeout),
        bookmarks: rr.query.flag("allowWatchBookmarks"),
        next_bookmark: Instant::now() + BOOKMARK_EVERY,
        sent_columns: false,
        done: false,
    };
    if send_initial || rv_param.is_empty() || rv_param == "0" {
        let (items, rv) = state.store.list(&key, w.ns.as_deref());
        let selected: Vec<_> = items.iter().filter(|o| w.selected(o)).cloned().collect();
        for o in selected {
            w.push(EventType::Added.as_str(), &o);
        }
        w.last_rv = rv;
        if send_initial {
            w.bookmark(true);
        }
    } else {
        w.last_rv = rv_param
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv_param:?}")))?;
    }
    let stream = futures::stream::unfold(w, |w| w.next());
    let mut resp = Response::new(StreamBody::new(stream).boxed());
    resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}
