//! The amazon-chroot build, step by step. Reading [`steps`] tells the
//! whole story: each step is a small type in its own file, with a `run`
//! and a `cleanup`; the runner ([`crate::builder::runner`]) runs them in
//! order and always runs the cleanups of every step that started, in
//! reverse order.
//!
//! State flows between steps in the typed [`BuildState`], not in a
//! string-keyed bag: a step reads what an earlier step stored and says so
//! with a clear error when it is missing.

mod attach_volume;
mod copy_files;
mod create_tags;
mod create_volume;
mod deregister_old_ami;
mod device_lock;
mod early_cleanup;
mod instance_info;
mod modify_attributes;
mod mount_commands;
mod mount_device;
mod mount_extra;
mod pre_validate;
mod prepare_device;
mod protect_ami;
mod provision;
mod region_copy;
mod register_ami;
mod snapshot;
mod source_ami;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use aws_sdk_ec2::types::{Image, Instance};

use crate::aws::{AwsError, Ec2, Poller};
use crate::builder::config::Config;
use crate::builder::runner::Step;
use crate::builder::template::{BuildInfo, TemplateData};
use crate::chroot::copy_files::CopiedFiles;
use crate::chroot::device::{AttachedDevice, DeviceChoice};
use crate::chroot::host_shell::{CommandWrapper, HostShell};
use crate::chroot::{ChrootMounts, DeviceLock};
use crate::plugin::api::{Hook, Map, Value};

/// Everything a build knows, filled in step by step.
pub struct BuildState {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// EC2 in the build region.
    pub ec2: Ec2,
    /// How every wait on EC2 polls (and how it is cancelled).
    pub poller: Poller,
    /// Host commands through `command_wrapper`.
    pub shell: HostShell,
    /// The renderer of `command_wrapper`, for the chroot communicator.
    pub wrapper: CommandWrapper,
    /// Packer's hooks (provisioning).
    pub hook: Arc<dyn Hook>,
    /// The EC2 instance this build runs on.
    pub instance: Option<Instance>,
    /// The source AMI (none with `from_scratch`).
    pub source_image: Option<Image>,
    /// The host-wide device lock while a device is being chosen and attached.
    pub lock: Option<DeviceLock>,
    /// The device name chosen for the attachment.
    pub device: Option<DeviceChoice>,
    /// The working volume.
    pub volume_id: Option<String>,
    /// Whether the working volume is attached to this instance.
    pub attached: bool,
    /// The local node of the attached volume.
    pub local_device: Option<AttachedDevice>,
    /// The chroot's mounts (root and extra), while mounted.
    pub mounts: Option<ChrootMounts>,
    /// The absolute mount path (the chroot root).
    pub mount_path: Option<PathBuf>,
    /// Host files copied into the chroot, while they are there.
    pub copied_files: Option<CopiedFiles>,
    /// The snapshot of the working volume.
    pub snapshot_id: Option<String>,
    /// AMIs this build registered or copied, by region.
    pub amis: BTreeMap<String, String>,
    /// Snapshots of those AMIs, by region.
    pub snapshots: BTreeMap<String, Vec<String>>,
    /// What provisioners and post-processors see as `build.X`.
    pub generated_data: Map,
}

impl BuildState {
    /// A state before any step ran.
    pub fn new(
        config: Arc<Config>,
        ec2: Ec2,
        poller: Poller,
        wrapper: CommandWrapper,
        hook: Arc<dyn Hook>,
    ) -> Self {
        let mut generated_data = Map::new();
        generated_data.insert(
            "BuildRegion".to_string(),
            Value::String(ec2.region().to_string()),
        );
        BuildState {
            config,
            ec2,
            poller,
            shell: HostShell::new(wrapper.clone()),
            wrapper,
            hook,
            instance: None,
            source_image: None,
            lock: None,
            device: None,
            volume_id: None,
            attached: false,
            local_device: None,
            mounts: None,
            mount_path: None,
            copied_files: None,
            snapshot_id: None,
            amis: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            generated_data,
        }
    }

