//! Step 22: `tags` on every AMI and its snapshots, then `snapshot_tags` on
//! the snapshots, rendered with the build info.

use std::time::Duration;

use async_trait::async_trait;

use super::create_volume::ec2_tags;
use super::{BuildError, BuildState};
use crate::aws::AwsError;
use crate::builder::runner::{Step, StepContext};
use crate::plugin::api::BoxError;

/// EC2 may not know a just-copied AMI's snapshot for a few seconds.
const NOT_FOUND_RETRIES: u32 = 10;

/// Tags the AMIs and snapshots.
pub struct CreateTags;

#[async_trait]
impl Step<BuildState> for CreateTags {
    fn name(&self) -> &'static str {
        "CreateTags"
    }

    async fn run(&mut self, state: &mut BuildState, ctx: &StepContext) -> Result<(), BoxError> {
        let config = state.config.clone();
        if config.ami.tags.is_empty() && config.snapshot.snapshot_tags.is_empty() {
            return Ok(());
        }
        let data = state.build_info_data();
        let ami_tags = config
            .ami
            .tags
            .render(&data)
            .map_err(|source| BuildError::Render {
                option: "tags",
                source,
            })?;
        let snapshot_tags = config
            .snapshot
            .snapshot_tags
            .render(&data)
            .map_err(|source| BuildError::Render {
                option: "snapshot_tags",
                source,
            })?;
        for (region, ami) in &state.amis {
            ctx.ui
                .say(&format!("Adding tags to AMI ({ami}) in {region}..."))
                .await;
            let ec2 = state.ec2.in_region(region);
            let snapshots = state.snapshots.get(region).cloned().unwrap_or_default();
            for (k, v) in &ami_tags {
                ctx.ui
                    .message(&format!("Adding tag: \"{k}\": \"{v}\""))
                    .await;
            }
            let mut resources = vec![ami.clone()];
            resources.extend(snapshots.iter().cloned());
            if !ami_tags.is_empty() {
                tag(&ec2, &resources, &ami_tags).await?;
            }
            if !snapshot_tags.is_empty() && !snapshots.is_empty() {
                ctx.ui.say("Adding tags to snapshots...").await;
                tag(&ec2, &snapshots, &snapshot_tags).await?;
            }
        }
        Ok(())
    }
}

async fn tag(
    ec2: &crate::aws::Ec2,
    resources: &[String],
    tags: &std::collections::BTreeMap<String, String>,
) -> Result<(), AwsError> {
    let mut attempt = 0;
    loop {
        let result = ec2
            .client()
            .create_tags()
            .set_resources(Some(resources.to_vec()))
            .set_tags(Some(ec2_tags(tags)))
            .send()
            .await
            .map_err(|e| AwsError::api("CreateTags", resources.join(","), e));
        match result {
            Ok(_) => return Ok(()),
            Err(e) if e.is_not_found() && attempt < NOT_FOUND_RETRIES => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
            Err(e) => return Err(e),
        }
    }
}
