//! Service `Artifact`, served after a successful `Run` (PROTOCOL.md §4.4).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rmpv::Value;

use crate::plugin::api;
use crate::plugin::broker::Broker;
use crate::plugin::msgpack;
use crate::plugin::rpc::{self, CallError, Handler};

/// Packer dials the artifact stream right after the Run reply.
const ARTIFACT_ACCEPT_TIMEOUT: Duration = Duration::from_secs(60);

/// Accepts broker id `id` and serves `artifact` on it until Packer hangs up.
pub async fn serve_artifact(broker: Broker, id: u32, artifact: Arc<dyn api::Artifact>) {
    match broker.accept(id, ARTIFACT_ACCEPT_TIMEOUT).await {
        Ok(stream) => rpc::serve(stream, Arc::new(ArtifactHandler { artifact })).await,
        Err(e) => tracing::warn!("artifact stream {id}: {e}"),
    }
}

struct ArtifactHandler {
    artifact: Arc<dyn api::Artifact>,
}

#[async_trait]
impl Handler for ArtifactHandler {
    async fn call(&self, service_method: &str, body: Value) -> Result<Value, CallError> {
        let a = &self.artifact;
        match service_method {
            "Artifact.BuilderId" => Ok(Value::from(a.builder_id())),
            "Artifact.Files" => {
                let files = a.files();
                Ok(msgpack::string_list(if files.is_empty() {
                    None
                } else {
                    Some(&files)
                }))
            }
            "Artifact.Id" => Ok(Value::from(a.id())),
            "Artifact.String" => Ok(Value::from(a.string())),
            "Artifact.State" => {
                let key = msgpack::as_string(&body).unwrap_or_default();
                Ok(a.state(&key).map_or(Value::Nil, |v| msgpack::from_json(&v)))
            }
            "Artifact.Destroy" => {
                a.destroy().await.map_err(CallError::failed)?;
                // Typed `error` reply: only nil decodes on Packer's side.
                Ok(Value::Nil)
            }
            m if m.starts_with("Artifact.") => Err(CallError::NoMethod(m.to_owned())),
            m => Err(CallError::NoService(m.to_owned())),
        }
    }
}
