//! Step 18: register the AMI from the snapshot. Mappings come from the
//! source AMI (or `ami_block_device_mappings`) with the root mapping
//! pointing at the new snapshot; boot mode, TPM, IMDS support, ENA and
//! SR-IOV are inherited from the source when the template leaves them
//! unset. If a later step fails, the cleanup deregisters every AMI this
//! build made and deletes its snapshots (upstream leaked them).

use async_trait::async_trait;
use aws_sdk_ec2::types::{
    ArchitectureValues, BlockDeviceMapping, BootModeValues, EbsBlockDevice, Image,
    ImdsSupportValues, TpmSupportValues, VirtualizationType, VolumeType,
};

use super::create_volume::volume_params;
use super::{destroy_ami, BuildError, BuildState};
use crate::aws::AwsError;
use crate::builder::config::{BlockDevice, Config};
use crate::builder::runner::{Outcome, Step, StepContext};
use crate::plugin::api::BoxError;

/// Registers the AMI.
pub struct RegisterAmi;

/// What RegisterImage is called with.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterRequest {
    /// AMI name.
    pub name: String,
    /// Architecture.
    pub architecture: Option<String>,
    /// Root device name.
    pub root_device_name: String,
    /// `hvm` or `paravirtual`.
    pub virtualization_type: String,
    /// Kernel of a paravirtual image.
    pub kernel_id: Option<String>,
    /// Ramdisk of a paravirtual image.
    pub ramdisk_id: Option<String>,
    /// Block device mappings, the root one with the new snapshot.
    pub mappings: Vec<BlockDeviceMapping>,
    /// `simple` for SR-IOV.
    pub sriov_net_support: Option<String>,
    /// ENA.
    pub ena_support: Option<bool>,
    /// Boot mode.
    pub boot_mode: Option<String>,
    /// NitroTPM.
    pub tpm_support: Option<String>,
    /// UEFI variable store.
    pub uefi_data: Option<String>,
    /// IMDS support (`v2.0`).
    pub imds_support: Option<String>,
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// A template `ami_block_device_mappings` entry as EC2 takes it.
fn mapping_from_config(b: &BlockDevice) -> BlockDeviceMapping {
    let mut m = BlockDeviceMapping::builder()
        .device_name(&b.device_name)
        .set_virtual_name(non_empty(&b.virtual_name));
    if b.no_device {
        return m.no_device("").build();
    }
    if b.virtual_name.is_empty() {
        m = m.ebs(
            EbsBlockDevice::builder()
                .delete_on_termination(b.delete_on_termination)
                .set_iops(b.iops.map(|i| i as i32))
                .set_throughput(b.throughput.map(|t| t as i32))
                .set_snapshot_id(non_empty(&b.snapshot_id))
                .set_volume_type(non_empty(&b.volume_type).map(|t| VolumeType::from(t.as_str())))
                .set_volume_size((b.volume_size > 0).then_some(b.volume_size as i32))
                .build(),
        );
    }
    m.build()
}

/// A source mapping without `Encrypted`/`KmsKeyId` (the snapshot decides).
fn mapping_from_source(m: &BlockDeviceMapping) -> BlockDeviceMapping {
    let mut out = BlockDeviceMapping::builder()
        .set_device_name(m.device_name().map(str::to_string))
        .set_virtual_name(m.virtual_name().map(str::to_string))
        .set_no_device(m.no_device().map(str::to_string));
    if let Some(e) = m.ebs() {
        out = out.ebs(
            EbsBlockDevice::builder()
                .set_delete_on_termination(e.delete_on_termination())
                .set_iops(e.iops())
                .set_throughput(e.throughput())
                .set_snapshot_id(e.snapshot_id().map(str::to_string))
                .set_volume_type(e.volume_type().cloned())
                .set_volume_size(e.volume_size())
                .build(),
        );
    }
    out.build()
}

