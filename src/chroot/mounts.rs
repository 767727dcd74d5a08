//! The chroot's mounts: the root volume and the `chroot_mounts`, unmounted
//! in reverse order with processes still inside the chroot terminated.
//!
//! Upstream ran one `umount` per mount, gave up on the first failure
//! (leaving the rest mounted, so detach and delete failed too) and never
//! removed the mount directory. Here every unmount is attempted, a busy
//! mount gets its processes terminated and is retried, and every failure
//! is reported.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio_util::sync::CancellationToken;

use super::confine::{resolve_in_root, ConfineError, FinalSymlink};
use super::host_shell::{shell_quote, HostCommandError, HostShell};

/// One entry of `chroot_mounts`: `[fstype, source, dest]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraMount {
    /// Filesystem type, or `bind` for a bind mount.
    pub fstype: String,
    /// What to mount (a device, a pseudo-fs name, or a host path for `bind`).
    pub source: String,
    /// Where, as a path inside the chroot.
    pub dest: String,
}

impl ExtraMount {
    /// Builds an entry from the `[fstype, source, dest]` list of the config.
    pub fn from_list(entry: &[String]) -> Result<Self, MountError> {
        match entry {
            [fstype, source, dest] => Ok(Self {
                fstype: fstype.clone(),
                source: source.clone(),
                dest: dest.clone(),
            }),
            _ => Err(MountError::BadExtraMount(entry.to_vec())),
        }
    }

    /// Upstream's default `chroot_mounts`, used when the option is unset or empty.
    pub fn defaults() -> Vec<Self> {
        [
            ["proc", "proc", "/proc"],
            ["sysfs", "sysfs", "/sys"],
            ["bind", "/dev", "/dev"],
            ["devpts", "devpts", "/dev/pts"],
            ["binfmt_misc", "binfmt_misc", "/proc/sys/fs/binfmt_misc"],
        ]
        .into_iter()
        .map(|[t, s, d]| Self {
            fstype: t.into(),
            source: s.into(),
            dest: d.into(),
        })
        .collect()
    }
}

/// How busy mounts are handled at unmount.
#[derive(Debug, Clone)]
pub struct BusyPolicy {
    /// Attempts per mount point (at least one).
    pub attempts: u32,
    /// Pause between attempts when no process was found (the kernel may
    /// still be releasing references of processes that just exited).
    pub retry_delay: Duration,
    /// Terminate processes whose root, cwd, executable or open files are in
    /// the chroot before retrying.
    pub terminate_processes: bool,
    /// How long a process gets after SIGTERM before SIGKILL.
    pub term_grace: Duration,
}

impl Default for BusyPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            retry_delay: Duration::from_millis(500),
            terminate_processes: true,
            // Daemons (gpg-agent, dbus) left by provisioners exit well within
            // this; anything slower is killed.
            term_grace: Duration::from_secs(5),
        }
    }
}

/// A process found using a path inside the chroot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Its pid.
    pub pid: i32,
    /// Its command name (`/proc/<pid>/comm`).
    pub comm: String,
}

impl std::fmt::Display for ProcessInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} ({})", self.pid, self.comm)
    }
}

