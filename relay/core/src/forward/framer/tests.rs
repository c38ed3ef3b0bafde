//! The framer's datagrams, decoded with the wire format's own validator.

use relay_wire::{Datagram, BLOCK_HEADER_LEN, SEAL_LEN};

use super::*;

/// Every datagram emitted so far, owned.
#[derive(Default)]
struct Sent(Vec<Vec<u8>>);

impl Sent {
    fn emit(&mut self) -> impl FnMut(&[u8]) + '_ {
        |d: &[u8]| self.0.push(d.to_vec())
    }

    fn decoded(&self) -> Vec<Datagram<'_>> {
        self.0.iter().map(|d| Header::decode(d).unwrap()).collect()
    }
}

fn framer(budget: usize) -> Framer {
    let mut framer = Framer::new(9, budget, TimeUnit::Millis, false).unwrap();
    framer.on_upstream_open(None, &mut |_| panic!("no gap on the first connection"));
    framer
}

#[test]
fn messages_ready_together_share_a_datagram_with_their_own_sequences() {
    let mut f = framer(DEFAULT_DATAGRAM_BUDGET);
    let mut sent = Sent::default();
    for i in 0..3u8 {
        let seq = f
            .frame_message(&[b'a' + i; 10], false, 7, &mut sent.emit())
            .unwrap();
        assert_eq!(seq, u64::from(i) + 1);
    }
    assert!(
        sent.0.is_empty(),
        "nothing waits, but nothing leaves before the flush"
    );
    f.flush(&mut sent.emit());
    f.flush(&mut sent.emit());
    let decoded = sent.decoded();
    assert_eq!(decoded.len(), 1, "one pack, flushed once");
    let h = decoded[0].header;
    assert_eq!(
        (h.kind, h.sequence, h.count, h.epoch, h.upstream_generation),
        (Kind::Data, 1, 3, 9, 1)
    );
    let payloads: Vec<&[u8]> = decoded[0].blocks().map(|(_, p)| p).collect();
    assert_eq!(payloads, [&[b'a'; 10][..], &[b'b'; 10], &[b'c'; 10]]);
    assert!(decoded[0].blocks().all(|(b, _)| b.relay_rx_ns == 7));

    let mut beat = Sent::default();
    f.heartbeat(None, &mut beat.emit());
    let beats = beat.decoded();
    assert_eq!(
        (beats[0].header.kind, beats[0].header.sequence),
        (Kind::Heartbeat, 4)
    );
}

#[test]
fn a_full_pack_goes_out_before_the_next_message() {
    // Room for two 40-byte messages per datagram.
    let budget = HEADER_LEN + 2 * (BLOCK_HEADER_LEN + 40);
    let mut f = framer(budget);
    let mut sent = Sent::default();
    for _ in 0..5 {
        f.frame_message(&[1; 40], false, 1, &mut sent.emit())
            .unwrap();
    }
    assert_eq!(
        sent.0.len(),
        2,
        "two full packs left while the fifth waited"
    );
    f.flush(&mut sent.emit());
    let firsts: Vec<(u64, u16)> = sent
        .decoded()
        .iter()
        .map(|d| (d.header.sequence, d.header.count))
        .collect();
    assert_eq!(firsts, [(1, 2), (3, 2), (5, 1)]);
    assert!(sent.0.iter().all(|d| d.len() <= budget));
}

#[test]
fn event_time_is_carried_in_ns_with_its_unit() {
    let mut f = Framer::new(1, DEFAULT_DATAGRAM_BUDGET, TimeUnit::Micros, false).unwrap();
    let mut sent = Sent::default();
    f.frame_message(
        br#"{"e":"trade","E":1700000000123456,"s":"BTCUSDT"}"#,
        true,
        7,
        &mut sent.emit(),
    )
    .unwrap();
    f.frame_message(
        br#"{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}"#,
        false,
        7,
        &mut sent.emit(),
    )
    .unwrap();
    f.flush(&mut sent.emit());
    let decoded = sent.decoded();
    let blocks: Vec<Block> = decoded[0].blocks().map(|(b, _)| b).collect();
    assert!(blocks[0].has_event_time());
    assert_ne!(blocks[0].flags & message_flags::EVENT_TIME_MICROS, 0);
    assert_ne!(blocks[0].flags & message_flags::BINARY, 0);
    assert_eq!(blocks[0].event_time_ns, 1_700_000_000_123_456_000);
    assert!(
        !blocks[1].has_event_time(),
        "bookTicker has no E; none may be invented"
    );
    assert_eq!(blocks[1].event_time_ns, 0);
}

