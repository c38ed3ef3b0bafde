//! What the accounting counts: every datagram lands in exactly one place here, every message of
//! a data datagram in exactly one (see the accounting module docs for what each counter means).

use relay_wire::WireError;
use serde::{Deserialize, Serialize};

/// Malformed datagrams by [`WireError::name`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MalformedCounters {
    pub foreign: u64,
    pub truncated: u64,
    pub unsupported_version: u64,
    pub unknown_kind: u64,
    pub length_mismatch: u64,
    pub bad_fragment: u64,
    pub bad_blocks: u64,
    pub bad_control_payload: u64,
}

impl MalformedCounters {
    pub(super) fn count(&mut self, error: WireError) {
        let counter = match error {
            WireError::Foreign => &mut self.foreign,
            WireError::Truncated => &mut self.truncated,
            WireError::UnsupportedVersion(_) => &mut self.unsupported_version,
            WireError::UnknownKind(_) => &mut self.unknown_kind,
            WireError::LengthMismatch => &mut self.length_mismatch,
            WireError::BadFragment => &mut self.bad_fragment,
            WireError::BadBlocks => &mut self.bad_blocks,
            WireError::BadControlPayload => &mut self.bad_control_payload,
        };
        *counter += 1;
    }

    /// All malformed datagrams.
    pub fn total(&self) -> u64 {
        self.foreign
            + self.truncated
            + self.unsupported_version
            + self.unknown_kind
            + self.length_mismatch
            + self.bad_fragment
            + self.bad_blocks
            + self.bad_control_payload
    }
}

/// Everything the accounting counted. See the module docs for what each counter means.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counters {
    pub datagrams: u64,
    pub messages: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub too_old: u64,
    pub before_start: u64,
    pub stale_epoch: u64,
    /// Datagrams of a new epoch before it was confirmed (see *Epochs*): dropped; once it takes
    /// over, their messages are asked for again like any gap.
    pub unconfirmed_epoch: u64,
    pub epochs: u64,
    /// Epochs that took over from another: relay restarts.
    pub relay_restarts: u64,
    /// Summed over restarts: the old epoch's last datagram -> the new one's first, as received.
    pub relay_restart_outage_ns: u64,
    pub fragmented_messages: u64,
    pub fragments: u64,
    pub duplicate_fragments: u64,
    /// Reassembly slots evicted with fragments missing.
    pub incomplete_messages: u64,
    pub oversize_messages: u64,
    pub heartbeats: u64,
    pub upstream_gaps: u64,
    pub upstream_gap_total_ns: u64,
    pub upstream_generation_changes: u64,
    /// At the end of the run, how long the relay's exchange connection had been down, if it was
    /// (an outage still open: its heartbeats said so).
    pub upstream_down_at_end_ns: u64,
    /// Messages delivered from a retransmission.
    pub retransmitted: u64,
    /// Datagrams received marked as retransmissions (delivered or not).
    pub retransmissions: u64,
    /// `Unavailable` notices from the relay.
    pub unavailable: u64,
    /// Control datagrams meant for the relay.
    pub unexpected: u64,
    /// Messages past the end of the run (sent while the receiver waited for recoveries).
    pub after_close: u64,
    /// Datagrams without a seal, received with a key: anyone could have sent them.
    pub unsealed: u64,
    /// Sealed datagrams whose seal does not open: forged, changed, or another key.
    pub bad_seal: u64,
    /// Sealed datagrams received without a key (give the receiver the relay's `--key-file`).
    pub sealed_without_key: u64,
    pub malformed: MalformedCounters,
}

impl Counters {
    /// Datagrams dropped for their seal (or its absence).
    pub fn unauthenticated(&self) -> u64 {
        self.unsealed + self.bad_seal + self.sealed_without_key
    }
}

/// One epoch's sequence accounting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct EpochSummary {
    pub epoch: u32,
    /// First sequence of the epoch (`None` if only `UpstreamGap` datagrams were seen).
    pub base: Option<u64>,
    /// Sequences expected: highest expected sequence - base + 1 (saturating).
    pub expected: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Sequences given up as lost.
    pub lost: u64,
}
