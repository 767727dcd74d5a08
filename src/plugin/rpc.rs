//! Go's net/rpc over msgpack (PROTOCOL.md §3): every call and every reply
//! is a header value followed by exactly one body value.
//!
//! The server reads calls in order but runs handlers concurrently (Packer
//! sends `Builder.Cancel` while `Builder.Run` is pending) and writes each
//! reply atomically. The client allows concurrent calls and matches replies
//! by `Seq`, as Go's client does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rmpv::Value;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::plugin::msgpack::{self, ValueReader};

/// How a served call failed, mirroring Go's net/rpc replies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No such service on this connection.
    #[error("rpc: can't find service {0}")]
    NoService(String),
    /// The service exists but not the method.
    #[error("rpc: can't find method {0}")]
    NoMethod(String),
    /// The arguments did not decode into what the method takes.
    #[error("{0}")]
    BadArgs(String),
    /// The method ran and failed; the text goes to `Response.Error`.
    #[error("{0}")]
    Failed(String),
}

impl CallError {
    /// A method failure with the given message.
    pub fn failed(e: impl std::fmt::Display) -> CallError {
        CallError::Failed(e.to_string())
    }
}

/// What a connection serves: `service_method` is `"Service.Method"`.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Handles one call and returns the reply body.
    async fn call(&self, service_method: &str, body: Value) -> Result<Value, CallError>;
}

/// Why a client call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The server replied with `Response.Error` set.
    #[error("{0}")]
    Server(String),
    /// The connection ended before the reply.
    #[error("rpc connection closed before the reply to {0}")]
    Closed(String),
    /// Writing the call failed.
    #[error("rpc call {method}: {message}")]
    Write {
        /// The call concerned.
        method: String,
        /// What went wrong.
        message: String,
    },
}

type SharedWriter = Arc<tokio::sync::Mutex<Box<dyn AsyncWrite + Send + Unpin>>>;

async fn write_message(writer: &SharedWriter, header: &Value, body: &Value) -> std::io::Result<()> {
    let mut bytes = msgpack::encode(header);
    bytes.extend(msgpack::encode(body));
    let mut w = writer.lock().await;
    w.write_all(&bytes).await?;
    w.flush().await
}

/// Serves `handler` on a byte stream until the peer closes it. In-flight
/// handlers finish and reply even after the read side ended.
pub async fn serve<S>(io: S, handler: Arc<dyn Handler>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(io);
    let writer: SharedWriter = Arc::new(tokio::sync::Mutex::new(Box::new(wr)));
    let mut reader = ValueReader::new(rd);
    loop {
        let header = match reader.next().await {
            Ok(Some(h)) => h,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!("rpc server: reading a request header: {e}");
                break;
            }
        };
        let body = match reader.next().await {
            Ok(Some(b)) => b,
            Ok(None) | Err(_) => {
                tracing::debug!("rpc server: stream ended between header and body");
                break;
            }
        };
        let method = msgpack::field(&header, "ServiceMethod")
            .and_then(msgpack::as_string)
            .unwrap_or_default();
        let seq = msgpack::field(&header, "Seq")
            .and_then(msgpack::as_i64)
            .unwrap_or(0) as u64;
        let handler = handler.clone();
        let writer = writer.clone();
        tokio::spawn(async move {
            let result = if method
                .rfind('.')
                .is_some_and(|dot| dot > 0 && dot + 1 < method.len())
            {
                handler.call(&method, body).await
            } else {
                Err(CallError::Failed(format!(
                    "rpc: service/method request ill-formed: {method}"
                )))
            };
            tracing::debug!(
                "rpc served {method} (seq {seq}): {}",
                if result.is_ok() { "ok" } else { "error" }
            );
            let (error, reply) = match result {
                Ok(reply) => (String::new(), reply),
                // Go's server sends an empty struct as the body of an error reply.
                Err(e) => (e.to_string(), Value::Map(Vec::new())),
            };
            let header = msgpack::map([
                ("ServiceMethod", Value::from(method.as_str())),
                ("Seq", Value::from(seq)),
                ("Error", Value::from(error)),
            ]);
            if let Err(e) = write_message(&writer, &header, &reply).await {
                tracing::debug!("rpc server: writing the reply to {method}: {e}");
            }
        });
    }
}

