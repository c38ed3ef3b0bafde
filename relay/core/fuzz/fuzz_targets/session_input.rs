//! What an exchange (or anyone on the path) sends to the relay's session, over plain ws://: any
//! bytes, in any chunks, through the WebSocket handshake and frames. The session may end the
//! connection with an error, never panic, and never keep more than it should.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use relay_core::binance::Endpoint;
use relay_core::session::{Session, SessionConfig};

/// A valid handshake reply, so most inputs reach the frame parser.
const RESPONSE: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ";

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let config = SessionConfig {
        endpoint: Endpoint::parse("ws://exchange.test:9443/ws/btcusdt@trade").expect("a valid URL"),
        tls: None,
        subscribe: vec!["btcusdt@trade".into()],
        client_messages_per_sec: 4,
    };
    let Ok(mut session) = Session::start(&config) else {
        return;
    };
    let mut out = Vec::new();
    session.take_output(&mut out);
    let now = Instant::now();
    // Mode bit 0: begin with a well-formed handshake reply prefix (its accept key is wrong, so
    // only inputs that complete it plausibly get further).
    let mut feed = Vec::new();
    if mode & 1 == 1 {
        feed.extend_from_slice(RESPONSE);
    }
    feed.extend_from_slice(rest);
    let chunk = usize::from(mode >> 1).max(1);
    for (i, piece) in feed.chunks(chunk).enumerate() {
        let at = now + Duration::from_millis(i as u64);
        if session.handle_input(piece, at, &mut |_| {}).is_err() {
            return;
        }
        let _ = session.handle_timeout(at);
        out.clear();
        session.take_output(&mut out);
    }
});