/// The RegisterImage parameters for `snapshot_id` (see the module doc).
pub fn register_image_request(
    config: &Config,
    source: Option<&Image>,
    snapshot_id: &str,
    name: &str,
) -> Result<RegisterRequest, BuildError> {
    let c = &config.chroot;
    let a = &config.ami;
    let use_config_mappings = source.is_none() || !c.ami_block_device_mappings.0.is_empty();
    let (root_name, mut mappings) = if use_config_mappings {
        (
            c.root_device_name.clone(),
            c.ami_block_device_mappings
                .0
                .iter()
                .map(mapping_from_config)
                .collect::<Vec<_>>(),
        )
    } else {
        let image = source.expect("checked above");
        (
            image.root_device_name().unwrap_or_default().to_string(),
            image
                .block_device_mappings()
                .iter()
                .map(mapping_from_source)
                .collect(),
        )
    };
    let root_volume = volume_params(config, source)?;
    let mut has_root = false;
    for m in mappings.iter_mut() {
        if m.device_name() != Some(root_name.as_str()) {
            continue;
        }
        has_root = true;
        let e = m
            .ebs()
            .cloned()
            .unwrap_or_else(|| EbsBlockDevice::builder().build());
        // Template mappings are taken as written (grown to root_volume_size);
        // a source mapping becomes what the working volume was.
        let ebs = if use_config_mappings {
            EbsBlockDevice::builder()
                .set_delete_on_termination(e.delete_on_termination())
                .snapshot_id(snapshot_id)
                .set_volume_size(
                    Some(c.root_volume_size as i32)
                        .filter(|s| *s > 0)
                        .or(e.volume_size()),
                )
                .set_volume_type(e.volume_type().cloned())
                .set_iops(e.iops())
                .set_throughput(e.throughput())
                .build()
        } else {
            EbsBlockDevice::builder()
                .set_delete_on_termination(e.delete_on_termination())
                .snapshot_id(snapshot_id)
                .set_volume_size(root_volume.size.max(e.volume_size()))
                .set_volume_type(root_volume.volume_type.as_deref().map(VolumeType::from))
                .set_iops(root_volume.iops)
                .set_throughput(root_volume.throughput)
                .build()
        };
        *m = BlockDeviceMapping::builder()
            .set_device_name(m.device_name().map(str::to_string))
            .ebs(ebs)
            .build();
    }
    if !has_root {
        return Err(BuildError::Invalid(format!(
            "no block device mapping for the root device {root_name:?}: add one to ami_block_device_mappings"
        )));
    }
    let virtualization_type = match (a.ami_virtualization_type.as_str(), source) {
        ("", Some(image)) => image
            .virtualization_type()
            .map(|v| v.as_str().to_string())
            .unwrap_or_else(|| "hvm".into()),
        ("", None) => "hvm".into(),
        (t, _) => t.to_string(),
    };
    let paravirtual = virtualization_type != VirtualizationType::Hvm.as_str();
    let from_source = |f: fn(&Image) -> Option<String>| source.and_then(f);
    Ok(RegisterRequest {
        name: name.to_string(),
        architecture: match source {
            Some(image) => image.architecture().map(|a| a.as_str().to_string()),
            None => non_empty(&c.ami_architecture),
        },
        root_device_name: root_name,
        kernel_id: if paravirtual {
            from_source(|i| i.kernel_id().map(str::to_string))
        } else {
            None
        },
        ramdisk_id: if paravirtual {
            from_source(|i| i.ramdisk_id().map(str::to_string))
        } else {
            None
        },
        virtualization_type,
        mappings,
        sriov_net_support: if a.sriov_support {
            Some("simple".into())
        } else {
            from_source(|i| i.sriov_net_support().map(str::to_string))
        },
        ena_support: a
            .ena_support
            .as_option()
            .or_else(|| source.and_then(|i| i.ena_support())),
        boot_mode: non_empty(&c.boot_mode)
            .or_else(|| from_source(|i| i.boot_mode().map(|b| b.as_str().to_string()))),
        tpm_support: non_empty(&c.tpm_support)
            .or_else(|| from_source(|i| i.tpm_support().map(|t| t.as_str().to_string()))),
        uefi_data: non_empty(&c.uefi_data),
        imds_support: non_empty(&a.imds_support)
            .or_else(|| from_source(|i| i.imds_support().map(|s| s.as_str().to_string()))),
    })
}

/// A name for an AMI that is only a step towards the final copies.
fn intermediary_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("packer-intermediary-{:016x}", h.finish())
}

/// Whether the registered AMI is only the source of the region copies.
pub fn is_intermediary(config: &Config) -> bool {
    config.ami.encrypt_boot.is_true() || config.ami.skip_save_build_region
}

