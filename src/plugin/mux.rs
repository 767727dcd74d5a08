//! HashiCorp yamux, the stream multiplexer under Packer's plugin RPC.
//!
//! Written by hand on tokio (PROTOCOL.md §2.1) rather than with a crate:
//! Packer needs every inbound stream ACKed at once (≥1.7.5 drops the session
//! after 75 s otherwise), never tolerates a second FIN, and expects pings to
//! be answered while nobody reads; owning the ≈400 lines keeps those rules
//! visible. One task reads frames and one writes them, so the connection is
//! driven no matter what the streams' users do.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{mpsc, watch};

/// Frame types (byte 1 of the header).
const TYPE_DATA: u8 = 0;
const TYPE_WINDOW_UPDATE: u8 = 1;
const TYPE_PING: u8 = 2;
const TYPE_GO_AWAY: u8 = 3;

/// Header flags (bytes 2–3).
const FLAG_SYN: u16 = 1;
const FLAG_ACK: u16 = 2;
const FLAG_FIN: u16 = 4;
const FLAG_RST: u16 = 8;

/// GoAway reason sent when the peer broke the protocol.
const GO_AWAY_PROTOCOL_ERROR: u32 = 1;

/// Length of every frame header.
pub const HEADER_LEN: usize = 12;

/// Go's `MaxStreamWindowSize` default, which is also the initial window of
/// every stream on both sides; deltas are additive from there.
pub const INITIAL_WINDOW: u32 = 256 * 1024;

/// Like Go, grant more credit only once half the window was consumed, so
/// window updates stay rare.
const WINDOW_UPDATE_THRESHOLD: u32 = INITIAL_WINDOW / 2;

/// Largest data frame we send; keeps one stream from hogging the socket.
const MAX_DATA_FRAME: usize = 64 * 1024;

/// Inbound streams waiting for [`Session::accept`] (Go's AcceptBacklog).
const ACCEPT_BACKLOG: usize = 256;

/// Which side of the connection we are: it decides the parity of the
/// stream ids we open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Opens even ids; the plugin's role.
    Server,
    /// Opens odd ids; Packer's role (used by tests that play Packer).
    Client,
}

/// One decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Frame type: data, window update, ping or go-away.
    pub kind: u8,
    /// SYN/ACK/FIN/RST bits.
    pub flags: u16,
    /// Stream id (0 for ping and go-away).
    pub stream_id: u32,
    /// Payload length, window delta, ping id or go-away reason.
    pub length: u32,
}

impl Header {
    /// The 12 big-endian bytes of this header (version 0).
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[1] = self.kind;
        out[2..4].copy_from_slice(&self.flags.to_be_bytes());
        out[4..8].copy_from_slice(&self.stream_id.to_be_bytes());
        out[8..12].copy_from_slice(&self.length.to_be_bytes());
        out
    }

    /// Parses a header; only version 0 exists.
    pub fn decode(raw: &[u8; HEADER_LEN]) -> Result<Header, MuxError> {
        if raw[0] != 0 {
            return Err(MuxError::Protocol(format!(
                "unsupported yamux version {}",
                raw[0]
            )));
        }
        Ok(Header {
            kind: raw[1],
            flags: u16::from_be_bytes([raw[2], raw[3]]),
            stream_id: u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]),
            length: u32::from_be_bytes([raw[8], raw[9], raw[10], raw[11]]),
        })
    }
}

/// Why the session failed.
#[derive(Debug, thiserror::Error)]
pub enum MuxError {
    /// The peer sent something yamux forbids.
    #[error("yamux protocol error: {0}")]
    Protocol(String),
    /// The socket failed.
    #[error("yamux connection i/o: {0}")]
    Io(#[from] io::Error),
    /// The session is over (peer closed the socket or sent GoAway).
    #[error("yamux session closed")]
    Closed,
}

/// The multiplexed connection. Cheap to clone; the frame reader and
/// writer run as tasks for as long as the socket lives.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
    accept_rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Stream>>>,
}

struct Shared {
    frames: mpsc::UnboundedSender<Vec<u8>>,
    streams: Mutex<HashMap<u32, Arc<StreamShared>>>,
    next_id: AtomicU32,
    closed: watch::Sender<bool>,
}

