//! What `relay doctor` concludes from a host's facts: one finding per topic, with the command
//! that fixes it. Pure: the facts are read elsewhere ([`super::read`]), so every rule is tested
//! on made-up hosts.

use relay_core::record::clock::ClockState;

/// How much a finding matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    /// Costs latency or accuracy; the relay still works.
    Warn,
    /// The relay or the receiver would not work as asked.
    Block,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub level: Level,
    pub topic: &'static str,
    pub text: String,
    /// The command that fixes it, when there is one.
    pub fix: Option<String>,
}

/// A network interface, for the receiver's eBPF stamps and hardware timestamps.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Iface {
    pub name: String,
    pub exists: bool,
    /// The kernel driver (`/sys/class/net/IF/device/driver`), when there is a device.
    pub driver: Option<String>,
    /// ETHTOOL_GET_TS_INFO: (hardware receive stamps, raw hardware clock), when it answered.
    pub hw_timestamps: Option<(bool, bool)>,
}

/// What `relay doctor` looked at.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facts {
    pub cores: usize,
    /// The core the relay would pin to.
    pub relay_core: usize,
    /// `/sys/devices/system/cpu/isolated` (a CPU list, empty when none).
    pub isolated: String,
    pub cmdline: String,
    /// IRQs whose affinity includes the relay core, with that affinity.
    pub irqs_on_core: Vec<(String, String)>,
    /// Scaling governor of each core; `None` without cpufreq (VMs).
    pub governors: Option<Vec<String>>,
    pub busy_read: Option<u64>,
    pub busy_poll: Option<u64>,
    pub rmem_max: Option<u64>,
    pub wmem_max: Option<u64>,
    pub io_uring_disabled: Option<u64>,
    pub btf: bool,
    pub clock: Option<ClockState>,
    pub iface: Option<Iface>,
}

/// Whether core `core` is in a CPU list such as `0-3,7`.
pub fn in_cpu_list(list: &str, core: usize) -> bool {
    list.trim()
        .split(',')
        .filter(|p| !p.is_empty())
        .any(|part| {
            let mut ends = part.splitn(2, '-').map(|n| n.trim().parse::<usize>());
            match (ends.next(), ends.next()) {
                (Some(Ok(a)), None) => a == core,
                (Some(Ok(a)), Some(Ok(b))) => (a..=b).contains(&core),
                _ => false,
            }
        })
}

fn ok(topic: &'static str, text: impl Into<String>) -> Finding {
    Finding {
        level: Level::Ok,
        topic,
        text: text.into(),
        fix: None,
    }
}

fn warn(topic: &'static str, text: impl Into<String>, fix: Option<String>) -> Finding {
    Finding {
        level: Level::Warn,
        topic,
        text: text.into(),
        fix,
    }
}

/// The socket buffers the relay's receiver asks for by default (`--recv-buffer-bytes`).
pub const RECEIVER_BUFFER: u64 = 8 << 20;

