//! Network namespaces joined by veth pairs, built with `ip` and torn down by a guard: the lab's
//! network, and the two-namespace set-ups of the eBPF tests and benchmarks.
//!
//! [`Topology::pair`] joins two namespaces directly. [`Topology::link`], the lab's emulated
//! link, gets a namespace of its own in the middle:
//!
//! ```text
//!   left ns                middle ns (the link)               right ns
//!   [<link>]=veth=[<left role>]  delay line  [<right role>]=veth=[<link>]
//!   10.77.S.1/24                                              10.77.S.2/24
//! ```
//!
//! The endpoint interfaces carry the link's name and the link's /24; the middle namespace has no
//! addresses at all, only the delay line moving frames between its two interfaces. There are no
//! default routes and no IP forwarding, so a namespace reaches exactly the neighbours it shares a
//! link with. Neighbour entries are static (no ARP, so the first packet is not delayed by a
//! resolution round trip) and IPv6 is off (no router or neighbour solicitations on the links):
//! the only frames on a link are the experiment's.
//!
//! Offloads: a veth sends TCP and UDP with the checksum left to "hardware"
//! (CHECKSUM_PARTIAL) and TCP as 64 KiB TSO super-frames. A frame read from an AF_PACKET socket
//! and written out again loses that metadata, so it would arrive with a bad checksum (dropped by
//! the receiver) or be too large to send. Turning transmit checksumming off on every lab veth
//! (which also turns TSO off) makes the kernel finish checksums and segment in software before
//! the frame enters the link: every frame the delay line sees is a complete wire frame of at most
//! MTU + 14 bytes. GRO (off by default on veth) is set off on the middle interfaces explicitly,
//! so nothing is merged on the way in.
//! Both are set with the ethtool ioctl, so the lab needs no `ethtool` binary.
//!
//! (Direct [`Topology::pair`]s keep the default offloads: nothing copies their frames.)
//!
//! Names: `relaylab-<pid>-<serial>-<role>`, for every user of this module. A crashed run
//! (SIGKILL, power loss) cannot run its guard, so [`Topology::new`] first deletes every
//! `relaylab-<pid>-*` namespace whose process is gone; namespaces of a process that is still
//! running are left alone.

use std::fs::File;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{anyhow, bail, Context, Result};

/// Every lab namespace name starts with this.
pub const PREFIX: &str = "relaylab-";

/// Longest interface name Linux accepts (IFNAMSIZ - 1).
const MAX_IFNAME: usize = 15;

static SERIAL: AtomicU32 = AtomicU32::new(0);

/// One namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Netns {
    /// The full name (`ip netns` name, `/run/netns/<name>`).
    pub name: String,
    /// The short role, e.g. `tokyo`; also the name of its interface in a link's middle namespace.
    pub role: String,
    /// IPv6 is on ([`Topology::namespace_v6`]).
    pub ipv6: bool,
}

impl Netns {
    /// `program` run inside the namespace (`ip netns exec <name> <program>`).
    pub fn exec(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }
}

/// One end of a link or pair, seen from the endpoint namespace.
#[derive(Clone, Debug)]
pub struct LinkEnd {
    pub netns: Netns,
    pub addr: Ipv4Addr,
    /// `fd00:77:<subnet>::<host>` where the namespace has IPv6.
    pub addr_v6: Option<Ipv6Addr>,
    pub mac: [u8; 6],
}

/// Two namespaces joined directly by one veth pair; both ends are named after the pair.
#[derive(Clone, Debug)]
pub struct Pair {
    /// The interface name on both sides.
    pub name: String,
    pub left: LinkEnd,
    pub right: LinkEnd,
}

/// One point-to-point link with its middle namespace.
#[derive(Clone, Debug)]
pub struct Link {
    /// The namespace the delay line runs in; its interfaces are named after the endpoint roles.
    pub middle: Netns,
    pub left: LinkEnd,
    pub right: LinkEnd,
}

impl Link {
    /// The middle namespace's interface facing `end` (its role).
    pub fn middle_interface(end: &LinkEnd) -> &str {
        &end.netns.role
    }
}

/// Creates namespaces and links; dropping it deletes every namespace it created (ending any
/// process still inside), also when a test panics or the lab is interrupted.
pub struct Topology {
    id: String,
    created: Vec<String>,
}

