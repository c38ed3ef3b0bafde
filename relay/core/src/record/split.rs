//! The per-message latency split: where each message's time went between the exchange and the
//! receiving application.

use serde::{Deserialize, Serialize};

use crate::stats::{ComponentSummary, LatencyStats};

/// The per-message latency split. For every message the parts that exist sum exactly to
/// `frankfurt_time - E` (or `- tokyo_time` without `E`):
/// exchange_to_relay + relay_dwell + network + kernel + application + arbitration + serve.
#[derive(Default)]
pub struct Split {
    /// `E` -> relay read the bytes.
    pub exchange_to_relay: LatencyStats,
    /// Relay read -> relay send.
    pub relay_dwell: LatencyStats,
    /// Relay send -> first stamp on the receiving host (NIC/eBPF/software).
    pub network: LatencyStats,
    /// First stamp -> the receive call returned.
    pub kernel: LatencyStats,
    /// The kernel part up to the software stamp ...
    pub kernel_to_socket: LatencyStats,
    /// ... and from there until the receive call returned (socket queue + thread wake-up).
    pub socket_to_app: LatencyStats,
    /// The receive call returned -> message accounted.
    pub application: LatencyStats,
    /// Accounted -> arbitration across paths passed it on (`--mode both`).
    pub arbitration: LatencyStats,
    /// Accounted (or arbitrated) -> queued to the local endpoint's clients (`--serve-ws`).
    pub serve: LatencyStats,
}

/// Summaries of the split, for the JSON.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitSummary {
    pub exchange_to_relay: Option<ComponentSummary>,
    pub relay_dwell: Option<ComponentSummary>,
    pub network: Option<ComponentSummary>,
    pub kernel: Option<ComponentSummary>,
    pub kernel_to_socket: Option<ComponentSummary>,
    pub socket_to_app: Option<ComponentSummary>,
    pub application: Option<ComponentSummary>,
    pub arbitration: Option<ComponentSummary>,
    pub serve: Option<ComponentSummary>,
}

impl Split {
    pub fn summary(&self) -> SplitSummary {
        SplitSummary {
            exchange_to_relay: self.exchange_to_relay.component(),
            relay_dwell: self.relay_dwell.component(),
            network: self.network.component(),
            kernel: self.kernel.component(),
            kernel_to_socket: self.kernel_to_socket.component(),
            socket_to_app: self.socket_to_app.component(),
            application: self.application.component(),
            arbitration: self.arbitration.component(),
            serve: self.serve.component(),
        }
    }
}
