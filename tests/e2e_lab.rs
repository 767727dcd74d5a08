//! End-to-end builds: Debian's packer 1.6.6 drives this crate's plugin
//! binary in the EC2 lab (plugin-tests/lab/tests/test_plugin_e2e*.py).
//! The scenarios live in pytest next to the lab they use; this test runs
//! them as part of `cargo test`, with the freshly built plugin.
//!
//! Needs root, /usr/bin/packer, busybox-static and the Python packages of
//! plugin-tests/lab/requirements.txt; a missing one FAILS the test (it never
//! skips): install them as .ci/run does.

use std::path::Path;
use std::process::Command;

#[test]
fn packer_builds_with_our_plugin_in_the_ec2_lab() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lab = root.join("plugin-tests/lab");
    let deps = Command::new("python3")
        .args(["-c", "import moto, boto3, pytest"])
        .output()
        .expect("python3 is needed for the EC2 lab");
    assert!(
        deps.status.success(),
        "the EC2 lab's Python packages are missing ({}): python3 -m pip install -r plugin-tests/lab/requirements.txt",
        String::from_utf8_lossy(&deps.stderr).trim()
    );
    let mut modules: Vec<String> = std::fs::read_dir(lab.join("tests"))
        .expect("reading plugin-tests/lab/tests")
        .map(|entry| entry.expect("a directory entry").file_name())
        .filter_map(|name| name.into_string().ok())
        .filter(|name| name.starts_with("test_plugin_e2e") && name.ends_with(".py"))
        .map(|name| format!("tests/{name}"))
        .collect();
    modules.sort();
    assert!(
        !modules.is_empty(),
        "no tests/test_plugin_e2e*.py in the lab"
    );
    let status = Command::new("python3")
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .args(&modules)
        .current_dir(&lab)
        .env(
            "PLUGIN_BIN",
            env!("CARGO_BIN_EXE_packer-plugin-amazon-chroot"),
        )
        .status()
        .expect("running pytest");
    assert!(
        status.success(),
        "end-to-end builds failed (pytest output above)"
    );
}