impl Topology {
    /// Sweeps leftovers of crashed runs, then starts an empty topology with a fresh name prefix.
    pub fn new() -> Result<Topology> {
        for stale in sweep_stale()? {
            eprintln!("netns: deleted namespace {stale} left by a run that no longer exists");
        }
        let id = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            SERIAL.fetch_add(1, Ordering::Relaxed)
        );
        Ok(Topology {
            id,
            created: Vec::new(),
        })
    }

    /// The names of the namespaces made so far, oldest first.
    pub fn namespaces(&self) -> &[String] {
        &self.created
    }

    /// A new namespace `<prefix>-<role>` with loopback up and IPv6 off.
    pub fn namespace(&mut self, role: &str) -> Result<Netns> {
        self.make_namespace(role, false)
    }

    /// A new namespace with loopback up and IPv6 on, without duplicate address detection (which
    /// would hold new addresses back for seconds).
    pub fn namespace_v6(&mut self, role: &str) -> Result<Netns> {
        self.make_namespace(role, true)
    }

    fn make_namespace(&mut self, role: &str, ipv6: bool) -> Result<Netns> {
        if role.is_empty() || role.len() > MAX_IFNAME || !role.bytes().all(name_byte) {
            bail!("namespace role {role:?}: 1-15 characters of a-z, 0-9, '-'");
        }
        let name = format!("{}-{role}", self.id);
        ip(&["netns", "add", &name])?;
        self.created.push(name.clone());
        ip(&["-n", &name, "link", "set", "dev", "lo", "up"])?;
        run_in(&name, || {
            for scope in ["all", "default"] {
                let (knob, value) = if ipv6 {
                    ("accept_dad", "0")
                } else {
                    ("disable_ipv6", "1")
                };
                let path = format!("/proc/sys/net/ipv6/conf/{scope}/{knob}");
                match std::fs::write(&path, value) {
                    Ok(()) => {}
                    // A kernel without IPv6 has nothing to turn off.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e).with_context(|| format!("writing {path}")),
                }
            }
            Ok(())
        })?;
        Ok(Netns {
            name,
            role: role.to_string(),
            ipv6,
        })
    }

    /// Joins `left` and `right` with one veth pair named `name` on both sides, on
    /// 10.77.`subnet`.0/24 (left .1, right .2) and, where both have IPv6, fd00:77:`subnet`::/64;
    /// neighbours are static, so nothing waits for ARP or neighbour discovery.
    pub fn pair(&mut self, name: &str, subnet: u8, left: &Netns, right: &Netns) -> Result<Pair> {
        if left.name == right.name {
            bail!("pair {name}: both ends are {}", left.name);
        }
        let both_v6 = left.ipv6 && right.ipv6;
        let pair = Pair {
            name: name.to_string(),
            left: end(left, subnet, 1, both_v6),
            right: end(right, subnet, 2, both_v6),
        };
        ip(&[
            "link",
            "add",
            name,
            "address",
            &mac_text(&pair.left.mac),
            "netns",
            &left.name,
            "type",
            "veth",
            "peer",
            "name",
            name,
            "address",
            &mac_text(&pair.right.mac),
            "netns",
            &right.name,
        ])?;
        for (this, other) in [(&pair.left, &pair.right), (&pair.right, &pair.left)] {
            address(this, other, name)?;
            ip(&["-n", &this.netns.name, "link", "set", "dev", name, "up"])?;
        }
        Ok(pair)
    }

    /// Joins `left` and `right` through a new middle namespace named after the link, on
    /// 10.77.`subnet`.0/24 (left .1, right .2).
    pub fn link(&mut self, name: &str, subnet: u8, left: &Netns, right: &Netns) -> Result<Link> {
        if left.role == right.role {
            bail!("link {name}: both ends are {}", left.role);
        }
        let middle = self.namespace(name)?;
        let link = Link {
            middle,
            left: end(left, subnet, 1, false),
            right: end(right, subnet, 2, false),
        };
        for (this, other) in [(&link.left, &link.right), (&link.right, &link.left)] {
            let ns = this.netns.name.as_str();
            let peer = Link::middle_interface(this);
            ip(&[
                "-n",
                ns,
                "link",
                "add",
                "name",
                name,
                "address",
                &mac_text(&this.mac),
                "type",
                "veth",
                "peer",
                "name",
                peer,
                "netns",
                &link.middle.name,
            ])?;
            address(this, other, name)?;
            run_in(ns, || set_offload(name, ETHTOOL_STXCSUM, false))?;
            run_in(&link.middle.name, || {
                set_offload(peer, ETHTOOL_STXCSUM, false)?;
                set_offload(peer, ETHTOOL_SGRO, false)
            })?;
            ip(&["-n", &link.middle.name, "link", "set", "dev", peer, "up"])?;
            ip(&["-n", ns, "link", "set", "dev", name, "up"])?;
        }
        Ok(link)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for name in self.created.iter().rev() {
            if let Err(e) = delete(name) {
                eprintln!("netns: could not delete namespace {name}: {e:#}");
            }
        }
    }
}

