//! Region and credential precedence of [`connect`], with the environment isolated
//! and IMDS faked on loopback.

use std::io::Write;

use aws_credential_types::provider::ProvideCredentials;

use super::imds::tests::FakeImds;
use super::test_env::ScopedEnv;
use super::*;

fn static_settings() -> AwsSettings {
    AwsSettings {
        access_key: Some("AKIDTEMPLATE".into()),
        secret_key: Some("template-secret".into()),
        skip_credential_validation: true,
        ..Default::default()
    }
}

async fn access_key_of(ec2: &Ec2) -> String {
    ec2.credentials()
        .provide_credentials()
        .await
        .expect("credentials")
        .access_key_id()
        .to_owned()
}

fn write_file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn region_from_settings_beats_the_environment() {
    let _env = ScopedEnv::new(&[("AWS_REGION", "ap-south-1")]).await;
    let settings = AwsSettings {
        region: Some("eu-central-1".into()),
        ..static_settings()
    };
    let ec2 = connect(&settings).await.unwrap();
    assert_eq!(ec2.region(), "eu-central-1");
    assert_eq!(ec2.region_source(), RegionSource::Settings);
}

#[tokio::test]
async fn aws_region_beats_aws_default_region_and_the_profile() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_file(&dir, "config", "[default]\nregion = sa-east-1\n");
    let _env = ScopedEnv::new(&[
        ("AWS_REGION", "ap-south-1"),
        ("AWS_DEFAULT_REGION", "us-west-2"),
        ("AWS_CONFIG_FILE", &config),
    ])
    .await;
    let ec2 = connect(&static_settings()).await.unwrap();
    assert_eq!(ec2.region(), "ap-south-1");
    assert_eq!(ec2.region_source(), RegionSource::Environment);
}

#[tokio::test]
async fn region_from_the_selected_profile_when_env_is_silent() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_file(
        &dir,
        "config",
        "[default]\nregion = sa-east-1\n[profile build]\nregion = eu-north-1\n",
    );
    let _env = ScopedEnv::new(&[("AWS_CONFIG_FILE", &config)]).await;
    let settings = AwsSettings {
        profile: Some("build".into()),
        ..static_settings()
    };
    let ec2 = connect(&settings).await.unwrap();
    assert_eq!(ec2.region(), "eu-north-1");
    assert_eq!(ec2.region_source(), RegionSource::Profile);
}

#[tokio::test]
async fn region_falls_back_to_the_instance_identity_document() {
    let imds = FakeImds::start(200).await;
    let _env = ScopedEnv::new(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.endpoint)]).await;
    let ec2 = connect(&static_settings()).await.unwrap();
    assert_eq!(ec2.region(), "eu-west-1");
    assert_eq!(ec2.region_source(), RegionSource::InstanceMetadata);
}

#[tokio::test]
async fn missing_region_error_says_why_imds_failed() {
    let port = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    let _env = ScopedEnv::new(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &endpoint)]).await;
    let err = connect(&static_settings()).await.unwrap_err();
    assert!(matches!(err, AwsError::NoRegion { .. }), "{err:?}");
    let shown = err.to_string();
    assert!(shown.contains("AWS_REGION"), "{shown}");
    assert!(shown.contains("Connection refused"), "{shown}");
}

