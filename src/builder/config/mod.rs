//! The amazon-chroot builder's configuration: declared once in
//! [`options`], from which come the HCL2 spec Packer asks for
//! ([`config_spec`]), the decoding of Prepare's arguments
//! ([`Config::from_prepare`]) and the docs tables ([`options_markdown`]).
//!
//! Prepare reports every problem of a configuration at once, each naming
//! the option and what it allows.

pub mod declare;
pub mod options;
mod validate;

use std::collections::BTreeSet;
use std::sync::Arc;

pub use declare::{BlockList, Secret, TemplateMap, Trilean};
pub use options::{
    AccessConfig, AmiConfig, AmiFilter, AssumeRole, AwsPolling, BlockDevice, ChrootConfig,
    DeregistrationProtection, KeyValue, PackerKeys, SnapshotConfig, VaultAwsEngine,
};

use crate::builder::template::{TemplateContext, TemplateData, TemplateError};
use crate::plugin::api::{Map, OnError, PrepareArgs, PrepareErrors, Prepared};
use crate::plugin::spec::{ObjectSpec, Spec};
use declare::{Decoder, OptionDesc, OptionGroup, Shape};

/// Names of the generated data the builder provides to provisioners and
/// post-processors (`build.X` in HCL2, ``{{ build `X` }}`` in JSON), in
/// upstream's order.
pub const GENERATED_DATA: &[&str] = &[
    "SourceAMIName",
    "BuildRegion",
    "SourceAMI",
    "SourceAMICreationDate",
    "SourceAMIOwner",
    "SourceAMIOwnerName",
    "Device",
    "MountPath",
    // Not `SourceAMITags`: Packer (1.6.6 at least) fails every HCL2 build
    // whose hook data holds a map ("unhandled buildvar type"), so the tags
    // are offered only to templates (`{{ .SourceAMITags.Key }}`).
];

/// The extra chroot mounts used when `chroot_mounts` is unset or empty.
pub const DEFAULT_CHROOT_MOUNTS: &[[&str; 3]] = &[
    ["proc", "proc", "/proc"],
    ["sysfs", "sysfs", "/sys"],
    ["bind", "/dev", "/dev"],
    ["devpts", "devpts", "/dev/pts"],
    ["binfmt_misc", "binfmt_misc", "/proc/sys/fs/binfmt_misc"],
];

/// Retries of AWS calls when `max_retries` is 0: the SDK's 3 trips
/// throttling too easily (upstream's reasoning).
pub const DEFAULT_MAX_RETRIES: i64 = 10;

/// The top-level groups, in the order the spec and docs list them.
fn groups() -> [&'static [OptionDesc]; 5] {
    [
        PackerKeys::OPTIONS,
        ChrootConfig::OPTIONS,
        AmiConfig::OPTIONS,
        SnapshotConfig::OPTIONS,
        AccessConfig::OPTIONS,
    ]
}

/// What Packer core asked for besides the options.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSettings {
    /// The build's name.
    pub build_name: String,
    /// `-debug`: pause between steps.
    pub debug: bool,
    /// `-on-error`.
    pub on_error: OnError,
    /// `-force` (already folded into `force_deregister`).
    pub force: bool,
}

/// The decoded, defaulted and validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The chroot builder's own options.
    pub chroot: ChrootConfig,
    /// The AMI to register.
    pub ami: AmiConfig,
    /// The AMI's snapshots.
    pub snapshot: SnapshotConfig,
    /// AWS access.
    pub access: AccessConfig,
    /// Packer core's settings for this build.
    pub run: RunSettings,
    /// What templates rendered later (tags, commands) need.
    pub template_context: Arc<TemplateContext>,
    /// Values to scrub from logs and UI output: the credentials and the
    /// values of sensitive user variables (upstream's `LogSecretFilter`).
    pub secrets: Vec<Secret>,
}

/// The HCL2 spec of the configuration (what `ConfigSpec` returns):
/// attribute and block names and cty types as HashiCorp's plugin declares them.
pub fn config_spec() -> ObjectSpec {
    let mut spec = ObjectSpec::default();
    for group in groups() {
        add_specs(&mut spec, group);
    }
    spec
}

