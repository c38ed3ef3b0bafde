//! Datagrams of any bytes into a reflector and a prober (`relay probe`), with and without a key:
//! nothing may panic, a reflector's reply is never longer than what it answered, every datagram
//! lands in exactly one of the reflector's counters, and the prober's books stay whole. The input
//! is split into datagrams by a 2-byte length before each.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use relay_core::probe::{Prober, ProberConfig, Reflector, MIN_PROBE_LEN};
use relay_core::seal::Secret;
use relay_core::wire::SEAL_LEN;

fuzz_target!(|input: &[u8]| {
    let Some((&mode, mut rest)) = input.split_first() else {
        return;
    };
    let secret = (mode & 1 == 1).then(|| Secret::new(&[7u8; 32]).expect("32 bytes"));
    let mut reflector = Reflector::new(secret.as_ref());
    let mut prober = Prober::new(
        ProberConfig {
            targets: vec!["a".into(), "b".into()],
            count: 8,
            interval: Duration::from_millis(1),
            length: MIN_PROBE_LEN + if secret.is_some() { SEAL_LEN } else { 0 },
            timeout: Duration::from_millis(5),
            epoch: u32::from(mode),
        },
        secret.as_ref(),
    )
    .expect("a valid config");
    let from: SocketAddr = "10.0.0.1:9".parse().expect("address");
    let start = Instant::now();
    let (mut out, mut probe) = (vec![0u8; 70_000], vec![0u8; 2048]);
    let mut datagrams = 0u64;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let (datagram, tail) = rest[2..].split_at(len);
        rest = tail;
        let now = start + Duration::from_millis(datagrams);
        while prober.poll_transmit(now, datagrams, &mut probe).is_some() {}
        if let Some(n) = reflector.handle(from, datagram, datagrams, datagrams + 1, &mut out) {
            assert!(n <= datagram.len(), "a reply longer than its probe");
        }
        prober.handle_datagram(usize::from(mode >> 1) % 3, datagram, datagrams);
        prober.handle_timeout(now);
        while prober.poll_record().is_some() {}
        datagrams += 1;
    }
    let s = reflector.stats();
    assert_eq!(
        s.answered + s.malformed + s.not_a_probe + s.unsealed + s.bad_seal + s.sealed_without_key,
        datagrams,
        "{s:?}"
    );
    for t in prober.summaries() {
        assert!(t.received + t.lost <= t.sent, "{t:?}");
    }
});
