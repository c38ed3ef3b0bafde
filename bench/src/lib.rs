//! Benchmarks of the relay: criterion microbenchmarks of the sans-io core (`benches/core.rs`) and
//! the end-to-end loopback comparison (`src/bin/e2e.rs`), the eBPF stamper benchmark
//! (`src/bin/ebpf.rs`), with the pieces they share.

pub mod cpu;
pub mod ebpf_report;
pub mod null_prog;
pub mod probe;
pub mod report;
pub mod samples;
pub mod session_pipe;
pub mod stats;
