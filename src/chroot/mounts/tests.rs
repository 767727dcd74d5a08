//! Real mounts on loop devices (run as root).

use std::os::unix::fs::symlink;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::chroot::device::{AttachedDeviceQuery, FoundBy};
use crate::chroot::host_shell::{identity_wrapper, CommandWrapper};
use crate::chroot::test_fixtures::{busybox_rootfs, LoopDevice, MountGuard};

fn is_mounted(p: &Path) -> bool {
    mount_points().unwrap().iter().any(|m| m == p)
}

fn fast_policy() -> BusyPolicy {
    BusyPolicy {
        attempts: 3,
        retry_delay: Duration::from_millis(50),
        terminate_processes: true,
        term_grace: Duration::from_millis(500),
    }
}

fn tmpfs(dest: &str) -> ExtraMount {
    ExtraMount {
        fstype: "tmpfs".into(),
        source: "tmpfs".into(),
        dest: dest.into(),
    }
}

#[test]
fn extra_mounts_need_three_elements() {
    let ok = ExtraMount::from_list(&["bind".into(), "/dev".into(), "/dev".into()]).unwrap();
    assert_eq!(ok.fstype, "bind");
    let err = ExtraMount::from_list(&["proc".into(), "/proc".into()]).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Each chroot_mounts entry should be three elements, got ["proc", "/proc"]"#
    );
    assert_eq!(ExtraMount::defaults().len(), 5);
}

#[test]
fn parses_escaped_mount_points() {
    let text =
        "36 35 98:0 / /mnt/a\\040b rw - ext4 /dev/x rw\n37 35 98:0 / /plain rw - ext4 /dev/y rw\n";
    assert_eq!(
        parse_mountinfo(text),
        vec![PathBuf::from("/mnt/a b"), PathBuf::from("/plain")]
    );
}

/// The Nitro path end to end with a real block device: the volume's by-id
/// link (pointing at a loop device) is found, its `-part1` link mounted,
/// extra mounts made inside, and everything undone.
#[tokio::test]
async fn mounts_a_partition_found_by_volume_id_and_cleans_up() {
    let disk = LoopDevice::with_ext4(64, true);
    let dev = tempfile::tempdir().unwrap();
    let by_id = dev.path().join("disk/by-id");
    std::fs::create_dir_all(&by_id).unwrap();
    symlink(
        &disk.path,
        by_id.join("nvme-Amazon_Elastic_Block_Store_vol0123abcd"),
    )
    .unwrap();
    symlink(
        disk.partition1(),
        by_id.join("nvme-Amazon_Elastic_Block_Store_vol0123abcd-part1"),
    )
    .unwrap();
    let sys = tempfile::tempdir().unwrap();
    let query = AttachedDeviceQuery {
        dev_root: dev.path().to_path_buf(),
        sys_root: sys.path().to_path_buf(),
        volume_id: "vol-0123abcd".into(),
        api_name: "/dev/sdf".into(),
        nvme_device_path: None,
    };
    let never = CancellationToken::new();
    let found = query.wait(Duration::from_secs(2), &never).await.unwrap();
    assert_eq!(found.found_by, FoundBy::ById);

    let base = tempfile::tempdir().unwrap();
    let _guard = MountGuard(base.path().to_path_buf());
    let mount_path = base.path().join("packer-amazon-chroot-volumes/xvdf");
    let shell = HostShell::new(identity_wrapper());
    let mut mounts = ChrootMounts::mount_root(
        shell,
        &found.partition("1"),
        &mount_path,
        &["noatime".to_string()],
        &never,
    )
    .await
    .unwrap();
    assert!(is_mounted(&mount_path));
    let extras = vec![
        ExtraMount {
            fstype: "proc".into(),
            source: "proc".into(),
            dest: "/proc".into(),
        },
        ExtraMount {
            fstype: "bind".into(),
            source: "/dev".into(),
            dest: "/dev".into(),
        },
        tmpfs("/var/tmp"),
    ];
    mounts.mount_extra(&extras, &never).await.unwrap();
    assert!(mount_path.join("proc/self").exists());
    assert!(mount_path.join("dev/null").exists());
    assert!(is_mounted(&mount_path.join("var/tmp")));
    assert_eq!(mounts.mounted().len(), 4);

    let report = mounts.unmount_all().await.unwrap();
    assert_eq!(
        report.unmounted,
        vec![
            mount_path.join("var/tmp"),
            mount_path.join("dev"),
            mount_path.join("proc"),
            mount_path.clone()
        ]
    );
    assert!(
        !mount_path.exists(),
        "the mount directory it created was left behind"
    );
    assert!(mount_points()
        .unwrap()
        .iter()
        .all(|m| !m.starts_with(base.path())));
}

