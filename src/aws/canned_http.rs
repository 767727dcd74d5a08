//! A loopback HTTP(S) server for tests: answers every request with one canned
//! body and records what it was asked.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// A self-signed certificate for 127.0.0.1, only ever used by these tests.
const CERT_PEM: &[u8] = include_bytes!("testdata/loopback-cert.pem");
const KEY_PEM: &[u8] = include_bytes!("testdata/loopback-key.pem");

/// The server; stops accepting when dropped.
pub(crate) struct CannedServer {
    /// `http://127.0.0.1:<port>` or `https://…`.
    pub endpoint: String,
    /// Each request's head and body, in order.
    pub requests: Arc<Mutex<Vec<String>>>,
    /// TCP connections accepted, TLS handshakes that failed included.
    pub connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CannedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CannedServer {
    /// Serves `body` (XML, status 200) over plain HTTP, or over TLS with the test certificate.
    pub(crate) async fn start(body: &'static str, tls: bool) -> CannedServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let scheme = if tls { "https" } else { "http" };
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = connections.clone();
        let acceptor = tls.then(acceptor);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let log = log.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                answer(stream, body, &log).await;
                            }
                        }
                        None => answer(tcp, body, &log).await,
                    }
                });
            }
        });
        CannedServer {
            endpoint: format!("{scheme}://{addr}"),
            requests,
            connections,
            task,
        }
    }
}

fn acceptor() -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let cert = CertificateDer::from_pem_slice(CERT_PEM).expect("test certificate");
    let key = PrivateKeyDer::from_pem_slice(KEY_PEM).expect("test key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .expect("server certificate");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// Reads one request (head and Content-Length body), answers, closes.
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    body: &str,
    log: &Mutex<Vec<String>>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    log.lock()
        .unwrap()
        .push(String::from_utf8_lossy(&buf).to_string());
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}
