//! The session against an in-memory tungstenite server: no sockets, no clock.

use super::*;
use crate::harness::pipe::Pipe;
use tungstenite::handshake::server::{NoCallback, ServerHandshake};

struct Harness {
    client: Session,
    server: WebSocket<Pipe>,
    events: Vec<String>,
    now: Instant,
}

fn describe(event: SessionEvent<'_>) -> String {
    match event {
        SessionEvent::Open => "open".into(),
        SessionEvent::Data { payload, binary } => format!(
            "data{}:{}",
            if binary { "(bin)" } else { "" },
            String::from_utf8_lossy(payload)
        ),
        SessionEvent::Reply(r) => format!("reply:{}", String::from_utf8_lossy(r)),
        SessionEvent::ServerShutdown => "shutdown".into(),
        SessionEvent::Ping => "ping".into(),
    }
}

impl Harness {
    fn new(subscribe: &[&str]) -> Harness {
        let config = SessionConfig {
            endpoint: Endpoint::parse("ws://127.0.0.1:9/ws/btcusdt@trade").unwrap(),
            tls: None,
            subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
            client_messages_per_sec: 4,
        };
        let mut client = Session::start(&config).unwrap();
        let mut pipe = Pipe::default();
        let mut hello = Vec::new();
        client.take_output(&mut hello);
        pipe.push_input(&hello);
        let mid = match tungstenite::accept(pipe) {
            Err(HandshakeError::Interrupted(mid)) => mid,
            Ok(ws) => return Harness::open(client, ws),
            Err(HandshakeError::Failure(e)) => panic!("{e}"),
        };
        let ws = finish_server_handshake(mid);
        Harness::open(client, ws)
    }

    fn open(client: Session, server: WebSocket<Pipe>) -> Harness {
        let mut h = Harness {
            client,
            server,
            events: Vec::new(),
            now: Instant::now(),
        };
        h.deliver_to_client();
        h
    }

    /// Moves the server's output into the client and collects the events.
    fn deliver_to_client(&mut self) {
        let bytes = self.server.get_mut().take_output();
        let events = &mut self.events;
        self.client
            .handle_input(&bytes, self.now, &mut |e| events.push(describe(e)))
            .unwrap();
    }

    /// Moves the client's output to the server and returns the messages it read.
    fn deliver_to_server(&mut self) -> Vec<Message> {
        let mut bytes = Vec::new();
        self.client.take_output(&mut bytes);
        self.server.get_mut().push_input(&bytes);
        let mut got = Vec::new();
        loop {
            match self.server.read() {
                Ok(m) => got.push(m),
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    return got
                }
                Err(e) => panic!("server read: {e}"),
            }
        }
    }

    fn send(&mut self, message: Message) {
        self.server.send(message).unwrap();
        self.deliver_to_client();
    }
}

fn finish_server_handshake(
    mut mid: MidHandshake<ServerHandshake<Pipe, NoCallback>>,
) -> WebSocket<Pipe> {
    loop {
        match mid.handshake() {
            Ok(ws) => return ws,
            Err(HandshakeError::Interrupted(m)) => mid = m,
            Err(HandshakeError::Failure(e)) => panic!("{e}"),
        }
    }
}

#[test]
fn handshake_then_data_in_order() {
    let mut h = Harness::new(&[]);
    assert_eq!(h.events, ["open"]);
    assert!(h.client.is_open());
    for i in 0..3 {
        h.server
            .write(Message::text(format!("{{\"e\":\"trade\",\"E\":{i}}}")))
            .unwrap();
    }
    h.server.flush().unwrap();
    h.deliver_to_client();
    h.send(Message::binary(vec![1u8, 2]));
    assert_eq!(
        h.events[1..],
        [
            "data:{\"e\":\"trade\",\"E\":0}",
            "data:{\"e\":\"trade\",\"E\":1}",
            "data:{\"e\":\"trade\",\"E\":2}",
            "data(bin):\u{1}\u{2}"
        ]
    );
}

#[test]
fn input_split_at_every_byte_loses_nothing() {
    let mut h = Harness::new(&[]);
    h.server
        .send(Message::text("{\"e\":\"trade\",\"E\":1}"))
        .unwrap();
    h.server
        .send(Message::text("{\"e\":\"trade\",\"E\":2}"))
        .unwrap();
    let bytes = h.server.get_mut().take_output();
    let mut events = Vec::new();
    for b in bytes.chunks(1) {
        h.client
            .handle_input(b, h.now, &mut |e| events.push(describe(e)))
            .unwrap();
    }
    assert_eq!(
        events,
        [
            "data:{\"e\":\"trade\",\"E\":1}",
            "data:{\"e\":\"trade\",\"E\":2}"
        ]
    );
}

