//! Step 7: attach the working volume (API name `/dev/sdX`), wait until EC2
//! says attached, then find its local node by volume id first (Nitro's
//! by-id link or NVMe serial), then by the Xen names. Cleanup detaches.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;

use super::{BuildError, BuildState};
use crate::aws::AwsError;
use crate::builder::runner::{Outcome, Step, StepContext};
use crate::chroot::device::AttachedDeviceQuery;
use crate::plugin::api::BoxError;

/// udev creates the node within seconds of EC2 reporting the attachment;
/// two minutes covers slow hosts and still fails a lost device clearly.
const DEVICE_NODE_TIMEOUT: Duration = Duration::from_secs(120);

/// Says what to do when EC2 refuses the device name because another volume
/// holds it ("Attachment point /dev/sdf is already in use").
fn attach_error(api_name: &str, err: AwsError) -> BuildError {
    let in_use = matches!(&err, AwsError::Api { message, .. }
        if message.contains("Attachment point") && message.contains("already in use"));
    if in_use {
        BuildError::AttachmentPointInUse {
            device: api_name.to_string(),
            source: Box::new(err),
        }
    } else {
        BuildError::Aws(err)
    }
}

/// Attaches the working volume to this instance.
pub struct AttachVolume;

#[async_trait]
impl Step<BuildState> for AttachVolume {
    fn name(&self) -> &'static str {
        "AttachVolume"
    }

    async fn run(&mut self, state: &mut BuildState, ctx: &StepContext) -> Result<(), BoxError> {
        let volume_id = state.volume_id()?;
        let instance_id = state.instance_id()?;
        let device = state.device.clone().ok_or(BuildError::Missing("device"))?;
        ctx.ui
            .say(&format!("Attaching the root volume to {}", device.api_name))
            .await;
        state
            .ec2
            .client()
            .attach_volume()
            .instance_id(&instance_id)
            .volume_id(&volume_id)
            .device(&device.api_name)
            .send()
            .await
            .map_err(|e| {
                attach_error(
                    &device.api_name,
                    AwsError::api("AttachVolume", volume_id.clone(), e),
                )
            })?;
        state.attached = true;
        state
            .ec2
            .wait_volume_attached(&state.poller, &volume_id, &instance_id)
            .await?;
        let nvme = Some(&state.config.chroot.nvme_device_path)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        let query = AttachedDeviceQuery::new(&volume_id, &device.api_name, nvme);
        let found = query.wait(DEVICE_NODE_TIMEOUT, &ctx.cancel).await?;
        ctx.ui
            .message(&format!(
                "Volume {volume_id} is {} on this host",
                found.path.display()
            ))
            .await;
        state.local_device = Some(found);
        Ok(())
    }

    async fn cleanup(
        &mut self,
        state: &mut BuildState,
        ctx: &StepContext,
        _outcome: Outcome,
    ) -> Result<(), BoxError> {
        detach(state, ctx).await
    }
}

/// Detaches the working volume if it is attached and waits until it is
/// (also used by the early cleanup before the snapshot).
pub async fn detach(state: &mut BuildState, ctx: &StepContext) -> Result<(), BoxError> {
    if !state.attached {
        return Ok(());
    }
    let volume_id = state.volume_id()?;
    ctx.ui.say("Detaching EBS volume...").await;
    if let Err(e) = state
        .ec2
        .client()
        .detach_volume()
        .volume_id(&volume_id)
        .send()
        .await
    {
        let e = AwsError::api("DetachVolume", volume_id.clone(), e);
        // Not attached (any more) is what we want.
        if !(e.is_not_found() || e.code() == Some("IncorrectState")) {
            return Err(format!("Error detaching EBS volume: {e}").into());
        }
    }
    let poller = super::cleanup_poller(&state.poller);
    state.ec2.wait_volume_detached(&poller, &volume_id).await?;
    state.attached = false;
    state.local_device = None;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(message: &str) -> AwsError {
        AwsError::Api {
            operation: "AttachVolume",
            resource: Some("vol-1".into()),
            code: Some("InvalidParameterValue".into()),
            message: message.into(),
            decoded: None,
            retryable: false,
        }
    }

    #[test]
    fn attachment_point_in_use_says_how_to_pick_another_device() {
        let e = attach_error(
            "/dev/sdf",
            refused("Invalid value '/dev/sdf' for unixDevice. Attachment point /dev/sdf is already in use"),
        );
        assert_eq!(
            e.to_string(),
            "AttachVolume on vol-1 failed: InvalidParameterValue: Invalid value '/dev/sdf' for \
             unixDevice. Attachment point /dev/sdf is already in use. Another volume is attached \
             at /dev/sdf (a parallel build, or one left by an earlier build): leave device_path \
             empty to pick a free device, set it to a free /dev/sd[f-p] name, or wait for the \
             other build to finish."
        );
        let other = attach_error("/dev/sdf", refused("Volume is in the wrong state"));
        assert!(matches!(other, BuildError::Aws(_)), "{other}");
    }
}
