//! The receiver's sans-io side: datagram [`accounting`] (sequence window, reassembly, epochs,
//! upstream gaps) with gap [`recovery`], and the receive-stamp join ([`stamp_join`]).

pub mod accounting;
mod reassembly;
pub mod recovery;
mod sequence;
pub mod stamp_join;
