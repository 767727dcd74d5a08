//! Every option of the amazon-chroot builder, declared once: name, type,
//! default, doc line, and when it is interpolated. Groups follow upstream
//! (chroot options, AMIConfig, SnapshotConfig, AccessConfig) so the docs
//! read the same. Cross-option validation lives in `validate.rs`.

use std::collections::BTreeMap;

use super::declare::{options, BlockList, Secret, TemplateMap, Trilean};
use crate::builder::template::{fields, Template};

options! {
    /// Keys Packer core injects (`packer_*`). Declared so the HCL2 spec
    /// matches Go plugins; their values reach us as [`crate::plugin::api::PackerSettings`].
    pub struct PackerKeys ("Set by Packer") {
        /// The build (source) name.
        packer_build_name: String = doc "";
        /// The builder type.
        packer_builder_type: String = doc "";
        /// Packer's version.
        packer_core_version: String = doc "";
        /// `-debug`.
        packer_debug: bool = doc "";
        /// `-force`.
        packer_force: bool = doc "";
        /// `-on-error`.
        packer_on_error: String = doc "";
        /// User variables of JSON templates.
        packer_user_variables: BTreeMap<String, String> = doc "";
        /// Names of sensitive variables.
        packer_sensitive_variables: Vec<String> = doc "";
    }
}

options! {
    /// The chroot builder's own options (upstream `builder/chroot` `Config`).
    pub struct ChrootConfig ("Chroot options") {
        /// Block device mappings of the AMI, replacing the source AMI's entirely. Required with `from_scratch`; needs `root_device_name` and `root_volume_size`.
        ami_block_device_mappings: BlockList<BlockDevice> = doc "the source AMI's mappings";
        /// Extra mounts inside the chroot, each `[fstype, source, destination]` (`bind` gives `mount --bind`). Replaces the defaults; an empty list means the defaults.
        chroot_mounts: Vec<Vec<String>> = doc "proc, sysfs, /dev bind, devpts, binfmt_misc";
        /// Wraps every host command, e.g. `sudo {{.Command}}`.
        command_wrapper: Template = value "{{.Command}}", late fields::COMMAND;
        /// Host files copied into the chroot before provisioning and removed before the snapshot. `[]` copies nothing.
        copy_files: Option<Vec<String>> = doc "[\"/etc/resolv.conf\"] (none with from_scratch)";
        /// Device to attach the volume as, e.g. `/dev/xvdf`; found automatically when empty.
        device_path: String = doc "auto-discovered";
        /// The local device to mount on NVMe hosts, ending in `p` (e.g. `/dev/nvme1n1p`).
        nvme_device_path: String = doc "";
        /// Build from an empty volume instead of the source AMI's root snapshot.
        from_scratch: bool = doc "false";
        /// Options for the root mount, each given as `-o option` (e.g. `nouuid`).
        mount_options: Vec<String> = doc "";
        /// Partition to mount for HVM images; `0` mounts the whole device.
        mount_partition: String = value "1";
        /// Where the volume is mounted (the chroot root).
        mount_path: Template = value "/mnt/packer-amazon-chroot-volumes/{{.Device}}", late fields::DEVICE;
        /// Host commands run after mounting, before the extra mounts and file copies.
        post_mount_commands: Vec<Template> = doc "", late fields::DEVICE_AND_MOUNT_PATH;
        /// Host commands run after attaching, before mounting (partition, mkfs …). Required with `from_scratch`.
        pre_mount_commands: Vec<Template> = doc "", late fields::DEVICE;
        /// Root device name of the AMI, e.g. `/dev/xvda`. Required with `from_scratch` and with `ami_block_device_mappings`.
        root_device_name: String = doc "";
        /// Size of the working volume and the AMI root in GiB; only grows the source's size.
        root_volume_size: i64 = doc "the source root snapshot's size";
        /// EBS volume type of the working volume.
        root_volume_type: String = doc "the source root volume's type (gp2 with from_scratch)";
        /// The source AMI id.
        source_ami: String = doc "";
        /// Select the source AMI with DescribeImages filters.
        source_ami_filter: AmiFilter = doc "";
        /// Tags of the working volume.
        root_volume_tags: TemplateMap = doc "", late fields::BUILD_INFO;
        /// Repeatable `{key, value}` form of `root_volume_tags`.
        root_volume_tag: BlockList<KeyValue> = doc "", late fields::BUILD_INFO;
        /// Create the working volume encrypted.
        root_volume_encrypt_boot: Trilean = doc "unset (keep the source's encryption)";
        /// KMS key of the working volume.
        root_volume_kms_key_id: String = doc "";
        /// Architecture of a `from_scratch` AMI: arm64, arm64_mac, i386, x86_64, x86_64_mac.
        ami_architecture: String = value "x86_64";
        /// Boot mode of the AMI: legacy-bios, uefi or uefi-preferred.
        boot_mode: String = doc "AWS's default for the architecture";
        /// Base64 UEFI variable store of the AMI.
        uefi_data: String = doc "";
        /// NitroTPM support of the AMI: `v2.0`.
        tpm_support: String = doc "";
    }
}

