//! Resolving paths inside the chroot without ever leaving it.
//!
//! Upstream joined the chroot root and the requested path with
//! `filepath.Join`, so `../../etc/passwd` and absolute symlinks inside the
//! image (`/etc/resolv.conf -> /run/...`) reached the host. Here a path is
//! resolved the way the kernel would resolve it for a process chrooted at
//! the root: absolute symlinks start again at the root, `..` stops at the
//! root, and symlink loops are an error.
//!
//! Resolving in user space and opening later leaves a race: a process
//! running in the chroot can swap a directory for a symlink in between.
//! [`OpenRoot`] closes it where the kernel allows, by opening below a
//! directory fd of the root with `openat2(RESOLVE_IN_ROOT)` (Linux 5.6+),
//! so the kernel applies the same rules atomically with the open; callers
//! fall back to [`resolve_in_root`] when `openat2` is missing
//! ([`is_openat2_unsupported`]).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{openat2, readlinkat, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{mkdirat, Mode};

/// How many symlinks one resolution may follow, as the kernel's `MAXSYMLINKS`.
const MAX_SYMLINKS: usize = 40;

/// How often an `openat2` that the kernel failed with `EAGAIN` (a racing
/// rename while resolving `..`) is tried again before giving up.
const OPENAT2_RETRIES: usize = 16;

/// Whether the last component of a path is followed when it is a symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalSymlink {
    /// Resolve it (writing through it, reading what it points to).
    Follow,
    /// Keep it as the result (to rename or replace the link itself).
    Keep,
}

/// Why a path could not be confined to the chroot.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// The requested path itself climbs above the chroot root.
    #[error("path {path:?} leaves the chroot {root:?} through \"..\"")]
    EscapesRoot {
        /// The chroot root.
        root: PathBuf,
        /// The path as requested.
        path: PathBuf,
    },
    /// More than [`MAX_SYMLINKS`] symlinks, most likely a loop.
    #[error("too many levels of symbolic links resolving {path:?} in the chroot {root:?}")]
    SymlinkLoop {
        /// The chroot root.
        root: PathBuf,
        /// The path as requested.
        path: PathBuf,
    },
    /// An I/O error other than "not found" while inspecting a component.
    #[error("cannot inspect {at:?} while resolving {path:?} in the chroot: {source}")]
    Io {
        /// The host path being inspected.
        at: PathBuf,
        /// The path as requested.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// Resolves `path` (absolute or relative, both taken from the chroot's `/`)
/// to a host path below `root`.
///
/// Every existing component of the result is a real directory (or, for the
/// last one, a non-symlink unless [`FinalSymlink::Keep`] was asked); missing
/// components are appended as written, so the result can name a file to
/// create. A `..` in `path` itself that climbs above the root is refused,
/// because a caller asking for it is a mistake or an attack; a `..` found in
/// a symlink target inside the image stops at the root, as in a real chroot.
pub fn resolve_in_root(
    root: &Path,
    path: &Path,
    final_symlink: FinalSymlink,
) -> Result<PathBuf, ConfineError> {
    // Each pending component carries whether it came from the caller's path
    // (where climbing above the root is refused) or from a symlink target.
    let mut pending: VecDeque<(OsString, bool)> = VecDeque::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
            Component::ParentDir => pending.push_back(("..".into(), true)),
            Component::Normal(n) => pending.push_back((n.to_os_string(), true)),
        }
    }
    let mut resolved: Vec<OsString> = Vec::new();
    let mut links_followed = 0usize;
    // Once a component is missing, nothing below it can be a symlink.
    let mut missing = false;
    while let Some((name, from_caller)) = pending.pop_front() {
        if name == ".." {
            if resolved.pop().is_none() && from_caller {
                return Err(ConfineError::EscapesRoot {
                    root: root.to_path_buf(),
                    path: path.to_path_buf(),
                });
            }
            continue;
        }
        if missing {
            resolved.push(name);
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&resolved);
        candidate.push(&name);
        let is_last = pending.is_empty();
        match std::fs::symlink_metadata(&candidate) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing = true;
                resolved.push(name);
            }
            Err(e) => {
                return Err(ConfineError::Io {
                    at: candidate,
                    path: path.to_path_buf(),
                    source: e,
                })
            }
            Ok(meta) if meta.file_type().is_symlink() => {
                if is_last && final_symlink == FinalSymlink::Keep {
                    resolved.push(name);
                    continue;
                }
                links_followed += 1;
                if links_followed > MAX_SYMLINKS {
                    return Err(ConfineError::SymlinkLoop {
                        root: root.to_path_buf(),
                        path: path.to_path_buf(),
                    });
                }
                let target = std::fs::read_link(&candidate).map_err(|e| ConfineError::Io {
                    at: candidate.clone(),
                    path: path.to_path_buf(),
                    source: e,
                })?;
                if target.is_absolute() {
                    resolved.clear();
                }
                let mut expanded: Vec<(OsString, bool)> = Vec::new();
                for c in target.components() {
                    match c {
                        Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
                        Component::ParentDir => expanded.push(("..".into(), false)),
                        Component::Normal(n) => expanded.push((n.to_os_string(), false)),
                    }
                }
                for item in expanded.into_iter().rev() {
                    pending.push_front(item);
                }
            }
            Ok(_) => resolved.push(name),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(&resolved);
    Ok(out)
}

