//! The receiver's datagram accounting: a sans-io state machine fed one UDP datagram at a time.
//!
//! [`Accounting::on_datagram`] decodes the [`relay_wire`] datagram, tracks sequences per epoch,
//! reassembles fragments, hands every message it completes to the caller (a data datagram packs
//! one or more) and returns what the datagram was ([`Event`]). Every datagram lands in exactly one
//! place of the [`Counters`], every message of a data datagram in exactly one. The per-message
//! path allocates nothing: the sequence bitmap and the reassembly slots are allocated in
//! [`Accounting::new`] (a message larger than a slot's 64 KiB preallocation grows it as its
//! fragments arrive, and the memory goes back once it is delivered or evicted). Nothing panics on
//! any input, and memory never follows what a header claims.
//!
//! # Datagrams
//!
//! * With a key ([`AccountingConfig::secret`]), a datagram of ours that is not sealed is
//!   `Dropped(Unsealed)` (`unsealed`) and one whose seal does not open `Dropped(BadSeal)`
//!   (`bad_seal`); nothing else about them is believed. Without a key, a sealed datagram is
//!   `Dropped(SealedWithoutKey)` (`sealed_without_key`): its body cannot be read.
//! * Anything [`Header::decode`] rejects, and fragments whose fields do not fit the fragment
//!   layout (see *Fragments*), is `Dropped(Malformed(reason))`, counted under `malformed.<reason>`
//!   and has no other effect (it does not switch epochs). So is a data datagram whose last
//!   sequence (`sequence + count - 1`) overflows (`bad_blocks`).
//! * `Data`: `count` packed messages with sequences `sequence`, `sequence + 1`, ..., each accounted
//!   on its own (see *Sequences*), or one fragment of a message (see *Fragments*).
//! * `Heartbeat`: `sequence` is the next sequence the relay will use. Counted in `heartbeats` and
//!   returned as [`Event::Heartbeat`]; never a message. Its body, when there is one, says since
//!   when the relay's exchange connection has been down; if the last word at the end of the run
//!   is that, `upstream_down_at_end_ns` is how long the outage had lasted (relay clock).
//! * `UpstreamGap`: the relay's exchange connection was down; see *Upstream*. Its header's
//!   `sequence` is not used.
//! * `Nak` is the receiver's own request to the relay, `Probe` and `ProbeReply` belong to
//!   `relay probe`: one arriving here is `Dropped(Unexpected)` (`unexpected`). `Unavailable` (the relay no longer keeps some sequences) is counted in
//!   `unavailable` and returned as [`Event::Unavailable`].
//!
//! Checks run in this order: header, seal, decode, fragment layout, epoch, upstream generation,
//! then per message sequence, size, reassembly.
//!
//! # Epochs
//!
//! Every relay process picks a random epoch; each epoch is its own sequence space. The first
//! valid datagram starts the first epoch. A datagram of another epoch is believed only when the
//! relay's traffic confirms it: it is `Dropped(UnconfirmedEpoch)` (`unconfirmed_epoch`) unless
//! the current epoch has sent nothing for `epoch_takeover` (3 s; the relay's heartbeats come
//! every second) and the new epoch has sent [`CONFIRMATIONS`] datagrams since the current one
//! fell silent. So a blind forger beside a live relay can never switch the receiver away from
//! it, and a restarted relay takes over 3 s after the old one stopped. On takeover the current
//! epoch ends: its still-missing sequences count as `lost`, its open reassembly slots are
//! evicted (`incomplete_messages`); `epochs` and `relay_restarts` increment, and the outage (the
//! old epoch's last datagram to the new one's first) adds to `relay_restart_outage_ns`. A
//! restarted relay numbers from 1, so when the new epoch showed a sequence no higher than the
//! window before it took over, it is accounted from sequence 1: what it sent while unconfirmed
//! is missing, recovered like any gap, or lost. A datagram of an epoch left before (the last
//! [`PAST_MEMORY`] are remembered) is `Dropped(StaleEpoch)` (`stale_epoch`) - whatever its kind.
//! At most [`CANDIDATES`] unconfirmed epochs are tracked, so a new epoch on every datagram costs
//! nothing more than a few comparisons. `epochs` counts epochs entered, including the first.
//! [`Accounting::epoch_summaries`] reports each epoch's base, expected count, delivered and lost.

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
//! * The drops below count messages: a packed datagram whose messages are all duplicates adds its
//!   `count` to `duplicates`. [`Event::Dropped`] is returned when none of a datagram's messages
//!   was delivered (with the first message's reason), [`Event::Messages`] otherwise.
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
//! * A block of a datagram with `fragment_count == 1` is a whole message, delivered straight from
//!   the datagram (no copy).
//! * A larger count makes the datagram's one block a fragment. The header's fragment fields and
//!   the block's length must fit the layout of [`relay_wire::fragments`]:
//!   a stride `S` (payload bytes of every fragment but the last, at most what one datagram's
//!   block can carry), fragment `i` at offset `i * S`,
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
//! * The delivered message carries the completing datagram's `relay_tx_ns` (so it pairs with the
//!   receive time of that datagram) and its block's flags and times; [`Delivered::fragments`] is
//!   the fragment count.
//! * Fragments of a sequence already delivered are `Dropped(DuplicateFragment)` and open no slot
//!   (recovery asks for an incomplete message by its sequence and gets all its fragments again);
//!   fragments of a sequence below the window or before the base are `TooOld`/`BeforeStart`.
//! * A slot holds only the bytes of the fragments that arrived; across all slots at most
//!   `reassembly_bytes` (64 MiB) are held, and a fragment that would pass that evicts the open
//!   slots with the lowest sequences (`incomplete_messages`).
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
//! `datagrams` counts every call. `messages` counts deliveries, `lost` sequences given up,
//! `retransmitted` deliveries that came in a retransmission.
//! Arithmetic on values taken from the wire saturates; a corrupted header that passes validation
//! (e.g. a huge sequence jump) is believed, and can inflate `lost` accordingly.

