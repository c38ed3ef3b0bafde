//! The eBPF receive stamper: loads the `relay-ebpf` program, attaches it to an interface at XDP
//! (native or generic) or tc ingress, and reads the [`RxStamp`] it writes for every relay
//! datagram.
//!
//! The object is built by `relay/build.rs` (aya-build, nightly, bpf-linker) and embedded in the
//! binary; without that toolchain the relay still builds, [`EBPF_OBJECT_AVAILABLE`] is false and
//! [`RxStamper::attach`] says how to get it (`cargo xtask build-ebpf`).
//!
//! The program writes stamps without waking anyone (`BPF_RB_NO_WAKEUP`): call
//! [`RxStamper::drain`] from the receive loop or a timer. Stamps carry CLOCK_TAI; subtract
//! [`tai_offset_ns`] to compare them with CLOCK_REALTIME (socket timestamps, header times).

use std::ffi::CString;
use std::os::fd::OwnedFd;

use anyhow::{bail, Context};
use aya::maps::{MapData, PerCpuArray};
use aya::programs::tc::{SchedClassifierLinkId, TcAttachType};
use aya::programs::xdp::XdpLinkId;
use aya::programs::{ProgramError, SchedClassifier, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use relay_core::wire::stamp::{self, counter, Hook, RxStamp};

use super::rings::StampRings;

/// Whether this build embeds the eBPF object (false when `relay/build.rs` could not build it).
pub const EBPF_OBJECT_AVAILABLE: bool = cfg!(relay_ebpf_object);

#[cfg(relay_ebpf_object)]
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/relay-ebpf"));
#[cfg(not(relay_ebpf_object))]
static OBJECT: &[u8] = &[];

/// Why the object is missing, as `relay/build.rs` saw it.
const NOT_BUILT_REASON: Option<&str> = option_env!("RELAY_EBPF_NOT_BUILT");

/// The program's counters, summed over CPUs (see [`relay_wire::stamp::counter`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EbpfCounters {
    /// Relay datagrams stamped.
    pub matched: u64,
    /// Other packets on the interface (not UDP to our port).
    pub other: u64,
    /// UDP to our port that is not a relay datagram (too short, wrong magic or version).
    pub malformed: u64,
    /// Relay datagrams whose stamp was lost: written over in its ring before it was read (drain
    /// more often), or no ring for the CPU.
    pub ring_full: u64,
}

enum Attachment {
    Xdp(XdpLinkId),
    Tc(SchedClassifierLinkId),
}

/// The program, loaded and attached to one interface; dropping it detaches the program.
pub struct RxStamper {
    hook: Hook,
    iface: String,
    // Field order is drop order: maps and logger first, then the link, then the object.
    rings: StampRings,
    counters: PerCpuArray<MapData, u64>,
    logger: Option<aya_log::EbpfLogger<StderrLog>>,
    stats: Option<OwnedFd>,
    attachment: Option<Attachment>,
    ebpf: Ebpf,
}

