//! Steps 4 and 8: the host-wide device lock, taken before a device name is
//! chosen and released only once the attached volume is visible locally
//! (upstream released it right after AttachVolume returned, so a second
//! build could pick the same name while the first was still appearing).

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;

use super::BuildState;
use crate::builder::runner::{Outcome, Step, StepContext};
use crate::chroot::lock::DEFAULT_LOCK_PATH;
use crate::chroot::DeviceLock;
use crate::plugin::api::BoxError;

/// Builds queue on the lock for as long as the holder needs to attach;
/// an hour means a stuck holder, not a busy host. Ctrl-C ends the wait.
const LOCK_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// Takes the device lock.
pub struct TakeDeviceLock;

#[async_trait]
impl Step<BuildState> for TakeDeviceLock {
    fn name(&self) -> &'static str {
        "DeviceLock"
    }

    async fn run(&mut self, state: &mut BuildState, ctx: &StepContext) -> Result<(), BoxError> {
        ctx.ui
            .say(&format!(
                "Waiting for the device lock {DEFAULT_LOCK_PATH}..."
            ))
            .await;
        let lock =
            DeviceLock::acquire(Path::new(DEFAULT_LOCK_PATH), LOCK_TIMEOUT, &ctx.cancel).await?;
        state.lock = Some(lock);
        Ok(())
    }

    async fn cleanup(
        &mut self,
        state: &mut BuildState,
        _ctx: &StepContext,
        _outcome: Outcome,
    ) -> Result<(), BoxError> {
        if let Some(mut lock) = state.lock.take() {
            lock.release();
        }
        Ok(())
    }
}

/// Releases the device lock once the attached volume has its local node.
pub struct EarlyUnlock;

#[async_trait]
impl Step<BuildState> for EarlyUnlock {
    fn name(&self) -> &'static str {
        "EarlyUnlock"
    }

    async fn run(&mut self, state: &mut BuildState, _ctx: &StepContext) -> Result<(), BoxError> {
        if let Some(mut lock) = state.lock.take() {
            lock.release();
        }
        Ok(())
    }
}
