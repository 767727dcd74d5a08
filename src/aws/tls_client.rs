//! Our own HTTPS client on the hyper and rustls crates the SDK already links
//! (no extra dependency is compiled), for what the SDK's client cannot do:
//! - `insecure_skip_tls_verify`: the SDK's TLS context only takes trust roots,
//!   so accepting any certificate needs a verifier of our own. Signatures are
//!   still checked (the peer must hold the key of the certificate it shows);
//!   only the chain of trust and the name are skipped.
//! - Vault, which is not an AWS service but needs HTTPS with its own CA.

use std::sync::Arc;

use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_http_client::Connector;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::{
    RuntimeComponents, RuntimeComponentsBuilder,
};
use aws_smithy_runtime_api::http::Response;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Trusts every certificate chain and name, but still checks handshake signatures.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A hyper client speaking https (and plain http), with SDK bodies.
pub(crate) type HyperClient = Client<hyper_rustls::HttpsConnector<TcpConnector>, SdkBody>;

/// Which server certificates to accept.
pub(crate) enum Trust {
    /// Those chaining to the system's roots, or to the CAs of this PEM file.
    SystemRootsPlus(Option<String>),
    /// Any (`insecure_skip_tls_verify`, `VAULT_SKIP_VERIFY`).
    Anything,
}

/// A hyper client trusting what `trust` says; the error names the unreadable CA file.
pub(crate) fn hyper_client(trust: &Trust) -> Result<HyperClient, String> {
    let provider = Arc::new(ring::default_provider());
    let versions = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        // ring supports every safe default version; failure here would be a rustls bug.
        .expect("ring provider supports TLS 1.2 and 1.3");
    let tls = match trust {
        Trust::Anything => versions
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider))),
        Trust::SystemRootsPlus(extra) => {
            let mut roots = rustls::RootCertStore::empty();
            // Unreadable system certificates are skipped, as every TLS client does.
            let (_added, _skipped) =
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            if let Some(path) = extra {
                let pems = CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("cannot read CA file {path}: {e}"))?;
                for pem in pems {
                    let cert = pem.map_err(|e| format!("bad certificate in {path}: {e}"))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("bad certificate in {path}: {e}"))?;
                }
            }
            versions.with_root_certificates(roots)
        }
    }
    .with_no_client_auth();
    let mut tcp = TcpConnector::new();
    tcp.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// Sends SDK requests through a hyper client with the permissive verifier.
#[derive(Debug, Clone)]
struct InsecureConnector {
    client: HyperClient,
}

impl HttpConnector for InsecureConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = self.client.clone();
        HttpConnectorFuture::new(async move {
            let request = request
                .try_into_http1x()
                .map_err(|e| ConnectorError::other(e.into(), None))?;
            let response = client
                .request(request)
                .await
                .map_err(|e| ConnectorError::io(e.into()))?;
            let (parts, body) = response.into_parts();
            let response = http::Response::from_parts(parts, SdkBody::from_body_1_x(body));
            Response::try_from(response).map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

#[derive(Debug)]
struct InsecureClient {
    connector: SharedHttpConnector,
}

impl HttpClient for InsecureClient {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.connector.clone()
    }
}

/// An SDK HTTP client that skips certificate verification (and still speaks plain http).
pub(crate) fn insecure_sdk_client() -> SharedHttpClient {
    let client = match hyper_client(&Trust::Anything) {
        Ok(client) => client,
        // Only a CA file can fail to load, and Trust::Anything reads none.
        Err(never) => unreachable!("{never}"),
    };
    tracing::warn!(
        "insecure_skip_tls_verify is set: AWS endpoints' TLS certificates are not verified"
    );
    SharedHttpClient::new(InsecureClient {
        connector: SharedHttpConnector::new(InsecureConnector { client }),
    })
}

/// The HTTP client of every SDK client: the SDK's own hyper stack with rustls on ring
/// (its default, aws-lc-rs, needs cmake and minutes of C build on our 2-core CI), or
/// ours when certificates are not to be verified. Plain `http://` endpoints work too,
/// for local EC2 look-alikes.
pub(crate) fn sdk_http_client(insecure_skip_tls_verify: bool) -> SharedHttpClient {
    let client = if insecure_skip_tls_verify {
        insecure_sdk_client()
    } else {
        verifying_sdk_client()
    };
    SharedHttpClient::new(EndpointNamingClient { inner: client })
}

fn verifying_sdk_client() -> SharedHttpClient {
    // The SDK's stock HTTPS builder ignores HTTP(S)_PROXY/NO_PROXY; upstream honours
    // them (Go's ProxyFromEnvironment), and so do we.
    aws_smithy_http_client::Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector = Connector::builder();
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector
            .proxy_config(ProxyConfig::from_env())
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build()
    })
}

