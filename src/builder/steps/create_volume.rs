//! Step 6: the working volume, made from the source AMI's root snapshot
//! (or empty with `from_scratch`) in this instance's AZ. Its cleanup
//! deletes it, on success too: the AMI keeps only the snapshot.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_ec2::types::{Image, ResourceType, Tag, TagSpecification, VolumeType};

use super::{BuildError, BuildState};
use crate::aws::AwsError;
use crate::builder::config::Config;
use crate::builder::runner::{Outcome, Step, StepContext};
use crate::plugin::api::BoxError;

/// Creates the working volume.
pub struct CreateVolume;

/// What CreateVolume is called with (a plain struct, so the rules are testable).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VolumeParams {
    /// Size in GiB (`None`: the snapshot's).
    pub size: Option<i32>,
    /// The snapshot to restore (`None` with `from_scratch`).
    pub snapshot_id: Option<String>,
    /// EBS volume type.
    pub volume_type: Option<String>,
    /// Provisioned IOPS.
    pub iops: Option<i32>,
    /// gp3 throughput in MiB/s.
    pub throughput: Option<i32>,
    /// Encrypt the volume.
    pub encrypted: Option<bool>,
    /// KMS key of the encryption.
    pub kms_key_id: Option<String>,
}

/// The volume's parameters: the source's root mapping, grown to
/// `root_volume_size`, retyped to `root_volume_type`, encrypted when asked.
pub fn volume_params(config: &Config, source: Option<&Image>) -> Result<VolumeParams, BuildError> {
    let c = &config.chroot;
    let mut p = VolumeParams::default();
    match source {
        None => {
            p.size = Some(c.root_volume_size as i32);
            p.volume_type = Some(if c.root_volume_type.is_empty() {
                "gp2".to_string()
            } else {
                c.root_volume_type.clone()
            });
        }
        Some(image) => {
            let root = image.root_device_name().unwrap_or_default();
            let ebs = image
                .block_device_mappings()
                .iter()
                .find(|m| m.device_name() == Some(root))
                .and_then(|m| m.ebs())
                .ok_or_else(|| BuildError::NoRootMapping {
                    ami: image.image_id().unwrap_or_default().to_string(),
                    root: root.to_string(),
                })?;
            p.size = ebs.volume_size();
            p.snapshot_id = ebs.snapshot_id().map(str::to_string);
            p.volume_type = ebs.volume_type().map(|t| t.as_str().to_string());
            p.iops = ebs.iops();
            p.throughput = ebs.throughput();
            p.encrypted = ebs.encrypted();
            p.kms_key_id = ebs.kms_key_id().map(str::to_string);
            if c.root_volume_size > i64::from(p.size.unwrap_or(0)) {
                p.size = Some(c.root_volume_size as i32);
            }
            if !c.root_volume_type.is_empty()
                && p.volume_type.as_deref() != Some(c.root_volume_type.as_str())
            {
                p.volume_type = Some(c.root_volume_type.clone());
                // The source's IOPS and throughput belong to its type.
                p.iops = None;
                p.throughput = None;
            }
        }
    }
    if c.root_volume_encrypt_boot.is_true() {
        p.encrypted = Some(true);
    }
    if !c.root_volume_kms_key_id.is_empty() {
        p.kms_key_id = Some(c.root_volume_kms_key_id.clone());
    }
    // Only these types take IOPS; gp2/st1/sc1/standard refuse the field.
    if !matches!(p.volume_type.as_deref(), Some("io1" | "io2" | "gp3")) {
        p.iops = None;
    }
    if p.volume_type.as_deref() != Some("gp3") {
        p.throughput = None;
    }
    Ok(p)
}

#[async_trait]
impl Step<BuildState> for CreateVolume {
    fn name(&self) -> &'static str {
        "CreateVolume"
    }

    async fn run(&mut self, state: &mut BuildState, ctx: &StepContext) -> Result<(), BoxError> {
        let config = state.config.clone();
        let params = volume_params(&config, state.source_image.as_ref())?;
        let az = state
            .instance()?
            .placement()
            .and_then(|p| p.availability_zone())
            .ok_or(BuildError::Missing("availability zone"))?
            .to_string();
        let tags: BTreeMap<String, String> = config
            .chroot
            .root_volume_tags
            .render(&state.build_info_data())
            .map_err(|source| BuildError::Render {
                option: "root_volume_tags",
                source,
            })?;
        ctx.ui.say("Creating the root volume...").await;
        let mut req = state
            .ec2
            .client()
            .create_volume()
            .availability_zone(&az)
            .set_size(params.size)
            .set_snapshot_id(params.snapshot_id.clone())
            .set_volume_type(params.volume_type.as_deref().map(VolumeType::from))
            .set_iops(params.iops)
            .set_throughput(params.throughput)
            .set_encrypted(params.encrypted)
            .set_kms_key_id(params.kms_key_id.clone());
        if !tags.is_empty() {
            ctx.ui.message("Adding tags to the root volume...").await;
            req = req.tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Volume)
                    .set_tags(Some(ec2_tags(&tags)))
                    .build(),
            );
        }
        let out = req
            .send()
            .await
            .map_err(|e| AwsError::api("CreateVolume", None, e))?;
        let volume_id = out
            .volume_id()
            .ok_or(BuildError::Missing("volume id in CreateVolume's answer"))?
            .to_string();
        ctx.ui.message(&format!("Volume ID: {volume_id}")).await;
        state.volume_id = Some(volume_id.clone());
        state
            .ec2
            .wait_volume_available(&state.poller, &volume_id)
            .await?;
        Ok(())
    }

    async fn cleanup(
        &mut self,
        state: &mut BuildState,
        ctx: &StepContext,
        _outcome: Outcome,
    ) -> Result<(), BoxError> {
        let Some(volume_id) = state.volume_id.clone() else {
            return Ok(());
        };
        ctx.ui.say("Deleting the created EBS volume...").await;
        // Cleanup must finish even after Ctrl-C: a fresh, uncancelled poller.
        let poller = super::cleanup_poller(&state.poller);
        if let Err(e) = state
            .ec2
            .client()
            .delete_volume()
            .volume_id(&volume_id)
            .send()
            .await
        {
            let e = AwsError::api("DeleteVolume", volume_id.clone(), e);
            if !e.is_not_found() {
                return Err(format!("Error deleting EBS volume: {e}").into());
            }
        }
        state.ec2.wait_volume_deleted(&poller, &volume_id).await?;
        state.volume_id = None;
        Ok(())
    }
}

/// EC2 tags from a rendered map.
pub fn ec2_tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}
