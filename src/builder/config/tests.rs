use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::*;
use crate::builder::template::{BuildInfo, TemplateData};
use crate::plugin::api::{Map, PackerSettings, TemplateKind};
use crate::plugin::spec::CtyType;

fn settings() -> PackerSettings {
    PackerSettings {
        build_name: "web".into(),
        builder_type: "amazon-chroot".into(),
        core_version: Some("1.11.2".into()),
        user_variables: BTreeMap::from([("env".to_string(), "uservalue7".to_string())]),
        ..Default::default()
    }
}

fn object(v: Value) -> Map {
    match v {
        Value::Object(m) => m,
        other => panic!("test config must be an object, got {other}"),
    }
}

/// A JSON-template Prepare with `extra` on top of a valid minimal config.
fn json_args(extra: Value) -> PrepareArgs {
    let mut config = object(json!({"ami_name": "test-ami", "source_ami": "ami-123"}));
    config.extend(object(extra));
    PrepareArgs {
        kind: TemplateKind::Json,
        config,
        packer: settings(),
    }
}

/// What Packer sends for an HCL2 source: every spec entry present,
/// unset attributes and single blocks null, block lists empty.
fn hcl2_args(given: Value) -> PrepareArgs {
    let mut config = Map::new();
    for (name, spec) in config_spec().0 {
        let empty = match spec {
            Spec::BlockList { .. } => json!([]),
            _ => Value::Null,
        };
        config.insert(name, empty);
    }
    config.extend(object(given));
    PrepareArgs {
        kind: TemplateKind::Hcl2,
        config,
        packer: PackerSettings {
            user_variables: BTreeMap::new(),
            ..settings()
        },
    }
}

fn prepare(args: &PrepareArgs) -> (Config, Prepared) {
    match Config::from_prepare(args) {
        Ok(ok) => ok,
        Err(e) => panic!("unexpected errors: {e}"),
    }
}

fn ok(extra: Value) -> (Config, Prepared) {
    prepare(&json_args(extra))
}

fn errors(extra: Value) -> Vec<String> {
    errors_of(&json_args(extra))
}

fn errors_of(args: &PrepareArgs) -> Vec<String> {
    match Config::from_prepare(args) {
        Ok((c, _)) => panic!("expected errors, got {c:?}"),
        Err(PrepareErrors(e)) => e,
    }
}

/// Asserts exactly one error, containing `needle`.
fn one_error(extra: Value, needle: &str) {
    let e = errors(extra);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].contains(needle),
        "{:?} does not contain {needle:?}",
        e[0]
    );
}

// ---- decoding -------------------------------------------------------------

