//! The exchange-message scanners on any bytes: event time, event type, event identity, stream
//! name and the message classification. Nothing may panic, and what they find must be in the
//! input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_core::binance::{classify, event_id, event_time, event_type, stream_name};

fuzz_target!(|payload: &[u8]| {
    let _ = event_time(payload);
    if let Some(kind) = event_type(payload).filter(|k| !k.is_empty()) {
        assert!(payload.windows(kind.len()).any(|w| w == kind));
    }
    let _ = event_id(payload);
    let name = stream_name(payload);
    assert!(name.len() <= payload.len() + "bookTicker ?".len());
    let _ = classify(payload);
});
