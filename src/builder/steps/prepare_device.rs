//! Step 5: the device name to attach as: `device_path`, or the first
//! letter free both on this host and in the instance's EC2 block device
//! mappings (upstream checked only `/dev`).

use std::path::Path;

use async_trait::async_trait;

use super::BuildState;
use crate::aws::AwsError;
use crate::builder::runner::{Step, StepContext};
use crate::chroot::device::{choose_device_path, pick_free_device};
use crate::plugin::api::{BoxError, Value};

/// Chooses the attachment point.
pub struct PrepareDevice;

#[async_trait]
impl Step<BuildState> for PrepareDevice {
    fn name(&self) -> &'static str {
        "PrepareDevice"
    }

    async fn run(&mut self, state: &mut BuildState, ctx: &StepContext) -> Result<(), BoxError> {
        let instance_id = state.instance_id()?;
        // Fresh mappings: another build may have attached since step 2.
        let out = state
            .ec2
            .client()
            .describe_instances()
            .instance_ids(&instance_id)
            .send()
            .await
            .map_err(|e| AwsError::api("DescribeInstances", instance_id.clone(), e))?;
        let attached: Vec<String> = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .flat_map(|i| i.block_device_mappings())
            .filter_map(|m| m.device_name().map(str::to_string))
            .collect();
        let device_path = &state.config.chroot.device_path;
        let choice = if device_path.is_empty() {
            pick_free_device(Path::new("/dev"), &attached)?
        } else {
            choose_device_path(device_path, &attached)?
        };
        ctx.ui
            .say(&format!(
                "Device: {} (attached as {})",
                choice.local_name.display(),
                choice.api_name
            ))
            .await;
        state.generated_data.insert(
            "Device".to_string(),
            Value::String(choice.local_name.display().to_string()),
        );
        state.device = Some(choice);
        Ok(())
    }
}