fn list(procs: &[ProcessInfo]) -> String {
    procs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Errors while mounting.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// A `chroot_mounts` entry without exactly three elements.
    #[error("Each chroot_mounts entry should be three elements, got {0:?}")]
    BadExtraMount(Vec<String>),
    /// The mount directory could not be made.
    #[error("cannot create mount directory {path:?}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Something is already mounted at the mount path.
    #[error("{0:?} is already a mount point (a leftover of an earlier build? unmount it first)")]
    AlreadyMounted(PathBuf),
    /// The root volume's mount failed.
    #[error("Error mounting root volume {device:?} on {path:?}: {source}. Check mount_partition (\"0\" mounts the whole device) and that this host's kernel supports the volume's filesystem; an XFS volume made from the same AMI as this host has a duplicate UUID: add \"nouuid\" to mount_options.")]
    Root {
        /// The device (partition).
        device: PathBuf,
        /// The mount path.
        path: PathBuf,
        /// The failed command.
        source: Box<HostCommandError>,
    },
    /// An extra mount failed.
    #[error("Error mounting {fstype} {source_path:?} on {dest:?}: {source}")]
    Extra {
        /// The fstype.
        fstype: String,
        /// The source.
        source_path: String,
        /// The host path mounted on.
        dest: PathBuf,
        /// The failed command.
        source: Box<HostCommandError>,
    },
    /// A new mount could not be made private (kept from propagating).
    #[error("cannot make the mount on {path:?} private: {source}")]
    Private {
        /// The mount point.
        path: PathBuf,
        /// The failed command.
        source: Box<HostCommandError>,
    },
    /// An extra mount's destination leaves the chroot.
    #[error("chroot_mounts destination: {0}")]
    Confine(#[from] ConfineError),
    /// `/proc/self/mountinfo` could not be read.
    #[error("cannot read /proc/self/mountinfo: {0}")]
    Mountinfo(io::Error),
}

/// One failure while unmounting.
#[derive(Debug, thiserror::Error)]
pub enum UnmountError {
    /// Still busy after every attempt.
    #[error("cannot unmount {path:?}: {last}{}{}",
        if remaining.is_empty() { String::new() } else { format!("; processes still using it: {}", list(remaining)) },
        if terminated.is_empty() { String::new() } else { format!("; terminated: {}", list(terminated)) })]
    Busy {
        /// The mount point.
        path: PathBuf,
        /// Processes found using it at the last attempt.
        remaining: Vec<ProcessInfo>,
        /// Processes terminated on the way.
        terminated: Vec<ProcessInfo>,
        /// The last `umount` failure.
        last: HostCommandError,
    },
    /// The mount directory could not be removed after unmounting.
    #[error("cannot remove mount directory {path:?}: {source}")]
    RemoveDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// `/proc/self/mountinfo` could not be read.
    #[error("cannot read /proc/self/mountinfo: {0}")]
    Mountinfo(io::Error),
}

/// Every failure of an unmount pass (each mount was still attempted).
#[derive(Debug, thiserror::Error)]
#[error("{} unmount error(s): {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct UnmountErrors(pub Vec<UnmountError>);

/// What an unmount pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnmountReport {
    /// Mount points unmounted, in order.
    pub unmounted: Vec<PathBuf>,
    /// Processes terminated because they kept a mount busy (to tell the user).
    pub terminated: Vec<ProcessInfo>,
}

/// The mounts of one chroot, in the order they were made.
#[derive(Debug)]
pub struct ChrootMounts {
    shell: HostShell,
    root: PathBuf,
    created_root_dir: bool,
    /// Root first, then the extra mounts; unmounted from the end.
    mounted: Vec<PathBuf>,
    policy: BusyPolicy,
}

impl ChrootMounts {
    /// Mounts `device` on `mount_path` (made absolute, created if missing)
    /// with each of `options` as `-o`.
    pub async fn mount_root(
        shell: HostShell,
        device: &Path,
        mount_path: &Path,
        options: &[String],
        cancel: &CancellationToken,
    ) -> Result<Self, MountError> {
        let root = std::path::absolute(mount_path).map_err(|source| MountError::CreateDir {
            path: mount_path.to_path_buf(),
            source,
        })?;
        let created_root_dir = !tokio::fs::try_exists(&root).await.unwrap_or(false);
        tokio::fs::create_dir_all(&root)
            .await
            .map_err(|source| MountError::CreateDir {
                path: root.clone(),
                source,
            })?;
        let already = mount_points().map_err(MountError::Mountinfo)?;
        if already.iter().any(|m| m == &root) {
            return Err(MountError::AlreadyMounted(root));
        }
        let mut cmd = String::from("mount");
        for o in options {
            cmd.push_str(" -o ");
            cmd.push_str(&shell_quote(o));
        }
        cmd.push_str(&format!(
            " {} {}",
            shell_quote(&device.to_string_lossy()),
            shell_quote(&root.to_string_lossy())
        ));
        if let Err(source) = shell.run(&cmd, cancel).await {
            if created_root_dir {
                let _ = std::fs::remove_dir(&root);
            }
            return Err(MountError::Root {
                device: device.to_path_buf(),
                path: root,
                source: Box::new(source),
            });
        }
        tracing::info!(device = %device.display(), path = %root.display(), "root volume mounted");
        let mut mounts = Self {
            shell,
            mounted: vec![root.clone()],
            root,
            created_root_dir,
            policy: BusyPolicy::default(),
        };
        let root = mounts.root.clone();
        if let Err(source) = make_private(&mounts.shell, &root, cancel).await {
            let _ = mounts.unmount_all().await;
            return Err(MountError::Private {
                path: root,
                source: Box::new(source),
            });
        }
        Ok(mounts)
    }