/// End `host` of a link or pair on `subnet`.
fn end(netns: &Netns, subnet: u8, host: u8, ipv6: bool) -> LinkEnd {
    LinkEnd {
        netns: netns.clone(),
        addr: Ipv4Addr::new(10, 77, subnet, host),
        addr_v6: ipv6
            .then(|| Ipv6Addr::new(0xfd00, 0x77, u16::from(subnet), 0, 0, 0, 0, u16::from(host))),
        mac: [0x02, 0x77, subnet, 0, 0, host],
    }
}

/// Gives `this` end its addresses on interface `dev` and a static neighbour entry for `other`.
fn address(this: &LinkEnd, other: &LinkEnd, dev: &str) -> Result<()> {
    let ns = this.netns.name.as_str();
    let mut addrs = vec![(format!("{}/24", this.addr), other.addr.to_string())];
    if let (Some(mine), Some(theirs)) = (this.addr_v6, other.addr_v6) {
        addrs.push((format!("{mine}/64"), theirs.to_string()));
    }
    for (mine, theirs) in addrs {
        let mut args = vec!["-n", ns, "addr", "add", &mine, "dev", dev];
        if mine.contains(':') {
            args.push("nodad");
        }
        ip(&args)?;
        ip(&[
            "-n",
            ns,
            "neigh",
            "replace",
            &theirs,
            "lladdr",
            &mac_text(&other.mac),
            "dev",
            dev,
            "nud",
            "permanent",
        ])?;
    }
    Ok(())
}

fn name_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'
}

fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Runs `ip <args>`, failing with its stderr.
pub fn ip(args: &[&str]) -> Result<String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .context("running `ip` (iproute2 is needed for network namespaces)")?;
    if !output.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Lab namespaces that exist right now (`ip netns list` names starting with [`PREFIX`]).
pub fn lab_namespaces() -> Result<Vec<String>> {
    let mut names = Vec::new();
    let dir = match std::fs::read_dir("/run/netns") {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(names),
        Err(e) => return Err(e).context("listing /run/netns"),
    };
    for entry in dir {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with(PREFIX) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Deletes lab namespaces whose creating process is gone; returns their names.
fn sweep_stale() -> Result<Vec<String>> {
    let mut deleted = Vec::new();
    for name in lab_namespaces()? {
        let owner = name[PREFIX.len()..]
            .split('-')
            .next()
            .and_then(|pid| pid.parse::<u32>().ok());
        if !owner.is_some_and(alive) {
            delete(&name)?;
            deleted.push(name);
        }
    }
    Ok(deleted)
}

/// True while process `pid` runs (a zombie, killed but not yet reaped, does not count).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Ends the processes inside namespace `name` (ones the lab started there) and deletes it.
fn delete(name: &str) -> Result<()> {
    let own = std::process::id();
    for pid in ip(&["netns", "pids", name])?.split_whitespace() {
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid != own {
            // SAFETY: kill has no memory effects; the pid was just listed as inside our namespace.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    }
    ip(&["netns", "del", name]).map(drop)
}

/// Moves the calling thread into namespace `name` (network namespaces are per thread).
pub fn enter(name: &str) -> Result<()> {
    let path = format!("/run/netns/{name}");
    let file = File::open(&path).with_context(|| format!("opening {path}"))?;
    // SAFETY: setns only reads the descriptor, which is open for the duration of the call.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("entering network namespace {name}"));
    }
    Ok(())
}

/// Runs `f` on a short-lived thread inside namespace `name`.
pub fn run_in<T: Send>(name: &str, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                enter(name)?;
                f()
            })
            .join()
            .map_err(|_| anyhow!("a thread inside namespace {name} panicked"))?
    })
}

// From <linux/ethtool.h> / <linux/sockios.h>: the legacy single-feature ethtool commands.
const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_STXCSUM: u32 = 0x17;
const ETHTOOL_SGRO: u32 = 0x2c;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// Turns one offload of `interface` (in the calling thread's namespace) on or off.
fn set_offload(interface: &str, command: u32, on: bool) -> Result<()> {
    if interface.len() > MAX_IFNAME {
        bail!("interface name {interface:?} is longer than {MAX_IFNAME} bytes");
    }
    // SAFETY: a plain socket() call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("socket for the ethtool ioctl");
    }
    // SAFETY: fd is a fresh descriptor we own.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut value = EthtoolValue {
        cmd: command,
        data: on as u32,
    };
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(interface.bytes()) {
        *dst = src as libc::c_char;
    }
    request.ifr_ifru.ifru_data = (&mut value as *mut EthtoolValue).cast();
    // SAFETY: SIOCETHTOOL reads the ifreq and the EthtoolValue it points to, both alive here.
    if unsafe { libc::ioctl(socket.as_raw_fd(), SIOCETHTOOL as _, &mut request) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("ethtool command {command:#x} on {interface}"));
    }
    Ok(())
}