    /// The build region.
    pub fn region(&self) -> &str {
        self.ec2.region()
    }

    /// The instance, or the error a step gets when an earlier step did
    /// not find it.
    fn instance(&self) -> Result<&Instance, BuildError> {
        self.instance
            .as_ref()
            .ok_or(BuildError::Missing("instance"))
    }

    /// The instance id.
    fn instance_id(&self) -> Result<String, BuildError> {
        self.instance()?
            .instance_id()
            .map(str::to_string)
            .ok_or(BuildError::Missing("instance id"))
    }

    /// The working volume id.
    fn volume_id(&self) -> Result<String, BuildError> {
        self.volume_id.clone().ok_or(BuildError::Missing("volume"))
    }

    /// Upstream's build info: the build region and, with a source AMI,
    /// its id, name, owner, creation date and tags.
    pub fn build_info(&self) -> BuildInfo {
        let mut info = BuildInfo {
            build_region: self.region().to_string(),
            ..Default::default()
        };
        if let Some(image) = &self.source_image {
            info.source_ami = image.image_id().unwrap_or_default().to_string();
            info.source_ami_name = image.name().unwrap_or_default().to_string();
            info.source_ami_owner = image.owner_id().unwrap_or_default().to_string();
            info.source_ami_owner_name = image.image_owner_alias().unwrap_or_default().to_string();
            info.source_ami_creation_date = image.creation_date().unwrap_or_default().to_string();
            info.source_ami_tags = image
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                .collect();
        }
        info
    }

    /// Template data holding the build info (tags, descriptions).
    fn build_info_data(&self) -> TemplateData {
        TemplateData {
            build_info: Some(self.build_info()),
            ..Default::default()
        }
    }
}

/// Failures of the build's own logic (EC2 and host errors keep their own types).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A step needs something an earlier step should have stored.
    #[error("internal error: no {0} in the build state (a step ran out of order)")]
    Missing(&'static str),
    /// The AMI name is taken and `force_deregister` is off.
    #[error("Error: AMI Name: '{name}' is used by an existing AMI: {ami}. Set force_deregister to true to replace it, or change ami_name.")]
    AmiNameTaken {
        /// The name.
        name: String,
        /// The AMI using it.
        ami: String,
    },
    /// A region of the template is not one EC2 knows.
    #[error("Region {region:?} is not a valid region (known: {known}); set skip_region_validation to skip this check")]
    UnknownRegion {
        /// The region.
        region: String,
        /// The regions DescribeRegions listed.
        known: String,
    },
    /// EC2 refused the attachment because another volume holds the device name.
    #[error("{source}. Another volume is attached at {device} (a parallel build, or one left by an earlier build): leave device_path empty to pick a free device, set it to a free /dev/sd[f-p] name, or wait for the other build to finish.")]
    AttachmentPointInUse {
        /// The device name given to AttachVolume.
        device: String,
        /// EC2's refusal.
        source: Box<AwsError>,
    },
    /// The source AMI could not be found.
    #[error("No AMI was found matching {0}. Check the filters and owners: the AMI must exist in this region and be visible to this account.")]
    NoSourceAmi(String),
    /// The filter matched several AMIs and `most_recent` is off.
    #[error("Your query returned more than one result ({count}: {ids}) for {query}. Please try a more specific search, or set most_recent to true.")]
    ManySourceAmis {
        /// The query, with its filters and owners.
        query: String,
        /// How many matched.
        count: usize,
        /// Their ids.
        ids: String,
    },
    /// The source AMI is instance-store backed.
    #[error("The root device of the source AMI must be EBS-backed (source {ami} has root device type {kind:?}). Choose an EBS-backed source AMI: amazon-chroot copies the root snapshot, and instance-store AMIs have none.")]
    NotEbsBacked {
        /// The source AMI.
        ami: String,
        /// Its root device type.
        kind: String,
    },
    /// ENA or SR-IOV asked for a paravirtual image.
    #[error("Enhanced Networking (ena_support, sriov_support) needs an HVM image; the source AMI {0} is not HVM. Set ami_virtualization_type to \"hvm\" or turn enhanced networking off.")]
    EnhancedNetworkingNeedsHvm(String),
    /// The source AMI has no mapping for its root device.
    #[error("Couldn't find the root device {root:?} among the block device mappings of {ami}")]
    NoRootMapping {
        /// The AMI.
        ami: String,
        /// Its root device name.
        root: String,
    },
    /// A template could not be rendered.
    #[error("Error rendering {option}: {source}")]
    Render {
        /// The option.
        option: &'static str,
        /// Why.
        source: crate::builder::template::TemplateError,
    },
    /// A value EC2 would refuse.
    #[error("{0}")]
    Invalid(String),
    /// Several regions failed (copies, attributes, tags).
    #[error("{}", .0.join("\n"))]
    Several(Vec<String>),
    /// An EC2 call failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
}

