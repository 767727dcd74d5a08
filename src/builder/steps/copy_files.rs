//! Step 13: `copy_files` (by default the host's /etc/resolv.conf) into the
//! chroot; cleanup puts the image's originals back exactly (a symlink stays
//! that symlink; upstream deleted it).

use async_trait::async_trait;

use super::{BuildError, BuildState};
use crate::builder::runner::{Outcome, Step, StepContext};
use crate::chroot::copy_files::CopiedFiles;
use crate::plugin::api::BoxError;

/// Copies host files in.
pub struct CopyFiles;

#[async_trait]
impl Step<BuildState> for CopyFiles {
    fn name(&self) -> &'static str {
        "CopyFiles"
    }

    async fn run(&mut self, state: &mut BuildState, ctx: &StepContext) -> Result<(), BoxError> {
        let files = state.config.copy_files().to_vec();
        if files.is_empty() {
            return Ok(());
        }
        let root = state
            .mount_path
            .clone()
            .ok_or(BuildError::Missing("mount path"))?;
        ctx.ui.say("Copying files from host to chroot...").await;
        for f in &files {
            ctx.ui.message(&f.to_string()).await;
        }
        state.copied_files = Some(CopiedFiles::copy_in(&root, &files).await?);
        Ok(())
    }

    async fn cleanup(
        &mut self,
        state: &mut BuildState,
        ctx: &StepContext,
        _outcome: Outcome,
    ) -> Result<(), BoxError> {
        restore(state, ctx).await
    }
}

/// Puts the originals back if copies are in place (also the early cleanup).
pub async fn restore(state: &mut BuildState, ctx: &StepContext) -> Result<(), BoxError> {
    if let Some(copied) = state.copied_files.take() {
        ctx.ui
            .say("Restoring the files copied into the chroot...")
            .await;
        copied.restore().await?;
    }
    Ok(())
}
