//! Host commands: every command the build runs on the host (mount, umount,
//! chroot, pre/post-mount commands) goes through the user's
//! `command_wrapper` (e.g. `sudo {{.Command}}`) and `/bin/sh -c`, as
//! upstream did, but can be cancelled and keeps its output for errors.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::plugin::api::BoxError;

/// Renders `command_wrapper` around a command (`{{.Command}}` → text).
/// Passed in by the builder so this layer needs no template engine.
pub type CommandWrapper = Arc<dyn Fn(&str) -> Result<String, BoxError> + Send + Sync>;

/// The wrapper `{{.Command}}`: the command unchanged.
pub fn identity_wrapper() -> CommandWrapper {
    Arc::new(|c: &str| Ok(c.to_string()))
}

/// Quotes `s` for `/bin/sh` so that nothing in it is expanded: single
/// quotes, with each embedded `'` written as `'\''`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The exit code of a finished process; a death by signal `n` gives
/// `128 + n`, as shells report it, so provisioners see a non-zero code.
pub fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => -1,
    }
}

/// Errors of host commands.
#[derive(Debug, thiserror::Error)]
pub enum HostCommandError {
    /// The command wrapper template failed to render.
    #[error("cannot render command_wrapper around {command:?}: {source}")]
    Wrapper {
        /// The command being wrapped.
        command: String,
        /// The template error.
        source: BoxError,
    },
    /// `/bin/sh` could not be started.
    #[error("cannot run {command:?}: {source}")]
    Spawn {
        /// The wrapped command.
        command: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The command ended with a non-zero status.
    #[error("command {command:?} failed with exit code {code}: {}", stderr.trim())]
    Failed {
        /// The wrapped command.
        command: String,
        /// Its exit code ([`exit_code`]).
        code: i32,
        /// What it wrote on stdout.
        stdout: String,
        /// What it wrote on stderr.
        stderr: String,
    },
    /// The build was cancelled; the command was killed.
    #[error("command {0:?} was cancelled")]
    Cancelled(String),
}

/// The captured result of a host command that ran to completion.
#[derive(Debug, Clone)]
pub struct HostOutput {
    /// Exit code ([`exit_code`]).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs host commands through the command wrapper.
#[derive(Clone)]
pub struct HostShell {
    wrapper: CommandWrapper,
}

impl std::fmt::Debug for HostShell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostShell").finish_non_exhaustive()
    }
}

impl HostShell {
    /// A shell using `wrapper` for every command.
    pub fn new(wrapper: CommandWrapper) -> Self {
        Self { wrapper }
    }

    /// The wrapped text of `command`.
    pub fn wrap(&self, command: &str) -> Result<String, HostCommandError> {
        (self.wrapper)(command).map_err(|source| HostCommandError::Wrapper {
            command: command.to_string(),
            source,
        })
    }

    /// A `/bin/sh -c <wrapped>` command in its own process group, so that a
    /// cancel kills the shell and everything it started.
    pub fn command(&self, command: &str) -> Result<(Command, String), HostCommandError> {
        let wrapped = self.wrap(command)?;
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(&wrapped)
            .process_group(0)
            .kill_on_drop(true);
        Ok((cmd, wrapped))
    }

    /// Runs `command` to completion, capturing its output; a non-zero exit
    /// is [`HostCommandError::Failed`]. `cancel` kills it.
    pub async fn run(
        &self,
        command: &str,
        cancel: &CancellationToken,
    ) -> Result<HostOutput, HostCommandError> {
        let (out, wrapped) = self.output_and_text(command, cancel).await?;
        if out.code != 0 {
            return Err(HostCommandError::Failed {
                command: wrapped,
                code: out.code,
                stdout: out.stdout,
                stderr: out.stderr,
            });
        }
        Ok(out)
    }

    /// Runs `command` to completion and returns its output whatever its
    /// exit code. `cancel` kills it.
    pub async fn output(
        &self,
        command: &str,
        cancel: &CancellationToken,
    ) -> Result<HostOutput, HostCommandError> {
        Ok(self.output_and_text(command, cancel).await?.0)
    }

    /// [`HostShell::output`] and the wrapped text (rendered once, as the
    /// wrapper may have side effects).
    async fn output_and_text(
        &self,
        command: &str,
        cancel: &CancellationToken,
    ) -> Result<(HostOutput, String), HostCommandError> {
        let (mut cmd, wrapped) = self.command(command)?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        tracing::debug!(command = %wrapped, "running host command");
        let child = cmd.spawn().map_err(|source| HostCommandError::Spawn {
            command: wrapped.clone(),
            source,
        })?;
        let pgid = child.id();
        tokio::select! {
            out = child.wait_with_output() => {
                let out = out.map_err(|source| HostCommandError::Spawn { command: wrapped.clone(), source })?;
                Ok((HostOutput {
                    code: exit_code(out.status),
                    stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                }, wrapped))
            }
            _ = cancel.cancelled() => {
                kill_group(pgid);
                Err(HostCommandError::Cancelled(wrapped))
            }
        }
    }