    /// Replaces the busy-mount policy used by [`ChrootMounts::unmount_all`].
    pub fn set_busy_policy(&mut self, policy: BusyPolicy) {
        self.policy = policy;
    }

    /// The chroot root (absolute mount path).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Host paths currently mounted by this chroot, in mount order.
    pub fn mounted(&self) -> &[PathBuf] {
        &self.mounted
    }

    /// Mounts each entry inside the chroot (creating its directory), in
    /// order. Stops at the first failure; what was mounted stays tracked.
    pub async fn mount_extra(
        &mut self,
        mounts: &[ExtraMount],
        cancel: &CancellationToken,
    ) -> Result<(), MountError> {
        for m in mounts {
            let dest = resolve_in_root(&self.root, Path::new(&m.dest), FinalSymlink::Follow)?;
            tokio::fs::create_dir_all(&dest)
                .await
                .map_err(|source| MountError::CreateDir {
                    path: dest.clone(),
                    source,
                })?;
            let kind = if m.fstype == "bind" {
                "--bind".to_string()
            } else {
                format!("-t {}", shell_quote(&m.fstype))
            };
            let cmd = format!(
                "mount {kind} {} {}",
                shell_quote(&m.source),
                shell_quote(&dest.to_string_lossy())
            );
            self.shell
                .run(&cmd, cancel)
                .await
                .map_err(|source| MountError::Extra {
                    fstype: m.fstype.clone(),
                    source_path: m.source.clone(),
                    dest: dest.clone(),
                    source: Box::new(source),
                })?;
            self.mounted.push(dest.clone());
            make_private(&self.shell, &dest, cancel)
                .await
                .map_err(|source| MountError::Private {
                    path: dest,
                    source: Box::new(source),
                })?;
        }
        Ok(())
    }

    /// Unmounts everything in reverse order: each tracked mount, after any
    /// untracked mount below it (a provisioner's own mounts), deepest
    /// first. Every mount is attempted even after a failure; the mount
    /// directory is removed if this created it and the root came off.
    /// Not cancellable: it is cleanup.
    pub async fn unmount_all(&mut self) -> Result<UnmountReport, UnmountErrors> {
        let mut report = UnmountReport::default();
        let mut errors = Vec::new();
        let mut failed: Vec<PathBuf> = Vec::new();
        while let Some(target) = self.mounted.pop() {
            let tracked = self.mounted.clone();
            // Untracked mounts below this one, deepest (and latest) first.
            match mounts_below(&target) {
                Ok(below) => {
                    let untracked: Vec<PathBuf> = below
                        .into_iter()
                        .filter(|m| m != &target && !tracked.contains(m) && !failed.contains(m))
                        .collect();
                    for m in untracked {
                        if !unmount_one(&self.shell, &m, &self.policy, &mut report, &mut errors)
                            .await
                        {
                            failed.push(m);
                        }
                    }
                }
                Err(e) => errors.push(UnmountError::Mountinfo(e)),
            }
            let ok =
                unmount_one(&self.shell, &target, &self.policy, &mut report, &mut errors).await;
            if !ok {
                failed.push(target.clone());
            }
            if ok && target == self.root && self.created_root_dir {
                if let Err(source) = std::fs::remove_dir(&self.root) {
                    errors.push(UnmountError::RemoveDir {
                        path: self.root.clone(),
                        source,
                    });
                } else {
                    self.created_root_dir = false;
                }
            }
        }
        if errors.is_empty() {
            Ok(report)
        } else {
            Err(UnmountErrors(errors))
        }
    }
}

