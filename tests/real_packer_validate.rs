//! `packer validate` by Debian's real Packer 1.6.6 with OUR plugin binary
//! (the amazon-chroot builder, not a test double), installed under a legacy
//! mono name in the template's directory. 1.6.6 has its own builtin
//! `amazon-chroot`, so ours is installed as `packer-builder-amazon-chroot-rs`
//! (template type `amazon-chroot-rs`). Prepare needs no AWS, so nothing
//! leaves the machine.

// The every-option example is one large `json!` literal.
#![recursion_limit = "512"]

use std::path::PathBuf;
use std::process::{Command, Stdio};

use amazon_chroot::builder::config::config_spec;
use amazon_chroot::plugin::spec::{ObjectSpec, Spec};

/// The mistakes of the invalid templates, and the messages each must produce.
const MISTAKES: [(&str, &str, &str); 3] = [
    (
        "ami_name",
        "\"ab\"",
        "ami_name must be between 3 and 128 characters long",
    ),
    (
        "ami_architecture",
        "\"sparc\"",
        "The only valid ami_architecture values are",
    ),
    ("boot_mode", "\"bios\"", "invalid boot mode \"bios\""),
];

struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(
            env!("CARGO_BIN_EXE_packer-plugin-amazon-chroot"),
            dir.path().join("packer-builder-amazon-chroot-rs"),
        )
        .unwrap();
        Project { dir }
    }

    /// Writes `name` and runs `packer validate` on it: (success, output).
    fn validate(&self, name: &str, template: &str) -> (bool, String) {
        std::fs::write(self.dir.path().join(name), template).unwrap();
        let packer = std::env::var_os("PACKER_BIN")
            .map_or_else(|| PathBuf::from("/usr/bin/packer"), PathBuf::from);
        assert!(
            packer.exists(),
            "{} missing: apt-get install packer",
            packer.display()
        );
        let out = Command::new(packer)
            .args(["validate", name])
            .current_dir(self.dir.path())
            .env("CHECKPOINT_DISABLE", "1")
            .env("PACKER_NO_COLOR", "1")
            .env("TMPDIR", self.dir.path())
            .env_remove("PACKER_LOG")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        // Packer wraps long lines of its error output.
        (out.status.success(), text.replace('\n', " "))
    }
}

fn json_template(options: &[(&str, &str)]) -> String {
    let body: Vec<String> = options
        .iter()
        .map(|(k, v)| format!("\"{k}\": {v}"))
        .collect();
    format!(
        r#"{{"builders": [{{"type": "amazon-chroot-rs", "source_ami": "ami-0123456789abcdef0", {}}}]}}"#,
        body.join(", ")
    )
}

fn hcl2_template(options: &[(&str, &str)]) -> String {
    let body: Vec<String> = options
        .iter()
        .map(|(k, v)| format!("  {k} = {v}"))
        .collect();
    format!(
        "source \"amazon-chroot-rs\" \"base\" {{\n  source_ami = \"ami-0123456789abcdef0\"\n{}\n}}\n\
         build {{\n  sources = [\"source.amazon-chroot-rs.base\"]\n  provisioner \"shell\" {{ inline = [\"echo ${{build.Device}}\"] }}\n}}\n",
        body.join("\n")
    )
}

const VALID: [(&str, &str); 3] = [
    ("ami_name", "\"web {{timestamp}}\""),
    ("ami_architecture", "\"arm64\""),
    ("boot_mode", "\"uefi\""),
];

fn invalid() -> Vec<(&'static str, &'static str)> {
    MISTAKES.iter().map(|(k, v, _)| (*k, *v)).collect()
}

fn assert_reports_all_three(ok: bool, out: &str) {
    assert!(!ok, "validate passed an invalid template: {out}");
    assert!(out.contains("3 errors occurred"), "{out}");
    for (_, _, message) in MISTAKES {
        assert!(out.contains(message), "missing {message:?} in: {out}");
    }
}

#[test]
fn json_template_valid_config_passes_validate() {
    let (ok, out) = Project::new().validate("valid.json", &json_template(&VALID));
    assert!(ok, "{out}");
}

#[test]
fn json_template_with_three_mistakes_reports_all_three() {
    let (ok, out) = Project::new().validate("invalid.json", &json_template(&invalid()));
    assert_reports_all_three(ok, &out);
}

#[test]
fn hcl2_template_valid_config_passes_validate() {
    // build.Device is accepted only because Prepare announces it.
    let (ok, out) = Project::new().validate("valid.pkr.hcl", &hcl2_template(&VALID));
    assert!(ok, "{out}");
}

