//! Password hashing and verification behind one process-wide limit. argon2 costs ~19 MiB and a core
//! for tens of milliseconds per call, and logins are unauthenticated: a few calls run on a few
//! dedicated threads, a few more wait their turn, and the rest are refused at once with 429 and
//! `Retry-After` instead of piling up threads and memory.
//!
//! The limit is process-wide because what it protects — the cores and the memory — is the process's:
//! every server built in one process shares it, and so do the login, user and bootstrap paths.

use std::num::NonZeroUsize;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use argon2::Block;
use rancher_auth::password;
use std::cell::RefCell;

use super::error::ApiError;

/// How many password hashes or checks may run at once, and how many may wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashingLimits {
    /// Running at once, each on its own thread with argon2's ~19 MiB (the allocator keeps about three
    /// times that per thread once it has run). Default: half the cores, at least 1, at most 8 —
    /// password checks are for people logging in; everything else authenticates with tokens and
    /// keeps the other cores.
    pub workers: NonZeroUsize,
    /// Waiting for a worker; beyond this a request is refused. Default: four per worker.
    pub queue: usize,
}

impl Default for HashingLimits {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        let workers = NonZeroUsize::new((cores / 2).clamp(1, 8)).unwrap_or(NonZeroUsize::MIN);
        HashingLimits { workers, queue: workers.get() * 4 }
    }
}

/// Why a password could not be hashed or checked.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every worker is busy and the queue is full.
    #[error("the server is busy checking passwords: try again in a second")]
    Busy,
    /// No worker thread could be started at configuration.
    #[error("password hashing failed: no password hashing threads")]
    NoWorkers,
    /// The worker threads ended (the process is shutting down).
    #[error("password hashing failed: the password hashing threads ended")]
    WorkersEnded,
    /// A job ended without a result (its worker panicked).
    #[error("password hashing failed: a password hashing job ended without a result")]
    JobLost,
    /// argon2 refused the password or failed.
    #[error("password hashing failed: {0}")]
    Argon2(#[source] password::PasswordError),
}

impl From<HashError> for ApiError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => ApiError::TooManyRequests { message: e.to_string(), retry_after_secs: 1 },
            HashError::NoWorkers | HashError::WorkersEnded | HashError::JobLost | HashError::Argon2(_) => {
                ApiError::Internal(e.to_string())
            }
        }
    }
}

/// A job for a worker thread.
type Job = Box<dyn FnOnce() + Send>;

/// The worker threads and their bounded queue. Dedicated threads, not tokio's blocking pool: argon2's
/// memory is reused by the same few threads instead of being left in the allocator's arenas of many.
struct Limiter {
    /// `None` when no worker thread could be started.
    jobs: Option<SyncSender<Job>>,
}

impl Limiter {
    /// Starts `workers` threads; they end when the limiter is dropped (after the jobs queued).
    fn new(limits: HashingLimits) -> Self {
        let (jobs, queue) = sync_channel::<Job>(limits.queue);
        let queue = Arc::new(Mutex::new(queue));
        let mut started = 0;
        for i in 0..limits.workers.get() {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new().name(format!("password-hash-{i}")).spawn(move || {
                loop {
                    // The lock is held only while waiting: one idle worker waits for the queue, the
                    // others for the lock.
                    let job = queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).recv();
                    let Ok(job) = job else { return };
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                        tracing::error!("a password hashing job panicked");
                    }
                }
            });
            match spawned {
                Ok(_) => started += 1,
                Err(e) => tracing::error!("starting a password hashing thread: {e}"),
            }
        }
        Limiter { jobs: (started > 0).then_some(jobs) }
    }
}

/// The process's limiter, made on first use (or by [`configure`]).
static LIMITER: OnceLock<RwLock<Arc<Limiter>>> = OnceLock::new();

fn slot() -> &'static RwLock<Arc<Limiter>> {
    LIMITER.get_or_init(|| RwLock::new(Arc::new(Limiter::new(HashingLimits::default()))))
}

/// Sets the limits for calls that start from now on (calls in flight finish on the old workers).
pub(crate) fn configure(limits: HashingLimits) {
    let fresh = Arc::new(Limiter::new(limits));
    // Not `slot()`: that would start the default workers only to replace them.
    let slot = LIMITER.get_or_init(|| RwLock::new(fresh.clone()));
    *slot.write().unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
}

fn current() -> Arc<Limiter> {
    slot().read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
}

/// Runs `work` on a worker once one is free, or refuses at once when the queue is full.
async fn run<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, HashError> {
    run_on(&current(), work).await
}

