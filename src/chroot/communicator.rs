//! The communicator provisioners use: commands run with `chroot <root>
//! /bin/sh -c`, files are read and written below the chroot root only.
//!
//! Fixes over upstream's SDK communicator (reference §5): the command is
//! single-quoted, so `$VAR`, `$(…)` and backticks are expanded by the
//! chroot's shell and never by the host's, and multi-line commands work;
//! commands are killed (their whole process group) when the build is
//! cancelled, so they cannot keep the mount busy; uploads honour the file
//! mode and never leave the chroot; `exclude` is honoured; `download_dir`
//! works.
//!
//! File transfers are done by this process itself (not through
//! `command_wrapper`), because confining paths needs to look at every
//! component as it is written; chroot builds therefore need Packer to run
//! as root, which mounting requires in practice anyway. Uploads and
//! downloads are confined by the kernel (`openat2` with `RESOLVE_IN_ROOT`,
//! see [`OpenRoot`]), so a process running in the chroot meanwhile cannot
//! redirect them by swapping a directory for a symlink; `upload_dir` and
//! `download_dir` open only the top of the tree that way and everything
//! below it relative to its open parent (see `tree`). On kernels without
//! `openat2` (< 5.6) the path opened is resolved in user space and opened
//! with `O_NOFOLLOW`, which leaves that race open for that one open.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

use super::confine::{
    is_openat2_unsupported, relative_in_root, resolve_in_root, ConfineError, FinalSymlink, OpenRoot,
};
use super::host_shell::{
    exit_code, shell_quote, wait_or_kill, CommandWrapper, HostCommandError, HostShell,
};
use crate::plugin::api::{BoxError, BoxRead, BoxWrite, Communicator, FileInfo, RemoteCommand};

/// Mode of uploaded files when Packer sends no file info.
const DEFAULT_FILE_MODE: u32 = 0o644;

/// How long output is still forwarded after the command exited. Background
/// processes it started (a daemon a package's postinst launched) inherit
/// its stdout; waiting for them to close it, as upstream did, hangs the
/// provisioner for good.
const OUTPUT_DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Exit status reported when the command's status cannot be known (waiting
/// for it failed), as Packer's `RemoteCmd` does for an unknown status.
const UNKNOWN_EXIT: i32 = -1;