impl Shared {
    fn send(&self, header: Header, payload: &[u8]) {
        let mut frame = Vec::with_capacity(HEADER_LEN + payload.len());
        frame.extend_from_slice(&header.encode());
        frame.extend_from_slice(payload);
        // A closed writer means the session is over; streams notice through
        // the `closed` flag, so a lost frame needs no error here.
        let _ = self.frames.send(frame);
    }

    fn streams(&self) -> MutexGuard<'_, HashMap<u32, Arc<StreamShared>>> {
        // Poisoning would need a panic while holding this short lock.
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn shut_down(&self) {
        self.closed.send_replace(true);
        let streams: Vec<_> = self.streams().drain().map(|(_, s)| s).collect();
        for s in streams {
            let mut st = s.lock();
            st.session_dead = true;
            st.wake_all();
        }
    }
}

impl Session {
    /// Starts yamux over `io` in the given role and spawns the tasks that
    /// drive it.
    pub fn new<T>(io: T, role: Role) -> Session
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (rd, wr) = tokio::io::split(io);
        let (frames_tx, frames_rx) = mpsc::unbounded_channel();
        let (accept_tx, accept_rx) = mpsc::channel(ACCEPT_BACKLOG);
        let (closed, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            frames: frames_tx,
            streams: Mutex::new(HashMap::new()),
            next_id: AtomicU32::new(match role {
                Role::Server => 2,
                Role::Client => 1,
            }),
            closed,
        });
        tokio::spawn(write_frames(wr, frames_rx, shared.clone()));
        tokio::spawn(read_frames(rd, shared.clone(), accept_tx));
        Session {
            shared,
            accept_rx: Arc::new(tokio::sync::Mutex::new(accept_rx)),
        }
    }

    /// Opens a new outbound stream (SYN in a window update, as Go does).
    pub fn open(&self) -> Result<Stream, MuxError> {
        if *self.shared.closed.borrow() {
            return Err(MuxError::Closed);
        }
        let id = self.shared.next_id.fetch_add(2, Ordering::Relaxed);
        let state = Arc::new(StreamShared::new(id));
        self.shared.streams().insert(id, state.clone());
        self.shared.send(
            Header {
                kind: TYPE_WINDOW_UPDATE,
                flags: FLAG_SYN,
                stream_id: id,
                length: 0,
            },
            &[],
        );
        Ok(Stream {
            shared: self.shared.clone(),
            state,
        })
    }

    /// Waits for the next stream the peer opens; `None` once the session ended.
    pub async fn accept(&self) -> Option<Stream> {
        self.accept_rx.lock().await.recv().await
    }

    /// Resolves when the connection is gone.
    pub async fn closed(&self) {
        let mut rx = self.shared.closed.subscribe();
        // An error means the sender is gone, i.e. closed as well.
        let _ = rx.wait_for(|closed| *closed).await;
    }

    /// Whether the connection is gone.
    pub fn is_closed(&self) -> bool {
        *self.shared.closed.borrow()
    }

    /// Ends the session the way Go does: no GoAway, the socket's write
    /// side is shut down after the queued frames, and every stream ends.
    pub fn close(&self) {
        self.shared.shut_down();
    }
}

async fn write_frames<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut frames: mpsc::UnboundedReceiver<Vec<u8>>,
    shared: Arc<Shared>,
) {
    let mut closed = shared.closed.subscribe();
    loop {
        tokio::select! {
            frame = frames.recv() => {
                let Some(frame) = frame else { break };
                if let Err(e) = wr.write_all(&frame).await {
                    tracing::debug!("yamux write failed: {e}");
                    break;
                }
                // Batch whatever is queued before flushing.
                while let Ok(more) = frames.try_recv() {
                    if wr.write_all(&more).await.is_err() {
                        break;
                    }
                }
                if wr.flush().await.is_err() {
                    break;
                }
            }
            _ = async { let _ = closed.wait_for(|c| *c).await; } => {
                // Send what is queued (e.g. a GoAway) before closing.
                while let Ok(more) = frames.try_recv() {
                    if wr.write_all(&more).await.is_err() {
                        break;
                    }
                }
                break;
            }
        }
    }
    let _ = wr.shutdown().await;
    shared.shut_down();
}

