//! Where the receiver's receive times come from, beside the clock the receive loop reads itself:
//!
//! * [`kernel`]: the kernel's software (and NIC hardware) stamps through SO_TIMESTAMPING.
//! * [`ebpf`]: the eBPF stamper (`relay-ebpf`) loaded and attached at XDP or tc ingress.
//! * [`attach`]: attaching it with the `--ebpf-mode` fallback order, joining its stamps with the
//!   datagrams (the core's `stamp_join`), and the `ebpf` report of the summary.
//! * [`hardware`]: turning the NIC's hardware receive stamps on (`--hw-timestamps`).
//! * `rings`: the program's per-CPU stamp rings, mapped into this process.

pub mod attach;
pub mod ebpf;
pub mod hardware;
pub mod kernel;
mod rings;
