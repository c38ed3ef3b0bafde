//! The wire format's encoder and validator against hand-built datagrams.

use std::vec;
use std::vec::Vec;

use super::*;

const EPOCH: u32 = 0xdead_beef;

fn block(rx: u64) -> Block {
    Block {
        len: 0,
        flags: message_flags::EVENT_TIME | message_flags::EVENT_TIME_MICROS,
        relay_rx_ns: rx,
        event_time_ns: rx - 1_000,
    }
}

/// A data datagram of `payloads` packed from `first`, in a `budget`-byte buffer.
fn packed(first: u64, payloads: &[&[u8]], budget: usize) -> ([u8; 2048], usize) {
    let mut buf = [0u8; 2048];
    let mut writer = Writer::new(&mut buf[..budget], Header::new(Kind::Data, EPOCH, 3, first));
    for (i, payload) in payloads.iter().enumerate() {
        assert!(writer.push_block(block(1_000_000 + i as u64), payload));
    }
    let len = writer.finish();
    (buf, len)
}

#[test]
fn packed_blocks_round_trip_with_their_own_sequences() {
    let (buf, len) = packed(41, &[b"one", b"", b"three"], 1472);
    assert_eq!(len, HEADER_LEN + 3 * BLOCK_HEADER_LEN + 8);
    let datagram = Header::decode(&buf[..len]).unwrap();
    let h = datagram.header;
    assert_eq!(
        (h.kind, h.epoch, h.upstream_generation),
        (Kind::Data, EPOCH, 3)
    );
    assert_eq!(
        (h.sequence, h.count, h.body_len),
        (41, 3, (len - HEADER_LEN) as u16)
    );
    assert!(!h.is_fragment() && !h.is_sealed());
    let blocks: Vec<(Block, &[u8])> = datagram.blocks().collect();
    assert_eq!(blocks.len(), 3);
    assert_eq!(blocks[0].1, b"one");
    assert_eq!(blocks[1].1, b"");
    assert_eq!(blocks[2].1, b"three");
    assert_eq!(blocks[2].0.relay_rx_ns, 1_000_002);
    assert_eq!(blocks[2].0.len, 5);
    assert!(blocks[0].0.has_event_time());
    assert_eq!(h.datagram_len(), len);
}

#[test]
fn fields_sit_at_documented_offsets() {
    let (buf, _) = packed(0x0102_0304_0506_0708, &[b"hello"], 1472);
    assert_eq!(&buf[offset::MAGIC..4], b"RLAY");
    assert_eq!(buf[offset::VERSION], 2);
    assert_eq!(u32_at(&buf, offset::EPOCH), EPOCH);
    assert_eq!(u64_at(&buf, offset::SEQUENCE), 0x0102_0304_0506_0708);
    assert_eq!(u16_at(&buf, offset::FRAGMENT_INDEX), 0);
    assert_eq!(u16_at(&buf, offset::FRAGMENT_COUNT), 1);
    assert_eq!(u16_at(&buf, offset::COUNT), 1);
    assert_eq!(
        u16_at(&buf, offset::BODY_LEN),
        (BLOCK_HEADER_LEN + 5) as u16
    );
    assert_eq!(u16_at(&buf, HEADER_LEN), 5, "the block's len comes first");
    assert_eq!(&buf[HEADER_LEN + BLOCK_HEADER_LEN..][..5], b"hello");
}

#[test]
fn restamping_changes_only_the_send_time() {
    let (mut buf, len) = packed(7, &[b"hello"], 1472);
    let before = Header::decode(&buf[..len]).unwrap().header;
    stamp_relay_tx_ns(&mut buf[..len], 42);
    let after = Header::decode(&buf[..len]).unwrap().header;
    assert_eq!(
        after,
        Header {
            relay_tx_ns: 42,
            ..before
        }
    );
}

