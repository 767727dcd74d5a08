//! Step 20: `deprecate_at` and `deregistration_protection` on every AMI of
//! the build.

use async_trait::async_trait;
use aws_smithy_types::DateTime;

use super::{BuildError, BuildState};
use crate::aws::AwsError;
use crate::builder::runner::{Step, StepContext};
use crate::plugin::api::BoxError;

/// Sets deprecation time and deregistration protection.
pub struct DeprecateAndProtect;

#[async_trait]
impl Step<BuildState> for DeprecateAndProtect {
    fn name(&self) -> &'static str {
        "DeprecateAndProtect"
    }

    async fn run(&mut self, state: &mut BuildState, ctx: &StepContext) -> Result<(), BoxError> {
        let config = state.config.clone();
        let a = &config.ami;
        if !a.deprecate_at.is_empty() {
            let at = DateTime::from_str(
                &a.deprecate_at,
                aws_smithy_types::date_time::Format::DateTime,
            )
            .map_err(|e| BuildError::Invalid(format!("deprecate_at {:?}: {e}", a.deprecate_at)))?;
            for (region, ami) in &state.amis {
                ctx.ui
                    .say(&format!(
                        "Enabling deprecation of {ami} in {region} at {}",
                        a.deprecate_at
                    ))
                    .await;
                state
                    .ec2
                    .in_region(region)
                    .client()
                    .enable_image_deprecation()
                    .image_id(ami)
                    .deprecate_at(at)
                    .send()
                    .await
                    .map_err(|e| AwsError::api("EnableImageDeprecation", ami.clone(), e))?;
            }
        }
        if a.deregistration_protection.enabled {
            for (region, ami) in &state.amis {
                ctx.ui
                    .say(&format!(
                        "Enabling deregistration protection of {ami} in {region}"
                    ))
                    .await;
                state
                    .ec2
                    .in_region(region)
                    .client()
                    .enable_image_deregistration_protection()
                    .image_id(ami)
                    .with_cooldown(a.deregistration_protection.with_cooldown)
                    .send()
                    .await
                    .map_err(|e| {
                        AwsError::api("EnableImageDeregistrationProtection", ami.clone(), e)
                    })?;
            }
        }
        Ok(())
    }
}