    /// Like [`HostShell::run`], but also sends every output line to
    /// `lines` as it comes (pre/post-mount commands show their output to
    /// the user while they run, as upstream did).
    pub async fn run_streaming(
        &self,
        command: &str,
        cancel: &CancellationToken,
        lines: mpsc::UnboundedSender<(OutputStream, String)>,
    ) -> Result<HostOutput, HostCommandError> {
        let (mut cmd, wrapped) = self.command(command)?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|source| HostCommandError::Spawn {
            command: wrapped.clone(),
            source,
        })?;
        let out_task = collect_lines(child.stdout.take(), OutputStream::Stdout, lines.clone());
        let err_task = collect_lines(child.stderr.take(), OutputStream::Stderr, lines);
        let status = tokio::select! {
            status = child.wait() => status.map_err(|source| HostCommandError::Spawn { command: wrapped.clone(), source })?,
            _ = cancel.cancelled() => {
                kill_group(child.id());
                let _ = child.wait().await;
                return Err(HostCommandError::Cancelled(wrapped));
            }
        };
        let stdout = out_task.await.unwrap_or_default();
        let stderr = err_task.await.unwrap_or_default();
        let code = exit_code(status);
        if code != 0 {
            return Err(HostCommandError::Failed {
                command: wrapped,
                code,
                stdout,
                stderr,
            });
        }
        Ok(HostOutput {
            code,
            stdout,
            stderr,
        })
    }
}

/// Which output stream a line of [`HostShell::run_streaming`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Reads `from` line by line, sending each line and returning them all.
fn collect_lines<R>(
    from: Option<R>,
    stream: OutputStream,
    lines: mpsc::UnboundedSender<(OutputStream, String)>,
) -> tokio::task::JoinHandle<String>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut all = String::new();
        let Some(from) = from else { return all };
        let mut reader = BufReader::new(from).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            all.push_str(&line);
            all.push('\n');
            // The receiver may be gone; the output is still captured.
            let _ = lines.send((stream, line));
        }
        all
    })
}

/// Kills the process group a [`HostShell::command`] started (its leader's
/// pid is the group id). Ignores a group that is already gone.
pub fn kill_group(leader: Option<u32>) {
    if let Some(pid) = leader.and_then(|p| i32::try_from(p).ok()) {
        if let Err(e) = killpg(Pid::from_raw(pid), Signal::SIGKILL) {
            tracing::debug!(pid, %e, "killing process group");
        }
    }
}

/// Kills `child`'s process group when `cancel` fires, and reaps the child.
/// Returns its exit status, or `None` if waiting failed.
pub async fn wait_or_kill(child: &mut Child, cancel: &CancellationToken) -> Option<ExitStatus> {
    let pgid = child.id();
    tokio::select! {
        status = child.wait() => status.ok(),
        _ = cancel.cancelled() => {
            kill_group(pgid);
            child.wait().await.ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn quotes_everything_the_shell_would_expand() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$HOME `id`"), "'$HOME `id`'");
    }

    #[tokio::test]
    async fn runs_through_the_wrapper_and_captures_output() {
        let wrapper: CommandWrapper = Arc::new(|c: &str| Ok(format!("env WRAPPED=yes {c}")));
        let shell = HostShell::new(wrapper);
        let never = CancellationToken::new();
        let out = shell
            .run("sh -c 'echo $WRAPPED; echo err >&2'", &never)
            .await
            .unwrap();
        assert_eq!(out.stdout, "yes\n");
        assert_eq!(out.stderr, "err\n");
        let err = shell
            .run("sh -c 'echo broken >&2; exit 3'", &never)
            .await
            .unwrap_err();
        match err {
            HostCommandError::Failed { code, stderr, .. } => {
                assert_eq!(code, 3);
                assert_eq!(stderr, "broken\n");
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[tokio::test]
    async fn wrapper_errors_are_reported() {
        let wrapper: CommandWrapper = Arc::new(|_: &str| Err("bad template".into()));
        let err = HostShell::new(wrapper)
            .run("true", &CancellationToken::new())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("bad template"), "{err}");
    }

    #[tokio::test]
    async fn cancel_kills_the_command_and_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        let shell = HostShell::new(identity_wrapper());
        let cancel = CancellationToken::new();
        let c2 = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            c2.cancel();
        });
        let started = Instant::now();
        let cmd = format!("(sleep 2; touch {}) & sleep 30; wait", marker.display());
        let err = shell.run(&cmd, &cancel).await.unwrap_err();
        assert!(matches!(err, HostCommandError::Cancelled(_)), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(
            !marker.exists(),
            "a child of the cancelled command kept running"
        );
    }

    #[tokio::test]
    async fn streams_output_lines_while_running() {
        let shell = HostShell::new(identity_wrapper());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let out = shell
            .run_streaming(
                "echo one; echo two >&2; echo three",
                &CancellationToken::new(),
                tx,
            )
            .await
            .unwrap();
        assert_eq!(out.stdout, "one\nthree\n");
        assert_eq!(out.stderr, "two\n");
        let mut got = Vec::new();
        while let Some(item) = rx.recv().await {
            got.push(item);
        }
        got.sort();
        assert_eq!(
            got,
            vec![
                (OutputStream::Stdout, "one".to_string()),
                (OutputStream::Stdout, "three".to_string()),
                (OutputStream::Stderr, "two".to_string()),
            ]
        );
        let (tx, _rx) = mpsc::unbounded_channel();
        let err = shell
            .run_streaming("echo bad >&2; exit 4", &CancellationToken::new(), tx)
            .await
            .unwrap_err();
        assert!(
            matches!(err, HostCommandError::Failed { code: 4, .. }),
            "{err}"
        );
    }
}
