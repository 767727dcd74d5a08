//! One table with a row per option, every member of every block
//! included, keyed by its template path (`ami_name`,
//! `assume_role.role_arn`, `ami_block_device_mappings.iops`). A row gives
//! the default applied when the option is unset, values accepted and what
//! they decode to, and values rejected with the exact messages.
//!
//! Each case runs as a JSON-template Prepare and, when every value in it
//! has the type the HCL2 spec declares, as the HCL2 Prepare Packer sends
//! (every spec entry present, null for unset). Values are observed on the
//! decoded [`Config`] through [`Config::observe`]: the `Debug` text of the
//! option, secrets by their text, templates by their source, repeatable
//! blocks as a list with one value per entry.
//!
//! [`every_option_has_a_row_and_every_row_an_option`] walks the declared
//! options, so adding an option without a row fails the build.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{json, Value};

use super::tests::{hcl2_args, settings};
use super::*;
use crate::plugin::api::TemplateKind;
use crate::plugin::spec::CtyType;

/// `(available: …)` of the options rendered with build info (tags,
/// `ami_description`).
const BUILD_INFO_FIELDS: &str = "(available: .BuildRegion, .SourceAMI, .SourceAMICreationDate, \
     .SourceAMIName, .SourceAMIOwner, .SourceAMIOwnerName, .SourceAMITags)";

/// What a case must produce.
#[derive(Debug, PartialEq)]
enum Expect {
    /// Prepare succeeds, the option is observed as this `Debug` text, and
    /// these are all the warnings.
    Decodes { seen: String, warnings: Vec<String> },
    /// Prepare fails with exactly these errors, in this order.
    Rejected(Vec<String>),
}

struct Case {
    /// The row's value; `None` leaves the option unset.
    value: Option<Value>,
    /// Other options this case needs, merged over the row's base.
    with: Value,
    /// Where the effect is observed when not at the row's own path.
    seen_at: Option<&'static str>,
    expect: Expect,
    /// The case depends on JSON-template context (user variables).
    json_only: bool,
}

struct Row {
    path: String,
    /// Options every case of the row needs (the block around a member …).
    base: Value,
    cases: Vec<Case>,
}

fn row(path: impl Into<String>) -> Row {
    Row {
        path: path.into(),
        base: json!({}),
        cases: Vec::new(),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn decodes(seen: &str) -> Expect {
    Expect::Decodes {
        seen: seen.to_string(),
        warnings: Vec::new(),
    }
}

impl Row {
    fn base(mut self, base: Value) -> Self {
        self.base = base;
        self
    }

    fn case(mut self, value: Option<Value>, with: Value, expect: Expect) -> Self {
        self.cases.push(Case {
            value,
            with,
            seen_at: None,
            expect,
            json_only: false,
        });
        self
    }

    /// The default: unset, the option is observed as `seen`.
    fn default(self, seen: &str) -> Self {
        self.case(None, json!({}), decodes(seen))
    }

    /// A required option: unset, Prepare fails with `errors`.
    fn required(self, errors: &[&str]) -> Self {
        self.case(None, json!({}), Expect::Rejected(strings(errors)))
    }

    /// Unset under other options (a default that depends on them).
    fn unset_with(self, with: Value, seen: &str) -> Self {
        self.case(None, with, decodes(seen))
    }

    fn ok(self, value: Value, seen: &str) -> Self {
        self.case(Some(value), json!({}), decodes(seen))
    }

    fn ok_with(self, value: Value, with: Value, seen: &str) -> Self {
        self.case(Some(value), with, decodes(seen))
    }

    fn err(self, value: Value, errors: &[&str]) -> Self {
        self.case(Some(value), json!({}), Expect::Rejected(strings(errors)))
    }

    fn err_with(self, value: Value, with: Value, errors: &[&str]) -> Self {
        self.case(Some(value), with, Expect::Rejected(strings(errors)))
    }

    fn last(&mut self) -> &mut Case {
        let path = &self.path;
        self.cases
            .last_mut()
            .unwrap_or_else(|| panic!("row {path}: a modifier needs a case before it"))
    }

    /// The last case's effect is observed at `path` instead.
    fn seen_at(mut self, path: &'static str) -> Self {
        self.last().seen_at = Some(path);
        self
    }

    /// The last case also gives these warnings.
    fn warns(mut self, expected: &[&str]) -> Self {
        match &mut self.last().expect {
            Expect::Decodes { warnings, .. } => *warnings = strings(expected),
            Expect::Rejected(_) => panic!("row {}: only accepted cases warn", self.path),
        }
        self
    }

    /// The last case runs only as a JSON template.
    fn json_only(mut self) -> Self {
        self.last().json_only = true;
        self
    }
}

// ---- running a case -----------------------------------------------------

/// Every test config starts from the two options no config can do without.
fn minimal() -> Value {
    json!({"ami_name": "test-ami", "source_ami": "ami-123"})
}

/// Merges `over` into `into`: objects key by key, lists item by item.
fn merge(into: &mut Value, over: &Value) {
    match (into, over) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, v) in b.iter().enumerate() {
                match a.get_mut(i) {
                    Some(existing) => merge(existing, v),
                    None => a.push(v.clone()),
                }
            }
        }
        (into, over) => *into = over.clone(),
    }
}

/// `a` with `b` merged over it.
fn and(mut a: Value, b: Value) -> Value {
    merge(&mut a, &b);
    a
}

/// The object holding option `path` in `config`: the config itself, or
/// the block (the first entry of a repeatable block), created if absent.
fn holder<'a>(config: &'a mut Map, path: &'a str) -> (&'a mut Map, &'a str) {
    let Some((block, member)) = path.split_once('.') else {
        return (config, path);
    };
    let repeatable = matches!(config_spec().0.get(block), Some(Spec::BlockList { .. }));
    let slot = config
        .entry(block)
        .or_insert_with(|| if repeatable { json!([{}]) } else { json!({}) });
    let body = match slot {
        Value::Array(items) => {
            if items.is_empty() {
                items.push(json!({}));
            }
            &mut items[0]
        }
        other => other,
    };
    match body {
        Value::Object(m) => (m, member),
        other => panic!("{block} must be a block in the test config, not {other}"),
    }
}

fn config_for(row: &Row, case: &Case) -> Map {
    let mut config = minimal();
    merge(&mut config, &row.base);
    merge(&mut config, &case.with);
    let Value::Object(mut config) = config else {
        unreachable!("minimal() is an object")
    };
    let (map, name) = holder(&mut config, &row.path);
    match &case.value {
        Some(v) => {
            map.insert(name.to_string(), v.clone());
        }
        None => {
            map.remove(name);
        }
    }
    config
}

/// Whether HCL2 can say this config: every key is in the spec and every
/// value has the declared type (a JSON template's `"a,b"` for a list or
/// `"true"` for a bool has no HCL2 equivalent).
fn fits_spec(config: &Map, spec: &ObjectSpec) -> bool {
    config.iter().all(|(name, value)| match spec.0.get(name) {
        None => false,
        Some(Spec::Attr { ty, .. }) => fits_type(value, ty),
        Some(Spec::Block { nested, .. }) => {
            matches!(value, Value::Object(body) if fits_spec(body, nested))
        }
        Some(Spec::BlockList { nested, .. }) => matches!(value, Value::Array(items)
            if items.iter().all(|i| matches!(i, Value::Object(body) if fits_spec(body, nested)))),
    })
}

fn fits_type(value: &Value, ty: &CtyType) -> bool {
    match (ty, value) {
        (CtyType::String, Value::String(_))
        | (CtyType::Number, Value::Number(_))
        | (CtyType::Bool, Value::Bool(_)) => true,
        (CtyType::List(item), Value::Array(items)) => items.iter().all(|v| fits_type(v, item)),
        (CtyType::Map(item), Value::Object(m)) => m.values().all(|v| fits_type(v, item)),
        _ => false,
    }
}

fn args_for(kind: TemplateKind, config: Map) -> PrepareArgs {
    match kind {
        TemplateKind::Json => PrepareArgs {
            kind,
            config,
            packer: settings(),
        },
        TemplateKind::Hcl2 => hcl2_args(Value::Object(config)),
    }
}

fn outcome(args: &PrepareArgs, path: &str) -> Expect {
    match Config::from_prepare(args) {
        Ok((config, prepared)) => Expect::Decodes {
            seen: config
                .observe(path)
                .unwrap_or_else(|| format!("<no option {path}>")),
            warnings: prepared.warnings,
        },
        Err(PrepareErrors(errors)) => Expect::Rejected(errors),
    }
}

/// One mismatch, printed so the failing row and case are plain.
struct Mismatch<'a> {
    path: &'a str,
    kind: TemplateKind,
    case: &'a Case,
    got: Expect,
}

impl fmt::Display for Mismatch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = self
            .case
            .value
            .as_ref()
            .map_or("<unset>".to_string(), Value::to_string);
        write!(
            f,
            "{} = {value} ({:?}, with {}):\n  expected {:?}\n  got      {:?}",
            self.path, self.kind, self.case.with, self.case.expect, self.got
        )
    }
}

