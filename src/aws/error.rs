//! Errors of EC2 access, each carrying what a user needs to act on it.

use std::time::Duration;

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;

use super::imds::ImdsError;
use super::tls_client::error_chain;

/// Codes that mean "slow down" or "AWS hiccuped": a waiter polls again instead of failing.
const TRANSIENT_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "Unavailable",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// Everything that can go wrong talking to EC2, STS or instance metadata.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// The settings contradict each other.
    #[error("invalid AWS settings: {0}")]
    Settings(String),

    /// No region in the settings, the environment, the profile or IMDS.
    #[error(
        "no AWS region: set `region` in the template, AWS_REGION/AWS_DEFAULT_REGION, or `region` \
         in the profile; the fallback to this instance's metadata failed too: {imds}"
    )]
    NoRegion {
        /// Why the instance identity document could not be read.
        imds: ImdsError,
    },

    /// A credential provider (profile, assume role, instance role…) failed.
    #[error("could not load AWS credentials ({source_name}): {message}")]
    Credentials {
        /// Which provider failed.
        source_name: String,
        /// The provider's explanation (never the credentials themselves).
        message: String,
    },

    /// Vault's AWS secrets engine did not hand out credentials.
    #[error("vault_aws_engine: reading {path} from Vault failed: {message}")]
    Vault {
        /// The Vault path, e.g. `aws/creds/builder`.
        path: String,
        /// What went wrong (never the token).
        message: String,
    },

    /// An API call returned an error.
    #[error("{operation}{} failed: {}{message}{}",
        resource.as_deref().map(|r| format!(" on {r}")).unwrap_or_default(),
        code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default(),
        authorization_hint(operation, code.as_deref(), decoded.as_deref()))]
    Api {
        /// The API operation, e.g. `CreateVolume`.
        operation: &'static str,
        /// The resource the call was about, e.g. `vol-0123`.
        resource: Option<String>,
        /// The AWS error code, e.g. `InvalidVolume.NotFound`; `None` for transport errors.
        code: Option<String>,
        /// The AWS error message, or the transport error chain.
        message: String,
        /// The decoded `UnauthorizedOperation` message, when decoding was asked for.
        decoded: Option<String>,
        /// Whether the call got no usable answer (connection lost, timeout, HTTP 5xx,
        /// unreadable response): asking again may work.
        retryable: bool,
    },

    /// Instance metadata could not be read.
    #[error(transparent)]
    Imds(#[from] ImdsError),

    /// A waited-for resource entered a state it never leaves.
    #[error("{what} failed: {reason}")]
    ResourceFailed {
        /// What was awaited, e.g. `image ami-0123 to become available`.
        what: String,
        /// The resource's own reason (state, StateReason…).
        reason: String,
    },

    /// A waiter ran out of time or attempts.
    #[error("gave up waiting for {what} after {attempts} polls in {:.0?}{}", waited,
        last.as_deref().map(|l| format!(" (last seen: {l})")).unwrap_or_default())]
    Timeout {
        /// What was awaited.
        what: String,
        /// How many times it was polled.
        attempts: u32,
        /// How long it was awaited.
        waited: Duration,
        /// The last progress reported, or the last transient error.
        last: Option<String>,
    },

    /// The build was cancelled while waiting.
    #[error("cancelled while waiting for {what}")]
    Cancelled {
        /// What was awaited.
        what: String,
    },
}

/// What to do about a refused call: name the IAM action, and either show the
/// decoded reason or say how to get it.
fn authorization_hint(operation: &str, code: Option<&str>, decoded: Option<&str>) -> String {
    match (code, decoded) {
        (Some("UnauthorizedOperation"), None) => format!(
            " (the credentials lack the IAM permission ec2:{operation}; \
             set decode_authorization_messages = true to see the decoded reason)"
        ),
        (Some("UnauthorizedOperation"), Some(d)) => format!(
            " (the credentials lack the IAM permission ec2:{operation}; \
             decoded authorization message: {d})"
        ),
        (_, Some(d)) => format!(" (decoded authorization message: {d})"),
        _ => String::new(),
    }
}

