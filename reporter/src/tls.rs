//! TLS on the reporter's two ports, from `[tls]` in `kuroko.toml`
//! ([`TlsConfig`]): the files are read and checked once at start-up (a
//! missing file, a file without a certificate or key, or a key that is not
//! the certificate's is refused with the file's name), then the OTLP/HTTP
//! port (with the API and web UI) is served through a rustls acceptor and
//! the OTLP/gRPC port through tonic's own rustls.
//!
//! rustls with the ring provider, as the agent's exporter and the SMTP
//! client use: no OpenSSL.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;

/// Why `[tls]` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Only one of the certificate and the key is set.
    #[error(
        "[tls] sets {set} but not {missing}: set both (or neither, for plain text); \
         KUROKO_TLS_CERT_FILE and KUROKO_TLS_KEY_FILE override the file"
    )]
    Incomplete {
        /// The one set.
        set: &'static str,
        /// The one missing.
        missing: &'static str,
    },
    /// A file could not be read.
    #[error("[tls] {key} = {path:?}: cannot read it ({source})")]
    Read {
        /// Which key names it.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file holds no PEM block of the kind wanted.
    #[error("[tls] {key} = {path:?}: no {what} in it (expected PEM, \"-----BEGIN {what_pem}-----\")")]
    Missing {
        /// Which key names it.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What was looked for.
        what: &'static str,
        /// Its PEM label.
        what_pem: &'static str,
    },
    /// rustls refused the certificate, the key or the client CA (a key
    /// that is not the certificate's, an unsupported key type).
    #[error("[tls] cannot use {what}: {source}")]
    Refused {
        /// What was being set up.
        what: &'static str,
        /// Why.
        source: rustls::Error,
    },
    /// The system's trust store has no certificate (for Kuroko's own
    /// HTTPS clients).
    #[error(
        "no trusted certificates in the system's store for https ({0}); install ca-certificates, \
         or set SSL_CERT_FILE to a PEM file of the CAs to trust"
    )]
    NoRoots(String),
    /// The client CA file's certificates cannot verify clients.
    #[error("[tls] client_ca_file = {path:?}: {reason}")]
    ClientCa {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// TLS for both ports, ready to serve.
#[derive(Clone)]
pub(crate) struct ServerTls {
    /// The OTLP/HTTP port's acceptor (ALPN `http/1.1`).
    pub(crate) http: tokio_rustls::TlsAcceptor,
    /// The OTLP/gRPC port's configuration, for tonic.
    pub(crate) grpc: tonic::transport::ServerTlsConfig,
    /// Whether clients must present a certificate.
    pub(crate) mutual: bool,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").field("mutual", &self.mutual).finish()
    }
}

