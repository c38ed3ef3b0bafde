//! `relay receive --serve-ws ADDR:PORT`: the delivered stream on a local, Binance-compatible
//! WebSocket endpoint, so an existing Binance client only changes its base URL.
//!
//! The delivering thread owns the [`Endpoint`]: it names each event's stream and offers it to
//! the subscribed clients' bounded queues through the core's [`Hub`] (no lock, no wait). The
//! connections live on one `serve` thread (a tokio runtime): handshakes, requests and replies
//! ([`relay_core::serve::Session`]), pings, and writing each client's queue out ([`client`]).

mod client;
pub mod datagrams;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use crossbeam_channel::Receiver;
use relay_core::binance::stream::{Envelope, StreamNames};
use relay_core::binance::TimeUnit;
use relay_core::serve::{Control, Hub, Offer, Outbox, WsServeSummary};

/// Events a client may have queued before it counts as too slow and is disconnected.
pub const DEFAULT_QUEUE: usize = 65_536;
/// Client requests (subscriptions and leaving) waiting for the delivering thread at most.
const CONTROLS: usize = 4096;
/// Names of subscribed streams kept ready to hand out (beyond it the cache starts over).
const NAME_CACHE: usize = 4096;

/// One event as the clients get it: the message, where its event is, its stream's name.
#[derive(Clone)]
pub struct Event {
    payload: Bytes,
    data: Range<usize>,
    /// The message is the exchange's combined-stream wrapper around the event.
    wrapped: bool,
    stream: Bytes,
}

/// A client's queue, held by the hub.
pub struct ClientOutbox {
    tx: tokio::sync::mpsc::Sender<Event>,
    kick: Arc<Kick>,
}

/// Set by the hub when it drops a client for being too slow; wakes the client's task even while
/// it waits for its socket.
#[derive(Default)]
pub struct Kick {
    slow: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Kick {
    fn is_set(&self) -> bool {
        self.slow.load(Ordering::Acquire)
    }
}

impl Outbox for ClientOutbox {
    type Item = Event;

    fn offer(&self, event: Event) -> Offer {
        use tokio::sync::mpsc::error::TrySendError;
        match self.tx.try_send(event) {
            Ok(()) => Offer::Queued,
            Err(TrySendError::Full(_)) => Offer::Full,
            Err(TrySendError::Closed(_)) => Offer::Gone,
        }
    }

    fn too_slow(self) {
        self.kick.slow.store(true, Ordering::Release);
        self.kick.notify.notify_one();
    }
}

/// The counts the connections keep (the hub keeps the rest).
#[derive(Default)]
struct ServerCounts {
    refused_connections: AtomicU64,
    request_limit_disconnects: AtomicU64,
    refused_requests: AtomicU64,
}

/// The local endpoint, owned by the delivering thread (see the module docs).
pub struct Endpoint {
    address: SocketAddr,
    hub: Hub<ClientOutbox>,
    controls: Receiver<Control<ClientOutbox>>,
    names: StreamNames,
    name: Vec<u8>,
    name_cache: HashMap<Box<[u8]>, Bytes>,
    unnamed: u64,
    counts: Arc<ServerCounts>,
    stop: Arc<tokio::sync::Notify>,
    server: Option<JoinHandle<()>>,
}

impl Endpoint {
    /// Listens on `address` (now, so a taken port fails before the run) and starts the
    /// connections' thread. `names` names the streams of raw messages; `unit` is the time unit
    /// of the events served, when it is known (a client asking another is refused).
    pub fn start(
        address: SocketAddr,
        queue: usize,
        names: StreamNames,
        unit: Option<TimeUnit>,
    ) -> anyhow::Result<Endpoint> {
        let listener = std::net::TcpListener::bind(address)
            .with_context(|| format!("--serve-ws: listening on TCP {address}"))?;
        listener
            .set_nonblocking(true)
            .context("--serve-ws: a non-blocking listener")?;
        let address = listener
            .local_addr()
            .context("--serve-ws: the bound address")?;
        let (controls_tx, controls) = crossbeam_channel::bounded(CONTROLS);
        let counts = Arc::new(ServerCounts::default());
        let stop = Arc::new(tokio::sync::Notify::new());
        let server = {
            let (counts, stop) = (counts.clone(), stop.clone());
            std::thread::Builder::new()
                .name("serve".into())
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build();
                    match runtime {
                        Ok(rt) => rt.block_on(client::accept_all(
                            listener,
                            client::Limits {
                                queue: queue.max(1),
                                unit,
                            },
                            controls_tx,
                            counts,
                            stop,
                        )),
                        Err(e) => eprintln!("receiver: --serve-ws: no runtime: {e}"),
                    }
                })
                .context("spawning the serve thread")?
        };
        eprintln!("receiver: serving the delivered stream on ws://{address} (/ws/<stream>, /stream?streams=a/b)");
        Ok(Endpoint {
            address,
            hub: Hub::default(),
            controls,
            names,
            name: Vec::with_capacity(64),
            name_cache: HashMap::new(),
            unnamed: 0,
            counts,
            stop,
            server: Some(server),
        })
    }

    /// The clients' joins and subscription changes, for the delivering thread to wait on.
    pub fn controls(&self) -> &Receiver<Control<ClientOutbox>> {
        &self.controls
    }

    pub fn apply(&mut self, control: Control<ClientOutbox>) {
        self.hub.apply(control);
    }

    /// Offers one delivered message to the clients of its stream.
    pub fn serve(&mut self, payload: &Bytes) {
        while let Ok(control) = self.controls.try_recv() {
            self.hub.apply(control);
        }
        if !self.names.name_into(payload, &mut self.name) {
            self.unnamed += 1;
            return;
        }
        if self.name_cache.len() >= NAME_CACHE && !self.name_cache.contains_key(&self.name[..]) {
            self.name_cache.clear();
        }
        let stream = match self.name_cache.get(&self.name[..]) {
            Some(s) => s.clone(),
            None => {
                let s = Bytes::copy_from_slice(&self.name);
                self.name_cache
                    .insert(self.name.clone().into_boxed_slice(), s.clone());
                s
            }
        };
        let envelope = Envelope::of(payload);
        let event = Event {
            payload: payload.clone(),
            wrapped: envelope.stream.is_some(),
            data: envelope.data,
            stream,
        };
        self.hub.route(&self.name, &event);
    }

    /// Closes every client (they are told the receiver stopped) and the listener.
    pub fn finish(mut self) -> WsServeSummary {
        let hub = std::mem::take(&mut self.hub).counts();
        // Joins still in the channel (and any a handshake under way sends) find it closed, so
        // those clients end at once rather than wait for events that will not come.
        drop(std::mem::replace(
            &mut self.controls,
            crossbeam_channel::never(),
        ));
        self.stop.notify_one();
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
        let c = &self.counts;
        WsServeSummary {
            address: format!("ws://{}", self.address),
            clients: hub.clients,
            events_served: hub.events_served,
            copies_queued: hub.copies_queued,
            events_without_subscriber: hub.events_without_subscriber,
            events_without_stream_name: self.unnamed,
            slow_client_disconnects: hub.slow_client_disconnects,
            request_limit_disconnects: c.request_limit_disconnects.load(Ordering::Relaxed),
            refused_connections: c.refused_connections.load(Ordering::Relaxed),
            refused_requests: c.refused_requests.load(Ordering::Relaxed),
        }
    }
}

/// How long a client gets to take one frame before it counts as stuck and is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
