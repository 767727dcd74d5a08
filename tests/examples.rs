//! Every template in `packer-examples/` is checked against the builder's
//! own option declarations, then validated by a real Packer.
//!
//! 1. HCL2 (`*.pkr.hcl`): parsed with hcl-rs; every `source "amazon-chroot"`
//!    block is checked against [`config_spec`] the way Packer's `hcldec`
//!    decodes it (unknown attribute or block, block written as an attribute,
//!    a single block given twice, a value not convertible to the declared
//!    cty type), then the decoded object goes through [`Config::from_prepare`]
//!    exactly as Packer hands it over, which applies the required options and
//!    every cross-option rule.
//! 2. JSON (`*.json`): every `amazon-chroot` builder goes through
//!    [`Config::from_prepare`] as a legacy JSON template (unknown keys, weak
//!    types, `{{user}}` with the template's variable defaults).
//! 3. `packer validate` by Debian's Packer 1.6.6 (`/usr/bin/packer`, or
//!    `$PACKER_BIN`) with the plugin binary installed under its legacy name
//!    `packer-builder-amazon-chroot` in the working directory, where 1.6
//!    looks (it then wins over 1.6's own builtin `amazon-chroot`). Packer 1.6
//!    has no `required_plugins`, so HCL2 examples are validated as copies
//!    without their top-level `packer {}` block
//!    (`scripts/packer16-template.py`, the same script `make demo` uses).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use amazon_chroot::builder::config::{config_spec, Config};
use amazon_chroot::plugin::api::{Map, PackerSettings, PrepareArgs, TemplateKind};
use amazon_chroot::plugin::spec::{CtyType, ObjectSpec, Spec};
use hcl::eval::{Context, Evaluate};
use serde_json::Value;

const BUILDER_TYPE: &str = "amazon-chroot";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under packer-examples/ whose name ends with `suffix`, sorted.
fn example_files(suffix: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, suffix: &str, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, suffix, out);
            } else if path.to_string_lossy().ends_with(suffix) {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo().join("packer-examples"), suffix, &mut out);
    out.sort();
    out
}

// ---------------------------------------------------------------- HCL2 ---

/// The checks of one HCL2 template: each amazon-chroot source's problems,
/// prefixed with its name. Empty when the template is right.
fn check_hcl_template(text: &str, root: &Path) -> Result<Vec<String>, String> {
    let body = hcl::parse(text).map_err(|e| format!("HCL parse error: {e}"))?;
    let ctx = eval_context(&body, root)?;
    let mut problems = Vec::new();
    let mut sources = 0;
    for block in body.blocks() {
        let labels: Vec<&str> = block.labels().iter().map(|l| l.as_str()).collect();
        if block.identifier() != "source" || labels.first() != Some(&BUILDER_TYPE) {
            continue;
        }
        sources += 1;
        let name = labels.get(1).copied().unwrap_or_default();
        let mut errors = Vec::new();
        let config = decode_body(block.body(), &config_spec(), "", &ctx, &mut errors);
        if errors.is_empty() {
            let args = PrepareArgs {
                kind: TemplateKind::Hcl2,
                config,
                packer: PackerSettings {
                    build_name: name.to_string(),
                    builder_type: BUILDER_TYPE.to_string(),
                    core_version: Some("1.11.2".to_string()),
                    ..Default::default()
                },
            };
            if let Err(e) = Config::from_prepare(&args) {
                errors.extend(e.0);
            }
        }
        problems.extend(errors.into_iter().map(|e| format!("source {name:?}: {e}")));
    }
    if sources == 0 {
        return Err(format!("no source \"{BUILDER_TYPE}\" block"));
    }
    Ok(problems)
}

/// `var.*` from the variables' defaults and `path.root`, as Packer would
/// evaluate the template with no `-var` given.
fn eval_context(body: &hcl::Body, root: &Path) -> Result<Context<'static>, String> {
    let mut vars = hcl::Map::new();
    let empty = Context::new();
    for block in body.blocks().filter(|b| b.identifier() == "variable") {
        let name = block.labels()[0].as_str().to_string();
        let default = block
            .body()
            .attributes()
            .find(|a| a.key() == "default")
            .ok_or_else(|| format!("variable {name:?} has no default"))?;
        let value = default
            .expr()
            .evaluate(&empty)
            .map_err(|e| format!("variable {name:?}: {e}"))?;
        vars.insert(name, value);
    }
    let mut path = hcl::Map::new();
    path.insert(
        "root".to_string(),
        hcl::Value::from(root.to_string_lossy().to_string()),
    );
    let mut ctx = Context::new();
    ctx.declare_var("var", hcl::Value::Object(vars));
    ctx.declare_var("path", hcl::Value::Object(path));
    Ok(ctx)
}