impl Drop for ChrootMounts {
    /// Unmounting is async and may need to terminate processes, so it
    /// cannot happen here; a forgotten unmount is at least made visible
    /// ([`unmount_all_under`] recovers).
    fn drop(&mut self) {
        if !self.mounted.is_empty() {
            tracing::error!(root = %self.root.display(), mounts = ?self.mounted, "chroot mounts dropped while still mounted");
        }
    }
}

/// Takes a fresh mount out of any peer group. On systemd hosts every mount
/// is shared, and a bind of `/dev` joins the host's peer group: the
/// chroot's `/dev/pts` mount (and its unmount) would then propagate to the
/// host's `/dev`.
async fn make_private(
    shell: &HostShell,
    path: &Path,
    cancel: &CancellationToken,
) -> Result<(), HostCommandError> {
    let cmd = format!(
        "mount --make-private {}",
        shell_quote(&path.to_string_lossy())
    );
    shell.run(&cmd, cancel).await.map(|_| ())
}

/// Recovery: unmounts everything mounted at or below `mount_path` (per
/// `/proc/self/mountinfo`), deepest first, e.g. what a crashed build left.
/// Every mount is attempted; all failures are reported.
pub async fn unmount_all_under(
    shell: &HostShell,
    mount_path: &Path,
    policy: &BusyPolicy,
) -> Result<UnmountReport, UnmountErrors> {
    let mut report = UnmountReport::default();
    let mut errors = Vec::new();
    let path = std::path::absolute(mount_path).unwrap_or_else(|_| mount_path.to_path_buf());
    match mounts_below(&path) {
        Ok(all) => {
            for m in all {
                unmount_one(shell, &m, policy, &mut report, &mut errors).await;
            }
        }
        Err(e) => errors.push(UnmountError::Mountinfo(e)),
    }
    if errors.is_empty() {
        Ok(report)
    } else {
        Err(UnmountErrors(errors))
    }
}

/// Unmounts one mount point (one layer), terminating processes and
/// retrying while it is busy. Returns whether it came off.
async fn unmount_one(
    shell: &HostShell,
    target: &Path,
    policy: &BusyPolicy,
    report: &mut UnmountReport,
    errors: &mut Vec<UnmountError>,
) -> bool {
    let never = CancellationToken::new();
    let cmd = format!("umount {}", shell_quote(&target.to_string_lossy()));
    let mut terminated = Vec::new();
    let mut last = None;
    let mut remaining = Vec::new();
    for attempt in 1..=policy.attempts.max(1) {
        match shell.run(&cmd, &never).await {
            Ok(_) => {
                tracing::info!(path = %target.display(), "unmounted");
                report.unmounted.push(target.to_path_buf());
                report.terminated.extend(terminated);
                return true;
            }
            Err(e) => {
                // Someone else (or a lazy unmount) got there first.
                if mount_points().is_ok_and(|all| !all.iter().any(|m| m == target)) {
                    report.terminated.extend(terminated);
                    return true;
                }
                tracing::warn!(path = %target.display(), attempt, error = %e, "unmount failed");
                last = Some(e);
            }
        }
        let chroot_root = target.to_path_buf();
        remaining = tokio::task::spawn_blocking(move || processes_using(&chroot_root))
            .await
            .unwrap_or_default();
        if attempt == policy.attempts.max(1) {
            break;
        }
        if policy.terminate_processes && !remaining.is_empty() {
            terminate(shell, &remaining, policy.term_grace).await;
            terminated.append(&mut remaining);
        } else {
            tokio::time::sleep(policy.retry_delay).await;
        }
    }
    report.terminated.extend(terminated.iter().cloned());
    errors.push(UnmountError::Busy {
        path: target.to_path_buf(),
        remaining,
        terminated,
        // At least one attempt ran and failed to get here.
        last: last.expect("an unmount attempt failed"),
    });
    false
}

