//! The RPC services of a builder plugin (PROTOCOL.md §4): the `Builder`
//! served on stream 0, the `Ui`/`Hook` clients on the Run stream, the
//! `Communicator`+`Ui` served on a hook stream and the `Artifact` served
//! after `Run`.

mod artifact;
mod builder;
mod hook_stream;
mod prepare;
mod run_stream;

pub use builder::{serve_builder, BuilderHandler, SpecEncoding};
pub use prepare::{decode_prepare_args, PrepareDecodeError};

use crate::plugin::broker::BrokerError;
use crate::plugin::rpc::{CallError, ClientError};

impl From<BrokerError> for CallError {
    fn from(e: BrokerError) -> CallError {
        CallError::Failed(e.to_string())
    }
}

impl From<ClientError> for CallError {
    fn from(e: ClientError) -> CallError {
        CallError::Failed(e.to_string())
    }
}
