//! `packer validate` by Debian's real Packer 1.6.6 with OUR plugin binary
//! (the amazon-chroot builder, not a test double), installed under a legacy
//! mono name in the template's directory. 1.6.6 has its own builtin
//! `amazon-chroot`, so ours is installed as `packer-builder-amazon-chroot-rs`
//! (template type `amazon-chroot-rs`). Prepare needs no AWS, so nothing
//! leaves the machine.

use std::path::PathBuf;
use std::process::{Command, Stdio};

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