mod counters;
mod epochs;
mod messages;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use relay_wire::{Block, Header, HeartbeatBody, Kind, UpstreamGap, WireError};

use super::reassembly::{fragment_stride, Reassembly};
use super::recovery::{Recovery, RecoveryConfig, RecoveryStats};
use super::sequence::SequenceWindow;
use crate::seal::{Direction, OpenError, Opener, Secret};
pub use counters::{Counters, EpochSummary, MalformedCounters};
use epochs::{Epochs, Verdict};
pub use epochs::{CANDIDATES, CONFIRMATIONS, PAST_MEMORY};

/// Sizes of the accounting state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountingConfig {
    /// Sequence window for reorder/loss decisions. Rounded up to a power of two, at least 64 and
    /// at most 2^30 (one bit each).
    pub window: u64,
    /// Messages that can be in reassembly at once (at least 1).
    pub reassembly_slots: usize,
    /// Fragment bytes held in reassembly at most, across the slots (at least `max_message_len`).
    pub reassembly_bytes: usize,
    /// Longest message accepted; longer ones are dropped and lost.
    pub max_message_len: usize,
    /// Ask the relay again for what goes missing (`None`: `--no-recovery`).
    pub recovery: Option<RecoveryConfig>,
    /// The relay's shared secret (`--key-file`): only datagrams it sealed are accepted, and NAKs
    /// are sealed. `None`: unsealed datagrams are accepted from anyone.
    pub secret: Option<Secret>,
    /// How long the current epoch must be silent before a new one can take over (see *Epochs*).
    /// Keep the relay's heartbeat interval well below it.
    pub epoch_takeover: Duration,
}

impl Default for AccountingConfig {
    fn default() -> Self {
        AccountingConfig {
            recovery: Some(RecoveryConfig::default()),
            secret: None,
            epoch_takeover: Duration::from_secs(3),
            window: 65_536,
            reassembly_slots: 64,
            reassembly_bytes: 64 << 20,
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
            reassembly_bytes: self.reassembly_bytes.max(self.max_message_len),
            max_message_len: self.max_message_len,
            recovery: self.recovery.clone(),
            secret: self.secret.clone(),
            epoch_takeover: self.epoch_takeover,
        }
    }
}