impl AwsError {
    /// Wraps an SDK error with the operation and the resource it concerned.
    pub fn api<E>(
        operation: &'static str,
        resource: impl Into<Option<String>>,
        err: SdkError<E, HttpResponse>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let retryable = match &err {
            // A user error (e.g. a refused TLS certificate) fails the same way every time.
            SdkError::DispatchFailure(failure) => !failure.is_user(),
            SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
            SdkError::ServiceError(service) => service.raw().status().is_server_error(),
            _ => false,
        };
        let code = err.code().map(str::to_owned);
        let transport = match &err {
            // The connector's cause already names the endpoint and what failed there
            // (see tls_client::EndpointError); "dispatch failure: io error" adds nothing.
            SdkError::DispatchFailure(failure) => failure
                .as_connector_error()
                .and_then(std::error::Error::source)
                .map(error_chain),
            _ => None,
        };
        let message = match (err.message(), transport) {
            (Some(m), _) => m.to_owned(),
            (None, Some(transport)) => transport,
            // No service message: show the whole chain (e.g. "connection refused").
            (None, None) => DisplayErrorContext(&err).to_string(),
        };
        AwsError::Api {
            operation,
            resource: resource.into(),
            code,
            message,
            decoded: None,
            retryable,
        }
    }

    /// The AWS error code, when this is an API error with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            AwsError::Api { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// Whether polling again may succeed: throttling, AWS-side errors, lost connections.
    pub fn is_transient(&self) -> bool {
        match self {
            AwsError::Api {
                code, retryable, ..
            } => {
                *retryable
                    || code
                        .as_deref()
                        .is_some_and(|c| TRANSIENT_CODES.contains(&c))
            }
            _ => false,
        }
    }

    /// Whether AWS said the resource does not exist (`InvalidVolume.NotFound`,
    /// `InvalidAMIID.NotFound`…; a malformed id is a different, final error).
    pub fn is_not_found(&self) -> bool {
        self.code().is_some_and(|c| c.ends_with("NotFound"))
    }

    /// The encoded message of an `UnauthorizedOperation` error, if this is one.
    pub fn encoded_authorization_message(&self) -> Option<&str> {
        const MARKER: &str = "Encoded authorization failure message:";
        match self {
            AwsError::Api {
                code: Some(code),
                message,
                decoded: None,
                ..
            } if code == "UnauthorizedOperation" => message
                .find(MARKER)
                .map(|at| message[at + MARKER.len()..].trim())
                .filter(|m| !m.is_empty()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: Option<&str>, message: &str) -> AwsError {
        AwsError::Api {
            operation: "DescribeVolumes",
            resource: Some("vol-1".into()),
            code: code.map(str::to_owned),
            message: message.into(),
            decoded: None,
            retryable: false,
        }
    }

    #[test]
    fn api_error_names_operation_resource_and_code() {
        let shown = api(
            Some("InvalidVolume.NotFound"),
            "The volume 'vol-1' does not exist.",
        )
        .to_string();
        assert_eq!(
            shown,
            "DescribeVolumes on vol-1 failed: InvalidVolume.NotFound: The volume 'vol-1' does not exist."
        );
    }

    #[test]
    fn throttling_is_transient_and_not_found_is_not() {
        assert!(api(Some("RequestLimitExceeded"), "slow down").is_transient());
        assert!(!api(Some("InvalidVolume.NotFound"), "gone").is_transient());
        assert!(api(Some("InvalidVolume.NotFound"), "gone").is_not_found());
        assert!(!api(Some("UnauthorizedOperation"), "no").is_not_found());
    }

    #[test]
    fn unauthorized_operation_names_the_action_and_suggests_decoding() {
        let shown = api(
            Some("UnauthorizedOperation"),
            "You are not authorized to perform this operation. Encoded authorization failure message: AbC-123",
        )
        .to_string();
        assert_eq!(
            shown,
            "DescribeVolumes on vol-1 failed: UnauthorizedOperation: You are not authorized to \
             perform this operation. Encoded authorization failure message: AbC-123 (the \
             credentials lack the IAM permission ec2:DescribeVolumes; set \
             decode_authorization_messages = true to see the decoded reason)"
        );
    }

    #[test]
    fn unauthorized_operation_shows_the_decoded_message_when_decoded() {
        let shown = AwsError::Api {
            operation: "CreateVolume",
            resource: None,
            code: Some("UnauthorizedOperation".into()),
            message: "You are not authorized to perform this operation.".into(),
            decoded: Some("{\"allowed\":false}".into()),
            retryable: false,
        }
        .to_string();
        assert_eq!(
            shown,
            "CreateVolume failed: UnauthorizedOperation: You are not authorized to perform this \
             operation. (the credentials lack the IAM permission ec2:CreateVolume; decoded \
             authorization message: {\"allowed\":false})"
        );
    }

    #[test]
    fn extracts_encoded_authorization_message() {
        let err = api(
            Some("UnauthorizedOperation"),
            "You are not authorized to perform this operation. Encoded authorization failure message: AbC-123",
        );
        assert_eq!(err.encoded_authorization_message(), Some("AbC-123"));
        assert_eq!(
            api(Some("AuthFailure"), "x").encoded_authorization_message(),
            None
        );
    }
}
