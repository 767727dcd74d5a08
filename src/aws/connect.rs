//! Building the EC2 client: HTTP stack, region, credentials, endpoint, retries.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use aws_config::environment::EnvironmentVariableRegionProvider;
use aws_config::meta::credentials::CredentialsProviderChain;
use aws_config::meta::region::ProvideRegion;
use aws_config::profile::{ProfileFileCredentialsProvider, ProfileFileRegionProvider};
use aws_config::provider_config::ProviderConfig;
use aws_config::retry::RetryConfig;
use aws_config::{AppName, BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_runtime::env_config::file::{
    EnvConfigFileKind as ProfileFileKind, EnvConfigFiles as ProfileFiles,
};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_types::os_shim_internal::{Env, Fs};
use tokio_util::sync::CancellationToken;

use super::assume_role::{AssumeRole, Mfa};
use super::cached_credentials::CachedCredentials;
use super::error::AwsError;
use super::imds::Imds;
use super::poller::{Limit, Pace, Poller, Probe};
use super::settings::AwsSettings;

/// Sent in the User-Agent, so account owners can tell our calls apart in CloudTrail.
const APP_NAME: &str = "packer-plugin-amazon-chroot";
/// Upstream's retry count when `max_retries` is 0.
const DEFAULT_MAX_RETRIES: u32 = 10;

/// Where the region in use came from, for the log line that says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionSource {
    /// The template's `region`.
    Settings,
    /// `AWS_REGION` or `AWS_DEFAULT_REGION`.
    Environment,
    /// The `region` of the selected shared-config profile.
    Profile,
    /// The instance identity document of this instance.
    InstanceMetadata,
}

impl fmt::Display for RegionSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RegionSource::Settings => "the template",
            RegionSource::Environment => "the environment",
            RegionSource::Profile => "the shared config profile",
            RegionSource::InstanceMetadata => "this instance's metadata",
        })
    }
}

/// A connected EC2 client and what it was built from.
#[derive(Clone, Debug)]
pub struct Ec2 {
    client: aws_sdk_ec2::Client,
    sts: aws_sdk_sts::Client,
    credentials: SharedCredentialsProvider,
    region: String,
    region_source: RegionSource,
    account_id: Option<String>,
    decode_authorization_messages: bool,
}

impl Ec2 {
    /// The EC2 client for the build region.
    pub fn client(&self) -> &aws_sdk_ec2::Client {
        &self.client
    }

    /// The credentials every client of this connection signs with (cached by the SDK).
    pub fn credentials(&self) -> &SharedCredentialsProvider {
        &self.credentials
    }

    /// The build region actually used.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Where the region came from.
    pub fn region_source(&self) -> RegionSource {
        self.region_source
    }

    /// The account of the credentials, when they were validated with `GetCallerIdentity`.
    pub fn account_id(&self) -> Option<&str> {
        self.account_id.as_deref()
    }

    /// The same connection (credentials, endpoint, retries) in another region, for AMI copies.
    pub fn in_region(&self, region: &str) -> Ec2 {
        let ec2_config = self
            .client
            .config()
            .to_builder()
            .region(Region::new(region.to_owned()))
            .build();
        let sts_config = self
            .sts
            .config()
            .to_builder()
            .region(Region::new(region.to_owned()))
            .build();
        Ec2 {
            client: aws_sdk_ec2::Client::from_conf(ec2_config),
            sts: aws_sdk_sts::Client::from_conf(sts_config),
            region: region.to_owned(),
            ..self.clone()
        }
    }

    /// Adds the decoded text of an `UnauthorizedOperation` message when
    /// `decode_authorization_messages` is set; any other error passes unchanged.
    pub async fn explain(&self, err: AwsError) -> AwsError {
        if !self.decode_authorization_messages
            || matches!(
                err,
                AwsError::Api {
                    decoded: Some(_),
                    ..
                }
            )
        {
            return err;
        }
        let Some(encoded) = err.encoded_authorization_message().map(str::to_owned) else {
            return err;
        };
        let decoded = match self
            .sts
            .decode_authorization_message()
            .encoded_message(encoded)
            .send()
            .await
        {
            Ok(out) => out.decoded_message.unwrap_or_default(),
            Err(e) => {
                let why = AwsError::api("DecodeAuthorizationMessage", None, e);
                tracing::warn!("could not decode the authorization message: {why}");
                return err;
            }
        };
        match err {
            AwsError::Api {
                operation,
                resource,
                code,
                message,
                retryable,
                ..
            } => AwsError::Api {
                operation,
                resource,
                code,
                message,
                decoded: Some(decoded),
                retryable,
            },
            other => other,
        }
    }
}

