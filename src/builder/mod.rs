//! The amazon-chroot builder: configuration, validation and the step pipeline.

pub mod access;
pub mod artifact;
pub mod config;
pub mod runner;
pub mod steps;
pub mod template;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::aws::{connect, AwsError, Ec2, Poller};
use crate::chroot::host_shell::CommandWrapper;
use crate::plugin::api::{
    Artifact, BoxError, Builder, Hook, PrepareArgs, PrepareErrors, Prepared, Ui,
};
use crate::plugin::spec::ObjectSpec;
use artifact::AmiArtifact;
use config::Config;
use runner::{run_steps, RunError, RunnerOptions, StepContext};
use steps::BuildState;

/// HashiCorp's `amazon-chroot` builder, re-done.
#[derive(Default)]
pub struct AmazonChrootBuilder {
    /// The configuration of the last successful Prepare.
    config: Mutex<Option<Arc<Config>>>,
}

impl AmazonChrootBuilder {
    /// A builder awaiting Prepare.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Builder for AmazonChrootBuilder {
    fn config_spec(&self) -> ObjectSpec {
        config::config_spec()
    }

    async fn prepare(&self, args: PrepareArgs) -> Result<Prepared, PrepareErrors> {
        let (config, prepared) = Config::from_prepare(&args)?;
        *self.config.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(config));
        Ok(prepared)
    }

    async fn run(
        &self,
        ui: Arc<dyn Ui>,
        hook: Arc<dyn Hook>,
        cancel: CancellationToken,
    ) -> Result<Option<Arc<dyn Artifact>>, BoxError> {
        let config = self
            .config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or("Run called before a successful Prepare")?;
        if !cfg!(target_os = "linux") {
            return Err("The amazon-chroot builder only works on Linux environments.".into());
        }
        let started = std::time::Instant::now();
        let settings = access::aws_settings(&config.access);
        let ec2 = connect(&settings).await?;
        let poller = Poller::new(settings.polling, cancel.clone());
        let wrapper_config = config.clone();
        let wrapper: CommandWrapper = Arc::new(move |command: &str| {
            wrapper_config
                .wrap_command(command)
                .map_err(|e| -> BoxError { format!("command_wrapper: {e}").into() })
        });
        let mut state = BuildState::new(config.clone(), ec2.clone(), poller, wrapper, hook);
        let mut steps = steps::steps(&config);
        let ctx = StepContext { ui, cancel };
        let options = RunnerOptions {
            on_error: config.run.on_error,
            debug: config.run.debug,
        };
        if let Err(err) = run_steps(&mut steps, &mut state, &ctx, options).await {
            return Err(explained(&ec2, err).await.into());
        }
        if state.amis.is_empty() {
            return Ok(None);
        }
        let amis: Vec<String> = state
            .amis
            .iter()
            .map(|(region, ami)| format!("{region}: {ami}"))
            .collect();
        ctx.ui
            .say(&format!(
                "Build finished in {:.1?}; AMIs: {}",
                started.elapsed(),
                amis.join(", ")
            ))
            .await;
        Ok(Some(Arc::new(AmiArtifact {
            amis: state.amis.clone(),
            generated_data: state.generated_data.clone(),
            ec2: Some(ec2),
        })))
    }
}

/// With `decode_authorization_messages`, a step that failed on an encoded
/// `UnauthorizedOperation` (any EC2 call, not only the waits) gets the
/// decoded reason added to its error.
async fn explained(ec2: &Ec2, err: RunError) -> RunError {
    match err {
        RunError::Step {
            mut failure,
            cleanup,
        } => {
            failure.error = match failure.error.downcast::<AwsError>() {
                Ok(aws) => Box::new(ec2.explain(*aws).await),
                Err(other) => other,
            };
            RunError::Step { failure, cleanup }
        }
        other => other,
    }
}