/// What Packer hands to Prepare for a body decoded with `spec`: every spec
/// entry present (unset attributes and blocks null, block lists empty),
/// values converted to their declared types. Problems go to `errors`.
fn decode_body(
    body: &hcl::Body,
    spec: &ObjectSpec,
    prefix: &str,
    ctx: &Context,
    errors: &mut Vec<String>,
) -> Map {
    let mut out = Map::new();
    for (name, entry) in &spec.0 {
        let empty = match entry {
            Spec::BlockList { .. } => Value::Array(Vec::new()),
            _ => Value::Null,
        };
        out.insert(name.clone(), empty);
    }
    for attr in body.attributes() {
        let path = format!("{prefix}{}", attr.key());
        match spec.0.get(attr.key()) {
            Some(Spec::Attr { ty, .. }) => match attr.expr().evaluate(ctx) {
                Ok(value) => match convert(&value, ty) {
                    Ok(v) => {
                        out.insert(attr.key().to_string(), v);
                    }
                    Err(e) => errors.push(format!("{path}: {e}")),
                },
                Err(e) => errors.push(format!("{path}: cannot evaluate: {e}")),
            },
            Some(_) => errors.push(format!(
                "{path}: is a block; write `{} {{ ... }}`, not `{} = ...`",
                attr.key(),
                attr.key()
            )),
            None => errors.push(format!("{path}: unsupported argument")),
        }
    }
    for block in body.blocks() {
        let path = format!("{prefix}{}", block.identifier());
        let inner = format!("{path}.");
        match spec.0.get(block.identifier()) {
            Some(Spec::Block { nested, .. }) => {
                let value = Value::Object(decode_body(block.body(), nested, &inner, ctx, errors));
                let slot = out.get_mut(block.identifier()).unwrap();
                if !slot.is_null() {
                    errors.push(format!("{path}: only one block of this type is allowed"));
                }
                *slot = value;
            }
            Some(Spec::BlockList { nested, .. }) => {
                let value = Value::Object(decode_body(block.body(), nested, &inner, ctx, errors));
                out.get_mut(block.identifier())
                    .and_then(Value::as_array_mut)
                    .unwrap()
                    .push(value);
            }
            Some(Spec::Attr { .. }) => errors.push(format!(
                "{path}: is an attribute; write `{} = ...`, not a block",
                block.identifier()
            )),
            None => errors.push(format!("{path}: unsupported block type")),
        }
    }
    out
}

/// cty's conversion of an HCL value to `ty` (what hcldec applies): numbers
/// and bools become strings, numeric strings numbers, "true"/"false" bools;
/// tuples become lists and objects maps when every element converts.
fn convert(value: &hcl::Value, ty: &CtyType) -> Result<Value, String> {
    use hcl::Value as H;
    let wrong = || Err(format!("{} is not a {}", describe(value), type_name(ty)));
    match (ty, value) {
        (_, H::Null) => Ok(Value::Null),
        (CtyType::String, H::String(s)) => Ok(Value::String(s.clone())),
        (CtyType::String, H::Number(n)) => Ok(Value::String(n.to_string())),
        (CtyType::String, H::Bool(b)) => Ok(Value::String(b.to_string())),
        (CtyType::Number, H::Number(n)) => Ok(serde_json::to_value(n).unwrap()),
        (CtyType::Number, H::String(s)) => match s.parse::<f64>() {
            Ok(_) => Ok(serde_json::from_str(s).map_err(|e| e.to_string())?),
            Err(_) => wrong(),
        },
        (CtyType::Bool, H::Bool(b)) => Ok(Value::Bool(*b)),
        (CtyType::Bool, H::String(s)) if s == "true" || s == "false" => {
            Ok(Value::Bool(s == "true"))
        }
        (CtyType::List(elem), H::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| convert(item, elem).map_err(|e| format!("element {i}: {e}")))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        (CtyType::Map(elem), H::Object(entries)) => entries
            .iter()
            .map(|(k, v)| {
                convert(v, elem)
                    .map(|v| (k.clone(), v))
                    .map_err(|e| format!("key {k:?}: {e}"))
            })
            .collect::<Result<Map, _>>()
            .map(Value::Object),
        _ => wrong(),
    }
}

fn describe(value: &hcl::Value) -> String {
    match value {
        hcl::Value::Null => "null".into(),
        hcl::Value::Bool(b) => format!("the bool {b}"),
        hcl::Value::Number(n) => format!("the number {n}"),
        hcl::Value::String(s) => format!("the string {s:?}"),
        hcl::Value::Array(_) => "a list".into(),
        hcl::Value::Object(_) => "an object".into(),
    }
}

