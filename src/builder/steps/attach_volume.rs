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
            .map_err(|e| AwsError::api("AttachVolume", volume_id.clone(), e))?;
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