/// Checks, on the path as written, that no `..` in `path` climbs above the
/// chroot root, and returns it relative to the root (`.` for the root).
///
/// Kernel confinement ([`OpenRoot`]) clamps such a `..` at the root
/// instead of refusing it; a caller asking for it is a mistake or an
/// attack, so it is refused here first, as [`resolve_in_root`] does. The
/// check is lexical: a `..` after a symlink in the image (`/etc/link/..`)
/// is left to the kernel, which keeps it inside the root.
pub fn relative_in_root(root: &Path, path: &Path) -> Result<PathBuf, ConfineError> {
    let mut relative = PathBuf::new();
    let mut depth = 0usize;
    for c in path.components() {
        match c {
            Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
            Component::ParentDir => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| ConfineError::EscapesRoot {
                        root: root.to_path_buf(),
                        path: path.to_path_buf(),
                    })?;
                relative.push("..");
            }
            Component::Normal(n) => {
                depth += 1;
                relative.push(n);
            }
        }
    }
    if relative.as_os_str().is_empty() {
        relative.push(".");
    }
    Ok(relative)
}

/// Whether an error says the kernel has no `openat2` (Linux < 5.6), so the
/// caller should fall back to [`resolve_in_root`] and `O_NOFOLLOW`.
pub fn is_openat2_unsupported(e: &io::Error) -> bool {
    e.raw_os_error() == Some(nix::errno::Errno::ENOSYS as i32)
}

/// The chroot root opened as a directory, below which files are opened
/// with `openat2(RESOLVE_IN_ROOT)`: the kernel resolves every component
/// as for a process chrooted there (absolute symlinks restart at the root,
/// `..` stops at it), atomically with the open. Unlike resolving first and
/// opening later, a process in the chroot swapping a directory for a
/// symlink at the same moment cannot make the open leave the root.
///
/// Open it for each operation, not once per build: an fd taken before the
/// image is mounted would name the empty mount point underneath.
#[derive(Debug)]
pub struct OpenRoot {
    fd: OwnedFd,
}

impl OpenRoot {
    /// Opens `root` (`O_PATH | O_DIRECTORY`).
    pub fn open(root: &Path) -> io::Result<Self> {
        let fd = nix::fcntl::open(
            root,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self { fd })
    }

    fn open_beneath(&self, relative: &Path, flags: OFlag, mode: Mode) -> io::Result<OwnedFd> {
        let relative = if relative.as_os_str().is_empty() {
            Path::new(".")
        } else {
            relative
        };
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .mode(mode)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        // With RESOLVE_IN_ROOT the kernel answers EAGAIN when a rename or
        // mount elsewhere raced a `..` it was resolving; trying again is
        // what it asks for.
        let mut attempts = 0;
        loop {
            match openat2(&self.fd, relative, how) {
                Err(nix::errno::Errno::EAGAIN) if attempts < OPENAT2_RETRIES => attempts += 1,
                other => return Ok(other?),
            }
        }
    }