#[tokio::test]
async fn refuses_to_mount_over_an_existing_mount() {
    let disk = LoopDevice::with_ext4(32, false);
    let base = tempfile::tempdir().unwrap();
    let _guard = MountGuard(base.path().to_path_buf());
    let root = base.path().join("root");
    let never = CancellationToken::new();
    let shell = HostShell::new(identity_wrapper());
    let mut first = ChrootMounts::mount_root(shell.clone(), &disk.path, &root, &[], &never)
        .await
        .unwrap();
    let err = ChrootMounts::mount_root(shell, &disk.path, &root, &[], &never)
        .await
        .unwrap_err();
    assert!(matches!(err, MountError::AlreadyMounted(_)), "{err}");
    first.unmount_all().await.unwrap();
}

#[tokio::test]
async fn failed_root_mount_suggests_partition_filesystem_and_nouuid() {
    let base = tempfile::tempdir().unwrap();
    let _guard = MountGuard(base.path().to_path_buf());
    let root = base.path().join("root");
    // The kernel's refusal of a duplicate XFS UUID, as mount reports it.
    let wrapper: CommandWrapper = Arc::new(|c: &str| {
        if c.starts_with("mount ") {
            Ok("echo 'mount: wrong fs type, bad option, bad superblock' >&2; exit 32".into())
        } else {
            Ok(c.to_string())
        }
    });
    let err = ChrootMounts::mount_root(
        HostShell::new(wrapper),
        Path::new("/dev/xvdf1"),
        &root,
        &[],
        &CancellationToken::new(),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, MountError::Root { .. }), "{msg}");
    assert!(
        msg.starts_with("Error mounting root volume \"/dev/xvdf1\" on "),
        "{msg}"
    );
    assert!(
        msg.ends_with(
            "failed with exit code 32: mount: wrong fs type, bad option, bad superblock. Check \
             mount_partition (\"0\" mounts the whole device) and that this host's kernel \
             supports the volume's filesystem; an XFS volume made from the same AMI as this host \
             has a duplicate UUID: add \"nouuid\" to mount_options."
        ),
        "{msg}"
    );
    assert!(!root.exists(), "the mount directory it created is removed");
}

#[tokio::test]
async fn unmounts_in_reverse_order_even_after_a_failure() {
    let disk = LoopDevice::with_ext4(32, false);
    let base = tempfile::tempdir().unwrap();
    let _guard = MountGuard(base.path().to_path_buf());
    let root = base.path().join("root");
    let failing = format!("umount '{}'", root.join("mnt/b").display());
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let log2 = log.clone();
    // Records every host command and makes the unmount of /mnt/b fail, as
    // a mount the kernel refuses to release would.
    let wrapper: CommandWrapper = Arc::new(move |c: &str| {
        log2.lock().unwrap().push(c.to_string());
        if c == failing {
            Ok("echo 'umount: injected failure' >&2; exit 32".into())
        } else {
            Ok(c.to_string())
        }
    });
    let never = CancellationToken::new();
    let mut mounts =
        ChrootMounts::mount_root(HostShell::new(wrapper), &disk.path, &root, &[], &never)
            .await
            .unwrap();
    mounts.set_busy_policy(BusyPolicy {
        attempts: 2,
        ..fast_policy()
    });
    mounts
        .mount_extra(&[tmpfs("/mnt/a"), tmpfs("/mnt/b"), tmpfs("/mnt/c")], &never)
        .await
        .unwrap();
    log.lock().unwrap().clear();

    let errors = mounts.unmount_all().await.unwrap_err();
    let umounts: Vec<String> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.starts_with("umount"))
        .cloned()
        .collect();
    let q = |p: &str| format!("umount '{}'", root.join(p).display());
    let root_cmd = format!("umount '{}'", root.display());
    assert_eq!(
        umounts,
        vec![
            q("mnt/c"),
            q("mnt/b"),
            q("mnt/b"),
            q("mnt/a"),
            root_cmd.clone(),
            root_cmd
        ]
    );
    assert_eq!(errors.0.len(), 2, "{errors}");
    let msg = errors.to_string();
    assert!(
        msg.contains("mnt/b") && msg.contains("injected failure"),
        "{msg}"
    );
    assert!(!is_mounted(&root.join("mnt/a")));
    assert!(!is_mounted(&root.join("mnt/c")));
    assert!(is_mounted(&root.join("mnt/b")));
    assert!(
        is_mounted(&root),
        "root cannot come off while /mnt/b is mounted"
    );

    // Recovery takes off what is left, deepest first.
    let recovered = unmount_all_under(&HostShell::new(identity_wrapper()), &root, &fast_policy())
        .await
        .unwrap();
    assert_eq!(recovered.unmounted, vec![root.join("mnt/b"), root.clone()]);
    assert!(mount_points()
        .unwrap()
        .iter()
        .all(|m| !m.starts_with(base.path())));
}