type Pending =
    Arc<Mutex<Option<HashMap<u64, (String, oneshot::Sender<Result<Value, ClientError>>)>>>>;

/// An RPC client on one stream; calls may run concurrently.
pub struct Client {
    writer: SharedWriter,
    pending: Pending,
    seq: AtomicU64,
    reader_task: tokio::task::JoinHandle<()>,
}

impl Client {
    /// Starts a client on a byte stream; a task reads the replies.
    pub fn new<S>(io: S) -> Client
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (rd, wr) = tokio::io::split(io);
        let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
        let reader_task = tokio::spawn(read_replies(ValueReader::new(rd), pending.clone()));
        Client {
            writer: Arc::new(tokio::sync::Mutex::new(Box::new(wr))),
            pending,
            seq: AtomicU64::new(0),
            reader_task,
        }
    }

    /// Calls `service_method` with `args` and waits for the reply body.
    pub async fn call(&self, service_method: &str, args: Value) -> Result<Value, ClientError> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            match pending.as_mut() {
                Some(map) => {
                    map.insert(seq, (service_method.to_owned(), tx));
                }
                None => return Err(ClientError::Closed(service_method.to_owned())),
            }
        }
        let header = msgpack::map([
            ("ServiceMethod", Value::from(service_method)),
            ("Seq", Value::from(seq)),
        ]);
        if let Err(e) = write_message(&self.writer, &header, &args).await {
            if let Some(map) = self
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
            {
                map.remove(&seq);
            }
            return Err(ClientError::Write {
                method: service_method.to_owned(),
                message: e.to_string(),
            });
        }
        rx.await
            .unwrap_or_else(|_| Err(ClientError::Closed(service_method.to_owned())))
    }

    /// Half-closes the stream (yamux FIN); pending replies still arrive.
    pub async fn close(&self) {
        let _ = self.writer.lock().await.shutdown().await;
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader_task.abort();
    }
}

