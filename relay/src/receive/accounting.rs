//! The receiver's datagram accounting: a sans-io state machine fed one UDP datagram at a time.
//!
//! [`Accounting::on_datagram`] decodes the [`relay_wire`] header, tracks sequences per epoch,
//! reassembles fragments and returns what the datagram was ([`Event`]); every datagram lands in
//! exactly one place of the [`Counters`]. The per-message path allocates nothing: the sequence
//! bitmap and the reassembly slots are allocated in [`Accounting::new`] (a slot's buffer grows
//! once for a message larger than its preallocation, 64 KiB). Nothing panics on any input.
//!
//! # Datagrams
//!
//! * Anything [`Header::decode`] rejects, and fragments whose fields do not fit the fragment
//!   layout (see *Fragments*), is `Dropped(Malformed(reason))`, counted under `malformed.<reason>`
//!   and has no other effect (it does not switch epochs).
//! * `Data`: a message or one fragment of it (see *Sequences*, *Fragments*).
//! * `Heartbeat`: `sequence` is the next sequence the relay will use. Counted in `heartbeats` and
//!   returned as [`Event::Heartbeat`]; never a message.
//! * `UpstreamGap`: the relay's exchange connection was down; see *Upstream*. Its header's
//!   `sequence` is not used.
//!
//! Checks run in this order: decode, fragment layout, epoch, upstream generation, sequence,
//! size, reassembly.
//!
//! # Epochs
//!
//! Every relay process picks a random epoch; each epoch is its own sequence space. The first
//! valid datagram starts the first epoch. A datagram with an epoch never seen before ends the
//! current one: its still-missing sequences count as `lost`, its open reassembly slots are
//! evicted (`incomplete_messages`), `epochs` increments and tracking restarts from nothing. A
//! datagram from an epoch seen before that is not the current one is `Dropped(StaleEpoch)`
//! (`stale_epoch`) - whatever its kind. `epochs` counts epochs entered, including the first.
//! [`Accounting::epoch_summaries`] reports each epoch's base, expected count, delivered and lost.
//!
//! # Sequences (per epoch)
//!
//! * The base is the first sequence seen in the epoch: the first data datagram's sequence, or a
//!   heartbeat's next sequence if a heartbeat comes first. Sequences below the base are
//!   `Dropped(BeforeStart)` (`before_start`): the receiver started late, not loss.
//! * The expected end is one past the highest sequence seen (a data datagram, including a
//!   fragment or an oversize message, makes its sequence expected), raised by heartbeats: a
//!   heartbeat with next sequence `N` says every sequence `< N` was sent. The window is the
//!   `window` sequences below the expected end, tracked with one bit each.
//! * A sequence at or above the expected end is delivered in order; jumping more than one ahead
//!   opens a gap whose sequences are *missing*, not yet lost.
//! * A missing sequence inside the window is delivered with `reordered: true` (`reordered`). This
//!   includes a sequence that a later heartbeat had already declared sent.
//! * A sequence already delivered is `Dropped(Duplicate)` (`duplicates`).
//! * A sequence below the window is `Dropped(TooOld)` (`too_old`), whether it had been delivered
//!   or counted lost: either way it was accounted for once already.
//! * A missing sequence counts as `lost` when the window slides past it, when the epoch ends and
//!   at [`Accounting::finish`] (which gives up on everything still missing up to the expected end,
//!   so the last heartbeat's next sequence exposes tail loss). A late arrival after that is a
//!   duplicate (inside the window) or too old.
//! * Hence, per epoch after `finish`: `delivered + lost == expected end - base`, i.e. the highest
//!   expected sequence minus the base plus one; duplicates and reorders do not change it.
//!
//! # Fragments
//!
//! * A data datagram with `fragment_count == 1` is a whole message, delivered straight from the
//!   datagram (no copy).
//! * A larger count is one fragment. Its fields must fit the layout of [`relay_wire::fragments`]:
//!   a stride `S` (payload bytes of every fragment but the last), fragment `i` at offset `i * S`,
//!   all but the last exactly `S` bytes, the last `1..=S` bytes ending the message. That
//!   guarantees the fragments tile the message exactly, so a completed message is byte-exact.
//!   Fragments that do not fit, or that disagree with the first fragment stored for the same
//!   message (`message_len`, `fragment_count`, stride), are `Dropped(Malformed(BadFragment))`.
//! * Fragments are stored in one of `reassembly_slots` preallocated slots keyed by (epoch,
//!   sequence), with a bitmap of the fragments received; a fragment already stored is
//!   `Dropped(DuplicateFragment)` (`duplicate_fragments`). Each stored fragment counts in
//!   `fragments` and returns [`Event::FragmentStored`], except the one completing the message,
//!   which (also counted in `fragments`) delivers it: `fragmented_messages` and `messages` count
//!   it, `reordered` says whether its sequence was already missing when its *first* fragment came.
//! * The delivered header is the completing datagram's header (so `relay_tx_ns` pairs with the
//!   receive time of that datagram) with `fragment_index = 0`, `fragment_offset = 0`,
//!   `fragment_count` kept, and `payload_len = 0` (`u16` cannot hold a long message; use
//!   `message_len` or `payload.len()`); [`Delivered::fragments`] is the count.
//! * Fragments of a sequence already delivered are `Dropped(Duplicate)` and open no slot;
//!   fragments of a sequence below the window or before the base are `TooOld`/`BeforeStart`.
//! * When no slot is free, the slot with the lowest sequence is evicted (`incomplete_messages`);
//!   open slots are also evicted at the end of an epoch and at `finish`. `incomplete_messages`
//!   counts evictions: if more fragments of an evicted message arrive they start a new slot, which
//!   cannot complete and will be evicted (and counted) again. A message that never completes is
//!   never delivered partially; its sequence simply stays missing and ends up `lost`.
//! * A message with `message_len > max_message_len` (single datagram or fragmented) is
//!   `Dropped(MessageTooLarge)`; its sequence becomes expected and stays missing, so it counts as
//!   `lost`. `oversize_messages` counts such messages once each, by remembering the last 8
//!   oversize (epoch, sequence) keys, so fragments and duplicates of one oversize message are not
//!   counted twice unless more than 8 oversize messages interleave.
//!
//! # Upstream
//!
//! * Every header carries `upstream_generation` (1 + the number of exchange reconnects in this
//!   epoch). When a datagram of the current epoch shows a generation higher than any seen before
//!   in the epoch, `upstream_generation_changes` grows by the difference (the number of reconnects,
//!   which the relay's `UpstreamGap` datagram may have failed to report). The first datagram of an
//!   epoch only sets the reference.
//! * An `UpstreamGap` datagram adds 1 to `upstream_gaps` and `up_at_ns - down_at_ns` (saturating
//!   at 0) to `upstream_gap_total_ns`, once per (epoch, generation): repeats (fan-out, duplicated
//!   datagrams) are `Dropped(Duplicate)` and counted in `duplicates`.
//!
//! # Counters
//!
//! `datagrams` counts every call. `messages` counts deliveries, `lost` sequences given up.
//! Arithmetic on values taken from the wire saturates; a corrupted header that passes validation
//! (e.g. a huge sequence jump) is believed, and can inflate `lost` accordingly.