fn add_specs(spec: &mut ObjectSpec, options: &[OptionDesc]) {
    for o in options {
        let entry = match (o.shape)() {
            Shape::Attr(ty) => Spec::Attr {
                name: o.name.to_string(),
                ty,
                required: false,
            },
            Shape::Block(nested) => Spec::Block {
                type_name: o.name.to_string(),
                nested: nested_spec(nested),
                required: false,
            },
            Shape::BlockList(nested) => Spec::BlockList {
                type_name: o.name.to_string(),
                nested: nested_spec(nested),
                min_items: 0,
                max_items: 0,
            },
        };
        spec.0.insert(o.name.to_string(), entry);
    }
}

fn nested_spec(options: &[OptionDesc]) -> ObjectSpec {
    let mut spec = ObjectSpec::default();
    add_specs(&mut spec, options);
    spec
}

impl Config {
    /// Decodes, defaults and validates one Prepare call's arguments.
    /// On success also returns the generated-data names and the warnings.
    pub fn from_prepare(args: &PrepareArgs) -> Result<(Config, Prepared), PrepareErrors> {
        let context = Arc::new(TemplateContext::from_settings(&args.packer, args.kind));
        let options = unwrap_cty_json(&args.config);
        let mut d = Decoder {
            context: context.clone(),
            errors: Vec::new(),
        };
        d.check_keys(options, "", &groups());
        let mut config = Config {
            chroot: ChrootConfig::decode_fields(options, "", None, &mut d),
            ami: AmiConfig::decode_fields(options, "", None, &mut d),
            snapshot: SnapshotConfig::decode_fields(options, "", None, &mut d),
            access: AccessConfig::decode_fields(options, "", None, &mut d),
            run: RunSettings {
                build_name: args.packer.build_name.clone(),
                debug: args.packer.debug,
                on_error: args.packer.on_error,
                force: args.packer.force,
            },
            template_context: context,
            secrets: Vec::new(),
        };
        let failed: BTreeSet<String> = d.errors.iter().map(|e| option_of(e)).collect();
        config.apply_defaults();
        let user_variables = &args.packer.user_variables;
        config.secrets.extend(
            args.packer
                .sensitive_variables
                .iter()
                .filter_map(|name| user_variables.get(name))
                .filter(|v| !v.is_empty())
                .map(|v| Secret(v.clone())),
        );
        let outcome = validate::validate(&mut config);
        let mut errors = d.errors;
        errors.extend(
            outcome
                .errors
                .into_iter()
                // A value that did not decode would only add a misleading
                // follow-up error ("ami_name must be specified", or "If
                // root_device_name is specified, ami_block_device_mappings
                // must be specified" for a mapping with a typo in it).
                .filter(|issue| {
                    !failed.contains(issue.option)
                        && !failed
                            .iter()
                            .any(|option| names_option(&issue.message, option))
                })
                .map(|issue| issue.message),
        );
        if !errors.is_empty() {
            return Err(PrepareErrors(errors));
        }
        let prepared = Prepared {
            generated_vars: GENERATED_DATA.iter().map(|s| s.to_string()).collect(),
            warnings: outcome.warnings,
        };
        Ok((config, prepared))
    }

    /// Upstream's Prepare-time defaults and merges, before validation.
    fn apply_defaults(&mut self) {
        let c = &mut self.chroot;
        if c.chroot_mounts.is_empty() {
            c.chroot_mounts = DEFAULT_CHROOT_MOUNTS
                .iter()
                .map(|m| m.iter().map(|s| s.to_string()).collect())
                .collect();
        }
        if c.copy_files.is_none() && !c.from_scratch {
            c.copy_files = Some(vec!["/etc/resolv.conf".to_string()]);
        }
        merge_tags(&mut c.root_volume_tags, &c.root_volume_tag);
        merge_tags(&mut self.ami.tags, &self.ami.tag);
        merge_tags(
            &mut self.snapshot.snapshot_tags,
            &self.snapshot.snapshot_tag,
        );
        if self.run.force {
            self.ami.force_deregister = true;
        }
        if self.ami.deregistration_protection.with_cooldown {
            self.ami.deregistration_protection.enabled = true;
        }
        let credentials = [
            &self.access.access_key,
            &self.access.secret_key,
            &self.access.token,
            &self.access.mfa_code,
        ];
        self.secrets = credentials
            .into_iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect();
        if self.access.max_retries == 0 {
            self.access.max_retries = DEFAULT_MAX_RETRIES;
        }
    }

    /// `command` wrapped with `command_wrapper` (e.g. `sudo {{.Command}}`):
    /// the text every host command is run with.
    pub fn wrap_command(&self, command: &str) -> Result<String, TemplateError> {
        self.chroot.command_wrapper.render(&TemplateData {
            command: Some(command.to_string()),
            ..Default::default()
        })
    }

