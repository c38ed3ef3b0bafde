//! The whole pipeline in memory, on a manual clock, in the style of quinn-proto's `Pair`: an
//! in-memory [`Exchange`] feeds the relay's own state machines ([`ExchangeLink`] ->
//! [`Forwarder`]), whose datagrams cross a seeded lossy [`Network`] into the receiver's
//! [`Accounting`]. No sockets, no threads, no sleeps: time moves only when a test says so, and
//! jumps straight to the next thing any part is waiting for. Every behaviour of the relay that
//! depends on time or on the network gets its test here (`relay/core/tests/`).
//!
//! Built with the `harness` feature (the core's own tests turn it on); [`cert`] and
//! [`exchange`] also serve the simulator and the benchmarks.

pub mod cert;
pub mod exchange;
pub mod network;
pub mod pipe;

use std::time::{Duration, Instant};

use relay_wire::{Block, Header};

use crate::binance::Endpoint;
use crate::exchange_link::{ConnId, ExchangeLink, LinkEvent, Notice};
use crate::forward::answer::RetransmitConfig;
use crate::forward::framer::{Framer, DEFAULT_DATAGRAM_BUDGET};
use crate::forward::Forwarder;
use crate::receive::accounting::{Accounting, AccountingConfig, Counters};
use crate::seal::{Direction, Sealer, Secret};
use crate::session::SessionConfig;
pub use exchange::Exchange;
pub use network::{Network, NetworkConfig};

/// CLOCK_REALTIME at the harness's start, in ns (2023-11-14T22:13:20Z): wall times on the wire
/// are this plus the manual clock's progress.
pub const START_NS: u64 = 1_700_000_000_000_000_000;

/// Everything a pipeline is built from.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    pub seed: u64,
    /// Serve the exchange over TLS (the client trusts its CA) instead of plain `ws://`.
    pub tls: bool,
    pub url: String,
    pub subscribe: Vec<String>,
    pub epoch: u32,
    pub datagram_budget: usize,
    pub heartbeat_interval: Duration,
    pub reconnect_max_delay: Duration,
    /// The link rotates its exchange connection this often (`--rotate-after`).
    pub rotate_after: Duration,
    /// Relay -> receiver.
    pub network: NetworkConfig,
    /// Receiver -> relay (NAKs).
    pub uplink: NetworkConfig,
    /// The relay keeps what it sent to answer NAKs (`None`: it answers none).
    pub retransmit: Option<RetransmitConfig>,
    /// The relay's `--key-file`: it seals what it sends and answers only sealed NAKs.
    pub relay_secret: Option<Secret>,
    /// The receiver (with `recovery`: it sends NAKs; with `secret`: its own `--key-file`).
    pub accounting: AccountingConfig,
}

impl Default for PipelineConfig {
    fn default() -> PipelineConfig {
        PipelineConfig {
            seed: 1,
            tls: false,
            url: "ws://exchange.test:9443/ws/btcusdt@trade".into(),
            subscribe: Vec::new(),
            epoch: 0x0e90_c401,
            datagram_budget: DEFAULT_DATAGRAM_BUDGET,
            heartbeat_interval: Duration::from_secs(1),
            reconnect_max_delay: Duration::from_secs(30),
            rotate_after: crate::exchange_link::DEFAULT_ROTATE_AFTER,
            network: NetworkConfig::default(),
            uplink: NetworkConfig::default(),
            retransmit: Some(RetransmitConfig::default()),
            relay_secret: None,
            accounting: AccountingConfig::default(),
        }
    }
}

/// A message the receiver delivered, copied out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub epoch: u32,
    pub sequence: u64,
    pub upstream_generation: u32,
    pub block: Block,
    pub payload: Vec<u8>,
    pub reordered: bool,
    pub retransmitted: bool,
    /// When the accounting delivered it, on the manual clock.
    pub at: Instant,
}

/// The pipeline (see the module docs). Its parts are public so tests can reach into any of them.
pub struct Pipeline {
    pub exchange: Exchange,
    pub link: ExchangeLink,
    pub forwarder: Forwarder,
    pub network: Network,
    pub uplink: Network,
    pub accounting: Accounting,
    /// Messages delivered by the receiver, in delivery order.
    pub received: Vec<Received>,
    /// The link's notices, in order.
    pub notices: Vec<Notice>,
    /// Headers of the datagrams the relay emitted (before the network had its way with them).
    pub emitted: Vec<Header>,
    /// Seals what the relay sends, as the fan-out does (with `relay_secret`).
    sealer: Option<Sealer>,
    config: PipelineConfig,
    session: SessionConfig,
    start: Instant,
    now: Instant,
    /// Refuse TCP connections (the exchange is unreachable) while set.
    pub refuse_connections: bool,
    /// The exchange's number for each of the link's connections.
    conns: [Option<usize>; 2],
}