#[async_trait]
impl Step<BuildState> for RegisterAmi {
    fn name(&self) -> &'static str {
        "RegisterAmi"
    }

    async fn run(&mut self, state: &mut BuildState, ctx: &StepContext) -> Result<(), BoxError> {
        let config = state.config.clone();
        let snapshot_id = state
            .snapshot_id
            .clone()
            .ok_or(BuildError::Missing("snapshot"))?;
        let name = if is_intermediary(&config) {
            intermediary_name()
        } else {
            config.ami.ami_name.clone()
        };
        let r = register_image_request(&config, state.source_image.as_ref(), &snapshot_id, &name)?;
        ctx.ui.say("Registering the AMI...").await;
        let out = state
            .ec2
            .client()
            .register_image()
            .name(&r.name)
            .set_architecture(r.architecture.as_deref().map(ArchitectureValues::from))
            .root_device_name(&r.root_device_name)
            .virtualization_type(&r.virtualization_type)
            .set_kernel_id(r.kernel_id.clone())
            .set_ramdisk_id(r.ramdisk_id.clone())
            .set_block_device_mappings(Some(r.mappings.clone()))
            .set_sriov_net_support(r.sriov_net_support.clone())
            .set_ena_support(r.ena_support)
            .set_boot_mode(r.boot_mode.as_deref().map(BootModeValues::from))
            .set_tpm_support(r.tpm_support.as_deref().map(TpmSupportValues::from))
            .set_uefi_data(r.uefi_data.clone())
            .set_imds_support(r.imds_support.as_deref().map(ImdsSupportValues::from))
            .send()
            .await
            .map_err(|e| AwsError::api("RegisterImage", r.name.clone(), e))?;
        let ami = out
            .image_id()
            .ok_or(BuildError::Missing("image id in RegisterImage's answer"))?
            .to_string();
        ctx.ui.message(&format!("AMI: {ami}")).await;
        state.amis.insert(state.region().to_string(), ami.clone());
        ctx.ui.say("Waiting for AMI to become ready...").await;
        state.ec2.wait_image_available(&state.poller, &ami).await?;
        Ok(())
    }

    async fn cleanup(
        &mut self,
        state: &mut BuildState,
        ctx: &StepContext,
        outcome: Outcome,
    ) -> Result<(), BoxError> {
        if outcome == Outcome::Succeeded || state.amis.is_empty() {
            return Ok(());
        }
        let mut errors = Vec::new();
        for (region, ami) in std::mem::take(&mut state.amis) {
            ctx.ui
                .say(&format!("Deregistering the AMI {ami} in {region} and deleting its snapshots because the build did not finish..."))
                .await;
            if let Err(e) = destroy_ami(&state.ec2.in_region(&region), &ami).await {
                errors.extend(e);
            }
        }
        state.snapshots.clear();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(BuildError::Several(errors).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::steps::create_volume::volume_params;
    use aws_sdk_ec2::types::{BootModeValues, DeviceType, ImdsSupportValues};
    use serde_json::json;

    use super::super::test_config as config;

    fn source() -> Image {
        Image::builder()
            .image_id("ami-src")
            .architecture(ArchitectureValues::Arm64)
            .root_device_name("/dev/xvda")
            .root_device_type(DeviceType::Ebs)
            .virtualization_type(VirtualizationType::Hvm)
            .ena_support(true)
            .boot_mode(BootModeValues::Uefi)
            .imds_support(ImdsSupportValues::V20)
            .block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name("/dev/xvda")
                    .ebs(
                        EbsBlockDevice::builder()
                            .snapshot_id("snap-src")
                            .volume_size(8)
                            .volume_type(VolumeType::Gp3)
                            .iops(3000)
                            .throughput(125)
                            .encrypted(true)
                            .kms_key_id("key-src")
                            .delete_on_termination(true)
                            .build(),
                    )
                    .build(),
            )
            .block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name("/dev/xvdb")
                    .virtual_name("ephemeral0")
                    .build(),
            )
            .build()
    }

    #[test]
    fn root_mapping_gets_the_new_snapshot_and_others_are_kept() {
        let r =
            register_image_request(&config(json!({})), Some(&source()), "snap-new", "n").unwrap();
        assert_eq!(r.root_device_name, "/dev/xvda");
        assert_eq!(r.mappings.len(), 2);
        let root = r.mappings[0].ebs().unwrap();
        assert_eq!(root.snapshot_id(), Some("snap-new"));
        assert_eq!(root.volume_size(), Some(8));
        assert_eq!(root.delete_on_termination(), Some(true));
        // The snapshot decides encryption; RegisterImage refuses these fields.
        assert_eq!(root.encrypted(), None);
        assert_eq!(root.kms_key_id(), None);
        assert_eq!(r.mappings[1].virtual_name(), Some("ephemeral0"));
    }

    #[test]
    fn unset_attributes_are_inherited_from_the_source() {
        let r =
            register_image_request(&config(json!({})), Some(&source()), "snap-new", "n").unwrap();
        assert_eq!(r.architecture.as_deref(), Some("arm64"));
        assert_eq!(r.virtualization_type, "hvm");
        assert_eq!(r.ena_support, Some(true));
        assert_eq!(r.boot_mode.as_deref(), Some("uefi"));
        assert_eq!(r.imds_support.as_deref(), Some("v2.0"));
        assert_eq!(r.kernel_id, None);
    }

    #[test]
    fn template_values_win_over_the_source() {
        let c = config(
            json!({"ena_support": false, "boot_mode": "legacy-bios", "sriov_support": true}),
        );
        let r = register_image_request(&c, Some(&source()), "snap-new", "n").unwrap();
        assert_eq!(r.ena_support, Some(false));
        assert_eq!(r.boot_mode.as_deref(), Some("legacy-bios"));
        assert_eq!(r.sriov_net_support.as_deref(), Some("simple"));
    }

    #[test]
    fn root_volume_size_grows_the_root_and_a_new_type_drops_foreign_iops() {
        let c = config(json!({"root_volume_size": 20, "root_volume_type": "gp2"}));
        let r = register_image_request(&c, Some(&source()), "snap-new", "n").unwrap();
        let root = r.mappings[0].ebs().unwrap();
        assert_eq!(root.volume_size(), Some(20));
        assert_eq!(root.volume_type(), Some(&VolumeType::Gp2));
        assert_eq!(root.iops(), None);
        assert_eq!(root.throughput(), None);
    }

    #[test]
    fn a_smaller_root_volume_size_never_shrinks() {
        let c = config(json!({"root_volume_size": 4}));
        let p = volume_params(&c, Some(&source())).unwrap();
        assert_eq!(p.size, Some(8));
    }

    #[test]
    fn volume_copies_the_source_root_with_throughput_and_encryption() {
        let p = volume_params(&config(json!({})), Some(&source())).unwrap();
        assert_eq!(p.snapshot_id.as_deref(), Some("snap-src"));
        assert_eq!(p.volume_type.as_deref(), Some("gp3"));
        assert_eq!(p.iops, Some(3000));
        assert_eq!(p.throughput, Some(125));
        assert_eq!(p.encrypted, Some(true));
        assert_eq!(p.kms_key_id.as_deref(), Some("key-src"));
    }

    #[test]
    fn root_volume_encryption_options_apply_to_the_working_volume() {
        let mut image = source();
        image.block_device_mappings = Some(vec![BlockDeviceMapping::builder()
            .device_name("/dev/xvda")
            .ebs(
                EbsBlockDevice::builder()
                    .snapshot_id("snap-src")
                    .volume_size(8)
                    .build(),
            )
            .build()]);
        let c = config(
            json!({"root_volume_encrypt_boot": true, "root_volume_kms_key_id": "alias/build"}),
        );
        let p = volume_params(&c, Some(&image)).unwrap();
        assert_eq!(p.encrypted, Some(true));
        assert_eq!(p.kms_key_id.as_deref(), Some("alias/build"));
    }

    #[test]
    fn from_scratch_uses_the_template_mappings() {
        let c = config(json!({
            "from_scratch": true,
            "source_ami": "",
            "root_device_name": "/dev/xvda",
            "root_volume_size": 10,
            "ami_virtualization_type": "hvm",
            "pre_mount_commands": ["mkfs.ext4 {{.Device}}"],
            "ami_block_device_mappings": [
                {"device_name": "/dev/xvda", "volume_type": "gp3", "delete_on_termination": true}
            ]
        }));
        let p = volume_params(&c, None).unwrap();
        assert_eq!(p.size, Some(10));
        assert_eq!(p.volume_type.as_deref(), Some("gp2"));
        let r = register_image_request(&c, None, "snap-new", "n").unwrap();
        assert_eq!(r.architecture.as_deref(), Some("x86_64"));
        let root = r.mappings[0].ebs().unwrap();
        assert_eq!(root.snapshot_id(), Some("snap-new"));
        assert_eq!(root.volume_size(), Some(10));
    }
}
