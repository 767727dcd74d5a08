//! `copy_files`: host files (by default `/etc/resolv.conf`) copied into the
//! chroot for provisioning, and the image's originals put back exactly.
//!
//! Upstream ran `cp --remove-destination` and later `rm -f`, so an image
//! whose `/etc/resolv.conf` is systemd's symlink came out with no
//! resolv.conf at all. Here the original (file, symlink, dangling symlink)
//! is renamed aside in its own directory, which keeps its type, target,
//! mode, owner, times and content untouched, and renamed back over the copy
//! at cleanup, so there is never a moment without it.
//!
//! The directory of each copy is opened below the chroot root by the
//! kernel and kept open until the restore, which works through that
//! descriptor only: provisioners' background jobs are still running then,
//! and one replacing `/etc` with a symlink to the host's `/etc` must not
//! make the restore delete or rename the host's files.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, AtFlags, OFlag};
use nix::sys::stat::{fchmod, fstatat, mkdirat, Mode};
use nix::unistd::{unlinkat, UnlinkatFlags};

use super::confine::{
    is_openat2_unsupported, relative_in_root, resolve_in_root, ConfineError, FinalSymlink, OpenRoot,
};

/// Suffix of the name an original is kept under while the copy is in place.
const BACKUP_SUFFIX: &str = "packer-chroot-orig";

/// Errors of copying files in or restoring them.
#[derive(Debug, thiserror::Error)]
pub enum CopyFilesError {
    /// The destination leaves the chroot.
    #[error("copy_files: {0}")]
    Confine(#[from] ConfineError),
    /// A file operation failed.
    #[error("copy_files: cannot {action} {path:?}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Several restores failed (each was attempted).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Many(Vec<CopyFilesError>),
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CopyFilesError {
    let path = path.to_path_buf();
    move |source| CopyFilesError::Io {
        action,
        path,
        source,
    }
}

fn errno_err(action: &'static str, path: &Path) -> impl FnOnce(Errno) -> CopyFilesError {
    let path = path.to_path_buf();
    move |e| io_err(action, &path)(e.into())
}

/// An entry of a directory held open: everything done to it later goes
/// through the directory's descriptor, never through its path, so a
/// process in the chroot renaming or replacing a directory on the way with
/// a symlink (provisioners' background jobs still run when the originals
/// are put back) cannot make the restore touch the host.
#[derive(Debug)]
struct Entry {
    dir: OwnedFd,
    name: OsString,
    /// Its host path when it was made, for messages.
    shown: PathBuf,
}

#[derive(Debug)]
struct CopiedFile {
    /// The copy.
    target: Entry,
    /// The name the original waits under in the same directory, if there was one.
    backup: Option<OsString>,
    /// Directories created for the copy, outermost first.
    created_dirs: Vec<Entry>,
}

/// Files copied into a chroot; [`CopiedFiles::restore`] (or drop) puts the
/// image back as it was.
#[derive(Debug)]
pub struct CopiedFiles {
    copied: Vec<CopiedFile>,
}

impl CopiedFiles {
    /// Copies each host file in `files` to the same path inside `root`.
    /// On failure, what was already copied is restored before returning.
    pub async fn copy_in(root: &Path, files: &[String]) -> Result<Self, CopyFilesError> {
        let root = root.to_path_buf();
        let files = files.to_vec();
        tokio::task::spawn_blocking(move || {
            let mut done = CopiedFiles { copied: Vec::new() };
            for f in &files {
                match copy_one(&root, Path::new(f)) {
                    Ok(c) => done.copied.push(c),
                    // `done` is dropped here, which restores what was copied.
                    Err(e) => return Err(e),
                }
            }
            Ok(done)
        })
        .await
        .unwrap_or_else(|join| {
            Err(CopyFilesError::Io {
                action: "copy",
                path: PathBuf::new(),
                source: io::Error::other(join),
            })
        })
    }

    /// Host paths of the copies inside the chroot (where they were made).
    pub fn targets(&self) -> Vec<PathBuf> {
        self.copied.iter().map(|c| c.target.shown.clone()).collect()
    }

    /// Removes the copies and puts every original back. Every file is
    /// attempted; all failures are reported.
    pub async fn restore(mut self) -> Result<(), CopyFilesError> {
        let copied = std::mem::take(&mut self.copied);
        tokio::task::spawn_blocking(move || restore_all(copied))
            .await
            .unwrap_or_else(|join| {
                Err(CopyFilesError::Io {
                    action: "restore",
                    path: PathBuf::new(),
                    source: io::Error::other(join),
                })
            })
    }
}

impl Drop for CopiedFiles {
    /// A forgotten or failed build still gets its originals back (renames
    /// only, so blocking briefly is acceptable here).
    fn drop(&mut self) {
        if self.copied.is_empty() {
            return;
        }
        if let Err(e) = restore_all(std::mem::take(&mut self.copied)) {
            tracing::error!(error = %e, "restoring copied files on drop");
        }
    }
}

/// Opens directories of the chroot by their path relative to its root:
/// by the kernel inside the root (`openat2`), or on kernels without it
/// (< 5.6) resolved in user space and opened with `O_NOFOLLOW`.
struct ChrootDirs<'a> {
    root: &'a Path,
    confined: Option<OpenRoot>,
}

impl<'a> ChrootDirs<'a> {
    fn new(root: &'a Path) -> Result<Self, CopyFilesError> {
        let chroot = OpenRoot::open(root).map_err(io_err("open", root))?;
        let confined = match chroot.open_dir(Path::new(".")) {
            Err(e) if is_openat2_unsupported(&e) => {
                tracing::debug!("no openat2 in this kernel; resolving in user space");
                None
            }
            _ => Some(chroot),
        };
        Ok(Self { root, confined })
    }

