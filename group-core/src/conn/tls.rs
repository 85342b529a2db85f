//! TLS (`security.protocol=SSL` or `SASL_SSL`) through rustls, no OpenSSL: the broker's
//! certificate and host name are verified by default against a CA file (`ssl.ca.location`) or
//! the platform's roots, with client certificates for mutual TLS (`ssl.certificate.location`,
//! `ssl.key.location`) and SNI. A [`TlsDialer`] wraps another dialer (plain TCP by default,
//! or the harness's fault-injecting one), so TLS composes with any transport.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::TlsConnector;

use super::dialer::{BoxedStream, Dialer, TcpDialer};
use crate::error::Error;

/// TLS settings, by Kafka's (librdkafka's) names.
#[derive(Clone, Default)]
pub struct TlsConfig {
    /// `ssl.ca.location`: PEM file of the CAs that sign the brokers' certificates; `None`
    /// trusts the platform's roots.
    pub ca_location: Option<PathBuf>,
    /// `ssl.certificate.location`: this client's certificate chain (PEM), for mutual TLS.
    pub certificate_location: Option<PathBuf>,
    /// `ssl.key.location`: this client's private key (PEM, PKCS#8, PKCS#1 or SEC1).
    pub key_location: Option<PathBuf>,
    /// The name the brokers' certificates are checked against and sent as SNI, instead of
    /// the host of each address (for brokers reached through a tunnel or by IP).
    pub server_name: Option<String>,
    /// Accepts any certificate from any broker: no protection against a man in the middle.
    /// For a throwaway test cluster only; never the default, and logged at `warn` whenever a
    /// dialer is made with it.
    pub dangerously_accept_any_certificate: bool,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("ca_location", &self.ca_location)
            .field("certificate_location", &self.certificate_location)
            .field("key_location", &self.key_location)
            .field("server_name", &self.server_name)
            .field(
                "dangerously_accept_any_certificate",
                &self.dangerously_accept_any_certificate,
            )
            .finish()
    }
}

/// Dials through `inner`, then runs a TLS handshake.
pub struct TlsDialer {
    inner: Arc<dyn Dialer>,
    connector: TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl fmt::Debug for TlsDialer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsDialer")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

fn config_error(what: impl fmt::Display) -> Error {
    Error::Config(vec![format!("tls: {what}")])
}

impl TlsDialer {
    /// TLS over plain TCP.
    pub fn new(cfg: &TlsConfig) -> Result<Self, Error> {
        Self::wrap(Arc::new(TcpDialer::default()), cfg)
    }

    /// TLS over `inner`'s connections. Reads the files now: a missing or malformed one is an
    /// [`Error::Config`] naming it.
    pub fn wrap(inner: Arc<dyn Dialer>, cfg: &TlsConfig) -> Result<Self, Error> {
        // rustls 0.23.48 deprecates its ring provider (it has no post-quantum key exchange,
        // aws-lc-rs has); cohort keeps ring on purpose: no C build (the workspace Cargo.toml).
        #[allow(
            deprecated,
            reason = "ring on purpose; deprecated only from rustls 0.23.48 (the fuzz lock has it)"
        )]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(config_error)?;
        let builder = if cfg.dangerously_accept_any_certificate {
            tracing::warn!(
                "TLS certificate verification is OFF (dangerously_accept_any_certificate): any broker, or anyone between, is trusted"
            );
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        } else {
            let mut roots = rustls::RootCertStore::empty();
            match &cfg.ca_location {
                Some(path) => {
                    let certs = CertificateDer::pem_file_iter(path)
                        .map_err(|e| {
                            config_error(format!("ssl.ca.location {}: {e}", path.display()))
                        })?
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| {
                            config_error(format!("ssl.ca.location {}: {e}", path.display()))
                        })?;
                    if certs.is_empty() {
                        return Err(config_error(format!(
                            "ssl.ca.location {}: no certificate in it",
                            path.display()
                        )));
                    }
                    for c in certs {
                        roots.add(c).map_err(|e| {
                            config_error(format!("ssl.ca.location {}: {e}", path.display()))
                        })?;
                    }
                }
                None => {
                    let found = rustls_native_certs::load_native_certs();
                    for c in found.certs {
                        // A platform store may hold certificates rustls cannot use; the
                        // others still count.
                        let _ = roots.add(c);
                    }
                    if roots.is_empty() {
                        return Err(config_error(
                            "no ssl.ca.location and no usable CA certificate in the platform's store",
                        ));
                    }
                }
            }
            builder.with_root_certificates(roots)
        };
        let config = match (&cfg.certificate_location, &cfg.key_location) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .map_err(|e| {
                        config_error(format!("ssl.certificate.location {}: {e}", cert.display()))
                    })?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| {
                        config_error(format!("ssl.certificate.location {}: {e}", cert.display()))
                    })?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    config_error(format!("ssl.key.location {}: {e}", key.display()))
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(config_error)?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(config_error(
                    "ssl.certificate.location and ssl.key.location go together",
                ));
            }
        };
        let server_name = cfg
            .server_name
            .as_deref()
            .map(|n| {
                ServerName::try_from(n.to_owned())
                    .map_err(|e| config_error(format!("server name {n:?}: {e}")))
            })
            .transpose()?;
        Ok(Self {
            inner,
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }
}

