//! Clients on the Run stream (PROTOCOL.md §4.2): Packer's `Ui` and
//! `Hook`, offered to the builder as [`api::Ui`] and [`api::Hook`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rmpv::Value;
use tokio_util::sync::CancellationToken;

use crate::plugin::api::{self, BoxError, Map};
use crate::plugin::broker::Broker;
use crate::plugin::msgpack;
use crate::plugin::rpc::{self, Client};
use crate::plugin::services::hook_stream::HookStreamHandler;

/// Packer dials the hook stream as soon as it handles `Hook.Run`; this
/// only bounds a broken peer.
const HOOK_STREAM_ACCEPT_TIMEOUT: Duration = Duration::from_secs(60);

/// Packer's Ui over the Run stream.
pub struct UiClient {
    client: Arc<Client>,
}

impl UiClient {
    /// A Ui client sharing the Run stream's RPC client.
    pub fn new(client: Arc<Client>) -> UiClient {
        UiClient { client }
    }

    async fn output(&self, method: &str, arg: Value) {
        if let Err(e) = self.client.call(method, arg).await {
            tracing::warn!("{method} failed: {e}");
        }
    }
}

#[async_trait]
impl api::Ui for UiClient {
    async fn say(&self, msg: &str) {
        self.output("Ui.Say", Value::from(msg)).await;
    }

    async fn message(&self, msg: &str) {
        self.output("Ui.Message", Value::from(msg)).await;
    }

    async fn error(&self, msg: &str) {
        self.output("Ui.Error", Value::from(msg)).await;
    }

    async fn machine(&self, category: &str, args: &[String]) {
        let arg = msgpack::map([
            ("Category", Value::from(category)),
            ("Args", msgpack::string_list(Some(args))),
        ]);
        self.output("Ui.Machine", arg).await;
    }

    async fn ask(&self, query: &str) -> Result<String, BoxError> {
        let answer = self.client.call("Ui.Ask", Value::from(query)).await?;
        Ok(msgpack::as_string(&answer).unwrap_or_default())
    }

    async fn track_progress(
        &self,
        src: &str,
        total: i64,
        current: i64,
    ) -> Result<Box<dyn api::Progress>, BoxError> {
        let arg = msgpack::map([
            ("Src", Value::from(src)),
            ("TotalSize", Value::from(total)),
            ("CurrentSize", Value::from(current)),
        ]);
        let id = self.client.call("Ui.NewTrackProgress", arg).await?;
        let id =
            msgpack::as_string(&id).ok_or("Ui.NewTrackProgress: tracking id is not a string")?;
        Ok(Box::new(ProgressClient {
            client: self.client.clone(),
            service: format!("Ui{id}"),
        }))
    }
}

/// A progress bar Packer keeps under service `Ui<tracking id>`.
struct ProgressClient {
    client: Arc<Client>,
    service: String,
}

#[async_trait]
impl api::Progress for ProgressClient {
    async fn add(&self, n: i64) {
        let method = format!("{}.Add", self.service);
        if let Err(e) = self.client.call(&method, Value::from(n)).await {
            tracing::warn!("{method} failed: {e}");
        }
    }

    async fn close(&self) {
        let method = format!("{}.Close", self.service);
        if let Err(e) = self.client.call(&method, Value::Nil).await {
            tracing::warn!("{method} failed: {e}");
        }
    }
}

/// Packer's Hook over the Run stream.
pub struct HookClient {
    client: Arc<Client>,
    broker: Broker,
    cancel: CancellationToken,
}

impl HookClient {
    /// A hook client; `cancel` is the Run's token: when it fires while
    /// `Hook.Run` is pending, `Hook.Cancel` is sent (Packer does not stop
    /// a running provisioner by itself).
    pub fn new(client: Arc<Client>, broker: Broker, cancel: CancellationToken) -> HookClient {
        HookClient {
            client,
            broker,
            cancel,
        }
    }
}

#[async_trait]
impl api::Hook for HookClient {
    async fn run(
        &self,
        name: &str,
        data: Map,
        communicator: Arc<dyn api::Communicator>,
    ) -> Result<(), BoxError> {
        let stream_id = self.broker.next_id();
        // The endpoint must be ready before Packer learns its id.
        let broker = self.broker.clone();
        let handler = Arc::new(HookStreamHandler::new(
            communicator,
            self.client.clone(),
            self.broker.clone(),
        ));
        let server = tokio::spawn(async move {
            match broker.accept(stream_id, HOOK_STREAM_ACCEPT_TIMEOUT).await {
                Ok(stream) => rpc::serve(stream, handler).await,
                Err(e) => tracing::warn!("hook stream {stream_id}: {e}"),
            }
        });
        let args = msgpack::map([
            ("Name", Value::from(name)),
            ("Data", msgpack::from_json(&serde_json::Value::Object(data))),
            ("StreamId", Value::from(stream_id)),
        ]);
        let call = self.client.call("Hook.Run", args);
        tokio::pin!(call);
        let result = tokio::select! {
            r = &mut call => r,
            _ = self.cancel.cancelled() => {
                tracing::info!("build cancelled while hook {name} runs; sending Hook.Cancel");
                let (cancelled, r) = tokio::join!(self.client.call("Hook.Cancel", Value::Nil), &mut call);
                if let Err(e) = cancelled {
                    tracing::warn!("Hook.Cancel failed: {e}");
                }
                r
            }
        };
        if result.is_err() && !server.is_finished() {
            // Packer may never dial after a failure; do not wait for it.
            server.abort();
        }
        result.map(|_| ()).map_err(Into::into)
    }
}
