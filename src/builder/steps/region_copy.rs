//! Step 19: copy the AMI to `ami_regions` (and, for `encrypt_boot`, to the
//! build region encrypted), all regions at once. An intermediary AMI
//! (`encrypt_boot`, `skip_save_build_region`) is deregistered afterwards.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::operation::copy_image::builders::CopyImageFluentBuilder;

use super::register_ami::is_intermediary;
use super::{destroy_ami, BuildError, BuildState};
use crate::aws::AwsError;
use crate::builder::config::Config;
use crate::builder::runner::{Step, StepContext};
use crate::plugin::api::BoxError;

/// How often a running copy is reported: EC2 gives image copies no
/// progress figure, so the user at least sees the build is alive.
const COPY_REPORT_INTERVAL: Duration = Duration::from_secs(30);

/// The periodic line about a copy in progress.
fn still_copying(source_ami: &str, region: &str, waited: Duration) -> String {
    format!(
        "Still copying {source_ami} to {region} ({} s)",
        waited.as_secs()
    )
}

/// Awaits `copy`, calling `report` with the time waited so far every `interval`.
async fn report_while_copying<T, R, F>(
    copy: impl Future<Output = T>,
    interval: Duration,
    mut report: R,
) -> T
where
    R: FnMut(Duration) -> F,
    F: Future<Output = ()>,
{
    let started = tokio::time::Instant::now();
    let mut ticks = tokio::time::interval_at(started + interval, interval);
    tokio::pin!(copy);
    loop {
        tokio::select! {
            done = &mut copy => return done,
            _ = ticks.tick() => report(started.elapsed()).await,
        }
    }
}

/// Copies the AMI to other regions.
pub struct RegionCopy;

/// Target regions: `ami_regions` without duplicates; the build region
/// only when encrypting into it (never with `skip_save_build_region`).
pub fn copy_targets(
    ami_regions: &[String],
    build_region: &str,
    encrypt: bool,
    skip_build: bool,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in ami_regions {
        if r != build_region && !out.contains(r) {
            out.push(r.clone());
        }
    }
    if encrypt && !skip_build {
        out.push(build_region.to_string());
    }
    out
}

/// Drops the intermediary from the build's AMIs once it is being deleted:
/// the build region keeps an entry only when its own copy was made (with
/// `skip_save_build_region`, or when that copy failed, nothing remains
/// there for the artifact or the failure cleanup).
fn forget_intermediary(state: &mut BuildState, build_region: &str, intermediary: &str) {
    forget_from(
        &mut state.amis,
        &mut state.snapshots,
        build_region,
        intermediary,
    );
}

/// [`forget_intermediary`] on the maps themselves.
fn forget_from(
    amis: &mut BTreeMap<String, String>,
    snapshots: &mut BTreeMap<String, Vec<String>>,
    build_region: &str,
    intermediary: &str,
) {
    if amis.get(build_region).map(String::as_str) == Some(intermediary) {
        amis.remove(build_region);
        snapshots.remove(build_region);
    }
}

/// The KMS key of the copy into `region`: `kms_key_id` for the build
/// region (or its `region_kms_key_ids` entry when that is unset), the
/// region's `region_kms_key_ids` entry elsewhere; empty means EC2's default
/// key of that region.
fn copy_key<'c>(config: &'c Config, build_region: &str, region: &str) -> &'c str {
    let a = &config.ami;
    let listed = a.region_kms_key_ids.get(region).map(String::as_str);
    if region == build_region && !a.kms_key_id.is_empty() {
        &a.kms_key_id
    } else {
        listed.unwrap_or_default()
    }
}

/// The CopyImage call that copies `source_ami` from `build_region` into
/// `region` (`client` is in `region`): named `ami_name`, its tags copied,
/// encrypted as `encrypt_boot` says with the region's key, and a time-based
/// copy when `snapshot_copy_duration_minutes` is set.
fn copy_image_call(
    client: &aws_sdk_ec2::Client,
    config: &Config,
    build_region: &str,
    source_ami: &str,
    region: &str,
) -> CopyImageFluentBuilder {
    let a = &config.ami;
    let encrypt = a.encrypt_boot.as_option();
    let key = copy_key(config, build_region, region);
    client
        .copy_image()
        .source_region(build_region)
        .source_image_id(source_ami)
        .name(&a.ami_name)
        .set_encrypted(encrypt)
        .set_kms_key_id((encrypt == Some(true) && !key.is_empty()).then(|| key.to_string()))
        .copy_image_tags(true)
        .set_snapshot_copy_completion_duration_minutes(
            (a.snapshot_copy_duration_minutes != 0).then_some(a.snapshot_copy_duration_minutes),
        )
}

