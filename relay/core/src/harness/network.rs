//! A seeded datagram network on a manual clock: every datagram is delayed (a fixed delay plus a
//! normal jitter), and may be lost, duplicated or, without FIFO order, reordered. Drops can also
//! be scripted ([`Network::drop_next`]) for exact tests. The same seed gives the same run.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use crate::rng::Rng;

/// How the network behaves.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkConfig {
    pub delay: Duration,
    /// Standard deviation of a normal jitter added to each datagram's delay (never below 0).
    pub jitter: Duration,
    /// Probability (0..=1) that a datagram is lost.
    pub loss: f64,
    /// Probability (0..=1) that a datagram arrives twice (the copy with its own jitter).
    pub duplicate: f64,
    /// Datagrams never overtake each other (jitter then only stretches delays).
    pub fifo: bool,
}

impl Default for NetworkConfig {
    fn default() -> NetworkConfig {
        NetworkConfig {
            delay: Duration::from_millis(1),
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
            fifo: true,
        }
    }
}

/// What the network did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetworkStats {
    pub sent: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub delivered: u64,
}

/// The network (see the module docs).
pub struct Network {
    config: NetworkConfig,
    rng: Rng,
    /// (arrival, order sent, datagram): earliest arrival first, ties in the order sent.
    in_flight: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>>,
    serial: u64,
    last_arrival: Option<Instant>,
    scripted_drops: u64,
    /// Datagrams to let through before the scripted drops begin.
    scripted_skip: u64,
    stats: NetworkStats,
}

impl Network {
    pub fn new(config: NetworkConfig, seed: u64) -> Network {
        Network {
            config,
            rng: Rng::seeded(seed, "network", 0),
            in_flight: BinaryHeap::new(),
            serial: 0,
            last_arrival: None,
            scripted_drops: 0,
            scripted_skip: 0,
            stats: NetworkStats::default(),
        }
    }

    /// The next `count` datagrams sent are lost, whatever the configured loss.
    pub fn drop_next(&mut self, count: u64) {
        self.scripted_drops += count;
    }

    /// The next `pass` datagrams go through (as configured), then `count` are lost.
    pub fn drop_after(&mut self, pass: u64, count: u64) {
        self.scripted_skip = pass;
        self.scripted_drops = count;
    }

    /// Changes how the network behaves from now on (datagrams in flight keep their arrival).
    pub fn reconfigure(&mut self, config: NetworkConfig) {
        self.config = config;
    }

    /// A datagram leaves at `now`.
    pub fn send(&mut self, now: Instant, datagram: &[u8]) {
        self.stats.sent += 1;
        if self.scripted_drops > 0 && self.scripted_skip > 0 {
            self.scripted_skip -= 1;
        } else if self.scripted_drops > 0 {
            self.scripted_drops -= 1;
            self.stats.lost += 1;
            return;
        }
        if self.config.loss > 0.0 && self.rng.unit() < self.config.loss {
            self.stats.lost += 1;
            return;
        }
        let copies = if self.config.duplicate > 0.0 && self.rng.unit() < self.config.duplicate {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter = self.config.jitter.as_secs_f64() * self.rng.normal();
            let delay = (self.config.delay.as_secs_f64() + jitter).max(0.0);
            let mut at = now + Duration::from_secs_f64(delay);
            if self.config.fifo {
                if let Some(last) = self.last_arrival {
                    at = at.max(last);
                }
                self.last_arrival = Some(at);
            }
            self.serial += 1;
            self.in_flight
                .push(Reverse((at, self.serial, datagram.to_vec())));
        }
    }

    /// When the next datagram arrives.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.in_flight.peek().map(|Reverse((at, _, _))| *at)
    }

    /// The next datagram that has arrived by `now`.
    pub fn poll_receive(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.poll_timeout()? > now {
            return None;
        }
        let Reverse((_, _, datagram)) = self.in_flight.pop()?;
        self.stats.delivered += 1;
        Some(datagram)
    }

    pub fn stats(&self) -> NetworkStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrivals(config: NetworkConfig, seed: u64) -> Vec<(Duration, u8)> {
        let t0 = Instant::now();
        let mut net = Network::new(config, seed);
        for i in 0..200u8 {
            net.send(t0 + Duration::from_micros(100) * u32::from(i), &[i]);
        }
        let mut out = Vec::new();
        while let Some(at) = net.poll_timeout() {
            let d = net.poll_receive(at).unwrap();
            out.push((at - t0, d[0]));
        }
        out
    }

    #[test]
    fn delays_order_and_seeds() {
        let fifo = NetworkConfig {
            jitter: Duration::from_millis(1),
            ..NetworkConfig::default()
        };
        let a = arrivals(fifo.clone(), 1);
        assert_eq!(a.len(), 200);
        assert!(
            a.windows(2).all(|w| w[0].1 < w[1].1),
            "FIFO keeps the order"
        );
        assert_eq!(a, arrivals(fifo.clone(), 1), "same seed, same run");
        assert_ne!(a, arrivals(fifo.clone(), 2));
        let free = arrivals(
            NetworkConfig {
                fifo: false,
                ..fifo
            },
            1,
        );
        assert!(free.windows(2).any(|w| w[0].1 > w[1].1), "jitter reorders");
        let plain = arrivals(NetworkConfig::default(), 1);
        assert_eq!(plain[0].0, Duration::from_millis(1));
    }

    #[test]
    fn loss_duplicates_and_scripted_drops() {
        let t0 = Instant::now();
        let mut net = Network::new(
            NetworkConfig {
                loss: 0.1,
                duplicate: 0.1,
                ..NetworkConfig::default()
            },
            3,
        );
        net.drop_next(5);
        for i in 0..10_000u32 {
            net.send(t0, &i.to_le_bytes());
        }
        let s = net.stats();
        assert_eq!(s.sent, 10_000);
        assert!((900..1100).contains(&(s.lost - 5)), "{s:?}");
        assert!((800..1000).contains(&s.duplicated), "{s:?}");
        let mut delivered = 0;
        while net.poll_receive(t0 + Duration::from_secs(1)).is_some() {
            delivered += 1;
        }
        assert_eq!(delivered, s.sent - s.lost + s.duplicated);
        assert!(net.poll_receive(t0 + Duration::from_secs(1)).is_none());
    }
}