/// SIGTERM, then SIGKILL after `grace` for those still alive.
async fn terminate(shell: &HostShell, procs: &[ProcessInfo], grace: Duration) {
    for p in procs {
        tracing::warn!(pid = p.pid, comm = %p.comm, "terminating process still using the chroot");
        send(shell, p.pid, Signal::SIGTERM).await;
    }
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        let alive: Vec<&ProcessInfo> = procs.iter().filter(|p| is_alive(p.pid)).collect();
        if alive.is_empty() {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            for p in alive {
                tracing::warn!(pid = p.pid, comm = %p.comm, "killing process that ignored SIGTERM");
                send(shell, p.pid, Signal::SIGKILL).await;
            }
            // Give the kernel a moment to drop the dead processes' references.
            tokio::time::sleep(Duration::from_millis(200)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `sig`, through the command wrapper when this process may not
/// signal the target itself (a non-root Packer with a sudo wrapper).
async fn send(shell: &HostShell, pid: i32, sig: Signal) {
    match kill(Pid::from_raw(pid), sig) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(Errno::EPERM) => {
            let cmd = format!("kill -s {} {pid}", &sig.as_str()[3..]);
            if let Err(e) = shell.run(&cmd, &CancellationToken::new()).await {
                tracing::warn!(pid, error = %e, "cannot signal process");
            }
        }
        Err(e) => tracing::warn!(pid, error = %e, "cannot signal process"),
    }
}

/// Alive and not a zombie (a zombie holds no references to the mount).
fn is_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised comm, which may contain spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// Processes (other than this one) whose root, cwd, executable, an open
/// file or a mapped file is at or below `dir`.
pub fn processes_using(dir: &Path) -> Vec<ProcessInfo> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let base = entry.path();
        let inside = |link: PathBuf| std::fs::read_link(link).is_ok_and(|t| t.starts_with(dir));
        let mut uses = ["root", "cwd", "exe"].iter().any(|l| inside(base.join(l)));
        if !uses {
            if let Ok(fds) = std::fs::read_dir(base.join("fd")) {
                uses = fds.flatten().any(|fd| inside(fd.path()));
            }
        }
        if !uses {
            // Memory-mapped files (libraries of a process that left the
            // chroot but still runs its code) pin the mount too.
            if let Ok(maps) = std::fs::read_to_string(base.join("maps")) {
                uses = maps
                    .lines()
                    .filter_map(|l| l.split_whitespace().nth(5))
                    .any(|p| Path::new(p).starts_with(dir));
            }
        }
        if uses {
            let comm = std::fs::read_to_string(base.join("comm"))
                .map(|c| c.trim_end().to_string())
                .unwrap_or_else(|_| "?".into());
            out.push(ProcessInfo { pid, comm });
        }
    }
    out
}

/// Mount points of this mount namespace, in mountinfo order (oldest first).
pub fn mount_points() -> io::Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(parse_mountinfo(&text))
}

/// The mount points (field 5) of mountinfo text, unescaped.
fn parse_mountinfo(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_octal(p)))
        .collect()
}

/// Mounts at or below `dir`, deepest first and, at equal depth, latest first
/// (stacked mounts come off top layer first).
fn mounts_below(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let all = mount_points()?;
    let mut by_depth: BTreeMap<usize, Vec<PathBuf>> = BTreeMap::new();
    for m in all.into_iter().filter(|m| m.starts_with(dir)) {
        by_depth.entry(m.components().count()).or_default().push(m);
    }
    Ok(by_depth
        .into_values()
        .rev()
        .flat_map(|v| v.into_iter().rev())
        .collect())
}

/// Undoes the kernel's `\NNN` octal escapes (space, tab, newline, `\`).
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let digits = &b[i + 1..i + 4];
            if digits.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = digits
                    .iter()
                    .fold(0u16, |acc, d| acc * 8 + u16::from(d - b'0'));
                if let Ok(byte) = u8::try_from(v) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests;
