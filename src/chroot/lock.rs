//! The host-wide device lock: one build at a time picks a device and
//! attaches its volume, so two builds never ask EC2 for the same name.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use tokio_util::sync::CancellationToken;

/// The lock file HashiCorp's builder uses, so that its builds and ours
/// exclude each other on the same host.
pub const DEFAULT_LOCK_PATH: &str = "/var/lock/packer-chroot/lock";

/// How often a contended lock is tried again. Short enough that a waiting
/// build starts soon after the holder releases; `flock` is not woken up
/// asynchronously, and a blocking `flock` could not be cancelled.
const RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// Why the device lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The lock directory or file could not be created or opened.
    #[error("cannot open the device lock file {path:?}: {source}")]
    Open {
        /// The lock file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// `flock` failed for a reason other than contention.
    #[error("cannot lock {path:?}: {source}")]
    Flock {
        /// The lock file.
        path: PathBuf,
        /// The errno.
        source: Errno,
    },
    /// Another build held the lock for longer than the timeout.
    #[error("timed out after {waited:?} waiting for the device lock {path:?} (another chroot build holds it)")]
    TimedOut {
        /// The lock file.
        path: PathBuf,
        /// How long was waited.
        waited: Duration,
    },
    /// The build was cancelled while waiting.
    #[error("cancelled while waiting for the device lock {path:?}")]
    Cancelled {
        /// The lock file.
        path: PathBuf,
    },
}

/// An exclusive `flock` on the device lock file, released on drop or by
/// [`DeviceLock::release`].
#[derive(Debug)]
pub struct DeviceLock {
    path: PathBuf,
    held: Option<Flock<File>>,
}

impl DeviceLock {
    /// Takes the lock at `path` (creating its directory), waiting at most
    /// `timeout` and giving up as soon as `cancel` fires. The file is not
    /// truncated, unlike upstream, since another holder has it open.
    pub async fn acquire(
        path: &Path,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<Self, LockError> {
        let file = open_lock_file(path).await?;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut file = file;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(held) => {
                    tracing::debug!(path = %path.display(), "device lock acquired");
                    return Ok(Self {
                        path: path.to_path_buf(),
                        held: Some(held),
                    });
                }
                Err((f, Errno::EWOULDBLOCK)) | Err((f, Errno::EINTR)) => file = f,
                Err((_, errno)) => {
                    return Err(LockError::Flock {
                        path: path.to_path_buf(),
                        source: errno,
                    })
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(LockError::TimedOut {
                    path: path.to_path_buf(),
                    waited: timeout,
                });
            }
            tokio::select! {
                _ = cancel.cancelled() => {
                    return Err(LockError::Cancelled { path: path.to_path_buf() })
                }
                _ = tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + RETRY_INTERVAL)) => {}
            }
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the lock is still held.
    pub fn is_held(&self) -> bool {
        self.held.is_some()
    }

    /// Releases the lock now (the early unlock after attach). Idempotent.
    pub fn release(&mut self) {
        if let Some(held) = self.held.take() {
            // Closing the descriptor releases the lock even if LOCK_UN fails.
            if let Err((_, errno)) = held.unlock() {
                tracing::warn!(path = %self.path.display(), %errno, "unlocking failed; closing the lock file releases it");
            }
            tracing::debug!(path = %self.path.display(), "device lock released");
        }
    }
}

impl Drop for DeviceLock {
    fn drop(&mut self) {
        self.release();
    }
}

async fn open_lock_file(path: &Path) -> Result<File, LockError> {
    let owned = path.to_path_buf();
    let result = tokio::task::spawn_blocking(move || {
        if let Some(dir) = owned.parent() {
            std::fs::create_dir_all(dir)?;
        }
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&owned)
    })
    .await
    .unwrap_or_else(|join| Err(io::Error::other(join)));
    result.map_err(|source| LockError::Open {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn second_holder_waits_until_the_first_releases() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/lock");
        let never = CancellationToken::new();
        let mut first = DeviceLock::acquire(&path, Duration::from_secs(1), &never)
            .await
            .unwrap();
        assert!(first.is_held());

        let path2 = path.clone();
        let waiter = tokio::spawn(async move {
            let cancel = CancellationToken::new();
            DeviceLock::acquire(&path2, Duration::from_secs(10), &cancel).await
        });
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(
            !waiter.is_finished(),
            "second holder got the lock while the first held it"
        );
        first.release();
        assert!(!first.is_held());
        let second = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("second holder never got the lock")
            .unwrap()
            .unwrap();
        assert!(second.is_held());
    }

    #[tokio::test]
    async fn drop_releases_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let never = CancellationToken::new();
        let first = DeviceLock::acquire(&path, Duration::from_secs(1), &never)
            .await
            .unwrap();
        drop(first);
        DeviceLock::acquire(&path, Duration::from_millis(300), &never)
            .await
            .expect("lock still held after drop");
    }

    #[tokio::test]
    async fn gives_up_after_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let never = CancellationToken::new();
        let _first = DeviceLock::acquire(&path, Duration::from_secs(1), &never)
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let err = DeviceLock::acquire(&path, Duration::from_millis(300), &never)
            .await
            .unwrap_err();
        assert!(matches!(err, LockError::TimedOut { .. }), "{err}");
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn cancel_stops_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let never = CancellationToken::new();
        let _first = DeviceLock::acquire(&path, Duration::from_secs(1), &never)
            .await
            .unwrap();
        let cancel = CancellationToken::new();
        let c2 = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            c2.cancel();
        });
        let started = std::time::Instant::now();
        let err = DeviceLock::acquire(&path, Duration::from_secs(60), &cancel)
            .await
            .unwrap_err();
        assert!(matches!(err, LockError::Cancelled { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
