//! Path probing in the style of irtt: isochronous UDP probes over the same path as the data (no
//! ICMP, no root), answered by a reflector that stamps when it received each probe and when it
//! answered, so the round trip excludes the reflector's own time and, with synchronised clocks,
//! splits into its two one-way delays.
//!
//! * [`Prober`]: sends probe `seq` to every target each `interval`, matches the replies, declares
//!   a probe lost after `timeout`, and yields one [`ProbeRecord`] per probe and target.
//! * [`Reflector`]: answers each valid probe with a reply of the probe's own length (a reflector
//!   never sends more bytes than it received), counting per prober session what it received so
//!   the prober can tell loss on the way out from loss on the way back.
//! * [`summary`]: the per-target figures (loss by direction, RTT, one-way delays, IPDV).
//!
//! Probes use the wire format's `probe` and `probe reply` kinds (PROTOCOL.md); with a shared
//! secret they are sealed like data, under keys of their own ([`crate::seal::Direction`]).
//! State machines only: the caller passes `now` (monotonic) and the wall clock in ns, asks
//! `poll_timeout` and moves the bytes (`relay probe` in the relay binary).

mod prober;
mod reflector;
pub mod summary;

pub use prober::{Prober, ProberConfig};
pub use reflector::{Reflector, ReflectorStats, MAX_SESSIONS};
pub use summary::{Figures, TargetSummary};

use relay_wire::{ProbeReply, HEADER_LEN, MAX_DATAGRAM, SEAL_LEN};
use serde::Serialize;

/// Shortest probe: the header and room for the reply's body, so a reply fits in a probe's length.
pub const MIN_PROBE_LEN: usize = HEADER_LEN + ProbeReply::LEN;
/// Longest probe, seal included.
pub const MAX_PROBE_LEN: usize = MAX_DATAGRAM - SEAL_LEN;

/// What became of one probe to one target: a reply, or none within the timeout. One JSON line.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProbeRecord {
    pub target: String,
    pub seq: u64,
    /// Prober's wall clock when it sent the probe (CLOCK_REALTIME ns).
    pub sent_ns: u64,
    /// Reflector's wall clock when the probe arrived and when it answered.
    pub reflector_rx_ns: Option<u64>,
    pub reflector_tx_ns: Option<u64>,
    /// Prober's wall clock when the reply arrived.
    pub received_ns: Option<u64>,
    /// `received - sent - (reflector_tx - reflector_rx)`: the round trip without the reflector's
    /// time.
    pub rtt_ns: Option<i64>,
    /// `reflector_rx - sent` and `received - reflector_tx`: one-way delays, meaningful only with
    /// synchronised clocks.
    pub send_delay_ns: Option<i64>,
    pub receive_delay_ns: Option<i64>,
    /// Probes of this session the reflector had received when it answered this one.
    pub reflector_received: Option<u64>,
    /// No reply within the timeout.
    pub lost: bool,
}

impl ProbeRecord {
    /// One line of `--output` (JSON Lines).
    pub fn json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
