//! The lab kit: what every process of the project needs from the host it runs on, defined once
//! for the relay, the receiver, the lab (`cargo xtask lab`), the benchmarks and the privileged
//! tests.
//!
//! * [`clock`]: CLOCK_REALTIME (every stamp on the wire), CLOCK_MONOTONIC, thread CPU time.
//! * [`cpu`]: which cores a process may use, and pinning a thread to one.
//! * [`signals`]: SIGINT / SIGTERM / SIGHUP as a stop flag (twice: exit at once).
//! * [`netns`]: network namespaces joined by veth pairs, torn down by a guard, stale ones swept.
//! * [`privileged`]: how a test that needs root says it cannot run (loudly; a failure in CI).
//! * [`alloc_count`]: a per-thread counting allocator for the no-allocation tests.
//! * [`sock`]: integer socket options, and receive buffers past rmem_max.

pub mod alloc_count;
pub mod clock;
pub mod cpu;
pub mod netns;
pub mod privileged;
pub mod signals;
pub mod sock;
