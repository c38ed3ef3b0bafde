//! Market-data relay: exchange WebSocket -> sequenced UDP datagrams -> receiver accounting.
//!
//! Sans-io cores (wire format, event time, receiver accounting, exchange session) are plain
//! state machines over byte buffers; thin I/O shells drive them.
pub use relay_wire as wire;

pub mod event_time;
pub mod feed_sim;
pub mod receive;