#[tokio::test]
async fn missing_region_with_imds_disabled_says_so() {
    let _env = ScopedEnv::new(&[("AWS_EC2_METADATA_DISABLED", "true")]).await;
    let err = connect(&static_settings()).await.unwrap_err();
    assert!(
        matches!(
            &err,
            AwsError::NoRegion {
                imds: ImdsError::Disabled
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("AWS_EC2_METADATA_DISABLED"),
        "{err}"
    );
}

#[tokio::test]
async fn static_keys_beat_environment_credentials() {
    let _env = ScopedEnv::new(&[
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "AKIDENV"),
        ("AWS_SECRET_ACCESS_KEY", "env-secret"),
    ])
    .await;
    let ec2 = connect(&static_settings()).await.unwrap();
    assert_eq!(access_key_of(&ec2).await, "AKIDTEMPLATE");
}

#[tokio::test]
async fn static_keys_take_their_token_from_aws_session_token() {
    let _env = ScopedEnv::new(&[
        ("AWS_REGION", "us-east-1"),
        ("AWS_SESSION_TOKEN", "env-token"),
    ])
    .await;
    let ec2 = connect(&static_settings()).await.unwrap();
    let credentials = ec2.credentials().provide_credentials().await.unwrap();
    assert_eq!(credentials.session_token(), Some("env-token"));
}

#[tokio::test]
async fn environment_credentials_are_used_without_static_keys() {
    let _env = ScopedEnv::new(&[
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "AKIDENV"),
        ("AWS_SECRET_ACCESS_KEY", "env-secret"),
    ])
    .await;
    let settings = AwsSettings {
        skip_credential_validation: true,
        ..Default::default()
    };
    let ec2 = connect(&settings).await.unwrap();
    assert_eq!(access_key_of(&ec2).await, "AKIDENV");
}

#[tokio::test]
async fn profile_credentials_come_from_shared_credentials_file() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = write_file(
        &dir,
        "creds",
        "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = d\n\
         [build]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = p\n",
    );
    let _env = ScopedEnv::new(&[("AWS_REGION", "us-east-1")]).await;
    let settings = AwsSettings {
        profile: Some("build".into()),
        shared_credentials_file: Some(credentials),
        skip_credential_validation: true,
        ..Default::default()
    };
    let ec2 = connect(&settings).await.unwrap();
    assert_eq!(access_key_of(&ec2).await, "AKIDPROFILE");
}

#[tokio::test]
async fn default_chain_asks_imds_for_an_instance_role_unless_skipped() {
    let imds = FakeImds::start(200).await;
    let _env = ScopedEnv::new(&[
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.endpoint),
    ])
    .await;
    let settings = AwsSettings {
        skip_credential_validation: true,
        ..Default::default()
    };
    // The fake has no role: the chain ends empty-handed, after asking IMDS.
    let err = connect(&settings).await.unwrap_err();
    assert!(matches!(err, AwsError::Credentials { .. }), "{err:?}");
    assert!(
        imds.seen
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.contains("/latest/api/token")),
        "the instance-role provider should have asked IMDS"
    );
    imds.seen.lock().unwrap().clear();

    let skipping = AwsSettings {
        skip_metadata_api_check: true,
        ..settings
    };
    let err = connect(&skipping).await.unwrap_err();
    assert!(
        matches!(&err, AwsError::Credentials { source_name, .. }
            if source_name.ends_with("without the instance role")),
        "{err:?}"
    );
    assert!(
        imds.seen.lock().unwrap().is_empty(),
        "{:?}",
        imds.seen.lock().unwrap()
    );
}

#[tokio::test]
async fn credential_errors_never_show_the_secret() {
    let _env = ScopedEnv::new(&[("AWS_REGION", "us-east-1")]).await;
    let settings = AwsSettings {
        access_key: Some("AKIDONLY".into()),
        secret_key: None,
        token: Some("tok-secret".into()),
        ..Default::default()
    };
    let err = connect(&settings).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid AWS settings: access_key and secret_key must be set together"
    );
}

#[tokio::test]
async fn mfa_code_without_an_mfa_serial_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_file(&dir, "config", "[default]\nregion = us-east-1\n");
    let _env = ScopedEnv::new(&[("AWS_CONFIG_FILE", &config)]).await;
    let settings = AwsSettings {
        mfa_code: Some("123456".into()),
        assume_role: Some(AssumeRoleSettings {
            role_arn: "arn:aws:iam::123456789012:role/build".into(),
            ..Default::default()
        }),
        ..static_settings()
    };
    let err = connect(&settings).await.unwrap_err();
    assert!(err.to_string().contains("mfa_serial"), "{err}");
}

#[test]
fn bare_custom_endpoint_gets_https() {
    assert_eq!(
        super::connect::with_scheme("ec2.example.com"),
        "https://ec2.example.com"
    );
    assert_eq!(
        super::connect::with_scheme("http://127.0.0.1:5000"),
        "http://127.0.0.1:5000"
    );
}