/// What one datagram was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A data datagram delivered `delivered` (>= 1) messages to the caller; its other messages,
    /// if any, were dropped and counted.
    Messages { delivered: u16 },
    /// A fragment was stored; its message is not complete yet.
    FragmentStored,
    /// A heartbeat: the relay's next sequence is `next_sequence`; while its exchange connection
    /// is down, since when.
    Heartbeat {
        epoch: u32,
        next_sequence: u64,
        upstream_down_since_ns: Option<u64>,
    },
    /// The relay reports an exchange outage (first report of this (epoch, generation)).
    UpstreamGap {
        epoch: u32,
        generation: u32,
        gap: UpstreamGap,
    },
    /// The relay says it no longer keeps some sequences of `epoch`.
    Unavailable { epoch: u32 },
    /// The datagram (every message of it) was counted and dropped (reason in the counters).
    Dropped(DropReason),
}

/// A delivered message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivered<'a> {
    pub epoch: u32,
    pub sequence: u64,
    pub upstream_generation: u32,
    /// The message's block: flags, relay receive time, event time (`len` is of the block, which
    /// for a reassembled message is its last fragment's: use `payload.len()`).
    pub block: Block,
    /// The send time of the datagram that completed the message.
    pub relay_tx_ns: u64,
    /// The whole message.
    pub payload: &'a [u8],
    /// Its sequence was already missing (a later sequence or a heartbeat came first).
    pub reordered: bool,
    /// Datagrams the message came in (1 unless fragmented).
    pub fragments: u16,
    /// The completing datagram was a retransmission.
    pub retransmitted: bool,
}

/// Why a datagram or a message was dropped. Each reason has its counter.
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
    /// From a new epoch not confirmed (yet) by the relay's traffic (`unconfirmed_epoch`).
    UnconfirmedEpoch,
    /// A message longer than `max_message_len` (`oversize_messages`, once per message).
    MessageTooLarge,
    /// A control datagram meant for the relay (a NAK) (`unexpected`).
    Unexpected,
    /// A sequence past the end of the run, after [`Accounting::close`] (`after_close`).
    AfterClose,
    /// Not sealed, while the receiver has a key (`unsealed`).
    Unsealed,
    /// Sealed, but the seal does not open with the receiver's key (`bad_seal`).
    BadSeal,
    /// Sealed, while the receiver has no key to open it (`sealed_without_key`).
    SealedWithoutKey,
}

/// Remembered oversize messages, so each is counted once.
const OVERSIZE_MEMORY: usize = 8;
/// Most `UpstreamGap` generations remembered per epoch for deduplication.
const GAP_MEMORY: usize = 1024;

/// The receiver's accounting state machine. See the module docs.
pub struct Accounting {
    cfg: AccountingConfig,
    counters: Counters,
    /// The epoch followed, those left, those unconfirmed.
    epochs: Epochs,
    /// Highest upstream generation seen in the current epoch.
    generation: Option<u32>,
    /// Generations whose `UpstreamGap` was counted in the current epoch.
    gap_generations: Vec<u32>,
    sequences: SequenceWindow,
    /// Lost in epochs already left (the current epoch's are in `sequences`).
    lost_before: u64,
    /// The last [`PAST_MEMORY`] epochs left.
    past: VecDeque<EpochSummary>,
    reassembly: Reassembly,
    oversize: [Option<(u32, u64)>; OVERSIZE_MEMORY],
    oversize_next: usize,
    recovery: Option<Recovery>,
    /// Opens the relay's sealed datagrams (`None` without a key).
    opener: Option<Opener>,
    /// Set by [`Accounting::close`]: sequences from here on are after the run.
    cutoff: Option<u64>,
    /// The relay's last word that its exchange connection is down: (since, said at), relay clock.
    upstream_down: Option<(u64, u64)>,
    /// The message whose first fragment the last datagram opened a reassembly slot for: recovery
    /// asks for it if it is still incomplete after the reorder allowance.
    fragment_opened: Option<(u32, u64)>,
}

