//! The reflector: answers probes, stamping when each arrived and when it was answered.

use std::collections::HashMap;
use std::net::SocketAddr;

use relay_wire::{flags, Header, Kind, ProbeReply, Writer};
use serde::Serialize;

use crate::seal::{Direction, OpenError, Opener, Sealer, Secret};

/// Prober sessions whose received counts the reflector keeps; beyond it the least recently seen
/// is forgotten (its prober then sees its counts restart, never the reflector's memory grow).
pub const MAX_SESSIONS: usize = 4096;

/// What the reflector did with what it was sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReflectorStats {
    pub answered: u64,
    /// Not a valid datagram of ours, or a probe too short to answer at its own length.
    pub malformed: u64,
    /// A valid datagram of another kind (data, NAKs, replies).
    pub not_a_probe: u64,
    /// With a key: probes that came unsealed, or whose seal did not open.
    pub unsealed: u64,
    pub bad_seal: u64,
    /// Without a key: sealed probes it cannot open.
    pub sealed_without_key: u64,
    /// Sessions forgotten to stay within [`MAX_SESSIONS`].
    pub sessions_evicted: u64,
}

struct Session {
    received: u64,
    last_seen: u64,
}

/// Answers probes (see the module docs of [`crate::probe`]).
pub struct Reflector {
    keys: Option<(Opener, Sealer)>,
    /// (prober address, its session epoch) -> probes received.
    sessions: HashMap<(SocketAddr, u32), Session>,
    /// Order of arrival, for least-recently-seen eviction.
    clock: u64,
    stats: ReflectorStats,
}

impl Reflector {
    /// A reflector answering unsealed probes, or with `secret` only sealed ones.
    pub fn new(secret: Option<&Secret>) -> Reflector {
        Reflector {
            keys: secret.map(|s| (s.opener(Direction::Prober), s.sealer(Direction::Reflector))),
            sessions: HashMap::new(),
            clock: 0,
            stats: ReflectorStats::default(),
        }
    }

    pub fn stats(&self) -> &ReflectorStats {
        &self.stats
    }

    /// Answers `datagram`, from `from`, received at wall time `rx_ns`: writes the reply into
    /// `out` (at least as long as the datagram), stamped `tx_ns`, and returns its length; or
    /// `None`, counted in [`ReflectorStats`].
    pub fn handle(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        rx_ns: u64,
        tx_ns: u64,
        out: &mut [u8],
    ) -> Option<usize> {
        let probe = self.open(datagram)?;
        let received = self.count(from, probe.epoch);
        let sealed = self.keys.is_some();
        let reply = Header {
            flags: if sealed { flags::SEALED } else { 0 },
            relay_tx_ns: tx_ns,
            ..Header::new(Kind::ProbeReply, probe.epoch, 0, probe.sequence)
        };
        let len = datagram.len().min(out.len());
        let mut w = Writer::new(&mut out[..len], reply);
        let body = ProbeReply {
            probe_tx_ns: probe.relay_tx_ns,
            reflector_rx_ns: rx_ns,
            reflector_received: received,
        };
        let pad = usize::from(probe.body_len) - ProbeReply::LEN;
        if !w.push_body(&body.encode()) || !w.push_zeros(pad) {
            self.stats.malformed += 1;
            return None;
        }
        let n = w.finish();
        if let Some((_, sealer)) = &mut self.keys {
            if !sealer.seal(&mut out[..n]) {
                return None;
            }
        }
        self.stats.answered += 1;
        Some(n)
    }

    /// The probe's header, checked and (with a key) opened; `None` when it is dropped (counted).
    fn open(&mut self, datagram: &[u8]) -> Option<Header> {
        let decoded = match &mut self.keys {
            Some((opener, _)) => match opener.open(datagram) {
                Ok(opened) => Header::decode(opened).map(|d| d.header),
                Err(OpenError::NotSealed) => {
                    self.stats.unsealed += 1;
                    return None;
                }
                Err(OpenError::BadSeal) => {
                    self.stats.bad_seal += 1;
                    return None;
                }
                Err(OpenError::Malformed(e)) => Err(e),
            },
            None => Header::decode(datagram).map(|d| d.header),
        };
        let Ok(header) = decoded else {
            self.stats.malformed += 1;
            return None;
        };
        if header.kind != Kind::Probe {
            self.stats.not_a_probe += 1;
            return None;
        }
        if header.is_sealed() && self.keys.is_none() {
            self.stats.sealed_without_key += 1;
            return None;
        }
        // Decoding checked that the body holds at least a reply's body.
        Some(header)
    }

    /// Counts a probe of session (`from`, `epoch`) and returns the session's count.
    fn count(&mut self, from: SocketAddr, epoch: u32) -> u64 {
        self.clock += 1;
        let now = self.clock;
        if !self.sessions.contains_key(&(from, epoch)) && self.sessions.len() >= MAX_SESSIONS {
            let oldest = self
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                self.sessions.remove(&oldest);
                self.stats.sessions_evicted += 1;
            }
        }
        let session = self.sessions.entry((from, epoch)).or_insert(Session {
            received: 0,
            last_seen: now,
        });
        session.received += 1;
        session.last_seen = now;
        session.received
    }
}
