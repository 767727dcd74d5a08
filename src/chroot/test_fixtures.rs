//! Fixtures for the privileged tests of this layer: loop devices, file
//! systems, a busybox root file system, and guards that undo all of it even
//! when a test fails (they run on drop, also while unwinding).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs a setup command, panicking with its output when it fails.
pub fn sh(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A loop device over a sparse file, detached (partitions included) on drop.
pub struct LoopDevice {
    /// `/dev/loopN`.
    pub path: PathBuf,
    partitioned: bool,
    _backing: tempfile::TempDir,
}

impl LoopDevice {
    /// A `size_mib` device holding an ext4 file system: on the whole
    /// device, or with `partitioned` in partition 1 of an MBR table (the
    /// partition node `loopNp1` added with `partx`, as the kernel here does
    /// not scan loop devices).
    pub fn with_ext4(size_mib: u64, partitioned: bool) -> Self {
        let backing = tempfile::tempdir().unwrap();
        let image = backing.path().join("disk.img");
        let f = std::fs::File::create(&image).unwrap();
        f.set_len(size_mib << 20).unwrap();
        drop(f);
        if partitioned {
            sh(Command::new("parted").args(["-s"]).arg(&image).args([
                "mklabel", "msdos", "mkpart", "primary", "ext4", "1MiB", "100%",
            ]));
        }
        let path = PathBuf::from(sh(Command::new("losetup")
            .args(["-f", "--show"])
            .arg(&image)));
        let dev = Self {
            path,
            partitioned,
            _backing: backing,
        };
        let fs_on = if partitioned {
            sh(Command::new("partx").args(["-a"]).arg(&dev.path));
            let part = dev.partition1();
            // udev may take a moment; partx creates the node synchronously
            // on most systems, but wait briefly to be safe.
            for _ in 0..50 {
                if part.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            part
        } else {
            dev.path.clone()
        };
        sh(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&fs_on));
        dev
    }

    /// `/dev/loopNp1`.
    pub fn partition1(&self) -> PathBuf {
        PathBuf::from(format!("{}p1", self.path.display()))
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        if self.partitioned {
            let _ = Command::new("partx").arg("-d").arg(&self.path).output();
        }
        let _ = Command::new("losetup").arg("-d").arg(&self.path).output();
    }
}

/// Unmounts everything at or below a directory on drop (lazily if busy),
/// so a failed test leaves no mount behind.
pub struct MountGuard(pub PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
            return;
        };
        let mut mine: Vec<PathBuf> = text
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(PathBuf::from)
            .filter(|m| m.starts_with(&self.0))
            .collect();
        mine.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
        for m in mine {
            let ok = Command::new("umount")
                .arg(&m)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                let _ = Command::new("umount").arg("-l").arg(&m).status();
            }
        }
    }
}

/// Makes `root` a minimal root file system: a static busybox with its
/// applets linked in `/bin`, `/dev/null`, `/etc`, `/tmp` and `/root`.
pub fn busybox_rootfs(root: &Path) {
    for d in ["bin", "dev", "etc", "tmp", "root"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    // A test thread forking at the moment the copy was open for writing
    // holds that descriptor until its child execs: exec then fails with
    // ETXTBSY ("Text file busy") for a moment.
    for attempt in 0.. {
        let out = Command::new("chroot")
            .arg(root)
            .args(["/bin/busybox", "--install", "-s", "/bin"])
            .output()
            .unwrap();
        if out.status.success() {
            break;
        }
        let busy = String::from_utf8_lossy(&out.stderr).contains("Text file busy");
        assert!(busy && attempt < 100, "busybox --install failed: {out:?}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The shell redirects background jobs' stdin from /dev/null.
    sh(Command::new("mknod")
        .arg(root.join("dev/null"))
        .args(["c", "1", "3"]));
}
