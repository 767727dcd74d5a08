//! `upload_dir` and `download_dir`: copying a directory tree into or out of
//! the chroot, one open directory at a time.
//!
//! Resolving each entry's path and then opening it leaves a window in which
//! a process running in the chroot (a provisioner's background job) can
//! swap a directory for a symlink and redirect the copy to the host. Here
//! only the top of the tree is opened by path, below the chroot root by the
//! kernel ([`OpenRoot`], `RESOLVE_IN_ROOT`); every entry below it is read,
//! created or replaced with an `*at` call naming one component relative to
//! its open parent, never following a symlink. So whatever changes in the
//! tree meanwhile, the copy stays inside it. The one symlink that is
//! followed, a link already at the destination where a directory goes (the
//! directory is copied into what it points to, as `cp -R` does), is opened
//! in the chroot by the kernel inside the root as well.
//!
//! Each level of the tree holds two descriptors (its source and its
//! destination directory) while its subdirectories are copied.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fchmod, fstatat, mkdirat, Mode, SFlag};
use nix::unistd::{symlinkat, unlinkat, UnlinkatFlags};

use super::{io_err, CommunicatorError};
use crate::chroot::confine::{
    is_openat2_unsupported, relative_in_root, resolve_in_root, FinalSymlink, OpenRoot,
};

/// Flags of a directory opened to be listed or written into.
const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_CLOEXEC);

/// Copies the host directory `local` into the chroot at `remote` (a path
/// as the chroot sees it; missing directories are created).
pub(super) fn upload(
    root: &Path,
    local: &Path,
    remote: &Path,
    exclude: &[String],
) -> Result<(), CommunicatorError> {
    let top = relative_in_root(root, remote)?;
    let source = open_host_dir(local, false)?;
    let chroot = OpenRoot::open(root).map_err(io_err("open", root))?;
    let destination = Level {
        fd: open_in_chroot(root, &chroot, &top, true)?,
        shown: root.join(&top),
    };
    let follow = |rel: &Path| open_in_chroot(root, &chroot, &top.join(rel), true);
    Copy {
        exclude,
        follow: &follow,
    }
    .copy_level(&source, &destination, Path::new(""))
}

/// Copies the chroot's directory `remote` to `local` on the host (created
/// if missing).
pub(super) fn download(
    root: &Path,
    remote: &Path,
    local: &Path,
    exclude: &[String],
) -> Result<(), CommunicatorError> {
    let top = relative_in_root(root, remote)?;
    let chroot = OpenRoot::open(root).map_err(io_err("open", root))?;
    let source = Level {
        fd: open_in_chroot(root, &chroot, &top, false)?,
        shown: root.join(&top),
    };
    let destination = open_host_dir(local, true)?;
    let follow = |rel: &Path| open_host_dir(&local.join(rel), true).map(|level| level.fd);
    Copy {
        exclude,
        follow: &follow,
    }
    .copy_level(&source, &destination, Path::new(""))
}

/// One open directory of either end, and its path for messages.
struct Level {
    fd: OwnedFd,
    shown: PathBuf,
}

impl Level {
    fn child(&self, fd: OwnedFd, name: &OsStr) -> Level {
        Level {
            fd,
            shown: self.shown.join(name),
        }
    }
}

/// A host directory (the user's side, where links are followed as usual).
fn open_host_dir(path: &Path, create: bool) -> Result<Level, CommunicatorError> {
    if create {
        std::fs::create_dir_all(path).map_err(io_err("create directory", path))?;
    }
    let fd = nix::fcntl::open(path, DIR_FLAGS, Mode::empty())
        .map_err(|e| io_err("open directory", path)(e.into()))?;
    Ok(Level {
        fd,
        shown: path.to_path_buf(),
    })
}