impl Accounting {
    pub fn new(cfg: AccountingConfig) -> Self {
        let cfg = cfg.effective();
        Accounting {
            counters: Counters::default(),
            epochs: Epochs::new(cfg.epoch_takeover),
            generation: None,
            gap_generations: Vec::with_capacity(64),
            sequences: SequenceWindow::new(cfg.window),
            lost_before: 0,
            past: VecDeque::with_capacity(16),
            reassembly: Reassembly::new(
                cfg.reassembly_slots,
                cfg.max_message_len,
                cfg.reassembly_bytes,
            ),
            oversize: [None; OVERSIZE_MEMORY],
            oversize_next: 0,
            recovery: cfg.recovery.clone().map(|recovery| {
                let sealer = cfg.secret.as_ref().map(|s| s.sealer(Direction::Receiver));
                Recovery::new(recovery, sealer)
            }),
            opener: cfg.secret.as_ref().map(|s| s.opener(Direction::Relay)),
            cutoff: None,
            upstream_down: None,
            fragment_opened: None,
            cfg,
        }
    }

    /// The configuration in effect (window rounded up, at least one slot).
    pub fn config(&self) -> &AccountingConfig {
        &self.cfg
    }

    /// Accounts one datagram received at `now`, handing every message it completes to `deliver`
    /// (borrowing the datagram, the opened datagram or a reassembly slot).
    pub fn on_datagram(
        &mut self,
        now: Instant,
        datagram: &[u8],
        deliver: &mut impl FnMut(Delivered<'_>),
    ) -> Event {
        self.counters.datagrams += 1;
        // Out for the call, so what they lend (the opened datagram) and what the delivery
        // callback reaches can live beside the accounting's own state.
        let mut opener = self.opener.take();
        let mut recovery = self.recovery.take();
        let event = match unseal(opener.as_mut(), datagram) {
            Ok(datagram) => {
                let event = self.account(now, datagram, &mut |d| {
                    if let Some(recovery) = &mut recovery {
                        recovery.on_delivered(now, d.epoch, d.sequence, d.retransmitted);
                    }
                    deliver(d);
                });
                if let (Some(recovery), Event::Unavailable { .. }) = (&mut recovery, event) {
                    recovery.on_unavailable(datagram);
                }
                event
            }
            Err(reason) => self.dropped(reason),
        };
        self.opener = opener;
        self.recovery = recovery;
        if let Some(recovery) = &mut self.recovery {
            if let Some((first, end)) = self.sequences.take_opened() {
                recovery.on_gap(now, self.epochs.current().unwrap_or(0), first, end);
            }
            if let Some((epoch, sequence)) = self.fragment_opened.take() {
                recovery.on_incomplete(now, epoch, sequence);
            }
        }
        event
    }

    /// When [`Accounting::handle_timeout`] has something to do (a NAK is due).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.recovery.as_ref()?.poll_timeout()
    }

    /// Sends the NAKs due at `now` through `send` (to the relay the datagrams came from).
    pub fn handle_timeout(&mut self, now: Instant, send: &mut impl FnMut(&[u8])) {
        let Some(recovery) = &mut self.recovery else {
            return;
        };
        let (sequences, epoch) = (&self.sequences, self.epochs.current());
        recovery.handle_timeout(
            now,
            &|e, seq| Some(e) == epoch && sequences.is_missing(seq),
            send,
        );
    }

    /// The run is over: nothing past the sequences expected so far is accounted any more
    /// (`after_close`), while recovery may still fill the gaps below and fragments still in
    /// flight may complete their messages. Returns how many of those are under way, to wait for.
    pub fn close(&mut self) -> usize {
        self.cutoff = Some(u64::try_from(self.sequences.end()).unwrap_or(u64::MAX));
        self.under_way()
    }

    /// Gaps recovery is still asking for, and messages whose fragments are still coming.
    pub fn under_way(&self) -> usize {
        self.recovery.as_ref().map_or(0, Recovery::open_gaps) + self.reassembly.open_messages()
    }