#[test]
fn hcl2_template_with_three_mistakes_reports_all_three() {
    let (ok, out) = Project::new().validate("invalid.pkr.hcl", &hcl2_template(&invalid()));
    assert_reports_all_three(ok, &out);
}

#[test]
fn hcl2_unknown_attribute_is_reported_by_packer_from_our_spec() {
    let (ok, out) = Project::new().validate(
        "unknown.pkr.hcl",
        &hcl2_template(&[("ami_name", "\"web\""), ("ami_nmae", "\"typo\"")]),
    );
    assert!(!ok, "{out}");
    assert!(out.contains("ami_nmae"), "{out}");
}

// ---------------------------------------------------------------------------
// Every option at once.
//
// Two options exclude others, so "every option" is two templates that
// together set every option of `config_spec()` (and every attribute of
// every block type); everything not listed here is set in both:
// - `from_scratch = true` makes `source_ami`/`source_ami_filter` unused
//   (a warning), so they are set only in the source-AMI template, which
//   has `from_scratch = false`;
// - `vault_aws_engine` must not be combined with `access_key`/`secret_key`,
//   so the vault template has no static keys and the source-AMI template
//   no `vault_aws_engine`.
// Region and KMS maps are consistent in both: `encrypt_boot` with
// `kms_key_id`, and `region_kms_key_ids` naming exactly `ami_regions`
// (which makes sharing with `ami_users`/`snapshot_users` legal).

/// Options only in the source-AMI template.
const SOURCE_AMI_ONLY: &[&str] = &[
    "source_ami",
    "source_ami_filter",
    "access_key",
    "secret_key",
];
/// Options only in the from-scratch template.
const FROM_SCRATCH_ONLY: &[&str] = &["vault_aws_engine"];

