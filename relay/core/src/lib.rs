//! The relay's protocol core: every piece that decides something, as state machines over byte
//! buffers with no I/O, no threads and no clock of their own (the caller passes `now`, asks
//! `poll_timeout` and calls `handle_timeout`). The relay's io_uring shell, the receiver's sockets
//! and the benchmarks drive these; the [`harness`] drives them all at once on a manual clock.
//!
//! * [`binance`]: the exchange's specifics (URL forms, `E`, `serverShutdown`, limits).
//! * [`session`]: one TLS + WebSocket connection to the exchange ([`tls`] builds its config).
//! * [`exchange_link`]: one session at a time, reconnecting ([`reconnect`]: backoff, generations).
//! * [`forward`]: link events -> sequenced datagrams (framer, heartbeat policy).
//! * [`receive`]: the receiver's accounting and receive-stamp join.
//! * [`record`]: per-message records, the CSV and the JSON summary; [`stats`] their figures.
//! * [`seal`]: sealed (encrypted, authenticated) datagrams from a shared secret (`--key-file`).
//! * [`metrics`]: the Prometheus text exposition of the live figures; [`hlog`]: HdrHistogram
//!   interval logs.
//! * [`serve`]: the receiver's local Binance endpoint (sessions, routing), without I/O.
//! * [`rng`]: the seeded generator everything reproducible draws from.
//! * [`probe`]: irtt-style path probing (prober and reflector).
//! * [`compare`]: two runs side by side with seed 002's verdicts; [`plan`]: relay planning from
//!   an RTT matrix (seed 001).
//!
//! The wire format itself is [`relay_wire`] (`no_std`, shared with the eBPF program).
pub use relay_wire as wire;

pub mod binance;
pub mod compare;
pub mod exchange_link;
pub mod forward;
#[cfg(feature = "harness")]
pub mod harness;
pub mod hlog;
pub mod metrics;
pub mod plan;
pub mod probe;
pub mod receive;
pub mod reconnect;
pub mod record;
pub mod rng;
pub mod seal;
pub mod serve;
pub mod session;
pub mod stats;
pub mod tls;