impl RxStamper {
    /// Loads the program, tells it which UDP destination port carries relay datagrams and
    /// attaches it to `iface` (in the caller's network namespace) at `hook`.
    pub fn attach(iface: &str, hook: Hook, udp_port: u16) -> anyhow::Result<RxStamper> {
        if !EBPF_OBJECT_AVAILABLE {
            bail!(
                "this relay was built without its eBPF program ({}); run `cargo xtask build-ebpf` \
                 (installs nightly rust-src and bpf-linker) and rebuild",
                NOT_BUILT_REASON.unwrap_or("unknown reason")
            );
        }
        if udp_port == 0 {
            bail!("the UDP port to stamp must not be 0");
        }
        check_privileges()?;
        let c_iface =
            CString::new(iface).with_context(|| format!("interface name {iface:?} has a NUL"))?;
        if unsafe { libc::if_nametoindex(c_iface.as_ptr()) } == 0 {
            bail!("no network interface named {iface:?} in this network namespace");
        }

        let hook_id = hook.id();
        let cpus =
            aya::util::nr_cpus().map_err(|(what, e)| anyhow::anyhow!("reading {what}: {e}"))?;
        let slots = u32::try_from(cpus)
            .ok()
            .and_then(|c| c.checked_mul(stamp::SLOTS_PER_CPU))
            .with_context(|| format!("{cpus} CPUs is more than the stamp rings can hold"))?;
        let mut ebpf = EbpfLoader::new()
            .override_global(stamp::DEST_PORT_GLOBAL, &udp_port, true)
            .override_global(stamp::XDP_HOOK_GLOBAL, &hook_id, true)
            .map_max_entries(stamp::SLOTS_MAP, slots)
            .map_max_entries(stamp::HEADS_MAP, cpus as u32)
            .load(OBJECT)
            .map_err(anyhow::Error::from)
            .map_err(|e| permission_hint(e, "loading the eBPF object (creating its maps)"))?;
        let logger = aya_log::EbpfLogger::init_with_logger(&mut ebpf, StderrLog).ok();

        let program = hook.program();
        let attachment = match hook {
            Hook::XdpNative | Hook::XdpGeneric => {
                let xdp: &mut Xdp = ebpf
                    .program_mut(program)
                    .with_context(|| format!("the eBPF object has no program {program}"))?
                    .try_into()?;
                xdp.load().map_err(|e| load_error(e, program))?;
                let xdp_mode = if hook == Hook::XdpNative {
                    XdpMode::Driver
                } else {
                    XdpMode::Skb
                };
                let link = xdp
                    .attach(iface, xdp_mode)
                    .map_err(|e| xdp_attach_error(e, iface, hook))?;
                Attachment::Xdp(link)
            }
            Hook::TcIngress => {
                let tcx = aya::util::KernelVersion::current()
                    .is_ok_and(|v| v >= aya::util::KernelVersion::new(6, 6, 0));
                if !tcx {
                    // Before tcx, classifiers hang off a clsact qdisc (left in place on detach).
                    if let Err(e) = aya::programs::tc::qdisc_add_clsact(iface) {
                        let exists = matches!(&e, aya::programs::tc::TcError::NetlinkError(n)
                            if n.raw_os_error() == Some(libc::EEXIST));
                        if !exists {
                            return Err(anyhow::Error::from(e))
                                .with_context(|| format!("adding a clsact qdisc to {iface}"));
                        }
                    }
                }
                let tc: &mut SchedClassifier = ebpf
                    .program_mut(program)
                    .with_context(|| format!("the eBPF object has no program {program}"))?
                    .try_into()?;
                tc.load().map_err(|e| load_error(e, program))?;
                let link = tc.attach(iface, TcAttachType::Ingress).map_err(|e| {
                    permission_hint(anyhow::Error::from(e), "")
                        .context(format!("attaching the tc ingress program to {iface}"))
                })?;
                Attachment::Tc(link)
            }
        };

        let map = |ebpf: &mut Ebpf, name: &str| {
            ebpf.take_map(name)
                .with_context(|| format!("the eBPF object has no map {name}"))
        };
        let rings = StampRings::new(
            map(&mut ebpf, stamp::SLOTS_MAP)?,
            map(&mut ebpf, stamp::HEADS_MAP)?,
            cpus,
        )?;
        let counters = PerCpuArray::try_from(
            ebpf.take_map(stamp::COUNTERS_MAP)
                .with_context(|| format!("the eBPF object has no map {}", stamp::COUNTERS_MAP))?,
        )?;
        Ok(RxStamper {
            hook,
            iface: iface.to_string(),
            rings,
            counters,
            logger,
            stats: None,
            attachment: Some(attachment),
            ebpf,
        })
    }

    /// Hands every stamp now in the rings to `out`, each CPU's oldest first, and returns how
    /// many. Reads the shared memory directly: no syscall, no allocation.
    pub fn drain(&mut self, out: &mut impl FnMut(RxStamp)) -> usize {
        self.rings.drain(out)
    }

    /// The program's counters summed over CPUs. Also prints any diagnostics the program logged.
    pub fn counters(&self) -> anyhow::Result<EbpfCounters> {
        let sum = |index: u32| -> anyhow::Result<u64> {
            let values = self
                .counters
                .get(&index, 0)
                .with_context(|| format!("reading eBPF counter {index}"))?;
            Ok(values.iter().fold(0u64, |a, v| a.wrapping_add(*v)))
        };
        Ok(EbpfCounters {
            matched: self.rings.written(),
            other: sum(counter::OTHER)?,
            malformed: sum(counter::MALFORMED)?,
            ring_full: sum(counter::RING_FULL)? + self.rings.overwritten(),
        })
    }

