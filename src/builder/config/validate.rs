//! Rules that involve more than one option, or values a type cannot
//! express. Upstream's messages are kept where they exist (users search
//! for them); each names the option and what it allows. Every rule runs:
//! the user sees all problems at once.

use std::collections::BTreeSet;

use super::{dedup_regions, BlockDevice, BlockList, Config, KeyValue, TemplateMap};
use crate::builder::template::{clean_resource_name, clock};

/// One validation error, with the top-level option it is about.
pub(super) struct Issue {
    pub option: &'static str,
    pub message: String,
}

/// Errors and warnings of one configuration.
#[derive(Default)]
pub(super) struct Outcome {
    pub errors: Vec<Issue>,
    pub warnings: Vec<String>,
}

impl Outcome {
    fn error(&mut self, option: &'static str, message: impl Into<String>) {
        self.errors.push(Issue {
            option,
            message: message.into(),
        });
    }
}

const ARCHITECTURES: &[&str] = &["arm64", "arm64_mac", "i386", "x86_64", "x86_64_mac"];
const BOOT_MODES: &[&str] = &["legacy-bios", "uefi", "uefi-preferred"];
const VIRTUALIZATION_TYPES: &[&str] = &["hvm", "paravirtual"];

/// Provisioned IOPS limits of io1/io2 volumes (upstream `BlockDevice`).
const MIN_IOPS: i64 = 100;
const MAX_IOPS: i64 = 64_000;
/// gp3 limits as upstream checks them.
const MIN_IOPS_GP3: i64 = 3_000;
const MAX_IOPS_GP3: i64 = 16_000;
const MIN_THROUGHPUT_GP3: i64 = 125;
const MAX_THROUGHPUT_GP3: i64 = 1_000;
/// AWS's AssumeRole session duration bounds, in seconds.
const ASSUME_ROLE_DURATION: std::ops::RangeInclusive<i64> = 900..=43_200;
/// Time-based snapshot copies are billed and scheduled in 15-minute steps.
const COPY_DURATION_STEP: i64 = 15;
/// The longest completion duration EC2 accepts for a time-based copy.
const COPY_DURATION_MAX: i64 = 2880;

pub(super) fn validate(config: &mut Config) -> Outcome {
    let mut out = Outcome::default();
    chroot_rules(config, &mut out);
    for (i, device) in config.chroot.ami_block_device_mappings.0.iter().enumerate() {
        block_device_rules(i, device, &mut out);
    }
    ami_rules(config, &mut out);
    tag_rules(config, &mut out);
    access_rules(config, &mut out);
    out
}

/// AWS refuses a tag without a key, and tags are applied only after the
/// AMI is registered (or, for the volume, at CreateVolume): say so now.
fn tag_rules(config: &Config, out: &mut Outcome) {
    let tags: [(
        &'static str,
        &BlockList<KeyValue>,
        &'static str,
        &TemplateMap,
    ); 3] = [
        ("tag", &config.ami.tag, "tags", &config.ami.tags),
        (
            "snapshot_tag",
            &config.snapshot.snapshot_tag,
            "snapshot_tags",
            &config.snapshot.snapshot_tags,
        ),
        (
            "root_volume_tag",
            &config.chroot.root_volume_tag,
            "root_volume_tags",
            &config.chroot.root_volume_tags,
        ),
    ];
    for (block, entries, map, merged) in tags {
        let mut reported = false;
        for (i, entry) in entries.0.iter().enumerate() {
            if entry.key.source().is_empty() {
                reported = true;
                out.error(
                    block,
                    format!("{block}[{i}].key must be set: AWS refuses a tag without a key"),
                );
            }
        }
        // The blocks are merged into the map: an empty key there that no
        // block explains came from the map itself.
        if !reported && merged.0.iter().any(|(k, _)| k.source().is_empty()) {
            out.error(
                map,
                format!("{map} has an empty key: AWS refuses a tag without a key"),
            );
        }
    }
}