options! {
    /// The AMI to register (upstream `AMIConfig`).
    pub struct AmiConfig ("AMI options") {
        /// Name of the AMI (3–128 characters of `A-Za-z0-9()[] ./-'@_`). Required.
        ami_name: String = doc "required";
        /// Description of the AMI.
        ami_description: Template = doc "", late fields::BUILD_INFO;
        /// `hvm` or `paravirtual`. Required with `from_scratch`.
        ami_virtualization_type: String = doc "the source AMI's";
        /// Account ids given launch permission.
        ami_users: Vec<String> = doc "";
        /// Groups given launch permission: only `all` (makes the AMI public).
        ami_groups: Vec<String> = doc "";
        /// Organization ARNs given launch permission.
        ami_org_arns: Vec<String> = doc "";
        /// Organizational unit ARNs given launch permission.
        ami_ou_arns: Vec<String> = doc "";
        /// Product codes of the AMI.
        ami_product_codes: Vec<String> = doc "";
        /// Regions to copy the AMI to.
        ami_regions: Vec<String> = doc "";
        /// Do not check `region` and `ami_regions` with DescribeRegions.
        skip_region_validation: bool = doc "false";
        /// Tags of the AMI and its snapshots.
        tags: TemplateMap = doc "", late fields::BUILD_INFO;
        /// Repeatable `{key, value}` form of `tags`.
        tag: BlockList<KeyValue> = doc "", late fields::BUILD_INFO;
        /// Enable ENA networking on the AMI.
        ena_support: Trilean = doc "unset";
        /// Enable SR-IOV networking on the AMI.
        sriov_support: bool = doc "false";
        /// Deregister existing AMIs with the same name first (also `-force`).
        force_deregister: bool = doc "false";
        /// Also delete the snapshots of deregistered AMIs.
        force_delete_snapshot: bool = doc "false";
        /// Encrypt the AMI's snapshots (by copying the AMI).
        encrypt_boot: Trilean = doc "unset";
        /// KMS key of the encrypted copy in the build region.
        kms_key_id: String = doc "";
        /// KMS key per `ami_regions` region.
        region_kms_key_ids: BTreeMap<String, String> = doc "";
        /// Keep only the region copies, not the build-region AMI.
        skip_save_build_region: bool = doc "false";
        /// Time-based snapshot copy duration in minutes: a multiple of 15, at most 2880 (48 hours).
        snapshot_copy_duration_minutes: i64 = doc "0 (standard copy)";
        /// `v2.0` makes instances of the AMI require IMDSv2.
        imds_support: String = doc "";
        /// When the AMI becomes deprecated (RFC 3339, e.g. 2030-01-02T15:04:05Z).
        deprecate_at: String = doc "";
        /// Deregistration protection of the AMI.
        deregistration_protection: DeregistrationProtection = doc "off";
    }
}

options! {
    /// The AMI's snapshots (upstream `SnapshotConfig`).
    pub struct SnapshotConfig ("Snapshot options") {
        /// Tags of the snapshots, applied after (and over) `tags`.
        snapshot_tags: TemplateMap = doc "", late fields::BUILD_INFO;
        /// Repeatable `{key, value}` form of `snapshot_tags`.
        snapshot_tag: BlockList<KeyValue> = doc "", late fields::BUILD_INFO;
        /// Account ids given create-volume permission on the snapshots.
        snapshot_users: Vec<String> = doc "";
        /// Groups given create-volume permission on the snapshots: only `all` (public).
        snapshot_groups: Vec<String> = doc "";
    }
}

options! {
    /// How to reach AWS (upstream `AccessConfig`).
    pub struct AccessConfig ("AWS access options") {
        /// Static access key id; needs `secret_key`.
        access_key: Secret = doc "the credential chain";
        /// Assume this role first.
        assume_role: AssumeRole = doc "";
        /// EC2 endpoint URL (EC2-compatible clouds).
        custom_endpoint_ec2: String = doc "";
        /// Shared credentials file.
        shared_credentials_file: String = doc "the SDK's";
        /// Decode encoded authorization failure messages with STS.
        decode_authorization_messages: bool = doc "false";
        /// Skip TLS certificate verification.
        insecure_skip_tls_verify: bool = doc "false";
        /// Retries of throttled or failed AWS calls (0 means 10).
        max_retries: i64 = doc "10";
        /// MFA code for assuming a role.
        mfa_code: Secret = doc "";
        /// Shared config profile.
        profile: String = doc "";
        /// The build region.
        region: String = doc "from the environment or profile";
        /// Static secret access key; needs `access_key`.
        secret_key: Secret = doc "the credential chain";
        /// Do not use the instance metadata service for credentials.
        skip_metadata_api_check: bool = doc "false";
        /// Do not validate the credentials with STS.
        skip_credential_validation: bool = doc "false";
        /// Session token.
        token: Secret = doc "AWS_SESSION_TOKEN";
        /// Get credentials from Vault's AWS secrets engine.
        vault_aws_engine: VaultAwsEngine = doc "";
        /// Waiter tuning for every wait on AWS.
        aws_polling: Option<AwsPolling> = doc "the SDK's waiter defaults";
    }
}