    /// What recovery did (`None` with recovery off).
    pub fn recovery(&self) -> Option<&Recovery> {
        self.recovery.as_ref()
    }

    /// What recovery counted (`None` with recovery off).
    pub fn recovery_stats(&self) -> Option<RecoveryStats> {
        self.recovery.as_ref().map(Recovery::stats)
    }

    fn account(
        &mut self,
        now: Instant,
        datagram: &[u8],
        deliver: &mut impl FnMut(Delivered<'_>),
    ) -> Event {
        let datagram = match Header::decode(datagram) {
            Ok(decoded) => decoded,
            Err(error) => return self.dropped(DropReason::Malformed(error)),
        };
        let header = datagram.header;
        self.counters.retransmissions += u64::from(header.is_retransmission());
        let mut stride = 0;
        let mut gap = None;
        match header.kind {
            Kind::Data if header.is_fragment() => {
                let len = datagram.blocks().next().map_or(0, |(block, _)| block.len);
                match fragment_stride(&header, len) {
                    Some(s) => stride = s,
                    None => return self.dropped(DropReason::Malformed(WireError::BadFragment)),
                }
            }
            Kind::Data
                if header
                    .sequence
                    .checked_add(u64::from(header.count) - 1)
                    .is_none() =>
            {
                return self.dropped(DropReason::Malformed(WireError::BadBlocks))
            }
            Kind::UpstreamGap => match UpstreamGap::decode(datagram.body) {
                Ok(g) => gap = Some(g),
                Err(error) => return self.dropped(DropReason::Malformed(error)),
            },
            // Requests and probes are for relays and reflectors, never for a receiver.
            Kind::Nak | Kind::Probe | Kind::ProbeReply => {
                return self.dropped(DropReason::Unexpected)
            }
            _ => {}
        }
        if let Err(reason) = self.enter_epoch(now, &header) {
            return self.dropped(reason);
        }
        self.note_generation(header.upstream_generation);
        match (header.kind, gap) {
            (Kind::Heartbeat, _) => {
                self.counters.heartbeats += 1;
                let next = self
                    .cutoff
                    .map_or(header.sequence, |c| header.sequence.min(c));
                self.sequences.expect_until(next);
                self.sync_lost();
                let down = HeartbeatBody::decode(datagram.body).ok().flatten();
                self.upstream_down = down.map(|since| (since, header.relay_tx_ns));
                Event::Heartbeat {
                    epoch: header.epoch,
                    next_sequence: header.sequence,
                    upstream_down_since_ns: down,
                }
            }
            (Kind::UpstreamGap, Some(gap)) => {
                self.upstream_down = None;
                self.upstream_gap(&header, gap)
            }
            (Kind::Unavailable, _) => {
                self.counters.unavailable += 1;
                Event::Unavailable {
                    epoch: header.epoch,
                }
            }
            (Kind::Data, _) => {
                if !header.is_retransmission() {
                    // Live data: the exchange is up.
                    self.upstream_down = None;
                }
                if header.is_fragment() {
                    self.fragment(&datagram, stride, deliver)
                } else {
                    self.packed(&datagram, deliver)
                }
            }
            _ => self.dropped(DropReason::Malformed(WireError::BadControlPayload)),
        }
    }

    /// End of run: every sequence still missing up to the expected end (the highest sequence
    /// seen or the last heartbeat's next sequence) counts as lost, and open reassembly slots are
    /// evicted as incomplete. Calling it again only adds what went missing since.
    pub fn finish(&mut self) {
        self.counters.upstream_down_at_end_ns = self
            .upstream_down
            .map_or(0, |(since, said_at)| said_at.saturating_sub(since));
        self.counters.incomplete_messages += self.reassembly.evict_all();
        self.sequences.resolve_missing();
        self.sync_lost();
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Per-epoch accounting: the last [`PAST_MEMORY`] epochs left, then the current one.
    pub fn epoch_summaries(&self) -> impl Iterator<Item = EpochSummary> + '_ {
        self.past.iter().copied().chain(
            self.epochs
                .current()
                .map(|epoch| self.current_summary(epoch)),
        )
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

    fn dropped(&mut self, reason: DropReason) -> Event {
        self.count_drop(reason);
        Event::Dropped(reason)
    }

    fn count_drop(&mut self, reason: DropReason) {
        let c = &mut self.counters;
        match reason {
            DropReason::Malformed(error) => c.malformed.count(error),
            DropReason::Duplicate => c.duplicates += 1,
            DropReason::DuplicateFragment => c.duplicate_fragments += 1,
            DropReason::TooOld => c.too_old += 1,
            DropReason::BeforeStart => c.before_start += 1,
            DropReason::StaleEpoch => c.stale_epoch += 1,
            DropReason::UnconfirmedEpoch => c.unconfirmed_epoch += 1,
            // Counted once per message by `oversize`.
            DropReason::MessageTooLarge => {}
            DropReason::Unexpected => c.unexpected += 1,
            DropReason::AfterClose => c.after_close += 1,
            DropReason::Unsealed => c.unsealed += 1,
            DropReason::BadSeal => c.bad_seal += 1,
            DropReason::SealedWithoutKey => c.sealed_without_key += 1,
        }
    }

    fn sync_lost(&mut self) {
        self.counters.lost = self.lost_before.saturating_add(self.sequences.lost());
    }

    /// Follows the datagram's epoch if it is the current one, the first, or a confirmed
    /// takeover; `Err` with the drop otherwise.
    fn enter_epoch(&mut self, now: Instant, header: &Header) -> Result<(), DropReason> {
        let previous = self.epochs.current();
        match self.epochs.classify(now, header.epoch, header.sequence) {
            Verdict::Current => return Ok(()),
            Verdict::Stale => return Err(DropReason::StaleEpoch),
            Verdict::Unconfirmed => return Err(DropReason::UnconfirmedEpoch),
            Verdict::First => self.start_epoch(),
            Verdict::Takeover { outage, lowest } => {
                if let Some(previous) = previous {
                    self.end_epoch(previous);
                }
                self.start_epoch();
                let c = &mut self.counters;
                c.relay_restarts += 1;
                c.relay_restart_outage_ns = c
                    .relay_restart_outage_ns
                    .saturating_add(u64::try_from(outage.as_nanos()).unwrap_or(u64::MAX));
                // A relay that restarted numbers from 1: when what it sent while unconfirmed
                // starts near there, all of it is expected (and asked for), not just what came
                // after the takeover.
                if lowest <= self.cfg.window {
                    self.sequences.start_at(1);
                }
            }
        }
        Ok(())
    }

    /// The epoch left: what is still missing is lost, open reassemblies incomplete.
    fn end_epoch(&mut self, epoch: u32) {
        self.counters.incomplete_messages += self.reassembly.evict_all();
        self.sequences.resolve_missing();
        self.sync_lost();
        self.lost_before = self.counters.lost;
        if self.past.len() == PAST_MEMORY {
            self.past.pop_front();
        }
        let summary = self.current_summary(epoch);
        self.past.push_back(summary);
    }

    fn start_epoch(&mut self) {
        self.counters.epochs += 1;
        self.sequences.reset();
        self.generation = None;
        self.gap_generations.clear();
        self.upstream_down = None;
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

    fn upstream_gap(&mut self, header: &Header, gap: UpstreamGap) -> Event {
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
}

/// The datagram to account: opened with the key if there is one. A datagram that is not ours at
/// all goes on to be counted malformed.
fn unseal<'a>(opener: Option<&'a mut Opener>, datagram: &'a [u8]) -> Result<&'a [u8], DropReason> {
    match opener {
        Some(opener) => match opener.open(datagram) {
            Ok(opened) => Ok(opened),
            Err(OpenError::Malformed(_)) => Ok(datagram),
            Err(OpenError::NotSealed) => Err(DropReason::Unsealed),
            Err(OpenError::BadSeal) => Err(DropReason::BadSeal),
        },
        None if Header::peek(datagram).is_ok_and(|h| h.is_sealed()) => {
            Err(DropReason::SealedWithoutKey)
        }
        None => Ok(datagram),
    }
}

#[cfg(test)]
mod tests;
