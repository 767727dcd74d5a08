//! Client construction and waiters against moto's EC2/STS server on 127.0.0.1.
//!
//! Needs moto's server (`pip install 'moto[server]'`); each test starts its own
//! on a free port and the guard kills it, even when the test fails.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_credential_types::provider::ProvideCredentials;
use aws_sdk_ec2::types::{Filter, VolumeType};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use super::test_env::ScopedEnv;
use super::*;

/// moto's server on a loopback port; killed (and reaped) when dropped.
struct MotoServer {
    child: Child,
    endpoint: String,
}

impl MotoServer {
    async fn start() -> MotoServer {
        let mut child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 with moto[server] installed");
        let stderr = child.stderr.take().expect("piped stderr");
        let mut lines = BufReader::new(stderr).lines();
        let endpoint = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(at) = line.find("http://127.0.0.1:") {
                    return Some(line[at..].trim().to_owned());
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .expect("moto server announced its port within 60 s");
        // Keep draining moto's request log so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        MotoServer { child, endpoint }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        // SIGKILL now; tokio reaps the killed child in the background.
        let _ = self.child.start_kill();
    }
}

/// Settings for moto: its fake keys, loopback endpoints, IMDS out of the picture.
fn moto_settings(moto: &MotoServer) -> AwsSettings {
    AwsSettings {
        access_key: Some("AKIDMOTOTESTING".into()),
        secret_key: Some("moto-testing-secret".into()),
        region: Some("us-east-1".into()),
        custom_endpoint_ec2: Some(moto.endpoint.clone()),
        ..Default::default()
    }
}

/// A fast poller so the waits finish in test time.
fn fast_poller() -> Poller {
    Poller::with(
        Pace::Backoff {
            first: Duration::from_millis(50),
            cap: Duration::from_millis(400),
        },
        Some(Limit::Timeout(Duration::from_secs(30))),
        CancellationToken::new(),
    )
}

async fn moto_env(moto: &MotoServer) -> ScopedEnv {
    // STS (credential validation, assume role) goes to moto through the SDK's own
    // endpoint variable; EC2 goes through custom_endpoint_ec2.
    ScopedEnv::new(&[
        ("AWS_ENDPOINT_URL_STS", &moto.endpoint),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ])
    .await
}

#[tokio::test]
async fn describe_regions_goes_through_custom_endpoint_ec2() {
    let moto = MotoServer::start().await;
    let _env = moto_env(&moto).await;
    let ec2 = connect(&moto_settings(&moto)).await.unwrap();
    // Credentials were validated with GetCallerIdentity (against moto's STS).
    assert_eq!(ec2.account_id(), Some("123456789012"));
    let regions = ec2.client().describe_regions().send().await.unwrap();
    let names: Vec<&str> = regions
        .regions()
        .iter()
        .filter_map(|r| r.region_name())
        .collect();
    assert!(names.contains(&"us-east-1"), "{names:?}");
    assert!(names.contains(&"eu-west-1"), "{names:?}");
}

#[tokio::test]
async fn aws_endpoint_url_from_the_environment_is_honoured() {
    let moto = MotoServer::start().await;
    let _env = ScopedEnv::new(&[
        ("AWS_ENDPOINT_URL", &moto.endpoint),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ])
    .await;
    let settings = AwsSettings {
        custom_endpoint_ec2: None,
        ..moto_settings(&moto)
    };
    let ec2 = connect(&settings).await.unwrap();
    let regions = ec2.client().describe_regions().send().await.unwrap();
    assert!(!regions.regions().is_empty());
}

#[tokio::test]
async fn unreachable_endpoint_error_names_the_operation_and_the_refusal() {
    let moto = MotoServer::start().await;
    let _env = moto_env(&moto).await;
    let port = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let settings = AwsSettings {
        custom_endpoint_ec2: Some(format!("http://127.0.0.1:{port}")),
        max_retries: 1,
        ..moto_settings(&moto)
    };
    let ec2 = connect(&settings).await.unwrap();
    let err = ec2
        .client()
        .describe_regions()
        .send()
        .await
        .map_err(|e| AwsError::api("DescribeRegions", None, e))
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    let shown = err.to_string();
    assert!(shown.starts_with("DescribeRegions failed: "), "{shown}");
    assert!(shown.to_lowercase().contains("refused"), "{shown}");
    assert!(!shown.contains("moto-testing-secret"), "{shown}");
}

#[tokio::test]
async fn creates_a_volume_waits_until_available_then_deleted() {
    let moto = MotoServer::start().await;
    let _env = moto_env(&moto).await;
    let ec2 = connect(&moto_settings(&moto)).await.unwrap();
    let poller = fast_poller();
    let volume = ec2
        .client()
        .create_volume()
        .availability_zone("us-east-1a")
        .size(1)
        .volume_type(VolumeType::Gp3)
        .send()
        .await
        .unwrap();
    let volume_id = volume.volume_id().unwrap();
    ec2.wait_volume_available(&poller, volume_id).await.unwrap();
    ec2.client()
        .delete_volume()
        .volume_id(volume_id)
        .send()
        .await
        .unwrap();
    ec2.wait_volume_deleted(&poller, volume_id).await.unwrap();
}

#[tokio::test]
async fn unknown_volume_is_retried_as_not_visible_until_the_limit() {
    let moto = MotoServer::start().await;
    let _env = moto_env(&moto).await;
    let ec2 = connect(&moto_settings(&moto)).await.unwrap();
    let poller = Poller::with(
        Pace::Fixed(Duration::from_millis(20)),
        Some(Limit::Attempts(3)),
        CancellationToken::new(),
    );
    let err = ec2
        .wait_volume_available(&poller, "vol-0123456789abcdef0")
        .await
        .unwrap_err();
    match &err {
        AwsError::Timeout { attempts, last, .. } => {
            assert_eq!(*attempts, 3);
            assert_eq!(last.as_deref(), Some("not visible yet"));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[tokio::test]
async fn snapshot_completes_and_reports_progress() {
    let moto = MotoServer::start().await;
    let _env = moto_env(&moto).await;
    let ec2 = connect(&moto_settings(&moto)).await.unwrap();
    let poller = fast_poller();
    let volume = ec2
        .client()
        .create_volume()
        .availability_zone("us-east-1a")
        .size(1)
        .send()
        .await
        .unwrap();
    let volume_id = volume.volume_id().unwrap();
    ec2.wait_volume_available(&poller, volume_id).await.unwrap();
    let snapshot = ec2
        .client()
        .create_snapshot()
        .volume_id(volume_id)
        .send()
        .await
        .unwrap();
    let snapshot_id = snapshot.snapshot_id().unwrap();
    let progress = Arc::new(Mutex::new(Vec::new()));
    let seen = progress.clone();
    ec2.wait_snapshot_completed(&poller, snapshot_id, move |p| {
        seen.lock().unwrap().push(p.to_owned())
    })
    .await
    .unwrap();
    let progress = progress.lock().unwrap().clone();
    assert_eq!(
        progress.last().map(String::as_str),
        Some("100%"),
        "{progress:?}"
    );
}

#[tokio::test]
async fn volume_attaches_to_an_instance_and_detaches() {
    let moto = MotoServer::start().await;
    let _env = moto_env(&moto).await;
    let ec2 = connect(&moto_settings(&moto)).await.unwrap();
    let poller = fast_poller();
    let images = ec2
        .client()
        .describe_images()
        .owners("amazon")
        .filters(
            Filter::builder()
                .name("architecture")
                .values("x86_64")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let image_id = images.images()[0].image_id().unwrap().to_owned();
    let run = ec2
        .client()
        .run_instances()
        .image_id(&image_id)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .unwrap();
    let instance_id = run.instances()[0].instance_id().unwrap();
    let instance = ec2.describe_instance(instance_id).await.unwrap();
    assert_eq!(instance.instance_id(), Some(instance_id));
    let zone = instance
        .placement()
        .and_then(|p| p.availability_zone())
        .unwrap();
    let volume = ec2
        .client()
        .create_volume()
        .availability_zone(zone)
        .size(1)
        .send()
        .await
        .unwrap();
    let volume_id = volume.volume_id().unwrap();
    ec2.wait_volume_available(&poller, volume_id).await.unwrap();
    ec2.client()
        .attach_volume()
        .instance_id(instance_id)
        .volume_id(volume_id)
        .device("/dev/sdf")
        .send()
        .await
        .unwrap();
    ec2.wait_volume_attached(&poller, volume_id, instance_id)
        .await
        .unwrap();
    // moto answers 500 to a DetachVolume without InstanceId (EC2 does not need it).
    ec2.client()
        .detach_volume()
        .volume_id(volume_id)
        .instance_id(instance_id)
        .send()
        .await
        .unwrap();
    ec2.wait_volume_detached(&poller, volume_id).await.unwrap();
}

#[tokio::test]
async fn instance_missing_from_the_region_is_blamed_on_the_region() {
    let moto = MotoServer::start().await;
    let _env = moto_env(&moto).await;
    let ec2 = connect(&moto_settings(&moto)).await.unwrap();
    let err = ec2
        .describe_instance("i-0123456789abcdef0")
        .await
        .unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains("i-0123456789abcdef0"), "{shown}");
    assert!(shown.contains("region us-east-1"), "{shown}");
}

#[tokio::test]
async fn registered_image_becomes_available() {
    let moto = MotoServer::start().await;
    let _env = moto_env(&moto).await;
    let ec2 = connect(&moto_settings(&moto)).await.unwrap();
    let poller = fast_poller();
    let volume = ec2
        .client()
        .create_volume()
        .availability_zone("us-east-1a")
        .size(1)
        .send()
        .await
        .unwrap();
    let volume_id = volume.volume_id().unwrap();
    ec2.wait_volume_available(&poller, volume_id).await.unwrap();
    let snapshot = ec2
        .client()
        .create_snapshot()
        .volume_id(volume_id)
        .send()
        .await
        .unwrap();
    let snapshot_id = snapshot.snapshot_id().unwrap();
    ec2.wait_snapshot_completed(&poller, snapshot_id, |_| {})
        .await
        .unwrap();
    let registered = ec2
        .client()
        .register_image()
        .name("packer-rust-test")
        .root_device_name("/dev/xvda")
        .architecture(aws_sdk_ec2::types::ArchitectureValues::X8664)
        .virtualization_type("hvm")
        .block_device_mappings(
            aws_sdk_ec2::types::BlockDeviceMapping::builder()
                .device_name("/dev/xvda")
                .ebs(
                    aws_sdk_ec2::types::EbsBlockDevice::builder()
                        .snapshot_id(snapshot_id)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let image_id = registered.image_id().unwrap();
    let image = ec2.wait_image_available(&poller, image_id).await.unwrap();
    assert_eq!(image.name(), Some("packer-rust-test"));

    // A copy to another region is awaited on that region's connection.
    let west = ec2.in_region("us-west-2");
    assert_eq!(west.region(), "us-west-2");
    let copy = west
        .client()
        .copy_image()
        .name("packer-rust-test-copy")
        .source_image_id(image_id)
        .source_region("us-east-1")
        .send()
        .await
        .unwrap();
    let copied = west
        .wait_image_copied(&poller, copy.image_id().unwrap())
        .await
        .unwrap();
    assert_eq!(copied.name(), Some("packer-rust-test-copy"));
}

#[tokio::test]
async fn assume_role_sends_every_field_and_uses_the_session() {
    let moto = MotoServer::start().await;
    let _env = moto_env(&moto).await;
    let settings = AwsSettings {
        assume_role: Some(AssumeRoleSettings {
            role_arn: "arn:aws:iam::123456789012:role/packer-build".into(),
            duration_seconds: Some(900),
            external_id: Some("ext-1".into()),
            session_name: Some("chroot-test".into()),
            tags: [("team".to_owned(), "images".to_owned())].into(),
            transitive_tag_keys: vec!["team".into()],
            ..Default::default()
        }),
        ..moto_settings(&moto)
    };
    let ec2 = connect(&settings).await.unwrap();
    let session = ec2.credentials().provide_credentials().await.unwrap();
    // moto hands out its own session keys: not the base keys, and with a token.
    assert_ne!(session.access_key_id(), "AKIDMOTOTESTING");
    assert!(session.session_token().is_some());
    assert!(session.expiry().is_some());
    let regions = ec2.client().describe_regions().send().await.unwrap();
    assert!(!regions.regions().is_empty());
}
