//! The receiver's sans-io side: datagram [`accounting`] (sequence window, reassembly, epochs,
//! upstream gaps) and the receive-stamp join ([`stamp_join`]).

pub mod accounting;
mod reassembly;
mod sequence;
pub mod stamp_join;
