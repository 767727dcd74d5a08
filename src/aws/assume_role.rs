//! `sts:AssumeRole` as a credential provider, with every `assume_role` field and MFA.
//!
//! aws-config has an assume-role provider, but it cannot pass transitive tag
//! keys or an MFA code, both of which upstream's `assume_role`/`mfa_code` offer.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_credential_types::provider::{self, error::CredentialsError, ProvideCredentials};
use aws_credential_types::Credentials;
use aws_sdk_sts::types::{PolicyDescriptorType, Tag};
use aws_smithy_types::error::display::DisplayErrorContext;

use super::settings::AssumeRoleSettings;

/// An MFA device and its current code.
#[derive(Clone)]
pub(crate) struct Mfa {
    /// The device's serial number or ARN (the profile's `mfa_serial`).
    pub serial: String,
    /// The current TOTP code (`mfa_code`).
    pub code: String,
}

/// Assumes one role with a given STS client; the SDK's identity cache calls it again
/// only when the session is about to expire.
pub(crate) struct AssumeRole {
    sts: aws_sdk_sts::Client,
    role: AssumeRoleSettings,
    mfa: Option<Mfa>,
}

impl std::fmt::Debug for AssumeRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssumeRole")
            .field("role", &self.role)
            .field("mfa", &self.mfa.as_ref().map(|m| &m.serial))
            .finish()
    }
}

impl AssumeRole {
    pub(crate) fn new(
        sts: aws_sdk_sts::Client,
        role: AssumeRoleSettings,
        mfa: Option<Mfa>,
    ) -> Self {
        AssumeRole { sts, role, mfa }
    }

    /// The request as the settings describe it, ready to send.
    pub(crate) fn request(
        &self,
    ) -> Result<
        aws_sdk_sts::operation::assume_role::builders::AssumeRoleFluentBuilder,
        CredentialsError,
    > {
        let role = &self.role;
        let session_name = role
            .session_name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default();
                format!("packer-{now}")
            });
        let mut request = self
            .sts
            .assume_role()
            .role_arn(&role.role_arn)
            .role_session_name(session_name)
            .set_duration_seconds(role.duration_seconds.filter(|&d| d > 0))
            .set_external_id(role.external_id.clone().filter(|e| !e.is_empty()))
            .set_policy(role.policy.clone().filter(|p| !p.is_empty()));
        for arn in &role.policy_arns {
            request = request.policy_arns(PolicyDescriptorType::builder().arn(arn).build());
        }
        for (key, value) in &role.tags {
            let tag = Tag::builder()
                .key(key)
                .value(value)
                .build()
                .map_err(CredentialsError::invalid_configuration)?;
            request = request.tags(tag);
        }
        for key in &role.transitive_tag_keys {
            request = request.transitive_tag_keys(key);
        }
        if let Some(mfa) = &self.mfa {
            request = request.serial_number(&mfa.serial).token_code(&mfa.code);
        }
        Ok(request)
    }

    async fn assume(&self) -> provider::Result {
        let out = self.request()?.send().await.map_err(|e| {
            CredentialsError::provider_error(format!(
                "AssumeRole {} failed: {}",
                self.role.role_arn,
                DisplayErrorContext(&e)
            ))
        })?;
        let session = out.credentials.ok_or_else(|| {
            CredentialsError::provider_error(format!(
                "AssumeRole {} returned no credentials",
                self.role.role_arn
            ))
        })?;
        let expiry = SystemTime::try_from(session.expiration).ok();
        Ok(Credentials::new(
            session.access_key_id,
            session.secret_access_key,
            Some(session.session_token),
            expiry,
            "AssumeRole",
        ))
    }
}

impl ProvideCredentials for AssumeRole {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(self.assume())
    }
}