/// Every finding about `facts`.
pub fn findings(f: &Facts) -> Vec<Finding> {
    let core = f.relay_core;
    let mut out = Vec::new();
    let others = if f.cores > 1 {
        (0..f.cores)
            .filter(|&c| c != core)
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(",")
    } else {
        "0".to_string()
    };

    out.push(if in_cpu_list(&f.isolated, core) {
        ok("cpu isolation", format!("core {core} is isolated from the scheduler"))
    } else {
        warn(
            "cpu isolation",
            format!("core {core} (the relay's) is not isolated: other tasks can run on it and delay the relay"),
            Some(format!("add `isolcpus={core} nohz_full={core} rcu_nocbs={core}` to the kernel command line and reboot")),
        )
    });
    if !f.cmdline.contains("nohz_full") && in_cpu_list(&f.isolated, core) {
        out.push(warn(
            "cpu isolation",
            format!("core {core} is isolated but still takes the scheduler tick"),
            Some(format!(
                "add `nohz_full={core}` to the kernel command line and reboot"
            )),
        ));
    }
    out.push(match f.irqs_on_core.len() {
        0 => ok(
            "interrupts",
            format!("no device interrupt is allowed on core {core}"),
        ),
        n => warn(
            "interrupts",
            format!(
                "{n} interrupts may run on core {core} (e.g. IRQ {}: cores {})",
                f.irqs_on_core[0].0, f.irqs_on_core[0].1
            ),
            Some(format!(
                "for irq in /proc/irq/[0-9]*; do echo {others} > $irq/smp_affinity_list; done  \
                 (and stop irqbalance, or ban core {core} in it)"
            )),
        ),
    });
    out.push(match &f.governors {
        None => ok(
            "frequency",
            "no cpufreq here (a VM, or a fixed clock): nothing to set",
        ),
        Some(g) if g.iter().all(|g| g == "performance") => {
            ok("frequency", "every core runs the performance governor")
        }
        Some(g) => warn(
            "frequency",
            format!(
                "cores run the {} governor: frequency changes add latency",
                g.iter()
                    .find(|g| *g != "performance")
                    .map_or("?", String::as_str)
            ),
            Some("cpupower frequency-set -g performance".into()),
        ),
    });
    out.push(match (f.busy_read, f.busy_poll) {
        (Some(r), Some(p)) if r > 0 && p > 0 => ok("busy polling", format!("net.core.busy_read {r}, busy_poll {p} µs")),
        (r, p) => warn(
            "busy polling",
            format!(
                "net.core.busy_read {} and busy_poll {}: the kernel does not poll the NIC for a waiting receiver (relay receive --busy-poll spins in user space either way)",
                r.map_or("?".into(), |v| v.to_string()),
                p.map_or("?".into(), |v| v.to_string())
            ),
            Some("sysctl -w net.core.busy_read=50 net.core.busy_poll=50".into()),
        ),
    });
    for (name, value, why) in [
        ("net.core.rmem_max", f.rmem_max, "a receiver asks for (--recv-buffer-bytes): bursts can overflow its socket (kernel_receive_drops)"),
        ("net.core.wmem_max", f.wmem_max, "a relay can be given (--send-buffer-bytes): a burst to many receivers can fill its socket (send_errors)"),
    ] {
        out.push(match value {
            Some(v) if v >= RECEIVER_BUFFER => ok("socket buffers", format!("{name} {v} bytes")),
            v => warn(
                "socket buffers",
                format!(
                    "{name} is {} bytes, below the {RECEIVER_BUFFER} {why}",
                    v.map_or("?".into(), |v| v.to_string())
                ),
                Some(format!("sysctl -w {name}={RECEIVER_BUFFER}")),
            ),
        });
    }
    out.push(match f.io_uring_disabled {
        Some(0) | None => ok("io_uring", "io_uring is enabled"),
        Some(v) => Finding {
            level: Level::Block,
            topic: "io_uring",
            text: format!(
                "kernel.io_uring_disabled is {v}: the relay runs on io_uring and cannot start"
            ),
            fix: Some("sysctl -w kernel.io_uring_disabled=0".into()),
        },
    });
    out.push(if f.btf {
        ok("eBPF", "the kernel has BTF (/sys/kernel/btf/vmlinux): the eBPF stamper can load")
    } else {
        warn(
            "eBPF",
            "no /sys/kernel/btf/vmlinux: the eBPF stamper may not load; the receiver then uses kernel software stamps",
            Some("use a kernel built with CONFIG_DEBUG_INFO_BTF=y".into()),
        )
    });
    match &f.clock {
        None => out.push(warn("clock", "adjtimex could not be read", None)),
        Some(c) => {
            out.push(if c.synchronized {
                ok(
                    "clock",
                    format!(
                        "synchronised, estimated error {} µs{}",
                        c.est_error_us,
                        c.chrony_offset_us.map_or(String::new(), |o| format!(", chrony offset {o:.1} µs"))
                    ),
                )
            } else {
                warn(
                    "clock",
                    "the clock is not synchronised: one-way latencies (E -> receiver) are as good as the two clocks' agreement",
                    Some("apt-get install chrony (and on AWS: server 169.254.169.123 prefer iburst in /etc/chrony/chrony.conf), or PTP".into()),
                )
            });
        }
    }
    if let Some(i) = &f.iface {
        if !i.exists {
            out.push(Finding {
                level: Level::Block,
                topic: "interface",
                text: format!(
                    "no interface {}: relay receive --iface {} cannot attach",
                    i.name, i.name
                ),
                fix: Some("ip -br link  (to list the interfaces)".into()),
            });
        } else {
            out.push(ok(
                "interface",
                format!(
                    "{}: driver {} (native XDP depends on it; relay receive --ebpf-mode auto falls back to generic XDP, then tc)",
                    i.name,
                    i.driver.as_deref().unwrap_or("none (virtual)")
                ),
            ));
            out.push(match i.hw_timestamps {
                Some((true, true)) => ok("hardware stamps", format!("{} stamps received packets with its own clock", i.name)),
                Some(_) => warn(
                    "hardware stamps",
                    format!("{} has no hardware receive stamps: the first stamp is the eBPF or software one", i.name),
                    None,
                ),
                None => warn("hardware stamps", format!("{} did not answer ETHTOOL_GET_TS_INFO", i.name), None),
            });
        }
    }
    out
}

/// The process's exit status for `findings`: 1 when something blocks, else 0.
pub fn exit_code(findings: &[Finding]) -> u8 {
    u8::from(findings.iter().any(|f| f.level == Level::Block))
}