options! {
    /// `{key, value}` of a repeatable tag block.
    pub struct KeyValue ("Tag block") {
        /// Tag key.
        key: Template = doc "", late fields::BUILD_INFO;
        /// Tag value.
        value: Template = doc "", late fields::BUILD_INFO;
    }
}

options! {
    /// `source_ami_filter { … }`.
    pub struct AmiFilter ("source_ami_filter block") {
        /// DescribeImages filters; each value is a CSV record of values.
        filters: BTreeMap<String, String> = doc "";
        /// Image owners: account ids, `self`, `amazon`, `aws-marketplace`.
        owners: Vec<String> = doc "";
        /// Pick the newest image when several match.
        most_recent: bool = doc "false";
        /// Also consider deprecated images.
        include_deprecated: bool = doc "false";
    }
}

impl AmiFilter {
    /// Upstream `Empty()`: the filter counts as set only with owners or filters.
    pub fn is_empty(&self) -> bool {
        self.owners.is_empty() && self.filters.is_empty()
    }
}

options! {
    /// `assume_role { … }`.
    pub struct AssumeRole ("assume_role block") {
        /// ARN of the role to assume.
        role_arn: String = doc "";
        /// Session duration in seconds (900–43200).
        duration_seconds: i64 = doc "AWS's (3600)";
        /// External id.
        external_id: String = doc "";
        /// Inline session policy (JSON).
        policy: String = doc "";
        /// Managed session policy ARNs.
        policy_arns: Vec<String> = doc "";
        /// Session name.
        session_name: String = doc "";
        /// Session tags.
        tags: BTreeMap<String, String> = doc "";
        /// Session tag keys passed on to chained roles.
        transitive_tag_keys: Vec<String> = doc "";
    }
}

options! {
    /// `vault_aws_engine { … }`.
    pub struct VaultAwsEngine ("vault_aws_engine block") {
        /// Vault role name.
        name: String = doc "";
        /// Role ARN (STS credentials).
        role_arn: String = doc "";
        /// Lease TTL, e.g. `3600s`.
        ttl: String = doc "";
        /// Mount path of the AWS engine.
        engine_name: String = doc "aws";
    }
}

impl VaultAwsEngine {
    /// Upstream `Empty()`.
    pub fn is_empty(&self) -> bool {
        self.name.is_empty()
            && self.role_arn.is_empty()
            && self.ttl.is_empty()
            && self.engine_name.is_empty()
    }
}

options! {
    /// `aws_polling { … }`.
    pub struct AwsPolling ("aws_polling block") {
        /// Attempts per wait (AWS_MAX_ATTEMPTS).
        max_attempts: i64 = doc "the waiter's";
        /// Seconds between attempts (AWS_POLL_DELAY_SECONDS).
        delay_seconds: i64 = doc "the waiter's";
    }
}

options! {
    /// `deregistration_protection { … }`.
    pub struct DeregistrationProtection ("deregistration_protection block") {
        /// Protect the AMI from deregistration.
        enabled: bool = doc "false";
        /// Keep protection for 24 hours after it is disabled (implies `enabled`).
        with_cooldown: bool = doc "false";
    }
}

options! {
    /// One `ami_block_device_mappings { … }` entry.
    pub struct BlockDevice ("ami_block_device_mappings block") {
        /// Delete the volume when the instance terminates.
        delete_on_termination: bool = doc "false";
        /// Device name, e.g. `/dev/sdb`. Required.
        device_name: String = doc "required";
        /// Encrypt the volume (removed at registration; the snapshot decides).
        encrypted: Trilean = doc "unset";
        /// Provisioned IOPS (io1, io2, gp3).
        iops: Option<i64> = doc "";
        /// Suppress the device.
        no_device: bool = doc "false";
        /// Snapshot to create the volume from.
        snapshot_id: String = doc "";
        /// Throughput in MiB/s (gp3 only).
        throughput: Option<i64> = doc "";
        /// Instance store name (`ephemeral0` …).
        virtual_name: String = doc "";
        /// Volume type: gp2, gp3, io1, io2, st1, sc1, standard.
        volume_type: String = doc "";
        /// Volume size in GiB.
        volume_size: i64 = doc "";
        /// KMS key (launch mappings only; RegisterImage ignores it).
        kms_key_id: String = doc "";
    }
}
