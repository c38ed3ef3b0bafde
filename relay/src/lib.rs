//! Market-data relay: exchange WebSocket -> sequenced UDP datagrams -> receiver accounting.
//!
//! Sans-io cores (wire format, event time, framing, receiver accounting, exchange session) are
//! plain state machines over byte buffers; thin I/O shells (io_uring on the relay) drive them.
pub use relay_wire as wire;

pub mod clock;
pub mod config;
pub mod endpoint;
pub mod event_time;
pub mod exchange_link;
pub mod feed_sim;
pub mod forward;
pub mod receive;
pub mod report;
pub mod rng;
pub mod session;
pub mod signals;