#[test]
fn pings_get_matching_pongs() {
    let mut h = Harness::new(&[]);
    h.send(Message::Ping(b"keepalive-42".to_vec().into()));
    assert_eq!(h.events.last().unwrap(), "ping");
    assert!(h.client.wants_write());
    let got = h.deliver_to_server();
    assert_eq!(got, [Message::Pong(b"keepalive-42".to_vec().into())]);
}

#[test]
fn subscribes_are_paced_under_the_limit() {
    let streams: Vec<String> = (0..(binance::STREAMS_PER_SUBSCRIBE * 2 + 1))
        .map(|i| format!("s{i}@trade"))
        .collect();
    let refs: Vec<&str> = streams.iter().map(String::as_str).collect();
    let mut h = Harness::new(&refs);
    // The first request goes out as soon as the socket is open, the rest wait their turn.
    let first = h.deliver_to_server();
    assert_eq!(first.len(), 1);
    let text = first[0].to_text().unwrap();
    assert!(
        text.contains("\"method\":\"SUBSCRIBE\"")
            && text.contains("\"s0@trade\"")
            && text.contains("\"id\":1"),
        "{text}"
    );
    h.client
        .handle_timeout(h.now + Duration::from_millis(100))
        .unwrap();
    assert!(
        h.deliver_to_server().is_empty(),
        "a second message within 250 ms would break the pace"
    );
    let mut sent = 1;
    let mut last = h.now;
    while let Some(at) = h.client.poll_timeout() {
        assert_eq!(
            at - last,
            Duration::from_millis(250),
            "one request per slot"
        );
        h.client.handle_timeout(at).unwrap();
        sent += h.deliver_to_server().len();
        last = at;
    }
    assert_eq!(sent, 3);
    assert_eq!(last - h.now, Duration::from_millis(500));
}

#[test]
fn replies_and_shutdown_are_not_market_data() {
    let mut h = Harness::new(&[]);
    h.send(Message::text("{\"result\":null,\"id\":1}"));
    h.send(Message::text(
        "{\"error\":{\"code\":2,\"msg\":\"Invalid request\"},\"id\":null}",
    ));
    h.send(Message::text(
        "{\"e\":\"serverShutdown\",\"E\":1700000000000}",
    ));
    assert_eq!(
        h.events[1..],
        [
            "reply:{\"result\":null,\"id\":1}",
            "reply:{\"error\":{\"code\":2,\"msg\":\"Invalid request\"},\"id\":null}",
            "shutdown"
        ]
    );
}

#[test]
fn close_and_garbage_end_the_session_with_an_error() {
    let mut h = Harness::new(&[]);
    h.server.close(None).unwrap();
    h.server.flush().unwrap();
    let bytes = h.server.get_mut().take_output();
    let err = h
        .client
        .handle_input(&bytes, h.now, &mut |_| {})
        .unwrap_err();
    assert!(matches!(err, SessionError::Closed(_)), "{err}");

    let mut h = Harness::new(&[]);
    // A frame with reserved bits set and an absurd length is a protocol error, not a panic.
    let err = h
        .client
        .handle_input(&[0xff; 64], h.now, &mut |_| {})
        .unwrap_err();
    assert!(matches!(err, SessionError::WebSocket(_)), "{err}");
}

#[test]
fn close_says_goodbye_with_1000() {
    let mut h = Harness::new(&[]);
    h.client.close();
    let mut bytes = Vec::new();
    h.client.take_output(&mut bytes);
    h.server.get_mut().push_input(&bytes);
    match h.server.read() {
        Ok(Message::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 1000),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[test]
fn rejected_upgrade_reports_the_status() {
    let config = SessionConfig {
        endpoint: Endpoint::parse("ws://127.0.0.1:9/ws/nope").unwrap(),
        tls: None,
        subscribe: Vec::new(),
        client_messages_per_sec: 4,
    };
    let mut client = Session::start(&config).unwrap();
    let response = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
    let err = client
        .handle_input(response, Instant::now(), &mut |_| {})
        .unwrap_err();
    assert!(matches!(err, SessionError::Rejected(404)), "{err}");
}