use relay_wire::{Header, Kind, UpstreamGap, WireError};
use serde::Serialize;

use super::reassembly::{fragment_stride, Reassembly, Stored};
use super::sequence::{Position, SequenceWindow};

/// Sizes of the accounting state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountingConfig {
    /// Sequence window for reorder/loss decisions. Rounded up to a power of two, at least 64 and
    /// at most 2^30 (one bit each).
    pub window: u64,
    /// Messages that can be in reassembly at once (at least 1).
    pub reassembly_slots: usize,
    /// Longest message accepted; longer ones are dropped and lost.
    pub max_message_len: usize,
}

impl Default for AccountingConfig {
    fn default() -> Self {
        AccountingConfig {
            window: 65_536,
            reassembly_slots: 64,
            max_message_len: 16 << 20,
        }
    }
}

impl AccountingConfig {
    /// The configuration as it is applied (window rounded, at least one slot).
    fn effective(&self) -> AccountingConfig {
        AccountingConfig {
            window: self.window.clamp(64, 1 << 30).next_power_of_two(),
            reassembly_slots: self.reassembly_slots.max(1),
            max_message_len: self.max_message_len,
        }
    }
}

/// What one datagram was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete message (single datagram, or all fragments reassembled).
    Message(Delivered<'a>),
    /// A fragment was stored; the message is not complete yet.
    FragmentStored,
    /// A heartbeat: the relay's next sequence is `next_sequence`.
    Heartbeat { epoch: u32, next_sequence: u64 },
    /// The relay reports an exchange outage (first report of this (epoch, generation)).
    UpstreamGap {
        epoch: u32,
        generation: u32,
        gap: UpstreamGap,
    },
    /// The datagram was counted and dropped (reason in the counters).
    Dropped(DropReason),
}

/// A delivered message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivered<'a> {
    /// The message's header. For a reassembled message: the completing fragment's header with
    /// `fragment_index = 0`, `fragment_offset = 0`, `payload_len = 0`.
    pub header: Header,
    /// The whole message.
    pub payload: &'a [u8],
    /// Its sequence was already missing (a later sequence or a heartbeat came first).
    pub reordered: bool,
    /// Datagrams the message came in (1 unless fragmented).
    pub fragments: u16,
}

/// Why a datagram was dropped. Each reason has its counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Not a valid datagram of ours (`malformed.<name>`).
    Malformed(WireError),
    /// A sequence already delivered, or a repeated `UpstreamGap` (`duplicates`).
    Duplicate,
    /// A fragment already stored (`duplicate_fragments`).
    DuplicateFragment,
    /// Below the sequence window (`too_old`).
    TooOld,
    /// Below the first sequence seen in this epoch (`before_start`).
    BeforeStart,
    /// From an epoch already left (`stale_epoch`).
    StaleEpoch,
    /// `message_len` above `max_message_len` (`oversize_messages`, once per message).
    MessageTooLarge,
}

/// Malformed datagrams by [`WireError::name`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MalformedCounters {
    pub foreign: u64,
    pub truncated: u64,
    pub unsupported_version: u64,
    pub unknown_kind: u64,
    pub length_mismatch: u64,
    pub bad_fragment: u64,
    pub bad_control_payload: u64,
}

impl MalformedCounters {
    fn count(&mut self, error: WireError) {
        let counter = match error {
            WireError::Foreign => &mut self.foreign,
            WireError::Truncated => &mut self.truncated,
            WireError::UnsupportedVersion(_) => &mut self.unsupported_version,
            WireError::UnknownKind(_) => &mut self.unknown_kind,
            WireError::LengthMismatch => &mut self.length_mismatch,
            WireError::BadFragment => &mut self.bad_fragment,
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
            + self.bad_control_payload
    }
}

/// Everything the accounting counted. See the module docs for what each counter means.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub datagrams: u64,
    pub messages: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub too_old: u64,
    pub before_start: u64,
    pub stale_epoch: u64,
    pub epochs: u64,
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
    pub malformed: MalformedCounters,
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

/// Remembered oversize messages, so each is counted once.
const OVERSIZE_MEMORY: usize = 8;
/// Most `UpstreamGap` generations remembered per epoch for deduplication.
const GAP_MEMORY: usize = 1024;

/// The receiver's accounting state machine. See the module docs.
pub struct Accounting {
    cfg: AccountingConfig,
    counters: Counters,
    /// Current epoch, `None` before the first valid datagram.
    epoch: Option<u32>,
    /// Highest upstream generation seen in the current epoch.
    generation: Option<u32>,
    /// Generations whose `UpstreamGap` was counted in the current epoch.
    gap_generations: Vec<u32>,
    sequences: SequenceWindow,
    /// Lost in epochs already left (the current epoch's are in `sequences`).
    lost_before: u64,
    past: Vec<EpochSummary>,
    reassembly: Reassembly,
    oversize: [Option<(u32, u64)>; OVERSIZE_MEMORY],
    oversize_next: usize,
}

impl Accounting {
    pub fn new(cfg: AccountingConfig) -> Self {
        let cfg = cfg.effective();
        Accounting {
            counters: Counters::default(),
            epoch: None,
            generation: None,
            gap_generations: Vec::with_capacity(64),
            sequences: SequenceWindow::new(cfg.window),
            lost_before: 0,
            past: Vec::with_capacity(16),
            reassembly: Reassembly::new(cfg.reassembly_slots, cfg.max_message_len),
            oversize: [None; OVERSIZE_MEMORY],
            oversize_next: 0,
            cfg,
        }
    }

    /// The configuration in effect (window rounded up, at least one slot).
    pub fn config(&self) -> &AccountingConfig {
        &self.cfg
    }

    /// Accounts one datagram. A delivered message borrows the datagram or a reassembly slot.
    pub fn on_datagram<'a>(&'a mut self, datagram: &'a [u8]) -> Event<'a> {
        self.counters.datagrams += 1;
        let (header, payload) = match Header::decode(datagram) {
            Ok(decoded) => decoded,
            Err(error) => return self.dropped(DropReason::Malformed(error)),
        };
        let mut stride = 0;
        let mut gap = None;
        match header.kind {
            Kind::Data if header.fragment_count > 1 => match fragment_stride(&header) {
                Some(s) => stride = s,
                None => return self.dropped(DropReason::Malformed(WireError::BadFragment)),
            },
            Kind::UpstreamGap => match UpstreamGap::decode(payload) {
                Ok(g) => gap = Some(g),
                Err(error) => return self.dropped(DropReason::Malformed(error)),
            },
            _ => {}
        }
        if self.enter_epoch(header.epoch).is_err() {
            return self.dropped(DropReason::StaleEpoch);
        }
        self.note_generation(header.upstream_generation);
        match (header.kind, gap) {
            (Kind::Heartbeat, _) => {
                self.counters.heartbeats += 1;
                self.sequences.expect_until(header.sequence);
                self.sync_lost();
                Event::Heartbeat {
                    epoch: header.epoch,
                    next_sequence: header.sequence,
                }
            }
            (Kind::UpstreamGap, Some(gap)) => self.upstream_gap(&header, gap),
            (Kind::UpstreamGap, None) => {
                self.dropped(DropReason::Malformed(WireError::BadControlPayload))
            }
            (Kind::Data, _) if header.fragment_count == 1 => self.single(header, payload),
            (Kind::Data, _) => self.fragment(header, stride, payload),
        }
    }