fn chroot_rules(config: &Config, out: &mut Outcome) {
    let c = &config.chroot;
    for (i, mount) in c.chroot_mounts.iter().enumerate() {
        if mount.len() != 3 {
            out.error(
                "chroot_mounts",
                format!(
                    "Each chroot_mounts entry should be three elements ([fstype, source, destination]); \
                     chroot_mounts[{i}] has {}: {mount:?}",
                    mount.len()
                ),
            );
        } else if !mount[2].starts_with('/') {
            out.error(
                "chroot_mounts",
                format!(
                    "chroot_mounts[{i}]: the destination {:?} must be an absolute path inside the chroot (e.g. \"/proc\")",
                    mount[2]
                ),
            );
        }
    }

    // Each path names both the host file and its place in the chroot.
    for (i, file) in c.copy_files.iter().flatten().enumerate() {
        if !file.starts_with('/') {
            out.error(
                "copy_files",
                format!(
                    "copy_files[{i}]: {file:?} must be an absolute path (it names the host file and its \
                     place in the chroot, e.g. \"/etc/resolv.conf\")"
                ),
            );
        }
    }
    // The partition number is appended to the NVMe device as written
    // (upstream's docs: it must end with `p`); /dev/nvme1n1 + 1 would
    // mount the nonexistent /dev/nvme1n11.
    let partitioned =
        c.mount_partition != "0" && config.ami.ami_virtualization_type != "paravirtual";
    if partitioned && !c.nvme_device_path.is_empty() && !c.nvme_device_path.ends_with('p') {
        out.error(
            "nvme_device_path",
            format!(
                "nvme_device_path must end with \"p\" so that mount_partition {:?} can be appended \
                 (e.g. \"/dev/nvme1n1p\"), or set mount_partition to \"0\" to mount the whole device; got {:?}",
                c.mount_partition, c.nvme_device_path
            ),
        );
    }
    if c.mount_partition.is_empty() || !c.mount_partition.bytes().all(|b| b.is_ascii_digit()) {
        out.error(
            "mount_partition",
            format!(
                "mount_partition must be a partition number such as \"1\", or \"0\" for the whole device; got {:?}",
                c.mount_partition
            ),
        );
    }
    if c.root_volume_size < 0 {
        out.error(
            "root_volume_size",
            format!(
                "root_volume_size must be a positive number of GiB; got {}",
                c.root_volume_size
            ),
        );
    }
    let virt = &config.ami.ami_virtualization_type;
    if !virt.is_empty() && !VIRTUALIZATION_TYPES.contains(&virt.as_str()) {
        out.error(
            "ami_virtualization_type",
            format!("ami_virtualization_type must be \"hvm\" or \"paravirtual\"; got {virt:?}"),
        );
    }

    let mappings = &c.ami_block_device_mappings.0;
    if c.from_scratch {
        if !c.source_ami.is_empty() || !c.source_ami_filter.is_empty() {
            out.warnings.push(
                "source_ami and source_ami_filter are unused when from_scratch is true".into(),
            );
        }
        let required: [(&'static str, bool); 5] = [
            ("root_volume_size", c.root_volume_size == 0),
            ("pre_mount_commands", c.pre_mount_commands.is_empty()),
            ("ami_virtualization_type", virt.is_empty()),
            ("root_device_name", c.root_device_name.is_empty()),
            ("ami_block_device_mappings", mappings.is_empty()),
        ];
        // CreateVolume needs provisioned IOPS for these types, and there is
        // no option to give them for an empty volume (upstream fails at run time).
        if matches!(c.root_volume_type.as_str(), "io1" | "io2") {
            out.error(
                "root_volume_type",
                format!(
                    "root_volume_type {:?} is not supported with from_scratch (it needs provisioned IOPS); \
                     use gp2, gp3, st1, sc1 or standard",
                    c.root_volume_type
                ),
            );
        }
        for (option, missing) in required {
            if missing {
                out.error(option, format!("{option} is required with from_scratch."));
            }
        }
    } else {
        if c.source_ami.is_empty() && c.source_ami_filter.is_empty() {
            out.error("source_ami", "source_ami or source_ami_filter is required.");
        }
        match (mappings.is_empty(), c.root_device_name.is_empty()) {
            (false, false) => {
                if c.root_volume_size == 0 {
                    out.error(
                        "root_volume_size",
                        "root_volume_size is required if ami_block_device_mappings is specified",
                    );
                }
                out.warnings.push(
                    "ami_block_device_mappings from source image will be completely overwritten"
                        .into(),
                );
            }
            (false, true) => out.error(
                "root_device_name",
                "If ami_block_device_mappings is specified, root_device_name must be specified",
            ),
            (true, false) => out.error(
                "ami_block_device_mappings",
                "If root_device_name is specified, ami_block_device_mappings must be specified",
            ),
            (true, true) => {}
        }
        if !c.root_volume_kms_key_id.is_empty() && c.root_volume_encrypt_boot.is_false() {
            out.error(
                "root_volume_kms_key_id",
                "If you have set root_volume_kms_key_id, root_volume_encrypt_boot must also be true.",
            );
        }
    }
    if !mappings.is_empty()
        && !c.root_device_name.is_empty()
        && !mappings.iter().any(|m| m.device_name == c.root_device_name)
    {
        out.error(
            "root_device_name",
            format!(
                "root_device_name {:?} must be the device_name of one of the ami_block_device_mappings \
                 (it receives the new root snapshot)",
                c.root_device_name
            ),
        );
    }
    if !c.root_volume_kms_key_id.is_empty() {
        let build_region = Some(config.access.region.as_str()).filter(|r| !r.is_empty());
        check_kms_key(
            "root_volume_kms_key_id",
            build_region,
            &c.root_volume_kms_key_id,
            out,
        );
    }

    if !ARCHITECTURES.contains(&c.ami_architecture.as_str()) {
        out.error(
            "ami_architecture",
            format!(
                "The only valid ami_architecture values are \"arm64\", \"arm64_mac\", \"i386\", \"x86_64\", \
                 or \"x86_64_mac\"; got {:?}",
                c.ami_architecture
            ),
        );
    }
    if !c.tpm_support.is_empty() && c.tpm_support != "v2.0" {
        out.error(
            "tpm_support",
            format!(
                "The only valid tpm_support value is \"v2.0\"; got {:?}",
                c.tpm_support
            ),
        );
    }
    if !c.boot_mode.is_empty() && !BOOT_MODES.contains(&c.boot_mode.as_str()) {
        out.error(
            "boot_mode",
            format!(
                "boot_mode: invalid boot mode {:?}, valid values are either 'uefi', 'legacy-bios' or 'uefi-preferred'",
                c.boot_mode
            ),
        );
    }
    if !c.uefi_data.is_empty() {
        if c.boot_mode == "legacy-bios" {
            out.error(
                "uefi_data",
                "You can't use uefi_data with boot_mode set to \"legacy-bios\".",
            );
        } else if c.boot_mode.is_empty() && c.ami_architecture != "arm64" {
            out.error(
                "uefi_data",
                format!(
                    "You need boot_mode set to \"uefi\" to use uefi_data, \"{}\" architecture defaults to \"legacy-bios\".",
                    c.ami_architecture
                ),
            );
        }
    }
    let filter = &c.source_ami_filter;
    if !c.from_scratch && !filter.is_empty() && filter.owners.is_empty() {
        out.warnings.push(
            "source_ami_filter has no owners: an image of any account may match; set owners \
             (e.g. [\"amazon\"] or an account id)"
                .into(),
        );
    }
}

/// Upstream `BlockDevice.Prepare`, which upstream's chroot builder never
/// calls; every problem of every entry is reported.
fn block_device_rules(i: usize, b: &BlockDevice, out: &mut Outcome) {
    const OPTION: &str = "ami_block_device_mappings";
    let at = format!("ami_block_device_mappings[{i}]");
    let name = if b.device_name.is_empty() {
        at.clone()
    } else {
        b.device_name.clone()
    };
    if b.device_name.is_empty() {
        out.error(
            OPTION,
            format!("{at}: The `device_name` must be specified for every device in the block device mapping."),
        );
    }
    if !b.kms_key_id.is_empty() && b.encrypted.is_false() {
        out.error(
            OPTION,
            format!("{at}: The device {name}, must also have `encrypted: true` when setting a kms_key_id."),
        );
    }
    if b.volume_size < 0 {
        out.error(
            OPTION,
            format!(
                "{at}: volume_size must be a positive number of GiB; got {}",
                b.volume_size
            ),
        );
    }
    let ratio = match b.volume_type.as_str() {
        "io1" => Some(50),
        "io2" => Some(500),
        _ => None,
    };
    if let (Some(ratio), Some(iops)) = (ratio, b.iops) {
        // Compared by multiplying: upstream divides in integers, which lets
        // 509 IOPS on 10 GiB pass a 50:1 limit that AWS then refuses.
        if b.volume_size > 0 && iops > ratio * b.volume_size {
            out.error(
                OPTION,
                format!(
                    "{at}: {name}: the maximum ratio of provisioned IOPS to requested volume size (in GiB) is {ratio}:1 for {} volumes; \
                     got {iops} IOPS for {} GiB",
                    b.volume_type, b.volume_size
                ),
            );
        }
        if !(MIN_IOPS..=MAX_IOPS).contains(&iops) {
            out.error(
                OPTION,
                format!("{at}: IOPS must be between {MIN_IOPS} and {MAX_IOPS} for device {name}; got {iops}"),
            );
        }
    }
    if b.volume_type == "gp3" {
        if let Some(t) = b
            .throughput
            .filter(|t| !(MIN_THROUGHPUT_GP3..=MAX_THROUGHPUT_GP3).contains(t))
        {
            out.error(
                OPTION,
                format!(
                    "{at}: Throughput must be between {MIN_THROUGHPUT_GP3} and {MAX_THROUGHPUT_GP3} for device {name}; got {t}"
                ),
            );
        }
        if let Some(iops) = b
            .iops
            .filter(|n| !(MIN_IOPS_GP3..=MAX_IOPS_GP3).contains(n))
        {
            out.error(
                OPTION,
                format!("{at}: IOPS must be between {MIN_IOPS_GP3} and {MAX_IOPS_GP3} for device {name}; got {iops}"),
            );
        }
    } else if b.throughput.is_some() {
        out.error(
            OPTION,
            format!(
                "{at}: Throughput is only valid for gp3 volumes, {name:?} is of type {:?}",
                b.volume_type
            ),
        );
    }
}

fn ami_rules(config: &mut Config, out: &mut Outcome) {
    let ami = &config.ami;
    // The launch and create-volume permissions are set after the AMI is
    // registered, and AWS knows a single group.
    let groups = [
        ("ami_groups", &ami.ami_groups),
        ("snapshot_groups", &config.snapshot.snapshot_groups),
    ];
    for (option, groups) in groups {
        for group in groups.iter().filter(|g| g.as_str() != "all") {
            out.error(
                option,
                format!("The only group {option} may name is \"all\" (everyone); got {group:?}"),
            );
        }
    }
    let enhanced = [
        ("ena_support", ami.ena_support.is_true()),
        ("sriov_support", ami.sriov_support),
    ];
    for (option, on) in enhanced {
        if on && ami.ami_virtualization_type == "paravirtual" {
            out.error(
                option,
                format!(
                    "{option} needs an hvm AMI, but ami_virtualization_type is \"paravirtual\"; \
                     set it to \"hvm\" or turn {option} off"
                ),
            );
        }
    }
    let name = &ami.ami_name;
    if name.is_empty() {
        out.error("ami_name", "ami_name must be specified");
    } else {
        if name.len() < 3 || name.len() > 128 {
            out.error(
                "ami_name",
                format!(
                    "ami_name must be between 3 and 128 characters long; {name:?} has {}",
                    name.len()
                ),
            );
        }
        if *name != clean_resource_name(name) {
            out.error(
                "ami_name",
                format!(
                    "ami_name: AMIName should only contain alphanumeric characters, parentheses (()), square brackets ([]), \
                     spaces ( ), periods (.), slashes (/), dashes (-), single quotes ('), at-signs (@), or \
                     underscores(_). You can use the `clean_resource_name` template filter to automatically \
                     clean your ami name. Got {name:?}"
                ),
            );
        }
    }

    // Regions are checked against the list as written, before the build
    // region is dropped from it (as upstream does).
    let regions: BTreeSet<&str> = ami.ami_regions.iter().map(String::as_str).collect();
    let keys = &ami.region_kms_key_ids;
    for region in keys.keys() {
        if !regions.contains(region.as_str()) {
            out.error(
                "region_kms_key_ids",
                format!("Region {region} is in region_kms_key_ids but not in ami_regions"),
            );
        }
    }
    if !keys.is_empty() {
        for region in &regions {
            if !keys.contains_key(*region) {
                out.error(
                    "ami_regions",
                    format!("Region {region} is in ami_regions but not in region_kms_key_ids"),
                );
            }
        }
    }

    let encrypt = ami.encrypt_boot.is_true();
    let default_key = ami.kms_key_id.is_empty() && keys.is_empty() && encrypt;
    // Upstream's messages name no option; ours keep their text (users
    // search for it) and say which options clash and how to fix it.
    let default_key_regions: Vec<&str> = keys
        .iter()
        .filter(|(_, key)| key.is_empty())
        .map(|(region, _)| region.as_str())
        .collect();
    if !ami.ami_users.is_empty() || !ami.ami_org_arns.is_empty() || !ami.ami_ou_arns.is_empty() {
        if default_key {
            out.error(
                "ami_users",
                "Cannot share AMI encrypted with default KMS key: ami_users, ami_org_arns and ami_ou_arns \
                 need encrypt_boot with a customer managed key; set kms_key_id or region_kms_key_ids",
            );
        }
        if !default_key_regions.is_empty() {
            out.error(
                "region_kms_key_ids",
                format!(
                    "Cannot share AMI encrypted with default KMS key for other regions: region_kms_key_ids \
                     gives no key for {default_key_regions:?}, and ami_users, ami_org_arns or ami_ou_arns \
                     share the AMI; give a customer managed key for every region"
                ),
            );
        }
    }
    if !config.snapshot.snapshot_users.is_empty() {
        if default_key {
            out.error(
                "snapshot_users",
                "Cannot share snapshot encrypted with default KMS key: snapshot_users need encrypt_boot \
                 with a customer managed key; set kms_key_id or region_kms_key_ids",
            );
        }
        if !default_key_regions.is_empty() {
            out.error(
                "region_kms_key_ids",
                format!(
                    "Cannot share snapshot encrypted with default KMS key: region_kms_key_ids gives no key \
                     for {default_key_regions:?}, and snapshot_users share the snapshots; give a customer \
                     managed key for every region"
                ),
            );
        }
    }

    // (option, region the key is used in when known, key)
    let build_region = Some(config.access.region.as_str()).filter(|r| !r.is_empty());
    let mut kms_keys: Vec<(&'static str, Option<&str>, &str)> = Vec::new();
    if !ami.kms_key_id.is_empty() {
        kms_keys.push(("kms_key_id", build_region, &ami.kms_key_id));
    }
    kms_keys.extend(
        keys.iter()
            .filter(|(_, k)| !k.is_empty())
            .map(|(region, k)| ("region_kms_key_ids", Some(region.as_str()), k.as_str())),
    );
    if !kms_keys.is_empty() && !encrypt {
        out.error(
            "encrypt_boot",
            "If you have set either region_kms_key_ids or kms_key_id, encrypt_boot must also be true.",
        );
    }
    for (option, region, key) in kms_keys {
        check_kms_key(option, region, key, out);
    }

    if !ami.imds_support.is_empty() && ami.imds_support != "v2.0" {
        out.error(
            "imds_support",
            format!(
                "The only valid imds_support values are \"v2.0\" or the empty string; got {:?}",
                ami.imds_support
            ),
        );
    }
    if !ami.deprecate_at.is_empty() && clock::parse_rfc3339(&ami.deprecate_at).is_none() {
        out.error(
            "deprecate_at",
            format!(
                "deprecate_at is not a valid time: {:?}. Expect time format: YYYY-MM-DDTHH:MM:SSZ",
                ami.deprecate_at
            ),
        );
    }
    let minutes = ami.snapshot_copy_duration_minutes;
    if minutes != 0 && (minutes < COPY_DURATION_STEP || minutes % COPY_DURATION_STEP != 0) {
        out.error(
            "snapshot_copy_duration_minutes",
            format!("snapshot_copy_duration_minutes must be 0 or a multiple of 15 (at least 15); got {minutes}"),
        );
    } else if minutes > COPY_DURATION_MAX {
        out.error(
            "snapshot_copy_duration_minutes",
            format!(
                "snapshot_copy_duration_minutes must be at most {COPY_DURATION_MAX} (48 hours, EC2's limit for a time-based copy); got {minutes}"
            ),
        );
    }

    let copies = dedup_regions(&ami.ami_regions, &config.access.region);
    if ami.skip_save_build_region && copies.is_empty() {
        out.error(
            "skip_save_build_region",
            "skip_save_build_region needs at least one ami_regions entry other than the build region, \
             or no AMI would be kept",
        );
    }
    config.ami.ami_regions = copies;
}

fn access_rules(config: &Config, out: &mut Outcome) {
    let a = &config.access;
    if !a.vault_aws_engine.is_empty() && (!a.access_key.is_empty() || !a.secret_key.is_empty()) {
        out.error(
            "vault_aws_engine",
            "If you have set vault_aws_engine, you must not set the access_key or secret_key.",
        );
    }
    if a.access_key.is_empty() != a.secret_key.is_empty() {
        out.error(
            "access_key",
            "`access_key` and `secret_key` must both be either set or not set.",
        );
    }
    if a.max_retries < 0 {
        out.error(
            "max_retries",
            format!("max_retries must not be negative; got {}", a.max_retries),
        );
    }
    if let Some(p) = &a.aws_polling {
        for (name, v) in [
            ("max_attempts", p.max_attempts),
            ("delay_seconds", p.delay_seconds),
        ] {
            if v < 0 {
                out.error(
                    "aws_polling",
                    format!("aws_polling.{name} must not be negative; got {v}"),
                );
            }
        }
    }
    let role = &a.assume_role;
    if *role != Default::default() && role.role_arn.is_empty() {
        out.error(
            "assume_role",
            "assume_role.role_arn must be set when an assume_role block is given",
        );
    }
    if role.duration_seconds != 0 && !ASSUME_ROLE_DURATION.contains(&role.duration_seconds) {
        out.error(
            "assume_role",
            format!(
                "assume_role.duration_seconds must be between 900 and 43200; got {}",
                role.duration_seconds
            ),
        );
    }
}

/// The key's format, and for a key ARN used in a known region that it
/// is a key of that region: KMS keys are regional, and a mismatch fails
/// CreateVolume or CopyImage only in the middle of the build.
fn check_kms_key(option: &'static str, used_in: Option<&str>, key: &str, out: &mut Outcome) {
    if !valid_kms_key(key) {
        out.error(option, invalid_kms_key(option, key));
        return;
    }
    let arn_region = key
        .strip_prefix("arn:")
        .and_then(|rest| rest.split(':').nth(2))
        .filter(|r| !r.is_empty());
    if let (Some(used_in), Some(arn_region)) = (used_in, arn_region) {
        if used_in != arn_region {
            out.error(
                option,
                format!(
                    "{option}: the KMS key {key:?} is in {arn_region}, but it is used in {used_in}; \
                     KMS keys are regional, give a key of {used_in}"
                ),
            );
        }
    }
}

fn invalid_kms_key(option: &str, key: &str) -> String {
    format!(
        "{option}: {key:?} is not a valid KMS Key Id (expected a key id, mrk-<id>, alias/<name>, \
         or arn:aws:kms:<region>:<account>:key/<id> or …:alias/<name>)"
    )
}

/// Upstream `ValidateKmsKey`: a key id, a multi-region key id, an alias,
/// or the ARN of a key or alias.
pub(super) fn valid_kms_key(key: &str) -> bool {
    let key_id = |s: &str| {
        // `[a-f0-9]+[a-f0-9-]+`: at least two characters, starting with hex.
        s.len() >= 2
            && s.as_bytes()[0].is_ascii_hexdigit()
            && s.bytes()
                .all(|b| matches!(b, b'a'..=b'f' | b'0'..=b'9' | b'-'))
            && !s.as_bytes()[0].is_ascii_uppercase()
    };
    let mrk = |s: &str| s.strip_prefix("mrk-").is_some_and(key_id);
    let alias = |s: &str| {
        s.strip_prefix("alias/").is_some_and(|n| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b":/_-".contains(&b))
        })
    };
    if key_id(key) || mrk(key) || alias(key) {
        return true;
    }
    let Some(rest) = key.strip_prefix("arn:") else {
        return false;
    };
    // partition: aws, aws-xx, aws-xx-gov
    let mut parts = rest.splitn(5, ':');
    let (Some(partition), Some(service), Some(region), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let partition_ok = match partition.strip_prefix("aws") {
        Some("") => true,
        Some(p) => {
            let p = p.strip_prefix('-').unwrap_or("!");
            let (cc, gov) = p.split_once('-').map_or((p, None), |(a, b)| (a, Some(b)));
            cc.len() == 2
                && cc.bytes().all(|b| b.is_ascii_lowercase())
                && matches!(gov, None | Some("gov"))
        }
        None => false,
    };
    let region_ok = region.is_empty() || valid_region(region);
    let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    let resource_ok = resource
        .strip_prefix("key/")
        .is_some_and(|k| key_id(k) || mrk(k))
        || alias(resource);
    partition_ok && service == "kms" && region_ok && account_ok && resource_ok
}

/// `[a-z]{2}-(gov-)?[a-z]+-\d` (upstream's region pattern in KMS ARNs).
fn valid_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    let lower = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase());
    let digit = |s: &str| s.len() == 1 && s.as_bytes()[0].is_ascii_digit();
    match parts.as_slice() {
        [cc, name, n] => cc.len() == 2 && lower(cc) && lower(name) && digit(n),
        [cc, "gov", name, n] => cc.len() == 2 && lower(cc) && lower(name) && digit(n),
        _ => false,
    }
}
