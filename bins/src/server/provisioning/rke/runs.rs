//! The provisioning runs in flight, one per cluster: started by `reconcile`, reported by later calls,
//! replaced when the cluster's config changes, cancelled when the cluster goes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use rancher_core::model::{Cluster, RkeConfig};
use rancher_provision::ProvisionError;
use rancher_provision::bundle::Bundle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::board::Board;
use super::run::{self, RunCtx};

/// One run.
struct Run {
    /// The config it provisions.
    config: RkeConfig,
    board: Arc<Board>,
    cancel: CancellationToken,
    task: JoinHandle<Result<(), ProvisionError>>,
    /// It finished without error.
    succeeded: bool,
    /// It failed with this; kept for one more poll, so that the board as the failure left it (the
    /// failed step and its message) is reported before the failure is.
    failed: Option<ProvisionError>,
}

impl Drop for Run {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Where a cluster's run stands.
pub(super) enum RunState {
    /// Under way (or just started).
    Running(Arc<Board>),
    /// Finished: every host runs its plan.
    Provisioned(Arc<Board>),
    /// Just failed: the board says where; the failure follows on the next poll.
    Failing(Arc<Board>),
    /// Failed; the next `reconcile` starts a new run.
    Failed(ProvisionError),
}

/// The runs by cluster uid.
#[derive(Default)]
pub(super) struct Runs {
    by_uid: Mutex<HashMap<String, Run>>,
}

impl Runs {
    /// Where the run of `cluster` for `config` stands, starting one if there is none for this config.
    pub(super) fn poll(
        &self,
        ctx: &Arc<RunCtx>,
        cluster: &Cluster,
        config: &RkeConfig,
        bundle: Arc<Bundle>,
    ) -> RunState {
        let mut runs = self.by_uid.lock().unwrap_or_else(PoisonError::into_inner);
        let uid = cluster.metadata.uid.clone();
        if let Some(run) = runs.get_mut(&uid).filter(|r| &r.config == config) {
            let board = run.board.clone();
            if run.succeeded {
                return RunState::Provisioned(board);
            }
            if let Some(e) = run.failed.take() {
                runs.remove(&uid);
                return RunState::Failed(e);
            }
            if !run.task.is_finished() {
                return RunState::Running(board);
            }
            let result = match futures::FutureExt::now_or_never(&mut run.task) {
                Some(Ok(result)) => result,
                Some(Err(join)) => {
                    Err(ProvisionError::permanent(format!("the provisioning run failed: {join}")))
                }
                None => return RunState::Running(board),
            };
            return match result {
                Ok(()) => {
                    run.succeeded = true;
                    RunState::Provisioned(board)
                }
                Err(ProvisionError::Cancelled) => {
                    runs.remove(&uid);
                    RunState::Failed(ProvisionError::Cancelled)
                }
                Err(e) => {
                    run.failed = Some(e);
                    RunState::Failing(board)
                }
            };
        }
        let board = Arc::new(Board::new(run::steps(config)));
        let cancel = CancellationToken::new();
        let task = {
            let (ctx, cluster, config, board, cancel) =
                (ctx.clone(), cluster.clone(), config.clone(), board.clone(), cancel.clone());
            tokio::spawn(
                async move { run::provision(&ctx, &cluster, &config, &bundle, &board, &cancel).await },
            )
        };
        runs.insert(
            uid,
            Run {
                config: config.clone(),
                board: board.clone(),
                cancel,
                task,
                succeeded: false,
                failed: None,
            },
        );
        RunState::Running(board)
    }

    /// Cancels the run of the cluster with `uid`, if any.
    pub(super) fn cancel(&self, uid: &str) {
        self.by_uid.lock().unwrap_or_else(PoisonError::into_inner).remove(uid);
    }
}
