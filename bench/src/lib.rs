//! Benchmarks of the relay: criterion microbenchmarks of the sans-io core (`benches/core.rs`),
//! the end-to-end loopback comparison (`src/bin/e2e/`) and the eBPF stamper benchmark
//! (`src/bin/ebpf/`), with the pieces they share.
//!
//! * [`e2e`], [`ebpf`]: each benchmark's report (results, derived figures, verdicts) and its
//!   markdown rendering; the binaries only run the measurements.
//! * [`probe`]: the end-to-end benchmark's measuring ends (UDP receiver, floors);
//!   [`sleep_floor`]: the least a forwarder that sleeps between reads can do.
//! * [`publish`]: what every report shares: the machine, the date, writing it out.
//! * [`samples`], [`session_pipe`]: the microbenchmarks' inputs and in-memory session.
//! * [`sock`]: socket plumbing (mmsghdr batches, socket options); [`parse_names`]: list flags.

use anyhow::Context as _;

pub mod e2e;
pub mod ebpf;
pub mod probe;
pub mod publish;
pub mod samples;
pub mod session_pipe;
pub mod sleep_floor;
pub mod sock;

/// The values a list flag (`--paths a,b`, `--hooks a,b`) names: each of `names` is matched against
/// `name` of the values in `all`; an unknown one is an error that lists the known ones.
pub fn parse_names<T: Copy>(
    what: &str,
    names: &[String],
    all: &[T],
    name: fn(T) -> &'static str,
) -> anyhow::Result<Vec<T>> {
    names
        .iter()
        .map(|n| {
            all.iter()
                .copied()
                .find(|&v| name(v) == n)
                .with_context(|| {
                    let known: Vec<&str> = all.iter().map(|&v| name(v)).collect();
                    format!("unknown {what} {n:?} ({})", known.join(", "))
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn list_flags_name_known_values() {
        let all = [1u8, 2, 3];
        let name = |v: u8| ["one", "two", "three"][usize::from(v) - 1];
        let names = ["three".to_string(), "one".to_string()];
        assert_eq!(super::parse_names("n", &names, &all, name).unwrap(), [3, 1]);
        let err = super::parse_names("n", &["four".to_string()], &all, name).unwrap_err();
        assert_eq!(err.to_string(), r#"unknown n "four" (one, two, three)"#);
    }
}
