//! Where the exchange is: a `ws://` or `wss://` URL in one of Binance's stream forms (raw
//! `/ws/<stream>`, combined `/stream?streams=a/b`, optionally `timeUnit=MICROSECOND`).

use super::event_time::{time_unit_of_url, TimeUnit};

/// Why an exchange URL was refused.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("bad exchange URL {text:?}: {source}")]
    Unparsable {
        text: String,
        source: url::ParseError,
    },
    #[error("exchange URL {text:?} has scheme {scheme:?}; expected wss:// or ws://")]
    Scheme { text: String, scheme: String },
    #[error("exchange URL {0:?} has no host")]
    NoHost(String),
}

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
    pub fn parse(text: &str) -> Result<Endpoint, EndpointError> {
        let url = url::Url::parse(text).map_err(|source| EndpointError::Unparsable {
            text: text.to_string(),
            source,
        })?;
        let tls = match url.scheme() {
            "wss" => true,
            "ws" => false,
            other => {
                return Err(EndpointError::Scheme {
                    text: text.to_string(),
                    scheme: other.to_string(),
                })
            }
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(EndpointError::NoHost(text.to_string())),
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
}
