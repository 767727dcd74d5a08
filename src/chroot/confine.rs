//! Resolving paths inside the chroot without ever leaving it.
//!
//! Upstream joined the chroot root and the requested path with
//! `filepath.Join`, so `../../etc/passwd` and absolute symlinks inside the
//! image (`/etc/resolv.conf -> /run/...`) reached the host. Here a path is
//! resolved the way the kernel would resolve it for a process chrooted at
//! the root: absolute symlinks start again at the root, `..` stops at the
//! root, and symlink loops are an error.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

/// How many symlinks one resolution may follow, as the kernel's `MAXSYMLINKS`.
const MAX_SYMLINKS: usize = 40;

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
}
