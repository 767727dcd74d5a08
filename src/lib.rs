//! The `amazon-chroot` Packer builder, as an external Packer plugin.
//!
//! Four layers, each a module that never reaches into a sibling's internals:
//! - [`plugin`]: Packer's plugin wire protocol (handshake, yamux, broker,
//!   net/rpc over msgpack, HCL spec encodings). Knows nothing of AWS.
//! - [`builder`]: the amazon-chroot builder: config declaration, validation,
//!   the step pipeline. Knows nothing of the wire.
//! - [`chroot`]: the Linux host side: devices, locks, mounts, the chroot
//!   communicator. Knows nothing of AWS.
//! - [`aws`]: EC2 access: clients, credentials, waiters, errors.

pub mod aws;
pub mod builder;
pub mod chroot;
pub mod plugin;
