//! Where the exchange is and how to talk to it: URL parsing and the TLS client configuration.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::event_time::{time_unit_of_url, TimeUnit};

/// A parsed `ws://` or `wss://` exchange URL.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub url: url::Url,
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Unit of `E` on this connection (`timeUnit=MICROSECOND` in the query selects microseconds).
    pub time_unit: TimeUnit,
}

impl Endpoint {
    pub fn parse(text: &str) -> anyhow::Result<Endpoint> {
        let url = url::Url::parse(text).with_context(|| format!("bad exchange URL {text:?}"))?;
        let tls = match url.scheme() {
            "wss" => true,
            "ws" => false,
            other => bail!("exchange URL {text:?} has scheme {other:?}; expected wss:// or ws://"),
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => bail!("exchange URL {text:?} has no host"),
        };
        let port = url
            .port_or_known_default()
            .unwrap_or(if tls { 443 } else { 80 });
        let time_unit = time_unit_of_url(url.query().unwrap_or(""));
        Ok(Endpoint {
            url,
            tls,
            host,
            port,
            time_unit,
        })
    }

    /// Resolves the host (blocking; done once per connection attempt, off the hot path).
    pub fn resolve(&self) -> anyhow::Result<SocketAddr> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .with_context(|| format!("resolving {}:{}", self.host, self.port))?
            .next()
            .with_context(|| format!("{}:{} resolved to no address", self.host, self.port))
    }
}

/// A TLS client configuration trusting Mozilla's roots, plus the certificates in `ca_file`.
pub fn tls_client_config(ca_file: Option<&Path>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(path)
            .with_context(|| format!("reading CA file {}", path.display()))?
        {
            let cert = cert.with_context(|| format!("parsing CA file {}", path.display()))?;
            roots.add(cert).with_context(|| {
                format!("CA file {} holds an unusable certificate", path.display())
            })?;
            added += 1;
        }
        if added == 0 {
            bail!("CA file {} holds no PEM certificate", path.display());
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binance_urls() {
        let e = Endpoint::parse("wss://stream.binance.com:9443/ws/btcusdt@bookTicker").unwrap();
        assert!(e.tls);
        assert_eq!((e.host.as_str(), e.port), ("stream.binance.com", 9443));
        assert_eq!(e.time_unit, TimeUnit::Millis);
        let e = Endpoint::parse(
            "wss://stream.binance.com/stream?streams=a@trade/b@trade&timeUnit=MICROSECOND",
        )
        .unwrap();
        assert_eq!(e.port, 443);
        assert_eq!(e.time_unit, TimeUnit::Micros);
        let e = Endpoint::parse("ws://127.0.0.1:9000/ws/x").unwrap();
        assert!(!e.tls);
    }

    #[test]
    fn rejects_bad_urls_with_a_reason() {
        let err = Endpoint::parse("https://example.com/ws")
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected wss:// or ws://"), "{err}");
        assert!(Endpoint::parse("not a url").is_err());
    }

    #[test]
    fn ca_file_errors_are_clear() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "nothing here").unwrap();
        let err = tls_client_config(Some(&empty)).unwrap_err().to_string();
        assert!(err.contains("no PEM certificate"), "{err}");
        assert!(tls_client_config(Some(&dir.path().join("missing.pem"))).is_err());
        assert!(tls_client_config(None).is_ok());
    }
}