const DESCRIBE_REGIONS: &str =
    "<DescribeRegionsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
    <requestId>r-1</requestId><regionInfo><item><regionName>us-east-1</regionName>\
    <regionEndpoint>ec2.us-east-1.amazonaws.com</regionEndpoint></item></regionInfo>\
    </DescribeRegionsResponse>";

/// Refused once (retrying cannot change a certificate), with the endpoint and
/// the way out in the message; accepted with `insecure_skip_tls_verify`.
#[tokio::test]
async fn self_signed_endpoint_is_refused_naming_it_unless_insecure_skip_tls_verify() {
    let server = super::canned_http::CannedServer::start(DESCRIBE_REGIONS, true).await;
    let _env = ScopedEnv::new(&[]).await;
    let settings = AwsSettings {
        region: Some("us-east-1".into()),
        custom_endpoint_ec2: Some(server.endpoint.clone()),
        max_retries: 3,
        ..static_settings()
    };
    let strict = connect(&settings).await.unwrap();
    let err = strict
        .client()
        .describe_regions()
        .send()
        .await
        .map_err(|e| AwsError::api("DescribeRegions", None, e))
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "DescribeRegions failed: the TLS certificate of {} is not trusted: ",
            server.endpoint
        )),
        "{text}"
    );
    assert!(text.contains("insecure_skip_tls_verify = true"), "{text}");
    // No "(DispatchFailure(DispatchFailure { … }))" debug dump after the cause.
    assert!(!text.contains("DispatchFailure"), "{text}");
    assert!(!err.is_transient(), "{err:?}");
    // One attempt, not max_retries + 1.
    assert_eq!(
        server.connections.load(std::sync::atomic::Ordering::SeqCst),
        1
    );

    let insecure = connect(&AwsSettings {
        insecure_skip_tls_verify: true,
        ..settings
    })
    .await
    .unwrap();
    let regions = insecure.client().describe_regions().send().await.unwrap();
    let names: Vec<_> = regions
        .regions()
        .iter()
        .filter_map(|r| r.region_name())
        .collect();
    assert_eq!(names, ["us-east-1"]);
}

#[tokio::test]
async fn unreachable_endpoint_error_names_it_and_stays_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let _env = ScopedEnv::new(&[]).await;
    let settings = AwsSettings {
        region: Some("us-east-1".into()),
        custom_endpoint_ec2: Some(endpoint.clone()),
        max_retries: 1,
        ..static_settings()
    };
    let ec2 = connect(&settings).await.unwrap();
    let err = ec2
        .client()
        .describe_regions()
        .send()
        .await
        .map_err(|e| AwsError::api("DescribeRegions", None, e))
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "DescribeRegions failed: cannot reach {endpoint}: "
        )),
        "{text}"
    );
    assert!(text.to_lowercase().contains("refused"), "{text}");
    assert!(err.is_transient(), "{err:?}");
}

#[tokio::test]
async fn insecure_client_still_speaks_plain_http() {
    let server = super::canned_http::CannedServer::start(DESCRIBE_REGIONS, false).await;
    let _env = ScopedEnv::new(&[]).await;
    let settings = AwsSettings {
        region: Some("us-east-1".into()),
        custom_endpoint_ec2: Some(server.endpoint.clone()),
        insecure_skip_tls_verify: true,
        ..static_settings()
    };
    let ec2 = connect(&settings).await.unwrap();
    let regions = ec2.client().describe_regions().send().await.unwrap();
    assert_eq!(regions.regions().len(), 1);
    let requests = server.requests.lock().unwrap().clone();
    assert!(
        requests[0].contains("Action=DescribeRegions"),
        "{requests:?}"
    );
    assert!(
        !requests[0].contains("template-secret"),
        "secret key sent in clear"
    );
}

