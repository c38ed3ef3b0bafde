//! `relay doctor`: inspects this host (read only) and says what to change for the relay and the
//! receiver, one line per finding with the command that fixes it. Exit 0 when nothing blocks, 1
//! when something would.

pub mod checks;

use std::path::Path;

use checks::{Facts, Finding, Iface, Level};

fn read(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn sysctl(name: &str) -> Option<u64> {
    read(format!("/proc/sys/{}", name.replace('.', "/")))?
        .parse()
        .ok()
}

/// IRQs whose affinity includes `core`.
fn irqs_on(core: usize) -> Vec<(String, String)> {
    let Ok(dir) = std::fs::read_dir("/proc/irq") else {
        return Vec::new();
    };
    let mut irqs: Vec<(String, String)> = dir
        .flatten()
        .filter_map(|e| {
            let irq = e.file_name().to_string_lossy().into_owned();
            irq.parse::<u32>().ok()?;
            let list = read(e.path().join("smp_affinity_list"))?;
            checks::in_cpu_list(&list, core).then_some((irq, list))
        })
        .collect();
    irqs.sort_by_key(|(irq, _)| irq.parse::<u32>().unwrap_or(u32::MAX));
    irqs
}

fn governors(cores: usize) -> Option<Vec<String>> {
    (0..cores)
        .map(|c| {
            read(format!(
                "/sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor"
            ))
        })
        .collect()
}

/// ETHTOOL_GET_TS_INFO on `name`: (hardware receive stamps, raw hardware clock).
fn hw_timestamps(name: &str) -> Option<(bool, bool)> {
    #[repr(C)]
    struct TsInfo {
        cmd: u32,
        so_timestamping: u32,
        phc_index: i32,
        tx_types: u32,
        tx_reserved: [u32; 3],
        rx_filters: u32,
        rx_reserved: [u32; 3],
    }
    const ETHTOOL_GET_TS_INFO: u32 = 0x41;
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    let mut info = TsInfo {
        cmd: ETHTOOL_GET_TS_INFO,
        so_timestamping: 0,
        phc_index: -1,
        tx_types: 0,
        tx_reserved: [0; 3],
        rx_filters: 0,
        rx_reserved: [0; 3],
    };
    let mut req = crate::receive::rx_time::hardware::ifreq(name).ok()?;
    req.ifr_ifru.ifru_data = (&mut info as *mut TsInfo).cast();
    // SAFETY: SIOCETHTOOL reads the ifreq and writes into the TsInfo it points at, both live.
    let rc = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            libc::SIOCETHTOOL as _,
            &mut req,
        )
    };
    (rc == 0).then(|| {
        let bits = info.so_timestamping;
        (
            bits & libc::SOF_TIMESTAMPING_RX_HARDWARE != 0,
            bits & libc::SOF_TIMESTAMPING_RAW_HARDWARE != 0,
        )
    })
}

fn iface(name: &str) -> Iface {
    let sys = Path::new("/sys/class/net").join(name);
    Iface {
        name: name.to_string(),
        exists: sys.exists(),
        driver: std::fs::read_link(sys.join("device/driver"))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())),
        hw_timestamps: hw_timestamps(name),
    }
}

/// Reads this host's facts (nothing is changed).
pub fn facts(core: Option<usize>, iface_name: Option<&str>) -> Facts {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let relay_core = core.unwrap_or(cores.saturating_sub(1));
    Facts {
        cores,
        relay_core,
        isolated: read("/sys/devices/system/cpu/isolated").unwrap_or_default(),
        cmdline: read("/proc/cmdline").unwrap_or_default(),
        irqs_on_core: irqs_on(relay_core),
        governors: governors(cores),
        busy_read: sysctl("net.core.busy_read"),
        busy_poll: sysctl("net.core.busy_poll"),
        rmem_max: sysctl("net.core.rmem_max"),
        wmem_max: sysctl("net.core.wmem_max"),
        io_uring_disabled: sysctl("kernel.io_uring_disabled"),
        btf: Path::new("/sys/kernel/btf/vmlinux").exists(),
        clock: crate::clock_state::read().ok(),
        iface: iface_name.map(iface),
    }
}

/// The report, one line per finding (`ok`, `WARN`, `BLOCK`), each fix indented under it.
pub fn render(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        let level = match f.level {
            Level::Ok => "ok   ",
            Level::Warn => "WARN ",
            Level::Block => "BLOCK",
        };
        out.push_str(&format!("{level} {:<15} {}\n", f.topic, f.text));
        if let Some(fix) = &f.fix {
            out.push_str(&format!("      {:<15} fix: {fix}\n", ""));
        }
    }
    out
}

#[cfg(test)]
mod tests;
