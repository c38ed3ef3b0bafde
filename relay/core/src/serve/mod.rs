//! The receiver's local Binance endpoint (`relay receive --serve-ws`), with no I/O: what a client's
//! connection asks for and what it is answered ([`session`]), and which clients each delivered
//! event goes to ([`hub`]).
//!
//! A client connects as it would to Binance (raw `/ws/<stream>`, combined
//! `/stream?streams=a/b`), subscribes with Binance's requests, and gets every event of its
//! streams once, in the order the receiver delivered them, each as the exchange sent it: the
//! event's JSON byte for byte, inside or outside the combined-stream wrapper as the client asked
//! ([`crate::binance::stream`]).

pub mod hub;
pub mod session;

pub use hub::{Control, Hub, HubCounts, Offer, Outbox};
pub use session::{Answer, Change, OpenError, Session};

/// The summary's `serve` object: how serving the delivered stream went.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeSummary {
    /// `--serve-ws`.
    pub ws: Option<WsServeSummary>,
    /// `--serve-udp`.
    pub udp: Option<UdpServeSummary>,
}

/// `--serve-udp`: the delivered stream as relay datagrams.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UdpServeSummary {
    /// Where they went (`ADDR:PORT`, unicast or multicast).
    pub address: String,
    /// The feed's own epoch (a consumer's `epoch`).
    pub epoch: u32,
    /// Messages framed ...
    pub messages: u64,
    /// ... into datagrams sent (heartbeats and retransmissions included).
    pub datagrams: u64,
    /// Datagrams not sent (the socket refused them, or sealing failed).
    pub send_errors: u64,
    /// NAKs from consumers, and the datagrams sent again for them.
    pub naks: u64,
    pub retransmitted: u64,
}

/// `--serve-ws`: the local Binance endpoint.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WsServeSummary {
    /// Where it listened (`ws://ADDR:PORT`).
    pub address: String,
    /// Clients that connected (handshake completed).
    pub clients: u64,
    /// Events delivered to at least one client ...
    pub events_served: u64,
    /// ... and copies queued to clients over all of them.
    pub copies_queued: u64,
    /// Events no client had subscribed to.
    pub events_without_subscriber: u64,
    /// Raw events whose stream could not be named (see [`crate::binance::stream::StreamNames`]):
    /// served to nobody.
    pub events_without_stream_name: u64,
    /// Clients disconnected because their queue was full: they read slower than events came.
    pub slow_client_disconnects: u64,
    /// Clients disconnected for sending requests faster than Binance allows (5 a second).
    pub request_limit_disconnects: u64,
    /// Connections refused at the handshake (an unknown path, a bad stream name, not WebSocket).
    pub refused_connections: u64,
    /// Requests answered with an error (Binance's `{"error":{"code","msg"},"id"}`).
    pub refused_requests: u64,
}