/// A transport error with the endpoint it happened on: the SDK's own errors
/// ("client error (Connect)") never say which host they could not reach.
#[derive(Debug)]
pub(crate) struct EndpointError {
    endpoint: String,
    /// The server's certificate was refused: asking again cannot help.
    untrusted_certificate: bool,
    source: BoxError,
}

impl std::fmt::Display for EndpointError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cause = error_chain(self.source.as_ref());
        if self.untrusted_certificate {
            write!(
                f,
                "the TLS certificate of {} is not trusted: {cause} (for an endpoint with a \
                 self-signed or private certificate, add its CA to the system's trust store, \
                 or set insecure_skip_tls_verify = true)",
                self.endpoint
            )
        } else {
            write!(f, "cannot reach {}: {cause}", self.endpoint)
        }
    }
}

// The cause is part of the message (so that it reads in one line), not a source.
impl std::error::Error for EndpointError {}

/// "error: cause: cause", skipping a cause whose text its parent already shows.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let shown = cause.to_string();
        if !text.ends_with(&shown) {
            text.push_str(": ");
            text.push_str(&shown);
        }
        source = cause.source();
    }
    text
}

/// Whether a TLS handshake failed because the server's certificate was refused.
pub(crate) fn is_untrusted_certificate(err: &(dyn std::error::Error + 'static)) -> bool {
    if let Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented) =
        err.downcast_ref::<rustls::Error>()
    {
        return true;
    }
    // io::Error's source() skips its payload (itself often an io::Error): look inside.
    if let Some(payload) = err
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        return is_untrusted_certificate(payload);
    }
    err.source().is_some_and(is_untrusted_certificate)
}

/// `scheme://host:port` of a request URI (no path or query: those may carry parameters).
fn endpoint_of(uri: &str) -> String {
    match uri.parse::<http::Uri>() {
        Ok(parsed) => match (parsed.scheme_str(), parsed.authority()) {
            (Some(scheme), Some(authority)) => format!("{scheme}://{authority}"),
            _ => uri.to_owned(),
        },
        Err(_) => uri.to_owned(),
    }
}

/// Wraps a connector's errors in [`EndpointError`], keeping their retry class, except
/// that a refused certificate is final instead of retried for a minute.
#[derive(Debug)]
struct EndpointNamingConnector {
    inner: SharedHttpConnector,
}

impl HttpConnector for EndpointNamingConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let endpoint = endpoint_of(request.uri());
        let call = self.inner.call(request);
        HttpConnectorFuture::new(async move {
            call.await.map_err(|err| {
                let (io, timeout, user, kind) =
                    (err.is_io(), err.is_timeout(), err.is_user(), err.as_other());
                let source = err.into_source();
                let untrusted_certificate = is_untrusted_certificate(source.as_ref());
                let named: BoxError = Box::new(EndpointError {
                    endpoint,
                    untrusted_certificate,
                    source,
                });
                if untrusted_certificate || user {
                    ConnectorError::user(named)
                } else if timeout {
                    ConnectorError::timeout(named)
                } else if io {
                    ConnectorError::io(named)
                } else {
                    ConnectorError::other(named, kind)
                }
            })
        })
    }
}

#[derive(Debug)]
struct EndpointNamingClient {
    inner: SharedHttpClient,
}

impl HttpClient for EndpointNamingClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(EndpointNamingConnector {
            inner: self.inner.http_connector(settings, components),
        })
    }

    fn validate_base_client_config(
        &self,
        components: &RuntimeComponentsBuilder,
        config: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.inner.validate_base_client_config(components, config)
    }

    fn validate_final_config(
        &self,
        components: &RuntimeComponents,
        config: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.inner.validate_final_config(components, config)
    }

    fn connector_metadata(
        &self,
    ) -> Option<aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata> {
        self.inner.connector_metadata()
    }
}
