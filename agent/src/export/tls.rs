//! TLS for the exporter: the PEM files read and checked once at start, and
//! certificate failures explained in words that say what to set.

use std::error::Error;

use super::config::SignalSettings;
#[cfg(feature = "tls")]
use super::config::{ExportConfigError, TlsFiles};

/// The PEM contents of one signal's TLS files.
#[cfg(feature = "tls")]
#[derive(Default)]
pub(crate) struct Pem {
    /// CA certificates trusted besides the system's.
    pub(crate) ca: Option<Vec<u8>>,
    /// Client certificate (chain) and its private key.
    pub(crate) identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// Reads and checks the files, naming the one that cannot be used.
#[cfg(feature = "tls")]
pub(crate) fn load(files: &TlsFiles) -> Result<Pem, ExportConfigError> {
    let mut pem = Pem::default();
    if let Some(path) = &files.certificate {
        pem.ca = Some(read(path, "CA certificate", Kind::Certificates)?);
    }
    if let (Some(cert), Some(key)) = (&files.client_certificate, &files.client_key) {
        pem.identity = Some((
            read(cert, "client certificate", Kind::Certificates)?,
            read(key, "client key", Kind::Key)?,
        ));
    }
    Ok(pem)
}

#[cfg(feature = "tls")]
enum Kind {
    Certificates,
    Key,
}

#[cfg(feature = "tls")]
fn read(path: &std::path::Path, what: &'static str, kind: Kind) -> Result<Vec<u8>, ExportConfigError> {
    let refuse = |reason: String| ExportConfigError::Certificate {
        what,
        path: path.to_owned(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| refuse(format!("cannot be read: {e}")))?;
    check(&bytes, kind).map_err(refuse)?;
    Ok(bytes)
}

#[cfg(feature = "tls")]
fn check(bytes: &[u8], kind: Kind) -> Result<(), String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    match kind {
        Kind::Certificates => {
            let certificates = CertificateDer::pem_slice_iter(bytes)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("not PEM certificates: {e}"))?;
            if certificates.is_empty() {
                return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned());
            }
        }
        Kind::Key => {
            PrivateKeyDer::from_pem_slice(bytes).map_err(|e| format!("holds no PEM private key: {e}"))?;
        }
    }
    Ok(())
}

/// What to do about `error` when a TLS certificate caused it: `None` for
/// any other failure.
pub(crate) fn explain(error: &(dyn Error + 'static), settings: &SignalSettings) -> Option<String> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(hint) = explain_one(error, settings) {
            return Some(hint);
        }
        // io::Error's source() skips the error it wraps: step into it instead.
        next = match error.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn Error + 'static)),
            None => error.source(),
        };
    }
    None
}

/// The TLS alerts by which a collector refuses a client certificate.
#[cfg(feature = "tls")]
const CLIENT_REFUSED: [rustls::AlertDescription; 5] = [
    rustls::AlertDescription::CertificateRequired,
    rustls::AlertDescription::BadCertificate,
    rustls::AlertDescription::UnknownCA,
    rustls::AlertDescription::CertificateUnknown,
    rustls::AlertDescription::AccessDenied,
];

#[cfg(feature = "tls")]
fn explain_one(error: &(dyn Error + 'static), settings: &SignalSettings) -> Option<String> {
    let rustls_error = match error.downcast_ref::<rustls::Error>() {
        Some(error) => error.clone(),
        // Some layers keep only the text of rustls's error (tonic's h2
        // connection does, for an alert received after the handshake).
        None => {
            let text = error.to_string();
            let alert = CLIENT_REFUSED
                .into_iter()
                .find(|alert| text.contains(&format!("received fatal alert: {alert:?}")))?;
            rustls::Error::AlertReceived(alert)
        }
    };
    let signal = settings.signal.infix();
    match rustls_error {
        rustls::Error::InvalidCertificate(why) => {
            let trusted = match &settings.tls.certificate {
                Some(path) => format!("neither the system's CAs nor the CA file {} trust it", path.display()),
                None => "the system's CAs do not trust it, and no CA file is set".to_owned(),
            };
            Some(format!(
                "the collector's TLS certificate was not trusted ({why:?}): {trusted}; set \
                 OTEL_EXPORTER_OTLP_CERTIFICATE (or OTEL_EXPORTER_OTLP_{signal}_CERTIFICATE, or \
                 ExportConfig::certificate) to the PEM file of the CA that signed it"
            ))
        }
        rustls::Error::AlertReceived(alert) if CLIENT_REFUSED.contains(&alert) => {
            let configured = match &settings.tls.client_certificate {
                Some(path) => format!("it refused {}", path.display()),
                None => "none is set".to_owned(),
            };
            Some(format!(
                "the collector wants a TLS client certificate it trusts ({alert:?}): {configured}; set \
                 OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY (or \
                 OTEL_EXPORTER_OTLP_{signal}_CLIENT_*, or ExportConfig::client_certificate and client_key)"
            ))
        }
        _ => None,
    }
}

#[cfg(not(feature = "tls"))]
fn explain_one(_: &(dyn Error + 'static), _: &SignalSettings) -> Option<String> {
    None
}
