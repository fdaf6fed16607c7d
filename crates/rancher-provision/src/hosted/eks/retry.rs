//! How the SDK's calls are counted and retried: an interceptor counting every attempt sent, the
//! retry policy (the SDK's standard strategy: exponential backoff with jitter under a retry quota,
//! honouring AWS's `x-amz-retry-after`), and [`RetryAfterClassifier`] so a standard `Retry-After`
//! is honoured too, capped at the policy's `max_backoff`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_eks::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_eks::config::retry::{ClassifyRetry, RetryAction};
use aws_sdk_eks::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_eks::error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::retries::classifiers::{RetryClassifierPriority, RetryReason};
use aws_smithy_types::retry::ErrorKind;

/// How many requests a client (or several sharing it) sent.
#[derive(Debug, Default)]
pub struct ApiCalls {
    api_calls: AtomicU64,
}

impl ApiCalls {
    /// Requests sent to EKS, retries included.
    pub fn api_calls(&self) -> u64 {
        self.api_calls.load(Ordering::Relaxed)
    }
}

/// Counts every attempt the SDK transmits.
#[derive(Debug)]
pub(super) struct CountAttempts(pub(super) Arc<ApiCalls>);

impl Intercept for CountAttempts {
    fn name(&self) -> &'static str {
        "rancher-eks-call-counter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        self.0.api_calls.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Makes the SDK honour a standard `Retry-After` (seconds or an HTTP date), which its own
/// classifiers ignore (they read AWS's `x-amz-retry-after` only): a 429 is a throttling error, and
/// a response already judged retryable without a delay gets the header's.
#[derive(Debug, Default)]
pub struct RetryAfterClassifier;

impl ClassifyRetry for RetryAfterClassifier {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        self.classify_retry_v2(ctx, &RetryAction::NoActionIndicated)
    }

    fn classify_retry_v2(&self, ctx: &InterceptorContext, previous: &RetryAction) -> RetryAction {
        let Some(resp) = ctx.response() else { return RetryAction::NoActionIndicated };
        let delay = resp.headers().get("retry-after").and_then(retry_after);
        match (previous, delay) {
            (
                RetryAction::RetryIndicated(RetryReason::RetryableError { kind, retry_after: None }),
                Some(d),
            ) => RetryAction::retryable_error_with_explicit_delay(*kind, d),
            (RetryAction::NoActionIndicated, d) if resp.status().as_u16() == 429 => match d {
                Some(d) => RetryAction::retryable_error_with_explicit_delay(ErrorKind::ThrottlingError, d),
                None => RetryAction::throttling_error(),
            },
            _ => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "Retry-After"
    }

    fn priority(&self) -> RetryClassifierPriority {
        // After the SDK's own (the transient-error classifier runs last of them).
        RetryClassifierPriority::run_after(RetryClassifierPriority::transient_error_classifier())
    }
}

/// A `Retry-After` value: delay-seconds or an HTTP date.
pub(crate) fn retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = jiff::fmt::rfc2822::parse(v).ok()?.timestamp();
    let wait = at.duration_since(jiff::Timestamp::now());
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

/// How throttled and failing calls are retried (the SDK's standard strategy).
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// The most times one call is sent (at least 1).
    pub max_attempts: u32,
    /// The first backoff; doubled (with jitter) on each retry.
    pub initial_backoff: Duration,
    /// The longest wait, also the cap on a server-asked delay.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(20),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_as_seconds_or_an_http_date() {
        assert_eq!(retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(retry_after("soon"), None);
    }
}
