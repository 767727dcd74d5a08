//! The waits of an amazon-chroot build, each a probe for [`Poller::wait_for`].
//!
//! EC2 is eventually consistent: a volume or image just created may be
//! "not found" for a moment, so those answers mean "not yet" where the
//! resource is known to exist.

use std::time::Duration;

use aws_sdk_ec2::types::{
    Image, ImageState, SnapshotState, Volume, VolumeAttachmentState, VolumeState,
};

use super::connect::Ec2;
use super::error::AwsError;
use super::poller::{Poller, Probe};

/// Volume state changes take seconds; ten minutes means something is stuck.
const VOLUME_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Snapshots and AMIs of large volumes take a long time; upstream's 30 min is too short
/// for some, and a user who wants less sets `aws_polling`.
const IMAGE_TIMEOUT: Duration = Duration::from_secs(2 * 60 * 60);

impl Ec2 {
    async fn describe_volume(&self, volume_id: &str) -> Result<Option<Volume>, AwsError> {
        match self
            .client()
            .describe_volumes()
            .volume_ids(volume_id)
            .send()
            .await
        {
            Ok(out) => Ok(out.volumes.unwrap_or_default().into_iter().next()),
            Err(e) => {
                let err = AwsError::api("DescribeVolumes", volume_id.to_owned(), e);
                if err.is_not_found() {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
        }
    }

    async fn describe_image(&self, image_id: &str) -> Result<Option<Image>, AwsError> {
        match self
            .client()
            .describe_images()
            .image_ids(image_id)
            .send()
            .await
        {
            Ok(out) => Ok(out.images.unwrap_or_default().into_iter().next()),
            Err(e) => {
                let err = AwsError::api("DescribeImages", image_id.to_owned(), e);
                if err.is_not_found() {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Waits until a newly created volume is `available`.
    pub async fn wait_volume_available(
        &self,
        poller: &Poller,
        volume_id: &str,
    ) -> Result<(), AwsError> {
        let what = format!("volume {volume_id} to become available");
        let result = poller
            .with_default_timeout(VOLUME_TIMEOUT)
            .wait_for(&what, || async {
                match self.describe_volume(volume_id).await {
                    // Just created: DescribeVolumes may not know it yet.
                    Ok(None) => Probe::Pending("not visible yet".into()),
                    Ok(Some(v)) => match v.state() {
                        Some(VolumeState::Available) => Probe::Ready(()),
                        Some(VolumeState::Error) => Probe::Failed(AwsError::ResourceFailed {
                            what: format!("volume {volume_id}"),
                            reason: "entered the error state".into(),
                        }),
                        state => Probe::Pending(state_text(state)),
                    },
                    Err(e) => Probe::Failed(e),
                }
            })
            .await;
        self.explained(result).await
    }

    /// Waits until the volume is attached to `instance_id` and every attachment it has is
    /// `attached` (right after AttachVolume, EC2 may list no attachment at all).
    pub async fn wait_volume_attached(
        &self,
        poller: &Poller,
        volume_id: &str,
        instance_id: &str,
    ) -> Result<(), AwsError> {
        let what = format!("volume {volume_id} to attach to {instance_id}");
        let result = poller
            .with_default_timeout(VOLUME_TIMEOUT)
            .wait_for(&what, || async {
                match self.describe_volume(volume_id).await {
                    Ok(None) => Probe::Pending("not visible yet".into()),
                    Ok(Some(v)) => {
                        let attachments = v.attachments();
                        if attachments.is_empty() {
                            return Probe::Pending("No attachments".into());
                        }
                        let ours = attachments
                            .iter()
                            .any(|a| a.instance_id() == Some(instance_id));
                        let all_attached = attachments
                            .iter()
                            .all(|a| a.state() == Some(&VolumeAttachmentState::Attached));
                        if ours && all_attached {
                            Probe::Ready(())
                        } else {
                            let states: Vec<String> = attachments
                                .iter()
                                .map(|a| {
                                    format!(
                                        "{}: {}",
                                        a.instance_id().unwrap_or("?"),
                                        a.state().map(|s| s.as_str()).unwrap_or("unknown")
                                    )
                                })
                                .collect();
                            Probe::Pending(states.join(", "))
                        }
                    }
                    Err(e) => Probe::Failed(e),
                }
            })
            .await;
        self.explained(result).await
    }

    /// Waits until the volume has no attachment left (a volume that is gone counts as detached).
    pub async fn wait_volume_detached(
        &self,
        poller: &Poller,
        volume_id: &str,
    ) -> Result<(), AwsError> {
        let what = format!("volume {volume_id} to detach");
        let result = poller
            .with_default_timeout(VOLUME_TIMEOUT)
            .wait_for(&what, || async {
                match self.describe_volume(volume_id).await {
                    Ok(None) => Probe::Ready(()),
                    Ok(Some(v)) if v.attachments().is_empty() => Probe::Ready(()),
                    Ok(Some(v)) => Probe::Pending(
                        v.attachments()
                            .iter()
                            .map(|a| a.state().map(|s| s.as_str()).unwrap_or("unknown"))
                            .collect::<Vec<_>>()
                            .join(", "),
                    ),
                    Err(e) => Probe::Failed(e),
                }
            })
            .await;
        self.explained(result).await
    }

    /// Waits until the volume is deleted (or no longer known to EC2).
    pub async fn wait_volume_deleted(
        &self,
        poller: &Poller,
        volume_id: &str,
    ) -> Result<(), AwsError> {
        let what = format!("volume {volume_id} to be deleted");
        let result = poller
            .with_default_timeout(VOLUME_TIMEOUT)
            .wait_for(&what, || async {
                match self.describe_volume(volume_id).await {
                    Ok(None) => Probe::Ready(()),
                    Ok(Some(v)) if v.state() == Some(&VolumeState::Deleted) => Probe::Ready(()),
                    Ok(Some(v)) => Probe::Pending(state_text(v.state())),
                    Err(e) => Probe::Failed(e),
                }
            })
            .await;
        self.explained(result).await
    }

    /// Waits until the snapshot is `completed`, calling `on_progress` with EC2's progress
    /// text ("42%") each time it changes.
    pub async fn wait_snapshot_completed(
        &self,
        poller: &Poller,
        snapshot_id: &str,
        on_progress: impl FnMut(&str) + Send,
    ) -> Result<(), AwsError> {
        let what = format!("snapshot {snapshot_id} to complete");
        // Shared by every probe future; a Mutex (not a RefCell) keeps the wait `Send`.
        let progress_seen = std::sync::Mutex::new((on_progress, String::new()));
        let report = |progress: &str| {
            let mut guard = progress_seen.lock().unwrap_or_else(|p| p.into_inner());
            let (callback, last) = &mut *guard;
            if !progress.is_empty() && last != progress {
                progress.clone_into(last);
                callback(progress);
            }
        };
        let result = poller
            .with_default_timeout(IMAGE_TIMEOUT)
            .wait_for(&what, || async {
                let out = match self
                    .client()
                    .describe_snapshots()
                    .snapshot_ids(snapshot_id)
                    .send()
                    .await
                {
                    Ok(out) => out,
                    Err(e) => {
                        let err = AwsError::api("DescribeSnapshots", snapshot_id.to_owned(), e);
                        return if err.is_not_found() {
                            Probe::Pending("not visible yet".into())
                        } else {
                            Probe::Failed(err)
                        };
                    }
                };
                let Some(snapshot) = out.snapshots.unwrap_or_default().into_iter().next() else {
                    return Probe::Pending("not visible yet".into());
                };
                let progress = snapshot.progress().unwrap_or("");
                report(progress);
                match snapshot.state() {
                    Some(SnapshotState::Completed) => Probe::Ready(()),
                    Some(SnapshotState::Error) => Probe::Failed(AwsError::ResourceFailed {
                        what: format!("snapshot {snapshot_id}"),
                        reason: snapshot
                            .state_message()
                            .unwrap_or("entered the error state")
                            .to_owned(),
                    }),
                    state => Probe::Pending(format!(
                        "{} {progress}",
                        state.map(|s| s.as_str()).unwrap_or("unknown")
                    )),
                }
            })
            .await;
        self.explained(result).await
    }

    /// Waits until the image is `available`; a `failed` image ends the wait with its StateReason.
    pub async fn wait_image_available(
        &self,
        poller: &Poller,
        image_id: &str,
    ) -> Result<Image, AwsError> {
        self.wait_image(
            poller,
            image_id,
            format!("image {image_id} to become available"),
        )
        .await
    }

    /// Waits for an AMI copy; call it on the connection of the destination region
    /// ([`Ec2::in_region`]) with the id CopyImage returned.
    pub async fn wait_image_copied(
        &self,
        poller: &Poller,
        image_id: &str,
    ) -> Result<Image, AwsError> {
        let what = format!("copy {image_id} in {} to become available", self.region());
        self.wait_image(poller, image_id, what).await
    }

    async fn wait_image(
        &self,
        poller: &Poller,
        image_id: &str,
        what: String,
    ) -> Result<Image, AwsError> {
        let result = poller
            .with_default_timeout(IMAGE_TIMEOUT)
            .wait_for(&what, || async {
                match self.describe_image(image_id).await {
                    // Just registered or copied: DescribeImages may not list it yet.
                    Ok(None) => Probe::Pending("not visible yet".into()),
                    Ok(Some(image)) => match image.state() {
                        Some(ImageState::Available) => Probe::Ready(image),
                        Some(
                            state @ (ImageState::Failed
                            | ImageState::Error
                            | ImageState::Invalid
                            | ImageState::Deregistered),
                        ) => {
                            let reason = image
                                .state_reason()
                                .map(|r| {
                                    format!(
                                        "{}: {}",
                                        r.code().unwrap_or("no code"),
                                        r.message().unwrap_or("no message")
                                    )
                                })
                                .unwrap_or_else(|| "no StateReason given".into());
                            Probe::Failed(AwsError::ResourceFailed {
                                what: format!("image {image_id}"),
                                reason: format!("state {}: {reason}", state.as_str()),
                            })
                        }
                        state => Probe::Pending(
                            state.map(|s| s.as_str()).unwrap_or("unknown").to_owned(),
                        ),
                    },
                    Err(e) => Probe::Failed(e),
                }
            })
            .await;
        self.explained(result).await
    }

    async fn explained<T>(&self, result: Result<T, AwsError>) -> Result<T, AwsError> {
        match result {
            Ok(v) => Ok(v),
            Err(e) => Err(self.explain(e).await),
        }
    }
}

fn state_text(state: Option<&VolumeState>) -> String {
    state.map(|s| s.as_str()).unwrap_or("unknown").to_owned()
}
