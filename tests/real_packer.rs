//! The example plugin against a real Packer: Debian's `packer` 1.6.6
//! (`apt-get install packer`, /usr/bin/packer), with the plugin installed
//! under the legacy mono name `packer-builder-wiretest` in the template's
//! directory (Packer 1.6 looks in the working directory). Uses `build`,
//! not only `validate`: a wrong handshake can make `validate` pass.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A build of the fake builder takes well under a second; this bounds a hang.
const BUILD_TIMEOUT: Duration = Duration::from_secs(60);

fn plugin_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("test_plugin");
    assert!(
        path.exists(),
        "{} missing: run `cargo test` (it builds the examples)",
        path.display()
    );
    path
}

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

/// A temp dir holding the plugin (as `packer-builder-wiretest`) and templates.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(plugin_binary(), dir.path().join("packer-builder-wiretest")).unwrap();
        std::fs::create_dir_all(dir.path().join("srcdir/sub")).unwrap();
        std::fs::write(dir.path().join("srcdir/a.txt"), "file a\n").unwrap();
        std::fs::write(dir.path().join("srcdir/sub/b.txt"), "file b\n").unwrap();
        Project { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path().join(name), text).unwrap();
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(packer());
        cmd.args(args)
            .current_dir(self.path())
            .env("CHECKPOINT_DISABLE", "1")
            .env("PACKER_CACHE_DIR", self.path().join("cache"))
            .env("PACKER_NO_COLOR", "1")
            .env("TMPDIR", self.path())
            .env_remove("PACKER_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Own process group, so a Ctrl-C can be sent to all of it and
            // the guard can kill everything.
            .process_group(0);
        cmd
    }

    /// Runs packer to completion; returns (success, stdout+stderr).
    fn run(&self, args: &[&str]) -> (bool, String) {
        self.run_command(self.command(args))
    }

    /// Runs packer with its debug log in `packer.log`; returns (success,
    /// stdout+stderr, log).
    fn run_logged(&self, args: &[&str]) -> (bool, String, String) {
        let log = self.path().join("packer.log");
        let mut cmd = self.command(args);
        cmd.env("PACKER_LOG", "1").env("PACKER_LOG_PATH", &log);
        let (ok, out) = self.run_command(cmd);
        (ok, out, std::fs::read_to_string(log).unwrap_or_default())
    }

    fn run_command(&self, mut cmd: Command) -> (bool, String) {
        let child = cmd.spawn().unwrap();
        let guard = GroupGuard(child.id() as i32);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = rx
            .recv_timeout(BUILD_TIMEOUT)
            .expect("packer did not finish in time")
            .unwrap();
        drop(guard);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }
}

/// Kills a process group (packer and the plugins it started) when dropped.
struct GroupGuard(i32);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0)])
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn json_template_build_runs_shell_and_file_provisioners() {
    let p = Project::new();
    let d = p.path().display();
    p.write(
        "t.json",
        &format!(
            r#"{{
  "variables": {{"who": "world"}},
  "builders": [{{"type": "wiretest", "greeting": "hi {{{{user `who`}}}}", "count": 3, "tags": {{"a": "b"}}}}],
  "provisioners": [
    {{"type": "shell", "remote_folder": "{d}",
      "inline": ["echo out-line", "echo err-line >&2", "echo var={{{{build `WireTestVar`}}}}"]}},
    {{"type": "shell", "remote_folder": "{d}", "inline": ["exit 3"], "valid_exit_codes": [3]}},
    {{"type": "file", "source": "srcdir/a.txt", "destination": "{d}/up/a.txt"}},
    {{"type": "file", "source": "srcdir", "destination": "{d}/updir"}},
    {{"type": "file", "direction": "download", "source": "{d}/up/a.txt", "destination": "{d}/down.txt"}}
  ],
  "post-processors": [{{"type": "shell-local", "inline": ["echo post-processor-ran"]}}]
}}"#
        ),
    );
    let (ok, out, log) = p.run_logged(&["build", "t.json"]);
    assert!(ok, "{out}");
    // Go's yamux logs any frame it did not expect (late window updates,
    // double FINs, unacknowledged streams).
    let yamux: Vec<_> = log.lines().filter(|l| l.contains("yamux")).collect();
    assert!(
        yamux.is_empty(),
        "yamux complaints in Packer's log: {yamux:#?}"
    );
    assert!(log.contains("wiretest"), "no plugin log in Packer's log");
    for line in [
        "wiretest warning",
        "wiretest: wiretest: starting",
        "wiretest: wiretest: kind Json",
        r#"wiretest: wiretest: config {"count":3.0,"greeting":"hi {{user `who`}}","tags":{"a":"b"}}"#,
        "wiretest: out-line",
        "wiretest: err-line",
        "wiretest: var=wiretest-value",
        "wiretest: wiretest: done",
        "post-processor-ran",
        "--> wiretest: wiretest artifact",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    let d = p.path();
    assert_eq!(
        std::fs::read_to_string(d.join("up/a.txt")).unwrap(),
        "file a\n"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("updir/srcdir/sub/b.txt")).unwrap(),
        "file b\n"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("down.txt")).unwrap(),
        "file a\n"
    );
}