    /// The directory at `relative`; `Ok(None)` when it does not exist.
    fn open(&self, relative: &Path) -> Result<Option<OwnedFd>, CopyFilesError> {
        let shown = self.root.join(relative);
        let opened = match &self.confined {
            Some(chroot) => chroot.open_dir(relative),
            None => {
                let resolved = resolve_in_root(self.root, relative, FinalSymlink::Follow)?;
                nix::fcntl::open(
                    &resolved,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(io::Error::from)
            }
        };
        match opened {
            Ok(fd) => Ok(Some(fd)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("open directory", &shown)(e)),
        }
    }
}

/// Where `fd` is now, for messages.
fn path_of(fd: &OwnedFd) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()
}

fn copy_one(root: &Path, file: &Path) -> Result<CopiedFile, CopyFilesError> {
    let relative = relative_in_root(root, file)?;
    let (Some(parent), Some(name)) = (relative.parent(), relative.file_name()) else {
        return Err(io_err("copy", file)(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a file name",
        )));
    };
    let dirs = ChrootDirs::new(root)?;
    let mut created_dirs = Vec::new();
    let mut prefix = PathBuf::new();
    let mut current = dirs
        .open(&prefix)?
        .ok_or_else(|| io_err("open", root)(io::ErrorKind::NotFound.into()))?;
    for component in parent.components() {
        let Component::Normal(part) = component else {
            continue;
        };
        prefix.push(part);
        current = match dirs.open(&prefix)? {
            Some(fd) => fd,
            None => {
                let shown = root.join(&prefix);
                mkdirat(&current, part, Mode::from_bits_truncate(0o755))
                    .map_err(errno_err("create directory", &shown))?;
                let made = dirs.open(&prefix)?.ok_or_else(|| {
                    io_err("open directory", &shown)(io::ErrorKind::NotFound.into())
                })?;
                created_dirs.push(Entry {
                    dir: current,
                    name: part.to_os_string(),
                    shown,
                });
                made
            }
        };
    }
    let shown = path_of(&current)
        .unwrap_or_else(|| root.join(parent))
        .join(name);
    let backup = match fstatat(&current, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(_) => {
            let b = backup_name(&current, name);
            renameat(&current, name, &current, b.as_os_str())
                .map_err(errno_err("set aside", &shown))?;
            Some(b)
        }
        Err(Errno::ENOENT) => None,
        Err(e) => return Err(errno_err("inspect", &shown)(e)),
    };
    let copied = CopiedFile {
        target: Entry {
            dir: current,
            name: name.to_os_string(),
            shown,
        },
        backup,
        created_dirs,
    };
    if let Err(e) = write_copy(file, &copied.target) {
        let _ = restore_all(vec![copied]);
        return Err(e);
    }
    tracing::debug!(from = %file.display(), to = %copied.target.shown.display(), "copied into the chroot");
    Ok(copied)
}

