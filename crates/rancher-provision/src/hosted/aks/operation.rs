//! Long-running operations, as Azure Resource Manager documents them ("Track asynchronous Azure
//! operations"): a PUT/DELETE/POST answers 201/202 (or 200) with `Azure-AsyncOperation` (an
//! operation status resource: `{"status": "InProgress"|"Succeeded"|"Failed"|"Canceled",
//! "error": {"code","message"}}`) and/or `Location` (202 while running, 200/204 when done, the
//! failure as an error answer), each with `Retry-After` seconds.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use url::Url;

use super::client::{AksClient, Answer};
use super::error::{AksError, AzureErrorBody, Result};

/// A started operation, to poll until it ends. Holds only URLs (no secret), so a provisioner may
/// keep it in a cluster's status and poll it on its next reconcile.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// The `Azure-AsyncOperation` URL (preferred when both are given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_url: Option<String>,
    /// The `Location` URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location_url: Option<String>,
    /// The first poll's `Retry-After`, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

impl Operation {
    /// An operation Azure finished within the request (no URL to poll).
    pub fn completed() -> Operation {
        Operation::default()
    }

    /// Whether Azure finished it within the request.
    pub fn is_completed(&self) -> bool {
        self.status_url.is_none() && self.location_url.is_none()
    }

    /// The operation an answer started (none when it has no `Azure-AsyncOperation`/`Location`).
    pub(crate) fn from_answer(answer: &Answer) -> Operation {
        let header = |name: &str| answer.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        Operation {
            status_url: header("azure-asyncoperation"),
            location_url: header("location"),
            retry_after_secs: answer.retry_after().map(|d| d.as_secs()),
        }
    }
}

/// Where an operation is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OperationState {
    /// Still running; poll again after `retry_after`.
    InProgress {
        /// How long Azure asks to wait before the next poll (or the client's poll interval).
        retry_after: Duration,
    },
    /// Done.
    Succeeded,
    /// Ended in failure, with Azure's error.
    Failed(AzureErrorBody),
    /// Someone cancelled it.
    Canceled,
}

#[derive(Deserialize)]
struct StatusResource {
    #[serde(default)]
    status: String,
    #[serde(default)]
    error: Option<ErrorField>,
}

#[derive(Deserialize)]
struct ErrorField {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

impl AksClient {
    fn poll_url(&self, u: &str) -> Result<Url> {
        let url =
            Url::parse(u).map_err(|e| AksError::InvalidResponse(format!("operation URL {u:?}: {e}")))?;
        if !self.same_origin(&url) {
            return Err(AksError::InvalidResponse(format!("operation URL {u:?} is not on Resource Manager")));
        }
        Ok(url)
    }

    /// Polls `op` once: one request (none for a completed operation).
    ///
    /// # Errors
    /// Transport and API errors of the poll itself; a failed operation is `Ok(Failed(..))`.
    pub async fn poll_operation(&self, op: &Operation) -> Result<OperationState> {
        let interval = self.options.poll_interval;
        if let Some(u) = &op.status_url {
            let answer = self.send(Method::GET, self.poll_url(u)?, None, "operation").await?;
            let s: StatusResource = answer.json("operation status")?;
            return Ok(match s.status.as_str() {
                "Succeeded" => OperationState::Succeeded,
                "Failed" => {
                    let e = s.error.unwrap_or(ErrorField { code: String::new(), message: String::new() });
                    OperationState::Failed(AzureErrorBody { code: e.code, message: e.message })
                }
                "Canceled" => OperationState::Canceled,
                _ => OperationState::InProgress { retry_after: answer.retry_after().unwrap_or(interval) },
            });
        }
        if let Some(u) = &op.location_url {
            return match self.send(Method::GET, self.poll_url(u)?, None, "operation").await {
                Ok(a) if a.status == StatusCode::ACCEPTED => {
                    Ok(OperationState::InProgress { retry_after: a.retry_after().unwrap_or(interval) })
                }
                Ok(_) => Ok(OperationState::Succeeded),
                Err(AksError::Api { body, .. } | AksError::Conflict(body)) => {
                    Ok(OperationState::Failed(body))
                }
                Err(e) => Err(e),
            };
        }
        Ok(OperationState::Succeeded)
    }

    /// Polls `op` until it ends, honouring `Retry-After`, for at most `timeout`.
    ///
    /// # Errors
    /// [`AksError::OperationFailed`] with Azure's code and message; [`AksError::OperationCanceled`];
    /// [`AksError::Timeout`] after `timeout`; [`AksError::Cancelled`] when `cancel` fires; the polls'
    /// own errors.
    pub async fn wait(&self, op: &Operation, timeout: Duration, cancel: &CancellationToken) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = op.retry_after_secs.map(Duration::from_secs);
        loop {
            if let Some(p) = pause {
                let until = (tokio::time::Instant::now() + p).min(deadline);
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    _ = cancel.cancelled() => return Err(AksError::Cancelled),
                }
            }
            if cancel.is_cancelled() {
                return Err(AksError::Cancelled);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(AksError::Timeout(timeout));
            }
            match self.poll_operation(op).await? {
                OperationState::Succeeded => return Ok(()),
                OperationState::Failed(e) => return Err(AksError::OperationFailed(e)),
                OperationState::Canceled => return Err(AksError::OperationCanceled),
                OperationState::InProgress { retry_after } => pause = Some(retry_after),
            }
        }
    }
}