#[test]
fn every_option_behaves_as_its_row_says() {
    let spec = config_spec();
    let mut failures = Vec::new();
    let (mut json_runs, mut hcl2_total) = (0, 0);
    for row in option_table() {
        let mut hcl2_runs = 0;
        for case in &row.cases {
            let config = config_for(&row, case);
            let hcl2 = !case.json_only && fits_spec(&config, &spec);
            let kinds: &[TemplateKind] = if hcl2 {
                &[TemplateKind::Json, TemplateKind::Hcl2]
            } else {
                &[TemplateKind::Json]
            };
            for &kind in kinds {
                match kind {
                    TemplateKind::Json => json_runs += 1,
                    TemplateKind::Hcl2 => hcl2_runs += 1,
                }
                let got = outcome(
                    &args_for(kind, config.clone()),
                    case.seen_at.unwrap_or(&row.path),
                );
                if got != case.expect {
                    failures.push(
                        Mismatch {
                            path: &row.path,
                            kind,
                            case,
                            got,
                        }
                        .to_string(),
                    );
                }
            }
        }
        hcl2_total += hcl2_runs;
        if hcl2_runs == 0 {
            failures.push(format!("{}: no case runs as HCL2", row.path));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!("option table: {json_runs} JSON and {hcl2_total} HCL2 Prepare runs");
}

/// Template paths of every declared option, block members as `block.member`.
fn option_paths() -> BTreeMap<String, &'static OptionDesc> {
    fn walk(
        prefix: &str,
        options: &'static [OptionDesc],
        out: &mut BTreeMap<String, &'static OptionDesc>,
    ) {
        for o in options {
            let path = format!("{prefix}{}", o.name);
            match (o.shape)() {
                Shape::Block(nested) | Shape::BlockList(nested) => {
                    walk(&format!("{path}."), nested, out)
                }
                Shape::Attr(_) => {}
            }
            out.insert(path, o);
        }
    }
    let mut out = BTreeMap::new();
    // PackerKeys is left out on purpose: Packer core sets those keys
    // (`packer_build_name` …) and Prepare reads them as PackerSettings,
    // not as options a user writes.
    for group in [
        ChrootConfig::OPTIONS,
        AmiConfig::OPTIONS,
        SnapshotConfig::OPTIONS,
        AccessConfig::OPTIONS,
    ] {
        walk("", group, &mut out);
    }
    out
}

#[test]
fn every_option_has_a_row_and_every_row_an_option() {
    let declared = option_paths();
    let table = option_table();
    let mut problems = Vec::new();
    let mut rows = BTreeSet::new();
    for row in &table {
        if !rows.insert(row.path.clone()) {
            problems.push(format!("{}: two rows", row.path));
        }
        let Some(desc) = declared.get(&row.path) else {
            problems.push(format!(
                "{}: a row for an option that does not exist",
                row.path
            ));
            continue;
        };
        let has = |f: &dyn Fn(&Case) -> bool| row.cases.iter().any(f);
        let default = row
            .cases
            .iter()
            .find(|c| c.value.is_none() && c.with == json!({}));
        match (default.map(|c| &c.expect), desc.default_value) {
            (None, _) => problems.push(format!(
                "{}: no default case (unset, nothing else)",
                row.path
            )),
            // The default the declaration applies is the one observed.
            (Some(Expect::Decodes { seen, .. }), Some(declared))
                if *seen != format!("{declared:?}") =>
            {
                problems.push(format!(
                    "{}: declared default {declared:?}, the row's default is {seen}",
                    row.path
                ))
            }
            _ => {}
        }
        if !has(&|c| c.value.is_some() && matches!(c.expect, Expect::Decodes { .. })) {
            problems.push(format!("{}: no accepted value", row.path));
        }
        if !has(&|c| c.value.is_some() && matches!(c.expect, Expect::Rejected(_))) {
            problems.push(format!("{}: no rejected value", row.path));
        }
    }
    for path in declared.keys().filter(|p| !rows.contains(*p)) {
        problems.push(format!("{path}: an option without a row"));
    }
    let (config, _) = Config::from_prepare(&args_for(
        TemplateKind::Json,
        match minimal() {
            Value::Object(m) => m,
            _ => unreachable!("minimal() is an object"),
        },
    ))
    .unwrap_or_else(|e| panic!("the minimal config is valid: {e}"));
    for path in declared.keys() {
        if config.observe(path).is_none() {
            problems.push(format!("{path}: Config::observe does not find it"));
        }
    }
    // Nor does it make up options (an unset block or an empty list of
    // blocks still knows its members).
    for path in [
        "ami_nmae",
        "aws_polling.delay",
        "ami_block_device_mappings.iosp",
        "tag.name",
        "ami_name.x",
    ] {
        if let Some(seen) = config.observe(path) {
            problems.push(format!("{path}: Config::observe makes it up: {seen}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    println!(
        "option table: {} rows for {} declared options",
        table.len(),
        declared.len()
    );
}

// ---- the table ----------------------------------------------------------

fn option_table() -> Vec<Row> {
    let mut rows = chroot_rows();
    rows.extend(block_device_rows());
    rows.extend(ami_rows());
    rows.extend(snapshot_rows());
    rows.extend(source_ami_filter_rows());
    rows.extend(access_rows());
    rows.extend(block_member_rows());
    rows.extend(tag_block_rows("tag", "tags"));
    rows.extend(tag_block_rows("snapshot_tag", "snapshot_tags"));
    rows.extend(tag_block_rows("root_volume_tag", "root_volume_tags"));
    rows
}

/// A valid `from_scratch` build but for the option a row is about.
fn from_scratch() -> Value {
    json!({
        "from_scratch": true, "source_ami": "",
        "root_volume_size": 8, "pre_mount_commands": ["parted {{.Device}}"],
        "ami_virtualization_type": "hvm", "root_device_name": "/dev/xvda",
        "ami_block_device_mappings": [{"device_name": "/dev/xvda"}]
    })
}

/// One mapping for the root device: what every mapping member row needs.
fn root_mapping() -> Value {
    json!({
        "root_device_name": "/dev/xvda", "root_volume_size": 8,
        "ami_block_device_mappings": [{"device_name": "/dev/xvda"}]
    })
}

const MAPPINGS_REPLACED: &str =
    "ami_block_device_mappings from source image will be completely overwritten";

const DEFAULT_MOUNTS: &str = "[[\"proc\", \"proc\", \"/proc\"], [\"sysfs\", \"sysfs\", \"/sys\"], \
     [\"bind\", \"/dev\", \"/dev\"], [\"devpts\", \"devpts\", \"/dev/pts\"], \
     [\"binfmt_misc\", \"binfmt_misc\", \"/proc/sys/fs/binfmt_misc\"]]";

const KMS_KEY_FORMS: &str = "(expected a key id, mrk-<id>, alias/<name>, or \
     arn:aws:kms:<region>:<account>:key/<id> or …:alias/<name>)";

fn chroot_rows() -> Vec<Row> {
    vec![
        row("ami_block_device_mappings")
            .default("[]")
            .ok_with(
                json!([{"device_name": "/dev/xvda"}, {"device_name": "/dev/sdb", "volume_size": 100}]),
                json!({"root_device_name": "/dev/xvda", "root_volume_size": 8}),
                "[\"/dev/xvda\", \"/dev/sdb\"]",
            )
            .seen_at("ami_block_device_mappings.device_name")
            .warns(&[MAPPINGS_REPLACED])
            // A JSON template may give one object for a list of one.
            .ok_with(
                json!({"device_name": "/dev/xvda"}),
                json!({"root_device_name": "/dev/xvda", "root_volume_size": 8}),
                "[\"/dev/xvda\"]",
            )
            .seen_at("ami_block_device_mappings.device_name")
            .warns(&[MAPPINGS_REPLACED])
            .err(
                json!("/dev/xvda"),
                &["ami_block_device_mappings: expected a list of blocks (objects), got the string \"/dev/xvda\""],
            )
            .err(
                json!(["/dev/xvda"]),
                &["ami_block_device_mappings[0]: expected a block (an object), got the string \"/dev/xvda\""],
            )
            .err_with(
                json!([{"device_name": "/dev/xvda", "iosp": 3000}]),
                json!({"root_device_name": "/dev/xvda", "root_volume_size": 8}),
                &["unknown configuration key: '\"ami_block_device_mappings[0].iosp\"'; did you mean \"iops\"?"],
            )
            .err_with(
                json!([{"device_name": "/dev/xvda"}]),
                json!({"root_volume_size": 8}),
                &["If ami_block_device_mappings is specified, root_device_name must be specified"],
            )
            .err_with(
                json!([{"device_name": "/dev/xvda"}]),
                json!({"root_device_name": "/dev/xvda"}),
                &["root_volume_size is required if ami_block_device_mappings is specified"],
            )
            .err_with(
                json!([]),
                from_scratch(),
                &["ami_block_device_mappings is required with from_scratch."],
            ),
        row("chroot_mounts")
            .default(DEFAULT_MOUNTS)
            .ok(json!([["bind", "/run", "/run"]]), "[[\"bind\", \"/run\", \"/run\"]]")
            // Upstream: an empty list means the defaults, not no mounts.
            .ok(json!([]), DEFAULT_MOUNTS)
            .ok(json!(["bind,/run,/run"]), "[[\"bind\", \"/run\", \"/run\"]]")
            .err(json!({"proc": "/proc"}), &["chroot_mounts: expected a list, got an object"])
            .err(
                json!([["proc", ["proc"], "/proc"]]),
                &["chroot_mounts[0][1]: expected a string, got a list"],
            )
            .err(
                json!([["proc", "proc", "/proc"], ["bind", "/run"]]),
                &["Each chroot_mounts entry should be three elements ([fstype, source, destination]); \
                   chroot_mounts[1] has 2: [\"bind\", \"/run\"]"],
            )
            .err(
                json!([["bad"]]),
                &["Each chroot_mounts entry should be three elements ([fstype, source, destination]); \
                   chroot_mounts[0] has 1: [\"bad\"]"],
            )
            .err(
                json!([["proc", "proc", "proc"]]),
                &["chroot_mounts[0]: the destination \"proc\" must be an absolute path inside the chroot (e.g. \"/proc\")"],
            ),
        row("command_wrapper")
            .default("\"{{.Command}}\"")
            .ok(json!("sudo -n {{.Command}}"), "\"sudo -n {{.Command}}\"")
            .ok(json!(""), "\"{{.Command}}\"")
            .err(json!(["sudo"]), &["command_wrapper: expected a string, got a list"])
            .err(
                json!("sudo {{.Device}}"),
                &["command_wrapper: invalid template: .Device is not available here (available: .Command)"],
            )
            .err(json!("sudo {{.Command"), &["command_wrapper: invalid template: unclosed action"]),
        row("copy_files")
            .default("Some([\"/etc/resolv.conf\"])")
            .unset_with(from_scratch(), "None")
            .ok(json!(["/etc/hosts"]), "Some([\"/etc/hosts\"])")
            .ok(json!([]), "Some([])")
            .ok(json!("/etc/hosts,/etc/resolv.conf"), "Some([\"/etc/hosts\", \"/etc/resolv.conf\"])")
            .err(json!({"/etc/hosts": true}), &["copy_files: expected a list, got an object"])
            .err(
                json!(["/etc/hosts", "etc/resolv.conf"]),
                &["copy_files[1]: \"etc/resolv.conf\" must be an absolute path (it names the host file and its \
                   place in the chroot, e.g. \"/etc/resolv.conf\")"],
            ),
        row("device_path")
            .default("\"\"")
            .ok(json!("/dev/xvdf"), "\"/dev/xvdf\"")
            .err(json!(["/dev/xvdf"]), &["device_path: expected a string, got a list"]),
        row("nvme_device_path")
            .default("\"\"")
            .ok(json!("/dev/nvme1n1p"), "\"/dev/nvme1n1p\"")
            .ok_with(json!("/dev/nvme1n1"), json!({"mount_partition": "0"}), "\"/dev/nvme1n1\"")
            .ok_with(
                json!("/dev/nvme1n1"),
                json!({"ami_virtualization_type": "paravirtual"}),
                "\"/dev/nvme1n1\"",
            )
            .err(
                json!("/dev/nvme1n1"),
                &["nvme_device_path must end with \"p\" so that mount_partition \"1\" can be appended \
                   (e.g. \"/dev/nvme1n1p\"), or set mount_partition to \"0\" to mount the whole device; \
                   got \"/dev/nvme1n1\""],
            )
            .err(json!({}), &["nvme_device_path: expected a string, got an object"]),
        row("from_scratch")
            .default("false")
            .ok_with(json!(true), from_scratch(), "true")
            .ok_with(json!("true"), from_scratch(), "true")
            .ok_with(json!(true), and(from_scratch(), json!({"source_ami": "ami-1"})), "true")
            .warns(&["source_ami and source_ami_filter are unused when from_scratch is true"])
            .err(json!("yes"), &["from_scratch: expected a boolean (true or false), got the string \"yes\""])
            .err_with(
                json!(true),
                json!({"source_ami": ""}),
                &[
                    "root_volume_size is required with from_scratch.",
                    "pre_mount_commands is required with from_scratch.",
                    "ami_virtualization_type is required with from_scratch.",
                    "root_device_name is required with from_scratch.",
                    "ami_block_device_mappings is required with from_scratch.",
                ],
            ),
        row("mount_options")
            .default("[]")
            .ok(json!(["nouuid", "ro"]), "[\"nouuid\", \"ro\"]")
            .ok(json!("nouuid"), "[\"nouuid\"]")
            .err(json!({"nouuid": true}), &["mount_options: expected a list, got an object"]),
        row("mount_partition")
            .default("\"1\"")
            .ok(json!("0"), "\"0\"")
            .ok(json!("12"), "\"12\"")
            .ok(json!(2), "\"2\"")
            .ok(json!(""), "\"1\"")
            .err(
                json!("p1"),
                &["mount_partition must be a partition number such as \"1\", or \"0\" for the whole device; got \"p1\""],
            )
            .err(
                json!("-1"),
                &["mount_partition must be a partition number such as \"1\", or \"0\" for the whole device; got \"-1\""],
            )
            .err(json!(["1"]), &["mount_partition: expected a string, got a list"])
            .err_with(
                json!("2"),
                json!({"nvme_device_path": "/dev/nvme1n1"}),
                &["nvme_device_path must end with \"p\" so that mount_partition \"2\" can be appended \
                   (e.g. \"/dev/nvme1n1p\"), or set mount_partition to \"0\" to mount the whole device; \
                   got \"/dev/nvme1n1\""],
            ),
        row("mount_path")
            .default("\"/mnt/packer-amazon-chroot-volumes/{{.Device}}\"")
            .ok(json!("/mnt/chroot/{{.Device}}"), "\"/mnt/chroot/{{.Device}}\"")
            .err(
                json!("/mnt/{{.MountPath}}"),
                &["mount_path: invalid template: .MountPath is not available here (available: .Device)"],
            )
            .err(json!(["/mnt"]), &["mount_path: expected a string, got a list"]),
        row("post_mount_commands")
            .default("[]")
            .ok(json!(["ls {{.MountPath}}{{.Device}}"]), "[\"ls {{.MountPath}}{{.Device}}\"]")
            .err(
                json!(["echo {{.Command}}"]),
                &["post_mount_commands[0]: invalid template: .Command is not available here (available: .Device, .MountPath)"],
            )
            .err(json!({"a": "b"}), &["post_mount_commands: expected a list, got an object"]),
        row("pre_mount_commands")
            .default("[]")
            .ok(json!(["parted {{.Device}}", "mkfs.ext4 {{.Device}}1"]), "[\"parted {{.Device}}\", \"mkfs.ext4 {{.Device}}1\"]")
            .err(
                json!(["mkfs {{.MountPath}}"]),
                &["pre_mount_commands[0]: invalid template: .MountPath is not available here (available: .Device)"],
            )
            .err(json!([["parted"]]), &["pre_mount_commands[0]: expected a string, got a list"])
            .err_with(
                json!([]),
                from_scratch(),
                &["pre_mount_commands is required with from_scratch."],
            ),
        row("root_device_name")
            .default("\"\"")
            .ok_with(
                json!("/dev/xvda"),
                json!({"root_volume_size": 8, "ami_block_device_mappings": [{"device_name": "/dev/xvda"}]}),
                "\"/dev/xvda\"",
            )
            .warns(&[MAPPINGS_REPLACED])
            .err(
                json!("/dev/xvda"),
                &["If root_device_name is specified, ami_block_device_mappings must be specified"],
            )
            .err_with(
                json!("/dev/xvda"),
                json!({"root_volume_size": 8, "ami_block_device_mappings": [{"device_name": "/dev/sdb"}]}),
                &["root_device_name \"/dev/xvda\" must be the device_name of one of the \
                   ami_block_device_mappings (it receives the new root snapshot)"],
            )
            .err(json!(["/dev/xvda"]), &["root_device_name: expected a string, got a list"])
            .err_with(
                json!(""),
                from_scratch(),
                &["root_device_name is required with from_scratch."],
            ),
        row("root_volume_size")
            .default("0")
            .ok(json!(20), "20")
            .ok(json!(20.0), "20")
            .ok(json!("20"), "20")
            .err(json!("ten"), &["root_volume_size: expected a whole number, got the string \"ten\""])
            .err(json!(1.5), &["root_volume_size: expected a whole number, got the number 1.5"])
            .err(json!(-1), &["root_volume_size must be a positive number of GiB; got -1"])
            .err_with(json!(0), from_scratch(), &["root_volume_size is required with from_scratch."])
            .err_with(
                json!(0),
                json!({"root_device_name": "/dev/xvda", "ami_block_device_mappings": [{"device_name": "/dev/xvda"}]}),
                &["root_volume_size is required if ami_block_device_mappings is specified"],
            ),
        row("root_volume_type")
            .default("\"\"")
            .ok(json!("gp3"), "\"gp3\"")
            .ok(json!("io1"), "\"io1\"")
            .ok_with(json!("gp3"), from_scratch(), "\"gp3\"")
            .err_with(
                json!("io1"),
                from_scratch(),
                &["root_volume_type \"io1\" is not supported with from_scratch (it needs provisioned IOPS); \
                   use gp2, gp3, st1, sc1 or standard"],
            )
            .err_with(
                json!("io2"),
                from_scratch(),
                &["root_volume_type \"io2\" is not supported with from_scratch (it needs provisioned IOPS); \
                   use gp2, gp3, st1, sc1 or standard"],
            )
            .err(json!(["gp3"]), &["root_volume_type: expected a string, got a list"]),
        row("source_ami")
            .required(&["source_ami or source_ami_filter is required."])
            .ok(json!("ami-0abc"), "\"ami-0abc\"")
            .ok_with(json!(""), json!({"source_ami_filter": {"owners": ["amazon"]}}), "\"\"")
            .ok_with(json!(""), from_scratch(), "\"\"")
            .err(json!(""), &["source_ami or source_ami_filter is required."])
            .err(json!(["ami-1"]), &["source_ami: expected a string, got a list"]),
        row("source_ami_filter")
            .default(
                "AmiFilter { filters: {}, owners: [], most_recent: false, include_deprecated: false }",
            )
            .ok_with(
                json!({"owners": ["amazon"], "most_recent": true}),
                json!({"source_ami": ""}),
                "AmiFilter { filters: {}, owners: [\"amazon\"], most_recent: true, include_deprecated: false }",
            )
            .ok_with(
                json!({"filters": {"name": "debian-12-*"}}),
                json!({"source_ami": ""}),
                "AmiFilter { filters: {\"name\": \"debian-12-*\"}, owners: [], most_recent: false, include_deprecated: false }",
            )
            .warns(&["source_ami_filter has no owners: an image of any account may match; set owners \
                      (e.g. [\"amazon\"] or an account id)"])
            .err(
                json!("debian"),
                &["source_ami_filter: expected a block (an object), got the string \"debian\""],
            )
            .err(
                json!({"ownres": ["amazon"]}),
                &["unknown configuration key: '\"source_ami_filter.ownres\"'; did you mean \"owners\"?"],
            )
            // most_recent alone selects nothing (upstream `Empty()`).
            .err_with(
                json!({"most_recent": true}),
                json!({"source_ami": ""}),
                &["source_ami or source_ami_filter is required."],
            ),
        row("root_volume_tags")
            .default("{}")
            .err(json!({"": "x"}), &["root_volume_tags has an empty key: AWS refuses a tag without a key"])
            .ok(json!({"Name": "{{.SourceAMIName}}-work", "Team": "ops"}), "{\"Name\": \"{{.SourceAMIName}}-work\", \"Team\": \"ops\"}")
            .ok(json!([{"A": "1"}, {"B": "2"}]), "{\"A\": \"1\", \"B\": \"2\"}")
            .err(json!("Name=x"), &["root_volume_tags: expected a map of strings, got the string \"Name=x\""])
            .err(
                json!({"Name": "{{.Device}}"}),
                &[&format!("root_volume_tags.Name: invalid template: .Device is not available here {BUILD_INFO_FIELDS}")],
            ),
        row("root_volume_encrypt_boot")
            .default("Unset")
            .ok(json!(true), "True")
            .ok(json!(false), "False")
            .ok(json!(""), "Unset")
            .err(json!("maybe"), &["root_volume_encrypt_boot: expected a boolean (true or false), got the string \"maybe\""]),
        row("root_volume_kms_key_id")
            .default("\"\"")
            .ok_with(json!("alias/work"), json!({"root_volume_encrypt_boot": true}), "\"alias/work\"")
            .ok(json!("12345678-1234-1234-1234-123456789012"), "\"12345678-1234-1234-1234-123456789012\"")
            .ok_with(
                json!("arn:aws:kms:us-east-1:123456789012:key/mrk-1234abcd"),
                json!({"root_volume_encrypt_boot": true}),
                "\"arn:aws:kms:us-east-1:123456789012:key/mrk-1234abcd\"",
            )
            .ok_with(
                json!("arn:aws:kms:us-east-1:123456789012:key/mrk-1234abcd"),
                json!({"root_volume_encrypt_boot": true, "region": "us-east-1"}),
                "\"arn:aws:kms:us-east-1:123456789012:key/mrk-1234abcd\"",
            )
            .err_with(
                json!("arn:aws:kms:us-east-1:123456789012:key/mrk-1234abcd"),
                json!({"root_volume_encrypt_boot": true, "region": "eu-west-1"}),
                &["root_volume_kms_key_id: the KMS key \"arn:aws:kms:us-east-1:123456789012:key/mrk-1234abcd\" is in \
                   us-east-1, but it is used in eu-west-1; KMS keys are regional, give a key of eu-west-1"],
            )
            .err_with(
                json!("alias/x"),
                json!({"root_volume_encrypt_boot": false}),
                &["If you have set root_volume_kms_key_id, root_volume_encrypt_boot must also be true."],
            )
            .err_with(
                json!("not a key"),
                json!({"root_volume_encrypt_boot": true}),
                &[&format!("root_volume_kms_key_id: \"not a key\" is not a valid KMS Key Id {KMS_KEY_FORMS}")],
            )
            .err(json!(["alias/x"]), &["root_volume_kms_key_id: expected a string, got a list"]),
        row("ami_architecture")
            .default("\"x86_64\"")
            .ok(json!("arm64"), "\"arm64\"")
            .ok(json!("x86_64_mac"), "\"x86_64_mac\"")
            .ok(json!(""), "\"x86_64\"")
            .err(
                json!("amd64"),
                &["The only valid ami_architecture values are \"arm64\", \"arm64_mac\", \"i386\", \"x86_64\", \
                   or \"x86_64_mac\"; got \"amd64\""],
            )
            .err(json!(["arm64"]), &["ami_architecture: expected a string, got a list"]),
        row("boot_mode")
            .default("\"\"")
            .ok(json!("uefi"), "\"uefi\"")
            .ok(json!("legacy-bios"), "\"legacy-bios\"")
            .ok(json!("uefi-preferred"), "\"uefi-preferred\"")
            .err(
                json!("bios"),
                &["boot_mode: invalid boot mode \"bios\", valid values are either 'uefi', 'legacy-bios' or 'uefi-preferred'"],
            )
            .err(json!(true), &["boot_mode: invalid boot mode \"1\", valid values are either 'uefi', 'legacy-bios' or 'uefi-preferred'"]),
        row("uefi_data")
            .default("\"\"")
            .ok_with(json!("QUJD"), json!({"boot_mode": "uefi"}), "\"QUJD\"")
            .ok_with(json!("QUJD"), json!({"ami_architecture": "arm64"}), "\"QUJD\"")
            .err_with(
                json!("QUJD"),
                json!({"boot_mode": "legacy-bios"}),
                &["You can't use uefi_data with boot_mode set to \"legacy-bios\"."],
            )
            .err(
                json!("QUJD"),
                &["You need boot_mode set to \"uefi\" to use uefi_data, \"x86_64\" architecture defaults to \"legacy-bios\"."],
            )
            .err_with(
                json!("QUJD"),
                json!({"ami_architecture": "i386"}),
                &["You need boot_mode set to \"uefi\" to use uefi_data, \"i386\" architecture defaults to \"legacy-bios\"."],
            )
            .err(json!({"data": "QUJD"}), &["uefi_data: expected a string, got an object"]),
        row("tpm_support")
            .default("\"\"")
            .ok(json!("v2.0"), "\"v2.0\"")
            .err(json!("v3.0"), &["The only valid tpm_support value is \"v2.0\"; got \"v3.0\""])
            .err(json!(2.0), &["The only valid tpm_support value is \"v2.0\"; got \"2\""]),
    ]
}

/// The root mapping's entry with `entry` merged over it.
fn mapping(entry: Value) -> Value {
    json!({"ami_block_device_mappings": [entry]})
}

fn block_device_rows() -> Vec<Row> {
    let rows = vec![
        row("ami_block_device_mappings.delete_on_termination")
            .default("[false]")
            .ok(json!(true), "[true]")
            .ok(json!("true"), "[true]")
            .err(
                json!("always"),
                &["ami_block_device_mappings[0].delete_on_termination: expected a boolean (true or false), got the string \"always\""],
            ),
        row("ami_block_device_mappings.device_name")
            .base(json!({"ami_block_device_mappings": [{"volume_size": 8}]}))
            .required(&[
                "root_device_name \"/dev/xvda\" must be the device_name of one of the ami_block_device_mappings \
                 (it receives the new root snapshot)",
                "ami_block_device_mappings[0]: The `device_name` must be specified for every device in the block device mapping.",
            ])
            .ok(json!("/dev/xvda"), "[\"/dev/xvda\"]")
            .err(
                json!("/dev/sdb"),
                &["root_device_name \"/dev/xvda\" must be the device_name of one of the ami_block_device_mappings \
                   (it receives the new root snapshot)"],
            )
            .err(json!(["/dev/xvda"]), &["ami_block_device_mappings[0].device_name: expected a string, got a list"]),
        row("ami_block_device_mappings.encrypted")
            .default("[Unset]")
            .ok(json!(true), "[True]")
            .ok(json!(false), "[False]")
            .ok(json!(""), "[Unset]")
            .err(
                json!("yes"),
                &["ami_block_device_mappings[0].encrypted: expected a boolean (true or false), got the string \"yes\""],
            ),
        row("ami_block_device_mappings.iops")
            .default("[None]")
            .ok_with(json!(3000), mapping(json!({"volume_type": "gp3"})), "[Some(3000)]")
            .ok_with(json!(16000), mapping(json!({"volume_type": "gp3"})), "[Some(16000)]")
            .ok_with(json!(500), mapping(json!({"volume_type": "io1", "volume_size": 10})), "[Some(500)]")
            .ok_with(json!(500), mapping(json!({"volume_type": "io2", "volume_size": 1})), "[Some(500)]")
            .ok_with(json!(64000), mapping(json!({"volume_type": "io2", "volume_size": 200})), "[Some(64000)]")
            // Not sent to AWS for other types (upstream), so not checked.
            .ok_with(json!(50), mapping(json!({"volume_type": "gp2"})), "[Some(50)]")
            .err(json!("fast"), &["ami_block_device_mappings[0].iops: expected a whole number, got the string \"fast\""])
            .err_with(
                json!(501),
                mapping(json!({"volume_type": "io1", "volume_size": 10})),
                &["ami_block_device_mappings[0]: /dev/xvda: the maximum ratio of provisioned IOPS to requested volume size \
                   (in GiB) is 50:1 for io1 volumes; got 501 IOPS for 10 GiB"],
            )
            .err_with(
                json!(501),
                mapping(json!({"volume_type": "io2", "volume_size": 1})),
                &["ami_block_device_mappings[0]: /dev/xvda: the maximum ratio of provisioned IOPS to requested volume size \
                   (in GiB) is 500:1 for io2 volumes; got 501 IOPS for 1 GiB"],
            )
            .err_with(
                json!(99),
                mapping(json!({"volume_type": "io1", "volume_size": 10})),
                &["ami_block_device_mappings[0]: IOPS must be between 100 and 64000 for device /dev/xvda; got 99"],
            )
            .err_with(
                json!(64001),
                mapping(json!({"volume_type": "io2", "volume_size": 1000})),
                &["ami_block_device_mappings[0]: IOPS must be between 100 and 64000 for device /dev/xvda; got 64001"],
            )
            .err_with(
                json!(2999),
                mapping(json!({"volume_type": "gp3"})),
                &["ami_block_device_mappings[0]: IOPS must be between 3000 and 16000 for device /dev/xvda; got 2999"],
            )
            .err_with(
                json!(16001),
                mapping(json!({"volume_type": "gp3"})),
                &["ami_block_device_mappings[0]: IOPS must be between 3000 and 16000 for device /dev/xvda; got 16001"],
            ),
        row("ami_block_device_mappings.no_device")
            .default("[false]")
            .ok(json!(true), "[true]")
            .ok(json!(0), "[false]")
            .err(json!(["x"]), &["ami_block_device_mappings[0].no_device: expected a boolean (true or false), got a list"]),
        row("ami_block_device_mappings.snapshot_id")
            .default("[\"\"]")
            .ok(json!("snap-0123456789abcdef0"), "[\"snap-0123456789abcdef0\"]")
            .err(json!({}), &["ami_block_device_mappings[0].snapshot_id: expected a string, got an object"]),
        row("ami_block_device_mappings.throughput")
            .default("[None]")
            .ok_with(json!(125), mapping(json!({"volume_type": "gp3"})), "[Some(125)]")
            .ok_with(json!(1000), mapping(json!({"volume_type": "gp3"})), "[Some(1000)]")
            .err_with(
                json!(124),
                mapping(json!({"volume_type": "gp3"})),
                &["ami_block_device_mappings[0]: Throughput must be between 125 and 1000 for device /dev/xvda; got 124"],
            )
            .err_with(
                json!(1001),
                mapping(json!({"volume_type": "gp3"})),
                &["ami_block_device_mappings[0]: Throughput must be between 125 and 1000 for device /dev/xvda; got 1001"],
            )
            .err_with(
                json!(250),
                mapping(json!({"volume_type": "gp2"})),
                &["ami_block_device_mappings[0]: Throughput is only valid for gp3 volumes, \"/dev/xvda\" is of type \"gp2\""],
            )
            .err(
                json!(250),
                &["ami_block_device_mappings[0]: Throughput is only valid for gp3 volumes, \"/dev/xvda\" is of type \"\""],
            )
            .err(
                json!("max"),
                &["ami_block_device_mappings[0].throughput: expected a whole number, got the string \"max\""],
            ),
        row("ami_block_device_mappings.virtual_name")
            .default("[\"\"]")
            .ok(json!("ephemeral0"), "[\"ephemeral0\"]")
            .err(json!(["ephemeral0"]), &["ami_block_device_mappings[0].virtual_name: expected a string, got a list"]),
        row("ami_block_device_mappings.volume_type")
            .default("[\"\"]")
            .ok(json!("gp3"), "[\"gp3\"]")
            .ok(json!("st1"), "[\"st1\"]")
            .err_with(
                json!("gp2"),
                mapping(json!({"throughput": 250})),
                &["ami_block_device_mappings[0]: Throughput is only valid for gp3 volumes, \"/dev/xvda\" is of type \"gp2\""],
            )
            .err(json!(["gp3"]), &["ami_block_device_mappings[0].volume_type: expected a string, got a list"]),
        row("ami_block_device_mappings.volume_size")
            .default("[0]")
            .ok(json!(100), "[100]")
            .ok(json!(100.0), "[100]")
            .err(json!("big"), &["ami_block_device_mappings[0].volume_size: expected a whole number, got the string \"big\""])
            .err(json!(-1), &["ami_block_device_mappings[0]: volume_size must be a positive number of GiB; got -1"]),
        row("ami_block_device_mappings.kms_key_id")
            .default("[\"\"]")
            .ok_with(json!("alias/data"), mapping(json!({"encrypted": true})), "[\"alias/data\"]")
            .ok(json!("alias/data"), "[\"alias/data\"]")
            .err_with(
                json!("alias/data"),
                mapping(json!({"encrypted": false})),
                &["ami_block_device_mappings[0]: The device /dev/xvda, must also have `encrypted: true` when setting a kms_key_id."],
            )
            .err(json!(["alias/data"]), &["ami_block_device_mappings[0].kms_key_id: expected a string, got a list"]),
    ];
    // Every member row needs a valid root mapping around it, and then
    // every accepted case also gives the mappings-replaced warning.
    rows.into_iter()
        .map(|r| {
            let base = and(root_mapping(), r.base.clone());
            let mut r = r.base(base);
            for c in &mut r.cases {
                if let Expect::Decodes { warnings, .. } = &mut c.expect {
                    warnings.push(MAPPINGS_REPLACED.to_string());
                }
            }
            r
        })
        .collect()
}

const SHARE_AMI_DEFAULT_KEY: &str = "Cannot share AMI encrypted with default KMS key: ami_users, ami_org_arns and \
     ami_ou_arns need encrypt_boot with a customer managed key; set kms_key_id or region_kms_key_ids";
const SHARE_SNAPSHOT_DEFAULT_KEY: &str =
    "Cannot share snapshot encrypted with default KMS key: snapshot_users \
     need encrypt_boot with a customer managed key; set kms_key_id or region_kms_key_ids";
const ENA_NEEDS_HVM: &str =
    "ena_support needs an hvm AMI, but ami_virtualization_type is \"paravirtual\"; \
     set it to \"hvm\" or turn ena_support off";
const KMS_KEY_WITHOUT_ENCRYPT: &str =
    "If you have set either region_kms_key_ids or kms_key_id, encrypt_boot must also be true.";

/// Rows of an option sharing the AMI (`ami_users`, `ami_org_arns`, `ami_ou_arns`).
fn sharing_row(path: &'static str, who: &str) -> Row {
    let listed = format!("[{who:?}]");
    row(path)
        .default("[]")
        .ok(json!([who]), &listed)
        .ok_with(json!([who]), json!({"encrypt_boot": true, "kms_key_id": "alias/shared"}), &listed)
        .err(json!({"id": who}), &[&format!("{path}: expected a list, got an object")])
        .err_with(json!([who]), json!({"encrypt_boot": true}), &[SHARE_AMI_DEFAULT_KEY])
        .err_with(
            json!([who]),
            json!({"encrypt_boot": true, "kms_key_id": "alias/build", "ami_regions": ["eu-west-1"],
                   "region_kms_key_ids": {"eu-west-1": ""}}),
            &["Cannot share AMI encrypted with default KMS key for other regions: region_kms_key_ids gives \
               no key for [\"eu-west-1\"], and ami_users, ami_org_arns or ami_ou_arns share the AMI; give a \
               customer managed key for every region"],
        )
}

/// Rows of a plain `list(string)` option without rules of its own.
fn list_row(path: &'static str, item: &str) -> Row {
    let listed = format!("[{item:?}]");
    row(path)
        .default("[]")
        .ok(json!([item]), &listed)
        .ok(json!(item), &listed)
        .err(
            json!({"a": item}),
            &[&format!("{path}: expected a list, got an object")],
        )
        .err(
            json!([[item]]),
            &[&format!("{path}[0]: expected a string, got a list")],
        )
}

/// Rows of a plain bool option without rules of its own.
fn bool_row(path: &'static str) -> Row {
    row(path)
        .default("false")
        .ok(json!(true), "true")
        .ok(json!("1"), "true")
        .ok(json!(false), "false")
        .err(
            json!("sure"),
            &[&format!(
                "{path}: expected a boolean (true or false), got the string \"sure\""
            )],
        )
}

/// Rows of a plain string option without rules of its own.
fn string_row(path: &'static str, value: &str) -> Row {
    row(path)
        .default("\"\"")
        .ok(json!(value), &format!("{value:?}"))
        .err(
            json!([value]),
            &[&format!("{path}: expected a string, got a list")],
        )
}

fn ami_rows() -> Vec<Row> {
    let long_name = "a".repeat(129);
    let longest_name = "a".repeat(128);
    vec![
        row("ami_name")
            .required(&["ami_name must be specified"])
            .ok(json!("web (2030) [v1] a.b/c-d'e@f_g"), "\"web (2030) [v1] a.b/c-d'e@f_g\"")
            .ok(json!("web-{{user `env`}}"), "\"web-uservalue7\"")
            .json_only()
            .ok(json!("{{ \"a:b\" | clean_resource_name }}"), "\"a-b\"")
            .ok(json!("abc"), "\"abc\"")
            .ok(json!(longest_name), &format!("{longest_name:?}"))
            .err(json!(""), &["ami_name must be specified"])
            .err(json!("ab"), &["ami_name must be between 3 and 128 characters long; \"ab\" has 2"])
            .err(
                json!(long_name),
                &[&format!("ami_name must be between 3 and 128 characters long; {long_name:?} has 129")],
            )
            .err(
                json!("web:1"),
                &["ami_name: AMIName should only contain alphanumeric characters, parentheses (()), square brackets ([]), \
                   spaces ( ), periods (.), slashes (/), dashes (-), single quotes ('), at-signs (@), or \
                   underscores(_). You can use the `clean_resource_name` template filter to automatically \
                   clean your ami name. Got \"web:1\""],
            )
            .err(json!("web {{"), &["ami_name: invalid template: unclosed action"])
            .err(
                json!("x-{{.SourceAMIName}}"),
                &["ami_name: invalid template: .SourceAMIName is not available here: this option is rendered at \
                   Prepare, without build data"],
            )
            .err(json!(["a", "b"]), &["ami_name: expected a string, got a list"]),
        row("ami_description")
            .default("\"\"")
            .ok(json!("from {{.SourceAMIName}} in {{.BuildRegion}}"), "\"from {{.SourceAMIName}} in {{.BuildRegion}}\"")
            .err(
                json!("{{.Device}}"),
                &[&format!("ami_description: invalid template: .Device is not available here {BUILD_INFO_FIELDS}")],
            )
            .err(json!(["x"]), &["ami_description: expected a string, got a list"]),
        row("ami_virtualization_type")
            .default("\"\"")
            .ok(json!("hvm"), "\"hvm\"")
            .ok(json!("paravirtual"), "\"paravirtual\"")
            .err(json!("pv"), &["ami_virtualization_type must be \"hvm\" or \"paravirtual\"; got \"pv\""])
            .err_with(json!("paravirtual"), json!({"ena_support": true}), &[ENA_NEEDS_HVM])
            .err(json!(["hvm"]), &["ami_virtualization_type: expected a string, got a list"])
            .err_with(json!(""), from_scratch(), &["ami_virtualization_type is required with from_scratch."]),
        sharing_row("ami_users", "123456789012"),
        list_row("ami_groups", "all").err(
            json!(["all", "admins"]),
            &["The only group ami_groups may name is \"all\" (everyone); got \"admins\""],
        ),
        sharing_row("ami_org_arns", "arn:aws:organizations::123456789012:organization/o-abc"),
        sharing_row("ami_ou_arns", "arn:aws:organizations::123456789012:ou/o-abc/ou-ab-cdef"),
        list_row("ami_product_codes", "abcdef0123456789"),
        row("ami_regions")
            .default("[]")
            .ok(json!(["eu-west-1", "ap-south-1"]), "[\"eu-west-1\", \"ap-south-1\"]")
            .ok(json!("eu-west-1,ap-south-1"), "[\"eu-west-1\", \"ap-south-1\"]")
            // Deduplicated, and the build region is not copied to itself.
            .ok_with(
                json!(["eu-west-1", "us-east-1", "eu-west-1"]),
                json!({"region": "us-east-1"}),
                "[\"eu-west-1\"]",
            )
            .ok_with(
                json!(["eu-west-1"]),
                json!({"encrypt_boot": true, "region_kms_key_ids": {"eu-west-1": "alias/eu"}}),
                "[\"eu-west-1\"]",
            )
            .err(json!({"eu-west-1": true}), &["ami_regions: expected a list, got an object"])
            .err_with(
                json!(["eu-west-1", "us-west-2"]),
                json!({"encrypt_boot": true, "region_kms_key_ids": {"eu-west-1": "alias/a"}}),
                &["Region us-west-2 is in ami_regions but not in region_kms_key_ids"],
            ),
        bool_row("skip_region_validation"),
        row("tags")
            .default("{}")
            .err(json!({"": "x"}), &["tags has an empty key: AWS refuses a tag without a key"])
            .ok(json!({"Name": "{{.SourceAMIName}}", "Team": "ops"}), "{\"Name\": \"{{.SourceAMIName}}\", \"Team\": \"ops\"}")
            .ok(json!([{"Name": "a"}, {"Team": "ops"}]), "{\"Name\": \"a\", \"Team\": \"ops\"}")
            .err(json!("Name=a"), &["tags: expected a map of strings, got the string \"Name=a\""])
            .err(json!(["Name"]), &["tags: expected a map, got a list holding the string \"Name\""])
            .err(
                json!({"Name": "{{.MountPath}}"}),
                &[&format!("tags.Name: invalid template: .MountPath is not available here {BUILD_INFO_FIELDS}")],
            ),
        row("ena_support")
            .default("Unset")
            .ok(json!(true), "True")
            .ok(json!("false"), "False")
            .err(json!("on"), &["ena_support: expected a boolean (true or false), got the string \"on\""])
            .ok_with(json!(false), json!({"ami_virtualization_type": "paravirtual"}), "False")
            .err_with(json!(true), json!({"ami_virtualization_type": "paravirtual"}), &[ENA_NEEDS_HVM]),
        bool_row("sriov_support")
            .ok_with(json!(true), json!({"ami_virtualization_type": "hvm"}), "true")
            .err_with(
                json!(true),
                json!({"ami_virtualization_type": "paravirtual"}),
                &["sriov_support needs an hvm AMI, but ami_virtualization_type is \"paravirtual\"; \
                   set it to \"hvm\" or turn sriov_support off"],
            ),
        bool_row("force_deregister"),
        bool_row("force_delete_snapshot"),
        row("encrypt_boot")
            .default("Unset")
            .ok(json!(true), "True")
            .ok(json!(false), "False")
            .ok_with(json!(true), json!({"kms_key_id": "alias/mine"}), "True")
            .err(json!("encrypted"), &["encrypt_boot: expected a boolean (true or false), got the string \"encrypted\""])
            .err_with(json!(false), json!({"kms_key_id": "alias/mine"}), &[KMS_KEY_WITHOUT_ENCRYPT]),
        row("kms_key_id")
            .default("\"\"")
            .ok_with(json!("alias/mine"), json!({"encrypt_boot": true}), "\"alias/mine\"")
            .ok_with(
                json!("mrk-1234abcd12ab34cd56ef1234567890ab"),
                json!({"encrypt_boot": true}),
                "\"mrk-1234abcd12ab34cd56ef1234567890ab\"",
            )
            .ok_with(
                json!("arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/12345678-1234-1234-1234-123456789012"),
                json!({"encrypt_boot": true}),
                "\"arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/12345678-1234-1234-1234-123456789012\"",
            )
            .ok_with(
                json!("arn:aws-cn:kms:cn-north-1:123456789012:alias/build"),
                json!({"encrypt_boot": true}),
                "\"arn:aws-cn:kms:cn-north-1:123456789012:alias/build\"",
            )
            .ok_with(
                json!("arn:aws:kms:eu-west-1:123456789012:alias/build"),
                json!({"encrypt_boot": true, "region": "eu-west-1"}),
                "\"arn:aws:kms:eu-west-1:123456789012:alias/build\"",
            )
            .err_with(
                json!("arn:aws:kms:us-east-1:123456789012:alias/build"),
                json!({"encrypt_boot": true, "region": "eu-west-1"}),
                &["kms_key_id: the KMS key \"arn:aws:kms:us-east-1:123456789012:alias/build\" is in us-east-1, \
                   but it is used in eu-west-1; KMS keys are regional, give a key of eu-west-1"],
            )
            .err(json!("alias/mine"), &[KMS_KEY_WITHOUT_ENCRYPT])
            .err_with(
                json!("my key"),
                json!({"encrypt_boot": true}),
                &[&format!("kms_key_id: \"my key\" is not a valid KMS Key Id {KMS_KEY_FORMS}")],
            )
            .err_with(
                json!("arn:aws:kms:us-east-1:12345:key/abc"),
                json!({"encrypt_boot": true}),
                &[&format!("kms_key_id: \"arn:aws:kms:us-east-1:12345:key/abc\" is not a valid KMS Key Id {KMS_KEY_FORMS}")],
            )
            .err(json!(["alias/mine"]), &["kms_key_id: expected a string, got a list"]),
        row("region_kms_key_ids")
            .default("{}")
            .ok_with(
                json!({"eu-west-1": "alias/eu", "us-west-2": "alias/us"}),
                json!({"encrypt_boot": true, "ami_regions": ["eu-west-1", "us-west-2"]}),
                "{\"eu-west-1\": \"alias/eu\", \"us-west-2\": \"alias/us\"}",
            )
            // An empty key means the region's default key: fine unless shared.
            .ok_with(
                json!({"eu-west-1": ""}),
                json!({"encrypt_boot": true, "ami_regions": ["eu-west-1"]}),
                "{\"eu-west-1\": \"\"}",
            )
            .ok_with(
                json!({"eu-west-1": "arn:aws:kms:eu-west-1:123456789012:key/1234abcd"}),
                json!({"encrypt_boot": true, "ami_regions": ["eu-west-1"]}),
                "{\"eu-west-1\": \"arn:aws:kms:eu-west-1:123456789012:key/1234abcd\"}",
            )
            .err_with(
                json!({"eu-west-1": "arn:aws:kms:us-east-1:123456789012:key/1234abcd"}),
                json!({"encrypt_boot": true, "ami_regions": ["eu-west-1"]}),
                &["region_kms_key_ids: the KMS key \"arn:aws:kms:us-east-1:123456789012:key/1234abcd\" is in \
                   us-east-1, but it is used in eu-west-1; KMS keys are regional, give a key of eu-west-1"],
            )
            .err(json!("alias/eu"), &["region_kms_key_ids: expected a map of strings, got the string \"alias/eu\""])
            .err_with(
                json!({"eu-west-1": "alias/a", "us-west-2": "alias/b"}),
                json!({"encrypt_boot": true, "ami_regions": ["eu-west-1"]}),
                &["Region us-west-2 is in region_kms_key_ids but not in ami_regions"],
            )
            .err_with(
                json!({"eu-west-1": "alias/eu"}),
                json!({"ami_regions": ["eu-west-1"]}),
                &[KMS_KEY_WITHOUT_ENCRYPT],
            )
            .err_with(
                json!({"eu-west-1": "bad key"}),
                json!({"encrypt_boot": true, "ami_regions": ["eu-west-1"]}),
                &[&format!("region_kms_key_ids: \"bad key\" is not a valid KMS Key Id {KMS_KEY_FORMS}")],
            )
            .err_with(
                json!({"eu-west-1": ""}),
                json!({"encrypt_boot": true, "ami_regions": ["eu-west-1"], "ami_users": ["123456789012"]}),
                &["Cannot share AMI encrypted with default KMS key for other regions: region_kms_key_ids gives \
                   no key for [\"eu-west-1\"], and ami_users, ami_org_arns or ami_ou_arns share the AMI; give a \
                   customer managed key for every region"],
            )
            .err_with(
                json!({"eu-west-1": ""}),
                json!({"encrypt_boot": true, "ami_regions": ["eu-west-1"], "snapshot_users": ["123456789012"]}),
                &["Cannot share snapshot encrypted with default KMS key: region_kms_key_ids gives no key for \
                   [\"eu-west-1\"], and snapshot_users share the snapshots; give a customer managed key for every region"],
            ),
        row("skip_save_build_region")
            .default("false")
            .ok_with(json!(true), json!({"region": "us-east-1", "ami_regions": ["eu-west-1"]}), "true")
            .err(json!("no"), &["skip_save_build_region: expected a boolean (true or false), got the string \"no\""])
            .err(
                json!(true),
                &["skip_save_build_region needs at least one ami_regions entry other than the build region, \
                   or no AMI would be kept"],
            )
            .err_with(
                json!(true),
                json!({"region": "us-east-1", "ami_regions": ["us-east-1"]}),
                &["skip_save_build_region needs at least one ami_regions entry other than the build region, \
                   or no AMI would be kept"],
            ),
        row("snapshot_copy_duration_minutes")
            .default("0")
            .ok(json!(15), "15")
            .ok(json!(30), "30")
            .ok(json!(2880), "2880")
            .ok(json!(0), "0")
            .err(
                json!(20),
                &["snapshot_copy_duration_minutes must be 0 or a multiple of 15 (at least 15); got 20"],
            )
            .err(
                json!(-15),
                &["snapshot_copy_duration_minutes must be 0 or a multiple of 15 (at least 15); got -15"],
            )
            .err(
                json!(2895),
                &["snapshot_copy_duration_minutes must be at most 2880 (48 hours, EC2's limit for a time-based copy); got 2895"],
            )
            .err(
                json!("an hour"),
                &["snapshot_copy_duration_minutes: expected a whole number, got the string \"an hour\""],
            ),
        row("imds_support")
            .default("\"\"")
            .ok(json!("v2.0"), "\"v2.0\"")
            .err(
                json!("v3.0"),
                &["The only valid imds_support values are \"v2.0\" or the empty string; got \"v3.0\""],
            )
            .err(json!(["v2.0"]), &["imds_support: expected a string, got a list"]),
        row("deprecate_at")
            .default("\"\"")
            .ok(json!("2030-01-02T15:04:05Z"), "\"2030-01-02T15:04:05Z\"")
            .err(
                json!("2030-01-02"),
                &["deprecate_at is not a valid time: \"2030-01-02\". Expect time format: YYYY-MM-DDTHH:MM:SSZ"],
            )
            .err(
                json!("2030-02-30T00:00:00Z"),
                &["deprecate_at is not a valid time: \"2030-02-30T00:00:00Z\". Expect time format: YYYY-MM-DDTHH:MM:SSZ"],
            )
            .err(json!(20300102), &["deprecate_at is not a valid time: \"20300102\". Expect time format: YYYY-MM-DDTHH:MM:SSZ"]),
        row("deregistration_protection")
            .default("DeregistrationProtection { enabled: false, with_cooldown: false }")
            .ok(json!({"enabled": true}), "DeregistrationProtection { enabled: true, with_cooldown: false }")
            .err(
                json!(true),
                &["deregistration_protection: expected a block (an object), got the boolean true"],
            )
            .err(
                json!({"enable": true}),
                &["unknown configuration key: '\"deregistration_protection.enable\"'; did you mean \"enabled\"?"],
            ),
        row("deregistration_protection.enabled")
            .default("false")
            .ok(json!(true), "true")
            .err(
                json!("yes"),
                &["deregistration_protection.enabled: expected a boolean (true or false), got the string \"yes\""],
            ),
        row("deregistration_protection.with_cooldown")
            .default("false")
            .ok(json!(true), "true")
            .ok(json!(true), "true")
            .seen_at("deregistration_protection.enabled")
            .err(
                json!("24h"),
                &["deregistration_protection.with_cooldown: expected a boolean (true or false), got the string \"24h\""],
            ),
    ]
}

fn snapshot_rows() -> Vec<Row> {
    vec![
        row("snapshot_tags")
            .default("{}")
            .err(
                json!({"": "x"}),
                &["snapshot_tags has an empty key: AWS refuses a tag without a key"],
            )
            .ok(
                json!({"Name": "{{.SourceAMI}}"}),
                "{\"Name\": \"{{.SourceAMI}}\"}",
            )
            .err(
                json!(true),
                &["snapshot_tags: expected a map of strings, got the boolean true"],
            )
            .err(
                json!({"Name": ["a"]}),
                &["snapshot_tags.Name: expected a string, got a list"],
            ),
        row("snapshot_users")
            .default("[]")
            .ok(json!(["123456789012"]), "[\"123456789012\"]")
            .ok_with(
                json!(["123456789012"]),
                json!({"encrypt_boot": true, "kms_key_id": "alias/shared"}),
                "[\"123456789012\"]",
            )
            .err(
                json!({"id": 1}),
                &["snapshot_users: expected a list, got an object"],
            )
            .err_with(
                json!(["123456789012"]),
                json!({"encrypt_boot": true}),
                &[SHARE_SNAPSHOT_DEFAULT_KEY],
            ),
        list_row("snapshot_groups", "all").err(
            json!(["everyone"]),
            &["The only group snapshot_groups may name is \"all\" (everyone); got \"everyone\""],
        ),
    ]
}

fn source_ami_filter_rows() -> Vec<Row> {
    // With source_ami unset, so that the filter is what selects the AMI.
    vec![
        row("source_ami_filter.filters")
            .base(json!({"source_ami": "", "source_ami_filter": {"owners": ["amazon"]}}))
            .default("{}")
            .ok(
                json!({"name": "debian-12-*", "architecture": "x86_64"}),
                "{\"architecture\": \"x86_64\", \"name\": \"debian-12-*\"}",
            )
            .ok(json!({"name": "{{build_name}}-*"}), "{\"name\": \"web-*\"}")
            .err(json!("name=debian"), &["source_ami_filter.filters: expected a map of strings, got the string \"name=debian\""])
            .err(json!({"name": ["a", "b"]}), &["source_ami_filter.filters.name: expected a string, got a list"]),
        row("source_ami_filter.owners")
            .base(json!({"source_ami": "", "source_ami_filter": {"filters": {"name": "debian-*"}}}))
            .default("[]")
            .warns(&["source_ami_filter has no owners: an image of any account may match; set owners \
                      (e.g. [\"amazon\"] or an account id)"])
            .ok(json!(["amazon", "123456789012"]), "[\"amazon\", \"123456789012\"]")
            .ok(json!("self,amazon"), "[\"self\", \"amazon\"]")
            .err(json!({"amazon": true}), &["source_ami_filter.owners: expected a list, got an object"]),
        row("source_ami_filter.most_recent")
            .base(json!({"source_ami": "", "source_ami_filter": {"owners": ["amazon"]}}))
            .default("false")
            .ok(json!(true), "true")
            .err(json!("newest"), &["source_ami_filter.most_recent: expected a boolean (true or false), got the string \"newest\""]),
        row("source_ami_filter.include_deprecated")
            .base(json!({"source_ami": "", "source_ami_filter": {"owners": ["amazon"]}}))
            .default("false")
            .ok(json!(true), "true")
            .err(json!([true]), &["source_ami_filter.include_deprecated: expected a boolean (true or false), got a list"]),
    ]
}

/// Rows of a secret: decoded like a string, observed by its text.
fn secret_row(path: &'static str, value: &str) -> Row {
    row(path)
        .default("\"\"")
        .ok(json!(value), &format!("{value:?}"))
        .err(
            json!({"value": value}),
            &[&format!("{path}: expected a string, got an object")],
        )
}

const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/packer";

fn access_rows() -> Vec<Row> {
    let both_keys = "`access_key` and `secret_key` must both be either set or not set.";
    let vault_and_keys =
        "If you have set vault_aws_engine, you must not set the access_key or secret_key.";
    vec![
        row("access_key")
            .default("\"\"")
            .ok_with(json!("AKIDEXAMPLE"), json!({"secret_key": "SECRET"}), "\"AKIDEXAMPLE\"")
            .err_with(json!(["AKIDEXAMPLE"]), json!({"secret_key": "SECRET"}), &["access_key: expected a string, got a list"])
            .err(json!("AKID"), &[both_keys])
            .err_with(
                json!("AKIDEXAMPLE"),
                json!({"secret_key": "SECRET", "vault_aws_engine": {"name": "packer"}}),
                &[vault_and_keys],
            ),
        row("assume_role")
            .default(
                "AssumeRole { role_arn: \"\", duration_seconds: 0, external_id: \"\", policy: \"\", policy_arns: [], \
                 session_name: \"\", tags: {}, transitive_tag_keys: [] }",
            )
            .ok(
                json!({"role_arn": ROLE_ARN, "session_name": "build"}),
                &format!(
                    "AssumeRole {{ role_arn: {ROLE_ARN:?}, duration_seconds: 0, external_id: \"\", policy: \"\", \
                     policy_arns: [], session_name: \"build\", tags: {{}}, transitive_tag_keys: [] }}"
                ),
            )
            .err(json!(ROLE_ARN), &[&format!("assume_role: expected a block (an object), got the string {ROLE_ARN:?}")])
            .err(
                json!({"role_arn": ROLE_ARN, "role": "x"}),
                &["unknown configuration key: '\"assume_role.role\"'"],
            ),
        string_row("custom_endpoint_ec2", "https://ec2.example.test"),
        string_row("shared_credentials_file", "/root/.aws/credentials"),
        bool_row("decode_authorization_messages"),
        bool_row("insecure_skip_tls_verify"),
        row("max_retries")
            .default("10")
            .ok(json!(3), "3")
            .ok(json!(0), "10")
            .ok(json!("5"), "5")
            .err(json!("many"), &["max_retries: expected a whole number, got the string \"many\""])
            .err(json!(-1), &["max_retries must not be negative; got -1"]),
        secret_row("mfa_code", "123456"),
        string_row("profile", "build"),
        string_row("region", "eu-west-1")
            .ok_with(
                json!("us-east-1"),
                json!({"ami_regions": ["us-east-1", "eu-west-1"]}),
                "[\"eu-west-1\"]",
            )
            // The AMI is not copied into the region it is built in.
            .seen_at("ami_regions")
            .err_with(
                json!("eu-west-1"),
                json!({"encrypt_boot": true, "kms_key_id": "arn:aws:kms:us-east-1:123456789012:alias/build"}),
                &["kms_key_id: the KMS key \"arn:aws:kms:us-east-1:123456789012:alias/build\" is in us-east-1, \
                   but it is used in eu-west-1; KMS keys are regional, give a key of eu-west-1"],
            ),
        row("secret_key")
            .default("\"\"")
            .ok_with(json!("SECRET"), json!({"access_key": "AKIDEXAMPLE"}), "\"SECRET\"")
            .err_with(
                json!("SECRET"),
                json!({"access_key": "AKIDEXAMPLE", "vault_aws_engine": {"name": "packer"}}),
                &[vault_and_keys],
            )
            .err_with(json!({}), json!({"access_key": "AKIDEXAMPLE"}), &["secret_key: expected a string, got an object"])
            .err(json!("SECRET"), &[both_keys]),
        bool_row("skip_metadata_api_check"),
        bool_row("skip_credential_validation"),
        secret_row("token", "session-token"),
        row("vault_aws_engine")
            .default("VaultAwsEngine { name: \"\", role_arn: \"\", ttl: \"\", engine_name: \"\" }")
            .ok(
                json!({"name": "packer", "ttl": "3600s"}),
                "VaultAwsEngine { name: \"packer\", role_arn: \"\", ttl: \"3600s\", engine_name: \"\" }",
            )
            .err(json!("packer"), &["vault_aws_engine: expected a block (an object), got the string \"packer\""])
            .err(
                json!({"nmae": "packer"}),
                &["unknown configuration key: '\"vault_aws_engine.nmae\"'; did you mean \"name\"?"],
            )
            .err_with(
                json!({"name": "r"}),
                json!({"access_key": "AKID", "secret_key": "s"}),
                &[vault_and_keys],
            ),
        row("aws_polling")
            .default("None")
            .ok(json!({"max_attempts": 60}), "Some(AwsPolling { max_attempts: 60, delay_seconds: 0 })")
            .ok(json!({}), "Some(AwsPolling { max_attempts: 0, delay_seconds: 0 })")
            .err(json!(60), &["aws_polling: expected a block (an object), got the number 60"])
            .err(json!({"delay": 5}), &["unknown configuration key: '\"aws_polling.delay\"'"]),
    ]
}

fn block_member_rows() -> Vec<Row> {
    let role = json!({"assume_role": {"role_arn": ROLE_ARN}});
    let vault = json!({"vault_aws_engine": {"name": "packer"}});
    vec![
        row("assume_role.role_arn")
            .base(json!({"assume_role": {"session_name": "s"}}))
            .required(&["assume_role.role_arn must be set when an assume_role block is given"])
            .ok(json!(ROLE_ARN), &format!("{ROLE_ARN:?}"))
            .err(
                json!(""),
                &["assume_role.role_arn must be set when an assume_role block is given"],
            )
            .err(
                json!([ROLE_ARN]),
                &["assume_role.role_arn: expected a string, got a list"],
            ),
        row("assume_role.duration_seconds")
            .base(role.clone())
            .default("0")
            .ok(json!(900), "900")
            .ok(json!(43200), "43200")
            .err(
                json!(899),
                &["assume_role.duration_seconds must be between 900 and 43200; got 899"],
            )
            .err(
                json!(43201),
                &["assume_role.duration_seconds must be between 900 and 43200; got 43201"],
            )
            .err(
                json!("1h"),
                &["assume_role.duration_seconds: expected a whole number, got the string \"1h\""],
            ),
        string_row("assume_role.external_id", "ext-123").base(role.clone()),
        string_row("assume_role.policy", "{\"Version\": \"2012-10-17\"}").base(role.clone()),
        list_row(
            "assume_role.policy_arns",
            "arn:aws:iam::aws:policy/ReadOnlyAccess",
        )
        .base(role.clone()),
        string_row("assume_role.session_name", "packer-build").base(role.clone()),
        row("assume_role.tags")
            .base(role.clone())
            .default("{}")
            .ok(json!({"Project": "web"}), "{\"Project\": \"web\"}")
            .err(
                json!("Project"),
                &["assume_role.tags: expected a map of strings, got the string \"Project\""],
            ),
        list_row("assume_role.transitive_tag_keys", "Project").base(role),
        string_row("vault_aws_engine.name", "packer")
            .base(json!({"vault_aws_engine": {"ttl": "900s"}})),
        string_row("vault_aws_engine.role_arn", ROLE_ARN).base(vault.clone()),
        string_row("vault_aws_engine.ttl", "3600s").base(vault.clone()),
        // "aws" when empty is applied where Vault is asked (src/aws/vault.rs);
        // the decoded value stays empty so that an empty block stays empty.
        string_row("vault_aws_engine.engine_name", "aws-prod").base(vault),
        row("aws_polling.max_attempts")
            .base(json!({"aws_polling": {}}))
            .default("0")
            .ok(json!(120), "120")
            .err(
                json!(-1),
                &["aws_polling.max_attempts must not be negative; got -1"],
            )
            .err(
                json!("lots"),
                &["aws_polling.max_attempts: expected a whole number, got the string \"lots\""],
            ),
        row("aws_polling.delay_seconds")
            .base(json!({"aws_polling": {}}))
            .default("0")
            .ok(json!(5), "5")
            .ok(json!(5.0), "5")
            .err(
                json!(-2),
                &["aws_polling.delay_seconds must not be negative; got -2"],
            )
            .err(
                json!(0.5),
                &["aws_polling.delay_seconds: expected a whole number, got the number 0.5"],
            ),
    ]
}

/// Rows of a repeatable `{key, value}` block (`tag`) and its members,
/// whose entries end up in `map` (`tags`), over the map's own.
fn tag_block_rows(block: &'static str, map: &'static str) -> Vec<Row> {
    let entry = |k: &str, v: &str| json!([{"key": k, "value": v}]);
    let no_key = format!("{block}[0].key must be set: AWS refuses a tag without a key");
    vec![
        row(block)
            .default("[]")
            .ok(entry("Name", "{{.SourceAMIName}}"), "{\"Name\": \"{{.SourceAMIName}}\"}")
            .seen_at(map)
            .ok_with(
                entry("Name", "block"),
                json!({ map: {"Name": "map", "Team": "ops"} }),
                "{\"Name\": \"block\", \"Team\": \"ops\"}",
            )
            .seen_at(map)
            .ok(json!({"key": "Name", "value": "one"}), "{\"Name\": \"one\"}")
            .seen_at(map)
            .err(json!("Name"), &[&format!("{block}: expected a list of blocks (objects), got the string \"Name\"")])
            // The map's own empty key is the map's problem; a block's is the block's.
            .err_with(
                entry("", "x"),
                json!({ map: {"": "y"} }),
                &[&format!("{block}[0].key must be set: AWS refuses a tag without a key")],
            )
            .err(
                json!([{"key": "Name", "valeu": "x"}]),
                &[&format!("unknown configuration key: '\"{block}[0].valeu\"'; did you mean \"value\"?")],
            ),
        row(format!("{block}.key"))
            .base(json!({ block: entry("Name", "web") }))
            .required(&[&no_key])
            .err(json!(""), &[&no_key])
            .ok(json!("Team"), "[\"Team\"]")
            .ok(json!("{{.BuildRegion}}"), "[\"{{.BuildRegion}}\"]")
            .err(json!(["Team"]), &[&format!("{block}[0].key: expected a string, got a list")])
            .err(
                json!("{{.Device}}"),
                &[&format!("{block}[0].key: invalid template: .Device is not available here {BUILD_INFO_FIELDS}")],
            ),
        row(format!("{block}.value"))
            .base(json!({ block: entry("Name", "web") }))
            .default("[\"\"]")
            .ok(json!("{{.SourceAMI}}"), "[\"{{.SourceAMI}}\"]")
            .ok(json!(42), "[\"42\"]")
            .err(json!({"a": 1}), &[&format!("{block}[0].value: expected a string, got an object")])
            .err(
                json!("{{.Command}}"),
                &[&format!("{block}[0].value: invalid template: .Command is not available here {BUILD_INFO_FIELDS}")],
            ),
    ]
}