    /// End of run: every sequence still missing up to the expected end (the highest sequence
    /// seen or the last heartbeat's next sequence) counts as lost, and open reassembly slots are
    /// evicted as incomplete. Calling it again only adds what went missing since.
    pub fn finish(&mut self) {
        self.counters.incomplete_messages += self.reassembly.evict_all();
        self.sequences.resolve_missing();
        self.sync_lost();
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Per-epoch accounting: epochs already left, then the current one.
    pub fn epoch_summaries(&self) -> impl Iterator<Item = EpochSummary> + '_ {
        self.past
            .iter()
            .copied()
            .chain(self.epoch.map(|epoch| self.current_summary(epoch)))
    }

    fn current_summary(&self, epoch: u32) -> EpochSummary {
        EpochSummary {
            epoch,
            base: self.sequences.base(),
            expected: u64::try_from(self.sequences.expected()).unwrap_or(u64::MAX),
            delivered: self.sequences.delivered(),
            lost: self.sequences.lost(),
        }
    }

    fn dropped<'a>(&mut self, reason: DropReason) -> Event<'a> {
        let c = &mut self.counters;
        match reason {
            DropReason::Malformed(error) => c.malformed.count(error),
            DropReason::Duplicate => c.duplicates += 1,
            DropReason::DuplicateFragment => c.duplicate_fragments += 1,
            DropReason::TooOld => c.too_old += 1,
            DropReason::BeforeStart => c.before_start += 1,
            DropReason::StaleEpoch => c.stale_epoch += 1,
            // Counted once per message by `oversize`.
            DropReason::MessageTooLarge => {}
        }
        Event::Dropped(reason)
    }

    fn sync_lost(&mut self) {
        self.counters.lost = self.lost_before.saturating_add(self.sequences.lost());
    }

    /// Switches to `epoch` if it is new; `Err` if it is one already left.
    fn enter_epoch(&mut self, epoch: u32) -> Result<(), ()> {
        match self.epoch {
            Some(current) if current == epoch => return Ok(()),
            Some(_) if self.past.iter().any(|s| s.epoch == epoch) => return Err(()),
            Some(current) => {
                self.counters.incomplete_messages += self.reassembly.evict_all();
                self.sequences.resolve_missing();
                self.sync_lost();
                self.lost_before = self.counters.lost;
                let summary = self.current_summary(current);
                self.past.push(summary);
            }
            None => {}
        }
        self.epoch = Some(epoch);
        self.counters.epochs += 1;
        self.sequences.reset();
        self.generation = None;
        self.gap_generations.clear();
        Ok(())
    }

    fn note_generation(&mut self, generation: u32) {
        match self.generation {
            Some(seen) if generation > seen => {
                let c = &mut self.counters;
                c.upstream_generation_changes = c
                    .upstream_generation_changes
                    .saturating_add(u64::from(generation - seen));
                self.generation = Some(generation);
            }
            Some(_) => {}
            None => self.generation = Some(generation),
        }
    }

    fn upstream_gap<'a>(&mut self, header: &Header, gap: UpstreamGap) -> Event<'a> {
        let generation = header.upstream_generation;
        if self.gap_generations.contains(&generation) {
            return self.dropped(DropReason::Duplicate);
        }
        if self.gap_generations.len() >= GAP_MEMORY {
            // Only reachable with garbage: forget the lowest generation.
            if let Some(at) =
                (0..self.gap_generations.len()).min_by_key(|&i| self.gap_generations[i])
            {
                self.gap_generations.swap_remove(at);
            }
        }
        self.gap_generations.push(generation);
        let c = &mut self.counters;
        c.upstream_gaps += 1;
        c.upstream_gap_total_ns = c
            .upstream_gap_total_ns
            .saturating_add(gap.up_at_ns.saturating_sub(gap.down_at_ns));
        Event::UpstreamGap {
            epoch: header.epoch,
            generation,
            gap,
        }
    }

    /// Counts an oversize message once; returns the drop event.
    fn oversize<'a>(&mut self, header: &Header) -> Event<'a> {
        let key = Some((header.epoch, header.sequence));
        if !self.oversize.contains(&key) {
            self.oversize[self.oversize_next] = key;
            self.oversize_next = (self.oversize_next + 1) % OVERSIZE_MEMORY;
            self.counters.oversize_messages += 1;
        }
        self.dropped(DropReason::MessageTooLarge)
    }