/// Connects to EC2 as `settings` say: resolves the region, the credentials (and checks
/// them unless told not to), and builds the client.
pub async fn connect(settings: &AwsSettings) -> Result<Ec2, AwsError> {
    check(settings)?;
    let http = super::tls_client::sdk_http_client(settings.insecure_skip_tls_verify);
    let profile_files = profile_files(settings);
    let (region, region_source) = resolve_region(settings, &profile_files).await?;
    tracing::info!("using AWS region {region} (from {region_source})");

    let max_retries = match settings.max_retries {
        0 => DEFAULT_MAX_RETRIES,
        n => n,
    };
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http.clone())
        .region(Region::new(region.clone()))
        .retry_config(RetryConfig::standard().with_max_attempts(max_retries.saturating_add(1)))
        .profile_files(profile_files.clone())
        .app_name(AppName::new(APP_NAME).expect("APP_NAME uses only allowed characters"));
    if let Some(profile) = &settings.profile {
        loader = loader.profile_name(profile);
    }
    let mut credential_source = match &settings.profile {
        Some(profile) => format!("default chain with profile {profile}"),
        None => "default chain (environment, profile, web identity, container, instance role)"
            .to_owned(),
    };
    let from_vault = settings.vault_aws_engine.is_some();
    if let Some(engine) = &settings.vault_aws_engine {
        loader = loader.credentials_provider(super::vault::credentials(engine).await?);
        credential_source = format!("Vault AWS engine role {}", engine.name);
    } else if let Some(credentials) = static_credentials(settings) {
        loader = loader.credentials_provider(credentials);
        credential_source = "access_key/secret_key".to_owned();
    } else if settings.skip_metadata_api_check {
        credential_source.push_str(" without the instance role");
        let provider_config = provider_config(&http, &region);
        loader = loader.credentials_provider(chain_without_imds(
            &provider_config,
            settings,
            &profile_files,
        ));
    }
    let base = loader.load().await;

    let profile_role = profile_role(settings, &profile_files).await?;
    let credentials = match assumed_role(
        settings,
        &base,
        &http,
        &region,
        &profile_files,
        profile_role,
    )
    .await?
    {
        Some((provider, role_arn)) => {
            credential_source = format!("role {role_arn} assumed with the {credential_source}");
            provider
        }
        None => base
            .credentials_provider()
            .ok_or_else(|| AwsError::Credentials {
                source_name: credential_source.clone(),
                message: "no credential provider configured".into(),
            })?,
    };
    let credentials = SharedCredentialsProvider::new(CachedCredentials::new(credentials));
    // Resolve once now: a missing or broken credential source is reported here, with its
    // provider's reason, rather than as a signing failure of the first EC2 call.
    credentials
        .provide_credentials()
        .await
        .map_err(|e| AwsError::Credentials {
            source_name: credential_source.clone(),
            message: DisplayErrorContext(&e).to_string(),
        })?;
    tracing::info!("using AWS credentials from the {credential_source}");

    let sts = aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::config::Builder::from(&base)
            .credentials_provider(credentials.clone())
            .build(),
    );
    let account_id = if settings.skip_credential_validation {
        None
    } else {
        validate(&sts, from_vault).await?
    };

    let mut ec2_config =
        aws_sdk_ec2::config::Builder::from(&base).credentials_provider(credentials.clone());
    if let Some(endpoint) = settings
        .custom_endpoint_ec2
        .as_deref()
        .filter(|e| !e.is_empty())
    {
        ec2_config = ec2_config.endpoint_url(with_scheme(endpoint));
    }
    Ok(Ec2 {
        client: aws_sdk_ec2::Client::from_conf(ec2_config.build()),
        sts,
        credentials,
        region,
        region_source,
        account_id,
        decode_authorization_messages: settings.decode_authorization_messages,
    })
}

/// Codes STS gives keys it does not know yet.
const UNKNOWN_KEY_CODES: &[&str] = &["InvalidClientTokenId", "AuthFailure"];
/// Fresh IAM keys from Vault take a few seconds to be known everywhere.
const VAULT_PROPAGATION: Duration = Duration::from_secs(60);

/// `GetCallerIdentity`: the account, or the reason the credentials are refused.
async fn validate(sts: &aws_sdk_sts::Client, from_vault: bool) -> Result<Option<String>, AwsError> {
    if !from_vault {
        // The SDK's retries already cover throttling and lost connections.
        return match sts.get_caller_identity().send().await {
            Ok(identity) => Ok(identity.account),
            Err(e) => Err(AwsError::api("GetCallerIdentity", None, e)),
        };
    }
    let call = || async {
        match sts.get_caller_identity().send().await {
            Ok(identity) => Probe::Ready(identity.account),
            Err(e) => {
                let err = AwsError::api("GetCallerIdentity", None, e);
                if err.code().is_some_and(|c| UNKNOWN_KEY_CODES.contains(&c)) {
                    Probe::Pending(format!("{err} (new Vault keys still propagating)"))
                } else {
                    Probe::Failed(err)
                }
            }
        }
    };
    let poller = Poller::with(
        Pace::Backoff {
            first: Duration::from_secs(1),
            cap: Duration::from_secs(10),
        },
        Some(Limit::Timeout(VAULT_PROPAGATION)),
        CancellationToken::new(),
    );
    poller.wait_for("AWS to accept the credentials", call).await
}

