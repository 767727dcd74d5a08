//! The HTTP stack under every SDK client: hyper with rustls on ring.
//!
//! The SDK's default stack uses aws-lc-rs, whose C build needs cmake and
//! minutes on our 2-core CI; ring gives the same TLS without it.

use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

use super::error::AwsError;

/// An HTTPS client (plain `http://` endpoints work too, for local EC2 look-alikes).
pub(crate) fn client(insecure_skip_tls_verify: bool) -> Result<SharedHttpClient, AwsError> {
    if insecure_skip_tls_verify {
        return Ok(super::insecure_tls::client());
    }
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https())
}
