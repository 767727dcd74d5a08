//! Instance metadata (IMDS): which instance and region this build runs on.
//!
//! A tiny HTTP/1.1 client of its own rather than aws-config's: upstream's
//! worst-rated failure (plugin #467) is an IMDS error whose real cause was
//! swallowed, so every failure here says what happened on the wire (refused,
//! timed out, HTTP status) and what to check.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where IMDS listens on every EC2 instance.
pub const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";
/// The variable the AWS SDKs read to move the IMDS endpoint.
pub const ENDPOINT_ENV: &str = "AWS_EC2_METADATA_SERVICE_ENDPOINT";
/// The variable the AWS SDKs read to turn IMDS off.
pub const DISABLED_ENV: &str = "AWS_EC2_METADATA_DISABLED";
/// IMDS answers in milliseconds on EC2; off EC2 (or behind a dropped hop) a
/// request would hang, so each request gets a short budget.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Token lifetime we ask for; we fetch a fresh token per lookup, so short is fine.
const TOKEN_TTL_SECONDS: u32 = 60;

/// What can go wrong reading instance metadata; the message carries the cause and a hint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImdsError {
    /// `AWS_EC2_METADATA_SERVICE_ENDPOINT` (or the given endpoint) is not `http://host[:port]`.
    #[error("bad instance metadata endpoint {endpoint:?}: {reason}")]
    BadEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `AWS_EC2_METADATA_DISABLED` is set to true.
    #[error(
        "instance metadata is disabled by AWS_EC2_METADATA_DISABLED; amazon-chroot needs it \
         to find the instance it runs on (and, without a configured region, the region)"
    )]
    Disabled,
    /// The request could not be completed.
    #[error("cannot read instance metadata {path} from {endpoint}: {cause}. {HINT}")]
    Request {
        /// The endpoint tried.
        endpoint: String,
        /// The metadata path requested.
        path: String,
        /// What happened on the wire.
        cause: ImdsCause,
    },
    /// The identity document was not the JSON we expect.
    #[error("instance identity document from {endpoint} is not valid: {reason}")]
    BadDocument {
        /// The endpoint read.
        endpoint: String,
        /// The parse error.
        reason: String,
    },
}

/// Shown with every failed request: the usual reasons IMDS is out of reach.
const HINT: &str =
    "amazon-chroot must run on an EC2 instance that can reach its metadata service: \
    not on EC2? IMDS disabled on the instance (http-endpoint)? In a container, the IMDSv2 \
    hop limit must be at least 2 (http-put-response-hop-limit). Set \
    AWS_EC2_METADATA_SERVICE_ENDPOINT to use another endpoint";

/// The wire-level reason a metadata request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImdsCause {
    /// The TCP connection failed (refused, unreachable…): the OS error text.
    Connect(String),
    /// No complete answer within the budget.
    Timeout(Duration),
    /// The connection broke mid-request.
    Io(String),
    /// IMDS answered with a non-success status.
    Status(u16),
    /// The answer was not HTTP we understand.
    Malformed(String),
    /// The IMDSv2 token request got no answer in time and IMDSv1 is refused (401).
    TokenLost(Duration),
}

impl fmt::Display for ImdsCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImdsCause::Connect(e) => write!(f, "connection failed: {e}"),
            ImdsCause::Timeout(d) => write!(f, "no answer within {d:?}"),
            ImdsCause::Io(e) => write!(f, "connection broken: {e}"),
            ImdsCause::Status(401) => f.write_str("HTTP 401 (IMDSv2 token rejected)"),
            ImdsCause::Status(403) => f.write_str("HTTP 403 (metadata access forbidden)"),
            ImdsCause::Status(s) => write!(f, "HTTP {s}"),
            ImdsCause::Malformed(e) => write!(f, "malformed HTTP answer: {e}"),
            ImdsCause::TokenLost(d) => write!(
                f,
                "the IMDSv2 token request got no answer within {d:?} and IMDSv1 is refused \
                 (HTTP 401): from a container, raise the instance's metadata hop limit \
                 (http-put-response-hop-limit 2)"
            ),
        }
    }
}

/// The fields of the instance identity document the builder uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceIdentity {
    /// e.g. `i-0123456789abcdef0`.
    pub instance_id: String,
    /// e.g. `eu-west-1`.
    pub region: String,
    /// e.g. `eu-west-1a`.
    pub availability_zone: String,
    /// The owning account.
    #[serde(default)]
    pub account_id: Option<String>,
    /// The AMI the instance was launched from.
    #[serde(default)]
    pub image_id: Option<String>,
    /// e.g. `m5.large`.
    #[serde(default)]
    pub instance_type: Option<String>,
    /// e.g. `x86_64` or `arm64`.
    #[serde(default)]
    pub architecture: Option<String>,
}

