//! The Linux host side of a chroot build: devices, locks, mounts, and the chroot communicator.
//!
//! Nothing here knows AWS: the builder passes in what EC2 said (volume ids,
//! attached device names) and a renderer for `command_wrapper`.
//!
//! - [`lock`]: the host-wide device lock ([`DeviceLock`]).
//! - [`device`]: choosing a free device name, finding the attached volume's node.
//! - [`host_shell`]: host commands through `command_wrapper`, cancellable.
//! - [`mounts`]: the root mount and `chroot_mounts`, unmounted in reverse,
//!   processes still inside the chroot terminated.
//! - [`copy_files`]: `copy_files`, with the originals put back exactly.
//! - [`confine`]: resolving paths inside the chroot without escaping it.
//! - [`communicator`]: the [`ChrootCommunicator`] provisioners use.
//!
//! How the builder's steps use it (EC2 calls are the builder's):
//!
//! ```no_run
//! # use std::{path::Path, sync::Arc, time::Duration};
//! # use amazon_chroot::chroot::{device, copy_files::CopiedFiles, host_shell::*, mounts::*, *};
//! # async fn build(cancel: tokio_util::sync::CancellationToken) -> Result<(), Box<dyn std::error::Error>> {
//! let mut lock = DeviceLock::acquire(Path::new(lock::DEFAULT_LOCK_PATH), Duration::from_secs(600), &cancel).await?;
//! let attached_on_instance = vec!["/dev/xvda".to_string()]; // from DescribeInstances
//! let choice = device::pick_free_device(Path::new("/dev"), &attached_on_instance)?;
//! // … CreateVolume, AttachVolume(choice.api_name), wait until attached …
//! let found = device::AttachedDeviceQuery::new("vol-0123", &choice.api_name, None)
//!     .wait(Duration::from_secs(60), &cancel)
//!     .await?;
//! lock.release();
//! let shell = HostShell::new(identity_wrapper()); // or the rendered command_wrapper
//! // pre_mount_commands: shell.run_streaming(cmd, &cancel, tx)
//! let partition = found.wait_for_partition("1", Duration::from_secs(30), &cancel).await?;
//! let mut mounts = ChrootMounts::mount_root(
//!     shell, &partition, Path::new("/mnt/packer-amazon-chroot-volumes/xvdf"), &[], &cancel,
//! ).await?;
//! // post_mount_commands
//! mounts.mount_extra(&ExtraMount::defaults(), &cancel).await?;
//! let copied = CopiedFiles::copy_in(mounts.root(), &["/etc/resolv.conf".into()]).await?;
//! let comm = Arc::new(ChrootCommunicator::new(mounts.root(), identity_wrapper(), cancel.clone()));
//! // hook.run("packer_provision", data, comm) …
//! // early cleanup (and the steps' cleanups, which are no-ops after it):
//! copied.restore().await?;
//! let report = mounts.unmount_all().await?; // tell the user about report.terminated
//! // … DetachVolume, CreateSnapshot, RegisterImage …
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod communicator;
pub mod confine;
pub mod copy_files;
pub mod device;
pub mod host_shell;
pub mod lock;
pub mod mounts;
#[cfg(test)]
mod test_fixtures;

pub use communicator::ChrootCommunicator;
pub use lock::DeviceLock;
pub use mounts::ChrootMounts;
