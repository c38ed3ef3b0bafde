//! The Frankfurt side: accounting of relay datagrams or direct exchange messages.
pub mod accounting;
mod reassembly;
mod sequence;