impl Pipeline {
    /// A pipeline whose link connects at once; call [`Pipeline::run_for`] to let it handshake.
    pub fn new(config: PipelineConfig) -> Pipeline {
        let endpoint = Endpoint::parse(&config.url).expect("a valid harness URL");
        let exchange = if config.tls {
            Exchange::tls(std::slice::from_ref(&endpoint.host))
        } else {
            Exchange::plain()
        };
        let tls = exchange.ca_pem().map(|pem| {
            crate::tls::client_config(Some(pem.as_bytes())).expect("the exchange's own CA")
        });
        let session = SessionConfig {
            endpoint,
            tls,
            subscribe: config.subscribe.clone(),
            client_messages_per_sec: crate::binance::CLIENT_MESSAGES_PER_SEC,
        };
        let start = Instant::now();
        let relay = Relay::start(&config, &session, config.epoch, start);
        Pipeline {
            exchange,
            link: relay.link,
            forwarder: relay.forwarder,
            network: Network::new(config.network.clone(), config.seed),
            uplink: Network::new(config.uplink.clone(), config.seed ^ 0x0a0a),
            accounting: Accounting::new(config.accounting.clone()),
            received: Vec::new(),
            notices: Vec::new(),
            emitted: Vec::new(),
            sealer: relay.sealer,
            config,
            session,
            start,
            now: start,
            refuse_connections: false,
            conns: [None; 2],
        }
    }

    /// The relay process restarts as `epoch`: its exchange connection goes, and a new process
    /// (sequences from 1, an empty retransmit ring, a new exchange connection) takes its place.
    pub fn restart_relay(&mut self, epoch: u32) {
        for id in ConnId::ALL {
            self.close_connection(id, "the relay restarted");
        }
        let relay = Relay::start(&self.config, &self.session, epoch, self.now);
        self.link = relay.link;
        self.forwarder = relay.forwarder;
        self.sealer = relay.sealer;
    }

    /// The manual clock.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Time since the pipeline started.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// CLOCK_REALTIME ns at `at` on the manual clock.
    pub fn wall_ns(&self, at: Instant) -> u64 {
        START_NS + (at - self.start).as_nanos() as u64
    }

    /// The exchange's event time `E` (ms) now.
    pub fn exchange_ms(&self) -> u64 {
        self.wall_ns(self.now) / 1_000_000
    }

    /// Publishes one trade on the exchange now and lets everything settle (without moving time).
    pub fn publish_trade(&mut self) -> u64 {
        let id = self.exchange.publish_trade(self.exchange_ms());
        self.settle();
        id
    }

    /// Publishes `count` trades, one every `every`, running the pipeline between them.
    pub fn publish_trades(&mut self, count: u64, every: Duration) {
        for _ in 0..count {
            self.publish_trade();
            self.run_for(every);
        }
    }

    /// Runs until `duration` has passed on the manual clock.
    pub fn run_for(&mut self, duration: Duration) {
        let until = self.now + duration;
        loop {
            self.settle();
            match self.next_timeout() {
                Some(at) if at <= until => self.now = self.now.max(at),
                _ => break,
            }
        }
        self.now = until;
        self.settle();
    }

    /// The end of the run: the receiver gives up on what is still missing.
    pub fn finish(&mut self) -> &Counters {
        self.accounting.finish();
        self.accounting.counters()
    }

    /// The trade ids `t` of the messages delivered, in delivery order.
    pub fn received_trade_ids(&self) -> Vec<u64> {
        self.received
            .iter()
            .filter_map(|r| exchange::trade_id(&r.payload))
            .collect()
    }

