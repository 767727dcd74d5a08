//! What the plugin serves on a hook stream (PROTOCOL.md §4.3): the
//! builder's [`api::Communicator`] and a `Ui` that forwards every call
//! verbatim to Packer's Ui on the Run stream.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use rmpv::Value;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::plugin::api::{self, BoxRead, BoxWrite, FileInfo, RemoteCommand};
use crate::plugin::broker::Broker;
use crate::plugin::msgpack;
use crate::plugin::mux::Stream;
use crate::plugin::rpc::{CallError, Client, Handler};
use crate::plugin::spec::gob;

/// `Communicator` + `Ui` on one hook stream.
pub struct HookStreamHandler {
    communicator: Arc<dyn api::Communicator>,
    packer_ui: Arc<Client>,
    broker: Broker,
}

impl HookStreamHandler {
    /// Serves `communicator`; Ui calls go to `packer_ui` (the Run stream).
    pub fn new(
        communicator: Arc<dyn api::Communicator>,
        packer_ui: Arc<Client>,
        broker: Broker,
    ) -> HookStreamHandler {
        HookStreamHandler {
            communicator,
            packer_ui,
            broker,
        }
    }

    async fn dial_optional(&self, id: u32) -> Result<Option<Stream>, CallError> {
        if id == 0 {
            return Ok(None);
        }
        Ok(Some(self.broker.dial(id).await?))
    }

    async fn start(&self, body: Value) -> Result<Value, CallError> {
        let id = |name: &str| {
            msgpack::field(&body, name)
                .map_or(Some(0), msgpack::as_u32)
                .ok_or_else(|| {
                    CallError::BadArgs(format!("Communicator.Start: {name} is not a uint32"))
                })
        };
        let command = msgpack::field(&body, "Command")
            .and_then(msgpack::as_string)
            .unwrap_or_default();
        let (stdin_id, stdout_id, stderr_id, response_id) = (
            id("StdinStreamId")?,
            id("StdoutStreamId")?,
            id("StderrStreamId")?,
            id("ResponseStreamId")?,
        );
        // Packer accepts each of these for only 5 s: dial them all now.
        let (stdin, stdout, stderr, response) = tokio::try_join!(
            self.dial_optional(stdin_id),
            self.dial_optional(stdout_id),
            self.dial_optional(stderr_id),
            self.dial_optional(response_id),
        )?;
        let (stdout, stdout_closed) = closing(stdout);
        let (stderr, stderr_closed) = closing(stderr);
        let cmd = RemoteCommand {
            command: command.clone(),
            stdin: stdin.map(|s| Box::new(s) as BoxRead),
            stdout,
            stderr,
        };
        let finished = self
            .communicator
            .start(cmd)
            .await
            .map_err(CallError::failed)?;
        tokio::spawn(async move {
            let status = finished.await;
            // Packer decodes the response only after stdout/stderr ended;
            // make sure they have, so no output is lost.
            for closed in [stdout_closed, stderr_closed].into_iter().flatten() {
                let _ = closed.await;
            }
            tracing::debug!("command {command:?} exited with {status}");
            if let Some(mut response) = response {
                let bytes = gob::encode_command_finished(status);
                if let Err(e) = response.write_all(&bytes).await {
                    tracing::warn!("writing the exit status of {command:?}: {e}");
                }
                let _ = response.shutdown().await;
            }
        });
        Ok(Value::Nil)
    }

    async fn upload(&self, body: Value) -> Result<Value, CallError> {
        let path = msgpack::field(&body, "Path")
            .and_then(msgpack::as_string)
            .unwrap_or_default();
        let reader_id = msgpack::field(&body, "ReaderStreamId")
            .and_then(msgpack::as_u32)
            .ok_or_else(|| {
                CallError::BadArgs("Communicator.Upload: ReaderStreamId is not a uint32".into())
            })?;
        let info = match msgpack::field(&body, "FileInfo") {
            None | Some(Value::Nil) => None,
            Some(fi) => Some(file_info(fi)?),
        };
        let reader = self.broker.dial(reader_id).await?;
        self.communicator
            .upload(&path, Box::new(reader), info)
            .await
            .map_err(CallError::failed)?;
        Ok(Value::Nil)
    }