const DECODED: &str = "<DecodeAuthorizationMessageResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
    <DecodeAuthorizationMessageResult><DecodedMessage>{\"allowed\":false,\"explicitDeny\":false}</DecodedMessage>\
    </DecodeAuthorizationMessageResult><ResponseMetadata><RequestId>r-2</RequestId></ResponseMetadata>\
    </DecodeAuthorizationMessageResponse>";

fn unauthorized() -> AwsError {
    AwsError::Api {
        operation: "CreateVolume",
        resource: None,
        code: Some("UnauthorizedOperation".into()),
        message: "You are not authorized to perform this operation. \
                  Encoded authorization failure message: ENC0DED"
            .into(),
        decoded: None,
        retryable: false,
    }
}

#[tokio::test]
async fn unauthorized_operation_is_decoded_through_sts_when_asked() {
    let sts = super::canned_http::CannedServer::start(DECODED, false).await;
    let _env = ScopedEnv::new(&[("AWS_ENDPOINT_URL_STS", &sts.endpoint)]).await;
    let settings = AwsSettings {
        region: Some("us-east-1".into()),
        decode_authorization_messages: true,
        ..static_settings()
    };
    let ec2 = connect(&settings).await.unwrap();
    let explained = ec2.explain(unauthorized()).await;
    assert!(
        explained.to_string().ends_with(
            "(the credentials lack the IAM permission ec2:CreateVolume; decoded authorization \
             message: {\"allowed\":false,\"explicitDeny\":false})"
        ),
        "{explained}"
    );
    let requests = sts.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    assert!(
        requests[0].contains("Action=DecodeAuthorizationMessage"),
        "{requests:?}"
    );
    assert!(
        requests[0].contains("EncodedMessage=ENC0DED"),
        "{requests:?}"
    );

    let plain = connect(&AwsSettings {
        decode_authorization_messages: false,
        ..settings
    })
    .await
    .unwrap();
    let untouched = plain.explain(unauthorized()).await;
    assert!(matches!(untouched, AwsError::Api { decoded: None, .. }));
    assert_eq!(
        sts.requests.lock().unwrap().len(),
        1,
        "no STS call when not asked"
    );
}

const VAULT_CREDS: &str = r#"{"request_id":"r","lease_id":"aws/creds/builder/x","renewable":true,
    "lease_duration":3600,"data":{"access_key":"AKIDFROMVAULT","secret_key":"vault-secret",
    "security_token":null},"warnings":null}"#;

#[tokio::test]
async fn vault_engine_reads_creds_with_the_vault_token() {
    let vault = super::canned_http::CannedServer::start(VAULT_CREDS, false).await;
    let _env = ScopedEnv::new(&[
        ("VAULT_ADDR", &vault.endpoint),
        ("VAULT_TOKEN", "s.vaulttoken"),
        ("VAULT_NAMESPACE", "team-a"),
    ])
    .await;
    let settings = AwsSettings {
        region: Some("us-east-1".into()),
        skip_credential_validation: true,
        vault_aws_engine: Some(VaultAwsEngineSettings {
            name: "builder".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let ec2 = connect(&settings).await.unwrap();
    assert_eq!(access_key_of(&ec2).await, "AKIDFROMVAULT");
    let requests = vault.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    assert!(
        requests[0].starts_with("GET /v1/aws/creds/builder HTTP/1.1"),
        "{requests:?}"
    );
    let lower = requests[0].to_lowercase();
    assert!(
        lower.contains("x-vault-token: s.vaulttoken"),
        "{requests:?}"
    );
    assert!(lower.contains("x-vault-namespace: team-a"), "{requests:?}");
}

#[tokio::test]
async fn vault_engine_with_role_arn_writes_the_sts_path() {
    let vault = super::canned_http::CannedServer::start(VAULT_CREDS, false).await;
    let _env = ScopedEnv::new(&[("VAULT_ADDR", &vault.endpoint), ("VAULT_TOKEN", "t")]).await;
    let settings = AwsSettings {
        region: Some("us-east-1".into()),
        skip_credential_validation: true,
        vault_aws_engine: Some(VaultAwsEngineSettings {
            name: "deployer".into(),
            role_arn: Some("arn:aws:iam::123456789012:role/deploy".into()),
            ttl: Some("900s".into()),
            engine_name: Some("aws-prod".into()),
        }),
        ..Default::default()
    };
    connect(&settings).await.unwrap();
    let request = vault.requests.lock().unwrap()[0].clone();
    assert!(
        request.starts_with("POST /v1/aws-prod/sts/deployer HTTP/1.1"),
        "{request}"
    );
    let body = &request[request.find("\r\n\r\n").unwrap() + 4..];
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"role_arn": "arn:aws:iam::123456789012:role/deploy", "ttl": "900s"})
    );
}

