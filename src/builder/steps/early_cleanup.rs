//! Step 15: before the snapshot, undo the chroot: put copied files back,
//! unmount everything, detach the volume. Every part is attempted; all
//! failures are reported.

use async_trait::async_trait;

use super::{attach_volume, copy_files, mount_device, BuildError, BuildState};
use crate::builder::runner::{Step, StepContext};
use crate::plugin::api::BoxError;

/// Restores, unmounts and detaches.
pub struct EarlyCleanup;

#[async_trait]
impl Step<BuildState> for EarlyCleanup {
    fn name(&self) -> &'static str {
        "EarlyCleanup"
    }

    async fn run(&mut self, state: &mut BuildState, ctx: &StepContext) -> Result<(), BoxError> {
        let mut errors = Vec::new();
        if let Err(e) = copy_files::restore(state, ctx).await {
            errors.push(e.to_string());
        }
        if let Err(e) = mount_device::unmount(state, ctx).await {
            errors.push(e.to_string());
        }
        // Detaching a volume that is still mounted would hang until EC2 gives up.
        if errors.is_empty() {
            if let Err(e) = attach_volume::detach(state, ctx).await {
                errors.push(e.to_string());
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(BuildError::Several(
                errors
                    .into_iter()
                    .map(|e| format!("Error cleaning up: {e}"))
                    .collect(),
            )
            .into())
        }
    }
}
