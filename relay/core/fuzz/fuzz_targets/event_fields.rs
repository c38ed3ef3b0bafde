//! The exchange-message scanners on any bytes: event time, event type, event identity, stream
//! name, the combined-stream wrapper and the message classification; and the local endpoint's
//! request handling (`--serve-ws`) on the same bytes as a client's text. Nothing may panic, and
//! what they find must be in the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_core::binance::stream::{wrap_into, Envelope, StreamNames};
use relay_core::binance::{classify, event_id, event_time, event_type, stream_name, TimeUnit};
use relay_core::serve::Session;

fuzz_target!(|payload: &[u8]| {
    let _ = event_time(payload);
    if let Some(kind) = event_type(payload).filter(|k| !k.is_empty()) {
        assert!(payload.windows(kind.len()).any(|w| w == kind));
    }
    let _ = event_id(payload);
    let name = stream_name(payload);
    assert!(name.len() <= payload.len() + "bookTicker ?".len());
    let _ = classify(payload);
    // The wrapper, taken apart and put back together, is the message itself.
    let envelope = Envelope::of(payload);
    let data = &payload[envelope.data.clone()];
    if let Some(stream) = envelope.stream {
        let mut again = Vec::new();
        wrap_into(stream, data, &mut again);
        assert_eq!(Envelope::of(&again).stream, Some(stream));
        assert_eq!(&again[Envelope::of(&again).data], data);
    }
    let names = StreamNames::new(["btcusdt@trade", "btcusdt@depth@100ms"].map(String::from));
    let mut out = Vec::new();
    let _ = names.name_into(payload, &mut out);
    if let Ok(text) = std::str::from_utf8(payload) {
        let _ = Session::open(text, Some(TimeUnit::Millis));
        let mut session = Session::open("/ws", None).expect("a plain raw session");
        let answer = session.handle(text);
        assert!(serde_json::from_str::<serde_json::Value>(&answer.reply).is_ok());
    }
});
