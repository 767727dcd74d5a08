//! The Linux host side of a chroot build: devices, locks, mounts, and the chroot communicator.