#[test]
fn marking_a_retransmission_sets_only_its_flag() {
    let (mut buf, len) = packed(7, &[b"hello"], 1472);
    let before = Header::decode(&buf[..len]).unwrap().header;
    mark_retransmission(&mut buf[..len]);
    let after = Header::decode(&buf[..len]).unwrap().header;
    assert!(after.is_retransmission() && !before.is_retransmission());
    assert_eq!(
        after,
        Header {
            flags: flags::RETRANSMISSION,
            ..before
        }
    );
}

#[test]
fn the_writer_keeps_to_the_budget() {
    let mut buf = [0u8; 200];
    let mut writer = Writer::new(&mut buf, Header::new(Kind::Data, 1, 1, 1));
    assert_eq!(writer.block_room(), 200 - HEADER_LEN - BLOCK_HEADER_LEN);
    assert!(
        !writer.push_block(Block::default(), &[0u8; 133]),
        "one byte too many"
    );
    assert!(writer.push_block(Block::default(), &[7u8; 100]));
    assert_eq!(
        writer.block_room(),
        200 - HEADER_LEN - 2 * BLOCK_HEADER_LEN - 100
    );
    assert!(writer.push_block(Block::default(), &[8u8; 12]));
    assert_eq!(writer.block_room(), 0);
    assert!(!writer.push_block(Block::default(), &[1]));
    assert!(
        !writer.push_block(Block::default(), &[]),
        "no room for a block header"
    );
    assert_eq!(writer.count(), 2);
    let so_far = writer.header();
    assert_eq!(
        (so_far.count, so_far.body_len),
        (2, 200 - HEADER_LEN as u16)
    );
    let resumed = Writer::resume(&mut buf, so_far);
    assert_eq!((resumed.count(), resumed.block_room()), (2, 0));
    assert_eq!(resumed.finish(), 200);
    assert!(Header::decode(&buf).is_ok());

    // A datagram to be sealed keeps room for the seal and leaves it zero for the sealer.
    let mut buf = [0xffu8; 200];
    let sealed = Header {
        flags: flags::SEALED,
        ..Header::new(Kind::Data, 1, 1, 1)
    };
    let mut writer = Writer::new(&mut buf, sealed);
    assert_eq!(
        writer.block_room(),
        200 - HEADER_LEN - BLOCK_HEADER_LEN - SEAL_LEN
    );
    assert!(writer.push_block(Block::default(), b"x"));
    let len = writer.finish();
    assert_eq!(len, HEADER_LEN + BLOCK_HEADER_LEN + 1 + SEAL_LEN);
    assert_eq!(&buf[len - SEAL_LEN..len], &[0u8; SEAL_LEN]);
    let datagram = Header::decode(&buf[..len]).unwrap();
    assert!(datagram.header.is_sealed());
    assert_eq!(datagram.body.len(), BLOCK_HEADER_LEN + 1);
    assert_eq!(Header::peek(&buf[..len]), Ok(datagram.header));
    assert_eq!(
        max_block_payload(1472, false),
        1472 - HEADER_LEN - BLOCK_HEADER_LEN
    );
    assert_eq!(
        max_block_payload(1472, true),
        1472 - HEADER_LEN - BLOCK_HEADER_LEN - SEAL_LEN
    );
    assert_eq!(max_block_payload(10, false), 0);
    assert_eq!(
        max_block_payload(usize::MAX, false),
        MAX_DATAGRAM - HEADER_LEN - BLOCK_HEADER_LEN
    );
}