    fn next_timeout(&self) -> Option<Instant> {
        [
            self.link.poll_timeout(),
            Some(self.forwarder.poll_timeout()),
            self.network.poll_timeout(),
            self.uplink.poll_timeout(),
            self.accounting.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Does everything that is due at `now`, until nothing moves.
    fn settle(&mut self) {
        loop {
            let mut moved = false;
            let now = self.now;
            let now_ns = self.wall_ns(now);
            if let Some(id) = self.link.poll_connect(now) {
                moved = true;
                if self.refuse_connections {
                    self.link
                        .connection_lost(id, now, now_ns, "connection refused (harness)");
                } else {
                    self.conns[id.index()] = Some(self.exchange.accept());
                    self.link.connected(id, now, now_ns);
                }
            }
            self.link.handle_timeout(now);
            for id in ConnId::ALL {
                let Some(n) = self.conns[id.index()] else {
                    continue;
                };
                let mut to_exchange = Vec::new();
                self.link.take_output(id, &mut to_exchange);
                if !to_exchange.is_empty() {
                    moved = true;
                    self.exchange.input(n, &to_exchange);
                }
                let from_exchange = self.exchange.output(n);
                if !from_exchange.is_empty() {
                    moved = true;
                    self.link_input(id, &from_exchange);
                } else if !self.exchange.is_connected(n) {
                    // The exchange vanished: the relay's read ends.
                    self.conns[id.index()] = None;
                    self.link.connection_lost(
                        id,
                        now,
                        now_ns,
                        "the exchange closed the TCP connection",
                    );
                    moved = true;
                }
            }
            while let Some((id, reason)) = self.link.poll_close() {
                self.close_connection(id, &reason);
                moved = true;
            }
            let down_since = self.link.down_since_ns();
            let (forwarder, mut out) = self.relay_out(now);
            forwarder.handle_timeout(now, down_since, &mut |d| out.send(now_ns, d));
            while let Some(datagram) = self.network.poll_receive(now) {
                moved = true;
                self.receive(&datagram);
            }
            if self.accounting.poll_timeout().is_some_and(|at| at <= now) {
                let uplink = &mut self.uplink;
                self.accounting
                    .handle_timeout(now, &mut |nak| uplink.send(now, nak));
            }
            while let Some(nak) = self.uplink.poll_receive(now) {
                moved = true;
                let (forwarder, mut out) = self.relay_out(now);
                forwarder.on_nak(now, &nak, &mut |d| out.send(now_ns, d));
            }
            while let Some(notice) = self.link.poll_notice() {
                self.notices.push(notice);
            }
            if !moved {
                return;
            }
        }
    }

    /// The relay's forwarder and its way out, borrowed together.
    fn relay_out(&mut self, now: Instant) -> (&mut Forwarder, Egress<'_>) {
        let out = Egress::new(&mut self.network, &mut self.emitted, &mut self.sealer, now);
        (&mut self.forwarder, out)
    }

    fn link_input(&mut self, id: ConnId, bytes: &[u8]) {
        let now = self.now;
        let rx_ns = self.wall_ns(now);
        let Pipeline {
            link,
            forwarder,
            network,
            emitted,
            sealer,
            ..
        } = self;
        let mut out = Egress::new(network, emitted, sealer, now);
        link.handle_input(id, now, rx_ns, bytes, &mut |event: LinkEvent<'_>| {
            forwarder.on_event(event, now, &mut |d| out.send(rx_ns, d));
        });
        // The read is consumed: what it completed goes out (as the shell's flush does).
        forwarder.flush(now, &mut |d| out.send(rx_ns, d));
    }

    /// The relay closes connection `id`: what it still had to say reaches the exchange, then
    /// the connection is gone.
    fn close_connection(&mut self, id: ConnId, reason: &str) {
        let Some(n) = self.conns[id.index()].take() else {
            return;
        };
        let mut last = Vec::new();
        self.link.take_output(id, &mut last);
        self.exchange.input(n, &last);
        self.exchange.drop_connection(n);
        let now = self.now;
        self.link
            .connection_lost(id, now, self.wall_ns(now), reason);
        while let Some(notice) = self.link.poll_notice() {
            self.notices.push(notice);
        }
    }

    fn receive(&mut self, datagram: &[u8]) {
        let (received, at) = (&mut self.received, self.now);
        self.accounting.on_datagram(at, datagram, &mut |d| {
            received.push(Received {
                epoch: d.epoch,
                sequence: d.sequence,
                upstream_generation: d.upstream_generation,
                block: d.block,
                payload: d.payload.to_vec(),
                reordered: d.reordered,
                retransmitted: d.retransmitted,
                at,
            });
        });
    }
}

/// One relay process: its exchange link, its forwarder and its fan-out's sealer.
struct Relay {
    link: ExchangeLink,
    forwarder: Forwarder,
    sealer: Option<Sealer>,
}

impl Relay {
    fn start(config: &PipelineConfig, session: &SessionConfig, epoch: u32, now: Instant) -> Relay {
        let time_unit = session.endpoint.time_unit;
        let sealed = config.relay_secret.is_some();
        let framer = Framer::new(epoch, config.datagram_budget, time_unit, sealed)
            .expect("a valid harness datagram budget");
        Relay {
            link: ExchangeLink::new(
                session.clone(),
                config.reconnect_max_delay,
                config.rotate_after,
            ),
            forwarder: Forwarder::new(
                framer,
                config.heartbeat_interval,
                config
                    .retransmit
                    .as_ref()
                    .map(|r| (r, config.datagram_budget)),
                config.relay_secret.as_ref(),
                now,
            ),
            sealer: config
                .relay_secret
                .as_ref()
                .map(|s| s.sealer(Direction::Relay)),
        }
    }
}

/// The relay's way out: what the fan-out does to a datagram before the network.
struct Egress<'a> {
    network: &'a mut Network,
    emitted: &'a mut Vec<Header>,
    sealer: Option<&'a mut Sealer>,
    now: Instant,
}

impl<'a> Egress<'a> {
    fn new(
        network: &'a mut Network,
        emitted: &'a mut Vec<Header>,
        sealer: &'a mut Option<Sealer>,
        now: Instant,
    ) -> Egress<'a> {
        Egress {
            network,
            emitted,
            sealer: sealer.as_mut(),
            now,
        }
    }

    /// Stamps the send time `tx_ns`, seals (with a key) and puts the datagram on the network.
    fn send(&mut self, tx_ns: u64, datagram: &[u8]) {
        let mut datagram = datagram.to_vec();
        relay_wire::stamp_relay_tx_ns(&mut datagram, tx_ns);
        let header = Header::decode(&datagram)
            .expect("the framer's datagrams are valid")
            .header;
        self.emitted.push(header);
        if let Some(sealer) = &mut self.sealer {
            assert!(
                sealer.seal(&mut datagram),
                "the framer keeps room for seals"
            );
        }
        self.network.send(self.now, &datagram);
    }
}
