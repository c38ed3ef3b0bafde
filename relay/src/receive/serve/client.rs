//! The local endpoint's connections, on the serve thread: the handshake (the URL opens a
//! [`Session`]), then one task per client that answers its requests, pings it as Binance does,
//! and writes its queue out, each event in the form the client asked for.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Sender, TrySendError};
use futures_util::{SinkExt, StreamExt};
use relay_core::binance::stream::wrap_into;
use relay_core::binance::{TimeUnit, INBOUND_MESSAGES_PER_SEC, PING_INTERVAL, PONG_TIMEOUT};
use relay_core::serve::{Change, Control, Session};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::{ClientOutbox, Event, Kick, ServerCounts, WRITE_TIMEOUT};

type Controls = Sender<Control<ClientOutbox>>;

pub struct Limits {
    pub queue: usize,
    /// The unit of the events' times, when known (see [`Session::open`]).
    pub unit: Option<TimeUnit>,
}

/// Accepts connections until `stop`, then waits (a little) for the clients to be closed.
pub async fn accept_all(
    listener: std::net::TcpListener,
    limits: Limits,
    controls: Controls,
    counts: Arc<ServerCounts>,
    stop: Arc<tokio::sync::Notify>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("receiver: --serve-ws: {e}");
            return;
        }
    };
    let mut clients = tokio::task::JoinSet::new();
    let mut next_id = 0u64;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                next_id += 1;
                clients.spawn(serve_client(next_id, stream, limits.queue, limits.unit, controls.clone(), counts.clone()));
            }
            () = stop.notified() => break,
            Some(_) = clients.join_next(), if !clients.is_empty() => {}
        }
    }
    drop(listener);
    // Every queue's sender has gone with the hub: each client writes what it still has, is
    // told the receiver stopped, and ends.
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        while clients.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        clients.abort_all();
    }
}

/// Why a client's connection ends.
enum End {
    /// The receiver stopped (its queue closed and is written out).
    Stopped,
    TooSlow,
    RequestLimit,
    NoPong,
    /// The client closed, or the connection broke.
    Gone,
}

// tungstenite's handshake callback returns its own (large) error response type.
#[allow(clippy::result_large_err)]
async fn serve_client(
    id: u64,
    stream: tokio::net::TcpStream,
    queue: usize,
    unit: Option<TimeUnit>,
    controls: Controls,
    counts: Arc<ServerCounts>,
) {
    let mut opened: Option<Session> = None;
    let handshake = tokio_tungstenite::accept_hdr_async(stream, |req: &Request, resp: Response| {
        let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
        match Session::open(target, unit) {
            Ok(session) => {
                opened = Some(session);
                Ok(resp)
            }
            Err(e) => {
                let mut refusal = ErrorResponse::new(Some(format!("{e}\n")));
                *refusal.status_mut() =
                    tokio_tungstenite::tungstenite::http::StatusCode::from_u16(e.http_status())
                        .unwrap_or_default();
                Err(refusal)
            }
        }
    })
    .await;
    let (Ok(ws), Some(mut session)) = (handshake, opened) else {
        counts.refused_connections.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(queue);
    let kick = Arc::new(Kick::default());
    let join = Control::Join {
        client: id,
        outbox: ClientOutbox {
            tx,
            kick: kick.clone(),
        },
        streams: session.streams().to_vec(),
    };
    if controls.try_send(join).is_err() {
        return; // the receiver is stopping, or swamped with requests: nothing to serve
    }
    let (mut sink, mut incoming) = ws.split();
    let mut pings =
        tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
    let mut last_pong = Instant::now();
    let mut window = (Instant::now(), 0u32);
    let mut frame = Vec::new();
    let end = loop {
        if kick.is_set() {
            break End::TooSlow;
        }
        let out = tokio::select! {
            event = rx.recv() => match event {
                Some(event) => Message::Text(render(&event, session.combined(), &mut frame)),
                None if kick.is_set() => break End::TooSlow,
                None => break End::Stopped,
            },
            message = incoming.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    let now = Instant::now();
                    if now.duration_since(window.0) >= Duration::from_secs(1) {
                        window = (now, 0);
                    }
                    window.1 += 1;
                    if window.1 > INBOUND_MESSAGES_PER_SEC {
                        counts.request_limit_disconnects.fetch_add(1, Ordering::Relaxed);
                        break End::RequestLimit;
                    }
                    let answer = session.handle(&text);
                    if answer.refused {
                        counts.refused_requests.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Some(change) = answer.change.filter(|c| !is_empty(c)) {
                        // Never block this thread (every client's) on the delivering one.
                        match controls.try_send(Control::Change { client: id, change }) {
                            Ok(()) => {}
                            Err(TrySendError::Disconnected(_)) => break End::Stopped,
                            Err(TrySendError::Full(_)) => {
                                counts.request_limit_disconnects.fetch_add(1, Ordering::Relaxed);
                                break End::RequestLimit;
                            }
                        }
                    }
                    Message::Text(answer.reply.into())
                }
                Some(Ok(Message::Pong(_))) => {
                    last_pong = Instant::now();
                    continue;
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break End::Gone,
                // A ping's pong is queued by tungstenite and goes out with this flush; binary
                // frames are ignored, as Binance does.
                Some(Ok(_)) => {
                    if sink.flush().await.is_err() {
                        break End::Gone;
                    }
                    continue;
                }
            },
            _ = pings.tick() => {
                if last_pong.elapsed() > PONG_TIMEOUT {
                    break End::NoPong;
                }
                Message::Ping(Bytes::new())
            }
        };
        tokio::select! {
            sent = tokio::time::timeout(WRITE_TIMEOUT, sink.send(out)) => {
                if !matches!(sent, Ok(Ok(()))) {
                    break End::Gone;
                }
            }
            () = kick.notify.notified() => break End::TooSlow,
        }
    };
    let _ = controls.try_send(Control::Leave { client: id });
    let reason = match end {
        End::Gone => return,
        End::Stopped => (CloseCode::Away, "the receiver stopped"),
        End::TooSlow => (
            CloseCode::Policy,
            "too slow: the queue of events for this client was full",
        ),
        End::RequestLimit => (CloseCode::Policy, "too many requests: at most 5 a second"),
        End::NoPong => (CloseCode::Policy, "no pong for a minute"),
    };
    let close = Message::Close(Some(CloseFrame {
        code: reason.0,
        reason: reason.1.into(),
    }));
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(close)).await;
}

fn is_empty(change: &Change) -> bool {
    match change {
        Change::Subscribe(s) | Change::Unsubscribe(s) => s.is_empty(),
    }
}

/// The event as this client gets it: the exchange's bytes, unwrapped for a raw client, wrapped
/// for a combined one (the exchange's own wrapper when it came in one).
fn render(event: &Event, combined: bool, frame: &mut Vec<u8>) -> Utf8Bytes {
    let bytes = match (combined, event.wrapped) {
        (true, true) => event.payload.clone(),
        (false, _) => event.payload.slice(event.data.clone()),
        (true, false) => {
            frame.clear();
            wrap_into(&event.stream, &event.payload[event.data.clone()], frame);
            Bytes::copy_from_slice(frame)
        }
    };
    // The exchange sends text frames, so its bytes are UTF-8; anything else is replaced rather
    // than sent as an invalid text frame.
    Utf8Bytes::try_from(bytes.clone())
        .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned().into())
}
