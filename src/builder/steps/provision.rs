//! Step 14: Packer's provisioners, through `Hook.Run("packer_provision")`
//! with the chroot communicator. A failed build runs the
//! `error-cleanup-provisioner` (`packer_cleanup_provision`) while the chroot
//! is still mounted (upstream never ran it for chroot builds).

use std::sync::Arc;

use async_trait::async_trait;

use super::{BuildError, BuildState};
use crate::builder::runner::{Outcome, Step, StepContext};
use crate::chroot::ChrootCommunicator;
use crate::plugin::api::{BoxError, Communicator, Map, Value};

/// Hook names of Packer core.
const HOOK_PROVISION: &str = "packer_provision";
const HOOK_CLEANUP_PROVISION: &str = "packer_cleanup_provision";

/// Runs the provisioners in the chroot.
pub struct Provision;

/// The generated data plus the common keys Packer's SDK adds for builders
/// without SSH/WinRM (`PopulateProvisionHookData`).
pub fn provision_hook_data(generated: &Map) -> Map {
    let mut data = generated.clone();
    let na = |what: &str| Value::String(format!("ERR_{what}_NOT_IMPLEMENTED_BY_BUILDER"));
    data.insert("ID".into(), na("ID"));
    data.insert("PackerHTTPIP".into(), na("HTTP_IP"));
    data.insert("PackerHTTPPort".into(), na("HTTP_PORT"));
    data.insert("PackerHTTPAddr".into(), na("HTTP_ADDR"));
    data.insert(
        "PackerRunUUID".into(),
        Value::String(std::env::var("PACKER_RUN_UUID").unwrap_or_default()),
    );
    data
}

fn communicator(
    state: &BuildState,
    ctx: &StepContext,
) -> Result<Arc<dyn Communicator>, BuildError> {
    let root = state
        .mount_path
        .as_ref()
        .ok_or(BuildError::Missing("mount path"))?;
    Ok(Arc::new(ChrootCommunicator::new(
        root,
        state.wrapper.clone(),
        ctx.cancel.clone(),
    )))
}

#[async_trait]
impl Step<BuildState> for Provision {
    fn name(&self) -> &'static str {
        "Provision"
    }

    async fn run(&mut self, state: &mut BuildState, ctx: &StepContext) -> Result<(), BoxError> {
        let comm = communicator(state, ctx)?;
        let data = provision_hook_data(&state.generated_data);
        state.generated_data = data.clone();
        ctx.ui.say("Running the provision hook").await;
        state.hook.run(HOOK_PROVISION, data, comm).await
    }

    async fn cleanup(
        &mut self,
        state: &mut BuildState,
        ctx: &StepContext,
        outcome: Outcome,
    ) -> Result<(), BoxError> {
        if outcome != Outcome::Failed {
            return Ok(());
        }
        let comm = communicator(state, ctx)?;
        ctx.ui
            .say("The build failed: running the error-cleanup-provisioner, if present...")
            .await;
        state
            .hook
            .run(HOOK_CLEANUP_PROVISION, state.generated_data.clone(), comm)
            .await
    }

    fn runs_cleanup_provisioner(&self) -> bool {
        true
    }
}