/// An example value for every option (JSON form; blocks are objects, block
/// lists arrays of objects). `from_scratch` is overridden per template.
fn every_option_example() -> serde_json::Map<String, serde_json::Value> {
    let kms = "arn:aws:kms:us-east-1:123456789012:key/0123abcd-4567-89ef-0123-456789abcdef";
    let example = serde_json::json!({
        // Chroot options.
        "ami_block_device_mappings": [
            {
                "device_name": "/dev/xvda",
                "volume_type": "gp3",
                "volume_size": 10,
                "iops": 3000,
                "throughput": 125,
                "encrypted": true,
                "kms_key_id": kms,
                "delete_on_termination": true
            },
            {"device_name": "/dev/xvdb", "snapshot_id": "snap-0123456789abcdef0", "volume_type": "gp2"},
            {"device_name": "/dev/xvdc", "virtual_name": "ephemeral0"},
            {"device_name": "/dev/xvdd", "no_device": true}
        ],
        "chroot_mounts": [["proc", "proc", "/proc"], ["bind", "/dev", "/dev"]],
        "command_wrapper": "sudo {{.Command}}",
        "copy_files": ["/etc/resolv.conf"],
        "device_path": "/dev/xvdf",
        "nvme_device_path": "/dev/nvme1n1p",
        "from_scratch": false,
        "mount_options": ["nouuid"],
        "mount_partition": "1",
        "mount_path": "/mnt/chroot/{{.Device}}",
        "post_mount_commands": ["echo mounted {{.Device}} at {{.MountPath}}"],
        "pre_mount_commands": ["parted -s {{.Device}} mklabel gpt", "mkfs.ext4 {{.Device}}1"],
        "root_device_name": "/dev/xvda",
        "root_volume_size": 10,
        "root_volume_type": "gp3",
        "source_ami": "ami-0123456789abcdef0",
        "source_ami_filter": {
            "filters": {"name": "debian-12-*", "virtualization-type": "hvm"},
            "owners": ["amazon", "123456789012"],
            "most_recent": true,
            "include_deprecated": true
        },
        "root_volume_tags": {"Name": "work volume"},
        "root_volume_tag": [{"key": "Purpose", "value": "build {{ .SourceAMI }}"}],
        "root_volume_encrypt_boot": true,
        "root_volume_kms_key_id": "alias/root-volume",
        "ami_architecture": "x86_64",
        "boot_mode": "uefi",
        "uefi_data": "QU1aTlVFRkk=",
        "tpm_support": "v2.0",
        // AMI options.
        "ami_name": "every option {{timestamp}}",
        "ami_description": "from {{ .SourceAMIName }} in {{ .BuildRegion }}",
        "ami_virtualization_type": "hvm",
        "ami_users": ["123456789012"],
        "ami_groups": ["all"],
        "ami_org_arns": ["arn:aws:organizations::123456789012:organization/o-abcdefghij"],
        "ami_ou_arns": ["arn:aws:organizations::123456789012:ou/o-abcdefghij/ou-ab12-cdefgh34"],
        "ami_product_codes": ["abcdefghijklmnopqrstuvwxy"],
        "ami_regions": ["us-west-2", "eu-west-1"],
        "skip_region_validation": true,
        "tags": {"OS": "Debian", "Base": "{{ .SourceAMIName }}"},
        "tag": [{"key": "Team", "value": "platform"}, {"key": "Built", "value": "{{isotime \"2006-01-02\"}}"}],
        "ena_support": true,
        "sriov_support": true,
        "force_deregister": true,
        "force_delete_snapshot": true,
        "encrypt_boot": true,
        "kms_key_id": kms,
        "region_kms_key_ids": {"us-west-2": "alias/west", "eu-west-1": "mrk-0123456789abcdef0123456789abcdef"},
        "skip_save_build_region": true,
        "snapshot_copy_duration_minutes": 15,
        "imds_support": "v2.0",
        "deprecate_at": "2030-01-02T15:04:05Z",
        "deregistration_protection": {"enabled": true, "with_cooldown": true},
        // Snapshot options.
        "snapshot_tags": {"Snapshot": "yes"},
        "snapshot_tag": [{"key": "Origin", "value": "{{ .SourceAMI }}"}],
        "snapshot_users": ["123456789012"],
        "snapshot_groups": ["all"],
        // AWS access options.
        "access_key": "AKIAIOSFODNN7EXAMPLE",
        "secret_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "token": "session-token-example",
        "assume_role": {
            "role_arn": "arn:aws:iam::123456789012:role/builder",
            "duration_seconds": 3600,
            "external_id": "external-id",
            "policy": "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"ec2:*\",\"Resource\":\"*\"}]}",
            "policy_arns": ["arn:aws:iam::aws:policy/AmazonEC2FullAccess"],
            "session_name": "packer-build",
            "tags": {"Project": "images"},
            "transitive_tag_keys": ["Project"]
        },
        "custom_endpoint_ec2": "https://ec2.us-east-1.amazonaws.com",
        "shared_credentials_file": "/root/.aws/credentials",
        "decode_authorization_messages": true,
        "insecure_skip_tls_verify": true,
        "max_retries": 5,
        "mfa_code": "123456",
        "profile": "builder",
        "region": "us-east-1",
        "skip_metadata_api_check": true,
        "skip_credential_validation": true,
        "vault_aws_engine": {
            "name": "packer-role",
            "role_arn": "arn:aws:iam::123456789012:role/vault",
            "ttl": "3600s",
            "engine_name": "aws-engine"
        },
        "aws_polling": {"delay_seconds": 5, "max_attempts": 40}
    });
    match example {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("the example is an object"),
    }
}

/// The option names Packer core sets itself (`packer_*`); a template
/// setting them would only be overwritten.
fn packer_core_keys() -> Vec<&'static str> {
    use amazon_chroot::builder::config::declare::OptionGroup;
    amazon_chroot::builder::config::PackerKeys::OPTIONS
        .iter()
        .map(|o| o.name)
        .collect()
}

/// Every name `spec` lacks in `example` or `example` has beyond `spec`,
/// recursively into blocks (a block list's entries together must cover
/// its body), as `path: problem`.
fn coverage_gaps(
    spec: &ObjectSpec,
    example: &serde_json::Map<String, serde_json::Value>,
    at: &str,
    skip: &[&str],
) -> Vec<String> {
    let mut gaps = Vec::new();
    for (name, entry) in &spec.0 {
        if skip.contains(&name.as_str()) {
            continue;
        }
        let Some(value) = example.get(name) else {
            gaps.push(format!("{at}{name}: no example value"));
            continue;
        };
        match entry {
            Spec::Attr { .. } => {}
            Spec::Block { nested, .. } => match value.as_object() {
                Some(body) => {
                    gaps.extend(coverage_gaps(nested, body, &format!("{at}{name}."), &[]))
                }
                None => gaps.push(format!("{at}{name}: a block needs an object")),
            },
            Spec::BlockList { nested, .. } => {
                let mut union = serde_json::Map::new();
                for body in value.as_array().into_iter().flatten() {
                    for (k, v) in body.as_object().into_iter().flatten() {
                        union.insert(k.clone(), v.clone());
                    }
                }
                if union.is_empty() {
                    gaps.push(format!("{at}{name}: a block list needs objects"));
                }
                gaps.extend(coverage_gaps(
                    nested,
                    &union,
                    &format!("{at}{name}[]."),
                    &[],
                ));
            }
        }
    }
    for name in example.keys() {
        if !spec.0.contains_key(name) {
            gaps.push(format!("{at}{name}: not an option of config_spec()"));
        }
    }
    gaps
}