/// The chroot's directory at `relative`, resolved by the kernel inside the
/// root (and created, with `create`). Kernels without `openat2` (< 5.6)
/// resolve it in user space instead, which leaves the race open for this
/// one open; the entries below are still confined to it.
fn open_in_chroot(
    root: &Path,
    chroot: &OpenRoot,
    relative: &Path,
    create: bool,
) -> Result<OwnedFd, CommunicatorError> {
    let shown = root.join(relative);
    let confined = if create {
        chroot.create_dir_all(relative)
    } else {
        chroot.open_dir(relative)
    };
    match confined {
        Ok(fd) => Ok(fd),
        Err(e) if is_openat2_unsupported(&e) => {
            tracing::debug!(
                ?relative,
                "no openat2 in this kernel; resolving in user space"
            );
            let resolved = resolve_in_root(root, relative, FinalSymlink::Follow)?;
            if create {
                std::fs::create_dir_all(&resolved)
                    .map_err(io_err("create directory", &resolved))?;
            }
            nix::fcntl::open(&resolved, DIR_FLAGS | OFlag::O_NOFOLLOW, Mode::empty())
                .map_err(|e| io_err("open directory", &resolved)(e.into()))
        }
        Err(e) => Err(io_err("open directory", &shown)(e)),
    }
}

/// One tree copy: what to leave out, and how the destination follows a
/// link where a directory goes (by its path relative to the top), creating
/// its target if it is missing, as `mkdir -p` through it would.
struct Copy<'a> {
    exclude: &'a [String],
    follow: &'a dyn Fn(&Path) -> Result<OwnedFd, CommunicatorError>,
}

impl Copy<'_> {
    /// Copies the entries of `source` into `destination`; `rel` is their
    /// path below the top, for `exclude` and for following links.
    fn copy_level(
        &self,
        source: &Level,
        destination: &Level,
        rel: &Path,
    ) -> Result<(), CommunicatorError> {
        for name in list(source)? {
            let rel = rel.join(&name);
            if is_excluded(&rel, self.exclude) {
                continue;
            }
            let from = source.shown.join(&name);
            let to = destination.shown.join(&name);
            let stat = fstatat(&source.fd, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(|e| io_err("inspect", &from)(e.into()))?;
            let mode = Mode::from_bits_truncate(stat.st_mode & 0o7777);
            match SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) {
                SFlag::S_IFDIR => {
                    let child = openat(
                        &source.fd,
                        name.as_os_str(),
                        DIR_FLAGS | OFlag::O_NOFOLLOW,
                        Mode::empty(),
                    )
                    .map_err(|e| io_err("open directory", &from)(e.into()))?;
                    let target = self.destination_dir(destination, &name, &rel)?;
                    fchmod(&target, mode).map_err(|e| io_err("set the mode of", &to)(e.into()))?;
                    self.copy_level(
                        &source.child(child, &name),
                        &destination.child(target, &name),
                        &rel,
                    )?;
                }
                SFlag::S_IFLNK => {
                    let target = readlinkat(&source.fd, name.as_os_str())
                        .map_err(|e| io_err("read link", &from)(e.into()))?;
                    remove_non_dir(destination, &name)?;
                    symlinkat(target.as_os_str(), &destination.fd, name.as_os_str())
                        .map_err(|e| io_err("create link", &to)(e.into()))?;
                }
                SFlag::S_IFREG => {
                    let input = openat(
                        &source.fd,
                        name.as_os_str(),
                        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| io_err("read", &from)(e.into()))?;
                    remove_non_dir(destination, &name)?;
                    let output = openat(
                        &destination.fd,
                        name.as_os_str(),
                        OFlag::O_WRONLY
                            | OFlag::O_CREAT
                            | OFlag::O_EXCL
                            | OFlag::O_NOFOLLOW
                            | OFlag::O_CLOEXEC,
                        Mode::from_bits_truncate(0o600),
                    )
                    .map_err(|e| io_err("create", &to)(e.into()))?;
                    let mut output = std::fs::File::from(output);
                    io::copy(&mut std::fs::File::from(input), &mut output)
                        .map_err(io_err("write", &to))?;
                    fchmod(&output, mode).map_err(|e| io_err("set the mode of", &to)(e.into()))?;
                }
                // Sockets, fifos and device nodes are skipped, as rsync
                // does without --specials/--devices.
                _ => {}
            }
        }
        Ok(())
    }

    /// The directory `name` in `parent`: opened if it is one, created if
    /// missing, and followed if it is a link (into what it points to).
    fn destination_dir(
        &self,
        parent: &Level,
        name: &OsStr,
        rel: &Path,
    ) -> Result<OwnedFd, CommunicatorError> {
        let shown = parent.shown.join(name);
        let open = || {
            openat(
                &parent.fd,
                name,
                DIR_FLAGS | OFlag::O_NOFOLLOW,
                Mode::empty(),
            )
        };
        match open() {
            Ok(fd) => Ok(fd),
            Err(Errno::ENOENT) => {
                match mkdirat(&parent.fd, name, Mode::from_bits_truncate(0o700)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(io_err("create directory", &shown)(e.into())),
                }
                open().map_err(|e| io_err("open directory", &shown)(e.into()))
            }
            Err(e) => {
                let is_link = fstatat(&parent.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .is_ok_and(|s| s.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFLNK.bits());
                if is_link {
                    (self.follow)(rel)
                } else {
                    Err(io_err("create directory", &shown)(e.into()))
                }
            }
        }
    }
}