fn check(settings: &AwsSettings) -> Result<(), AwsError> {
    let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    if set(&settings.access_key) != set(&settings.secret_key) {
        return Err(AwsError::Settings(
            "access_key and secret_key must be set together".into(),
        ));
    }
    if settings.vault_aws_engine.is_some() && set(&settings.access_key) {
        return Err(AwsError::Settings(
            "vault_aws_engine cannot be used together with access_key/secret_key".into(),
        ));
    }
    if let Some(engine) = &settings.vault_aws_engine {
        if engine.name.is_empty() {
            return Err(AwsError::Settings("vault_aws_engine needs a name".into()));
        }
    }
    if let Some(role) = &settings.assume_role {
        if role.role_arn.is_empty() {
            return Err(AwsError::Settings("assume_role needs a role_arn".into()));
        }
    }
    Ok(())
}

/// Upstream accepts a bare host for `custom_endpoint_ec2`; the SDK wants a URL.
pub(crate) fn with_scheme(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("https://{endpoint}")
    }
}

/// The default config and credentials files, with `shared_credentials_file` in place
/// of the latter when set.
fn profile_files(settings: &AwsSettings) -> ProfileFiles {
    match settings
        .shared_credentials_file
        .as_deref()
        .filter(|f| !f.is_empty())
    {
        Some(file) => ProfileFiles::builder()
            .include_default_config_file(true)
            .with_file(ProfileFileKind::Credentials, file)
            .build(),
        None => ProfileFiles::default(),
    }
}

fn provider_config(http: &SharedHttpClient, region: &str) -> ProviderConfig {
    ProviderConfig::default()
        .with_http_client(http.clone())
        .with_region(Some(Region::new(region.to_owned())))
}

/// The region: template, then environment, then profile, then IMDS (which upstream
/// dropped in 2019, leaving chroot users on EC2 to spell out what the instance knows).
async fn resolve_region(
    settings: &AwsSettings,
    profile_files: &ProfileFiles,
) -> Result<(String, RegionSource), AwsError> {
    if let Some(region) = settings.region.as_deref().filter(|r| !r.is_empty()) {
        return Ok((region.to_owned(), RegionSource::Settings));
    }
    if let Some(region) = EnvironmentVariableRegionProvider::new().region().await {
        return Ok((region.to_string(), RegionSource::Environment));
    }
    let mut from_profile =
        ProfileFileRegionProvider::builder().profile_files(profile_files.clone());
    if let Some(profile) = &settings.profile {
        from_profile = from_profile.profile_name(profile);
    }
    if let Some(region) = from_profile.build().region().await {
        return Ok((region.to_string(), RegionSource::Profile));
    }
    let imds = match Imds::from_env() {
        Ok(imds) => imds,
        Err(imds) => return Err(AwsError::NoRegion { imds }),
    };
    match imds.instance_identity().await {
        Ok(identity) => Ok((identity.region, RegionSource::InstanceMetadata)),
        Err(imds) => Err(AwsError::NoRegion { imds }),
    }
}

fn static_credentials(settings: &AwsSettings) -> Option<Credentials> {
    let access_key = settings.access_key.as_deref().filter(|k| !k.is_empty())?;
    let secret_key = settings.secret_key.clone()?;
    // Upstream: with static keys, the token defaults to AWS_SESSION_TOKEN.
    let token = settings
        .token
        .clone()
        .filter(|t| !t.is_empty())
        .or_else(|| {
            std::env::var("AWS_SESSION_TOKEN")
                .ok()
                .filter(|t| !t.is_empty())
        });
    Some(Credentials::new(
        access_key, secret_key, token, None, "template",
    ))
}

/// The default chain minus the instance role (`skip_metadata_api_check`).
fn chain_without_imds(
    config: &ProviderConfig,
    settings: &AwsSettings,
    profile_files: &ProfileFiles,
) -> CredentialsProviderChain {
    let mut profile = ProfileFileCredentialsProvider::builder()
        .configure(config)
        .profile_files(profile_files.clone());
    if let Some(name) = &settings.profile {
        profile = profile.profile_name(name);
    }
    CredentialsProviderChain::first_try(
        "Environment",
        aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
    )
    .or_else("Profile", profile.build())
    .or_else(
        "WebIdentityToken",
        aws_config::web_identity_token::WebIdentityTokenCredentialsProvider::builder()
            .configure(config)
            .build(),
    )
    .or_else(
        "EcsContainer",
        aws_config::ecs::EcsCredentialsProvider::builder()
            .configure(config)
            .build(),
    )
}

