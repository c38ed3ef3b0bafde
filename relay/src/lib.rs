//! Market-data relay: the I/O shells around the sans-io core (`relay-core`).
//!
//! * [`cli`]: each command's flags and config file, merged into its settings.
//! * [`exchange`]: the io_uring shell of the exchange link (TCP socket <-> core link).
//! * [`forward`]: `relay forward`, the relay thread and its UDP fan-out.
//! * [`receive`]: `relay receive`, the UDP and baseline receivers, the recorder thread, and the
//!   receive-time sources ([`receive::rx_time`]: kernel stamps, the eBPF stamper).
//! * [`report`]: progress lines, printed off the hot thread; [`metrics`]: `--metrics`, the
//!   Prometheus endpoint; [`clock_state`]: the host clock's
//!   state for the summaries.
//! * [`probe`]: `relay probe reflect` and `relay probe run` (the core's prober and reflector).
//! * [`doctor`]: `relay doctor`, what to change on this host.
//! * [`analyse`]: `relay compare` and `relay plan` over results already written.
pub use relay_core::wire;

pub mod analyse;
pub mod cli;
pub mod clock_state;
pub mod doctor;
pub mod exchange;
pub mod forward;
pub mod metrics;
pub mod probe;
pub mod receive;
pub mod report;