    /// Prints the program's own diagnostics (rare: first malformed datagram, ring full) to
    /// stderr. Allocates, so it is not part of [`RxStamper::drain`].
    pub fn flush_log(&mut self) {
        if let Some(logger) = &mut self.logger {
            logger.flush();
        }
    }

    pub fn hook(&self) -> Hook {
        self.hook
    }

    /// Turns the kernel's per-program run-time statistics on for as long as this stamper lives
    /// (BPF_ENABLE_STATS; the same as `sysctl kernel.bpf_stats_enabled=1`, for every program on
    /// the host: it adds two clock reads to each program run).
    pub fn enable_program_stats(&mut self) -> anyhow::Result<()> {
        if self.stats.is_none() {
            self.stats = Some(
                aya::sys::enable_stats(aya::sys::Stats::RunTime)
                    .context("enabling BPF run-time statistics")?,
            );
        }
        Ok(())
    }

    /// `(run_time_ns, run_cnt)` of the attached program since it was loaded, while the kernel
    /// collects them ([`RxStamper::enable_program_stats`] or `kernel.bpf_stats_enabled=1`);
    /// `None` when statistics are off or the program info cannot be read.
    pub fn program_stats(&self) -> Option<(u64, u64)> {
        let enabled = self.stats.is_some()
            || std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
                .is_ok_and(|v| v.trim() == "1");
        if !enabled {
            return None;
        }
        let info = self.ebpf.program(self.hook.program())?.info().ok()?;
        Some((info.run_time().as_nanos() as u64, info.run_count()))
    }

    fn detach(&mut self) -> anyhow::Result<()> {
        let program = self.hook.program();
        match self.attachment.take() {
            None => {}
            Some(Attachment::Xdp(link)) => {
                let xdp: &mut Xdp = self
                    .ebpf
                    .program_mut(program)
                    .context("program gone")?
                    .try_into()?;
                xdp.detach(link)?;
            }
            Some(Attachment::Tc(link)) => {
                let tc: &mut SchedClassifier = self
                    .ebpf
                    .program_mut(program)
                    .context("program gone")?
                    .try_into()?;
                tc.detach(link)?;
            }
        }
        Ok(())
    }
}

impl Drop for RxStamper {
    fn drop(&mut self) {
        self.flush_log();
        if let Err(e) = self.detach() {
            // Dropping the object below closes the link anyway; say what went wrong.
            eprintln!(
                "relay-ebpf: detaching from {} ({}): {e:#}",
                self.iface, self.hook
            );
        }
    }
}

impl std::fmt::Debug for RxStamper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RxStamper")
            .field("iface", &self.iface)
            .field("hook", &self.hook)
            .finish_non_exhaustive()
    }
}

/// TAI - REALTIME in nanoseconds, from `adjtimex` (read-only; the kernel's `tai` field, in
/// seconds). 0 where nothing set it (these VMs), 37 s on a host synchronised by chrony/PTP.
pub fn tai_offset_ns() -> anyhow::Result<i64> {
    // SAFETY: an all-zero timex with modes 0 asks the kernel only to read.
    let mut timex: libc::timex = unsafe { std::mem::zeroed() };
    timex.modes = 0;
    if unsafe { libc::adjtimex(&mut timex) } < 0 {
        return Err(std::io::Error::last_os_error()).context("adjtimex");
    }
    Ok(i64::from(timex.tai) * 1_000_000_000)
}

/// Fails early, with the fix, when this process cannot load BPF programs or change interfaces.
fn check_privileges() -> anyhow::Result<()> {
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_BPF: u32 = 39;
    if unsafe { libc::geteuid() } == 0 {
        return Ok(());
    }
    let effective = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(0);
    let has = |cap: u32| effective & (1u64 << cap) != 0;
    if (has(CAP_BPF) || has(CAP_SYS_ADMIN)) && has(CAP_NET_ADMIN) {
        return Ok(());
    }
    bail!(
        "loading the eBPF program needs root, or CAP_BPF (or CAP_SYS_ADMIN) and CAP_NET_ADMIN \
         (effective capabilities here: {effective:#x}); run as root or grant them, e.g. \
         `setcap cap_bpf,cap_net_admin,cap_perfmon+ep <binary>`"
    )
}

