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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_carries_every_assume_role_field_and_the_mfa_code() {
        let sts = aws_sdk_sts::Client::from_conf(
            aws_sdk_sts::Config::builder()
                .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
                .region(aws_sdk_sts::config::Region::new("us-east-1"))
                .build(),
        );
        let role = AssumeRoleSettings {
            role_arn: "arn:aws:iam::123456789012:role/build".into(),
            duration_seconds: Some(1800),
            external_id: Some("ext".into()),
            policy: Some("{\"Version\":\"2012-10-17\"}".into()),
            policy_arns: vec!["arn:aws:iam::aws:policy/ReadOnlyAccess".into()],
            session_name: Some("packer-session".into()),
            tags: [("team".to_owned(), "images".to_owned())].into(),
            transitive_tag_keys: vec!["team".into()],
        };
        let mfa = Mfa {
            serial: "arn:aws:iam::123456789012:mfa/me".into(),
            code: "654321".into(),
        };
        let request = AssumeRole::new(sts, role, Some(mfa)).request().unwrap();
        let input = request.as_input();
        assert_eq!(
            input.get_role_arn().as_deref(),
            Some("arn:aws:iam::123456789012:role/build")
        );
        assert_eq!(
            input.get_role_session_name().as_deref(),
            Some("packer-session")
        );
        assert_eq!(*input.get_duration_seconds(), Some(1800));
        assert_eq!(input.get_external_id().as_deref(), Some("ext"));
        assert_eq!(
            input.get_policy().as_deref(),
            Some("{\"Version\":\"2012-10-17\"}")
        );
        let arns: Vec<_> = input
            .get_policy_arns()
            .iter()
            .flatten()
            .filter_map(|p| p.arn())
            .collect();
        assert_eq!(arns, ["arn:aws:iam::aws:policy/ReadOnlyAccess"]);
        let tags: Vec<_> = input
            .get_tags()
            .iter()
            .flatten()
            .map(|t| (t.key(), t.value()))
            .collect();
        assert_eq!(tags, [("team", "images")]);
        assert_eq!(
            input.get_transitive_tag_keys().as_deref(),
            Some(&["team".to_owned()][..])
        );
        assert_eq!(
            input.get_serial_number().as_deref(),
            Some("arn:aws:iam::123456789012:mfa/me")
        );
        assert_eq!(input.get_token_code().as_deref(), Some("654321"));
    }

    #[test]
    fn session_name_defaults_to_packer_and_a_timestamp() {
        let sts = aws_sdk_sts::Client::from_conf(
            aws_sdk_sts::Config::builder()
                .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
                .region(aws_sdk_sts::config::Region::new("us-east-1"))
                .build(),
        );
        let role = AssumeRoleSettings {
            role_arn: "arn:aws:iam::123456789012:role/build".into(),
            ..Default::default()
        };
        let request = AssumeRole::new(sts, role, None).request().unwrap();
        let input = request.as_input();
        let name = input.get_role_session_name().clone().unwrap();
        assert!(name.starts_with("packer-") && name.len() > 7, "{name}");
        assert_eq!(*input.get_duration_seconds(), None);
        assert_eq!(input.get_serial_number(), &None);
    }
}
