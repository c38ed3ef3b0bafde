//! The TLS client configuration every exchange connection uses: rustls with the ring provider,
//! Mozilla's roots (webpki-roots) plus any extra CA certificates the caller read (e.g. the
//! simulator's `--ca-file`), ALPN `http/1.1` for the WebSocket upgrade.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// Why a TLS client configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("the CA certificates are not valid PEM: {0}")]
    Pem(rustls::pki_types::pem::Error),
    #[error("no PEM certificate in the CA certificates")]
    NoCertificate,
    #[error("an unusable CA certificate: {0}")]
    Unusable(rustls::Error),
    #[error("TLS protocol versions: {0}")]
    Versions(rustls::Error),
}

/// A client configuration trusting Mozilla's roots plus every certificate in `extra_ca_pem`
/// (`None`: Mozilla's roots only).
pub fn client_config(
    extra_ca_pem: Option<&[u8]>,
) -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_ca_pem {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(TlsConfigError::Pem)?;
            roots.add(cert).map_err(TlsConfigError::Unusable)?;
            added += 1;
        }
        if added == 0 {
            return Err(TlsConfigError::NoCertificate);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsConfigError::Versions)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_certificates_are_checked() {
        assert!(client_config(None).is_ok());
        let err = client_config(Some(b"nothing here")).unwrap_err();
        assert!(matches!(err, TlsConfigError::NoCertificate), "{err}");
        let garbage = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(client_config(Some(garbage)).is_err());
    }
}