#[tokio::test]
async fn unreachable_vault_error_says_where_and_hides_the_token() {
    let port = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let address = format!("http://127.0.0.1:{port}");
    let _env = ScopedEnv::new(&[("VAULT_ADDR", &address), ("VAULT_TOKEN", "s.secret-token")]).await;
    let settings = AwsSettings {
        region: Some("us-east-1".into()),
        vault_aws_engine: Some(VaultAwsEngineSettings {
            name: "builder".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = connect(&settings).await.unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.starts_with("vault_aws_engine: reading aws/creds/builder"),
        "{shown}"
    );
    assert!(shown.contains(&address), "{shown}");
    assert!(shown.to_lowercase().contains("refused"), "{shown}");
    assert!(!shown.contains("s.secret-token"), "{shown}");
}

#[tokio::test]
async fn vault_with_an_untrusted_certificate_says_to_set_vault_cacert() {
    let vault = super::canned_http::CannedServer::start(VAULT_CREDS, true).await;
    let _env = ScopedEnv::new(&[
        ("VAULT_ADDR", &vault.endpoint),
        ("VAULT_TOKEN", "s.secret-token"),
    ])
    .await;
    let settings = AwsSettings {
        region: Some("us-east-1".into()),
        vault_aws_engine: Some(VaultAwsEngineSettings {
            name: "builder".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = connect(&settings).await.unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.contains(&format!("cannot reach Vault at {}: ", vault.endpoint)),
        "{shown}"
    );
    assert!(shown.contains("invalid peer certificate"), "{shown}");
    assert!(shown.contains("set VAULT_CACERT"), "{shown}");
    assert!(!shown.contains("s.secret-token"), "{shown}");
    assert!(vault.requests.lock().unwrap().is_empty());
}

#[tokio::test]
async fn vault_engine_and_static_keys_are_exclusive() {
    let _env = ScopedEnv::new(&[]).await;
    let settings = AwsSettings {
        region: Some("us-east-1".into()),
        vault_aws_engine: Some(VaultAwsEngineSettings {
            name: "builder".into(),
            ..Default::default()
        }),
        ..static_settings()
    };
    let err = connect(&settings).await.unwrap_err();
    assert!(matches!(err, AwsError::Settings(_)), "{err:?}");
}

const ASSUMED: &str = "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
    <AssumeRoleResult><Credentials><AccessKeyId>ASIAASSUMED</AccessKeyId>\
    <SecretAccessKey>assumed-secret</SecretAccessKey><SessionToken>assumed-token</SessionToken>\
    <Expiration>2099-01-01T00:00:00Z</Expiration></Credentials><AssumedRoleUser>\
    <Arn>arn:aws:sts::123456789012:assumed-role/build/s</Arn><AssumedRoleId>AROA1:s</AssumedRoleId>\
    </AssumedRoleUser></AssumeRoleResult><ResponseMetadata><RequestId>r-3</RequestId>\
    </ResponseMetadata></AssumeRoleResponse>";

#[tokio::test]
async fn mfa_code_assumes_the_profile_role_from_its_source_profile() {
    let sts = super::canned_http::CannedServer::start(ASSUMED, false).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_file(
        &dir,
        "config",
        "[profile build]\nrole_arn = arn:aws:iam::123456789012:role/build\n\
         source_profile = base\nmfa_serial = arn:aws:iam::123456789012:mfa/me\n\
         region = eu-west-3\n",
    );
    let credentials = write_file(
        &dir,
        "credentials",
        "[base]\naws_access_key_id = AKIDBASE\naws_secret_access_key = base-secret\n",
    );
    let _env = ScopedEnv::new(&[
        ("AWS_CONFIG_FILE", &config),
        ("AWS_ENDPOINT_URL_STS", &sts.endpoint),
    ])
    .await;
    let settings = AwsSettings {
        profile: Some("build".into()),
        shared_credentials_file: Some(credentials),
        mfa_code: Some("246810".into()),
        skip_credential_validation: true,
        ..Default::default()
    };
    let ec2 = connect(&settings).await.unwrap();
    assert_eq!(ec2.region(), "eu-west-3");
    let session = ec2.credentials().provide_credentials().await.unwrap();
    assert_eq!(session.access_key_id(), "ASIAASSUMED");
    assert_eq!(session.session_token(), Some("assumed-token"));
    let requests = sts.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = &requests[0];
    assert!(request.contains("Action=AssumeRole"), "{request}");
    assert!(
        request.contains("RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fbuild"),
        "{request}"
    );
    assert!(
        request.contains("SerialNumber=arn%3Aaws%3Aiam%3A%3A123456789012%3Amfa%2Fme"),
        "{request}"
    );
    assert!(request.contains("TokenCode=246810"), "{request}");
    // Signed with the source profile's key.
    assert!(request.contains("Credential=AKIDBASE/"), "{request}");
}

const FAILED_IMAGE: &str =
    "<DescribeImagesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
    <requestId>r-4</requestId><imagesSet><item><imageId>ami-0bad</imageId>\
    <imageState>failed</imageState><stateReason><code>Client.InvalidSnapshot.NotFound</code>\
    <message>snap-1 does not exist</message></stateReason><name>x</name></item></imagesSet>\
    </DescribeImagesResponse>";

#[tokio::test]
async fn failed_image_ends_the_wait_with_its_state_reason() {
    let ec2_api = super::canned_http::CannedServer::start(FAILED_IMAGE, false).await;
    let _env = ScopedEnv::new(&[]).await;
    let settings = AwsSettings {
        region: Some("us-east-1".into()),
        custom_endpoint_ec2: Some(ec2_api.endpoint.clone()),
        ..static_settings()
    };
    let ec2 = connect(&settings).await.unwrap();
    let poller = Poller::new(PollingSettings::default(), Default::default());
    let err = ec2
        .wait_image_available(&poller, "ami-0bad")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "image ami-0bad failed: state failed: Client.InvalidSnapshot.NotFound: snap-1 does not exist"
    );
    assert_eq!(
        ec2_api.requests.lock().unwrap().len(),
        1,
        "no polling after failure"
    );
}

/// Build steps run on tokio's multi-threaded runtime, so every future must be `Send`;
/// this only has to compile.
#[allow(dead_code)]
fn every_future_is_send(ec2: &Ec2, poller: &Poller, settings: &AwsSettings, imds: &Imds) {
    fn is_send<T: Send>(_: T) {}
    is_send(connect(settings));
    is_send(ec2.explain(unauthorized()));
    is_send(ec2.describe_instance("i-1"));
    is_send(ec2.wait_volume_available(poller, "vol-1"));
    is_send(ec2.wait_volume_attached(poller, "vol-1", "i-1"));
    is_send(ec2.wait_volume_detached(poller, "vol-1"));
    is_send(ec2.wait_volume_deleted(poller, "vol-1"));
    is_send(ec2.wait_snapshot_completed(poller, "snap-1", |_| {}));
    is_send(ec2.wait_image_available(poller, "ami-1"));
    is_send(ec2.wait_image_copied(poller, "ami-1"));
    is_send(imds.instance_identity());
}

#[tokio::test]
async fn http_proxy_from_the_environment_carries_the_api_calls() {
    let proxy = super::canned_http::CannedServer::start(DESCRIBE_REGIONS, false).await;
    let _env = ScopedEnv::new(&[("HTTP_PROXY", &proxy.endpoint)]).await;
    let settings = AwsSettings {
        region: Some("us-east-1".into()),
        // Never resolved: the proxy is asked for it.
        custom_endpoint_ec2: Some("http://ec2.example.invalid".into()),
        ..static_settings()
    };
    let ec2 = connect(&settings).await.unwrap();
    let regions = ec2.client().describe_regions().send().await.unwrap();
    assert_eq!(regions.regions().len(), 1);
    let requests = proxy.requests.lock().unwrap().clone();
    assert!(
        requests[0].starts_with("POST http://ec2.example.invalid/ HTTP/1.1"),
        "{requests:?}"
    );
}
