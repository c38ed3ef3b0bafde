//! The receiver's sans-io side: datagram [`accounting`] (sequence window, reassembly, epochs,
//! upstream gaps) with gap [`recovery`], the receive-stamp join ([`stamp_join`]) and the reader of
//! the eBPF program's stamp rings ([`stamp_rings`]), and A/B
//! [`arbitration`] across paths.

pub mod accounting;
pub mod arbitration;
mod reassembly;
pub mod recovery;
mod sequence;
pub mod stamp_join;
pub mod stamp_rings;
