//! Step 16: snapshot the detached working volume and wait until the
//! snapshot is complete, showing EC2's progress. Cleanup deletes it when
//! the build does not succeed (after the AMI cleanup deregistered any AMI
//! using it).

use std::time::SystemTime;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{delete_snapshot, BuildError, BuildState};
use crate::aws::AwsError;
use crate::builder::runner::{Outcome, Step, StepContext};
use crate::plugin::api::BoxError;

/// Snapshots the working volume.
pub struct Snapshot;

#[async_trait]
impl Step<BuildState> for Snapshot {
    fn name(&self) -> &'static str {
        "Snapshot"
    }

    async fn run(&mut self, state: &mut BuildState, ctx: &StepContext) -> Result<(), BoxError> {
        let volume_id = state.volume_id()?;
        ctx.ui.say("Creating snapshot...").await;
        let description = format!("Packer: {}", rfc3339_now());
        let out = state
            .ec2
            .client()
            .create_snapshot()
            .volume_id(&volume_id)
            .description(description)
            .send()
            .await
            .map_err(|e| AwsError::api("CreateSnapshot", volume_id.clone(), e))?;
        let snapshot_id = out
            .snapshot_id()
            .ok_or(BuildError::Missing(
                "snapshot id in CreateSnapshot's answer",
            ))?
            .to_string();
        ctx.ui.message(&format!("Snapshot ID: {snapshot_id}")).await;
        state.snapshot_id = Some(snapshot_id.clone());
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let ui = ctx.ui.clone();
        let shown = tokio::spawn(async move {
            while let Some(progress) = rx.recv().await {
                ui.message(&format!("Snapshot progress: {progress}")).await;
            }
        });
        let result = state
            .ec2
            .wait_snapshot_completed(&state.poller, &snapshot_id, move |p| {
                let _ = tx.send(p.to_string());
            })
            .await;
        let _ = shown.await;
        result?;
        state
            .snapshots
            .insert(state.region().to_string(), vec![snapshot_id]);
        Ok(())
    }

    async fn cleanup(
        &mut self,
        state: &mut BuildState,
        ctx: &StepContext,
        outcome: Outcome,
    ) -> Result<(), BoxError> {
        if outcome == Outcome::Succeeded {
            return Ok(());
        }
        let Some(snapshot_id) = state.snapshot_id.take() else {
            return Ok(());
        };
        ctx.ui
            .say(&format!(
                "Removing snapshot {snapshot_id} since we cancelled or halted..."
            ))
            .await;
        delete_snapshot(&state.ec2, &snapshot_id).await?;
        Ok(())
    }
}

/// The current UTC time as RFC 3339 (`2024-05-01T12:00:00Z`).
fn rfc3339_now() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::rfc3339_now;

    #[test]
    fn snapshot_descriptions_carry_an_rfc3339_utc_time() {
        let now = rfc3339_now();
        assert_eq!(now.len(), "2024-05-01T12:00:00Z".len(), "{now}");
        assert!(now.ends_with('Z') && now.as_bytes()[10] == b'T', "{now}");
        let year: i32 = now[..4].parse().unwrap();
        assert!(year >= 2024, "{now}");
    }
}