    async fn download(&self, body: Value) -> Result<Value, CallError> {
        let path = msgpack::field(&body, "Path")
            .and_then(msgpack::as_string)
            .unwrap_or_default();
        let writer_id = msgpack::field(&body, "WriterStreamId")
            .and_then(msgpack::as_u32)
            .ok_or_else(|| {
                CallError::BadArgs("Communicator.Download: WriterStreamId is not a uint32".into())
            })?;
        let writer = self.broker.dial(writer_id).await?;
        // Dropping the stream when the communicator is done sends its FIN,
        // which ends the download on Packer's side.
        self.communicator
            .download(&path, Box::new(writer))
            .await
            .map_err(CallError::failed)?;
        Ok(Value::Nil)
    }

    async fn directory(&self, body: Value, upload: bool) -> Result<Value, CallError> {
        let text = |name: &str| {
            msgpack::field(&body, name)
                .and_then(msgpack::as_string)
                .unwrap_or_default()
        };
        let (dst, src) = (text("Dst"), text("Src"));
        let exclude = msgpack::field(&body, "Exclude")
            .and_then(msgpack::as_string_list)
            .unwrap_or_default();
        let result = if upload {
            self.communicator.upload_dir(&dst, &src, &exclude).await
        } else {
            self.communicator.download_dir(&src, &dst, &exclude).await
        };
        result.map_err(CallError::failed)?;
        // The reply is a typed Go `error`: only nil decodes into it.
        Ok(Value::Nil)
    }
}

fn file_info(v: &Value) -> Result<FileInfo, CallError> {
    let bad = |what: &str| {
        CallError::BadArgs(format!("Communicator.Upload: FileInfo.{what} is malformed"))
    };
    Ok(FileInfo {
        name: msgpack::field(v, "N")
            .and_then(msgpack::as_string)
            .unwrap_or_default(),
        size: msgpack::field(v, "S")
            .map_or(Some(0), msgpack::as_i64)
            .ok_or_else(|| bad("S"))?,
        mode: msgpack::field(v, "M")
            .map_or(Some(0), msgpack::as_u32)
            .ok_or_else(|| bad("M"))?,
        mtime: match msgpack::field(v, "T") {
            None => None,
            Some(t) => msgpack::as_time(t).map_err(|_| bad("T"))?,
        },
    })
}

/// Wraps an output stream so the caller learns when it was shut down or
/// dropped (the point where its FIN is queued).
fn closing(stream: Option<Stream>) -> (Option<BoxWrite>, Option<oneshot::Receiver<()>>) {
    match stream {
        None => (None, None),
        Some(stream) => {
            let (tx, rx) = oneshot::channel();
            (
                Some(Box::new(NotifyOnClose {
                    inner: Some(stream),
                    closed: Some(tx),
                })),
                Some(rx),
            )
        }
    }
}

struct NotifyOnClose {
    inner: Option<Stream>,
    closed: Option<oneshot::Sender<()>>,
}

impl AsyncWrite for NotifyOnClose {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.inner.as_mut() {
            Some(s) => Pin::new(s).poll_write(cx, buf),
            None => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.inner.as_mut() {
            Some(s) => Pin::new(s).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = match self.inner.as_mut() {
            Some(s) => Pin::new(s).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        };
        if result.is_ready() {
            if let Some(tx) = self.closed.take() {
                let _ = tx.send(());
            }
        }
        result
    }
}

impl Drop for NotifyOnClose {
    fn drop(&mut self) {
        // Drop the stream first so its FIN is queued before anyone is told.
        drop(self.inner.take());
        if let Some(tx) = self.closed.take() {
            let _ = tx.send(());
        }
    }
}

#[async_trait]
impl Handler for HookStreamHandler {
    async fn call(&self, service_method: &str, body: Value) -> Result<Value, CallError> {
        let service = service_method
            .rsplit_once('.')
            .map_or(service_method, |(s, _)| s);
        if service.starts_with("Ui") {
            // Ui.* and Ui<tracking id>.*: Packer's own Ui answers.
            return self
                .packer_ui
                .call(service_method, body)
                .await
                .map_err(|e| CallError::Failed(e.to_string()));
        }
        match service_method {
            "Communicator.Start" => self.start(body).await,
            "Communicator.Upload" => self.upload(body).await,
            "Communicator.UploadDir" => self.directory(body, true).await,
            "Communicator.Download" => self.download(body).await,
            "Communicator.DownloadDir" => self.directory(body, false).await,
            m if service == "Communicator" => Err(CallError::NoMethod(m.to_owned())),
            m => Err(CallError::NoService(m.to_owned())),
        }
    }
}
