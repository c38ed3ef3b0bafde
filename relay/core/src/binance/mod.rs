//! Everything Binance-specific, in one place: where its stream endpoints are and what URL forms
//! they take ([`endpoint`]), how to read the event time `E` and event type `e` out of a message
//! ([`event_time`]) and the exchange's own event ids ([`identity`]), which messages are not market data (request replies, `serverShutdown`), and
//! the limits a client has to keep.
//!
//! Sources: Binance Spot "WebSocket Streams" documentation (connection limits, ping/pong, the
//! combined-stream wrapper, `timeUnit`, `serverShutdown`).

pub mod endpoint;
pub mod event_time;
pub mod identity;
pub mod stream;

use std::time::Duration;

pub use endpoint::Endpoint;
pub use event_time::{event_time, event_type, time_unit_of_url, TimeUnit};
pub use identity::{event_id, stream_name, EventId, Position};

/// The exchange URL used when none is configured: Binance Spot's public `btcusdt@bookTicker`.
pub const DEFAULT_URL: &str = "wss://stream.binance.com:9443/ws/btcusdt@bookTicker";

/// Binance closes a connection whose client sends more than this many messages (requests,
/// pings, pongs) in one second.
pub const INBOUND_MESSAGES_PER_SEC: u32 = 5;
/// How many client messages per second we send at most: one below the limit.
pub const CLIENT_MESSAGES_PER_SEC: u32 = INBOUND_MESSAGES_PER_SEC - 1;
const _: () = assert!(CLIENT_MESSAGES_PER_SEC < INBOUND_MESSAGES_PER_SEC);

/// Streams one connection may carry.
pub const MAX_STREAMS_PER_CONNECTION: usize = 1024;
/// Streams per SUBSCRIBE request we send; keeps each request small.
pub const STREAMS_PER_SUBSCRIBE: usize = 200;
/// Binance pings every 20 s ...
pub const PING_INTERVAL: Duration = Duration::from_secs(20);
/// ... and disconnects a client that has not answered a ping for a minute.
pub const PONG_TIMEOUT: Duration = Duration::from_secs(60);
/// Binance closes every connection after this long.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(24 * 3600);
/// Binance allows 300 connection attempts per 5 minutes per IP: a connection that lived this long
/// counts as healthy, and the reconnect backoff starts over after it.
pub const HEALTHY_CONNECTION: Duration = Duration::from_secs(30);

/// What a text message from the exchange is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageClass {
    /// A stream event (or anything else that is not one of the two below): forwarded.
    MarketData,
    /// A reply to one of our requests (`{"result":..,"id":..}`, `{"error":..}`, `{"id":..}`).
    Reply,
    /// The planned-disconnect notice (`{"e":"serverShutdown",..}`).
    ServerShutdown,
}

/// Classifies a message from the exchange without parsing it (a prefix check and the event-type
/// scanner; no allocation).
pub fn classify(payload: &[u8]) -> MessageClass {
    let head = payload.trim_ascii_start();
    if head.starts_with(b"{\"result\"")
        || head.starts_with(b"{\"error\"")
        || head.starts_with(b"{\"id\"")
    {
        MessageClass::Reply
    } else if event_type(payload) == Some(b"serverShutdown".as_slice()) {
        MessageClass::ServerShutdown
    } else {
        MessageClass::MarketData
    }
}

/// A request in Binance's WebSocket API form: `{"method":..,"params":[..],"id":..}`.
pub fn request(method: &str, params: &[String], id: u64) -> String {
    serde_json::json!({ "method": method, "params": params, "id": id }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_and_shutdown_are_told_apart_from_market_data() {
        for reply in [
            &br#"{"result":null,"id":1}"#[..],
            br#"  {"error":{"code":2,"msg":"Invalid request"},"id":null}"#,
            br#"{"id":3,"result":["btcusdt@trade"]}"#,
        ] {
            assert_eq!(classify(reply), MessageClass::Reply);
        }
        assert_eq!(
            classify(br#"{"e":"serverShutdown","E":1700000000000}"#),
            MessageClass::ServerShutdown
        );
        assert_eq!(
            classify(br#"{"stream":"x","data":{"e":"serverShutdown","E":1}}"#),
            MessageClass::ServerShutdown
        );
        for data in [
            &br#"{"e":"trade","E":1,"t":2}"#[..],
            br#"{"u":400900217,"s":"BNBUSDT"}"#,
            b"",
            b"not json",
        ] {
            assert_eq!(classify(data), MessageClass::MarketData);
        }
    }

    #[test]
    fn requests_have_binance_shape() {
        let text = request("SUBSCRIBE", &["btcusdt@trade".into()], 7);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":7})
        );
    }
}