    /// Opens the directory at `relative` (from [`relative_in_root`]),
    /// readable, so it can be listed and changed through `*at` calls.
    pub fn open_dir(&self, relative: &Path) -> io::Result<OwnedFd> {
        self.open_beneath(
            relative,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
    }

    /// Opens the file at `relative` (from [`relative_in_root`]) for reading.
    pub fn open_read(&self, relative: &Path) -> io::Result<std::fs::File> {
        let fd = self.open_beneath(relative, OFlag::O_RDONLY, Mode::empty())?;
        Ok(fd.into())
    }

    /// Creates (or truncates) the file at `relative` for writing with
    /// `mode` (less the umask), creating missing parent directories as
    /// `mkdir -p` would. A final symlink is written through, and the
    /// directories its target needs are created too.
    pub fn create_file(&self, relative: &Path, mode: u32) -> io::Result<std::fs::File> {
        let mut relative = relative.to_path_buf();
        let mut links = 0usize;
        loop {
            let (Some(parent), Some(name)) = (relative.parent(), relative.file_name()) else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not a file name",
                ));
            };
            let parent_fd = self.create_dirs(parent, &mut links)?;
            match self.open_beneath(
                &relative,
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC,
                Mode::from_bits_truncate(mode),
            ) {
                Ok(fd) => return Ok(fd.into()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // A dangling link whose target's directory is missing.
                    let Ok(target) = readlinkat(&parent_fd, name) else {
                        return Err(e);
                    };
                    count_link(&mut links)?;
                    relative = parent.join(target);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Opens the directory at `relative`, creating what is missing one
    /// component at a time (`mkdirat` in the confined parent, then a
    /// confined reopen); a dangling symlink on the way gets its target
    /// created, as `mkdir -p` through it would.
    pub fn create_dir_all(&self, relative: &Path) -> io::Result<OwnedFd> {
        self.create_dirs(relative, &mut 0)
    }

    /// [`Self::create_dir_all`], counting the links followed by hand.
    fn create_dirs(&self, relative: &Path, links: &mut usize) -> io::Result<OwnedFd> {
        let mut prefix = PathBuf::new();
        let mut current = self.open_dir(&prefix)?;
        for c in relative.components() {
            let name: &std::ffi::OsStr = match c {
                Component::Normal(n) => n,
                Component::ParentDir => "..".as_ref(),
                Component::RootDir | Component::Prefix(_) | Component::CurDir => continue,
            };
            let next = prefix.join(name);
            let fd = match self.open_dir(&next) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match mkdirat(&current, name, Mode::from_bits_truncate(0o777)) {
                        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    match self.open_dir(&next) {
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {
                            let Ok(target) = readlinkat(&current, name) else {
                                return Err(e);
                            };
                            count_link(links)?;
                            // An absolute target replaces the prefix.
                            self.create_dirs(&prefix.join(target), links)?;
                            self.open_dir(&next)?
                        }
                        other => other?,
                    }
                }
                other => other?,
            };
            prefix = next;
            current = fd;
        }
        Ok(current)
    }
}

/// Counts one more symlink followed by hand; too many is a loop.
fn count_link(links: &mut usize) -> io::Result<()> {
    *links += 1;
    if *links > MAX_SYMLINKS {
        return Err(nix::errno::Errno::ELOOP.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn image() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::create_dir_all(dir.path().join("usr/bin")).unwrap();
        std::fs::create_dir_all(dir.path().join("run/systemd/resolve")).unwrap();
        dir
    }

    #[test]
    fn resolves_plain_and_relative_paths_below_the_root() {
        let img = image();
        let root = img.path();
        assert_eq!(
            resolve_in_root(root, Path::new("/etc/hosts"), FinalSymlink::Follow).unwrap(),
            root.join("etc/hosts")
        );
        assert_eq!(
            resolve_in_root(root, Path::new("etc/./x/../hosts"), FinalSymlink::Follow).unwrap(),
            root.join("etc/hosts")
        );
    }

    #[test]
    fn refuses_dot_dot_escape_attempts() {
        let img = image();
        for p in ["../../etc/passwd", "/etc/../../x", "/.."] {
            let err = resolve_in_root(img.path(), Path::new(p), FinalSymlink::Follow).unwrap_err();
            assert!(
                matches!(err, ConfineError::EscapesRoot { .. }),
                "{p}: {err}"
            );
        }
    }

    #[test]
    fn absolute_symlinks_resolve_relative_to_the_chroot_root() {
        let img = image();
        let root = img.path();
        symlink(
            "/run/systemd/resolve/stub-resolv.conf",
            root.join("etc/resolv.conf"),
        )
        .unwrap();
        symlink("/", root.join("etc/rootlink")).unwrap();
        symlink("usr/bin", root.join("bin")).unwrap();
        assert_eq!(
            resolve_in_root(root, Path::new("/etc/resolv.conf"), FinalSymlink::Follow).unwrap(),
            root.join("run/systemd/resolve/stub-resolv.conf")
        );
        assert_eq!(
            resolve_in_root(root, Path::new("/etc/resolv.conf"), FinalSymlink::Keep).unwrap(),
            root.join("etc/resolv.conf")
        );
        assert_eq!(
            resolve_in_root(
                root,
                Path::new("/etc/rootlink/etc/passwd"),
                FinalSymlink::Follow
            )
            .unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(
            resolve_in_root(root, Path::new("/bin/sh"), FinalSymlink::Follow).unwrap(),
            root.join("usr/bin/sh")
        );
    }

    #[test]
    fn dot_dot_in_symlink_targets_stops_at_the_root() {
        let img = image();
        let root = img.path();
        symlink("../../../../../../etc", root.join("usr/bin/up")).unwrap();
        let got =
            resolve_in_root(root, Path::new("/usr/bin/up/shadow"), FinalSymlink::Follow).unwrap();
        assert_eq!(got, root.join("etc/shadow"));
    }

    #[test]
    fn refuses_symlink_loops() {
        let img = image();
        let root = img.path();
        symlink("b", root.join("etc/a")).unwrap();
        symlink("a", root.join("etc/b")).unwrap();
        let err = resolve_in_root(root, Path::new("/etc/a/x"), FinalSymlink::Follow).unwrap_err();
        assert!(matches!(err, ConfineError::SymlinkLoop { .. }), "{err}");
    }

    #[test]
    fn relative_in_root_refuses_dot_dot_escapes_as_written() {
        let img = image();
        for p in ["../../etc/passwd", "/etc/../../x", "/.."] {
            let err = relative_in_root(img.path(), Path::new(p)).unwrap_err();
            assert!(
                matches!(err, ConfineError::EscapesRoot { .. }),
                "{p}: {err}"
            );
        }
        assert_eq!(
            relative_in_root(img.path(), Path::new("/etc/./x/../hosts")).unwrap(),
            Path::new("etc/x/../hosts")
        );
        assert_eq!(
            relative_in_root(img.path(), Path::new("/")).unwrap(),
            Path::new(".")
        );
    }

    #[test]
    fn kernel_confined_create_follows_absolute_links_inside_the_root() {
        let img = image();
        let root = img.path();
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path(), root.join("etc/escape")).unwrap();
        symlink(
            "/run/systemd/resolve/stub-resolv.conf",
            root.join("etc/resolv.conf"),
        )
        .unwrap();
        let open_root = OpenRoot::open(root).unwrap();
        open_root
            .create_file(Path::new("etc/escape/deep/f"), 0o644)
            .unwrap();
        open_root
            .create_file(Path::new("etc/resolv.conf"), 0o644)
            .unwrap();
        let inside = root
            .join(outside.path().strip_prefix("/").unwrap())
            .join("deep/f");
        assert!(inside.is_file(), "{inside:?}");
        assert!(!outside.path().join("deep").exists(), "wrote on the host");
        assert!(root.join("run/systemd/resolve/stub-resolv.conf").is_file());
    }

    #[test]
    fn a_parent_swapped_for_a_link_after_resolution_cannot_escape() {
        let img = image();
        let root = img.path();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(outside.path().join("b")).unwrap();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        // What the user-space resolver saw: a real directory.
        let resolved = resolve_in_root(root, Path::new("/a/b/f"), FinalSymlink::Follow).unwrap();
        assert_eq!(resolved, root.join("a/b/f"));
        // A process in the chroot now swaps `a` for links out of the root,
        // absolute and by `..`; opening the resolved host path would follow
        // them (O_NOFOLLOW guards only the last component).
        std::fs::remove_dir_all(root.join("a")).unwrap();
        symlink(outside.path(), root.join("a")).unwrap();
        assert!(resolved
            .parent()
            .unwrap()
            .canonicalize()
            .unwrap()
            .starts_with(outside.path().canonicalize().unwrap()));
        std::fs::write(outside.path().join("b/secret"), "host\n").unwrap();
        let open_root = OpenRoot::open(root).unwrap();
        let err = open_root.open_read(Path::new("a/b/secret")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "read the host's file");
        open_root.create_file(Path::new("a/b/f"), 0o644).unwrap();
        assert!(!outside.path().join("b/f").exists(), "wrote on the host");

        std::fs::remove_file(root.join("a")).unwrap();
        let climbs = "../".repeat(20) + outside.path().strip_prefix("/").unwrap().to_str().unwrap();
        symlink(&climbs, root.join("a")).unwrap();
        open_root.create_file(Path::new("a/b/g"), 0o644).unwrap();
        assert!(!outside.path().join("b/g").exists(), "wrote on the host");
        let inside = root.join(outside.path().strip_prefix("/").unwrap());
        assert!(inside.join("b/f").is_file() && inside.join("b/g").is_file());
    }

    #[test]
    fn kernel_confined_read_opens_the_file_through_links_in_the_root() {
        let img = image();
        let root = img.path();
        std::fs::write(root.join("etc/hosts"), "inside\n").unwrap();
        symlink("/etc", root.join("usr/conf")).unwrap();
        let mut f = OpenRoot::open(root)
            .unwrap()
            .open_read(Path::new("usr/conf/hosts"))
            .unwrap();
        let mut text = String::new();
        io::Read::read_to_string(&mut f, &mut text).unwrap();
        assert_eq!(text, "inside\n");
    }
}