async fn read_frames<R: AsyncRead + Unpin>(
    mut rd: R,
    shared: Arc<Shared>,
    accept: mpsc::Sender<Stream>,
) {
    let result = read_loop(&mut rd, &shared, &accept).await;
    match &result {
        Err(MuxError::Protocol(msg)) => {
            tracing::warn!("yamux: {msg}; closing the session");
            shared.send(
                Header {
                    kind: TYPE_GO_AWAY,
                    flags: 0,
                    stream_id: 0,
                    length: GO_AWAY_PROTOCOL_ERROR,
                },
                &[],
            );
        }
        Err(e) => tracing::debug!("yamux session ended: {e}"),
        Ok(()) => tracing::debug!("yamux session ended by the peer"),
    }
    shared.shut_down();
}

async fn read_loop<R: AsyncRead + Unpin>(
    rd: &mut R,
    shared: &Arc<Shared>,
    accept: &mpsc::Sender<Stream>,
) -> Result<(), MuxError> {
    let mut raw = [0u8; HEADER_LEN];
    loop {
        match rd.read_exact(&mut raw).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let header = Header::decode(&raw)?;
        match header.kind {
            TYPE_DATA | TYPE_WINDOW_UPDATE => {
                let payload = if header.kind == TYPE_DATA && header.length > 0 {
                    if header.length > INITIAL_WINDOW {
                        return Err(MuxError::Protocol(
                            "data frame larger than the window".into(),
                        ));
                    }
                    let mut buf = vec![0u8; header.length as usize];
                    rd.read_exact(&mut buf).await?;
                    buf
                } else {
                    Vec::new()
                };
                on_stream_frame(shared, accept, header, payload)?;
            }
            TYPE_PING => {
                if header.flags & FLAG_SYN != 0 {
                    shared.send(
                        Header {
                            kind: TYPE_PING,
                            flags: FLAG_ACK,
                            stream_id: 0,
                            length: header.length,
                        },
                        &[],
                    );
                }
            }
            TYPE_GO_AWAY => return Err(MuxError::Closed),
            other => return Err(MuxError::Protocol(format!("unknown frame type {other}"))),
        }
    }
}

fn on_stream_frame(
    shared: &Arc<Shared>,
    accept: &mpsc::Sender<Stream>,
    header: Header,
    payload: Vec<u8>,
) -> Result<(), MuxError> {
    let id = header.stream_id;
    let existing = shared.streams().get(&id).cloned();
    let state = match existing {
        Some(state) => {
            if header.flags & FLAG_SYN != 0 {
                return Err(MuxError::Protocol(format!("duplicate SYN for stream {id}")));
            }
            state
        }
        None if header.flags & FLAG_SYN != 0 => {
            let state = Arc::new(StreamShared::new(id));
            shared.streams().insert(id, state.clone());
            // ACK at once: Packer ≥1.7.5 kills the session if an opened
            // stream stays unacknowledged for 75 s.
            shared.send(
                Header {
                    kind: TYPE_WINDOW_UPDATE,
                    flags: FLAG_ACK,
                    stream_id: id,
                    length: 0,
                },
                &[],
            );
            let stream = Stream {
                shared: shared.clone(),
                state: state.clone(),
            };
            if accept.try_send(stream).is_err() {
                tracing::warn!("yamux: accept backlog full; resetting stream {id}");
                shared.streams().remove(&id);
                shared.send(
                    Header {
                        kind: TYPE_WINDOW_UPDATE,
                        flags: FLAG_RST,
                        stream_id: id,
                        length: 0,
                    },
                    &[],
                );
                return Ok(());
            }
            state
        }
        None => {
            // Frames for a stream already forgotten (both sides closed, or
            // reset): Go does the same and ignores them.
            return Ok(());
        }
    };

    let mut st = state.lock();
    if header.kind == TYPE_WINDOW_UPDATE && header.length > 0 {
        st.send_window = st.send_window.saturating_add(header.length);
        if let Some(w) = st.write_waker.take() {
            w.wake();
        }
    }
    if header.kind == TYPE_DATA && !payload.is_empty() {
        let len = payload.len() as u32;
        if len > st.recv_window {
            return Err(MuxError::Protocol(format!(
                "recv window exceeded on stream {id}"
            )));
        }
        st.recv_window -= len;
        if st.dropped {
            // Nobody will read it: give the credit straight back.
            st.recv_window += len;
            shared.send(
                Header {
                    kind: TYPE_WINDOW_UPDATE,
                    flags: 0,
                    stream_id: id,
                    length: len,
                },
                &[],
            );
        } else {
            st.recv_buf.extend_from_slice(&payload);
            if let Some(w) = st.read_waker.take() {
                w.wake();
            }
        }
    }
    if header.flags & FLAG_FIN != 0 {
        st.remote_closed = true;
        if let Some(w) = st.read_waker.take() {
            w.wake();
        }
    }
    if header.flags & FLAG_RST != 0 {
        st.reset = true;
        st.wake_all();
    }
    let finished = st.reset || (st.remote_closed && st.local_closed);
    drop(st);
    if finished {
        shared.streams().remove(&id);
    }
    Ok(())
}