#[test]
fn large_files_and_output_cross_the_flow_control_windows() {
    let p = Project::new();
    let d = p.path().display();
    // Several yamux windows (256 KiB) worth of data each way.
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(p.path().join("big.bin"), &big).unwrap();
    // 3000 lines of ~130 bytes: more than one window of stdout. (Packer
    // 1.6.6 itself needs ~1 ms per printed line, so not many more.)
    let pad = "x".repeat(120);
    p.write(
        "t.json",
        &format!(
            r#"{{"builders": [{{"type": "wiretest"}}],
  "provisioners": [
    {{"type": "file", "source": "big.bin", "destination": "{d}/big-up.bin"}},
    {{"type": "file", "direction": "download", "source": "{d}/big-up.bin", "destination": "{d}/big-down.bin"}},
    {{"type": "shell", "remote_folder": "{d}", "inline": ["seq 1 3000 | sed 's/$/ {pad}/'"]}}
  ]}}"#
        ),
    );
    let (ok, out) = p.run(&["build", "t.json"]);
    assert!(ok, "{out}");
    assert!(
        std::fs::read(p.path().join("big-up.bin")).unwrap() == big,
        "upload corrupted"
    );
    assert!(
        std::fs::read(p.path().join("big-down.bin")).unwrap() == big,
        "download corrupted"
    );
    let lines = out.lines().filter(|l| l.ends_with(&pad)).count();
    assert_eq!(lines, 3000, "stdout lines lost");
    for n in [1, 1500, 3000] {
        let want = format!("wiretest: {n} {pad}");
        assert!(
            out.lines().any(|l| l.ends_with(&want)),
            "line {n} of stdout missing"
        );
    }
}

#[test]
fn json_template_build_fails_on_a_failing_command() {
    let p = Project::new();
    let d = p.path().display();
    p.write(
        "t.json",
        &format!(
            r#"{{"builders": [{{"type": "wiretest"}}],
  "provisioners": [{{"type": "shell", "remote_folder": "{d}", "inline": ["echo before", "exit 7", "echo after"]}}]}}"#
        ),
    );
    let (ok, out) = p.run(&["build", "t.json"]);
    assert!(!ok, "{out}");
    assert!(out.contains("wiretest: before"), "{out}");
    assert!(!out.contains("wiretest: after"), "{out}");
    assert!(out.contains("non-zero exit status: 7"), "{out}");
}