async fn run_on<T: Send + 'static>(
    limiter: &Limiter,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, HashError> {
    let jobs = limiter.jobs.as_ref().ok_or(HashError::NoWorkers)?;
    let (done, result) = tokio::sync::oneshot::channel();
    // If the caller gives up (the client hung up), the job still runs to the end and still counts.
    let job: Job = Box::new(move || {
        let _ = done.send(work());
    });
    jobs.try_send(job).map_err(|e| match e {
        TrySendError::Full(_) => HashError::Busy,
        TrySendError::Disconnected(_) => HashError::WorkersEnded,
    })?;
    result.await.map_err(|_| HashError::JobLost)
}

/// An argon2 hash of `pw` (no strength check: see [`password::check_strength`]).
///
/// # Errors
/// [`HashError::Busy`] when the limit is reached; [`HashError::Argon2`] when argon2 fails.
pub(crate) async fn hash(pw: String) -> Result<String, HashError> {
    run(move || password::hash_password(&pw)).await?.map_err(HashError::Argon2)
}

/// A hash to check against when the user does not exist, so both failures cost the same.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| password::hash_password("decoy password never used").unwrap_or_default())
}

/// Whether `pw` matches `hash`; with no hash (an unknown user) a decoy is checked so the answer takes
/// as long. An empty password never matches.
///
/// # Errors
/// [`HashError::Busy`] when the limit is reached.
pub(crate) async fn verify(pw: String, hash: Option<String>) -> Result<bool, HashError> {
    run(move || {
        let matches = verify_in_place(&pw, hash.as_deref().unwrap_or_else(|| decoy_hash()));
        matches && !pw.is_empty() && hash.is_some()
    })
    .await
}

/// The most argon2 memory one check may use (a stored hash asking for more is treated as not matching).
const MAX_BLOCKS: usize = 256 * 1024;

thread_local! {
    /// A worker's argon2 memory, kept for its every check: allocating 19 MiB per check made the
    /// allocator keep ~150 MiB per worker thread (measured under a login flood).
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// [`password::verify_password`] on this thread's reused memory.
fn verify_in_place(pw: &str, phc: &str) -> bool {
    BLOCKS.with_borrow_mut(|blocks| password::verify_password_with_memory(pw, phc, blocks, MAX_BLOCKS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[tokio::test]
    async fn beyond_workers_and_queue_calls_are_refused_at_once() {
        use std::sync::mpsc::channel;
        let limiter = Arc::new(Limiter::new(HashingLimits { workers: NonZeroUsize::MIN, queue: 1 }));
        // Two calls that block until released: one running, one waiting.
        let (release, gate) = channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let (running, is_running) = channel::<()>();
        let mut first = Box::pin(run_on(&limiter, {
            let gate = gate.clone();
            move || {
                running.send(()).unwrap();
                gate.lock().unwrap().recv().unwrap();
            }
        }));
        assert!(futures::poll!(&mut first).is_pending());
        is_running.recv().unwrap();
        // The second is queued by its first poll; the third finds the queue full.
        let mut second = Box::pin(run_on(&limiter, move || gate.lock().unwrap().recv().unwrap()));
        assert!(futures::poll!(&mut second).is_pending());
        let started = std::time::Instant::now();
        let third = run_on(&limiter, || ()).now_or_never();
        assert!(matches!(third, Some(Err(HashError::Busy))), "refused without waiting");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        release.send(()).unwrap();
        release.send(()).unwrap();
        first.await.unwrap();
        second.await.unwrap();
        assert!(run_on(&limiter, || ()).await.is_ok(), "admitted again once the work is done");
        let status = ApiError::from(HashError::Busy).to_status();
        assert_eq!((status.code, status.details.unwrap().retry_after_seconds), (429, Some(1)));
    }

    #[test]
    fn in_place_verification_agrees_with_the_password_module() {
        let hash = password::hash_password("a long enough password").unwrap();
        for (pw, phc) in [
            ("a long enough password", hash.as_str()),
            ("a long enough passworD", hash.as_str()),
            ("", hash.as_str()),
            ("a long enough password", ""),
            ("a long enough password", "not-a-phc-string"),
            ("x", "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$"),
        ] {
            assert_eq!(verify_in_place(pw, phc), password::verify_password(pw, phc), "{pw:?} {phc:?}");
        }
        // The same thread's memory serves every check.
        assert!(verify_in_place("a long enough password", &hash));
        assert!(BLOCKS.with_borrow(|b| b.len()) >= 19 * 1024);
    }

    #[tokio::test]
    async fn hashes_verify_and_unknown_users_never_match() {
        let h = hash("a long enough password".into()).await.unwrap();
        assert!(verify("a long enough password".into(), Some(h.clone())).await.unwrap());
        assert!(!verify("wrong".into(), Some(h)).await.unwrap());
        assert!(!verify("decoy password never used".into(), None).await.unwrap(), "the decoy matches nobody");
        assert!(!verify(String::new(), Some(String::new())).await.unwrap());
    }
}