struct StreamShared {
    id: u32,
    inner: Mutex<StreamInner>,
}

struct StreamInner {
    recv_buf: BytesMut,
    recv_window: u32,
    consumed: u32,
    send_window: u32,
    remote_closed: bool,
    local_closed: bool,
    reset: bool,
    dropped: bool,
    session_dead: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

impl StreamInner {
    fn wake_all(&mut self) {
        if let Some(w) = self.read_waker.take() {
            w.wake();
        }
        if let Some(w) = self.write_waker.take() {
            w.wake();
        }
    }
}

impl StreamShared {
    fn new(id: u32) -> StreamShared {
        StreamShared {
            id,
            inner: Mutex::new(StreamInner {
                recv_buf: BytesMut::new(),
                recv_window: INITIAL_WINDOW,
                consumed: 0,
                send_window: INITIAL_WINDOW,
                remote_closed: false,
                local_closed: false,
                reset: false,
                dropped: false,
                session_dead: false,
                read_waker: None,
                write_waker: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, StreamInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One yamux stream: a byte pipe in both directions. Shutting down the
/// write side sends FIN (once); dropping the stream does the same if it
/// was not done yet.
pub struct Stream {
    shared: Arc<Shared>,
    state: Arc<StreamShared>,
}

impl Stream {
    /// The yamux stream id.
    pub fn id(&self) -> u32 {
        self.state.id
    }

    fn send_fin(&self, st: &mut StreamInner) {
        if st.local_closed || st.reset || st.session_dead {
            return;
        }
        st.local_closed = true;
        self.shared.send(
            Header {
                kind: TYPE_WINDOW_UPDATE,
                flags: FLAG_FIN,
                stream_id: self.state.id,
                length: 0,
            },
            &[],
        );
        if st.remote_closed {
            self.shared.streams().remove(&self.state.id);
        }
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.state.id)
            .finish()
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut st = self.state.lock();
        if !st.recv_buf.is_empty() {
            let n = st.recv_buf.len().min(buf.remaining());
            buf.put_slice(&st.recv_buf[..n]);
            st.recv_buf.advance(n);
            st.consumed += n as u32;
            if st.consumed >= WINDOW_UPDATE_THRESHOLD && !st.remote_closed {
                let delta = st.consumed;
                st.consumed = 0;
                st.recv_window += delta;
                self.shared.send(
                    Header {
                        kind: TYPE_WINDOW_UPDATE,
                        flags: 0,
                        stream_id: self.state.id,
                        length: delta,
                    },
                    &[],
                );
            }
            return Poll::Ready(Ok(()));
        }
        if st.reset {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "yamux stream reset",
            )));
        }
        if st.remote_closed || st.session_dead {
            return Poll::Ready(Ok(()));
        }
        st.read_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut st = self.state.lock();
        if st.reset {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "yamux stream reset",
            )));
        }
        if st.local_closed || st.session_dead {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "yamux stream closed",
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if st.send_window == 0 {
            st.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.len().min(st.send_window as usize).min(MAX_DATA_FRAME);
        st.send_window -= n as u32;
        self.shared.send(
            Header {
                kind: TYPE_DATA,
                flags: 0,
                stream_id: self.state.id,
                length: n as u32,
            },
            &buf[..n],
        );
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Frames are queued to the writer task in order; nothing to flush here.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut st = self.state.lock();
        self.send_fin(&mut st);
        Poll::Ready(Ok(()))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let mut st = self.state.lock();
        st.dropped = true;
        // Unread data will never be read: return its credit so a peer
        // still sending is not left waiting on a full window. Credit for
        // data already read stays unsent: the peer has at least half a
        // window left, and a late update for a stream Go already removed
        // only makes it log "frame for missing stream".
        let unread = st.recv_buf.len() as u32;
        st.recv_buf.clear();
        if unread > 0 && !st.remote_closed && !st.reset && !st.session_dead {
            st.recv_window += unread;
            self.shared.send(
                Header {
                    kind: TYPE_WINDOW_UPDATE,
                    flags: 0,
                    stream_id: self.state.id,
                    length: unread,
                },
                &[],
            );
        }
        self.send_fin(&mut st);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::DuplexStream;

    /// A session on one end of a pipe; the test plays the raw peer.
    fn server_with_raw_peer() -> (Session, DuplexStream) {
        let (a, b) = tokio::io::duplex(1 << 20);
        (Session::new(a, Role::Server), b)
    }

    async fn read_frame(peer: &mut DuplexStream) -> (Header, Vec<u8>) {
        let mut raw = [0u8; HEADER_LEN];
        peer.read_exact(&mut raw).await.unwrap();
        let h = Header::decode(&raw).unwrap();
        let mut payload = vec![
            0u8;
            if h.kind == TYPE_DATA {
                h.length as usize
            } else {
                0
            }
        ];
        peer.read_exact(&mut payload).await.unwrap();
        (h, payload)
    }

    async fn write_frame(peer: &mut DuplexStream, h: Header, payload: &[u8]) {
        peer.write_all(&h.encode()).await.unwrap();
        peer.write_all(payload).await.unwrap();
    }

    #[test]
    fn header_layout_matches_go() {
        let h = Header {
            kind: TYPE_WINDOW_UPDATE,
            flags: FLAG_SYN,
            stream_id: 1,
            length: 0,
        };
        assert_eq!(h.encode(), [0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0]);
        let d = Header {
            kind: TYPE_DATA,
            flags: 0,
            stream_id: 1,
            length: 4,
        };
        assert_eq!(d.encode(), [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 4]);
        assert_eq!(Header::decode(&d.encode()).unwrap(), d);
        assert!(Header::decode(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    #[tokio::test]
    async fn acks_inbound_stream_immediately_and_delivers_data() {
        let (session, mut peer) = server_with_raw_peer();
        write_frame(
            &mut peer,
            Header {
                kind: TYPE_WINDOW_UPDATE,
                flags: FLAG_SYN,
                stream_id: 1,
                length: 0,
            },
            &[],
        )
        .await;
        // The ACK comes before anyone accepted or wrote to the stream.
        let (ack, _) = read_frame(&mut peer).await;
        assert_eq!(
            ack,
            Header {
                kind: TYPE_WINDOW_UPDATE,
                flags: FLAG_ACK,
                stream_id: 1,
                length: 0
            }
        );
        write_frame(
            &mut peer,
            Header {
                kind: TYPE_DATA,
                flags: 0,
                stream_id: 1,
                length: 3,
            },
            b"abc",
        )
        .await;
        let mut stream = session.accept().await.unwrap();
        let mut buf = [0u8; 3];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"abc");
    }

    #[tokio::test]
    async fn answers_ping_with_same_id() {
        let (_session, mut peer) = server_with_raw_peer();
        write_frame(
            &mut peer,
            Header {
                kind: TYPE_PING,
                flags: FLAG_SYN,
                stream_id: 0,
                length: 77,
            },
            &[],
        )
        .await;
        let (pong, _) = read_frame(&mut peer).await;
        assert_eq!(
            pong,
            Header {
                kind: TYPE_PING,
                flags: FLAG_ACK,
                stream_id: 0,
                length: 77
            }
        );
    }

    #[tokio::test]
    async fn server_opens_even_ids_with_syn_window_update() {
        let (session, mut peer) = server_with_raw_peer();
        let a = session.open().unwrap();
        let b = session.open().unwrap();
        assert_eq!((a.id(), b.id()), (2, 4));
        let (h, _) = read_frame(&mut peer).await;
        assert_eq!(
            h,
            Header {
                kind: TYPE_WINDOW_UPDATE,
                flags: FLAG_SYN,
                stream_id: 2,
                length: 0
            }
        );
    }

    #[tokio::test]
    async fn never_sends_a_second_fin() {
        let (session, mut peer) = server_with_raw_peer();
        let mut s = session.open().unwrap();
        let _syn = read_frame(&mut peer).await;
        s.shutdown().await.unwrap();
        s.shutdown().await.unwrap();
        assert!(s.write_all(b"x").await.is_err());
        drop(s);
        // A ping marks the end of whatever the session queued before it.
        write_frame(
            &mut peer,
            Header {
                kind: TYPE_PING,
                flags: FLAG_SYN,
                stream_id: 0,
                length: 1,
            },
            &[],
        )
        .await;
        let (fin, _) = read_frame(&mut peer).await;
        assert_eq!(
            fin,
            Header {
                kind: TYPE_WINDOW_UPDATE,
                flags: FLAG_FIN,
                stream_id: 2,
                length: 0
            }
        );
        let (next, _) = read_frame(&mut peer).await;
        assert_eq!(next.kind, TYPE_PING, "only one FIN, then the pong");
    }

    #[tokio::test]
    async fn drop_returns_credit_only_for_unread_data_then_fins() {
        let (session, mut peer) = server_with_raw_peer();
        for id in [1u32, 3] {
            let syn = Header {
                kind: TYPE_WINDOW_UPDATE,
                flags: FLAG_SYN,
                stream_id: id,
                length: 0,
            };
            write_frame(&mut peer, syn, &[]).await;
            let _ack = read_frame(&mut peer).await;
            let data = Header {
                kind: TYPE_DATA,
                flags: 0,
                stream_id: id,
                length: 4,
            };
            write_frame(&mut peer, data, b"abcd").await;
        }
        let mut read_all = session.accept().await.unwrap();
        let mut buf = [0u8; 4];
        read_all.read_exact(&mut buf).await.unwrap();
        drop(read_all);
        let (fin, _) = read_frame(&mut peer).await;
        assert_eq!(
            fin,
            Header {
                kind: TYPE_WINDOW_UPDATE,
                flags: FLAG_FIN,
                stream_id: 1,
                length: 0
            }
        );
        let unread = session.accept().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        drop(unread);
        let (credit, _) = read_frame(&mut peer).await;
        assert_eq!(
            credit,
            Header {
                kind: TYPE_WINDOW_UPDATE,
                flags: 0,
                stream_id: 3,
                length: 4
            }
        );
        let (fin, _) = read_frame(&mut peer).await;
        assert_eq!(
            fin,
            Header {
                kind: TYPE_WINDOW_UPDATE,
                flags: FLAG_FIN,
                stream_id: 3,
                length: 0
            }
        );
    }

    #[tokio::test]
    async fn write_waits_for_window_update() {
        let (session, mut peer) = server_with_raw_peer();
        let mut s = session.open().unwrap();
        let _syn = read_frame(&mut peer).await;
        let big = vec![7u8; INITIAL_WINDOW as usize + 10];
        let writer = tokio::spawn(async move {
            s.write_all(&big).await.unwrap();
            s
        });
        let mut got = 0usize;
        while got < INITIAL_WINDOW as usize {
            let (h, p) = read_frame(&mut peer).await;
            assert_eq!(h.kind, TYPE_DATA);
            got += p.len();
        }
        assert_eq!(got, INITIAL_WINDOW as usize, "never more than the window");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!writer.is_finished(), "blocked on an empty window");
        write_frame(
            &mut peer,
            Header {
                kind: TYPE_WINDOW_UPDATE,
                flags: 0,
                stream_id: 2,
                length: 100,
            },
            &[],
        )
        .await;
        let (h, p) = read_frame(&mut peer).await;
        assert_eq!((h.kind, p.len()), (TYPE_DATA, 10));
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn grants_window_after_half_is_read() {
        let (session, mut peer) = server_with_raw_peer();
        write_frame(
            &mut peer,
            Header {
                kind: TYPE_WINDOW_UPDATE,
                flags: FLAG_SYN,
                stream_id: 1,
                length: 0,
            },
            &[],
        )
        .await;
        let _ack = read_frame(&mut peer).await;
        let chunk = vec![1u8; WINDOW_UPDATE_THRESHOLD as usize];
        write_frame(
            &mut peer,
            Header {
                kind: TYPE_DATA,
                flags: 0,
                stream_id: 1,
                length: chunk.len() as u32,
            },
            &chunk,
        )
        .await;
        let mut stream = session.accept().await.unwrap();
        let mut buf = vec![0u8; chunk.len()];
        stream.read_exact(&mut buf).await.unwrap();
        let (h, _) = read_frame(&mut peer).await;
        assert_eq!(
            h,
            Header {
                kind: TYPE_WINDOW_UPDATE,
                flags: 0,
                stream_id: 1,
                length: WINDOW_UPDATE_THRESHOLD
            }
        );
    }

    #[tokio::test]
    async fn overrunning_the_window_is_a_protocol_error() {
        let (session, mut peer) = server_with_raw_peer();
        write_frame(
            &mut peer,
            Header {
                kind: TYPE_WINDOW_UPDATE,
                flags: FLAG_SYN,
                stream_id: 1,
                length: 0,
            },
            &[],
        )
        .await;
        let _ack = read_frame(&mut peer).await;
        let chunk = vec![0u8; 200 * 1024];
        for _ in 0..2 {
            write_frame(
                &mut peer,
                Header {
                    kind: TYPE_DATA,
                    flags: 0,
                    stream_id: 1,
                    length: chunk.len() as u32,
                },
                &chunk,
            )
            .await;
        }
        let (h, _) = read_frame(&mut peer).await;
        assert_eq!(
            h,
            Header {
                kind: TYPE_GO_AWAY,
                flags: 0,
                stream_id: 0,
                length: GO_AWAY_PROTOCOL_ERROR
            }
        );
        session.closed().await;
    }

    #[tokio::test]
    async fn fin_from_peer_reads_as_eof_and_client_and_server_interoperate() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let server = Session::new(a, Role::Server);
        let client = Session::new(b, Role::Client);
        let mut c = client.open().unwrap();
        assert_eq!(c.id(), 1);
        c.write_all(b"hello").await.unwrap();
        c.shutdown().await.unwrap();
        let mut s = server.accept().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
        s.write_all(b"back").await.unwrap();
        drop(s);
        let mut back = Vec::new();
        c.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"back");
    }

    #[tokio::test]
    async fn socket_close_ends_session_and_streams() {
        let (session, mut peer) = server_with_raw_peer();
        write_frame(
            &mut peer,
            Header {
                kind: TYPE_WINDOW_UPDATE,
                flags: FLAG_SYN,
                stream_id: 1,
                length: 0,
            },
            &[],
        )
        .await;
        let mut stream = session.accept().await.unwrap();
        drop(peer);
        session.closed().await;
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await.unwrap();
        assert!(session.open().is_err());
    }

    #[tokio::test]
    async fn bulk_transfer_across_many_windows_both_ways() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let server = Session::new(a, Role::Server);
        let client = Session::new(b, Role::Client);
        let data: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8).collect();
        let mut c = client.open().unwrap();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            c.write_all(&sent).await.unwrap();
            c.shutdown().await.unwrap();
            let mut back = Vec::new();
            c.read_to_end(&mut back).await.unwrap();
            back
        });
        let mut s = server.accept().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        assert!(
            got == data,
            "client to server: {} of {} bytes",
            got.len(),
            data.len()
        );
        s.write_all(&data).await.unwrap();
        s.shutdown().await.unwrap();
        let back = writer.await.unwrap();
        assert!(
            back == data,
            "server to client: {} of {} bytes",
            back.len(),
            data.len()
        );
    }
}