/// `value` as an HCL2 expression.
fn hcl2_expr(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(hcl2_expr).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) => {
            let items: Vec<String> = map
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{} = {}",
                        hcl2_expr(&Value::String(k.clone())),
                        hcl2_expr(v)
                    )
                })
                .collect();
            format!("{{ {} }}", items.join(", "))
        }
        // JSON strings are valid HCL2 strings once `${` and `%{` are escaped
        // (none of the examples has them; `{{ }}` is plain text in HCL2).
        other => other.to_string(),
    }
}

/// The body of an HCL2 block with `options`, attributes or nested blocks
/// as `spec` says.
fn hcl2_body(
    spec: &ObjectSpec,
    options: &serde_json::Map<String, serde_json::Value>,
    indent: &str,
) -> String {
    let mut out = String::new();
    for (name, value) in options {
        match spec.0.get(name) {
            Some(Spec::Block { nested, .. }) => {
                out += &hcl2_block(name, nested, value, indent);
            }
            Some(Spec::BlockList { nested, .. }) => {
                for body in value.as_array().expect("a block list example is an array") {
                    out += &hcl2_block(name, nested, body, indent);
                }
            }
            _ => out += &format!("{indent}{name} = {}\n", hcl2_expr(value)),
        }
    }
    out
}

fn hcl2_block(name: &str, spec: &ObjectSpec, body: &serde_json::Value, indent: &str) -> String {
    let body = body.as_object().expect("a block example is an object");
    format!(
        "{indent}{name} {{\n{}{indent}}}\n",
        hcl2_body(spec, body, &format!("{indent}  "))
    )
}

/// The two templates' options: (name, options) for the source-AMI and the
/// from-scratch template.
fn every_option_templates() -> [(&'static str, serde_json::Map<String, serde_json::Value>); 2] {
    let all = every_option_example();
    let without = |names: &[&str]| {
        let mut m = all.clone();
        m.retain(|k, _| !names.contains(&k.as_str()));
        m
    };
    let source = without(FROM_SCRATCH_ONLY);
    let mut scratch = without(SOURCE_AMI_ONLY);
    scratch.insert("from_scratch".into(), serde_json::Value::Bool(true));
    [("source_ami", source), ("from_scratch", scratch)]
}

#[test]
fn every_option_example_covers_config_spec_exactly() {
    let spec = config_spec();
    let gaps = coverage_gaps(&spec, &every_option_example(), "", &packer_core_keys());
    assert!(
        gaps.is_empty(),
        "every option needs one example value: {gaps:#?}"
    );
    // Each option is in at least one of the two templates, and the two
    // differ only in the documented exclusions (and from_scratch).
    let [(_, source), (_, scratch)] = every_option_templates();
    for name in every_option_example().keys() {
        assert!(
            source.contains_key(name) || scratch.contains_key(name),
            "{name} is in neither template"
        );
    }
    assert_eq!(
        source.len() + FROM_SCRATCH_ONLY.len(),
        every_option_example().len()
    );
    assert_eq!(
        scratch.len() + SOURCE_AMI_ONLY.len(),
        every_option_example().len()
    );
}

#[test]
fn hcl2_template_setting_every_option_passes_validate() {
    let spec = config_spec();
    let project = Project::new();
    for (name, options) in every_option_templates() {
        let template = format!(
            "source \"amazon-chroot-rs\" \"{name}\" {{\n{}}}\n\
             build {{\n  sources = [\"source.amazon-chroot-rs.{name}\"]\n}}\n",
            hcl2_body(&spec, &options, "  ")
        );
        let file = format!("every-{name}.pkr.hcl");
        let (ok, out) = project.validate(&file, &template);
        assert!(ok, "{file} failed validate: {out}\n{template}");
    }
}

#[test]
fn json_template_setting_every_option_passes_validate() {
    let project = Project::new();
    for (name, mut options) in every_option_templates() {
        options.insert("type".into(), "amazon-chroot-rs".into());
        let template = serde_json::json!({ "builders": [options] });
        let template = serde_json::to_string_pretty(&template).unwrap();
        let file = format!("every-{name}.json");
        let (ok, out) = project.validate(&file, &template);
        assert!(ok, "{file} failed validate: {out}\n{template}");
    }
}