#[async_trait]
impl Step<BuildState> for RegionCopy {
    fn name(&self) -> &'static str {
        "RegionCopy"
    }

    async fn run(&mut self, state: &mut BuildState, ctx: &StepContext) -> Result<(), BoxError> {
        let config = state.config.clone();
        let a = &config.ami;
        let build_region = state.region().to_string();
        let targets = copy_targets(
            &a.ami_regions,
            &build_region,
            a.encrypt_boot.is_true(),
            a.skip_save_build_region,
        );
        if targets.is_empty() {
            return Ok(());
        }
        let source_ami = state
            .amis
            .get(&build_region)
            .cloned()
            .ok_or(BuildError::Missing("registered AMI"))?;
        let copies = targets.iter().map(|region| {
            let ec2 = state.ec2.in_region(region);
            let req = copy_image_call(ec2.client(), &config, &build_region, &source_ami, region);
            let ui = ctx.ui.clone();
            let poller = state.poller.clone();
            let source_ami = source_ami.clone();
            let region = region.clone();
            async move {
                ui.message(&format!("Copying {source_ami} to {region}..."))
                    .await;
                let out = req
                    .send()
                    .await
                    .map_err(|e| AwsError::api("CopyImage", source_ami.clone(), e))?;
                let id = out.image_id().unwrap_or_default().to_string();
                let image = report_while_copying(
                    ec2.wait_image_copied(&poller, &id),
                    COPY_REPORT_INTERVAL,
                    |waited| {
                        let ui = ui.clone();
                        let line = still_copying(&source_ami, &region, waited);
                        async move { ui.message(&line).await }
                    },
                )
                .await;
                let snapshots = image
                    .as_ref()
                    .map(|i| {
                        i.block_device_mappings()
                            .iter()
                            .filter_map(|m| {
                                m.ebs().and_then(|e| e.snapshot_id()).map(str::to_string)
                            })
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                Ok::<_, AwsError>((region, id, snapshots, image.err()))
            }
        });
        let results = futures::future::join_all(copies).await;
        let intermediary = is_intermediary(&config).then(|| source_ami.clone());
        let mut errors = Vec::new();
        for result in results {
            match result {
                Ok((region, id, snapshots, wait_error)) => {
                    // Recorded even when the wait failed, so cleanup removes it.
                    state.amis.insert(region.clone(), id);
                    state.snapshots.insert(region, snapshots);
                    if let Some(e) = wait_error {
                        errors.push(e.to_string());
                    }
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        if let Some(intermediary) = intermediary {
            forget_intermediary(state, &build_region, &intermediary);
            ctx.ui
                .say(&format!(
                    "Deregistering the intermediary AMI {intermediary}..."
                ))
                .await;
            if let Err(e) = destroy_ami(&state.ec2, &intermediary).await {
                errors.extend(e);
            }
            state.snapshot_id = None;
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(BuildError::Several(errors).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{copy_image_call, copy_targets, forget_from, report_while_copying, still_copying};
    use crate::builder::config::Config;
    use aws_sdk_ec2::operation::copy_image::builders::CopyImageInputBuilder;
    use serde_json::json;
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::super::test_config as config;

    /// The CopyImage request into `region` as it would be sent (no network).
    fn copy_request(config: &Config, region: &str) -> CopyImageInputBuilder {
        let client = aws_sdk_ec2::Client::from_conf(
            aws_sdk_ec2::Config::builder()
                .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
                .region(aws_sdk_ec2::config::Region::new(region.to_string()))
                .build(),
        );
        copy_image_call(&client, config, "us-east-1", "ami-1", region)
            .as_input()
            .clone()
    }

    #[test]
    fn time_based_copies_send_the_completion_duration() {
        let c = config(json!({"ami_regions": ["eu-west-1"], "snapshot_copy_duration_minutes": 15}));
        let r = copy_request(&c, "eu-west-1");
        assert_eq!(r.get_snapshot_copy_completion_duration_minutes(), &Some(15));
        assert_eq!(r.get_source_region().as_deref(), Some("us-east-1"));
        assert_eq!(r.get_source_image_id().as_deref(), Some("ami-1"));
        assert_eq!(r.get_name().as_deref(), Some("web-ami"));
        assert_eq!(r.get_copy_image_tags(), &Some(true));
    }

    #[test]
    fn standard_copies_send_no_completion_duration() {
        let c = config(json!({"ami_regions": ["eu-west-1"]}));
        let r = copy_request(&c, "eu-west-1");
        assert_eq!(r.get_snapshot_copy_completion_duration_minutes(), &None);
        assert_eq!(r.get_encrypted(), &None);
        assert_eq!(r.get_kms_key_id(), &None);
    }

    #[test]
    fn each_encrypted_copy_uses_its_region_key() {
        let c = config(json!({
            "encrypt_boot": true,
            "kms_key_id": "alias/build",
            "ami_regions": ["eu-west-1", "us-west-2"],
            "region_kms_key_ids": {"eu-west-1": "alias/eu", "us-west-2": "alias/usw"}
        }));
        for (region, key) in [
            ("us-east-1", "alias/build"),
            ("eu-west-1", "alias/eu"),
            ("us-west-2", "alias/usw"),
        ] {
            let r = copy_request(&c, region);
            assert_eq!(r.get_encrypted(), &Some(true), "{region}");
            assert_eq!(r.get_kms_key_id().as_deref(), Some(key), "{region}");
        }
    }

    #[test]
    fn encrypted_copy_without_a_key_uses_the_region_default() {
        let c = config(json!({"encrypt_boot": true, "ami_regions": ["eu-west-1"]}));
        let r = copy_request(&c, "eu-west-1");
        assert_eq!(r.get_encrypted(), &Some(true));
        assert_eq!(r.get_kms_key_id(), &None);
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn copies_go_to_each_other_region_once() {
        assert_eq!(
            copy_targets(
                &s(&["eu-west-1", "us-east-1", "eu-west-1"]),
                "us-east-1",
                false,
                false
            ),
            s(&["eu-west-1"])
        );
    }

    #[test]
    fn encryption_copies_into_the_build_region_unless_skipped() {
        assert_eq!(
            copy_targets(&[], "us-east-1", true, false),
            s(&["us-east-1"])
        );
        assert_eq!(
            copy_targets(&s(&["eu-west-1"]), "us-east-1", true, true),
            s(&["eu-west-1"])
        );
    }

    fn maps(amis: &[(&str, &str)]) -> (BTreeMap<String, String>, BTreeMap<String, Vec<String>>) {
        let amis: BTreeMap<String, String> = amis
            .iter()
            .map(|(r, a)| (r.to_string(), a.to_string()))
            .collect();
        let snapshots = amis
            .iter()
            .map(|(r, a)| (r.clone(), vec![format!("snap-of-{a}")]))
            .collect();
        (amis, snapshots)
    }

    #[test]
    fn without_a_build_region_copy_only_the_other_copies_remain() {
        // skip_save_build_region, or the copy into the build region failed:
        // the build region still maps to the intermediary.
        let (mut amis, mut snapshots) =
            maps(&[("us-east-1", "ami-inter"), ("eu-west-1", "ami-eu")]);
        forget_from(&mut amis, &mut snapshots, "us-east-1", "ami-inter");
        assert_eq!(amis.keys().collect::<Vec<_>>(), ["eu-west-1"]);
        assert_eq!(snapshots.keys().collect::<Vec<_>>(), ["eu-west-1"]);
    }

    #[test]
    fn the_encrypted_build_region_copy_stays() {
        let (mut amis, mut snapshots) = maps(&[("us-east-1", "ami-enc"), ("eu-west-1", "ami-eu")]);
        forget_from(&mut amis, &mut snapshots, "us-east-1", "ami-inter");
        assert_eq!(amis["us-east-1"], "ami-enc");
        assert_eq!(snapshots["us-east-1"], ["snap-of-ami-enc"]);
    }

    #[tokio::test]
    async fn long_copies_report_the_time_waited_until_done() {
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = lines.clone();
        let copied = report_while_copying(
            async {
                tokio::time::sleep(Duration::from_millis(2500)).await;
                "ami-copy"
            },
            Duration::from_secs(1),
            |waited| {
                seen.lock()
                    .unwrap()
                    .push(still_copying("ami-1", "eu-west-1", waited));
                async {}
            },
        )
        .await;
        assert_eq!(copied, "ami-copy");
        assert_eq!(
            *lines.lock().unwrap(),
            [
                "Still copying ami-1 to eu-west-1 (1 s)",
                "Still copying ami-1 to eu-west-1 (2 s)"
            ]
        );
    }
}
