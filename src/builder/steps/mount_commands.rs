//! Steps 9 and 11: `pre_mount_commands` (`{{.Device}}`) and
//! `post_mount_commands` (`{{.Device}}`, `{{.MountPath}}`) on the host,
//! through `command_wrapper`, their output shown as it comes.

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{BuildError, BuildState};
use crate::builder::runner::{Step, StepContext};
use crate::builder::template::{Template, TemplateData};
use crate::chroot::host_shell::OutputStream;
use crate::plugin::api::BoxError;

/// Runs `pre_mount_commands`.
pub struct PreMountCommands;

/// Runs `post_mount_commands`.
pub struct PostMountCommands;

#[async_trait]
impl Step<BuildState> for PreMountCommands {
    fn name(&self) -> &'static str {
        "PreMountCommands"
    }

    async fn run(&mut self, state: &mut BuildState, ctx: &StepContext) -> Result<(), BoxError> {
        let commands = state.config.chroot.pre_mount_commands.clone();
        if commands.is_empty() {
            return Ok(());
        }
        ctx.ui.say("Running device setup commands...").await;
        let data = TemplateData {
            device: Some(device(state)?),
            ..Default::default()
        };
        run_commands(state, ctx, &commands, &data, "pre_mount_commands").await
    }
}

#[async_trait]
impl Step<BuildState> for PostMountCommands {
    fn name(&self) -> &'static str {
        "PostMountCommands"
    }

    async fn run(&mut self, state: &mut BuildState, ctx: &StepContext) -> Result<(), BoxError> {
        let commands = state.config.chroot.post_mount_commands.clone();
        if commands.is_empty() {
            return Ok(());
        }
        ctx.ui.say("Running post-mount commands...").await;
        let mount_path = state
            .mount_path
            .as_ref()
            .ok_or(BuildError::Missing("mount path"))?
            .display()
            .to_string();
        let data = TemplateData {
            device: Some(device(state)?),
            mount_path: Some(mount_path),
            ..Default::default()
        };
        run_commands(state, ctx, &commands, &data, "post_mount_commands").await
    }
}

/// `.Device`: the device name of the build (`/dev/xvdf`), as upstream.
fn device(state: &BuildState) -> Result<String, BuildError> {
    Ok(state
        .device
        .as_ref()
        .ok_or(BuildError::Missing("device"))?
        .local_name
        .display()
        .to_string())
}

async fn run_commands(
    state: &BuildState,
    ctx: &StepContext,
    commands: &[Template],
    data: &TemplateData,
    option: &'static str,
) -> Result<(), BoxError> {
    for template in commands {
        let command = template
            .render(data)
            .map_err(|source| BuildError::Render { option, source })?;
        ctx.ui
            .message(&format!("Executing command: {command}"))
            .await;
        let (tx, mut rx) = mpsc::unbounded_channel::<(OutputStream, String)>();
        let ui = ctx.ui.clone();
        let shown = tokio::spawn(async move {
            while let Some((_, line)) = rx.recv().await {
                ui.message(&line).await;
            }
        });
        let result = state.shell.run_streaming(&command, &ctx.cancel, tx).await;
        let _ = shown.await;
        result.map_err(|e| format!("Error running {option} command {command:?}: {e}"))?;
    }
    Ok(())
}