async fn read_replies<R: AsyncRead + Unpin>(mut reader: ValueReader<R>, pending: Pending) {
    loop {
        let header = match reader.next().await {
            Ok(Some(h)) => h,
            _ => break,
        };
        let body = match reader.next().await {
            Ok(Some(b)) => b,
            _ => break,
        };
        let seq = msgpack::field(&header, "Seq")
            .and_then(msgpack::as_i64)
            .unwrap_or(-1) as u64;
        let error = msgpack::field(&header, "Error")
            .and_then(msgpack::as_string)
            .unwrap_or_default();
        let waiter = pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
            .and_then(|m| m.remove(&seq));
        match waiter {
            Some((_, tx)) => {
                let _ = tx.send(if error.is_empty() {
                    Ok(body)
                } else {
                    Err(ClientError::Server(error))
                });
            }
            None => tracing::debug!("rpc client: reply for unknown seq {seq}"),
        }
    }
    // Fail everything still waiting; later calls fail at once.
    let left = pending.lock().unwrap_or_else(|e| e.into_inner()).take();
    for (_, (method, tx)) in left.into_iter().flatten() {
        let _ = tx.send(Err(ClientError::Closed(method)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    struct Slow;

    #[async_trait]
    impl Handler for Slow {
        async fn call(&self, service_method: &str, body: Value) -> Result<Value, CallError> {
            match service_method {
                "Test.Slow" => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok(Value::from("slow"))
                }
                "Test.Echo" => Ok(body),
                "Test.Fail" => Err(CallError::failed("boom")),
                m if m.starts_with("Test.") => Err(CallError::NoMethod(m.to_owned())),
                m => Err(CallError::NoService(m.to_owned())),
            }
        }
    }

    fn connected() -> Client {
        let (a, b) = tokio::io::duplex(1 << 16);
        tokio::spawn(serve(a, Arc::new(Slow)));
        Client::new(b)
    }

    #[tokio::test]
    async fn slow_call_does_not_block_another() {
        let client = Arc::new(connected());
        let c = client.clone();
        let slow = tokio::spawn(async move { c.call("Test.Slow", Value::Nil).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let started = std::time::Instant::now();
        assert_eq!(
            client.call("Test.Echo", Value::from(5u64)).await.unwrap(),
            Value::from(5u64)
        );
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "echo waited for the slow call"
        );
        assert!(!slow.is_finished());
        assert_eq!(slow.await.unwrap().unwrap(), Value::from("slow"));
    }

    #[tokio::test]
    async fn errors_and_unknown_methods_reply_like_go() {
        let client = connected();
        assert_eq!(
            client.call("Test.Fail", Value::Nil).await,
            Err(ClientError::Server("boom".into()))
        );
        assert_eq!(
            client.call("Test.Nope", Value::Nil).await,
            Err(ClientError::Server(
                "rpc: can't find method Test.Nope".into()
            ))
        );
        assert_eq!(
            client.call("Other.Nope", Value::Nil).await,
            Err(ClientError::Server(
                "rpc: can't find service Other.Nope".into()
            ))
        );
        assert_eq!(
            client.call("NoDot", Value::Nil).await,
            Err(ClientError::Server(
                "rpc: service/method request ill-formed: NoDot".into()
            ))
        );
        // The connection still works after errors (every body was consumed).
        assert_eq!(
            client.call("Test.Echo", Value::from("ok")).await.unwrap(),
            Value::from("ok")
        );
    }

    #[tokio::test]
    async fn server_replies_by_seq_out_of_order_with_error_body_empty_map() {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        tokio::spawn(serve(a, Arc::new(Slow)));
        let call = |m: &str, seq: u64| {
            let mut v = msgpack::encode(&msgpack::map([
                ("Seq", Value::from(seq)),
                ("ServiceMethod", Value::from(m)),
            ]));
            v.extend(msgpack::encode(&Value::Nil));
            v
        };
        let mut bytes = call("Test.Slow", 0);
        bytes.extend(call("Test.Fail", 1));
        b.write_all(&bytes).await.unwrap();
        let mut reader = ValueReader::new(&mut b);
        let h1 = reader.next().await.unwrap().unwrap();
        let b1 = reader.next().await.unwrap().unwrap();
        assert_eq!(
            msgpack::as_i64(msgpack::field(&h1, "Seq").unwrap()),
            Some(1)
        );
        assert_eq!(
            msgpack::as_string(msgpack::field(&h1, "Error").unwrap()).unwrap(),
            "boom"
        );
        assert_eq!(msgpack::encode(&b1), vec![0x80]);
        let h0 = reader.next().await.unwrap().unwrap();
        let _b0 = reader.next().await.unwrap().unwrap();
        // Declaration order, as ugorji v1.2.x writes it.
        let keys: Vec<_> = h0
            .as_map()
            .unwrap()
            .iter()
            .map(|(k, _)| k.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(keys, ["ServiceMethod", "Seq", "Error"]);
        assert_eq!(
            msgpack::as_i64(msgpack::field(&h0, "Seq").unwrap()),
            Some(0)
        );
    }

    #[tokio::test]
    async fn client_matches_replies_by_seq_and_fails_pending_on_close() {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let client = Arc::new(Client::new(a));
        let c1 = client.clone();
        let first = tokio::spawn(async move { c1.call("X.A", Value::Nil).await });
        let c2 = client.clone();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let second = tokio::spawn(async move { c2.call("X.B", Value::Nil).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let reply = |seq: u64, body: &str| {
            let mut v = msgpack::encode(&msgpack::map([
                ("Error", Value::from("")),
                ("Seq", Value::from(seq)),
                ("ServiceMethod", Value::from("X.?")),
            ]));
            v.extend(msgpack::encode(&Value::from(body)));
            v
        };
        b.write_all(&reply(1, "second")).await.unwrap();
        assert_eq!(second.await.unwrap().unwrap(), Value::from("second"));
        b.write_all(&reply(0, "first")).await.unwrap();
        assert_eq!(first.await.unwrap().unwrap(), Value::from("first"));
        let c3 = client.clone();
        let third = tokio::spawn(async move { c3.call("X.C", Value::Nil).await });
        // Consume the three calls (header + body each), then hang up.
        let mut calls = ValueReader::new(&mut b);
        for _ in 0..6 {
            calls.next().await.unwrap().unwrap();
        }
        drop(calls);
        drop(b);
        assert_eq!(third.await.unwrap(), Err(ClientError::Closed("X.C".into())));
    }
}
