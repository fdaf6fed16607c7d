//! `GET /v3/auditlog?limit=N`: the newest records of the proxy's audit log (who did what in which
//! cluster, and the answer), newest first, for those whose global roles let them list `auditlogs`
//! (admins). Read from the end of the `--audit-log` file: at most [`TAIL_BYTES`] of it, at most
//! [`MAX_LIMIT`] records. A server writing its audit log to standard output or an embedder's sink has
//! no file to read: `501`.

use std::io::{Read, Seek, SeekFrom};

use axum::Json;
use axum::extract::{RawQuery, State};
use serde_json::{Value, json};

use crate::server::auth::Caller;
use crate::server::error::{ApiError, ApiResult};
use crate::server::state::AppState;

/// The most of the file's end read per request.
pub(crate) const TAIL_BYTES: u64 = 1 << 20;
/// The most records one answer holds.
pub(crate) const MAX_LIMIT: usize = 1000;
/// Records when no limit is asked for.
const DEFAULT_LIMIT: usize = 100;

/// The last `limit` JSON records of the last [`TAIL_BYTES`] of `text`'s lines, newest first (a line
/// cut by where the read began is skipped).
fn newest(text: &str, cut: bool, limit: usize) -> Vec<Value> {
    let mut lines = text.lines();
    if cut {
        lines.next();
    }
    let mut records: Vec<Value> = lines.filter_map(|l| serde_json::from_str(l).ok()).collect();
    records.reverse();
    records.truncate(limit);
    records
}

/// `GET /v3/auditlog`.
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    if !caller.can("list", "auditlogs", None) {
        return Err(caller.forbidden("list", "auditlogs", None));
    }
    let limit = match super::query_value(query.as_deref(), "limit") {
        None => DEFAULT_LIMIT,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => return Err(ApiError::BadRequest(format!("limit must be 1 to {MAX_LIMIT}, not {v:?}"))),
        },
    };
    let Some(path) = state.audit_file.clone() else {
        return Err(ApiError::NotImplemented(
            "this server keeps no audit log file to read (start it with --audit-log FILE)".into(),
        ));
    };
    let (text, cut) = tokio::task::spawn_blocking(move || -> std::io::Result<(String, bool)> {
        let mut f = std::fs::File::open(&path)?;
        let len = f.metadata()?.len();
        let start = len.saturating_sub(TAIL_BYTES);
        f.seek(SeekFrom::Start(start))?;
        let mut bytes = Vec::with_capacity(usize::try_from(len - start).unwrap_or(0));
        f.take(TAIL_BYTES).read_to_end(&mut bytes)?;
        Ok((String::from_utf8_lossy(&bytes).into_owned(), start > 0))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("reading the audit log: {e}")))?
    .map_err(|e| ApiError::Unavailable(format!("the audit log cannot be read: {e}")))?;
    let data = newest(&text, cut, limit);
    Ok(Json(json!({ "type": "collection", "resourceType": "auditLog", "data": data })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_whole_records_come_first() {
        let text = "ial\"}\n{\"n\":1}\nnot json\n{\"n\":2}\n{\"n\":3}\n";
        let got = newest(text, true, 2);
        assert_eq!(got, vec![json!({"n": 3}), json!({"n": 2})]);
        assert_eq!(newest(text, true, 10).len(), 3, "the cut first line and the junk are skipped");
        assert_eq!(newest("{\"n\":0}\n", false, 10), vec![json!({"n": 0})]);
    }
}
