//! Step 10: mount the volume (its `mount_partition` for HVM images) at
//! `mount_path`; cleanup unmounts everything below it in reverse order,
//! ending processes that keep it busy.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::types::VirtualizationType;

use super::{BuildError, BuildState};
use crate::builder::runner::{Outcome, Step, StepContext};
use crate::builder::template::TemplateData;
use crate::chroot::mounts::{mount_points, unmount_all_under, BusyPolicy, ProcessInfo};
use crate::chroot::ChrootMounts;
use crate::plugin::api::{BoxError, Value};

/// The kernel adds partition nodes right after the disk; a partition table
/// that takes longer than this to show is not there.
const PARTITION_TIMEOUT: Duration = Duration::from_secs(30);

/// Mounts the root volume.
pub struct MountDevice;

#[async_trait]
impl Step<BuildState> for MountDevice {
    fn name(&self) -> &'static str {
        "MountDevice"
    }

    async fn run(&mut self, state: &mut BuildState, ctx: &StepContext) -> Result<(), BoxError> {
        let config = state.config.clone();
        let device = state
            .local_device
            .clone()
            .ok_or(BuildError::Missing("attached device"))?;
        let chosen = state.device.clone().ok_or(BuildError::Missing("device"))?;
        // `.Device` of mount_path is a short name (`xvdf`), as upstream.
        let short_source = if config.chroot.nvme_device_path.is_empty() {
            chosen.local_name.clone()
        } else {
            PathBuf::from(&config.chroot.nvme_device_path)
        };
        let short = short_source
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mount_path = config
            .chroot
            .mount_path
            .render(&TemplateData {
                device: Some(short),
                ..Default::default()
            })
            .map_err(|source| BuildError::Render {
                option: "mount_path",
                source,
            })?;
        let hvm = match config.ami.ami_virtualization_type.as_str() {
            "" => state
                .source_image
                .as_ref()
                .is_none_or(|i| i.virtualization_type() == Some(&VirtualizationType::Hvm)),
            t => t == "hvm",
        };
        let partition = config.chroot.mount_partition.as_str();
        let node = if hvm && !partition.is_empty() && partition != "0" {
            device
                .wait_for_partition(partition, PARTITION_TIMEOUT, &ctx.cancel)
                .await?
        } else {
            device.path.clone()
        };
        ctx.ui
            .say(&format!(
                "Mounting the root device {} at {mount_path}",
                node.display()
            ))
            .await;
        let mounts = ChrootMounts::mount_root(
            state.shell.clone(),
            &node,
            Path::new(&mount_path),
            &config.chroot.mount_options,
            &ctx.cancel,
        )
        .await?;
        let root = mounts.root().to_path_buf();
        state.generated_data.insert(
            "MountPath".to_string(),
            Value::String(root.display().to_string()),
        );
        state.mount_path = Some(root);
        state.mounts = Some(mounts);
        Ok(())
    }

    async fn cleanup(
        &mut self,
        state: &mut BuildState,
        ctx: &StepContext,
        _outcome: Outcome,
    ) -> Result<(), BoxError> {
        unmount(state, ctx).await
    }
}

/// Names the processes the provisioners left behind and how to avoid them.
fn terminated_message(terminated: &[ProcessInfo]) -> String {
    let names: Vec<String> = terminated.iter().map(ToString::to_string).collect();
    format!(
        "Terminated processes still running in the chroot: {}. A provisioner started them \
         (often a service started by a package install): stop them at the end of provisioning, \
         or keep services from starting in the chroot (on Debian/Ubuntu a \
         /usr/sbin/policy-rc.d that exits 101).",
        names.join(", ")
    )
}

/// Unmounts the chroot (extra mounts first, deepest first, the root last),
/// if it is mounted; also used by the early cleanup.
pub async fn unmount(state: &mut BuildState, ctx: &StepContext) -> Result<(), BoxError> {
    let Some(mut mounts) = state.mounts.take() else {
        return Ok(());
    };
    ctx.ui.say("Unmounting the root device...").await;
    match mounts.unmount_all().await {
        Ok(report) => {
            if !report.terminated.is_empty() {
                ctx.ui
                    .message(&terminated_message(&report.terminated))
                    .await;
            }
            Ok(())
        }
        Err(first) => {
            // One more pass over whatever is still mounted below the root:
            // processes terminated in the first pass may have needed a moment.
            let root = mounts.root().to_path_buf();
            tracing::warn!(root = %root.display(), error = %first, "unmounting again");
            match unmount_all_under(&state.shell, &root, &BusyPolicy::default()).await {
                Ok(_) if mount_points().is_ok_and(|m| !m.iter().any(|p| p.starts_with(&root))) => {
                    Ok(())
                }
                Ok(_) => Err(format!("Error unmounting the chroot: {first}").into()),
                Err(second) => {
                    Err(format!("Error unmounting the chroot: {first}; again: {second}").into())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminated_processes_are_named_with_how_to_keep_services_out() {
        let shown = terminated_message(&[
            ProcessInfo {
                pid: 41,
                comm: "nginx".into(),
            },
            ProcessInfo {
                pid: 42,
                comm: "sleep".into(),
            },
        ]);
        assert_eq!(
            shown,
            "Terminated processes still running in the chroot: pid 41 (nginx), pid 42 (sleep). \
             A provisioner started them (often a service started by a package install): stop \
             them at the end of provisioning, or keep services from starting in the chroot (on \
             Debian/Ubuntu a /usr/sbin/policy-rc.d that exits 101)."
        );
    }
}