/// The steps of a build, in order.
pub fn steps(config: &Config) -> Vec<Box<dyn Step<BuildState>>> {
    let mut steps: Vec<Box<dyn Step<BuildState>>> = vec![
        Box::new(pre_validate::PreValidate),
        Box::new(instance_info::InstanceInfo),
    ];
    if !config.chroot.from_scratch {
        steps.push(Box::new(source_ami::SourceAmiInfo));
    }
    steps.extend([
        Box::new(device_lock::TakeDeviceLock) as Box<dyn Step<BuildState>>,
        Box::new(prepare_device::PrepareDevice),
        Box::new(create_volume::CreateVolume),
        Box::new(attach_volume::AttachVolume),
        Box::new(device_lock::EarlyUnlock),
        Box::new(mount_commands::PreMountCommands),
        Box::new(mount_device::MountDevice),
        Box::new(mount_commands::PostMountCommands),
        Box::new(mount_extra::MountExtra),
        Box::new(copy_files::CopyFiles),
        Box::new(provision::Provision),
        Box::new(early_cleanup::EarlyCleanup),
        Box::new(snapshot::Snapshot),
        Box::new(deregister_old_ami::DeregisterOldAmi),
        Box::new(register_ami::RegisterAmi),
        Box::new(region_copy::RegionCopy),
        Box::new(protect_ami::DeprecateAndProtect),
        Box::new(modify_attributes::ModifyAttributes),
        Box::new(create_tags::CreateTags),
    ]);
    steps
}