/// Errors of the chroot communicator.
#[derive(Debug, thiserror::Error)]
pub enum CommunicatorError {
    /// A path leaves the chroot.
    #[error(transparent)]
    Confine(#[from] ConfineError),
    /// The command could not be prepared or started.
    #[error(transparent)]
    Command(#[from] HostCommandError),
    /// A file operation failed.
    #[error("cannot {action} {path:?}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CommunicatorError {
    let path = path.to_path_buf();
    move |source| CommunicatorError::Io {
        action,
        path,
        source,
    }
}

/// The communicator of a chroot build.
#[derive(Debug, Clone)]
pub struct ChrootCommunicator {
    root: PathBuf,
    shell: HostShell,
    cancel: CancellationToken,
}

impl ChrootCommunicator {
    /// A communicator for the chroot at `root` (the absolute mount path);
    /// commands go through `wrapper` and are killed when `cancel` fires.
    pub fn new(root: &Path, wrapper: CommandWrapper, cancel: CancellationToken) -> Self {
        Self {
            root: root.to_path_buf(),
            shell: HostShell::new(wrapper),
            cancel,
        }
    }

    /// The chroot root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The host command that runs `command` in the chroot (before the
    /// wrapper): nothing in it is expanded by the host's shell.
    pub fn chroot_command(&self, command: &str) -> String {
        format!(
            "chroot {} /bin/sh -c {}",
            shell_quote(&self.root.to_string_lossy()),
            shell_quote(command)
        )
    }

    fn resolve(&self, path: &str) -> Result<PathBuf, ConfineError> {
        resolve_in_root(&self.root, Path::new(path), FinalSymlink::Follow)
    }

    async fn start_command(
        &self,
        cmd: RemoteCommand,
    ) -> Result<BoxFuture<'static, i32>, CommunicatorError> {
        let (mut command, wrapped) = self.shell.command(&self.chroot_command(&cmd.command))?;
        let piped_or_null = |wanted: bool| {
            if wanted {
                Stdio::piped()
            } else {
                Stdio::null()
            }
        };
        command
            .stdin(piped_or_null(cmd.stdin.is_some()))
            .stdout(piped_or_null(cmd.stdout.is_some()))
            .stderr(piped_or_null(cmd.stderr.is_some()));
        tracing::info!(command = %cmd.command, "running in the chroot");
        let mut child = command.spawn().map_err(|source| HostCommandError::Spawn {
            command: wrapped,
            source,
        })?;

        let stdin_task = match (cmd.stdin, child.stdin.take()) {
            (Some(mut from), Some(mut to)) => Some(tokio::spawn(async move {
                // A command that exits without reading its input is fine.
                let _ = tokio::io::copy(&mut from, &mut to).await;
                let _ = to.shutdown().await;
            })),
            _ => None,
        };
        let stdout_task = pump(child.stdout.take(), cmd.stdout);
        let stderr_task = pump(child.stderr.take(), cmd.stderr);
        let cancel = self.cancel.clone();
        let done = tokio::spawn(async move {
            let status = wait_or_kill(&mut child, &cancel).await;
            let drain_until = tokio::time::Instant::now() + OUTPUT_DRAIN_GRACE;
            for mut task in [stdout_task, stderr_task].into_iter().flatten() {
                if tokio::time::timeout_at(drain_until, &mut task)
                    .await
                    .is_err()
                {
                    tracing::warn!(
                        "a process started by the command (a daemon?) still holds its output open; not waiting for it"
                    );
                    task.abort();
                }
            }
            if let Some(t) = stdin_task {
                t.abort();
            }
            let code = status.map(exit_code).unwrap_or(UNKNOWN_EXIT);
            tracing::info!(code, "chroot command finished");
            code
        });
        Ok(async move { done.await.unwrap_or(UNKNOWN_EXIT) }.boxed())
    }

    async fn upload_file(
        &self,
        path: &str,
        mut content: BoxRead,
        info: Option<FileInfo>,
    ) -> Result<(), CommunicatorError> {
        let relative = relative_in_root(&self.root, Path::new(path))?;
        let target = self.root.join(&relative);
        let mode = info
            .as_ref()
            .map_or(DEFAULT_FILE_MODE, |i| go_mode_to_unix(i.mode));
        let root = self.root.clone();
        let confined = tokio::task::spawn_blocking(move || {
            OpenRoot::open(&root)?.create_file(&relative, mode)
        })
        .await
        .map_err(|e| io_err("create", &target)(io::Error::other(e)))?;
        let mut file = match confined {
            Ok(file) => tokio::fs::File::from_std(file),
            Err(e) if is_openat2_unsupported(&e) => {
                tracing::debug!(path, "no openat2 in this kernel; resolving in user space");
                self.create_resolved(path, mode).await?
            }
            Err(e) => return Err(io_err("create", &target)(e)),
        };
        tokio::io::copy(&mut content, &mut file)
            .await
            .map_err(io_err("write", &target))?;
        file.flush().await.map_err(io_err("write", &target))?;
        // Explicitly, as the umask and an existing file's mode would win.
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .await
            .map_err(io_err("set the mode of", &target))?;
        if let Some(mtime) = info.and_then(|i| i.mtime) {
            let std_file = file.into_std().await;
            tokio::task::spawn_blocking(move || std_file.set_modified(mtime))
                .await
                .map_err(|e| io_err("set the time of", &target)(io::Error::other(e)))?
                .map_err(io_err("set the time of", &target))?;
        }
        tracing::debug!(path, mode = format!("{mode:o}"), "uploaded into the chroot");
        Ok(())
    }

    /// Fallback for kernels without `openat2`: resolves in user space, then
    /// opens with `O_NOFOLLOW`. A process in the chroot swapping a parent
    /// directory for a symlink between the two can still redirect it.
    async fn create_resolved(
        &self,
        path: &str,
        mode: u32,
    ) -> Result<tokio::fs::File, CommunicatorError> {
        let target = self.resolve(path)?;
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(io_err("create directory", parent))?;
        }
        tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(&target)
            .await
            .map_err(io_err("create", &target))
    }

