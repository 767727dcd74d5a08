//! Packer's plugin wire protocol, plugin side (see ../shared/PROTOCOL.md).
//!
//! Packer talks to plugins over one unix socket carrying yamux, a stream-id
//! broker on top, and Go net/rpc with msgpack bodies on each stream. This
//! module turns those calls into calls of the [`api::Builder`] trait and
//! offers [`api::Ui`], [`api::Hook`] to the builder; nothing here knows AWS.

pub mod api;
pub mod broker;
pub mod cli;
pub mod cty;
pub mod handshake;
pub mod msgpack;
pub mod mux;
pub mod rpc;
pub mod services;
pub mod spec;