/// What the selected profile says about assuming a role with MFA.
#[derive(Debug, Default)]
struct ProfileRole {
    role_arn: Option<String>,
    mfa_serial: Option<String>,
    source_profile: Option<String>,
    external_id: Option<String>,
    session_name: Option<String>,
    duration_seconds: Option<i32>,
}

/// Reads the role fields of the selected profile; only needed when `mfa_code` is set,
/// since the SDK's profile provider assumes roles itself but cannot pass an MFA code.
async fn profile_role(
    settings: &AwsSettings,
    profile_files: &ProfileFiles,
) -> Result<Option<ProfileRole>, AwsError> {
    if settings.mfa_code.as_deref().is_none_or(str::is_empty) {
        return Ok(None);
    }
    let profiles = aws_config::profile::load(
        &Fs::real(),
        &Env::real(),
        profile_files,
        settings.profile.clone().map(Cow::Owned),
    )
    .await
    .map_err(|e| {
        AwsError::Settings(format!(
            "mfa_code is set but the shared config cannot be read: {e}"
        ))
    })?;
    let Some(profile) = profiles.get_profile(profiles.selected_profile()) else {
        return Err(AwsError::Settings(format!(
            "mfa_code is set but profile {:?} does not exist",
            profiles.selected_profile()
        )));
    };
    let get = |key: &str| profile.get(key).map(str::to_owned);
    Ok(Some(ProfileRole {
        role_arn: get("role_arn"),
        mfa_serial: get("mfa_serial"),
        source_profile: get("source_profile"),
        external_id: get("external_id"),
        session_name: get("role_session_name"),
        duration_seconds: get("duration_seconds").and_then(|d| d.parse().ok()),
    }))
}

/// The credentials of the role to assume, if any: the `assume_role` block on top of the
/// base credentials, or (with `mfa_code`) the profile's own role on top of its source profile.
async fn assumed_role(
    settings: &AwsSettings,
    base: &SdkConfig,
    http: &SharedHttpClient,
    region: &str,
    profile_files: &ProfileFiles,
    profile_role: Option<ProfileRole>,
) -> Result<Option<(SharedCredentialsProvider, String)>, AwsError> {
    let mfa_code = settings.mfa_code.clone().filter(|c| !c.is_empty());
    let mfa = match (&mfa_code, &profile_role) {
        (None, _) => None,
        (
            Some(code),
            Some(ProfileRole {
                mfa_serial: Some(serial),
                ..
            }),
        ) => Some(Mfa {
            serial: serial.clone(),
            code: code.clone(),
        }),
        (Some(_), _) => {
            return Err(AwsError::Settings(
                "mfa_code is set but the profile has no mfa_serial naming the MFA device".into(),
            ))
        }
    };
    let sts_with = |credentials: SharedCredentialsProvider| {
        aws_sdk_sts::Client::from_conf(
            aws_sdk_sts::config::Builder::from(base)
                .credentials_provider(credentials)
                .build(),
        )
    };
    if let Some(role) = &settings.assume_role {
        let Some(base_credentials) = base.credentials_provider() else {
            return Ok(None);
        };
        let provider = AssumeRole::new(sts_with(base_credentials), role.clone(), mfa);
        return Ok(Some((
            SharedCredentialsProvider::new(provider),
            role.role_arn.clone(),
        )));
    }
    let (Some(mfa), Some(profile)) = (mfa, profile_role) else {
        return Ok(None);
    };
    let Some(role_arn) = profile.role_arn else {
        return Err(AwsError::Settings(
            "mfa_code is set but neither assume_role nor the profile's role_arn names a role"
                .into(),
        ));
    };
    let Some(source) = profile.source_profile else {
        return Err(AwsError::Settings(
            "mfa_code with a profile role needs the profile's source_profile".into(),
        ));
    };
    let source_credentials = ProfileFileCredentialsProvider::builder()
        .configure(&provider_config(http, region))
        .profile_files(profile_files.clone())
        .profile_name(source)
        .build();
    let role = super::settings::AssumeRoleSettings {
        role_arn: role_arn.clone(),
        duration_seconds: profile.duration_seconds,
        external_id: profile.external_id,
        session_name: profile.session_name,
        ..Default::default()
    };
    let provider = AssumeRole::new(
        sts_with(SharedCredentialsProvider::new(source_credentials)),
        role,
        Some(mfa),
    );
    Ok(Some((SharedCredentialsProvider::new(provider), role_arn)))
}