    async fn download_file(&self, path: &str, mut out: BoxWrite) -> Result<(), CommunicatorError> {
        let relative = relative_in_root(&self.root, Path::new(path))?;
        let source = self.root.join(&relative);
        let root = self.root.clone();
        let confined =
            tokio::task::spawn_blocking(move || OpenRoot::open(&root)?.open_read(&relative))
                .await
                .map_err(|e| io_err("open", &source)(io::Error::other(e)))?;
        let file = match confined {
            Ok(file) => tokio::fs::File::from_std(file),
            Err(e) if is_openat2_unsupported(&e) => {
                tracing::debug!(path, "no openat2 in this kernel; resolving in user space");
                let resolved = self.resolve(path)?;
                tokio::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                    .open(&resolved)
                    .await
                    .map_err(io_err("open", &resolved))?
            }
            Err(e) => return Err(io_err("open", &source)(e)),
        };
        tokio::io::copy(&mut BufReader::new(file), &mut out)
            .await
            .map_err(io_err("read", &source))?;
        out.shutdown().await.map_err(io_err("write out", &source))?;
        Ok(())
    }

    async fn upload_tree(
        &self,
        dst: &str,
        src: &str,
        exclude: &[String],
    ) -> Result<(), CommunicatorError> {
        let local = PathBuf::from(src);
        let remote = tree_destination(Path::new(dst), src);
        let root = self.root.clone();
        let exclude = exclude.to_vec();
        run_blocking(move || tree::upload(&root, &local, &remote, &exclude)).await
    }

    async fn download_tree(
        &self,
        src: &str,
        dst: &str,
        exclude: &[String],
    ) -> Result<(), CommunicatorError> {
        let local = tree_destination(Path::new(dst), src);
        let remote = PathBuf::from(src);
        let root = self.root.clone();
        let exclude = exclude.to_vec();
        run_blocking(move || tree::download(&root, &remote, &local, &exclude)).await
    }
}

#[async_trait]
impl Communicator for ChrootCommunicator {
    /// Exit status: the command's exit code; killed by signal `n` (also by
    /// a cancel, SIGKILL) gives `128 + n`, as a shell reports it; `-1` if
    /// the status could not be read.
    async fn start(&self, cmd: RemoteCommand) -> Result<BoxFuture<'static, i32>, BoxError> {
        Ok(self.start_command(cmd).await?)
    }

    async fn upload(
        &self,
        path: &str,
        content: BoxRead,
        info: Option<FileInfo>,
    ) -> Result<(), BoxError> {
        Ok(self.upload_file(path, content, info).await?)
    }

    async fn upload_dir(&self, dst: &str, src: &str, exclude: &[String]) -> Result<(), BoxError> {
        Ok(self.upload_tree(dst, src, exclude).await?)
    }

    async fn download(&self, path: &str, out: BoxWrite) -> Result<(), BoxError> {
        Ok(self.download_file(path, out).await?)
    }

    async fn download_dir(&self, src: &str, dst: &str, exclude: &[String]) -> Result<(), BoxError> {
        Ok(self.download_tree(src, dst, exclude).await?)
    }
}

/// Copies a child's output to the provisioner's writer, then shuts it down.
fn pump<R>(from: Option<R>, to: Option<BoxWrite>) -> Option<tokio::task::JoinHandle<()>>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    match (from, to) {
        (Some(mut from), Some(mut to)) => Some(tokio::spawn(async move {
            if let Err(e) = tokio::io::copy(&mut from, &mut to).await {
                tracing::warn!(error = %e, "forwarding command output");
            }
            let _ = to.shutdown().await;
        })),
        _ => None,
    }
}

/// Go's `os.FileMode` permission bits as a Unix mode (Go keeps setuid,
/// setgid and sticky in high bits of its own).
fn go_mode_to_unix(go: u32) -> u32 {
    const GO_SETUID: u32 = 1 << 23;
    const GO_SETGID: u32 = 1 << 22;
    const GO_STICKY: u32 = 1 << 20;
    let mut mode = go & 0o777;
    if go & GO_SETUID != 0 {
        mode |= 0o4000;
    }
    if go & GO_SETGID != 0 {
        mode |= 0o2000;
    }
    if go & GO_STICKY != 0 {
        mode |= 0o1000;
    }
    mode
}

/// rsync's rule, as Packer's communicators: `src/` copies the contents of
/// `src` into `dst`; `src` copies the directory itself, as `dst/<name>`.
fn tree_destination(dst: &Path, src: &str) -> PathBuf {
    if src.ends_with('/') {
        return dst.to_path_buf();
    }
    match Path::new(src).file_name() {
        Some(name) => dst.join(name),
        None => dst.to_path_buf(),
    }
}

async fn run_blocking<F>(f: F) -> Result<(), CommunicatorError>
where
    F: FnOnce() -> Result<(), CommunicatorError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(io_err("copy", Path::new(""))(io::Error::other(e))))
}

mod tree;

#[cfg(test)]
mod tests;