    fn single<'a>(&mut self, header: Header, payload: &'a [u8]) -> Event<'a> {
        let position = self.sequences.classify(header.sequence);
        self.sync_lost();
        let position = match position {
            Ok(position) => position,
            Err(reason) => return self.dropped(reason),
        };
        if header.message_len as usize > self.cfg.max_message_len {
            return self.oversize(&header);
        }
        self.sequences.deliver(header.sequence);
        let reordered = position == Position::Late;
        self.counters.messages += 1;
        self.counters.reordered += u64::from(reordered);
        Event::Message(Delivered {
            header,
            payload,
            reordered,
            fragments: 1,
        })
    }

    fn fragment<'a>(&'a mut self, header: Header, stride: u32, payload: &[u8]) -> Event<'a> {
        let position = self.sequences.classify(header.sequence);
        self.sync_lost();
        let position = match position {
            Ok(position) => position,
            Err(reason) => return self.dropped(reason),
        };
        if header.message_len as usize > self.cfg.max_message_len {
            return self.oversize(&header);
        }
        let slot = match self.reassembly.find(header.epoch, header.sequence) {
            Some(slot) => slot,
            None => {
                let (slot, evicted) =
                    self.reassembly
                        .open(&header, stride, position == Position::Late);
                self.counters.incomplete_messages += u64::from(evicted);
                slot
            }
        };
        let reordered = match self.reassembly.store(slot, &header, stride, payload) {
            Ok(Stored::Partial) => {
                self.counters.fragments += 1;
                return Event::FragmentStored;
            }
            Ok(Stored::Complete { reordered }) => reordered,
            Err(reason) => return self.dropped(reason),
        };
        self.reassembly.release(slot);
        self.sequences.deliver(header.sequence);
        let c = &mut self.counters;
        c.fragments += 1;
        c.fragmented_messages += 1;
        c.messages += 1;
        c.reordered += u64::from(reordered);
        let header = Header {
            fragment_index: 0,
            fragment_offset: 0,
            payload_len: 0,
            ..header
        };
        Event::Message(Delivered {
            header,
            payload: self.reassembly.message(slot),
            reordered,
            fragments: header.fragment_count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use relay_wire::HEADER_LEN;

    const EPOCH: u32 = 0x00e1_0c11;

    fn encode(header: Header, payload: &[u8]) -> Vec<u8> {
        let header = Header {
            payload_len: payload.len() as u16,
            ..header
        };
        let mut head = [0u8; HEADER_LEN];
        header.encode(&mut head);
        let mut out = head.to_vec();
        out.extend_from_slice(payload);
        out
    }

    fn head(kind: Kind, epoch: u32, generation: u32, sequence: u64) -> Header {
        Header {
            kind,
            flags: 0,
            epoch,
            upstream_generation: generation,
            sequence,
            relay_rx_ns: 1_000 + sequence,
            relay_tx_ns: 2_000 + sequence,
            event_time_ns: 0,
            message_len: 0,
            fragment_offset: 0,
            fragment_index: 0,
            fragment_count: 1,
            payload_len: 0,
        }
    }

    fn payload_of(sequence: u64) -> Vec<u8> {
        format!("{{\"e\":\"trade\",\"t\":{sequence}}}").into_bytes()
    }

    fn data_in(epoch: u32, generation: u32, sequence: u64, payload: &[u8]) -> Vec<u8> {
        let header = Header {
            message_len: payload.len() as u32,
            ..head(Kind::Data, epoch, generation, sequence)
        };
        encode(header, payload)
    }

    fn msg(sequence: u64) -> Vec<u8> {
        data_in(EPOCH, 1, sequence, &payload_of(sequence))
    }

    /// The datagrams of `message` split as the relay does, in index order.
    fn frags_in(epoch: u32, sequence: u64, message: &[u8], max_payload: usize) -> Vec<Vec<u8>> {
        relay_wire::fragments(message.len(), max_payload)
            .unwrap()
            .map(|f| {
                let header = Header {
                    message_len: message.len() as u32,
                    fragment_offset: f.offset,
                    fragment_index: f.index,
                    fragment_count: f.count,
                    relay_tx_ns: 5_000 + u64::from(f.index),
                    ..head(Kind::Data, epoch, 1, sequence)
                };
                let start = f.offset as usize;
                encode(header, &message[start..start + usize::from(f.len)])
            })
            .collect()
    }

    fn heartbeat_in(epoch: u32, next: u64) -> Vec<u8> {
        encode(head(Kind::Heartbeat, epoch, 1, next), &[])
    }

    fn gap_in(epoch: u32, generation: u32, down_at_ns: u64, up_at_ns: u64) -> Vec<u8> {
        let gap = UpstreamGap {
            down_at_ns,
            up_at_ns,
        };
        encode(head(Kind::UpstreamGap, epoch, generation, 0), &gap.encode())
    }

    fn bytes_pattern(len: usize, seed: u64) -> Vec<u8> {
        let mut rng = Rng::new(seed | 1);
        (0..len).map(|_| rng.next_u64() as u8).collect()
    }

    /// An owned view of an [`Event`], so tests can keep it while feeding more.
    #[derive(Debug, PartialEq, Eq)]
    enum Got {
        Msg {
            seq: u64,
            reordered: bool,
            fragments: u16,
        },
        Stored,
        Heartbeat(u64),
        Gap(u32),
        Dropped(DropReason),
    }

    fn feed(acc: &mut Accounting, datagram: &[u8]) -> Got {
        match acc.on_datagram(datagram) {
            Event::Message(d) => {
                assert_eq!(d.payload.len(), d.header.message_len as usize);
                Got::Msg {
                    seq: d.header.sequence,
                    reordered: d.reordered,
                    fragments: d.fragments,
                }
            }
            Event::FragmentStored => Got::Stored,
            Event::Heartbeat { next_sequence, .. } => Got::Heartbeat(next_sequence),
            Event::UpstreamGap { generation, .. } => Got::Gap(generation),
            Event::Dropped(reason) => Got::Dropped(reason),
        }
    }

    fn in_order(seq: u64) -> Got {
        Got::Msg {
            seq,
            reordered: false,
            fragments: 1,
        }
    }

    fn late(seq: u64) -> Got {
        Got::Msg {
            seq,
            reordered: true,
            fragments: 1,
        }
    }

    fn accounting() -> Accounting {
        Accounting::new(AccountingConfig::default())
    }

    fn with_window(window: u64) -> Accounting {
        Accounting::new(AccountingConfig {
            window,
            ..AccountingConfig::default()
        })
    }

    fn assert_invariant(acc: &Accounting) {
        let mut delivered = 0;
        for s in acc.epoch_summaries() {
            assert_eq!(s.delivered + s.lost, s.expected, "{s:?}");
            delivered += s.delivered;
        }
        assert_eq!(delivered, acc.counters().messages);
    }

    #[test]
    fn in_order_stream() {
        let mut acc = accounting();
        for seq in 1000..1100 {
            let datagram = msg(seq);
            match acc.on_datagram(&datagram) {
                Event::Message(d) => {
                    assert_eq!(d.payload, &payload_of(seq)[..]);
                    assert_eq!(d.header.sequence, seq);
                    assert_eq!(d.header.relay_tx_ns, 2_000 + seq);
                    assert!(!d.reordered);
                    assert_eq!(d.fragments, 1);
                }
                other => panic!("{other:?}"),
            }
        }
        acc.finish();
        let c = acc.counters();
        assert_eq!(
            (c.datagrams, c.messages, c.lost, c.reordered, c.epochs),
            (100, 100, 0, 0, 1)
        );
        let summary: Vec<_> = acc.epoch_summaries().collect();
        assert_eq!(
            summary,
            [EpochSummary {
                epoch: EPOCH,
                base: Some(1000),
                expected: 100,
                delivered: 100,
                lost: 0
            }]
        );
    }

    #[test]
    fn loss_in_the_middle() {
        let mut acc = accounting();
        for seq in (0..100).filter(|s| !(50..53).contains(s)) {
            assert_eq!(feed(&mut acc, &msg(seq)), in_order(seq));
        }
        // Missing, not lost yet: they may still arrive.
        assert_eq!(acc.counters().lost, 0);
        acc.finish();
        assert_eq!(acc.counters().lost, 3);
        assert_eq!(acc.counters().messages, 97);
        assert_invariant(&acc);
    }

    #[test]
    fn loss_counted_when_it_leaves_the_window() {
        let mut acc = with_window(64);
        for seq in (0..200).filter(|&s| s != 10) {
            feed(&mut acc, &msg(seq));
            // After 73 the window is 10..74; after 74 it is 11..75 and 10 is given up.
            assert_eq!(acc.counters().lost, u64::from(seq >= 74), "after {seq}");
        }
        assert_eq!(feed(&mut acc, &msg(10)), Got::Dropped(DropReason::TooOld));
        acc.finish();
        assert_eq!(acc.counters().lost, 1);
        assert_invariant(&acc);
    }

    #[test]
    fn tail_loss_detected_via_heartbeat_at_finish() {
        let mut acc = accounting();
        for seq in 0..10 {
            feed(&mut acc, &msg(seq));
        }
        assert_eq!(feed(&mut acc, &heartbeat_in(EPOCH, 15)), Got::Heartbeat(15));
        assert_eq!(acc.counters().lost, 0);
        // 12 was declared sent by the heartbeat: it arrives late.
        assert_eq!(feed(&mut acc, &msg(12)), late(12));
        // An older heartbeat does not move anything back.
        assert_eq!(feed(&mut acc, &heartbeat_in(EPOCH, 3)), Got::Heartbeat(3));
        acc.finish();
        let c = acc.counters();
        assert_eq!(
            (c.messages, c.lost, c.heartbeats, c.reordered),
            (11, 4, 2, 1)
        );
        assert_eq!(acc.epoch_summaries().next().unwrap().expected, 15);
        assert_invariant(&acc);
        // finish is idempotent.
        acc.finish();
        assert_eq!(acc.counters().lost, 4);
    }

    #[test]
    fn reorder_within_window_is_not_loss() {
        let mut acc = accounting();
        assert_eq!(feed(&mut acc, &msg(0)), in_order(0));
        assert_eq!(feed(&mut acc, &msg(1)), in_order(1));
        assert_eq!(feed(&mut acc, &msg(3)), in_order(3));
        assert_eq!(feed(&mut acc, &msg(4)), in_order(4));
        assert_eq!(feed(&mut acc, &msg(2)), late(2));
        acc.finish();
        let c = acc.counters();
        assert_eq!((c.messages, c.reordered, c.lost), (5, 1, 0));
        assert_invariant(&acc);
    }

    #[test]
    fn duplicates_including_of_a_reordered_one() {
        let mut acc = accounting();
        feed(&mut acc, &msg(0));
        assert_eq!(feed(&mut acc, &msg(0)), Got::Dropped(DropReason::Duplicate));
        feed(&mut acc, &msg(2));
        assert_eq!(feed(&mut acc, &msg(1)), late(1));
        assert_eq!(feed(&mut acc, &msg(1)), Got::Dropped(DropReason::Duplicate));
        assert_eq!(feed(&mut acc, &msg(2)), Got::Dropped(DropReason::Duplicate));
        acc.finish();
        let c = acc.counters();
        assert_eq!(
            (c.messages, c.duplicates, c.reordered, c.lost),
            (3, 3, 1, 0)
        );
        assert_invariant(&acc);
    }

    #[test]
    fn too_old() {
        let mut acc = with_window(64);
        feed(&mut acc, &msg(0));
        feed(&mut acc, &msg(100));
        // The window is now 37..=100; 1..=36 were given up when it moved.
        assert_eq!(acc.counters().lost, 36);
        assert_eq!(feed(&mut acc, &msg(30)), Got::Dropped(DropReason::TooOld));
        assert_eq!(feed(&mut acc, &msg(36)), Got::Dropped(DropReason::TooOld));
        assert_eq!(feed(&mut acc, &msg(37)), late(37));
        acc.finish();
        let c = acc.counters();
        assert_eq!((c.too_old, c.messages, c.lost), (2, 3, 98));
        assert_invariant(&acc);
        assert_eq!(
            AccountingConfig {
                window: 100,
                ..Default::default()
            }
            .effective()
            .window,
            128
        );
        assert_eq!(with_window(1).config().window, 64);
    }

    #[test]
    fn before_start() {
        let mut acc = accounting();
        assert_eq!(feed(&mut acc, &msg(100)), in_order(100));
        assert_eq!(
            feed(&mut acc, &msg(99)),
            Got::Dropped(DropReason::BeforeStart)
        );
        assert_eq!(
            feed(&mut acc, &msg(0)),
            Got::Dropped(DropReason::BeforeStart)
        );
        assert_eq!(
            feed(&mut acc, &msg(100)),
            Got::Dropped(DropReason::Duplicate)
        );
        acc.finish();
        let c = acc.counters();
        assert_eq!((c.before_start, c.lost, c.messages), (2, 0, 1));
        assert_invariant(&acc);

        // A heartbeat first sets the base to its next sequence.
        let mut acc = accounting();
        assert_eq!(feed(&mut acc, &heartbeat_in(EPOCH, 50)), Got::Heartbeat(50));
        assert_eq!(
            feed(&mut acc, &msg(49)),
            Got::Dropped(DropReason::BeforeStart)
        );
        assert_eq!(feed(&mut acc, &msg(50)), in_order(50));
        acc.finish();
        assert_eq!(acc.epoch_summaries().next().unwrap().base, Some(50));
        assert_invariant(&acc);
    }

    #[test]
    fn epoch_change_and_stale_epoch() {
        let (a, b, c) = (0xa, 0xb, 0xc);
        let mut acc = accounting();
        for seq in [0, 1, 3] {
            feed(&mut acc, &data_in(a, 1, seq, b"x"));
        }
        assert_eq!(acc.counters().lost, 0);
        assert_eq!(feed(&mut acc, &data_in(b, 1, 7, b"y")), in_order(7));
        assert_eq!(acc.counters().lost, 1, "2 of epoch a is lost");
        assert_eq!(acc.counters().epochs, 2);
        assert_eq!(
            feed(&mut acc, &data_in(a, 1, 2, b"x")),
            Got::Dropped(DropReason::StaleEpoch)
        );
        assert_eq!(feed(&mut acc, &data_in(b, 1, 8, b"y")), in_order(8));
        assert_eq!(feed(&mut acc, &heartbeat_in(c, 4)), Got::Heartbeat(4));
        assert_eq!(
            feed(&mut acc, &data_in(b, 1, 9, b"y")),
            Got::Dropped(DropReason::StaleEpoch)
        );
        assert_eq!(
            feed(&mut acc, &heartbeat_in(a, 9)),
            Got::Dropped(DropReason::StaleEpoch)
        );
        assert_eq!(
            feed(&mut acc, &gap_in(b, 2, 1, 2)),
            Got::Dropped(DropReason::StaleEpoch)
        );
        assert_eq!(feed(&mut acc, &data_in(c, 1, 4, b"z")), in_order(4));
        acc.finish();
        let counters = acc.counters();
        assert_eq!(
            (
                counters.epochs,
                counters.stale_epoch,
                counters.lost,
                counters.messages
            ),
            (3, 4, 1, 6)
        );
        let summaries: Vec<_> = acc.epoch_summaries().collect();
        assert_eq!(
            summaries,
            [
                EpochSummary {
                    epoch: a,
                    base: Some(0),
                    expected: 4,
                    delivered: 3,
                    lost: 1
                },
                EpochSummary {
                    epoch: b,
                    base: Some(7),
                    expected: 2,
                    delivered: 2,
                    lost: 0
                },
                EpochSummary {
                    epoch: c,
                    base: Some(4),
                    expected: 1,
                    delivered: 1,
                    lost: 0
                },
            ]
        );
        assert_invariant(&acc);
    }

    #[test]
    fn fragmented_message_reassembled_from_shuffled_fragments() {
        let mut acc = accounting();
        let message = bytes_pattern(5_000, 7);
        let frags = frags_in(EPOCH, 1, &message, 1_000);
        assert_eq!(frags.len(), 5);
        feed(&mut acc, &msg(0));
        let order = [3, 0, 4, 2, 1];
        for &i in &order[..4] {
            assert_eq!(feed(&mut acc, &frags[i]), Got::Stored);
        }
        // A single message in between is not disturbed.
        assert_eq!(feed(&mut acc, &msg(2)), in_order(2));
        match acc.on_datagram(&frags[order[4]]) {
            Event::Message(d) => {
                assert_eq!(d.payload, &message[..]);
                assert_eq!(d.fragments, 5);
                // Its first fragment came right after 0: in order, even though 2 completed first.
                assert!(!d.reordered);
                let h = d.header;
                assert_eq!(
                    (
                        h.sequence,
                        h.fragment_index,
                        h.fragment_count,
                        h.fragment_offset,
                        h.payload_len,
                        h.message_len
                    ),
                    (1, 0, 5, 0, 0, 5_000)
                );
                // The completing datagram's send stamp.
                assert_eq!(h.relay_tx_ns, 5_000 + order[4] as u64);
            }
            other => panic!("{other:?}"),
        }
        // A fragmented message whose first fragment comes after a later sequence is reordered.
        let late_message = bytes_pattern(2_500, 8);
        let frags = frags_in(EPOCH, 3, &late_message, 1_000);
        assert_eq!(feed(&mut acc, &msg(4)), in_order(4));
        assert_eq!(feed(&mut acc, &frags[2]), Got::Stored);
        assert_eq!(feed(&mut acc, &frags[0]), Got::Stored);
        assert_eq!(
            feed(&mut acc, &frags[1]),
            Got::Msg {
                seq: 3,
                reordered: true,
                fragments: 3
            }
        );
        acc.finish();
        let c = acc.counters();
        assert_eq!(
            (
                c.messages,
                c.fragmented_messages,
                c.fragments,
                c.reordered,
                c.lost
            ),
            (5, 2, 8, 1, 0)
        );
        assert_eq!(c.incomplete_messages, 0);
        assert_invariant(&acc);
    }

    #[test]
    fn missing_fragment_loses_the_message_and_evicts_the_slot() {
        let mut acc = accounting();
        let message = bytes_pattern(2_500, 9);
        let frags = frags_in(EPOCH, 0, &message, 1_000);
        assert_eq!(feed(&mut acc, &frags[0]), Got::Stored);
        assert_eq!(feed(&mut acc, &frags[2]), Got::Stored);
        for seq in 1..5 {
            assert_eq!(feed(&mut acc, &msg(seq)), in_order(seq));
        }
        acc.finish();
        let c = acc.counters();
        assert_eq!(
            (
                c.messages,
                c.lost,
                c.incomplete_messages,
                c.fragments,
                c.fragmented_messages
            ),
            (4, 1, 1, 2, 0)
        );
        assert_invariant(&acc);
        // The slot is gone: the missing fragment now finds the sequence given up.
        assert_eq!(
            feed(&mut acc, &frags[1]),
            Got::Dropped(DropReason::Duplicate)
        );
    }

    #[test]
    fn full_slots_evict_the_lowest_sequence() {
        let mut acc = Accounting::new(AccountingConfig {
            reassembly_slots: 2,
            ..AccountingConfig::default()
        });
        let messages: Vec<Vec<u8>> = (0..3).map(|seq| bytes_pattern(15, seq + 1)).collect();
        let frags: Vec<Vec<Vec<u8>>> = messages
            .iter()
            .enumerate()
            .map(|(seq, m)| frags_in(EPOCH, seq as u64, m, 10))
            .collect();
        assert_eq!(feed(&mut acc, &frags[0][0]), Got::Stored);
        assert_eq!(feed(&mut acc, &frags[1][0]), Got::Stored);
        assert_eq!(acc.counters().incomplete_messages, 0);
        assert_eq!(feed(&mut acc, &frags[2][0]), Got::Stored);
        assert_eq!(acc.counters().incomplete_messages, 1, "sequence 0 evicted");
        assert_eq!(
            feed(&mut acc, &frags[1][1]),
            Got::Msg {
                seq: 1,
                reordered: false,
                fragments: 2
            }
        );
        // Sequence 0 starts over in a new slot and can never complete: no partial delivery.
        assert_eq!(feed(&mut acc, &frags[0][1]), Got::Stored);
        acc.finish();
        let c = acc.counters();
        assert_eq!((c.messages, c.lost, c.incomplete_messages), (1, 2, 3));
        assert_invariant(&acc);
    }

    #[test]
    fn duplicate_fragments() {
        let mut acc = accounting();
        let message = bytes_pattern(25, 3);
        let frags = frags_in(EPOCH, 0, &message, 10);
        assert_eq!(feed(&mut acc, &frags[1]), Got::Stored);
        assert_eq!(
            feed(&mut acc, &frags[1]),
            Got::Dropped(DropReason::DuplicateFragment)
        );
        assert_eq!(feed(&mut acc, &frags[0]), Got::Stored);
        assert_eq!(
            feed(&mut acc, &frags[2]),
            Got::Msg {
                seq: 0,
                reordered: false,
                fragments: 3
            }
        );
        // After delivery, a fragment of the same sequence is a duplicate and opens no slot.
        assert_eq!(
            feed(&mut acc, &frags[0]),
            Got::Dropped(DropReason::Duplicate)
        );
        acc.finish();
        let c = acc.counters();
        assert_eq!(
            (
                c.duplicate_fragments,
                c.duplicates,
                c.fragments,
                c.incomplete_messages
            ),
            (1, 1, 3, 0)
        );
        assert_invariant(&acc);
    }

    #[test]
    fn inconsistent_fragment_fields_are_malformed() {
        let mut acc = accounting();
        let message = bytes_pattern(25, 4);
        let frags = frags_in(EPOCH, 0, &message, 10);
        assert_eq!(feed(&mut acc, &frags[0]), Got::Stored);
        let base = Header::decode(&frags[1]).unwrap().0;
        let bad = DropReason::Malformed(WireError::BadFragment);
        // Each fits the layout on its own but disagrees with the first fragment of the message.
        let other_len = Header {
            message_len: 26,
            ..base
        };
        assert_eq!(
            feed(&mut acc, &encode(other_len, &[0; 10])),
            Got::Dropped(bad)
        );
        let other_count = Header {
            fragment_count: 4,
            message_len: 35,
            ..base
        };
        assert_eq!(
            feed(&mut acc, &encode(other_count, &[0; 10])),
            Got::Dropped(bad)
        );
        let other_stride = Header {
            fragment_offset: 9,
            ..base
        };
        assert_eq!(
            feed(&mut acc, &encode(other_stride, &[0; 9])),
            Got::Dropped(bad)
        );
        // Fields that do not fit the layout at all, even from a new epoch, change nothing.
        let gap_in_layout = Header {
            fragment_offset: 11,
            epoch: 77,
            ..base
        };
        assert_eq!(
            feed(&mut acc, &encode(gap_in_layout, &[0; 10])),
            Got::Dropped(bad)
        );
        assert_eq!(acc.counters().epochs, 1);
        assert_eq!(acc.counters().malformed.bad_fragment, 4);
        // The genuine fragments still complete the message, byte-exact.
        assert_eq!(feed(&mut acc, &frags[1]), Got::Stored);
        match acc.on_datagram(&frags[2]) {
            Event::Message(d) => assert_eq!(d.payload, &message[..]),
            other => panic!("{other:?}"),
        }
        assert_eq!(acc.counters().malformed.total(), 4);
    }

    #[test]
    fn oversize_messages_are_dropped_once_and_lost() {
        let mut acc = Accounting::new(AccountingConfig {
            max_message_len: 100,
            ..AccountingConfig::default()
        });
        assert_eq!(feed(&mut acc, &msg(0)), in_order(0));
        let big = bytes_pattern(200, 5);
        let single = data_in(EPOCH, 1, 1, &big);
        assert_eq!(
            feed(&mut acc, &single),
            Got::Dropped(DropReason::MessageTooLarge)
        );
        assert_eq!(
            feed(&mut acc, &single),
            Got::Dropped(DropReason::MessageTooLarge)
        );
        let bigger = bytes_pattern(300, 6);
        for frag in frags_in(EPOCH, 2, &bigger, 100) {
            assert_eq!(
                feed(&mut acc, &frag),
                Got::Dropped(DropReason::MessageTooLarge)
            );
        }
        assert_eq!(feed(&mut acc, &msg(3)), in_order(3));
        acc.finish();
        let c = acc.counters();
        assert_eq!(
            (c.oversize_messages, c.lost, c.messages, c.fragments),
            (2, 2, 2, 0)
        );
        assert_invariant(&acc);
    }

    #[test]
    fn upstream_gaps_are_deduplicated_and_generations_counted() {
        let mut acc = accounting();
        feed(&mut acc, &data_in(EPOCH, 1, 0, b"a"));
        assert_eq!(acc.counters().upstream_generation_changes, 0);
        assert_eq!(feed(&mut acc, &gap_in(EPOCH, 2, 100, 350)), Got::Gap(2));
        assert_eq!(
            feed(&mut acc, &gap_in(EPOCH, 2, 100, 350)),
            Got::Dropped(DropReason::Duplicate)
        );
        assert_eq!(acc.counters().upstream_generation_changes, 1);
        feed(&mut acc, &data_in(EPOCH, 2, 1, b"b"));
        // Generations 3 and 4 happened; their gap datagrams were lost, the header shows it.
        feed(&mut acc, &data_in(EPOCH, 4, 2, b"c"));
        // An older header (reordered) does not count anything.
        feed(&mut acc, &data_in(EPOCH, 3, 3, b"d"));
        assert_eq!(acc.counters().upstream_generation_changes, 3);
        // A gap whose clocks went backwards adds 0 time but still counts.
        assert_eq!(feed(&mut acc, &gap_in(EPOCH, 4, 500, 400)), Got::Gap(4));
        let c = acc.counters();
        assert_eq!(
            (c.upstream_gaps, c.upstream_gap_total_ns, c.duplicates),
            (2, 250, 1)
        );
        // A new epoch starts its generation from whatever it shows, and gaps are keyed per epoch.
        feed(&mut acc, &data_in(EPOCH + 1, 1, 0, b"e"));
        assert_eq!(
            feed(&mut acc, &gap_in(EPOCH + 1, 2, 1_000, 2_000)),
            Got::Gap(2)
        );
        let c = acc.counters();
        assert_eq!(
            (
                c.upstream_gaps,
                c.upstream_gap_total_ns,
                c.upstream_generation_changes
            ),
            (3, 1_250, 4)
        );
        // Gap datagrams are not messages.
        assert_eq!(c.messages, 5);
    }

    /// Random permutation, drops and duplicates of single-datagram messages.
    #[test]
    fn random_permutation_drops_and_duplicates_keep_the_books() {
        const N: u64 = 10_000;
        for seed in [1u64, 2, 3, 0xfeed] {
            let mut rng = Rng::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let mut sent = Vec::new();
            let mut survivors = 1u64;
            let mut copies_extra = 0u64;
            for seq in 1..N {
                let copies = if rng.chance(10) {
                    0
                } else if rng.chance(5) {
                    2
                } else {
                    1
                };
                survivors += u64::from(copies > 0);
                copies_extra += u64::from(copies > 1);
                sent.extend(std::iter::repeat_n(seq, copies));
            }
            rng.shuffle(&mut sent);
            // Sequence 0 first, so the base is 0 and nothing is before the start.
            sent.insert(0, 0);

            let mut acc = accounting();
            let mut seen = vec![false; N as usize];
            let mut highest = 0u64;
            let mut expect_reordered = 0u64;
            for &seq in &sent {
                let got = feed(&mut acc, &msg(seq));
                if seen[seq as usize] {
                    assert_eq!(got, Got::Dropped(DropReason::Duplicate));
                } else {
                    let reordered = seq < highest;
                    expect_reordered += u64::from(reordered);
                    assert_eq!(
                        got,
                        Got::Msg {
                            seq,
                            reordered,
                            fragments: 1
                        },
                        "seed {seed}"
                    );
                }
                seen[seq as usize] = true;
                highest = highest.max(seq + 1);
            }
            feed(&mut acc, &heartbeat_in(EPOCH, N));
            acc.finish();
            let c = acc.counters();
            assert_eq!(c.messages, survivors, "seed {seed}");
            assert_eq!(c.lost, N - survivors, "seed {seed}");
            assert_eq!(c.duplicates, copies_extra, "seed {seed}");
            assert_eq!(c.reordered, expect_reordered, "seed {seed}");
            assert_eq!(c.messages + c.lost, N);
            assert_invariant(&acc);
        }
    }

    /// Random drops, duplicates and bounded local reordering of fragmented and single messages.
    #[test]
    fn random_fragments_keep_the_books() {
        const N: u64 = 3_000;
        const DISPLACEMENT: u64 = 16;
        for seed in [11u64, 12, 13] {
            let mut rng = Rng::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let messages: Vec<Vec<u8>> = (0..N)
                .map(|seq| bytes_pattern(1 + rng.below(400) as usize, seq + seed))
                .collect();
            // (sort key, sequence, fragment datagram)
            let mut sent: Vec<(u64, u64, Vec<u8>)> = Vec::new();
            let (mut complete, mut partial, mut extra) = (0u64, 0u64, 0u64);
            let mut position = 0u64;
            for (seq, message) in messages.iter().enumerate() {
                let frags = frags_in(EPOCH, seq as u64, message, 100);
                let mut arrived = 0;
                for frag in &frags {
                    // Sequence 0's first fragment always arrives first, to fix the base.
                    let copies = if position == 0 {
                        1
                    } else if rng.chance(3) {
                        0
                    } else if rng.chance(3) {
                        2
                    } else {
                        1
                    };
                    arrived += usize::from(copies > 0);
                    extra += u64::from(copies > 1);
                    for _ in 0..copies {
                        let key = if position == 0 {
                            0
                        } else {
                            position + 1 + rng.below(DISPLACEMENT)
                        };
                        sent.push((key, seq as u64, frag.clone()));
                    }
                    position += 1;
                }
                if arrived == frags.len() {
                    complete += 1;
                } else if arrived > 0 {
                    partial += 1;
                }
            }
            sent.sort_by_key(|(key, _, _)| *key);

            let mut acc = accounting();
            let mut delivered = vec![false; N as usize];
            for (_, seq, datagram) in &sent {
                if let Event::Message(d) = acc.on_datagram(datagram) {
                    assert_eq!(d.header.sequence, *seq);
                    assert_eq!(
                        d.payload,
                        &messages[*seq as usize][..],
                        "seed {seed} seq {seq}"
                    );
                    assert!(!delivered[*seq as usize]);
                    delivered[*seq as usize] = true;
                }
            }
            feed(&mut acc, &heartbeat_in(EPOCH, N));
            acc.finish();
            let c = acc.counters();
            assert_eq!(c.messages, complete, "seed {seed}");
            assert_eq!(c.lost, N - complete, "seed {seed}");
            assert_eq!(c.incomplete_messages, partial, "seed {seed}");
            assert_eq!(c.duplicates + c.duplicate_fragments, extra, "seed {seed}");
            assert!(
                c.fragmented_messages > 0 && c.reordered > 0 && partial > 0,
                "{c:?}"
            );
            assert_eq!(c.malformed.total() + c.too_old + c.before_start, 0);
            assert_invariant(&acc);
        }
    }

    /// A small window with wide reordering: late arrivals below the window are too old, and the
    /// books still balance.
    #[test]
    fn random_reordering_beyond_a_small_window() {
        const N: u64 = 10_000;
        let mut rng = Rng::new(0x5eed);
        let mut sent: Vec<(u64, u64)> = (0..N)
            .filter(|_| !rng.chance(5))
            .map(|seq| (seq, seq))
            .collect();
        for (key, _) in sent.iter_mut().skip(1) {
            *key += rng.below(200);
        }
        sent.sort();
        let survivors = sent.len() as u64;
        let mut acc = with_window(64);
        for &(_, seq) in &sent {
            feed(&mut acc, &msg(seq));
        }
        feed(&mut acc, &heartbeat_in(EPOCH, N));
        acc.finish();
        let c = acc.counters();
        assert!(c.too_old > 0 && c.reordered > 0, "{c:?}");
        assert_eq!(c.messages + c.too_old, survivors);
        assert_eq!(c.messages + c.lost, N);
        assert_invariant(&acc);
    }

    /// Garbage of every sort never panics, and every datagram lands in exactly one counter.
    #[test]
    fn garbage_never_panics_and_is_always_counted() {
        let mut rng = Rng::new(0xbad_5eed);
        let mut valid: Vec<Vec<u8>> = Vec::new();
        for epoch in [EPOCH, EPOCH + 1] {
            for seq in 0..300u64 {
                match seq % 10 {
                    0 => valid.extend(frags_in(epoch, seq, &bytes_pattern(250, seq), 100)),
                    1 => valid.push(heartbeat_in(epoch, seq + 1)),
                    2 => valid.push(gap_in(epoch, 1 + (seq % 7) as u32, seq, seq * 3)),
                    3 => valid.push(data_in(epoch, 1, seq, &bytes_pattern(5_000, seq))),
                    _ => valid.push(msg(seq)),
                }
            }
        }
        let cfg = AccountingConfig {
            window: 256,
            reassembly_slots: 4,
            max_message_len: 4_000,
        };
        let mut acc = Accounting::new(cfg);
        let mut oversize_drops = 0u64;
        let mut buf = Vec::new();
        for round in 0..44_000 {
            // A flipped epoch bit starts a new epoch and makes the real one stale from then on, and
            // a flipped high sequence bit moves the window far ahead (both are believed), so those
            // fields are only flipped in the last rounds.
            let flip_any = round >= 40_000;
            buf.clear();
            // The stream in order (wrapping around: the first epoch goes stale), sometimes a
            // nearby datagram instead (reordered, duplicated).
            let jitter = if rng.chance(80) {
                0
            } else {
                rng.below(40) as usize
            };
            let pick = (round + valid.len() + jitter - 20.min(jitter)) % valid.len();
            let source = &valid[pick];
            match rng.below(5) {
                0 => buf.extend_from_slice(source),
                1 => buf.extend_from_slice(&source[..rng.below(source.len() as u64 + 1) as usize]),
                2 => {
                    buf.extend_from_slice(source);
                    for _ in 0..1 + rng.below(3) {
                        let bit = rng.below(buf.len() as u64 * 8);
                        let byte = (bit / 8) as usize;
                        if flip_any || !(8..24).contains(&byte) {
                            buf[byte] ^= 1 << (bit % 8);
                        }
                    }
                }
                3 => {
                    // Our magic and version, then noise: reaches the deeper checks.
                    buf.extend_from_slice(b"RLAY\x01");
                    buf.push(rng.below(4) as u8);
                    for _ in 0..rng.below(200) {
                        buf.push(rng.next_u64() as u8);
                    }
                }
                _ => {
                    for _ in 0..rng.below(200) {
                        buf.push(rng.next_u64() as u8);
                    }
                }
            }
            let before = acc.counters().clone();
            let event = feed(&mut acc, &buf);
            let after = acc.counters().clone();
            assert_eq!(after.datagrams, before.datagrams + 1);
            let grew = |f: fn(&Counters) -> u64| f(&after) - f(&before);
            match event {
                Got::Msg { fragments, .. } => {
                    assert_eq!(grew(|c| c.messages), 1);
                    assert_eq!(grew(|c| c.fragmented_messages), u64::from(fragments > 1));
                }
                Got::Stored => assert_eq!(grew(|c| c.fragments), 1),
                Got::Heartbeat(_) => assert_eq!(grew(|c| c.heartbeats), 1),
                Got::Gap(_) => assert_eq!(grew(|c| c.upstream_gaps), 1),
                Got::Dropped(DropReason::Malformed(e)) => {
                    assert_eq!(grew(|c| c.malformed.total()), 1);
                    let name = serde_json::to_value(&after.malformed).unwrap()[e.name()]
                        .as_u64()
                        .unwrap();
                    let was = serde_json::to_value(&before.malformed).unwrap()[e.name()]
                        .as_u64()
                        .unwrap();
                    assert_eq!(name, was + 1, "{e:?}");
                }
                Got::Dropped(DropReason::Duplicate) => assert_eq!(grew(|c| c.duplicates), 1),
                Got::Dropped(DropReason::DuplicateFragment) => {
                    assert_eq!(grew(|c| c.duplicate_fragments), 1)
                }
                Got::Dropped(DropReason::TooOld) => assert_eq!(grew(|c| c.too_old), 1),
                Got::Dropped(DropReason::BeforeStart) => assert_eq!(grew(|c| c.before_start), 1),
                Got::Dropped(DropReason::StaleEpoch) => assert_eq!(grew(|c| c.stale_epoch), 1),
                Got::Dropped(DropReason::MessageTooLarge) => {
                    assert!(grew(|c| c.oversize_messages) <= 1);
                    oversize_drops += 1;
                }
            }
            if round % 5_000 == 0 {
                acc.finish();
            }
        }
        acc.finish();
        let c = acc.counters();
        // Every datagram is in exactly one of these.
        let accounted = (c.messages - c.fragmented_messages)
            + c.fragments
            + c.malformed.total()
            + c.duplicates
            + c.duplicate_fragments
            + c.too_old
            + c.before_start
            + c.stale_epoch
            + c.heartbeats
            + c.upstream_gaps
            + oversize_drops;
        assert_eq!(accounted, c.datagrams);
        // Every kind of outcome happened.
        assert!(
            c.messages > 0 && c.fragmented_messages > 0 && c.epochs > 2 && c.stale_epoch > 0,
            "{c:?}"
        );
        assert!(
            c.malformed.foreign > 0 && c.malformed.truncated > 0 && c.malformed.length_mismatch > 0,
            "{c:?}"
        );
        assert!(
            c.malformed.bad_fragment > 0 && c.malformed.unknown_kind > 0,
            "{c:?}"
        );
        assert!(
            c.malformed.unsupported_version > 0 && c.malformed.bad_control_payload > 0,
            "{c:?}"
        );
        assert!(c.oversize_messages > 0 && c.duplicates > 0, "{c:?}");
        for s in acc.epoch_summaries() {
            if s.expected != u64::MAX {
                assert_eq!(
                    u128::from(s.delivered) + u128::from(s.lost),
                    u128::from(s.expected),
                    "{s:?}"
                );
            }
        }
    }
}