/// Reads and checks `[tls]`; `None` when it sets neither file (plain
/// text). `handshake` bounds a client's TLS handshake on the gRPC port (the
/// HTTP port bounds it with its header timeout).
pub(crate) fn load(config: &TlsConfig, handshake: Duration) -> Result<Option<ServerTls>, TlsError> {
    let (cert_file, key_file) = match (&config.cert_file, &config.key_file) {
        (None, None) => {
            return match &config.client_ca_file {
                Some(_) => Err(TlsError::Incomplete {
                    set: "client_ca_file",
                    missing: "cert_file and key_file",
                }),
                None => Ok(None),
            }
        }
        (Some(_), None) => {
            return Err(TlsError::Incomplete {
                set: "cert_file",
                missing: "key_file",
            })
        }
        (None, Some(_)) => {
            return Err(TlsError::Incomplete {
                set: "key_file",
                missing: "cert_file",
            })
        }
        (Some(cert), Some(key)) => (cert, key),
    };
    let cert_pem = read("cert_file", cert_file)?;
    let key_pem = read("key_file", key_file)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(missing("cert_file", cert_file, "certificate", "CERTIFICATE"));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|_| missing("key_file", key_file, "private key", "PRIVATE KEY"))?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Refused {
            what: "TLS 1.2 and 1.3",
            source,
        })?;
    let mut grpc = tonic::transport::ServerTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(&cert_pem, &key_pem))
        .timeout(handshake);
    let builder = match &config.client_ca_file {
        Some(path) => {
            let ca_pem = read("client_ca_file", path)?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&ca_pem).filter_map(Result::ok) {
                roots.add(cert).map_err(|error| TlsError::ClientCa {
                    path: path.clone(),
                    reason: format!("a certificate in it is not a usable CA ({error})"),
                })?;
            }
            if roots.is_empty() {
                return Err(missing("client_ca_file", path, "certificate", "CERTIFICATE"));
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|error| TlsError::ClientCa {
                    path: path.clone(),
                    reason: error.to_string(),
                })?;
            grpc = grpc.client_ca_root(tonic::transport::Certificate::from_pem(&ca_pem));
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    // rustls checks that the key is the certificate's.
    let mut http = builder
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::Refused {
            what: "cert_file with key_file",
            source,
        })?;
    http.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(ServerTls {
        http: tokio_rustls::TlsAcceptor::from(Arc::new(http)),
        grpc,
        mutual: config.client_ca_file.is_some(),
    }))
}

/// The TLS settings of Kuroko's own HTTPS clients (chat webhooks,
/// `kuroko query --server https://…`): the system's trust store, or the
/// PEM file `SSL_CERT_FILE` names instead (as rustls-native-certs reads it),
/// for a company CA or a reporter's own certificate.
pub fn client_config() -> Result<ureq::tls::TlsConfig, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        let why = found.errors.first().map(ToString::to_string).unwrap_or_default();
        return Err(TlsError::NoRoots(why));
    }
    let roots: Vec<ureq::tls::Certificate<'static>> = found
        .certs
        .iter()
        .map(|der| ureq::tls::Certificate::from_der(der.as_ref()).to_owned())
        .collect();
    Ok(ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
        .build())
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        key,
        path: path.to_owned(),
        source,
    })
}

fn missing(key: &'static str, path: &Path, what: &'static str, what_pem: &'static str) -> TlsError {
    TlsError::Missing {
        key,
        path: path.to_owned(),
        what,
        what_pem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(cert: Option<&str>, key: Option<&str>, ca: Option<&str>) -> TlsConfig {
        TlsConfig {
            cert_file: cert.map(PathBuf::from),
            key_file: key.map(PathBuf::from),
            client_ca_file: ca.map(PathBuf::from),
        }
    }

    #[test]
    fn neither_file_is_plain_text_and_half_a_setting_is_refused_with_what_to_set() {
        let wait = Duration::from_secs(1);
        assert!(load(&config(None, None, None), wait).expect("plain").is_none());
        let half = load(&config(Some("c.pem"), None, None), wait).expect_err("no key");
        assert!(half.to_string().contains("sets cert_file but not key_file"), "{half}");
        let ca_only = load(&config(None, None, Some("ca.pem")), wait).expect_err("CA alone");
        assert!(ca_only.to_string().contains("client_ca_file"), "{ca_only}");
    }

    #[test]
    fn a_missing_file_or_one_without_pem_is_named() {
        let dir = std::env::temp_dir().join(format!("kuroko-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("folder");
        let text = dir.join("not-pem.txt");
        std::fs::write(&text, "hello").expect("file");
        let wait = Duration::from_secs(1);
        let gone = load(&config(Some("/nonexistent/c.pem"), Some("k.pem"), None), wait).expect_err("missing");
        assert!(
            gone.to_string()
                .contains("cert_file = \"/nonexistent/c.pem\": cannot read it"),
            "{gone}"
        );
        let t = text.to_str().expect("utf-8");
        let not_pem = load(&config(Some(t), Some(t), None), wait).expect_err("not PEM");
        assert!(not_pem.to_string().contains("no certificate in it"), "{not_pem}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