/// A client of one IMDS endpoint: IMDSv2 (session token) first, IMDSv1 when v2 is refused.
#[derive(Debug, Clone)]
pub struct Imds {
    endpoint: String,
    /// `host:port` to connect to (IPv6 hosts keep their brackets).
    authority: String,
    timeout: Duration,
}

/// An HTTP answer: status and body.
struct Answer {
    status: u16,
    body: String,
}

impl Imds {
    /// The endpoint from `AWS_EC2_METADATA_SERVICE_ENDPOINT`, else 169.254.169.254;
    /// an error when `AWS_EC2_METADATA_DISABLED=true`, as for the SDKs.
    pub fn from_env() -> Result<Self, ImdsError> {
        if std::env::var(DISABLED_ENV).is_ok_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Err(ImdsError::Disabled);
        }
        match std::env::var(ENDPOINT_ENV) {
            Ok(endpoint) if !endpoint.trim().is_empty() => Self::new(endpoint.trim()),
            _ => Self::new(DEFAULT_ENDPOINT),
        }
    }

    /// A client of the given `http://host[:port]` endpoint.
    pub fn new(endpoint: &str) -> Result<Self, ImdsError> {
        let bad = |reason: &str| ImdsError::BadEndpoint {
            endpoint: endpoint.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = endpoint
            .strip_prefix("http://")
            .ok_or_else(|| bad("only http:// endpoints are supported"))?;
        let host_port = rest.split('/').next().unwrap_or_default();
        if host_port.is_empty() {
            return Err(bad("no host"));
        }
        let has_port = match host_port.rfind(']') {
            Some(close) => host_port[close..].contains(':'),
            None => host_port.contains(':'),
        };
        let authority = if has_port {
            host_port.to_owned()
        } else {
            format!("{host_port}:80")
        };
        Ok(Imds {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            authority,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Changes the per-request time budget.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The endpoint this client talks to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The instance identity document (instance id, region, zone, account…).
    pub async fn instance_identity(&self) -> Result<InstanceIdentity, ImdsError> {
        let body = self
            .get("/latest/dynamic/instance-identity/document")
            .await?;
        serde_json::from_str(&body).map_err(|e| ImdsError::BadDocument {
            endpoint: self.endpoint.clone(),
            reason: e.to_string(),
        })
    }

    /// The id of the instance this process runs on.
    pub async fn instance_id(&self) -> Result<String, ImdsError> {
        Ok(self
            .get("/latest/meta-data/instance-id")
            .await?
            .trim()
            .to_owned())
    }

    /// GETs a metadata path: with an IMDSv2 token when IMDS hands one out, without when it
    /// refuses (IMDSv1-only endpoints answer the token PUT with 403/404/405) or when the
    /// token answer never arrives (a hop limit of 1 drops it in containers).
    pub async fn get(&self, path: &str) -> Result<String, ImdsError> {
        let token_request = format!(
            "PUT /latest/api/token HTTP/1.1\r\nHost: {}\r\n\
             X-aws-ec2-metadata-token-ttl-seconds: {TOKEN_TTL_SECONDS}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n",
            self.authority
        );
        let mut token_lost = None;
        let token = match self.exchange(&token_request).await {
            Ok(Answer { status: 200, body }) => Some(body.trim().to_owned()),
            Ok(Answer {
                status: 403..=405, ..
            }) => {
                tracing::debug!(endpoint = %self.endpoint, "IMDSv2 token refused, trying IMDSv1");
                None
            }
            Err(ImdsCause::Timeout(waited)) => {
                tracing::debug!(endpoint = %self.endpoint, "no IMDSv2 token answer, trying IMDSv1");
                token_lost = Some(waited);
                None
            }
            Ok(Answer { status, .. }) => {
                return Err(self.failure("/latest/api/token", ImdsCause::Status(status)))
            }
            Err(cause) => return Err(self.failure("/latest/api/token", cause)),
        };
        let token_header = token
            .map(|t| format!("X-aws-ec2-metadata-token: {t}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\n{token_header}Connection: close\r\n\r\n",
            self.authority
        );
        match (self.exchange(&request).await, token_lost) {
            (Ok(Answer { status: 200, body }), _) => Ok(body),
            // IMDSv2 is required but its token never came back: the container case.
            (Ok(Answer { status: 401, .. }), Some(waited)) => {
                Err(self.failure(path, ImdsCause::TokenLost(waited)))
            }
            (Ok(Answer { status, .. }), _) => Err(self.failure(path, ImdsCause::Status(status))),
            (Err(cause), _) => Err(self.failure(path, cause)),
        }
    }

    fn failure(&self, path: &str, cause: ImdsCause) -> ImdsError {
        ImdsError::Request {
            endpoint: self.endpoint.clone(),
            path: path.to_owned(),
            cause,
        }
    }

    /// Sends one request on a fresh connection and reads the answer to EOF.
    async fn exchange(&self, request: &str) -> Result<Answer, ImdsCause> {
        let io = async {
            let mut stream = TcpStream::connect(&self.authority)
                .await
                .map_err(|e| ImdsCause::Connect(e.to_string()))?;
            stream
                .write_all(request.as_bytes())
                .await
                .map_err(|e| ImdsCause::Io(e.to_string()))?;
            let mut raw = Vec::new();
            stream
                .read_to_end(&mut raw)
                .await
                .map_err(|e| ImdsCause::Io(e.to_string()))?;
            parse_answer(&raw)
        };
        tokio::time::timeout(self.timeout, io)
            .await
            .unwrap_or(Err(ImdsCause::Timeout(self.timeout)))
    }
}

/// Parses an HTTP/1.x answer read to EOF (`Connection: close`), chunked or not.
fn parse_answer(raw: &[u8]) -> Result<Answer, ImdsCause> {
    let malformed = |what: &str| ImdsCause::Malformed(what.to_owned());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| malformed("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| malformed("headers not UTF-8"))?;
    let mut body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| status_line.starts_with("HTTP/1."))
        .ok_or_else(|| ImdsCause::Malformed(format!("status line {status_line:?}")))?;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            let len: usize = value.parse().map_err(|_| malformed("bad Content-Length"))?;
            body = body
                .get(..len)
                .ok_or_else(|| malformed("body shorter than Content-Length"))?;
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && value.eq_ignore_ascii_case("chunked")
        {
            chunked = true;
        }
    }
    let body = if chunked {
        dechunk(body).ok_or_else(|| malformed("bad chunked body"))?
    } else {
        body.to_vec()
    };
    let body = String::from_utf8(body).map_err(|_| malformed("body not UTF-8"))?;
    Ok(Answer { status, body })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::net::TcpListener;

    const DOCUMENT: &str = r#"{"accountId":"123456789012","architecture":"x86_64",
        "availabilityZone":"eu-west-1b","imageId":"ami-0abc","instanceId":"i-0feedbeef",
        "instanceType":"m5.large","privateIp":"10.0.0.5","region":"eu-west-1","version":"2017-09-30"}"#;

    /// A fake IMDS on 127.0.0.1: answers the token PUT with `token_status`, requires the
    /// token on GETs when it handed one out, and records every request line it saw.
    pub(crate) struct FakeImds {
        /// `http://127.0.0.1:<port>`.
        pub endpoint: String,
        /// "METHOD path [token]" per request.
        pub seen: Arc<Mutex<Vec<String>>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for FakeImds {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl FakeImds {
        pub(crate) async fn start(token_status: u16) -> FakeImds {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind loopback");
            let endpoint = format!("http://{}", listener.local_addr().expect("local addr"));
            let seen = Arc::new(Mutex::new(Vec::new()));
            let log = seen.clone();
            let task = tokio::spawn(async move {
                loop {
                    let Ok((mut conn, _)) = listener.accept().await else {
                        return;
                    };
                    let mut buf = vec![0u8; 4096];
                    let mut len = 0;
                    while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf[len..]).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => len += n,
                        }
                    }
                    let head = String::from_utf8_lossy(&buf[..len]).to_string();
                    let mut words = head.split_whitespace();
                    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                    let token = head
                        .lines()
                        .find_map(|l| l.strip_prefix("X-aws-ec2-metadata-token: "))
                        .map(str::to_owned);
                    log.lock().unwrap().push(format!(
                        "{method} {path}{}",
                        token
                            .as_deref()
                            .map(|t| format!(" {t}"))
                            .unwrap_or_default()
                    ));
                    let (status, body) = match (method, path) {
                        ("PUT", "/latest/api/token") if token_status == 200 => (200, "TOKEN-1"),
                        ("PUT", "/latest/api/token") => (token_status, ""),
                        _ if token_status == 200 && token.as_deref() != Some("TOKEN-1") => {
                            (401, "")
                        }
                        ("GET", "/latest/dynamic/instance-identity/document") => (200, DOCUMENT),
                        ("GET", "/latest/meta-data/instance-id") => (200, "i-0feedbeef"),
                        _ => (404, ""),
                    };
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(answer.as_bytes()).await;
                    let _ = conn.shutdown().await;
                }
            });
            FakeImds {
                endpoint,
                seen,
                task,
            }
        }
    }

    #[tokio::test]
    async fn reads_identity_with_an_imdsv2_token() {
        let imds = FakeImds::start(200).await;
        let client = Imds::new(&imds.endpoint).unwrap();
        let identity = client.instance_identity().await.unwrap();
        assert_eq!(identity.instance_id, "i-0feedbeef");
        assert_eq!(identity.region, "eu-west-1");
        assert_eq!(identity.availability_zone, "eu-west-1b");
        assert_eq!(identity.account_id.as_deref(), Some("123456789012"));
        assert_eq!(client.instance_id().await.unwrap(), "i-0feedbeef");
        let seen = imds.seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            [
                "PUT /latest/api/token",
                "GET /latest/dynamic/instance-identity/document TOKEN-1",
                "PUT /latest/api/token",
                "GET /latest/meta-data/instance-id TOKEN-1",
            ]
        );
    }

    #[tokio::test]
    async fn falls_back_to_imdsv1_when_token_put_is_refused() {
        for refusal in [403, 405] {
            let imds = FakeImds::start(refusal).await;
            let client = Imds::new(&imds.endpoint).unwrap();
            assert_eq!(client.instance_id().await.unwrap(), "i-0feedbeef");
            let seen = imds.seen.lock().unwrap().clone();
            assert_eq!(
                seen,
                ["PUT /latest/api/token", "GET /latest/meta-data/instance-id"],
                "token refused with {refusal}"
            );
        }
    }

    #[tokio::test]
    async fn unreachable_endpoint_reports_connection_refused_and_what_to_check() {
        // Bind then drop: the port is closed, so connecting is refused at once.
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().port()
        };
        let client = Imds::new(&format!("http://127.0.0.1:{port}")).unwrap();
        let err = client.instance_identity().await.unwrap_err();
        let shown = err.to_string();
        assert!(
            matches!(&err, ImdsError::Request { cause: ImdsCause::Connect(e), .. } if e.contains("refused")),
            "{err:?}"
        );
        assert!(shown.contains("Connection refused"), "{shown}");
        assert!(shown.contains(&format!("127.0.0.1:{port}")), "{shown}");
        assert!(
            shown.ends_with(
                "amazon-chroot must run on an EC2 instance that can reach its metadata service: \
                 not on EC2? IMDS disabled on the instance (http-endpoint)? In a container, the \
                 IMDSv2 hop limit must be at least 2 (http-put-response-hop-limit). Set \
                 AWS_EC2_METADATA_SERVICE_ENDPOINT to use another endpoint"
            ),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn silent_endpoint_reports_a_timeout() {
        // Accepts connections but never answers, like a dropped IMDS hop.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                held.push(conn);
            }
        });
        let client = Imds::new(&endpoint)
            .unwrap()
            .with_timeout(Duration::from_millis(200));
        let err = client.instance_id().await.unwrap_err();
        hold.abort();
        assert!(
            matches!(&err, ImdsError::Request { cause: ImdsCause::Timeout(_), path, .. } if path == "/latest/meta-data/instance-id"),
            "{err:?}"
        );
        assert!(err.to_string().contains("no answer within 200ms"), "{err}");
    }

    #[tokio::test]
    async fn lost_token_answer_with_imdsv1_refused_blames_the_hop_limit() {
        // Like IMDS seen from a container with hop limit 1: the token PUT's answer never
        // arrives, and IMDSv1 is disabled (http-tokens=required).
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let n = conn.read(&mut buf).await.unwrap_or(0);
                if buf[..n].starts_with(b"PUT") {
                    held.push(conn);
                } else {
                    let _ = conn
                        .write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
                        .await;
                }
            }
        });
        let client = Imds::new(&endpoint)
            .unwrap()
            .with_timeout(Duration::from_millis(200));
        let err = client.instance_id().await.unwrap_err();
        server.abort();
        assert!(
            matches!(
                &err,
                ImdsError::Request {
                    cause: ImdsCause::TokenLost(_),
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("http-put-response-hop-limit 2"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn http_error_status_is_reported() {
        let imds = FakeImds::start(200).await;
        let client = Imds::new(&imds.endpoint).unwrap();
        let err = client
            .get("/latest/meta-data/nothing-here")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("HTTP 404"), "{err}");
    }

    #[test]
    fn endpoint_parsing_adds_port_80_and_rejects_https() {
        assert_eq!(
            Imds::new("http://169.254.169.254").unwrap().authority,
            "169.254.169.254:80"
        );
        assert_eq!(
            Imds::new("http://127.0.0.1:8080/").unwrap().authority,
            "127.0.0.1:8080"
        );
        assert_eq!(
            Imds::new("http://[fd00:ec2::254]").unwrap().authority,
            "[fd00:ec2::254]:80"
        );
        assert!(matches!(
            Imds::new("https://169.254.169.254"),
            Err(ImdsError::BadEndpoint { .. })
        ));
    }

    #[test]
    fn parses_chunked_answers() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\ni-01\r\n3\r\n234\r\n0\r\n\r\n";
        let answer = parse_answer(raw).unwrap();
        assert_eq!((answer.status, answer.body.as_str()), (200, "i-01234"));
    }
}
