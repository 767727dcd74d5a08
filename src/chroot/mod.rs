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
