//! Step 12: `chroot_mounts` inside the chroot (proc, sysfs, /dev, devpts,
//! binfmt_misc by default). They come off with the root mount's cleanup.

use async_trait::async_trait;

use super::{BuildError, BuildState};
use crate::builder::runner::{Step, StepContext};
use crate::chroot::mounts::ExtraMount;
use crate::plugin::api::BoxError;

/// Mounts the extra filesystems.
pub struct MountExtra;

#[async_trait]
impl Step<BuildState> for MountExtra {
    fn name(&self) -> &'static str {
        "MountExtra"
    }

    async fn run(&mut self, state: &mut BuildState, ctx: &StepContext) -> Result<(), BoxError> {
        let extra = state
            .config
            .chroot
            .chroot_mounts
            .iter()
            .map(|m| ExtraMount::from_list(m))
            .collect::<Result<Vec<_>, _>>()?;
        ctx.ui
            .say("Mounting additional paths within the chroot...")
            .await;
        for m in &extra {
            ctx.ui.message(&format!("Mounting: {}", m.dest)).await;
        }
        let mounts = state
            .mounts
            .as_mut()
            .ok_or(BuildError::Missing("root mount"))?;
        mounts.mount_extra(&extra, &ctx.cancel).await?;
        Ok(())
    }
}