/// Adds the privilege hint to an error caused by EPERM/EACCES.
fn permission_hint(error: anyhow::Error, what: &str) -> anyhow::Error {
    let denied = error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| matches!(io.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)))
    });
    let error = if what.is_empty() {
        error
    } else {
        error.context(what.to_string())
    };
    if denied {
        error.context("permission denied: needs root, or CAP_BPF and CAP_NET_ADMIN")
    } else {
        error
    }
}

/// Explains the usual reasons an XDP attach fails.
fn xdp_attach_error(error: ProgramError, iface: &str, hook: Hook) -> anyhow::Error {
    let error = anyhow::Error::from(error);
    let errno = error
        .chain()
        .find_map(|cause| cause.downcast_ref::<std::io::Error>()?.raw_os_error());
    let hint = match errno {
        Some(libc::EOPNOTSUPP) => format!(
            "the driver of {iface} has no native XDP support: use xdp-generic (or tc-ingress)"
        ),
        Some(libc::EBUSY) | Some(libc::EEXIST) => {
            format!("another XDP program is already attached to {iface}")
        }
        Some(libc::EPERM) | Some(libc::EACCES) => {
            "permission denied: needs root, or CAP_BPF and CAP_NET_ADMIN".into()
        }
        _ => String::new(),
    };
    let error = error.context(format!("attaching the XDP program ({hook}) to {iface}"));
    if hint.is_empty() {
        error
    } else {
        error.context(hint)
    }
}

/// The kernel refused the program: keep the start and the end of the verifier's log.
fn load_error(error: ProgramError, program: &str) -> anyhow::Error {
    match error {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let excerpt = log_excerpt(&verifier_log.to_string(), 20);
            permission_hint(anyhow::Error::from(io_error), "").context(format!(
                "the kernel refused eBPF program {program}; verifier log:\n{excerpt}"
            ))
        }
        other => permission_hint(anyhow::Error::from(other), "")
            .context(format!("loading eBPF program {program}")),
    }
}

/// The first and last `keep` lines of a (verifier) log, with the number of lines left out.
fn log_excerpt(log: &str, keep: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    if lines.len() <= 2 * keep {
        return lines.join("\n");
    }
    format!(
        "{}\n  [... {} lines ...]\n{}",
        lines[..keep].join("\n"),
        lines.len() - 2 * keep,
        lines[lines.len() - keep..].join("\n")
    )
}

/// Prints the program's aya-log records to stderr (the relay has no `log` backend of its own).
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        eprintln!("{} [{}] {}", record.target(), record.level(), record.args());
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tai_offset_is_whole_seconds() {
        let offset = tai_offset_ns().unwrap();
        assert_eq!(offset % 1_000_000_000, 0);
        assert!((0..=100_000_000_000).contains(&offset));
    }

    #[test]
    fn attach_refuses_port_zero_or_explains_the_missing_object() {
        let error = RxStamper::attach("lo", Hook::XdpGeneric, 0).unwrap_err();
        let text = format!("{error:#}");
        if EBPF_OBJECT_AVAILABLE {
            assert!(text.contains("must not be 0"), "{text}");
        } else {
            assert!(text.contains("cargo xtask build-ebpf"), "{text}");
        }
    }

    #[test]
    fn verifier_log_excerpt_keeps_head_and_tail() {
        let log: String = (1..=50).map(|i| format!("line {i}\n")).collect();
        let excerpt = log_excerpt(&log, 3);
        assert_eq!(
            excerpt,
            "line 1\nline 2\nline 3\n  [... 44 lines ...]\nline 48\nline 49\nline 50"
        );
        assert_eq!(log_excerpt("a\nb", 3), "a\nb");
    }

    #[test]
    fn stamper_can_move_to_another_thread() {
        fn is_send<T: Send>() {}
        is_send::<RxStamper>();
    }
}
