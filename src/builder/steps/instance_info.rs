//! Step 2: which EC2 instance this build runs on (IMDS, v2 then v1), and
//! its details from DescribeInstances (AZ, attached devices). Upstream
//! swallowed the real IMDS error; here it is shown.

use async_trait::async_trait;

use super::{BuildError, BuildState};
use crate::aws::{AwsError, Imds};
use crate::builder::runner::{Step, StepContext};
use crate::plugin::api::BoxError;

/// Finds this instance.
pub struct InstanceInfo;

/// Why the instance could not be identified.
#[derive(Debug, thiserror::Error)]
#[error("Error retrieving the ID of the instance Packer is running on: {source}")]
pub struct NotOnEc2 {
    /// What the metadata service (or reaching it) answered; it names the
    /// endpoint and the likely fixes.
    source: crate::aws::ImdsError,
}

#[async_trait]
impl Step<BuildState> for InstanceInfo {
    fn name(&self) -> &'static str {
        "InstanceInfo"
    }

    async fn run(&mut self, state: &mut BuildState, ctx: &StepContext) -> Result<(), BoxError> {
        ctx.ui
            .say("Gathering information about this EC2 instance...")
            .await;
        let imds = Imds::from_env()?;
        let instance_id = imds
            .instance_id()
            .await
            .map_err(|source| NotOnEc2 { source })?;
        let out = state
            .ec2
            .client()
            .describe_instances()
            .instance_ids(&instance_id)
            .send()
            .await
            .map_err(|e| AwsError::api("DescribeInstances", instance_id.clone(), e))?;
        let instance = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(instance_id.as_str()))
            .cloned()
            .ok_or_else(|| {
                BuildError::Invalid(format!(
                    "Error getting instance data: DescribeInstances does not know {instance_id} in {}",
                    state.region()
                ))
            })?;
        tracing::info!(instance = %instance_id, az = ?instance.placement().and_then(|p| p.availability_zone()), "running on this instance");
        state.instance = Some(instance);
        Ok(())
    }
}
