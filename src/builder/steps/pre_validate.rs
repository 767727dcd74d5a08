//! Step 1: fail early, before anything is created, when the AMI name is
//! taken (unless `force_deregister`) or a region is unknown (unless
//! `skip_region_validation`).
//!
//! The name is checked where an AMI of that name will be made: the build
//! region (unless `skip_save_build_region`: there only an intermediary with
//! a random name exists, so an AMI already named `ami_name` there is no
//! conflict) and every `ami_regions` region, where CopyImage would
//! otherwise refuse the name only after the whole build (upstream checks
//! the build region only, and the chroot builder ignores
//! `skip_save_build_region` here).

use async_trait::async_trait;

use super::{BuildError, BuildState};
use crate::aws::AwsError;
use crate::builder::config::Config;
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
        for region in ami_name_regions(&config, state.region()) {
            let ec2 = state.ec2.in_region(&region);
            let out = ec2
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
                .map_err(|e| AwsError::api("DescribeImages", format!("{name} in {region}"), e))?;
            check_name_free(name, &region, out.images())?;
        }
        Ok(())
    }
}

/// The regions where the build makes an AMI named `ami_name`: the build
/// region unless `skip_save_build_region`, then each `ami_regions` entry once.
pub fn ami_name_regions(config: &Config, build_region: &str) -> Vec<String> {
    let mut regions = Vec::new();
    if !config.ami.skip_save_build_region {
        regions.push(build_region.to_string());
    }
    for region in &config.ami.ami_regions {
        if region != build_region && !regions.contains(region) {
            regions.push(region.clone());
        }
    }
    regions
}

/// Fails when an AMI of this account in `region` already carries the name.
fn check_name_free(
    name: &str,
    region: &str,
    owned: &[aws_sdk_ec2::types::Image],
) -> Result<(), BuildError> {
    match owned.first() {
        Some(image) => Err(BuildError::AmiNameTaken {
            name: name.to_string(),
            ami: format!("{} in {region}", image.image_id().unwrap_or("?")),
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
        let e = check_name_free("web-ami", "eu-west-1", &owned).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Error: AMI Name: 'web-ami' is used by an existing AMI: ami-0old in eu-west-1. Set \
             force_deregister to true to replace it, or change ami_name."
        );
        assert!(check_name_free("web-ami", "eu-west-1", &[]).is_ok());
    }

    use super::super::test_config as config;

    #[test]
    fn the_name_is_checked_in_the_build_region_and_every_copy_region() {
        let c = config(serde_json::json!({"ami_regions": ["eu-west-1", "us-east-1", "us-west-2"]}));
        assert_eq!(
            ami_name_regions(&c, "us-east-1"),
            ["us-east-1", "eu-west-1", "us-west-2"]
        );
    }

    #[test]
    fn skip_save_build_region_leaves_the_build_region_name_alone() {
        let c = config(serde_json::json!({
            "skip_save_build_region": true,
            "ami_regions": ["eu-west-1", "us-west-2"]
        }));
        assert_eq!(
            ami_name_regions(&c, "us-east-1"),
            ["eu-west-1", "us-west-2"]
        );
    }
}