/// The host of `host:port` or `[v6]:port`.
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

#[async_trait]
impl Dialer for TlsDialer {
    async fn dial(&self, addr: &str) -> io::Result<BoxedStream> {
        let name = match &self.server_name {
            Some(n) => n.clone(),
            None => ServerName::try_from(host_of(addr).to_owned()).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("TLS server name: {e}"))
            })?,
        };
        let tcp = self.inner.dial(addr).await?;
        let tls = self
            .connector
            .connect(name, tcp)
            .await
            .map_err(|e| refusal_or("TLS handshake", e))?;
        Ok(Box::new(Refusals(tls)))
    }
}

/// A certificate one side of a TLS connection did not accept: the broker's (an unknown issuer,
/// another name, expired) or this client's (missing, expired, from another CA). Carried inside
/// the dialer's `io::Error`; [`Error::transport_io`] makes it an [`Error::Authentication`],
/// fatal like Java's `SslAuthenticationException`: dialing again cannot change a certificate.
#[derive(Debug)]
pub(crate) struct TlsRefused(pub(crate) String);

impl fmt::Display for TlsRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsRefused {}

/// `e` as a [`TlsRefused`] when rustls says a certificate was refused, else unchanged but for
/// the context; rustls's reason is kept in the message: it says what to fix.
fn refusal_or(doing: &str, e: io::Error) -> io::Error {
    use rustls::AlertDescription as A;
    let refused = match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented) => true,
        // The broker's verdict on this client's certificate. With TLS 1.3 it arrives after
        // the client finished its side of the handshake, on the first read.
        Some(rustls::Error::AlertReceived(a)) => matches!(
            a,
            A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::CertificateRequired
                | A::UnknownCA
                | A::AccessDenied
                | A::HandshakeFailure
        ),
        _ => false,
    };
    if refused {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            TlsRefused(format!("{doing}: {e}")),
        )
    } else if doing == "TLS handshake" {
        io::Error::new(e.kind(), format!("{doing}: {e}"))
    } else {
        e
    }
}

/// A TLS stream whose read and write errors say when the broker refused this client's
/// certificate (see [`refusal_or`]).
struct Refusals<S>(S);

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Refusals<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.0)
            .poll_read(cx, buf)
            .map_err(|e| refusal_or("TLS", e))
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Refusals<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.0)
            .poll_write(cx, buf)
            .map_err(|e| refusal_or("TLS", e))
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.0)
            .poll_flush(cx)
            .map_err(|e| refusal_or("TLS", e))
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// `dangerously_accept_any_certificate`: signatures are still checked (the handshake needs
/// them), the chain and the name are not.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
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
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_addresses() {
        assert_eq!(host_of("broker-1:9093"), "broker-1");
        assert_eq!(host_of("127.0.0.1:9093"), "127.0.0.1");
        assert_eq!(host_of("[::1]:9093"), "::1");
    }

    #[test]
    fn missing_files_are_configuration_errors_naming_them() {
        let cfg = TlsConfig {
            ca_location: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let e = TlsDialer::new(&cfg).unwrap_err().to_string();
        assert!(e.contains("ssl.ca.location /nonexistent/ca.pem"), "{e}");
        let cfg = TlsConfig {
            certificate_location: Some("/x.pem".into()),
            dangerously_accept_any_certificate: true,
            ..Default::default()
        };
        let e = TlsDialer::new(&cfg).unwrap_err().to_string();
        assert!(e.contains("go together"), "{e}");
    }
}
