//! `copy_files`: host files (by default `/etc/resolv.conf`) copied into the
//! chroot for provisioning, and the image's originals put back exactly.
//!
//! Upstream ran `cp --remove-destination` and later `rm -f`, so an image
//! whose `/etc/resolv.conf` is systemd's symlink came out with no
//! resolv.conf at all. Here the original (file, symlink, dangling symlink)
//! is renamed aside in its own directory, which keeps its type, target,
//! mode, owner, times and content untouched, and renamed back over the copy
//! at cleanup, so there is never a moment without it.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::confine::{resolve_in_root, ConfineError, FinalSymlink};

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

#[derive(Debug)]
struct CopiedFile {
    /// The copy's host path inside the chroot.
    target: PathBuf,
    /// Where the original waits, if there was one.
    backup: Option<PathBuf>,
    /// Directories created for the copy, outermost first.
    created_dirs: Vec<PathBuf>,
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

    /// Host paths of the copies inside the chroot.
    pub fn targets(&self) -> Vec<PathBuf> {
        self.copied.iter().map(|c| c.target.clone()).collect()
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

fn copy_one(root: &Path, file: &Path) -> Result<CopiedFile, CopyFilesError> {
    let target = resolve_in_root(root, file, FinalSymlink::Keep)?;
    let parent = target.parent().unwrap_or(root).to_path_buf();
    let mut created_dirs = Vec::new();
    let mut missing = Vec::new();
    let mut p = parent.as_path();
    while !p.exists() && p.starts_with(root) && p != root {
        missing.push(p.to_path_buf());
        p = p.parent().unwrap_or(root);
    }
    for d in missing.into_iter().rev() {
        std::fs::create_dir(&d).map_err(io_err("create directory", &d))?;
        created_dirs.push(d);
    }
    let backup = match std::fs::symlink_metadata(&target) {
        Ok(_) => {
            let b = backup_name(&target);
            std::fs::rename(&target, &b).map_err(io_err("set aside", &target))?;
            Some(b)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err("inspect", &target)(e)),
    };
    let copied = CopiedFile {
        target: target.clone(),
        backup,
        created_dirs,
    };
    if let Err(e) = write_copy(file, &target) {
        let _ = restore_all(vec![copied]);
        return Err(e);
    }
    tracing::debug!(from = %file.display(), to = %target.display(), "copied into the chroot");
    Ok(copied)
}

fn write_copy(src: &Path, target: &Path) -> Result<(), CopyFilesError> {
    let mut input = std::fs::File::open(src).map_err(io_err("read", src))?;
    let mode = input
        .metadata()
        .map_err(io_err("inspect", src))?
        .permissions()
        .mode()
        & 0o7777;
    // create_new never follows a symlink planted at the target.
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc_o_nofollow())
        .open(target)
        .map_err(io_err("create", target))?;
    io::copy(&mut input, &mut out).map_err(io_err("write", target))?;
    out.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io_err("set the mode of", target))?;
    Ok(())
}

/// `O_NOFOLLOW`, through nix's re-export of libc.
fn libc_o_nofollow() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits()
}

fn backup_name(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = target.parent().unwrap_or(Path::new("/"));
    let mut n = 0u32;
    loop {
        let candidate = if n == 0 {
            dir.join(format!(".{name}.{BACKUP_SUFFIX}"))
        } else {
            dir.join(format!(".{name}.{BACKUP_SUFFIX}.{n}"))
        };
        if std::fs::symlink_metadata(&candidate).is_err() {
            return candidate;
        }
        n += 1;
    }
}

fn restore_all(copied: Vec<CopiedFile>) -> Result<(), CopyFilesError> {
    let mut errors = Vec::new();
    for c in copied.into_iter().rev() {
        match &c.backup {
            // Atomic: the copy is replaced by the original in one step.
            Some(b) => {
                if let Err(e) = std::fs::rename(b, &c.target) {
                    errors.push(io_err("put back the original (kept at its backup name)", b)(e));
                }
            }
            None => match std::fs::remove_file(&c.target) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => errors.push(io_err("remove", &c.target)(e)),
            },
        }
        for d in c.created_dirs.iter().rev() {
            // A provisioner may have put files there; then it stays.
            let _ = std::fs::remove_dir(d);
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