#[test]
fn rejects_malformed_datagrams() {
    let (buf, len) = packed(5, &[b"hello", b"world"], 1472);
    assert_eq!(Header::decode(&[]), Err(WireError::Foreign));
    assert_eq!(Header::decode(b"GET / HTTP/1.1"), Err(WireError::Foreign));
    assert_eq!(
        Header::decode(&buf[..HEADER_LEN - 1]),
        Err(WireError::Truncated)
    );
    assert_eq!(
        Header::decode(&buf[..len - 1]),
        Err(WireError::LengthMismatch)
    );
    assert_eq!(
        Header::decode(&buf[..len + 1]),
        Err(WireError::LengthMismatch)
    );
    let edit = |f: &dyn Fn(&mut [u8])| {
        let mut copy = buf;
        f(&mut copy);
        Header::decode(&copy[..len]).map(|d| d.header)
    };
    assert_eq!(
        edit(&|b| b[offset::VERSION] = 1),
        Err(WireError::UnsupportedVersion(1)),
        "a version 1 datagram is a counted drop"
    );
    assert_eq!(
        edit(&|b| b[offset::KIND] = 9),
        Err(WireError::UnknownKind(9))
    );
    assert_eq!(
        edit(&|b| put(b, offset::FLAGS, &flags::SEALED.to_le_bytes())),
        Err(WireError::LengthMismatch),
        "a sealed flag without the seal's bytes"
    );
    assert_eq!(
        edit(&|b| put(b, offset::COUNT, &0u16.to_le_bytes())),
        Err(WireError::BadBlocks)
    );
    assert_eq!(
        edit(&|b| put(b, offset::COUNT, &1u16.to_le_bytes())),
        Err(WireError::BadBlocks),
        "bytes left over after the blocks"
    );
    assert_eq!(
        edit(&|b| put(b, offset::COUNT, &3u16.to_le_bytes())),
        Err(WireError::BadBlocks),
        "a block past the body"
    );
    assert_eq!(
        edit(&|b| put(b, HEADER_LEN, &6u16.to_le_bytes())),
        Err(WireError::BadBlocks),
        "a block length that does not tile the body"
    );
    assert_eq!(
        edit(&|b| put(b, offset::FRAGMENT_COUNT, &0u16.to_le_bytes())),
        Err(WireError::BadFragment)
    );
    assert_eq!(
        edit(&|b| {
            put(b, offset::FRAGMENT_COUNT, &2u16.to_le_bytes());
            put(b, offset::MESSAGE_LEN, &100u32.to_le_bytes());
        }),
        Err(WireError::BadFragment),
        "a fragment shares its datagram with nothing"
    );
}

/// A fragment datagram: `payload` at `offset` of a `message_len`-byte message.
fn fragment(index: u16, count: u16, offset: u32, message_len: u32, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 2048];
    let header = Header {
        message_len,
        fragment_offset: offset,
        fragment_index: index,
        fragment_count: count,
        ..Header::new(Kind::Data, EPOCH, 1, 9)
    };
    let mut writer = Writer::new(&mut buf, header);
    assert!(writer.push_block(block(5_000), payload));
    let len = writer.finish();
    buf.truncate(len);
    buf
}

#[test]
fn fragment_fields_are_checked() {
    let ok = fragment(1, 3, 10, 25, &[1; 10]);
    let h = Header::decode(&ok).unwrap().header;
    assert!(h.is_fragment());
    assert_eq!(
        (h.fragment_index, h.fragment_count, h.message_len),
        (1, 3, 25)
    );
    for bad in [
        fragment(3, 3, 10, 25, &[1; 10]), // index beyond the count
        fragment(2, 3, 20, 25, &[1; 10]), // past the message's end
        fragment(0, 1, 0, 10, &[1; 10]),  // not a fragment, but fragment fields set
        fragment(0, 1, 5, 0, &[1; 10]),   // not a fragment, but an offset
    ] {
        assert_eq!(
            Header::decode(&bad).map(|d| d.header),
            Err(WireError::BadFragment),
            "{bad:?}"
        );
    }
}

fn control(kind: Kind, body: &[u8], count: u16) -> Vec<u8> {
    let mut buf = vec![0u8; 2048];
    let mut writer = Writer::new(&mut buf, Header::new(kind, EPOCH, 1, 100));
    assert!(writer.push_body(body));
    let len = writer.finish();
    buf.truncate(len);
    if count > 0 {
        put(&mut buf, offset::COUNT, &count.to_le_bytes());
    }
    buf
}

