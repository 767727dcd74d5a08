//! Plain settings for EC2 access, mapped by the builder from its config.
//!
//! Field names follow the upstream `AccessConfig` options so the mapping is
//! one line per option; nothing here knows how the options were decoded.

use std::collections::BTreeMap;
use std::fmt;

/// How to reach EC2: region, credentials, endpoint, retries and polling.
///
/// `Debug` prints every secret (`secret_key`, `token`, `mfa_code`) as
/// `<redacted>`, so the struct can be logged as a whole.
#[derive(Clone, Default, PartialEq)]
pub struct AwsSettings {
    /// Static access key id (`access_key`); must come with `secret_key`.
    pub access_key: Option<String>,
    /// Static secret access key (`secret_key`).
    pub secret_key: Option<String>,
    /// Session token for static keys (`token`); `AWS_SESSION_TOKEN` when unset.
    pub token: Option<String>,
    /// Shared-config profile name (`profile`).
    pub profile: Option<String>,
    /// Path of the shared credentials file (`shared_credentials_file`).
    pub shared_credentials_file: Option<String>,
    /// Build region (`region`); resolved from env, profile, then IMDS when unset.
    pub region: Option<String>,
    /// Role to assume on top of the resolved credentials (`assume_role`).
    pub assume_role: Option<AssumeRoleSettings>,
    /// Current TOTP code of the MFA device named by the profile's `mfa_serial`.
    pub mfa_code: Option<String>,
    /// EC2 endpoint override (`custom_endpoint_ec2`), for EC2-compatible clouds.
    pub custom_endpoint_ec2: Option<String>,
    /// Accept any TLS certificate (`insecure_skip_tls_verify`).
    pub insecure_skip_tls_verify: bool,
    /// Retries after the first attempt of every API call; 0 means upstream's 10.
    pub max_retries: u32,
    /// Leave the instance-metadata credential provider out of the chain.
    pub skip_metadata_api_check: bool,
    /// Do not call `sts:GetCallerIdentity` to check the credentials up front.
    pub skip_credential_validation: bool,
    /// Decode `UnauthorizedOperation` messages with `sts:DecodeAuthorizationMessage`.
    pub decode_authorization_messages: bool,
    /// Waiter tuning (`aws_polling`).
    pub polling: PollingSettings,
    /// Credentials from Vault's AWS secrets engine (`vault_aws_engine`).
    pub vault_aws_engine: Option<VaultAwsEngineSettings>,
}

/// The `assume_role` block: an STS `AssumeRole` call made with the base credentials.
#[derive(Clone, Default, PartialEq)]
pub struct AssumeRoleSettings {
    /// ARN of the role to assume.
    pub role_arn: String,
    /// Session lifetime in seconds; STS's default (1 h) when unset.
    pub duration_seconds: Option<i32>,
    /// External id the role's trust policy requires.
    pub external_id: Option<String>,
    /// Inline session policy (JSON).
    pub policy: Option<String>,
    /// Managed policies limiting the session.
    pub policy_arns: Vec<String>,
    /// Session name; a generated `packer-<time>` name when unset.
    pub session_name: Option<String>,
    /// Session tags.
    pub tags: BTreeMap<String, String>,
    /// Session tag keys that pass on to chained role sessions.
    pub transitive_tag_keys: Vec<String>,
}

/// The `aws_polling` block; `None` defers to the environment and then to our backoff.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollingSettings {
    /// Fixed delay between two polls, in seconds.
    pub delay_seconds: Option<u64>,
    /// Maximum number of polls.
    pub max_attempts: Option<u32>,
}

/// The `vault_aws_engine` block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VaultAwsEngineSettings {
    /// The Vault role to get credentials for.
    pub name: String,
    /// With an assumed_role/federation_token Vault role: the IAM role ARN to assume.
    pub role_arn: Option<String>,
    /// Lifetime of STS credentials, e.g. `3600s` (only with `role_arn`).
    pub ttl: Option<String>,
    /// Mount path of the AWS secrets engine; `aws` when unset.
    pub engine_name: Option<String>,
}

/// Shows whether a secret is set without showing it.
struct Redacted<'a>(&'a Option<String>);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(_) => f.write_str("Some(<redacted>)"),
            None => f.write_str("None"),
        }
    }
}

impl fmt::Debug for AwsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsSettings")
            .field("access_key", &self.access_key)
            .field("secret_key", &Redacted(&self.secret_key))
            .field("token", &Redacted(&self.token))
            .field("profile", &self.profile)
            .field("shared_credentials_file", &self.shared_credentials_file)
            .field("region", &self.region)
            .field("assume_role", &self.assume_role)
            .field("mfa_code", &Redacted(&self.mfa_code))
            .field("custom_endpoint_ec2", &self.custom_endpoint_ec2)
            .field("insecure_skip_tls_verify", &self.insecure_skip_tls_verify)
            .field("max_retries", &self.max_retries)
            .field("skip_metadata_api_check", &self.skip_metadata_api_check)
            .field(
                "skip_credential_validation",
                &self.skip_credential_validation,
            )
            .field(
                "decode_authorization_messages",
                &self.decode_authorization_messages,
            )
            .field("polling", &self.polling)
            .field("vault_aws_engine", &self.vault_aws_engine)
            .finish()
    }
}

impl fmt::Debug for AssumeRoleSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The external id is a shared secret between the role owner and us.
        f.debug_struct("AssumeRoleSettings")
            .field("role_arn", &self.role_arn)
            .field("duration_seconds", &self.duration_seconds)
            .field("external_id", &Redacted(&self.external_id))
            .field("policy", &self.policy.as_ref().map(|_| "<set>"))
            .field("policy_arns", &self.policy_arns)
            .field("session_name", &self.session_name)
            .field("tags", &self.tags)
            .field("transitive_tag_keys", &self.transitive_tag_keys)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_secret_key_token_mfa_code_and_external_id() {
        let settings = AwsSettings {
            access_key: Some("AKIDVISIBLE".into()),
            secret_key: Some("s3cr3t-key-value".into()),
            token: Some("session-token-value".into()),
            mfa_code: Some("123456".into()),
            assume_role: Some(AssumeRoleSettings {
                role_arn: "arn:aws:iam::123456789012:role/build".into(),
                external_id: Some("ext-secret".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let shown = format!("{settings:?}");
        for secret in [
            "s3cr3t-key-value",
            "session-token-value",
            "123456\"",
            "ext-secret",
        ] {
            assert!(!shown.contains(secret), "{secret} leaked in {shown}");
        }
        assert!(shown.contains("AKIDVISIBLE"));
        assert!(shown.contains("role/build"));
        assert!(shown.contains("Some(<redacted>)"));
    }
}