/// The names in a directory, without `.` and `..`.
fn list(dir: &Level) -> Result<Vec<OsString>, CommunicatorError> {
    let fail = |e: Errno| io_err("read directory", &dir.shown)(e.into());
    let fd = dir
        .fd
        .try_clone()
        .map_err(io_err("read directory", &dir.shown))?;
    let mut listing = nix::dir::Dir::from_fd(fd).map_err(fail)?;
    let mut names = Vec::new();
    for entry in listing.iter() {
        let entry = entry.map_err(fail)?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_owned());
        }
    }
    Ok(names)
}

/// Removes whatever non-directory is at `name` in `dir` (a file or link
/// being replaced; the link itself, never what it points to).
fn remove_non_dir(dir: &Level, name: &OsStr) -> Result<(), CommunicatorError> {
    match unlinkat(&dir.fd, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) | Err(Errno::EISDIR) => Ok(()),
        Err(e) => Err(io_err("replace", &dir.shown.join(name))(e.into())),
    }
}

/// Whether a relative path matches an exclude glob, against the whole
/// relative path or its last component (`*.log` excludes logs anywhere,
/// `sub/tmp` one entry).
pub(super) fn is_excluded(rel: &Path, exclude: &[String]) -> bool {
    let whole = rel.to_string_lossy();
    let name = rel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    exclude.iter().any(|pattern| {
        let p = pattern.trim_start_matches("./").trim_end_matches('/');
        glob_match(p.as_bytes(), whole.as_bytes()) || glob_match(p.as_bytes(), name.as_bytes())
    })
}

/// Shell-style glob: `*` and `?` do not match `/`; `[...]` classes with
/// ranges and `!`/`^` negation; `\` escapes.
pub(super) fn glob_match(p: &[u8], t: &[u8]) -> bool {
    match p.first() {
        None => t.is_empty(),
        Some(b'*') => (0..=t.len())
            .take_while(|&i| i == 0 || t[i - 1] != b'/')
            .any(|i| glob_match(&p[1..], &t[i..])),
        Some(b'?') => t.first().is_some_and(|&c| c != b'/') && glob_match(&p[1..], &t[1..]),
        Some(b'[') => {
            let Some(&c) = t.first() else { return false };
            match class_match(&p[1..], c) {
                Some((matched, rest)) => matched && glob_match(rest, &t[1..]),
                // An unterminated class is a literal '['.
                None => c == b'[' && glob_match(&p[1..], &t[1..]),
            }
        }
        Some(b'\\') if p.len() > 1 => t.first() == Some(&p[1]) && glob_match(&p[2..], &t[1..]),
        Some(&lit) => t.first() == Some(&lit) && glob_match(&p[1..], &t[1..]),
    }
}

/// Matches `c` against a class body (after `[`); returns the result and
/// the pattern after `]`, or `None` if there is no closing `]`.
fn class_match(body: &[u8], c: u8) -> Option<(bool, &[u8])> {
    let (negated, mut i) = match body.first() {
        Some(b'!') | Some(b'^') => (true, 1),
        _ => (false, 0),
    };
    let mut matched = false;
    let mut first = true;
    while i < body.len() {
        if body[i] == b']' && !first {
            return Some((matched != negated, &body[i + 1..]));
        }
        first = false;
        if i + 2 < body.len() && body[i + 1] == b'-' && body[i + 2] != b']' {
            if body[i] <= c && c <= body[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if body[i] == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}