#[test]
fn control_bodies_are_checked() {
    assert!(Header::decode(&control(Kind::Heartbeat, &[], 0)).is_ok());
    assert_eq!(
        Header::decode(&control(Kind::Heartbeat, b"x", 0)).map(|d| d.header),
        Err(WireError::BadControlPayload)
    );
    let gap = UpstreamGap {
        down_at_ns: 10,
        up_at_ns: 20,
    };
    let datagram = control(Kind::UpstreamGap, &gap.encode(), 0);
    assert_eq!(
        UpstreamGap::decode(Header::decode(&datagram).unwrap().body),
        Ok(gap)
    );
    assert_eq!(
        Header::decode(&control(Kind::UpstreamGap, &[0; 15], 0)).map(|d| d.header),
        Err(WireError::BadControlPayload)
    );
    assert_eq!(
        UpstreamGap::decode(&[0; 17]),
        Err(WireError::BadControlPayload)
    );
    assert!(
        Header::decode(&control(Kind::Heartbeat, &[], 0))
            .unwrap()
            .blocks()
            .next()
            .is_none(),
        "control datagrams have no blocks"
    );
}

#[test]
fn nak_ranges_round_trip_and_are_checked() {
    let mut buf = [0u8; 1472];
    let mut writer = Writer::new(&mut buf, Header::new(Kind::Nak, EPOCH, 0, 10));
    let ranges = [
        NakRange { first: 10, len: 3 },
        NakRange { first: 20, len: 1 },
    ];
    for r in ranges {
        assert!(writer.push_range(r));
    }
    let len = writer.finish();
    let datagram = Header::decode(&buf[..len]).unwrap();
    assert_eq!(datagram.header.count, 2);
    assert!(Ranges::of(datagram.body).eq(ranges));
    assert_eq!(ranges[0].end(), Some(13));

    let mut full = Writer::new(&mut buf, Header::new(Kind::Nak, EPOCH, 0, 0));
    for i in 0..MAX_NAK_RANGES as u64 {
        assert!(full.push_range(NakRange {
            first: i * 10,
            len: 1
        }));
    }
    assert!(
        !full.push_range(NakRange { first: 0, len: 1 }),
        "at most 64 ranges"
    );

    let mut empty = [0u8; NakRange::LEN];
    NakRange { first: 5, len: 0 }.encode(&mut empty);
    let mut overflow = [0u8; NakRange::LEN];
    NakRange {
        first: u64::MAX,
        len: 2,
    }
    .encode(&mut overflow);
    for (body, count) in [
        (&[][..], 0u16),
        (&empty[..], 1),
        (&overflow[..], 1),
        (&empty[..11], 1),
    ] {
        for kind in [Kind::Nak, Kind::Unavailable] {
            assert_eq!(
                Header::decode(&control(kind, body, count)).map(|d| d.header),
                Err(WireError::BadControlPayload),
                "{kind:?} {body:?}"
            );
        }
    }
}

#[test]
fn fragments_cover_the_message_exactly_once() {
    for (len, max) in [
        (0usize, 10usize),
        (1, 10),
        (10, 10),
        (11, 10),
        (25, 10),
        (1404 * 3, 1404),
    ] {
        let mut next = 0usize;
        for (seen, f) in fragments(len, max).unwrap().enumerate() {
            assert_eq!(f.offset as usize, next);
            assert!(f.len as usize <= max);
            assert_eq!(f.index as usize, seen);
            next += f.len as usize;
            assert_eq!(f.count as usize, len.div_ceil(max).max(1));
        }
        assert_eq!(next, len);
    }
    assert!(fragments(10, 0).is_err());
    assert!(fragments(u16::MAX as usize + 1, 1).is_err());
}