/// Spawns `script` in the chroot and waits until it runs there.
async fn spawn_in_chroot(root: &Path, script: &str) -> tokio::process::Child {
    let child = tokio::process::Command::new("chroot")
        .arg(root)
        .args(["/bin/sh", "-c", script])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    for _ in 0..100 {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        let in_root = std::fs::read_link(format!("/proc/{pid}/root")).is_ok_and(|r| r == root);
        if in_root && exe.starts_with(root) {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "sleep" {
                return child;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("process {pid} never settled in the chroot");
}

#[tokio::test]
async fn terminates_processes_left_in_the_chroot_and_names_them() {
    let disk = LoopDevice::with_ext4(32, false);
    let base = tempfile::tempdir().unwrap();
    let _guard = MountGuard(base.path().to_path_buf());
    let root = base.path().join("root");
    let never = CancellationToken::new();
    let mut mounts = ChrootMounts::mount_root(
        HostShell::new(identity_wrapper()),
        &disk.path,
        &root,
        &[],
        &never,
    )
    .await
    .unwrap();
    mounts.set_busy_policy(fast_policy());
    busybox_rootfs(&root);
    let polite = spawn_in_chroot(&root, "exec sleep 600").await;
    // Ignores SIGTERM, so it must be killed.
    let stubborn = spawn_in_chroot(&root, "trap '' TERM; exec sleep 600").await;
    let pids = [polite.id().unwrap() as i32, stubborn.id().unwrap() as i32];

    let report = mounts.unmount_all().await.unwrap();
    let mut got: Vec<(i32, String)> = report
        .terminated
        .iter()
        .map(|p| (p.pid, p.comm.clone()))
        .collect();
    got.sort();
    let mut want: Vec<(i32, String)> = pids.iter().map(|&p| (p, "sleep".to_string())).collect();
    want.sort();
    assert_eq!(got, want);
    assert!(!is_mounted(&root));
    assert!(!root.exists());
}

#[tokio::test]
async fn busy_unmount_names_the_processes_it_could_not_end() {
    let disk = LoopDevice::with_ext4(32, false);
    let base = tempfile::tempdir().unwrap();
    let _guard = MountGuard(base.path().to_path_buf());
    let root = base.path().join("root");
    let never = CancellationToken::new();
    let mut mounts = ChrootMounts::mount_root(
        HostShell::new(identity_wrapper()),
        &disk.path,
        &root,
        &[],
        &never,
    )
    .await
    .unwrap();
    mounts.set_busy_policy(BusyPolicy {
        attempts: 2,
        terminate_processes: false,
        ..fast_policy()
    });
    busybox_rootfs(&root);
    let mut sitter = spawn_in_chroot(&root, "exec sleep 600").await;
    let pid = sitter.id().unwrap();

    let msg = mounts.unmount_all().await.unwrap_err().to_string();
    assert!(msg.contains(&format!("pid {pid} (sleep)")), "{msg}");
    assert!(msg.contains("busy"), "{msg}");
    sitter.kill().await.unwrap();
    sitter.wait().await.unwrap();
    unmount_all_under(&HostShell::new(identity_wrapper()), &root, &fast_policy())
        .await
        .unwrap();
}

/// On systemd hosts every mount is shared: without care, a bind of `/dev`
/// joins the host's peer group and the chroot's `/dev/pts` mount appears
/// on the host's `/dev/pts` too (and its unmount propagates back).
#[tokio::test]
async fn chroot_mounts_do_not_propagate_to_the_host() {
    let disk = LoopDevice::with_ext4(32, false);
    let base = tempfile::tempdir().unwrap();
    let _guard = MountGuard(base.path().to_path_buf());
    let b = base.path();
    crate::chroot::test_fixtures::sh(
        std::process::Command::new("mount")
            .args(["-t", "tmpfs", "tmpfs"])
            .arg(b),
    );
    crate::chroot::test_fixtures::sh(
        std::process::Command::new("mount")
            .arg("--make-shared")
            .arg(b),
    );
    let host_dev = b.join("hostdev");
    std::fs::create_dir_all(host_dev.join("pts")).unwrap();
    let root = b.join("root");
    let never = CancellationToken::new();
    let mut mounts = ChrootMounts::mount_root(
        HostShell::new(identity_wrapper()),
        &disk.path,
        &root,
        &[],
        &never,
    )
    .await
    .unwrap();
    let extras = vec![
        ExtraMount {
            fstype: "bind".into(),
            source: host_dev.display().to_string(),
            dest: "/dev".into(),
        },
        tmpfs("/dev/pts"),
    ];
    mounts.mount_extra(&extras, &never).await.unwrap();
    assert!(is_mounted(&root.join("dev/pts")));
    assert!(
        !is_mounted(&host_dev.join("pts")),
        "the chroot's mount showed up on the host"
    );
    mounts.unmount_all().await.unwrap();
    assert!(is_mounted(b), "the host's mount was taken down");
    assert!(mount_points()
        .unwrap()
        .iter()
        .all(|m| m == b || !m.starts_with(b)));
}
