//! Step 17: with `force_deregister`, remove existing AMIs of the same name
//! where this build makes one (the build region unless
//! `skip_save_build_region`, and every `ami_regions` region), and with
//! `force_delete_snapshot` their snapshots. An AMI of that name in a build
//! region the build does not save into is left alone: nothing replaces it.

use async_trait::async_trait;
use aws_sdk_ec2::types::Filter;

use super::pre_validate::ami_name_regions;
use super::{delete_snapshot, BuildError, BuildState};
use crate::aws::AwsError;
use crate::builder::runner::{Step, StepContext};
use crate::plugin::api::BoxError;

/// Deregisters AMIs with the target name.
pub struct DeregisterOldAmi;

#[async_trait]
impl Step<BuildState> for DeregisterOldAmi {
    fn name(&self) -> &'static str {
        "DeregisterOldAmi"
    }

    async fn run(&mut self, state: &mut BuildState, ctx: &StepContext) -> Result<(), BoxError> {
        let config = state.config.clone();
        if !config.ami.force_deregister {
            return Ok(());
        }
        let regions = ami_name_regions(&config, state.region());
        let name = &config.ami.ami_name;
        let mut errors = Vec::new();
        for region in regions {
            let ec2 = state.ec2.in_region(&region);
            let out = ec2
                .client()
                .describe_images()
                .owners("self")
                .filters(Filter::builder().name("name").values(name).build())
                .send()
                .await
                .map_err(|e| AwsError::api("DescribeImages", name.clone(), e))?;
            for image in out.images() {
                let id = image.image_id().unwrap_or_default();
                if let Err(e) = ec2.client().deregister_image().image_id(id).send().await {
                    errors.push(AwsError::api("DeregisterImage", id.to_string(), e).to_string());
                    continue;
                }
                ctx.ui
                    .say(&format!("Deregistered AMI {name}, id: {id} in {region}"))
                    .await;
                if config.ami.force_delete_snapshot {
                    for m in image.block_device_mappings() {
                        if let Some(snap) = m.ebs().and_then(|e| e.snapshot_id()) {
                            match delete_snapshot(&ec2, snap).await {
                                Ok(()) => ctx.ui.say(&format!("Deleted snapshot: {snap}")).await,
                                Err(e) => errors.push(e.to_string()),
                            }
                        }
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(BuildError::Several(errors).into())
        }
    }
}