#[test]
fn large_messages_split_into_fragments_at_once() {
    let budget = 200;
    let mut f = framer(budget);
    let mut sent = Sent::default();
    f.frame_message(b"small", false, 1, &mut sent.emit())
        .unwrap();
    let payload: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let seq = f
        .frame_message(&payload, false, 2, &mut sent.emit())
        .unwrap();
    assert_eq!(seq, 2);
    let max = budget - HEADER_LEN - BLOCK_HEADER_LEN;
    assert_eq!(
        sent.0.len(),
        1 + 1000usize.div_ceil(max),
        "the pack first, then every fragment"
    );
    let decoded = sent.decoded();
    assert_eq!(
        (decoded[0].header.sequence, decoded[0].header.count),
        (1, 1)
    );
    let mut rebuilt = vec![0u8; payload.len()];
    for d in &decoded[1..] {
        let h = d.header;
        assert!(h.is_fragment());
        assert_eq!((h.sequence, h.count, h.message_len), (2, 1, 1000));
        let (block, bytes) = d.blocks().next().unwrap();
        assert_eq!(block.relay_rx_ns, 2);
        let at = h.fragment_offset as usize;
        rebuilt[at..at + bytes.len()].copy_from_slice(bytes);
    }
    assert_eq!(rebuilt, payload);
    assert!(sent.0.iter().all(|d| d.len() <= budget));
}

#[test]
fn a_reconnect_is_announced_flagged_and_flushes_the_old_connection_first() {
    let mut f = framer(DEFAULT_DATAGRAM_BUDGET);
    let mut sent = Sent::default();
    f.frame_message(b"a", false, 1, &mut sent.emit()).unwrap();
    let notice = UpstreamGap {
        down_at_ns: 10,
        up_at_ns: 30,
    };
    f.on_upstream_open(Some(notice), &mut sent.emit());
    f.frame_message(b"b", false, 1, &mut sent.emit()).unwrap();
    f.frame_message(b"c", false, 1, &mut sent.emit()).unwrap();
    f.flush(&mut sent.emit());
    let d = sent.decoded();
    assert_eq!(d.len(), 3);
    assert_eq!(
        (d[0].header.kind, d[0].header.upstream_generation),
        (Kind::Data, 1)
    );
    assert_eq!(
        (d[1].header.kind, d[1].header.upstream_generation),
        (Kind::UpstreamGap, 2)
    );
    assert_eq!(UpstreamGap::decode(d[1].body).unwrap(), notice);
    assert_eq!(
        (d[2].header.sequence, d[2].header.upstream_generation),
        (2, 2)
    );
    let flags: Vec<u16> = d[2].blocks().map(|(b, _)| b.flags).collect();
    assert_ne!(flags[0] & message_flags::AFTER_RECONNECT, 0);
    assert_eq!(flags[1] & message_flags::AFTER_RECONNECT, 0);
}

#[test]
fn datagrams_to_seal_keep_room_for_the_seal() {
    let mut f = Framer::new(1, 200, TimeUnit::Millis, true).unwrap();
    let mut sent = Sent::default();
    let max = 200 - HEADER_LEN - BLOCK_HEADER_LEN - SEAL_LEN;
    f.frame_message(&vec![3u8; max], false, 1, &mut sent.emit())
        .unwrap();
    f.heartbeat(None, &mut sent.emit());
    let d = sent.decoded();
    assert_eq!(sent.0[0].len(), 200);
    assert!(d.iter().all(|d| d.header.is_sealed()));
    assert_eq!(d[0].header.count, 1, "exactly one full block");
}

#[test]
fn budget_is_validated() {
    let min = HEADER_LEN + BLOCK_HEADER_LEN + 1;
    assert!(Framer::new(1, min - 1, TimeUnit::Millis, false).is_err());
    assert!(Framer::new(1, min, TimeUnit::Millis, false).is_ok());
    assert!(Framer::new(1, min, TimeUnit::Millis, true).is_err());
    assert!(Framer::new(1, MAX_DATAGRAM + 1, TimeUnit::Millis, false).is_err());
    let err = Framer::new(1, 10, TimeUnit::Millis, false)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains(&format!("between {min} and")), "{err}");
}