/// Deregisters `ami` in `ec2`'s region and deletes its EBS snapshots, as
/// the AMI cleanup and the artifact's Destroy do. Every deletion is
/// attempted; failures are returned together.
pub async fn destroy_ami(ec2: &Ec2, ami: &str) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    let snapshots = match ec2.client().describe_images().image_ids(ami).send().await {
        Ok(out) => out
            .images()
            .iter()
            .flat_map(|i| i.block_device_mappings())
            .filter_map(|m| m.ebs().and_then(|e| e.snapshot_id()).map(str::to_string))
            .collect::<Vec<_>>(),
        Err(e) => {
            let e = AwsError::api("DescribeImages", ami.to_string(), e);
            if !e.is_not_found() {
                errors.push(e.to_string());
            }
            Vec::new()
        }
    };
    // A protected AMI cannot be deregistered; lifting protection is part of
    // undoing what this build did. Ignored when protection was never on.
    let _ = ec2
        .client()
        .disable_image_deregistration_protection()
        .image_id(ami)
        .send()
        .await;
    if let Err(e) = ec2.client().deregister_image().image_id(ami).send().await {
        let e = AwsError::api("DeregisterImage", ami.to_string(), e);
        if !e.is_not_found() {
            errors.push(e.to_string());
        }
    }
    for snapshot in snapshots {
        if let Err(e) = delete_snapshot(ec2, &snapshot).await {
            errors.push(e.to_string());
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Deletes a snapshot; one that is already gone is fine.
async fn delete_snapshot(ec2: &Ec2, snapshot: &str) -> Result<(), AwsError> {
    match ec2
        .client()
        .delete_snapshot()
        .snapshot_id(snapshot)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => {
            let e = AwsError::api("DeleteSnapshot", snapshot.to_string(), e);
            if e.is_not_found() {
                Ok(())
            } else {
                Err(e)
            }
        }
    }
}

/// A poller like `poller` that the build's cancel does not stop: cleanup
/// waits (detach, delete) must finish after a Ctrl-C too.
fn cleanup_poller(poller: &Poller) -> Poller {
    Poller::with(
        poller.pace(),
        Some(poller.limit()),
        tokio_util::sync::CancellationToken::new(),
    )
}

/// The config of a JSON template with `options` on top of a minimal valid
/// one (`ami_name` web-ami, `source_ami` ami-src, `region` us-east-1), for
/// the steps' unit tests.
#[cfg(test)]
pub(crate) fn test_config(options: serde_json::Value) -> Config {
    let mut config =
        serde_json::json!({"ami_name": "web-ami", "source_ami": "ami-src", "region": "us-east-1"});
    config.as_object_mut().expect("an object").extend(
        options
            .as_object()
            .cloned()
            .expect("options must be an object"),
    );
    let args = crate::plugin::api::PrepareArgs {
        kind: crate::plugin::api::TemplateKind::Json,
        config: config.as_object().cloned().expect("an object"),
        packer: crate::plugin::api::PackerSettings::default(),
    };
    Config::from_prepare(&args).expect("valid test config").0
}

#[cfg(test)]
mod tests {
    use super::steps;
    use crate::builder::config::Config;
    use crate::plugin::api::{PackerSettings, PrepareArgs, TemplateKind};
    use serde_json::json;

    fn names(options: serde_json::Value) -> Vec<&'static str> {
        let args = PrepareArgs {
            kind: TemplateKind::Json,
            config: options.as_object().cloned().unwrap(),
            packer: PackerSettings::default(),
        };
        let (config, _) = Config::from_prepare(&args).expect("valid test config");
        steps(&config).iter().map(|s| s.name()).collect()
    }

    #[test]
    fn steps_follow_the_go_builder_order_with_the_lock_held_until_the_device_shows() {
        let n = names(json!({"ami_name": "web-ami", "source_ami": "ami-1"}));
        assert_eq!(
            n,
            [
                "PreValidate",
                "InstanceInfo",
                "SourceAmiInfo",
                "DeviceLock",
                "PrepareDevice",
                "CreateVolume",
                "AttachVolume",
                "EarlyUnlock",
                "PreMountCommands",
                "MountDevice",
                "PostMountCommands",
                "MountExtra",
                "CopyFiles",
                "Provision",
                "EarlyCleanup",
                "Snapshot",
                "DeregisterOldAmi",
                "RegisterAmi",
                "RegionCopy",
                "DeprecateAndProtect",
                "ModifyAttributes",
                "CreateTags",
            ]
        );
    }

    #[test]
    fn from_scratch_builds_have_no_source_ami_step() {
        let n = names(json!({
            "ami_name": "web-ami", "from_scratch": true, "root_device_name": "/dev/xvda",
            "root_volume_size": 4, "ami_virtualization_type": "hvm",
            "pre_mount_commands": ["mkfs.ext4 {{.Device}}"],
            "ami_block_device_mappings": [{"device_name": "/dev/xvda"}]
        }));
        assert!(!n.contains(&"SourceAmiInfo"));
        assert_eq!(n[2], "DeviceLock");
    }
}