fn write_copy(src: &Path, target: &Entry) -> Result<(), CopyFilesError> {
    let mut input = std::fs::File::open(src).map_err(io_err("read", src))?;
    let mode = input
        .metadata()
        .map_err(io_err("inspect", src))?
        .permissions()
        .mode()
        & 0o7777;
    // O_EXCL with O_NOFOLLOW never follows a symlink planted at the target.
    let out = openat(
        &target.dir,
        target.name.as_os_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(errno_err("create", &target.shown))?;
    let mut out = std::fs::File::from(out);
    io::copy(&mut input, &mut out).map_err(io_err("write", &target.shown))?;
    fchmod(&out, Mode::from_bits_truncate(mode))
        .map_err(errno_err("set the mode of", &target.shown))?;
    Ok(())
}

/// A free name in `dir` to keep the original `name` under.
fn backup_name(dir: &OwnedFd, name: &OsStr) -> OsString {
    let mut n = 0u32;
    loop {
        let mut candidate = OsString::from(".");
        candidate.push(name);
        candidate.push(format!(".{BACKUP_SUFFIX}"));
        if n > 0 {
            candidate.push(format!(".{n}"));
        }
        if fstatat(dir, candidate.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW).is_err() {
            return candidate;
        }
        n += 1;
    }
}

fn restore_all(copied: Vec<CopiedFile>) -> Result<(), CopyFilesError> {
    let mut errors = Vec::new();
    for c in copied.into_iter().rev() {
        let t = &c.target;
        match &c.backup {
            // Atomic: the copy is replaced by the original in one step.
            Some(b) => {
                if let Err(e) = renameat(&t.dir, b.as_os_str(), &t.dir, t.name.as_os_str()) {
                    let kept = t.shown.with_file_name(b);
                    errors.push(errno_err(
                        "put back the original (kept at its backup name)",
                        &kept,
                    )(e));
                }
            }
            None => match unlinkat(&t.dir, t.name.as_os_str(), UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => errors.push(errno_err("remove", &t.shown)(e)),
            },
        }
        for d in c.created_dirs.iter().rev() {
            // A provisioner may have put files there; then it stays.
            let _ = unlinkat(&d.dir, d.name.as_os_str(), UnlinkatFlags::RemoveDir);
        }
    }
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(CopyFilesError::Many(errors)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt};

    fn host_file(dir: &Path, content: &str, mode: u32) -> PathBuf {
        let p = dir.join("resolv.conf");
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    /// The chroot path of a host file: copy_files copies to the same path.
    fn chroot_path(root: &Path, host: &Path) -> PathBuf {
        root.join(host.strip_prefix("/").unwrap())
    }

    #[tokio::test]
    async fn restores_a_dangling_resolv_conf_symlink_exactly() {
        let host = tempfile::tempdir().unwrap();
        let src = host_file(host.path(), "nameserver 10.0.0.2\n", 0o640);
        let root = tempfile::tempdir().unwrap();
        let target = chroot_path(root.path(), &src);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        // systemd's link; its target does not exist in an unbooted image.
        symlink("../run/systemd/resolve/stub-resolv.conf", &target).unwrap();
        std::os::unix::fs::lchown(&target, Some(101), Some(102)).unwrap();
        let before = std::fs::symlink_metadata(&target).unwrap();

        let copied = CopiedFiles::copy_in(root.path(), &[src.display().to_string()])
            .await
            .unwrap();
        let during = std::fs::symlink_metadata(&target).unwrap();
        assert!(during.is_file());
        assert_eq!(during.mode() & 0o7777, 0o640);
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "nameserver 10.0.0.2\n"
        );

        copied.restore().await.unwrap();
        let after = std::fs::symlink_metadata(&target).unwrap();
        assert!(after.file_type().is_symlink());
        assert_eq!(
            std::fs::read_link(&target).unwrap(),
            PathBuf::from("../run/systemd/resolve/stub-resolv.conf")
        );
        assert_eq!((after.uid(), after.gid()), (101, 102));
        assert_eq!(after.ino(), before.ino());
        let leftovers: Vec<_> = std::fs::read_dir(target.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![target.file_name().unwrap().to_os_string()]);
    }

    #[tokio::test]
    async fn restores_an_existing_file_with_mode_owner_and_content() {
        let host = tempfile::tempdir().unwrap();
        let src = host_file(host.path(), "nameserver 10.0.0.2\n", 0o644);
        let root = tempfile::tempdir().unwrap();
        let target = chroot_path(root.path(), &src);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(&target, "nameserver 127.0.0.53\n").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::chown(&target, Some(1000), Some(1001)).unwrap();

        let copied = CopiedFiles::copy_in(root.path(), &[src.display().to_string()])
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "nameserver 10.0.0.2\n"
        );
        // Dropping (a build that never reached cleanup) restores as well.
        drop(copied);
        let after = std::fs::metadata(&target).unwrap();
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "nameserver 127.0.0.53\n"
        );
        assert_eq!(after.mode() & 0o7777, 0o600);
        assert_eq!((after.uid(), after.gid()), (1000, 1001));
    }

    #[tokio::test]
    async fn removes_a_copy_that_had_no_original_and_the_dirs_it_made() {
        let host = tempfile::tempdir().unwrap();
        let src = host_file(host.path(), "x\n", 0o644);
        let root = tempfile::tempdir().unwrap();
        let target = chroot_path(root.path(), &src);
        let copied = CopiedFiles::copy_in(root.path(), &[src.display().to_string()])
            .await
            .unwrap();
        assert!(target.is_file());
        copied.restore().await.unwrap();
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn a_directory_replaced_by_a_link_before_the_restore_cannot_touch_the_host() {
        let host = tempfile::tempdir().unwrap();
        let src = host_file(host.path(), "host's own\n", 0o644);
        let root = tempfile::tempdir().unwrap();
        let target = chroot_path(root.path(), &src);
        let dir = target.parent().unwrap().to_path_buf();
        std::fs::create_dir_all(&dir).unwrap();
        symlink("../run/systemd/resolve/stub-resolv.conf", &target).unwrap();
        let copied = CopiedFiles::copy_in(root.path(), &[src.display().to_string()])
            .await
            .unwrap();
        // A background job in the chroot moves the directory away and puts a
        // link in its place that, followed on the host, is the host's own
        // directory (the same absolute path).
        let moved = dir.with_extension("moved");
        std::fs::rename(&dir, &moved).unwrap();
        symlink(host.path(), &dir).unwrap();

        copied.restore().await.unwrap();

        assert_eq!(std::fs::read_to_string(&src).unwrap(), "host's own\n");
        let host_names: Vec<_> = std::fs::read_dir(host.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(host_names, vec![std::ffi::OsString::from("resolv.conf")]);
        // The original went back where the directory is now.
        let restored = moved.join("resolv.conf");
        assert_eq!(
            std::fs::read_link(&restored).unwrap(),
            PathBuf::from("../run/systemd/resolve/stub-resolv.conf")
        );
        assert_eq!(std::fs::read_dir(&moved).unwrap().count(), 1);
    }

    #[tokio::test]
    async fn never_writes_outside_the_chroot() {
        let host = tempfile::tempdir().unwrap();
        let src = host_file(host.path(), "x\n", 0o644);
        let root = tempfile::tempdir().unwrap();
        // The image's copy of the source's directory is an absolute symlink
        // that, followed on the host, would lead to the host's directory.
        let in_image = chroot_path(root.path(), host.path());
        std::fs::create_dir_all(in_image.parent().unwrap()).unwrap();
        std::fs::create_dir_all(root.path().join("elsewhere")).unwrap();
        symlink("/elsewhere", &in_image).unwrap();
        let copied = CopiedFiles::copy_in(root.path(), &[src.display().to_string()])
            .await
            .unwrap();
        assert_eq!(
            copied.targets(),
            vec![root.path().join("elsewhere/resolv.conf")]
        );
        assert_eq!(std::fs::read_to_string(&src).unwrap(), "x\n");
        copied.restore().await.unwrap();

        let err = CopiedFiles::copy_in(root.path(), &["/../../etc/hostname".into()])
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                CopyFilesError::Confine(ConfineError::EscapesRoot { .. })
            ),
            "{err}"
        );
    }
}
