use super::*;
use relay_wire::{flags, Block, Kind, Writer};

fn secret(byte: u8) -> Secret {
    Secret::new(&[byte; 32]).unwrap()
}

/// A data datagram with room for a seal, as the framer builds it.
fn unsealed(payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 1472];
    let header = Header {
        flags: flags::SEALED,
        relay_tx_ns: 1_700_000_000_000_000_000,
        ..Header::new(Kind::Data, 0xdead_beef, 1, 100)
    };
    let mut w = Writer::new(&mut buf, header);
    assert!(w.push_block(Block::default(), payload));
    let len = w.finish();
    buf.truncate(len);
    buf
}

#[test]
fn a_sealed_datagram_hides_its_body_and_opens_to_what_was_sealed() {
    let s = secret(1);
    let plain = unsealed(b"{\"e\":\"trade\",\"p\":\"42000.1\"}");
    let mut d = plain.clone();
    assert!(s.sealer(Direction::Relay).seal(&mut d));
    assert_eq!(
        d[..HEADER_LEN],
        plain[..HEADER_LEN],
        "the header stays readable"
    );
    assert!(
        !d.windows(5).any(|w| w == b"trade"),
        "the body is encrypted"
    );
    let mut opener = s.opener(Direction::Relay);
    let opened = opener.open(&d).unwrap();
    assert_eq!(
        opened[..opened.len() - SEAL_LEN],
        plain[..plain.len() - SEAL_LEN]
    );
    let decoded = Header::decode(opened).unwrap();
    assert_eq!(
        decoded.blocks().next().unwrap().1,
        b"{\"e\":\"trade\",\"p\":\"42000.1\"}"
    );
}

#[test]
fn every_changed_bit_another_key_or_the_other_direction_fails_to_open() {
    let s = secret(1);
    let mut d = unsealed(b"payload");
    assert!(s.sealer(Direction::Relay).seal(&mut d));
    let mut opener = s.opener(Direction::Relay);
    for at in 0..d.len() {
        for bit in 0..8 {
            let mut changed = d.clone();
            changed[at] ^= 1 << bit;
            match opener.open(&changed) {
                Err(OpenError::BadSeal) | Err(OpenError::Malformed(_)) => {}
                // Clearing the sealed flag changes the length rule: malformed or not sealed.
                Err(OpenError::NotSealed) => assert_eq!(at, offset::FLAGS),
                Ok(_) => panic!("byte {at} bit {bit} changed and still opened"),
            }
        }
    }
    assert_eq!(
        secret(2).opener(Direction::Relay).open(&d),
        Err(OpenError::BadSeal)
    );
    assert_eq!(
        s.opener(Direction::Receiver).open(&d),
        Err(OpenError::BadSeal),
        "a relay datagram never opens as a receiver's request"
    );
}

#[test]
fn the_same_datagram_sealed_twice_gets_two_nonces() {
    let s = secret(3);
    let mut sealer = s.sealer(Direction::Relay);
    let (mut a, mut b) = (unsealed(b"same"), unsealed(b"same"));
    assert!(sealer.seal(&mut a) && sealer.seal(&mut b));
    assert_eq!(
        seal_counter(&b).unwrap(),
        seal_counter(&a).unwrap().wrapping_add(1)
    );
    assert_ne!(a, b, "a new nonce gives another ciphertext and tag");
    let mut other = s.sealer(Direction::Relay);
    let mut c = unsealed(b"same");
    assert!(other.seal(&mut c));
    assert_ne!(
        seal_counter(&c),
        seal_counter(&a),
        "each sealer starts at a random counter"
    );
}

#[test]
fn the_construction_is_the_documented_one() {
    // Independent of `Secret::key`: HKDF (RFC 5869) by hand over HMAC-SHA-256, then a raw
    // AES-256-GCM key, the documented nonce (epoch, counter) and the header as additional data.
    use ring::hmac;
    let bytes = [0x5au8; 40];
    let mut d = unsealed(b"hello");
    assert!(Secret::new(&bytes)
        .unwrap()
        .sealer(Direction::Relay)
        .seal(&mut d));
    let prk = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, b"relay-wire v2"), &bytes);
    let okm = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, prk.as_ref()),
        b"relay datagrams\x01",
    );
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, okm.as_ref()).unwrap());
    let seal_at = d.len() - SEAL_LEN;
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(&0xdead_beefu32.to_le_bytes());
    nonce[4..].copy_from_slice(&d[seal_at..seal_at + 8]);
    let tag: [u8; 16] = d[seal_at + 8..].try_into().unwrap();
    let (header, rest) = d.split_at_mut(HEADER_LEN);
    let body = key
        .open_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&*header),
            Tag::from(tag),
            &mut rest[..seal_at - HEADER_LEN],
            0..,
        )
        .expect("opens with the hand-derived key");
    assert_eq!(&body[relay_wire::BLOCK_HEADER_LEN..], b"hello");
}

#[test]
fn only_sealable_datagrams_are_sealed_and_only_sealed_ones_open() {
    let s = secret(1);
    let mut buf = vec![0u8; 256];
    let len = Writer::new(&mut buf, Header::new(Kind::Heartbeat, 7, 1, 5)).finish();
    buf.truncate(len);
    let before = buf.clone();
    assert!(!s.sealer(Direction::Relay).seal(&mut buf));
    assert_eq!(buf, before);
    assert_eq!(
        s.opener(Direction::Relay).open(&buf),
        Err(OpenError::NotSealed)
    );
    assert_eq!(
        s.opener(Direction::Relay).open(b"GET /"),
        Err(OpenError::Malformed(WireError::Foreign))
    );
    assert!(!s.sealer(Direction::Relay).seal(&mut [0u8; 10]));
}

#[test]
fn secrets_and_key_files_outside_the_bounds_are_refused_with_the_fix() {
    assert!(Secret::new(&[0; 31]).is_none());
    assert!(Secret::new(&[0; MAX_SECRET_LEN + 1]).is_none());
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short");
    std::fs::write(&short, b"not long enough\n").unwrap();
    let err = Secret::from_file(&short).unwrap_err().to_string();
    assert!(err.contains("holds 16 bytes"), "{err}");
    assert!(err.contains("head -c 32 /dev/urandom"), "{err}");
    let err = Secret::from_file(&dir.path().join("missing"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot read the key file"), "{err}");
    let huge = dir.path().join("huge");
    std::fs::write(&huge, vec![1u8; 1 << 20]).unwrap();
    let err = Secret::from_file(&huge).unwrap_err().to_string();
    assert!(
        err.contains(&format!("holds {} bytes", MAX_SECRET_LEN + 1)),
        "{err}"
    );
    let good = dir.path().join("good");
    std::fs::write(&good, [7u8; 32]).unwrap();
    assert_eq!(Secret::from_file(&good).unwrap(), secret(7));
    assert_eq!(
        format!("{:?}", secret(7)),
        "Secret(32 bytes)",
        "never printed"
    );
}