fn type_name(ty: &CtyType) -> String {
    match ty {
        CtyType::String => "string".into(),
        CtyType::Number => "number".into(),
        CtyType::Bool => "bool".into(),
        CtyType::List(e) => format!("list({})", type_name(e)),
        CtyType::Map(e) => format!("map({})", type_name(e)),
    }
}

#[test]
fn every_hcl_example_matches_the_option_declarations() {
    let files = example_files(".pkr.hcl");
    assert!(
        files.len() >= 5,
        "expected the HCL2 examples, found {files:?}"
    );
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        match check_hcl_template(&text, file.parent().unwrap()) {
            Ok(problems) if problems.is_empty() => {}
            Ok(problems) => {
                failures.push(format!("{}:\n  {}", file.display(), problems.join("\n  ")))
            }
            Err(e) => failures.push(format!("{}: {e}", file.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A valid source body, to which the checker tests add one mistake.
const VALID_SOURCE: &str = r#"
variable "owner" {
  type    = string
  default = "self"
}
source "amazon-chroot" "t" {
  ami_name = "t-{{timestamp}}"
  source_ami_filter {
    filters     = { name = "base-*" }
    owners      = [var.owner]
    most_recent = true
  }
  mount_partition = 1
  EXTRA
}
"#;

fn check_with(extra: &str) -> Vec<String> {
    check_hcl_template(&VALID_SOURCE.replace("EXTRA", extra), Path::new("/")).unwrap()
}

#[test]
fn checker_accepts_the_valid_source_with_cty_conversions() {
    assert_eq!(check_with(""), Vec::<String>::new());
    assert_eq!(
        check_with("root_volume_size = \"12\""),
        Vec::<String>::new()
    );
}

#[test]
fn checker_rejects_an_unknown_attribute() {
    let problems = check_with("ami_nmae = \"x\"");
    assert!(
        problems
            .iter()
            .any(|p| p.contains("ami_nmae: unsupported argument")),
        "{problems:?}"
    );
}

#[test]
fn checker_rejects_an_unknown_block() {
    let problems = check_with("launch_block_device_mappings {\n device_name = \"/dev/sda1\"\n}");
    assert!(
        problems
            .iter()
            .any(|p| p.contains("launch_block_device_mappings: unsupported block type")),
        "{problems:?}"
    );
}

#[test]
fn checker_rejects_a_wrong_value_type() {
    let problems = check_with("root_volume_size = \"big\"");
    assert!(
        problems
            .iter()
            .any(|p| p.contains("root_volume_size: the string \"big\" is not a number")),
        "{problems:?}"
    );
    let problems = check_with("ami_regions = \"eu-west-1\"");
    assert!(
        problems
            .iter()
            .any(|p| p.contains("ami_regions: the string \"eu-west-1\" is not a list(string)")),
        "{problems:?}"
    );
}

#[test]
fn checker_rejects_a_block_written_as_an_attribute() {
    let problems = check_with("aws_polling = { max_attempts = 3 }");
    assert!(
        problems
            .iter()
            .any(|p| p.contains("aws_polling: is a block")),
        "{problems:?}"
    );
}

#[test]
fn checker_rejects_an_unknown_attribute_inside_a_block() {
    let problems = check_with("aws_polling {\n  max_tries = 3\n}");
    assert!(
        problems
            .iter()
            .any(|p| p.contains("aws_polling.max_tries: unsupported argument")),
        "{problems:?}"
    );
}

#[test]
fn checker_reports_a_missing_required_option() {
    let text = VALID_SOURCE
        .replace("EXTRA", "")
        .replace("ami_name = \"t-{{timestamp}}\"", "");
    let problems = check_hcl_template(&text, Path::new("/")).unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("ami_name must be specified")),
        "{problems:?}"
    );
}

#[test]
fn checker_reports_cross_option_rules_like_from_scratch_requirements() {
    let problems = check_with("from_scratch = true");
    assert!(
        problems.iter().any(|p| p.contains("pre_mount_commands")),
        "{problems:?}"
    );
}

// ---------------------------------------------------------------- JSON ---

/// Prepare's verdict on every amazon-chroot builder of a JSON template.
fn check_json_template(text: &str) -> Result<Vec<String>, String> {
    let template: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let user_variables: BTreeMap<String, String> = template
        .get("variables")
        .and_then(Value::as_object)
        .map(|vars| {
            vars.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let builders = template
        .get("builders")
        .and_then(Value::as_array)
        .ok_or("no builders")?;
    let mut problems = Vec::new();
    let mut found = 0;
    for builder in builders {
        let mut config = builder
            .as_object()
            .cloned()
            .ok_or("builder is not an object")?;
        if config.get("type").and_then(Value::as_str) != Some(BUILDER_TYPE) {
            continue;
        }
        found += 1;
        config.remove("type");
        let name = config
            .remove("name")
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| BUILDER_TYPE.to_string());
        let args = PrepareArgs {
            kind: TemplateKind::Json,
            config,
            packer: PackerSettings {
                build_name: name.clone(),
                builder_type: BUILDER_TYPE.to_string(),
                user_variables: user_variables.clone(),
                ..Default::default()
            },
        };
        if let Err(e) = Config::from_prepare(&args) {
            problems.extend(e.0.into_iter().map(|p| format!("builder {name:?}: {p}")));
        }
    }
    if found == 0 {
        return Err(format!("no {BUILDER_TYPE} builder"));
    }
    Ok(problems)
}

#[test]
fn every_json_example_passes_prepare() {
    let files = example_files(".json");
    assert!(!files.is_empty(), "expected a legacy JSON example");
    let mut failures = Vec::new();
    for file in &files {
        match check_json_template(&std::fs::read_to_string(file).unwrap()) {
            Ok(problems) if problems.is_empty() => {}
            Ok(problems) => {
                failures.push(format!("{}:\n  {}", file.display(), problems.join("\n  ")))
            }
            Err(e) => failures.push(format!("{}: {e}", file.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn json_checker_rejects_an_unknown_key_and_a_wrong_type() {
    let problems = check_json_template(
        r#"{"builders":[{"type":"amazon-chroot","ami_name":"x-{{timestamp}}","source_ami":"ami-1",
            "ami_nmae":"y","root_volume_size":"big"}]}"#,
    )
    .unwrap();
    assert!(
        problems.iter().any(|p| p.contains("ami_nmae")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("root_volume_size")),
        "{problems:?}"
    );
}

// ------------------------------------------------------ packer validate ---

fn packer() -> PathBuf {
    let path = std::env::var_os("PACKER_BIN")
        .map_or_else(|| PathBuf::from("/usr/bin/packer"), PathBuf::from);
    assert!(
        path.exists(),
        "{} missing: install Debian's packer (apt-get install packer)",
        path.display()
    );
    path
}

/// The example's directory copied to a temp dir (playbooks etc. with it),
/// the plugin installed as Packer 1.6's `packer-builder-amazon-chroot`.
fn packer16_project(example: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(example.parent().unwrap()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::copy(
        env!("CARGO_BIN_EXE_packer-plugin-amazon-chroot"),
        dir.path().join("packer-builder-amazon-chroot"),
    )
    .unwrap();
    dir
}

fn packer_validate(dir: &Path, template: &str) -> (bool, String) {
    let out = Command::new(packer())
        .args(["validate", template])
        .current_dir(dir)
        .env("CHECKPOINT_DISABLE", "1")
        .env("HOME", dir)
        .env("PACKER_CACHE_DIR", dir.join("cache"))
        .env("PACKER_NO_COLOR", "1")
        .env("TMPDIR", dir)
        .env_remove("PACKER_LOG")
        .env_remove("PACKER_PLUGIN_PATH")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn real_packer_validates_every_example() {
    let mut templates = example_files(".pkr.hcl");
    templates.extend(example_files(".json"));
    let mut failures = Vec::new();
    for example in &templates {
        let project = packer16_project(example);
        let name = example.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".pkr.hcl") {
            let status = Command::new(repo().join("scripts/packer16-template.py"))
                .arg(example)
                .arg(project.path().join(&name))
                .status()
                .unwrap();
            assert!(status.success());
            let copy = std::fs::read_to_string(project.path().join(&name)).unwrap();
            assert!(
                !copy.contains("required_plugins"),
                "packer block left in {name}"
            );
        }
        let (ok, output) = packer_validate(project.path(), &name);
        if !ok {
            failures.push(format!("{}:\n{output}", example.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "packer validate failed:\n{}",
        failures.join("\n")
    );
}

#[test]
fn real_packer_reports_our_prepare_errors_through_the_plugin() {
    // Proves the validation above ran our builder (and not Packer 1.6's
    // builtin amazon-chroot): the "did you mean" hint is ours.
    let example = repo().join("packer-examples/legacy_json/basic.json");
    let project = packer16_project(&example);
    let text = std::fs::read_to_string(project.path().join("basic.json"))
        .unwrap()
        .replace("\"root_volume_size\"", "\"root_volume_sise\"");
    std::fs::write(project.path().join("broken.json"), text).unwrap();
    let (ok, output) = packer_validate(project.path(), "broken.json");
    assert!(!ok, "packer validate accepted an unknown key:\n{output}");
    // Packer wraps long lines.
    let flat = output.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("root_volume_sise") && flat.contains("did you mean \"root_volume_size\""),
        "{output}"
    );
}
