//! Waiting for something another process or task does, by polling: the condition is checked at once,
//! then every 200 ms until a deadline generous enough for a loaded two-core machine.

use std::future::Future;
use std::time::Duration;

const STEP: Duration = Duration::from_millis(200);

/// Polls `f` until it returns `Some`, and returns that value.
///
/// # Panics
/// With `what` when `wait` passes first.
pub async fn eventually<T, F, Fut>(wait: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {wait:?}: {what}");
        tokio::time::sleep(STEP).await;
    }
}

/// Polls `f` until it returns true; false when `wait` passes first (for a caller that says more
/// about the failure, or expects one).
pub async fn within<F, Fut>(wait: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(STEP).await;
    }
    false
}
