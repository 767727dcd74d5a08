//! Step 1: fail early, before anything is created, when the AMI name is
//! taken (unless `force_deregister`) or a region is unknown (unless
//! `skip_region_validation`).

use async_trait::async_trait;

use super::{BuildError, BuildState};
use crate::aws::AwsError;
use crate::builder::runner::{Step, StepContext};
use crate::plugin::api::BoxError;

/// Checks the AMI name and the regions.
pub struct PreValidate;

#[async_trait]
impl Step<BuildState> for PreValidate {
    fn name(&self) -> &'static str {
        "PreValidate"
    }

    async fn run(&mut self, state: &mut BuildState, ctx: &StepContext) -> Result<(), BoxError> {
        let config = state.config.clone();
        if !config.ami.skip_region_validation {
            let out = state
                .ec2
                .client()
                .describe_regions()
                .all_regions(true)
                .send()
                .await
                .map_err(|e| AwsError::api("DescribeRegions", None, e))?;
            let known: Vec<String> = out
                .regions()
                .iter()
                .filter_map(|r| r.region_name().map(str::to_string))
                .collect();
            let wanted = config
                .ami
                .ami_regions
                .iter()
                .map(String::as_str)
                .chain([state.region()]);
            for region in wanted {
                if !known.iter().any(|k| k == region) {
                    return Err(BuildError::UnknownRegion {
                        region: region.to_string(),
                        known: known.join(", "),
                    }
                    .into());
                }
            }
        }
        let name = &config.ami.ami_name;
        if config.ami.force_deregister {
            ctx.ui
                .say("Force Deregister flag found, skipping prevalidating AMI Name")
                .await;
            return Ok(());
        }
        ctx.ui.say(&format!("Prevalidating AMI Name: {name}")).await;
        let out = state
            .ec2
            .client()
            .describe_images()
            .owners("self")
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("name")
                    .values(name)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| AwsError::api("DescribeImages", name.clone(), e))?;
        check_name_free(name, out.images())?;
        Ok(())
    }
}

/// Fails when an AMI of this account already carries the name.
fn check_name_free(name: &str, owned: &[aws_sdk_ec2::types::Image]) -> Result<(), BuildError> {
    match owned.first() {
        Some(image) => Err(BuildError::AmiNameTaken {
            name: name.to_string(),
            ami: image.image_id().unwrap_or("?").to_string(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::Image;

    #[test]
    fn taken_ami_name_suggests_force_deregister_or_another_name() {
        let owned = [Image::builder().image_id("ami-0old").build()];
        let e = check_name_free("web-ami", &owned).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Error: AMI Name: 'web-ami' is used by an existing AMI: ami-0old. Set \
             force_deregister to true to replace it, or change ami_name."
        );
        assert!(check_name_free("web-ami", &[]).is_ok());
    }
}