    /// The files to copy into the chroot (none when unset with `from_scratch`).
    pub fn copy_files(&self) -> &[String] {
        self.chroot.copy_files.as_deref().unwrap_or(&[])
    }
}

/// HCL2 options as Packer sends them are `{"value": …, "type": …}`
/// (cty JSON); the wire layer normally unwraps that, but accepting both
/// keeps the builder independent of where it happens.
fn unwrap_cty_json(config: &Map) -> &Map {
    match (config.get("value"), config.get("type")) {
        (Some(serde_json::Value::Object(value)), Some(_)) if config.len() == 2 => value,
        _ => config,
    }
}

/// Tag blocks win over the map (upstream `KeyValues.CopyOn`).
fn merge_tags(map: &mut TemplateMap, blocks: &BlockList<KeyValue>) {
    for kv in &blocks.0 {
        map.insert(kv.key.clone(), kv.value.clone());
    }
}

/// `ami_regions` without duplicates and without the build region itself.
fn dedup_regions(regions: &[String], build_region: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    regions
        .iter()
        .filter(|r| seen.insert(r.as_str()) && r.as_str() != build_region)
        .cloned()
        .collect()
}

/// The top-level option a decoding error is about: `a.b[0].c: …` → `a`,
/// and for an unknown key inside a block the block
/// (`unknown configuration key: '"a[0].typo"'` → `a`).
fn option_of(message: &str) -> String {
    let head = match message.strip_prefix("unknown configuration key: '\"") {
        Some(key) => key,
        None => message.split(':').next().unwrap_or_default(),
    };
    head.split(['.', '[', '"'])
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Whether `message` names `option` as a whole word (`source_ami` is not
/// named by `source_ami_filter`).
fn names_option(message: &str, option: &str) -> bool {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    message.match_indices(option).any(|(at, _)| {
        let before = message[..at].chars().next_back();
        let after = message[at + option.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

/// The options documentation: one Markdown table per group (name, type,
/// default, description), then one per block type.
pub fn options_markdown() -> String {
    let mut out = String::new();
    let mut blocks: Vec<(&'static str, &'static [OptionDesc])> = Vec::new();
    let tops: [(&str, &[OptionDesc]); 4] = [
        (ChrootConfig::TITLE, ChrootConfig::OPTIONS),
        (AmiConfig::TITLE, AmiConfig::OPTIONS),
        (SnapshotConfig::TITLE, SnapshotConfig::OPTIONS),
        (AccessConfig::TITLE, AccessConfig::OPTIONS),
    ];
    for (title, options) in tops {
        table(&mut out, title, options, &mut blocks);
    }
    let mut done = BTreeSet::new();
    let mut i = 0;
    while i < blocks.len() {
        let (name, options) = blocks[i];
        i += 1;
        if done.insert(name) {
            table(&mut out, &format!("`{name}` block"), options, &mut blocks);
        }
    }
    out
}

fn table(
    out: &mut String,
    title: &str,
    options: &'static [OptionDesc],
    blocks: &mut Vec<(&'static str, &'static [OptionDesc])>,
) {
    let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ").trim().to_string();
    out.push_str(&format!(
        "### {title}\n\n| Option | Type | Default | Description |\n|---|---|---|---|\n"
    ));
    for o in options {
        match (o.shape)() {
            Shape::Block(nested) | Shape::BlockList(nested) => blocks.push((o.name, nested)),
            Shape::Attr(_) => {}
        }
        let default = match (o.default_value, o.default_doc) {
            (Some(v), _) => format!("`{v}`"),
            (None, "") => "–".to_string(),
            (None, d) => d.to_string(),
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            o.name,
            cell(&(o.type_doc)()),
            cell(&default),
            cell(o.doc)
        ));
    }
    out.push('\n');
}

#[cfg(test)]
impl Config {
    /// `Debug` of the option at template path `path` (`assume_role.role_arn`),
    /// `None` when no option has that path (see [`declare::Observe`]).
    pub(crate) fn observe(&self, path: &str) -> Option<String> {
        use declare::Observe;
        self.chroot
            .observe(path)
            .or_else(|| self.ami.observe(path))
            .or_else(|| self.snapshot.observe(path))
            .or_else(|| self.access.observe(path))
    }
}

#[cfg(test)]
mod option_table;
#[cfg(test)]
mod tests;
