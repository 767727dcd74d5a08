//! EC2 access for the amazon-chroot builder: client construction, region and
//! credential resolution, instance metadata, one polling helper, errors.
//!
//! Knows nothing of Packer's wire or of the builder's config types: the
//! builder maps its options onto [`AwsSettings`] and calls [`connect`].
//!
//! ```no_run
//! # async fn build() -> Result<(), amazon_chroot::aws::AwsError> {
//! use amazon_chroot::aws::{connect, AwsSettings, Imds, Poller};
//! use tokio_util::sync::CancellationToken;
//!
//! let settings = AwsSettings::default();
//! let ec2 = connect(&settings).await?;
//! let poller = Poller::new(settings.polling, CancellationToken::new());
//! let instance = Imds::from_env()?.instance_identity().await?;
//! # let _ = (ec2, poller, instance);
//! # Ok(()) }
//! ```

mod assume_role;
mod cached_credentials;
mod connect;
mod error;
mod imds;
mod instance;
mod poller;
mod settings;
mod tls_client;
mod vault;
mod waiters;

#[cfg(test)]
mod canned_http;
#[cfg(test)]
mod connect_tests;
#[cfg(test)]
mod moto_tests;
#[cfg(test)]
pub(crate) mod test_env;

pub use connect::{connect, Ec2, RegionSource};
pub use error::AwsError;
pub use imds::{
    Imds, ImdsCause, ImdsError, InstanceIdentity, DEFAULT_ENDPOINT as IMDS_DEFAULT_ENDPOINT,
};
pub use poller::{Limit, Pace, Poller, Probe, DEFAULT_TIMEOUT as POLL_DEFAULT_TIMEOUT};
pub use settings::{AssumeRoleSettings, AwsSettings, PollingSettings, VaultAwsEngineSettings};