#[test]
fn hcl2_build_uses_the_gob_config_spec_and_generated_vars() {
    let p = Project::new();
    let d = p.path().display();
    p.write(
        "t.pkr.hcl",
        &format!(
            r#"
source "wiretest" "hcl" {{
  greeting = "hello"
  count    = 4
  tags     = {{ x = "y" }}
  disk {{ size = 10 }}
  disk {{ size = 20 }}
}}
build {{
  sources = ["source.wiretest.hcl"]
  provisioner "shell" {{
    remote_folder = "{d}"
    inline        = ["echo hcl-out", "echo gen=${{build.WireTestVar}}"]
  }}
  provisioner "file" {{
    source      = "srcdir/"
    destination = "{d}/hcl-updir"
  }}
}}
"#
        ),
    );
    let (ok, out) = p.run(&["build", "t.pkr.hcl"]);
    assert!(ok, "{out}");
    for line in [
        "wiretest.hcl: wiretest: kind Hcl2",
        r#"wiretest.hcl: wiretest: config {"count":4,"disk":[{"size":10},{"size":20}],"fail_run":null,"greeting":"hello","tags":{"x":"y"}}"#,
        "wiretest.hcl: wiretest: build_name=hcl builder_type=wiretest",
        "wiretest.hcl: hcl-out",
        "wiretest.hcl: gen=wiretest-value",
        "--> wiretest.hcl: wiretest artifact",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert_eq!(
        std::fs::read_to_string(p.path().join("hcl-updir/sub/b.txt")).unwrap(),
        "file b\n"
    );
}

#[test]
fn hcl2_build_reports_prepare_errors_and_spec_type_errors() {
    let p = Project::new();
    p.write("bad.pkr.hcl", "source \"wiretest\" \"x\" {\n  greeting = \"invalid\"\n}\nbuild { sources = [\"source.wiretest.x\"] }\n");
    let (ok, out) = p.run(&["build", "bad.pkr.hcl"]);
    assert!(!ok, "{out}");
    assert!(out.contains("greeting must not be \"invalid\""), "{out}");
    assert!(out.contains("second problem"), "{out}");
    // Packer checks attributes against our spec before Prepare.
    p.write("unknown.pkr.hcl", "source \"wiretest\" \"x\" {\n  no_such_option = 1\n}\nbuild { sources = [\"source.wiretest.x\"] }\n");
    let (ok, out) = p.run(&["build", "unknown.pkr.hcl"]);
    assert!(!ok, "{out}");
    assert!(out.contains("no_such_option"), "{out}");
}

#[test]
fn ctrl_c_cancels_a_running_provisioner_and_packer_exits() {
    // The provisioner ignores SIGINT (as many real commands in a chroot
    // do), so only the plugin's cancellation can stop it: Packer's
    // Builder.Cancel, the plugin's Hook.Cancel, the communicator's kill.
    let p = Project::new();
    let d = p.path().display();
    let marker = p.path().join("woke");
    p.write(
        "t.json",
        &format!(
            r#"{{"builders": [{{"type": "wiretest"}}],
  "provisioners": [{{"type": "shell", "remote_folder": "{d}",
    "inline": ["trap '' INT", "echo sleeping", "sleep 30", "touch {}"]}}]}}"#,
            marker.display()
        ),
    );
    let log = p.path().join("out.log");
    let packer_log = p.path().join("packer.log");
    let mut cmd = p.command(&["build", "t.json"]);
    cmd.env("PACKER_LOG", "1")
        .env("PACKER_LOG_PATH", &packer_log);
    let file = std::fs::File::create(&log).unwrap();
    cmd.stdout(file.try_clone().unwrap()).stderr(file);
    let mut child = cmd.spawn().unwrap();
    let group = GroupGuard(child.id() as i32);
    let deadline = Instant::now() + BUILD_TIMEOUT;
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("wiretest: sleeping")
    {
        assert!(
            Instant::now() < deadline,
            "{}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A terminal's Ctrl-C: SIGINT to the whole process group.
    let sent = Command::new("kill")
        .args(["-INT", "--", &format!("-{}", group.0)])
        .status()
        .unwrap();
    assert!(sent.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "packer did not stop after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "{out}");
    assert!(started.elapsed() < Duration::from_secs(10), "{out}");
    assert!(out.contains("wiretest: wiretest: cancelled"), "{out}");
    assert!(out.contains("wiretest: build cancelled"), "{out}");
    let packer_log = std::fs::read_to_string(&packer_log).unwrap();
    assert!(packer_log.contains("sending Hook.Cancel"), "{packer_log}");
    assert!(
        !marker.exists(),
        "the provisioner kept running after Ctrl-C"
    );
}
