//! The template's AWS access options as the aws layer's [`AwsSettings`].

use crate::aws::{AssumeRoleSettings, AwsSettings, PollingSettings, VaultAwsEngineSettings};
use crate::builder::config::{AccessConfig, Secret};

fn opt(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn secret(s: &Secret) -> Option<String> {
    opt(s.expose())
}

/// One line per option; see [`AccessConfig`] for their meaning.
pub fn aws_settings(a: &AccessConfig) -> AwsSettings {
    let r = &a.assume_role;
    AwsSettings {
        access_key: secret(&a.access_key),
        secret_key: secret(&a.secret_key),
        token: secret(&a.token),
        profile: opt(&a.profile),
        shared_credentials_file: opt(&a.shared_credentials_file),
        region: opt(&a.region),
        assume_role: (!r.role_arn.is_empty()).then(|| AssumeRoleSettings {
            role_arn: r.role_arn.clone(),
            duration_seconds: (r.duration_seconds > 0).then_some(r.duration_seconds as i32),
            external_id: opt(&r.external_id),
            policy: opt(&r.policy),
            policy_arns: r.policy_arns.clone(),
            session_name: opt(&r.session_name),
            tags: r.tags.clone(),
            transitive_tag_keys: r.transitive_tag_keys.clone(),
        }),
        mfa_code: secret(&a.mfa_code),
        custom_endpoint_ec2: opt(&a.custom_endpoint_ec2),
        insecure_skip_tls_verify: a.insecure_skip_tls_verify,
        max_retries: a.max_retries.clamp(0, i64::from(u32::MAX)) as u32,
        skip_metadata_api_check: a.skip_metadata_api_check,
        skip_credential_validation: a.skip_credential_validation,
        decode_authorization_messages: a.decode_authorization_messages,
        polling: a
            .aws_polling
            .as_ref()
            .map(|p| PollingSettings {
                delay_seconds: (p.delay_seconds > 0).then_some(p.delay_seconds as u64),
                max_attempts: (p.max_attempts > 0).then_some(p.max_attempts as u32),
            })
            .unwrap_or_default(),
        vault_aws_engine: (!a.vault_aws_engine.is_empty()).then(|| VaultAwsEngineSettings {
            name: a.vault_aws_engine.name.clone(),
            role_arn: opt(&a.vault_aws_engine.role_arn),
            ttl: opt(&a.vault_aws_engine.ttl),
            engine_name: opt(&a.vault_aws_engine.engine_name),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::config::AwsPolling;

    #[test]
    fn empty_options_leave_everything_to_the_sdk_chain() {
        let s = aws_settings(&AccessConfig::default());
        assert_eq!(s.access_key, None);
        assert_eq!(s.region, None);
        assert_eq!(s.assume_role, None);
        assert_eq!(s.polling, PollingSettings::default());
        assert_eq!(s.vault_aws_engine, None);
    }

    #[test]
    fn maps_region_endpoint_keys_role_and_polling() {
        let mut a = AccessConfig {
            region: "eu-west-1".into(),
            custom_endpoint_ec2: "http://127.0.0.1:5000".into(),
            access_key: Secret("AKID".into()),
            secret_key: Secret("SECRET".into()),
            max_retries: 4,
            aws_polling: Some(AwsPolling {
                max_attempts: 7,
                delay_seconds: 2,
            }),
            ..Default::default()
        };
        a.assume_role.role_arn = "arn:aws:iam::1:role/x".into();
        a.assume_role.duration_seconds = 900;
        let s = aws_settings(&a);
        assert_eq!(s.region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            s.custom_endpoint_ec2.as_deref(),
            Some("http://127.0.0.1:5000")
        );
        assert_eq!(s.access_key.as_deref(), Some("AKID"));
        assert_eq!(s.secret_key.as_deref(), Some("SECRET"));
        assert_eq!(s.max_retries, 4);
        assert_eq!(
            s.polling,
            PollingSettings {
                delay_seconds: Some(2),
                max_attempts: Some(7)
            }
        );
        let role = s.assume_role.unwrap();
        assert_eq!(role.role_arn, "arn:aws:iam::1:role/x");
        assert_eq!(role.duration_seconds, Some(900));
    }
}
