//! Service `Builder` on broker stream 0 (PROTOCOL.md §4.1).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rmpv::Value;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use crate::plugin::api::{self, Prepared};
use crate::plugin::broker::Broker;
use crate::plugin::msgpack;
use crate::plugin::rpc::{self, CallError, Handler};
use crate::plugin::services::artifact::serve_artifact;
use crate::plugin::services::prepare::decode_prepare_args;
use crate::plugin::services::run_stream::{HookClient, UiClient};
use crate::plugin::spec::gob::{self, GobFlavor};
use crate::plugin::spec::proto;

/// Packer dials stream 0 right after connecting; a minute is generous.
const MAIN_STREAM_ACCEPT_TIMEOUT: Duration = Duration::from_secs(60);

/// How the ConfigSpec reply is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecEncoding {
    /// Protobuf `Spec` (Packer ≥1.12 started us with `--protobuf`).
    Protobuf,
    /// Gob `hcldec.ObjectSpec`; the flavour is detected from the parent
    /// Packer on first use unless given.
    Gob(Option<GobFlavor>),
}

/// Serves `builder` on stream 0 of `broker` and returns when the
/// connection is gone (or stream 0 never came).
pub async fn serve_builder(broker: Broker, builder: Arc<dyn api::Builder>, encoding: SpecEncoding) {
    let stream = match broker.accept(0, MAIN_STREAM_ACCEPT_TIMEOUT).await {
        Ok(stream) => stream,
        Err(e) => {
            tracing::error!("Packer never opened the main RPC stream: {e}");
            return;
        }
    };
    let handler = Arc::new(BuilderHandler::new(builder, broker.clone(), encoding));
    tokio::spawn(rpc::serve(stream, handler));
    broker.session().closed().await;
}

/// The `Builder` RPC service around an [`api::Builder`].
pub struct BuilderHandler {
    builder: Arc<dyn api::Builder>,
    broker: Broker,
    encoding: SpecEncoding,
    gob_flavor: OnceCell<GobFlavor>,
    /// The cancel token of the Run in flight, fired by `Builder.Cancel`.
    running: Mutex<Option<CancellationToken>>,
}

impl BuilderHandler {
    /// A handler for one connection.
    pub fn new(
        builder: Arc<dyn api::Builder>,
        broker: Broker,
        encoding: SpecEncoding,
    ) -> BuilderHandler {
        BuilderHandler {
            builder,
            broker,
            encoding,
            gob_flavor: OnceCell::new(),
            running: Mutex::new(None),
        }
    }

    async fn config_spec(&self) -> Result<Value, CallError> {
        let spec = self.builder.config_spec();
        let bytes = match self.encoding {
            SpecEncoding::Protobuf => proto::encode_object_spec(&spec),
            SpecEncoding::Gob(given) => {
                let flavor = match given {
                    Some(f) => f,
                    None => {
                        *self
                            .gob_flavor
                            .get_or_init(|| async {
                                tokio::task::spawn_blocking(GobFlavor::detect_from_parent)
                                    .await
                                    .unwrap_or(GobFlavor::Module)
                            })
                            .await
                    }
                };
                gob::encode_object_spec(&spec, flavor)
            }
        };
        Ok(msgpack::map([("ConfigSpec", Value::Binary(bytes))]))
    }

    async fn prepare(&self, body: Value) -> Result<Value, CallError> {
        let args = decode_prepare_args(&body).map_err(CallError::failed)?;
        let (prepared, error) = match self.builder.prepare(args).await {
            Ok(prepared) => (prepared, Value::Nil),
            Err(errors) => (
                Prepared::default(),
                msgpack::map([("Message", Value::from(errors.to_string()))]),
            ),
        };
        let list = |v: &[String]| msgpack::string_list(if v.is_empty() { None } else { Some(v) });
        Ok(msgpack::map([
            ("GeneratedVars", list(&prepared.generated_vars)),
            ("Warnings", list(&prepared.warnings)),
            ("Error", error),
        ]))
    }

    async fn run(&self, body: Value) -> Result<Value, CallError> {
        let id = msgpack::as_u32(&body)
            .ok_or_else(|| CallError::BadArgs("Builder.Run: stream id is not a uint32".into()))?;
        // Armed before anything else, so a Cancel arriving while we dial
        // is not lost.
        let cancel = CancellationToken::new();
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = Some(cancel.clone());
        // Packer waits only 5 s for this dial.
        let stream = match self.broker.dial(id).await {
            Ok(stream) => stream,
            Err(e) => {
                *self.running.lock().unwrap_or_else(|e| e.into_inner()) = None;
                return Err(e.into());
            }
        };
        let client = Arc::new(rpc::Client::new(stream));
        let ui = Arc::new(UiClient::new(client.clone()));
        let hook = Arc::new(HookClient::new(
            client.clone(),
            self.broker.clone(),
            cancel.clone(),
        ));
        let result = self.builder.run(ui, hook, cancel).await;
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = None;
        client.close().await;
        match result {
            Ok(Some(artifact)) => {
                let artifact_id = self.broker.next_id();
                tokio::spawn(serve_artifact(self.broker.clone(), artifact_id, artifact));
                Ok(Value::from(artifact_id))
            }
            Ok(None) => Ok(Value::from(0u32)),
            Err(e) => Err(CallError::failed(e)),
        }
    }

    fn cancel(&self) {
        match self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            Some(token) => {
                tracing::info!("Packer cancelled the build");
                token.cancel();
            }
            None => tracing::debug!("Builder.Cancel with no Run in flight"),
        }
    }
}

#[async_trait]
impl Handler for BuilderHandler {
    async fn call(&self, service_method: &str, body: Value) -> Result<Value, CallError> {
        match service_method {
            "Builder.ConfigSpec" => self.config_spec().await,
            "Builder.Prepare" => self.prepare(body).await,
            "Builder.Run" => self.run(body).await,
            "Builder.Cancel" => {
                self.cancel();
                Ok(Value::Nil)
            }
            m if m.starts_with("Builder.") => Err(CallError::NoMethod(m.to_owned())),
            m => Err(CallError::NoService(m.to_owned())),
        }
    }
}
