//! The plugin SDK's mux broker (PROTOCOL.md §2.2): logical endpoints named
//! by u32 ids on top of yamux streams.
//!
//! Every stream starts with its broker id (u32 little-endian). The side
//! that allocated an id accepts it and echoes the id back; the other side
//! dials it and checks the echo. Id 0 is the main RPC stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::plugin::mux::{MuxError, Session, Stream};

/// How long an inbound stream nobody accepted is kept. Go drops such
/// streams after 5 s; we keep them longer because our own accepts may
/// legitimately be armed a little after the peer dialled.
const PARKED_STREAM_TTL: Duration = Duration::from_secs(60);

/// How long Packer waits in its Accept for us to dial an id it allocated;
/// a dial must finish well within it.
pub const PEER_ACCEPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a broker operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The multiplexer refused (session closed).
    #[error("broker: {0}")]
    Mux(#[from] MuxError),
    /// Reading or writing the id prefix failed.
    #[error("broker: stream {id}: {source}")]
    Io {
        /// The broker id concerned.
        id: u32,
        /// The underlying failure.
        source: std::io::Error,
    },
    /// The peer echoed a different id than we dialled.
    #[error("broker: bad ack for stream {id}: got {got}")]
    BadAck {
        /// The id we dialled.
        id: u32,
        /// The id echoed back.
        got: u32,
    },
    /// Nobody dialled the id in time.
    #[error("broker: timeout waiting for stream {0}")]
    AcceptTimeout(u32),
    /// The peer did not answer a dial in time.
    #[error("broker: timeout dialling stream {0}")]
    DialTimeout(u32),
    /// The connection went away while waiting.
    #[error("broker: session closed while waiting for stream {0}")]
    Closed(u32),
}

enum Slot {
    Parked(Stream),
    Waiting(oneshot::Sender<Stream>),
}

/// The broker over one yamux session. Cheap to clone.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    session: Session,
    next_id: AtomicU32,
    slots: Mutex<HashMap<u32, Slot>>,
}

impl Inner {
    fn slots(&self) -> MutexGuard<'_, HashMap<u32, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Broker {
    /// Starts the broker: a task reads the id of every inbound stream and
    /// parks it until [`Broker::accept`] asks for that id.
    pub fn new(session: Session) -> Broker {
        let broker = Broker {
            inner: Arc::new(Inner {
                session,
                next_id: AtomicU32::new(0),
                slots: Mutex::new(HashMap::new()),
            }),
        };
        let b = broker.clone();
        tokio::spawn(async move { b.run_accept_loop().await });
        broker
    }

    /// The underlying session.
    pub fn session(&self) -> &Session {
        &self.inner.session
    }

    /// A fresh id for an endpoint this side will accept (1, 2, 3, …).
    pub fn next_id(&self) -> u32 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    async fn run_accept_loop(&self) {
        while let Some(stream) = self.inner.session.accept().await {
            let b = self.clone();
            tokio::spawn(async move { b.park(stream).await });
        }
        // Session over: wake every waiter with a closed channel.
        self.inner.slots().clear();
    }

    async fn park(&self, mut stream: Stream) {
        let mut raw = [0u8; 4];
        if let Err(e) = stream.read_exact(&mut raw).await {
            tracing::debug!("broker: stream {} closed before its id: {e}", stream.id());
            return;
        }
        let id = u32::from_le_bytes(raw);
        {
            let mut slots = self.inner.slots();
            match slots.remove(&id) {
                Some(Slot::Waiting(tx)) => {
                    if let Err(stream) = tx.send(stream) {
                        slots.insert(id, Slot::Parked(stream));
                    }
                }
                Some(Slot::Parked(old)) => {
                    tracing::warn!("broker: id {id} dialled twice; dropping the older stream");
                    drop(old);
                    slots.insert(id, Slot::Parked(stream));
                }
                None => {
                    slots.insert(id, Slot::Parked(stream));
                }
            }
        }
        let b = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(PARKED_STREAM_TTL).await;
            let mut slots = b.inner.slots();
            if matches!(slots.get(&id), Some(Slot::Parked(_))) {
                tracing::warn!("broker: nobody accepted stream id {id}; closing it");
                slots.remove(&id);
            }
        });
    }

    /// Waits up to `timeout` for the peer to dial `id`, echoes the id and
    /// returns the stream.
    pub async fn accept(&self, id: u32, timeout: Duration) -> Result<Stream, BrokerError> {
        let parked = {
            let mut slots = self.inner.slots();
            match slots.remove(&id) {
                Some(Slot::Parked(stream)) => Ok(stream),
                _ => {
                    let (tx, rx) = oneshot::channel();
                    slots.insert(id, Slot::Waiting(tx));
                    Err(rx)
                }
            }
        };
        let rx = match parked {
            Ok(stream) => return ack(stream, id).await,
            Err(rx) => rx,
        };
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(stream)) => ack(stream, id).await,
            Ok(Err(_)) => Err(BrokerError::Closed(id)),
            Err(_) => {
                let late = match self.inner.slots().remove(&id) {
                    Some(Slot::Parked(stream)) => Some(stream),
                    _ => None,
                };
                match late {
                    Some(stream) => ack(stream, id).await,
                    None => Err(BrokerError::AcceptTimeout(id)),
                }
            }
        }
    }

    /// Opens a stream to the endpoint `id` the peer allocated and checks
    /// the peer's echo.
    pub async fn dial(&self, id: u32) -> Result<Stream, BrokerError> {
        let mut stream = self.inner.session.open()?;
        let handshake = async {
            stream.write_all(&id.to_le_bytes()).await?;
            let mut raw = [0u8; 4];
            stream.read_exact(&mut raw).await?;
            Ok::<u32, std::io::Error>(u32::from_le_bytes(raw))
        };
        let got = tokio::time::timeout(PEER_ACCEPT_TIMEOUT, handshake)
            .await
            .map_err(|_| BrokerError::DialTimeout(id))?
            .map_err(|source| BrokerError::Io { id, source })?;
        if got != id {
            return Err(BrokerError::BadAck { id, got });
        }
        Ok(stream)
    }
}