#[test]
fn decodes_minimal_json_config_with_upstream_defaults() {
    let (c, p) = ok(json!({}));
    assert_eq!(c.ami.ami_name, "test-ami");
    assert_eq!(c.chroot.source_ami, "ami-123");
    assert_eq!(c.chroot.command_wrapper.source(), "{{.Command}}");
    assert_eq!(
        c.chroot.mount_path.source(),
        "/mnt/packer-amazon-chroot-volumes/{{.Device}}"
    );
    assert_eq!(c.chroot.mount_partition, "1");
    assert_eq!(c.chroot.ami_architecture, "x86_64");
    assert_eq!(c.chroot.chroot_mounts.len(), 5);
    assert_eq!(c.chroot.chroot_mounts[2], vec!["bind", "/dev", "/dev"]);
    assert_eq!(c.copy_files(), ["/etc/resolv.conf"]);
    assert_eq!(c.access.max_retries, 10);
    assert!(!c.ami.force_deregister);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn decodes_hcl2_config_with_nulls_for_unset_options() {
    let (c, p) = prepare(&hcl2_args(json!({
        "ami_name": "hcl-ami",
        "source_ami_filter": {"filters": {"name": "debian-*"}, "owners": ["amazon"], "most_recent": true, "include_deprecated": null},
        "root_volume_size": 20,
        "ena_support": true,
        "ami_block_device_mappings": [
            {"device_name": "/dev/xvda", "volume_size": 20, "volume_type": "gp3", "iops": 3000, "throughput": 125,
             "delete_on_termination": true, "encrypted": null, "kms_key_id": null, "no_device": null,
             "snapshot_id": null, "virtual_name": null}
        ],
        "root_device_name": "/dev/xvda",
        "tag": [{"key": "Name", "value": "web"}],
    })));
    assert_eq!(c.ami.ami_name, "hcl-ami");
    assert!(c.chroot.source_ami_filter.most_recent);
    assert_eq!(c.chroot.source_ami_filter.owners, ["amazon"]);
    assert_eq!(c.chroot.root_volume_size, 20);
    assert_eq!(c.ami.ena_support, Trilean::True);
    assert_eq!(c.ami.encrypt_boot, Trilean::Unset);
    let m = &c.chroot.ami_block_device_mappings.0[0];
    assert_eq!(
        (m.iops, m.throughput, m.encrypted),
        (Some(3000), Some(125), Trilean::Unset)
    );
    assert_eq!(c.copy_files(), ["/etc/resolv.conf"]);
    assert_eq!(c.ami.tags.0.len(), 1);
    assert_eq!(
        p.warnings,
        ["ami_block_device_mappings from source image will be completely overwritten"]
    );
}

#[test]
fn accepts_hcl2_options_still_wrapped_as_cty_json() {
    let inner = hcl2_args(json!({"ami_name": "wrapped", "source_ami": "ami-1"})).config;
    let mut args = hcl2_args(json!({}));
    args.config = object(json!({"value": inner, "type": ["object", {}]}));
    let (c, _) = prepare(&args);
    assert_eq!(c.ami.ami_name, "wrapped");
}

#[test]
fn wraps_host_commands_with_command_wrapper() {
    let (c, _) = ok(json!({"command_wrapper": "sudo -n {{.Command}}"}));
    assert_eq!(
        c.wrap_command("umount /mnt/x").unwrap(),
        "sudo -n umount /mnt/x"
    );
}

#[test]
fn decodes_hcl2_repeatable_blocks_and_nested_lists() {
    let (c, _) = prepare(&hcl2_args(json!({
        "ami_name": "hcl-ami",
        "source_ami": "ami-1",
        "chroot_mounts": [["proc", "proc", "/proc"], ["bind", "/run", "/run"]],
        "root_volume_tag": [{"key": "A", "value": "1"}, {"key": "B", "value": "{{.SourceAMI}}"}],
        "snapshot_tags": {"S": "x"},
        "deregistration_protection": {"enabled": true, "with_cooldown": null},
        "copy_files": [],
    })));
    assert_eq!(c.chroot.chroot_mounts[1], ["bind", "/run", "/run"]);
    assert_eq!(c.chroot.root_volume_tags.0.len(), 2);
    assert_eq!(c.snapshot.snapshot_tags.0.len(), 1);
    assert!(c.ami.deregistration_protection.enabled);
    assert!(c.copy_files().is_empty());
    assert_eq!(c.chroot.command_wrapper.source(), "{{.Command}}");
}

#[test]
fn decodes_json_block_device_mappings_with_float_numbers() {
    let (c, _) = ok(json!({
        "root_device_name": "/dev/xvda", "root_volume_size": 8.0,
        "ami_block_device_mappings": [
            {"device_name": "/dev/xvda", "volume_type": "gp3", "volume_size": 8.0, "iops": 3000.0, "throughput": 125.0, "delete_on_termination": "true"}
        ]
    }));
    let m = &c.chroot.ami_block_device_mappings.0[0];
    assert_eq!(
        (m.volume_size, m.iops, m.throughput),
        (8, Some(3000), Some(125))
    );
    assert!(m.delete_on_termination);
}

#[test]
fn decodes_json_floats_as_whole_numbers() {
    let (c, _) = ok(json!({"root_volume_size": 10.0, "max_retries": 3.0}));
    assert_eq!((c.chroot.root_volume_size, c.access.max_retries), (10, 3));
}

#[test]
fn rejects_fractional_number_for_whole_number_option() {
    one_error(
        json!({"root_volume_size": 1.5}),
        "root_volume_size: expected a whole number, got the number 1.5",
    );
}

#[test]
fn decodes_csv_strings_as_lists() {
    let (c, _) = ok(json!({"ami_users": "111111111111,222222222222", "mount_options": "nouuid"}));
    assert_eq!(c.ami.ami_users, ["111111111111", "222222222222"]);
    assert_eq!(c.chroot.mount_options, ["nouuid"]);
}

#[test]
fn decodes_weak_bools_from_strings_and_numbers() {
    let (c, _) = ok(
        json!({"sriov_support": "true", "skip_region_validation": 1, "force_delete_snapshot": "0"}),
    );
    assert!(c.ami.sriov_support);
    assert!(c.ami.skip_region_validation);
    assert!(!c.ami.force_delete_snapshot);
}

#[test]
fn decodes_numbers_and_bools_into_string_options() {
    let (c, _) = ok(json!({"mount_partition": 2, "profile": true}));
    assert_eq!(c.chroot.mount_partition, "2");
    assert_eq!(c.access.profile, "1");
}

#[test]
fn decodes_trileans_as_unset_true_or_false() {
    let (c, _) =
        ok(json!({"encrypt_boot": false, "ena_support": "true", "root_volume_encrypt_boot": ""}));
    assert_eq!(c.ami.encrypt_boot, Trilean::False);
    assert_eq!(c.ami.ena_support, Trilean::True);
    assert_eq!(c.chroot.root_volume_encrypt_boot, Trilean::Unset);
    assert_eq!(c.ami.encrypt_boot.as_option(), Some(false));
}

#[test]
fn merges_repeatable_tag_blocks_into_maps_with_the_block_winning() {
    let (c, _) = ok(json!({
        "tags": {"Name": "from-map", "Team": "ops"},
        "tag": [{"key": "Name", "value": "from-block"}],
        "snapshot_tag": [{"key": "Kind", "value": "snap"}],
        "root_volume_tag": {"key": "Vol", "value": "{{.BuildRegion}}"},
    }));
    let data = TemplateData {
        build_info: Some(BuildInfo {
            build_region: "eu-west-1".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let tags = c.ami.tags.render(&data).unwrap();
    assert_eq!(tags.get("Name").map(String::as_str), Some("from-block"));
    assert_eq!(tags.get("Team").map(String::as_str), Some("ops"));
    assert_eq!(
        c.snapshot
            .snapshot_tags
            .render(&data)
            .unwrap()
            .get("Kind")
            .unwrap(),
        "snap"
    );
    assert_eq!(
        c.chroot
            .root_volume_tags
            .render(&data)
            .unwrap()
            .get("Vol")
            .unwrap(),
        "eu-west-1"
    );
}

#[test]
fn decodes_chroot_mounts_as_list_of_lists() {
    let (c, _) = ok(json!({"chroot_mounts": [["proc", "proc", "/proc"], "bind,/run,/run"]}));
    assert_eq!(
        c.chroot.chroot_mounts,
        vec![vec!["proc", "proc", "/proc"], vec!["bind", "/run", "/run"]]
    );
}

#[test]
fn uses_default_chroot_mounts_for_an_empty_list() {
    let (c, _) = ok(json!({"chroot_mounts": []}));
    assert_eq!(c.chroot.chroot_mounts.len(), DEFAULT_CHROOT_MOUNTS.len());
}

#[test]
fn keeps_an_empty_copy_files_list_empty() {
    let (c, _) = ok(json!({"copy_files": []}));
    assert!(c.copy_files().is_empty());
}

#[test]
fn copies_no_files_by_default_with_from_scratch() {
    let (c, _) = ok(from_scratch_config());
    assert!(c.copy_files().is_empty());
}

#[test]
fn decodes_single_blocks() {
    let (c, _) = ok(json!({
        "assume_role": {"role_arn": "arn:aws:iam::123456789012:role/x", "duration_seconds": 3600, "tags": {"a": "b"}},
        "aws_polling": {"max_attempts": 60, "delay_seconds": 5},
        "deregistration_protection": {"with_cooldown": true},
        "vault_aws_engine": {"name": "role"},
    }));
    assert_eq!(c.access.assume_role.duration_seconds, 3600);
    assert_eq!(c.access.assume_role.tags.get("a").unwrap(), "b");
    assert_eq!(
        c.access
            .aws_polling
            .as_ref()
            .map(|p| (p.max_attempts, p.delay_seconds)),
        Some((60, 5))
    );
    assert!(
        c.ami.deregistration_protection.enabled,
        "with_cooldown implies enabled"
    );
    assert_eq!(c.access.vault_aws_engine.name, "role");
}

#[test]
fn leaves_aws_polling_unset_when_absent() {
    let (c, _) = ok(json!({}));
    assert!(c.access.aws_polling.is_none());
}

#[test]
fn rejects_unknown_key() {
    one_error(
        json!({"ami_nmae": "x"}),
        "unknown configuration key: '\"ami_nmae\"'; did you mean \"ami_name\"?",
    );
    one_error(
        json!({"colour": "x"}),
        "unknown configuration key: '\"colour\"'",
    );
}

#[test]
fn rejects_unknown_key_inside_a_block() {
    one_error(
        json!({"source_ami_filter": {"owners": ["self"], "ownres": ["x"]}}),
        "unknown configuration key: '\"source_ami_filter.ownres\"'",
    );
}

#[test]
fn ignores_type_and_packer_keys() {
    ok(json!({"type": "amazon-chroot", "packer_whatever": 1}));
}

#[test]
fn rejects_deprecated_key_with_packer_fix_message() {
    for key in declare::DEPRECATED_KEYS {
        let e = errors(json!({ *key: true }));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with(&format!(
                "Deprecated configuration key: '{key}'. Please call `packer fix`"
            )),
            "{}",
            e[0]
        );
    }
}

#[test]
fn rejects_wrong_types_naming_the_option_and_what_is_allowed() {
    let e = errors(
        json!({"from_scratch": "yes", "ami_users": {"a": 1}, "root_volume_size": "ten", "tags": "x"}),
    );
    assert_eq!(
        e,
        [
            "from_scratch: expected a boolean (true or false), got the string \"yes\"",
            "root_volume_size: expected a whole number, got the string \"ten\"",
            "ami_users: expected a list, got an object",
            "tags: expected a map of strings, got the string \"x\"",
        ]
    );
}

#[test]
fn force_flag_sets_force_deregister() {
    let mut args = json_args(json!({}));
    args.packer.force = true;
    let (c, _) = prepare(&args);
    assert!(c.ami.force_deregister);
    assert!(c.run.force);
}

#[test]
fn interpolates_prepare_time_options() {
    let (c, _) = ok(json!({
        "ami_name": "web {{user `env`}} {{isotime \"2006\"}} {{ \"a:b\" | clean_resource_name }}",
        "ami_regions": ["{{user `env`}}-region"],
        "source_ami_filter": {"filters": {"name": "{{build_name}}-*"}, "owners": ["self"]},
    }));
    assert!(
        c.ami.ami_name.starts_with("web uservalue7 20"),
        "{}",
        c.ami.ami_name
    );
    assert!(c.ami.ami_name.ends_with(" a-b"), "{}", c.ami.ami_name);
    assert_eq!(c.ami.ami_regions, ["uservalue7-region"]);
    assert_eq!(
        c.chroot.source_ami_filter.filters.get("name").unwrap(),
        "web-*"
    );
}

#[test]
fn keeps_run_time_options_as_templates() {
    let (c, _) = ok(json!({
        "command_wrapper": "sudo {{.Command}}",
        "pre_mount_commands": ["parted {{.Device}}"],
        "post_mount_commands": ["ls {{.MountPath}}{{.Device}}"],
        "ami_description": "from {{.SourceAMIName}}",
    }));
    let data = TemplateData {
        command: Some("mount x".into()),
        device: Some("/dev/xvdf".into()),
        mount_path: Some("/mnt/x".into()),
        build_info: Some(BuildInfo {
            source_ami_name: "debian".into(),
            ..Default::default()
        }),
    };
    assert_eq!(
        c.chroot.command_wrapper.render(&data).unwrap(),
        "sudo mount x"
    );
    assert_eq!(
        c.chroot.pre_mount_commands[0].render(&data).unwrap(),
        "parted /dev/xvdf"
    );
    assert_eq!(
        c.chroot.post_mount_commands[0].render(&data).unwrap(),
        "ls /mnt/x/dev/xvdf"
    );
    assert_eq!(c.ami.ami_description.render(&data).unwrap(), "from debian");
}

#[test]
fn rejects_invalid_template_naming_the_option() {
    one_error(
        json!({"ami_name": "foo {{"}),
        "ami_name: invalid template: unclosed action",
    );
}

#[test]
fn rejects_data_field_the_option_does_not_have() {
    one_error(
        json!({"pre_mount_commands": ["mkfs {{.MountPath}}"]}),
        "pre_mount_commands[0]: invalid template: .MountPath is not available here (available: .Device)",
    );
    one_error(
        json!({"ami_name": "x-{{.SourceAMIName}}"}),
        "ami_name: invalid template: .SourceAMIName is not available here",
    );
}

#[test]
fn rejects_env_in_builder_options() {
    one_error(
        json!({"ami_name": "x-{{env `HOME`}}"}),
        "ami_name: invalid template: env vars are not allowed here",
    );
}

#[test]
fn reports_all_errors_at_once() {
    let e = errors(json!({"ami_name": "", "source_ami": "", "boot_mode": "bios"}));
    assert_eq!(
        e,
        [
            "source_ami or source_ami_filter is required.",
            "invalid boot mode \"bios\", valid values are either 'uefi', 'legacy-bios' or 'uefi-preferred'",
            "ami_name must be specified",
        ]
    );
}

#[test]
fn skips_follow_up_errors_of_options_that_failed_to_decode() {
    let e = errors(json!({"ami_name": ["a", "b"]}));
    assert_eq!(e, ["ami_name: expected a string, got a list"]);
}

#[test]
fn returns_generated_data_names_in_upstream_order() {
    let (_, p) = ok(json!({}));
    assert_eq!(
        p.generated_vars,
        [
            "SourceAMIName",
            "BuildRegion",
            "SourceAMI",
            "SourceAMICreationDate",
            "SourceAMIOwner",
            "SourceAMIOwnerName",
            "Device",
            "MountPath",
        ]
    );
}

#[test]
fn redacts_secrets_in_debug_output() {
    let (c, _) = ok(
        json!({"access_key": "AKIDSECRETVALUE", "secret_key": "s3cr3tvalue", "token": "tok3nvalue", "mfa_code": "123456"}),
    );
    assert_eq!(c.access.access_key.expose(), "AKIDSECRETVALUE");
    let debug = format!("{c:?}");
    for secret in [
        "AKIDSECRETVALUE",
        "s3cr3tvalue",
        "tok3nvalue",
        "123456",
        "uservalue7",
    ] {
        assert!(!debug.contains(secret), "{secret} leaked in {debug}");
    }
    assert!(debug.contains("<redacted>"));
}

#[test]
fn collects_credentials_and_sensitive_user_variables_as_secrets() {
    let mut args = json_args(json!({"access_key": "AKID", "secret_key": "SK"}));
    args.packer
        .user_variables
        .insert("db_password".into(), "hunter2".into());
    args.packer.sensitive_variables = vec!["db_password".into(), "unset".into()];
    let (c, _) = prepare(&args);
    let secrets: Vec<&str> = c.secrets.iter().map(Secret::expose).collect();
    assert_eq!(secrets, ["AKID", "SK", "hunter2"]);
}

#[test]
fn rejects_provisioned_iops_volume_type_with_from_scratch() {
    let mut cfg = from_scratch_config();
    cfg["root_volume_type"] = json!("io1");
    one_error(
        cfg,
        "root_volume_type \"io1\" is not supported with from_scratch",
    );
}

#[test]
fn deduplicates_ami_regions_and_drops_the_build_region() {
    let (c, _) = ok(
        json!({"region": "us-east-1", "ami_regions": ["eu-west-1", "us-east-1", "eu-west-1", "ap-south-1"]}),
    );
    assert_eq!(c.ami.ami_regions, ["eu-west-1", "ap-south-1"]);
}

// ---- validation -----------------------------------------------------------

#[test]
fn rejects_missing_ami_name() {
    one_error(json!({"ami_name": ""}), "ami_name must be specified");
}

#[test]
fn rejects_ami_name_shorter_than_3_characters() {
    one_error(
        json!({"ami_name": "ab"}),
        "ami_name must be between 3 and 128 characters long",
    );
}

#[test]
fn rejects_ami_name_longer_than_128_characters() {
    one_error(
        json!({"ami_name": "a".repeat(129)}),
        "ami_name must be between 3 and 128 characters long",
    );
}

#[test]
fn rejects_ami_name_with_invalid_characters_after_interpolation() {
    one_error(
        json!({"ami_name": "web:{{timestamp}}"}),
        "AMIName should only contain alphanumeric characters",
    );
}

#[test]
fn accepts_ami_name_cleaned_with_clean_resource_name() {
    ok(json!({"ami_name": "{{ \"web:{{\" | clean_resource_name }}-{{timestamp}}"}));
}

#[test]
fn rejects_missing_source_ami() {
    one_error(
        json!({"source_ami": ""}),
        "source_ami or source_ami_filter is required.",
    );
}

#[test]
fn accepts_source_ami_filter_instead_of_source_ami() {
    ok(json!({"source_ami": "", "source_ami_filter": {"owners": ["amazon"]}}));
}

#[test]
fn warns_when_source_ami_filter_has_no_owners() {
    let (_, p) = ok(json!({"source_ami": "", "source_ami_filter": {"filters": {"name": "x"}}}));
    assert_eq!(p.warnings.len(), 1);
    assert!(p.warnings[0].contains("source_ami_filter has no owners"));
}

#[test]
fn rejects_chroot_mounts_entry_without_three_elements() {
    one_error(
        json!({"chroot_mounts": [["bad"]]}),
        "Each chroot_mounts entry should be three elements",
    );
}

#[test]
fn rejects_relative_chroot_mount_destination() {
    one_error(
        json!({"chroot_mounts": [["proc", "proc", "proc"]]}),
        "chroot_mounts[0]: the destination \"proc\" must be an absolute path",
    );
}

#[test]
fn rejects_non_numeric_mount_partition() {
    one_error(
        json!({"mount_partition": "p1"}),
        "mount_partition must be a partition number",
    );
}

#[test]
fn rejects_negative_root_volume_size() {
    one_error(
        json!({"root_volume_size": -1}),
        "root_volume_size must be a positive number of GiB",
    );
}

fn from_scratch_config() -> Value {
    json!({
        "from_scratch": true, "source_ami": "",
        "root_volume_size": 8, "pre_mount_commands": ["parted {{.Device}}"],
        "ami_virtualization_type": "hvm", "root_device_name": "/dev/xvda",
        "ami_block_device_mappings": [{"device_name": "/dev/xvda", "volume_type": "gp3"}]
    })
}

#[test]
fn accepts_complete_from_scratch_config() {
    let (c, p) = ok(from_scratch_config());
    assert!(c.chroot.from_scratch);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn rejects_from_scratch_without_its_required_options() {
    let e = errors(json!({"from_scratch": true}));
    assert_eq!(
        e,
        [
            "root_volume_size is required with from_scratch.",
            "pre_mount_commands is required with from_scratch.",
            "ami_virtualization_type is required with from_scratch.",
            "root_device_name is required with from_scratch.",
            "ami_block_device_mappings is required with from_scratch.",
        ]
    );
}

#[test]
fn warns_when_from_scratch_has_a_source_ami() {
    let mut cfg = from_scratch_config();
    cfg["source_ami"] = json!("ami-1");
    let (_, p) = ok(cfg);
    assert_eq!(
        p.warnings,
        ["source_ami and source_ami_filter are unused when from_scratch is true"]
    );
}

#[test]
fn rejects_mappings_without_root_device_name() {
    one_error(
        json!({"ami_block_device_mappings": [{"device_name": "/dev/xvda"}], "root_volume_size": 8}),
        "If ami_block_device_mappings is specified, root_device_name must be specified",
    );
}

#[test]
fn rejects_root_device_name_without_mappings() {
    one_error(
        json!({"root_device_name": "/dev/xvda"}),
        "If root_device_name is specified, ami_block_device_mappings must be specified",
    );
}

#[test]
fn rejects_mappings_without_root_volume_size() {
    one_error(
        json!({"ami_block_device_mappings": [{"device_name": "/dev/xvda"}], "root_device_name": "/dev/xvda"}),
        "root_volume_size is required if ami_block_device_mappings is specified",
    );
}

#[test]
fn rejects_root_device_name_missing_from_mappings() {
    one_error(
        json!({"ami_block_device_mappings": [{"device_name": "/dev/sdb"}], "root_device_name": "/dev/xvda", "root_volume_size": 8}),
        "root_device_name \"/dev/xvda\" must be the device_name of one of the ami_block_device_mappings",
    );
}

#[test]
fn warns_that_mappings_replace_the_source_mappings() {
    let (_, p) = ok(
        json!({"ami_block_device_mappings": [{"device_name": "/dev/xvda"}], "root_device_name": "/dev/xvda", "root_volume_size": 8}),
    );
    assert_eq!(
        p.warnings,
        ["ami_block_device_mappings from source image will be completely overwritten"]
    );
}

#[test]
fn rejects_root_volume_kms_key_with_encrypt_false() {
    one_error(
        json!({"root_volume_kms_key_id": "alias/x", "root_volume_encrypt_boot": false}),
        "If you have set root_volume_kms_key_id, root_volume_encrypt_boot must also be true.",
    );
}

#[test]
fn rejects_invalid_root_volume_kms_key() {
    one_error(
        json!({"root_volume_kms_key_id": "not a key", "root_volume_encrypt_boot": true}),
        "root_volume_kms_key_id: \"not a key\" is not a valid KMS Key Id",
    );
}

#[test]
fn rejects_unknown_architecture() {
    one_error(
        json!({"ami_architecture": "amd64"}),
        "The only valid ami_architecture values are",
    );
}

#[test]
fn rejects_tpm_support_other_than_v2() {
    one_error(
        json!({"tpm_support": "v3.0"}),
        "The only valid tpm_support value is \"v2.0\"",
    );
    ok(json!({"tpm_support": "v2.0"}));
}

#[test]
fn rejects_unknown_boot_mode() {
    one_error(json!({"boot_mode": "bios"}), "invalid boot mode \"bios\"");
}

#[test]
fn rejects_uefi_data_with_legacy_bios() {
    one_error(
        json!({"uefi_data": "QUJD", "boot_mode": "legacy-bios"}),
        "You can't use uefi_data with boot_mode set to \"legacy-bios\".",
    );
}

#[test]
fn rejects_uefi_data_without_boot_mode_on_x86_64() {
    one_error(json!({"uefi_data": "QUJD"}), "You need boot_mode set to \"uefi\" to use uefi_data, \"x86_64\" architecture defaults to \"legacy-bios\".");
}

#[test]
fn accepts_uefi_data_with_uefi_or_on_arm64() {
    ok(json!({"uefi_data": "QUJD", "boot_mode": "uefi"}));
    ok(json!({"uefi_data": "QUJD", "ami_architecture": "arm64"}));
}

#[test]
fn rejects_unknown_virtualization_type() {
    one_error(
        json!({"ami_virtualization_type": "pv"}),
        "ami_virtualization_type must be \"hvm\" or \"paravirtual\"",
    );
}

#[test]
fn rejects_region_kms_key_for_a_region_not_in_ami_regions() {
    one_error(
        json!({"encrypt_boot": true, "ami_regions": ["eu-west-1"], "region_kms_key_ids": {"eu-west-1": "alias/a", "us-west-2": "alias/b"}}),
        "Region us-west-2 is in region_kms_key_ids but not in ami_regions",
    );
}

#[test]
fn rejects_ami_region_without_a_kms_key() {
    one_error(
        json!({"encrypt_boot": true, "ami_regions": ["eu-west-1", "us-west-2"], "region_kms_key_ids": {"eu-west-1": "alias/a"}}),
        "Region us-west-2 is in ami_regions but not in region_kms_key_ids",
    );
}

#[test]
fn rejects_sharing_an_ami_encrypted_with_the_default_key() {
    one_error(
        json!({"encrypt_boot": true, "ami_users": ["123456789012"]}),
        "Cannot share AMI encrypted with default KMS key",
    );
}

#[test]
fn rejects_sharing_with_an_empty_region_key() {
    one_error(
        json!({"encrypt_boot": true, "ami_org_arns": ["arn:aws:organizations::1:organization/o-1"], "ami_regions": ["eu-west-1"], "region_kms_key_ids": {"eu-west-1": ""}}),
        "Cannot share AMI encrypted with default KMS key for other regions",
    );
}

#[test]
fn rejects_sharing_a_snapshot_encrypted_with_the_default_key() {
    one_error(
        json!({"encrypt_boot": true, "snapshot_users": ["123456789012"]}),
        "Cannot share snapshot encrypted with default KMS key, see",
    );
    one_error(
        json!({"encrypt_boot": true, "snapshot_users": ["1"], "ami_regions": ["eu-west-1"], "region_kms_key_ids": {"eu-west-1": ""}}),
        "Cannot share snapshot encrypted with default KMS key",
    );
}

#[test]
fn rejects_kms_key_without_encrypt() {
    one_error(
        json!({"kms_key_id": "alias/mine"}),
        "If you have set either region_kms_key_ids or kms_key_id, encrypt_boot must also be true.",
    );
}

#[test]
fn rejects_invalid_kms_key_id() {
    one_error(
        json!({"kms_key_id": "my key", "encrypt_boot": true}),
        "kms_key_id: \"my key\" is not a valid KMS Key Id",
    );
}

#[test]
fn accepts_the_kms_key_formats_aws_accepts() {
    for key in [
        "12345678-1234-1234-1234-123456789012",
        "mrk-1234abcd12ab34cd56ef1234567890ab",
        "alias/my_key-1",
        "arn:aws:kms:us-east-1:123456789012:key/12345678-1234-1234-1234-123456789012",
        "arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/mrk-1234abcd",
        "arn:aws-cn:kms:cn-north-1:123456789012:alias/x",
    ] {
        assert!(validate::valid_kms_key(key), "{key}");
    }
    for key in [
        "",
        "x",
        "ALIAS/x",
        "alias/",
        "arn:aws:kms:us-east-1:12345:key/abc",
        "arn:aws:s3:us-east-1:123456789012:key/abc",
        "12AB",
    ] {
        assert!(!validate::valid_kms_key(key), "{key}");
    }
}

#[test]
fn rejects_imds_support_other_than_v2() {
    one_error(
        json!({"imds_support": "v3.0"}),
        "The only valid imds_support values are \"v2.0\" or the empty string",
    );
    ok(json!({"imds_support": "v2.0"}));
}

#[test]
fn rejects_deprecate_at_that_is_not_rfc3339() {
    one_error(json!({"deprecate_at": "2030-01-02"}), "deprecate_at is not a valid time: \"2030-01-02\". Expect time format: YYYY-MM-DDTHH:MM:SSZ");
    ok(json!({"deprecate_at": "2030-01-02T15:04:05Z"}));
}

#[test]
fn rejects_snapshot_copy_duration_that_is_not_a_multiple_of_15() {
    one_error(
        json!({"snapshot_copy_duration_minutes": 20}),
        "snapshot_copy_duration_minutes must be 0 or a multiple of 15",
    );
    ok(json!({"snapshot_copy_duration_minutes": 30}));
}

#[test]
fn rejects_snapshot_copy_duration_longer_than_ec2_allows() {
    one_error(
        json!({"snapshot_copy_duration_minutes": 2895}),
        "snapshot_copy_duration_minutes must be at most 2880",
    );
    ok(json!({"snapshot_copy_duration_minutes": 2880}));
}

#[test]
fn rejects_skip_save_build_region_without_other_regions() {
    one_error(
        json!({"skip_save_build_region": true, "region": "us-east-1", "ami_regions": ["us-east-1"]}),
        "skip_save_build_region needs at least one ami_regions entry",
    );
    ok(
        json!({"skip_save_build_region": true, "region": "us-east-1", "ami_regions": ["eu-west-1"]}),
    );
}

#[test]
fn rejects_access_key_without_secret_key() {
    one_error(
        json!({"access_key": "AKID"}),
        "`access_key` and `secret_key` must both be either set or not set.",
    );
}

#[test]
fn rejects_vault_aws_engine_with_static_keys() {
    one_error(
        json!({"access_key": "AKID", "secret_key": "s", "vault_aws_engine": {"name": "r"}}),
        "If you have set vault_aws_engine, you must not set the access_key or secret_key.",
    );
}

#[test]
fn rejects_negative_max_retries() {
    one_error(
        json!({"max_retries": -1}),
        "max_retries must not be negative",
    );
}

#[test]
fn rejects_negative_polling_values() {
    let e = errors(json!({"aws_polling": {"max_attempts": -1, "delay_seconds": -2}}));
    assert_eq!(
        e,
        [
            "aws_polling.max_attempts must not be negative; got -1",
            "aws_polling.delay_seconds must not be negative; got -2"
        ]
    );
}

#[test]
fn rejects_assume_role_without_role_arn() {
    one_error(
        json!({"assume_role": {"session_name": "s"}}),
        "assume_role.role_arn must be set",
    );
}

#[test]
fn rejects_assume_role_duration_out_of_range() {
    one_error(
        json!({"assume_role": {"role_arn": "arn:aws:iam::1:role/r", "duration_seconds": 60}}),
        "assume_role.duration_seconds must be between 900 and 43200",
    );
}

fn mapping(device: Value) -> Value {
    json!({"ami_block_device_mappings": [{"device_name": "/dev/xvda"}, device], "root_device_name": "/dev/xvda", "root_volume_size": 8})
}

#[test]
fn rejects_block_device_without_device_name() {
    one_error(
        mapping(json!({"volume_size": 1})),
        "ami_block_device_mappings[1]: The `device_name` must be specified",
    );
}

#[test]
fn rejects_block_device_kms_key_with_encrypted_false() {
    one_error(
        mapping(json!({"device_name": "/dev/sdb", "kms_key_id": "alias/x", "encrypted": false})),
        "The device /dev/sdb, must also have `encrypted: true` when setting a kms_key_id.",
    );
}

#[test]
fn rejects_io1_iops_above_the_size_ratio() {
    one_error(
        mapping(json!({"device_name": "/dev/sdb", "volume_type": "io1", "volume_size": 10, "iops": 1000})),
        "the maximum ratio of provisioned IOPS to requested volume size (in GiB) is 50:1 for io1 volumes",
    );
}

#[test]
fn rejects_io2_iops_out_of_range() {
    one_error(
        mapping(
            json!({"device_name": "/dev/sdb", "volume_type": "io2", "volume_size": 1000, "iops": 50}),
        ),
        "IOPS must be between 100 and 64000 for device /dev/sdb; got 50",
    );
}

#[test]
fn rejects_gp3_throughput_out_of_range() {
    one_error(
        mapping(json!({"device_name": "/dev/sdb", "volume_type": "gp3", "throughput": 2000})),
        "Throughput must be between 125 and 1000 for device /dev/sdb; got 2000",
    );
}

#[test]
fn rejects_gp3_iops_out_of_range() {
    one_error(
        mapping(json!({"device_name": "/dev/sdb", "volume_type": "gp3", "iops": 100})),
        "IOPS must be between 3000 and 16000 for device /dev/sdb; got 100",
    );
}

#[test]
fn rejects_throughput_on_volume_types_other_than_gp3() {
    one_error(
        mapping(json!({"device_name": "/dev/sdb", "volume_type": "gp2", "throughput": 200})),
        "Throughput is only valid for gp3 volumes, \"/dev/sdb\" is of type \"gp2\"",
    );
}

#[test]
fn reports_every_problem_of_every_block_device() {
    let e = errors(mapping(
        json!({"kms_key_id": "k", "encrypted": false, "volume_type": "st1", "throughput": 1}),
    ));
    assert_eq!(e.len(), 3, "{e:#?}");
}

// ---- spec and docs --------------------------------------------------------

/// Names, kinds and types of HashiCorp's generated FlatConfig HCL2 spec
/// (packer-plugin-amazon `builder/chroot/builder.hcl2spec.go`).
const UPSTREAM_SPEC: &[(&str, &str, &str)] = &[
    ("packer_build_name", "AttrSpec", "cty.String"),
    ("packer_builder_type", "AttrSpec", "cty.String"),
    ("packer_core_version", "AttrSpec", "cty.String"),
    ("packer_debug", "AttrSpec", "cty.Bool"),
    ("packer_force", "AttrSpec", "cty.Bool"),
    ("packer_on_error", "AttrSpec", "cty.String"),
    ("packer_user_variables", "AttrSpec", "cty.Map(cty.String)"),
    (
        "packer_sensitive_variables",
        "AttrSpec",
        "cty.List(cty.String)",
    ),
    ("ami_name", "AttrSpec", "cty.String"),
    ("ami_description", "AttrSpec", "cty.String"),
    ("ami_virtualization_type", "AttrSpec", "cty.String"),
    ("ami_users", "AttrSpec", "cty.List(cty.String)"),
    ("ami_groups", "AttrSpec", "cty.List(cty.String)"),
    ("ami_org_arns", "AttrSpec", "cty.List(cty.String)"),
    ("ami_ou_arns", "AttrSpec", "cty.List(cty.String)"),
    ("ami_product_codes", "AttrSpec", "cty.List(cty.String)"),
    ("ami_regions", "AttrSpec", "cty.List(cty.String)"),
    ("skip_region_validation", "AttrSpec", "cty.Bool"),
    ("tags", "AttrSpec", "cty.Map(cty.String)"),
    ("tag", "BlockListSpec", ""),
    ("ena_support", "AttrSpec", "cty.Bool"),
    ("sriov_support", "AttrSpec", "cty.Bool"),
    ("force_deregister", "AttrSpec", "cty.Bool"),
    ("force_delete_snapshot", "AttrSpec", "cty.Bool"),
    ("encrypt_boot", "AttrSpec", "cty.Bool"),
    ("kms_key_id", "AttrSpec", "cty.String"),
    ("region_kms_key_ids", "AttrSpec", "cty.Map(cty.String)"),
    ("skip_save_build_region", "AttrSpec", "cty.Bool"),
    ("snapshot_copy_duration_minutes", "AttrSpec", "cty.Number"),
    ("imds_support", "AttrSpec", "cty.String"),
    ("deprecate_at", "AttrSpec", "cty.String"),
    ("snapshot_tags", "AttrSpec", "cty.Map(cty.String)"),
    ("snapshot_tag", "BlockListSpec", ""),
    ("snapshot_users", "AttrSpec", "cty.List(cty.String)"),
    ("snapshot_groups", "AttrSpec", "cty.List(cty.String)"),
    ("deregistration_protection", "BlockSpec", ""),
    ("access_key", "AttrSpec", "cty.String"),
    ("assume_role", "BlockSpec", ""),
    ("custom_endpoint_ec2", "AttrSpec", "cty.String"),
    ("shared_credentials_file", "AttrSpec", "cty.String"),
    ("decode_authorization_messages", "AttrSpec", "cty.Bool"),
    ("insecure_skip_tls_verify", "AttrSpec", "cty.Bool"),
    ("max_retries", "AttrSpec", "cty.Number"),
    ("mfa_code", "AttrSpec", "cty.String"),
    ("profile", "AttrSpec", "cty.String"),
    ("region", "AttrSpec", "cty.String"),
    ("secret_key", "AttrSpec", "cty.String"),
    ("skip_metadata_api_check", "AttrSpec", "cty.Bool"),
    ("skip_credential_validation", "AttrSpec", "cty.Bool"),
    ("token", "AttrSpec", "cty.String"),
    ("vault_aws_engine", "BlockSpec", ""),
    ("aws_polling", "BlockSpec", ""),
    ("ami_block_device_mappings", "BlockListSpec", ""),
    (
        "chroot_mounts",
        "AttrSpec",
        "cty.List(cty.List(cty.String))",
    ),
    ("command_wrapper", "AttrSpec", "cty.String"),
    ("copy_files", "AttrSpec", "cty.List(cty.String)"),
    ("device_path", "AttrSpec", "cty.String"),
    ("nvme_device_path", "AttrSpec", "cty.String"),
    ("from_scratch", "AttrSpec", "cty.Bool"),
    ("mount_options", "AttrSpec", "cty.List(cty.String)"),
    ("mount_partition", "AttrSpec", "cty.String"),
    ("mount_path", "AttrSpec", "cty.String"),
    ("post_mount_commands", "AttrSpec", "cty.List(cty.String)"),
    ("pre_mount_commands", "AttrSpec", "cty.List(cty.String)"),
    ("root_device_name", "AttrSpec", "cty.String"),
    ("root_volume_size", "AttrSpec", "cty.Number"),
    ("root_volume_type", "AttrSpec", "cty.String"),
    ("source_ami", "AttrSpec", "cty.String"),
    ("source_ami_filter", "BlockSpec", ""),
    ("root_volume_tags", "AttrSpec", "cty.Map(cty.String)"),
    ("root_volume_tag", "BlockListSpec", ""),
    ("root_volume_encrypt_boot", "AttrSpec", "cty.Bool"),
    ("root_volume_kms_key_id", "AttrSpec", "cty.String"),
    ("ami_architecture", "AttrSpec", "cty.String"),
    ("boot_mode", "AttrSpec", "cty.String"),
    ("uefi_data", "AttrSpec", "cty.String"),
    ("tpm_support", "AttrSpec", "cty.String"),
];

fn cty_name(t: &CtyType) -> String {
    match t {
        CtyType::String => "cty.String".into(),
        CtyType::Number => "cty.Number".into(),
        CtyType::Bool => "cty.Bool".into(),
        CtyType::List(t) => format!("cty.List({})", cty_name(t)),
        CtyType::Map(t) => format!("cty.Map({})", cty_name(t)),
    }
}

#[test]
fn spec_matches_the_upstream_plugin_names_kinds_and_types() {
    let spec = config_spec();
    let ours: Vec<(String, String, String)> = spec
        .0
        .iter()
        .map(|(name, s)| match s {
            Spec::Attr { ty, required, .. } => {
                assert!(!required, "{name}");
                (name.clone(), "AttrSpec".into(), cty_name(ty))
            }
            Spec::Block { .. } => (name.clone(), "BlockSpec".into(), String::new()),
            Spec::BlockList { .. } => (name.clone(), "BlockListSpec".into(), String::new()),
        })
        .collect();
    let mut upstream: Vec<(String, String, String)> = UPSTREAM_SPEC
        .iter()
        .map(|(n, k, t)| (n.to_string(), k.to_string(), t.to_string()))
        .collect();
    upstream.sort();
    assert_eq!(ours, upstream);
}

#[test]
fn spec_nests_block_bodies() {
    let spec = config_spec();
    let Some(Spec::BlockList {
        type_name, nested, ..
    }) = spec.0.get("tag")
    else {
        panic!("tag must be a block list");
    };
    assert_eq!(type_name, "tag");
    assert_eq!(nested.0.keys().collect::<Vec<_>>(), ["key", "value"]);
    let Some(Spec::Block { nested, .. }) = spec.0.get("source_ami_filter") else {
        panic!("source_ami_filter must be a block");
    };
    assert_eq!(
        nested.0.keys().collect::<Vec<_>>(),
        ["filters", "include_deprecated", "most_recent", "owners"]
    );
    assert!(matches!(
        nested.0.get("filters"),
        Some(Spec::Attr {
            ty: CtyType::Map(_),
            ..
        })
    ));
    let Some(Spec::BlockList { nested, .. }) = spec.0.get("ami_block_device_mappings") else {
        panic!("ami_block_device_mappings must be a block list");
    };
    assert_eq!(nested.0.len(), 11);
    assert!(matches!(
        nested.0.get("iops"),
        Some(Spec::Attr {
            ty: CtyType::Number,
            ..
        })
    ));
    let Some(Spec::Block { nested, .. }) = spec.0.get("assume_role") else {
        panic!("assume_role must be a block");
    };
    assert_eq!(nested.0.len(), 8);
    for block in [
        "vault_aws_engine",
        "aws_polling",
        "deregistration_protection",
    ] {
        assert!(
            matches!(spec.0.get(block), Some(Spec::Block { .. })),
            "{block}"
        );
    }
}

#[test]
fn docs_list_every_option_with_type_default_and_description() {
    let md = options_markdown();
    assert!(md.contains(
        "### Chroot options\n\n| Option | Type | Default | Description |\n|---|---|---|---|\n"
    ));
    assert!(md.contains("| `mount_path` | string (template) | `/mnt/packer-amazon-chroot-volumes/{{.Device}}` | Where the volume is mounted (the chroot root). |"));
    assert!(md.contains("| `root_volume_encrypt_boot` | bool (unset/true/false) | unset (keep the source's encryption) |"));
    assert!(md.contains("| `access_key` | string (secret) | the credential chain |"));
    assert!(md.contains("### `ami_block_device_mappings` block"));
    assert!(md.contains("### `source_ami_filter` block"));
    for group in [
        ChrootConfig::OPTIONS,
        AmiConfig::OPTIONS,
        SnapshotConfig::OPTIONS,
        AccessConfig::OPTIONS,
        BlockDevice::OPTIONS,
    ] {
        for o in group {
            assert!(
                md.contains(&format!("| `{}` |", o.name)),
                "{} missing",
                o.name
            );
            assert!(!o.doc.trim().is_empty(), "{} has no doc", o.name);
        }
    }
    assert!(
        !md.contains("packer_build_name"),
        "Packer's own keys are not user options"
    );
}
