//! Process start as Packer expects it (PROTOCOL.md §1): magic cookie,
//! unix socket listener, the one handshake line on stdout, one connection.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};

/// The environment variable Packer sets when it starts a plugin.
pub const MAGIC_COOKIE_KEY: &str = "PACKER_PLUGIN_MAGIC_COOKIE";

/// Its value (the same in every Packer version).
pub const MAGIC_COOKIE_VALUE: &str =
    "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";

/// Packer waits one minute for the handshake and then connects at once;
/// anything much longer means Packer is gone.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(120);

/// Which handshake line the starting Packer parses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeStyle {
    /// `5|unix|/path`: Packer 1.6 starting a legacy `packer-builder-NAME`.
    Legacy,
    /// `5|0|unix|/path`: Packer ≥1.7 (`start builder NAME`).
    Current,
}

impl HandshakeStyle {
    /// The line (without newline) announcing a unix socket at `path`.
    pub fn line(self, path: &Path) -> String {
        match self {
            HandshakeStyle::Legacy => format!("5|unix|{}", path.display()),
            HandshakeStyle::Current => format!("5|0|unix|{}", path.display()),
        }
    }
}

/// Why the plugin could not get connected.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// Not started by Packer.
    #[error(
        "This is a Packer plugin: Packer starts it itself. Do not run it directly; \
         install it (`packer plugins install --path <this binary> github.com/<org>/amazon-chroot`) \
         and use it from a template. `describe` prints what it provides."
    )]
    NoMagicCookie,
    /// Creating the socket failed.
    #[error("cannot listen on unix socket {path}: {source}")]
    Listen {
        /// The socket path.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// Writing the handshake line failed.
    #[error("cannot write the handshake line to stdout: {0}")]
    Stdout(std::io::Error),
    /// Packer did not connect.
    #[error("Packer did not connect to {0} in time")]
    ConnectTimeout(PathBuf),
    /// Accepting failed.
    #[error("accepting Packer's connection: {0}")]
    Accept(std::io::Error),
}

/// Whether the environment carries Packer's magic cookie.
pub fn has_magic_cookie() -> bool {
    std::env::var(MAGIC_COOKIE_KEY).is_ok_and(|v| v == MAGIC_COOKIE_VALUE)
}

/// Removes the socket file whatever happens after it was created.
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Listens on a fresh unix socket in the temp dir, prints the handshake
/// line (the only thing this process ever writes to stdout), accepts one
/// connection and unlinks the socket.
pub async fn listen_and_accept(style: HandshakeStyle) -> Result<UnixStream, HandshakeError> {
    let (listener, socket) = bind_fresh_socket()?;
    let line = style.line(&socket.0);
    tracing::debug!("handshake: {line}");
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .map_err(HandshakeError::Stdout)?;
    drop(stdout);
    let accepted = tokio::time::timeout(CONNECT_TIMEOUT, listener.accept())
        .await
        .map_err(|_| HandshakeError::ConnectTimeout(socket.0.clone()))?
        .map_err(HandshakeError::Accept)?;
    drop(listener);
    drop(socket);
    Ok(accepted.0)
}

/// Longest socket path that fits `sun_path` (108 bytes on Linux, 104 on
/// macOS) with room for the terminating NUL.
const MAX_SOCKET_PATH: usize = 103;

/// The temp dir, unless a socket path in it would be too long for
/// `sun_path`; then `/tmp`.
fn socket_dir(temp_dir: PathBuf) -> PathBuf {
    // "packer-plugin" + up to 10 digits + the separator.
    if temp_dir.as_os_str().len() + 24 > MAX_SOCKET_PATH {
        PathBuf::from("/tmp")
    } else {
        temp_dir
    }
}

fn bind_fresh_socket() -> Result<(UnixListener, SocketFile), HandshakeError> {
    let dir = socket_dir(std::env::temp_dir());
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ (u64::from(std::process::id()) << 32);
    let mut last_error = None;
    for attempt in 0..16u64 {
        // Same naming as the Go SDK (`os.CreateTemp(dir, "packer-plugin")`).
        let n = seed.wrapping_mul(6364136223846793005).wrapping_add(attempt) % 10_000_000_000;
        let path = dir.join(format!("packer-plugin{n}"));
        match UnixListener::bind(&path) {
            Ok(listener) => return Ok((listener, SocketFile(path))),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last_error = Some((path, e)),
            Err(source) => return Err(HandshakeError::Listen { path, source }),
        }
    }
    let (path, source) = last_error.expect("the loop ran at least once");
    Err(HandshakeError::Listen { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_lines_for_both_packer_generations() {
        let p = Path::new("/tmp/packer-plugin123");
        assert_eq!(
            HandshakeStyle::Legacy.line(p),
            "5|unix|/tmp/packer-plugin123"
        );
        assert_eq!(
            HandshakeStyle::Current.line(p),
            "5|0|unix|/tmp/packer-plugin123"
        );
    }

    #[test]
    fn falls_back_to_tmp_when_temp_dir_is_too_long_for_sun_path() {
        let long = PathBuf::from(format!("/{}", "d".repeat(90)));
        assert_eq!(socket_dir(long), PathBuf::from("/tmp"));
        assert_eq!(
            socket_dir(PathBuf::from("/var/tmp")),
            PathBuf::from("/var/tmp")
        );
    }

    #[tokio::test]
    async fn socket_is_unlinked_when_dropped() {
        let (listener, file) = bind_fresh_socket().unwrap();
        let path = file.0.clone();
        assert!(path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("packer-plugin"));
        assert!(path.exists());
        drop(listener);
        drop(file);
        assert!(!path.exists());
    }
}