async fn ack(mut stream: Stream, id: u32) -> Result<Stream, BrokerError> {
    stream
        .write_all(&id.to_le_bytes())
        .await
        .map_err(|source| BrokerError::Io { id, source })?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::mux::Role;

    fn pair() -> (Broker, Broker) {
        let (a, b) = tokio::io::duplex(1 << 16);
        (
            Broker::new(Session::new(a, Role::Server)),
            Broker::new(Session::new(b, Role::Client)),
        )
    }

    #[test]
    fn ids_count_from_one() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (plugin, _packer) = pair();
            assert_eq!(
                (plugin.next_id(), plugin.next_id(), plugin.next_id()),
                (1, 2, 3)
            );
        });
    }

    #[tokio::test]
    async fn dial_before_accept_is_parked_and_echoed() {
        let (plugin, packer) = pair();
        let dial = tokio::spawn(async move {
            packer.dial(7).await.map(|mut s| {
                (
                    s.id(),
                    tokio::spawn(async move {
                        s.write_all(b"ping").await.unwrap();
                        s
                    }),
                )
            })
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        let mut stream = plugin.accept(7, Duration::from_secs(1)).await.unwrap();
        let (id, _w) = dial.await.unwrap().unwrap();
        assert_eq!(id, 1, "the client opens odd yamux ids");
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
    }

    #[tokio::test]
    async fn accept_before_dial_and_wire_bytes_are_le() {
        let (a, mut raw_peer) = tokio::io::duplex(1 << 16);
        let plugin = Broker::new(Session::new(a, Role::Server));
        let accept = tokio::spawn(async move {
            plugin
                .accept(0x0102_0304, Duration::from_secs(2))
                .await
                .map(|_| ())
        });
        // Hand-made yamux: SYN, then the id as data.
        raw_peer
            .write_all(&[0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0])
            .await
            .unwrap();
        raw_peer
            .write_all(&[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 4, 4, 3, 2, 1])
            .await
            .unwrap();
        let mut ack = [0u8; 12];
        raw_peer.read_exact(&mut ack).await.unwrap();
        assert_eq!(ack, [0, 1, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0]);
        let mut echo = [0u8; 16];
        raw_peer.read_exact(&mut echo).await.unwrap();
        assert_eq!(echo, [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 4, 4, 3, 2, 1]);
        accept.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn accept_times_out_without_dial() {
        let (plugin, _packer) = pair();
        let err = plugin
            .accept(3, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(err, BrokerError::AcceptTimeout(3)), "{err}");
    }

    #[tokio::test]
    async fn dial_rejects_a_wrong_echo() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let plugin = Broker::new(Session::new(a, Role::Server));
        let packer = Session::new(b, Role::Client);
        let fake_acceptor = tokio::spawn(async move {
            let mut s = packer.accept().await.unwrap();
            let mut id = [0u8; 4];
            s.read_exact(&mut id).await.unwrap();
            s.write_all(&9u32.to_le_bytes()).await.unwrap();
            s
        });
        let err = plugin.dial(4).await.unwrap_err();
        assert!(
            matches!(err, BrokerError::BadAck { id: 4, got: 9 }),
            "{err}"
        );
        fake_acceptor.await.unwrap();
    }

    #[tokio::test]
    async fn accepted_side_streams_many_windows_to_dialer() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let plugin = Broker::new(Session::new(a, Role::Server));
        let packer = Broker::new(Session::new(b, Role::Client));
        let data: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8).collect();
        let id = packer.next_id();
        let p = packer.clone();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            let mut s = p.accept(id, Duration::from_secs(5)).await.unwrap();
            s.write_all(&sent).await.unwrap();
            s.shutdown().await.unwrap();
            s
        });
        let mut s = plugin.dial(id).await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got))
            .await
            .unwrap_or_else(|_| panic!("stuck after {} bytes", got.len()))
            .unwrap();
        assert!(got == data);
        drop(writer.await.unwrap());
    }
}
