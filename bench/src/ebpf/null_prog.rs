//! A null eBPF program for the stamper benchmark's control runs: two instructions (`r0 = pass;
//! exit`) loaded with the raw `bpf(2)` system call and attached through a BPF link at the same
//! hook as the stamper (XDP driver or skb mode, tcx ingress). With kernel statistics on, its
//! ns/run is what the statistics themselves add (two clock reads around the call) plus the call:
//! the floor under any program's figure in that hook. With statistics off, its throughput is the
//! hook's own cost (on veth, native XDP changes the receive path) without the stamper's work.
//!
//! Needs CAP_BPF and CAP_NET_ADMIN (root). Dropping it detaches (the link is closed).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use relay_wire::stamp::Hook;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_CREATE: libc::c_long = 28;

const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const BPF_TCX_INGRESS: u32 = 46;
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

const XDP_PASS: i32 = 2;
/// `TCX_NEXT` / `TC_ACT_UNSPEC`: pass the packet on, as the stamper's tc program does.
const TCX_NEXT: i32 = -1;

/// `struct bpf_insn`: opcode, dst/src registers, offset, immediate.
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

/// The leading fields of `union bpf_attr` for BPF_PROG_LOAD (the kernel zero-fills the rest).
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The leading fields of `union bpf_attr` for BPF_LINK_CREATE.
#[repr(C)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    rest: [u64; 4],
}

/// `union bpf_attr` for BPF_OBJ_GET_INFO_BY_FD.
#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// `struct bpf_prog_info` as far as `run_cnt` (offsets from linux/bpf.h: run_time_ns at 192,
/// run_cnt at 200; 232 bytes up to recursion_misses and its neighbours).
const PROG_INFO_LEN: usize = 232;
const RUN_TIME_NS_AT: usize = 192;
const RUN_CNT_AT: usize = 200;

/// Where `hook` is in BPF terms: program type, the program's return value ("pass" there), attach
/// type and attach flags (XDP in driver mode for native, skb mode for generic; tcx ingress).
fn attach_params(hook: Hook) -> (u32, i32, u32, u32) {
    match hook {
        Hook::XdpNative => (BPF_PROG_TYPE_XDP, XDP_PASS, BPF_XDP, XDP_FLAGS_DRV_MODE),
        Hook::XdpGeneric => (BPF_PROG_TYPE_XDP, XDP_PASS, BPF_XDP, XDP_FLAGS_SKB_MODE),
        Hook::TcIngress => (BPF_PROG_TYPE_SCHED_CLS, TCX_NEXT, BPF_TCX_INGRESS, 0),
    }
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, initialised repr(C) prefix of `union bpf_attr` of the given
    // size; the kernel reads (and for GET_INFO writes through the pointer inside) no more.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A loaded and attached null program.
pub struct NullProgram {
    // Field order is drop order: the link (detaches) before the program.
    _link: OwnedFd,
    prog: OwnedFd,
}

impl NullProgram {
    /// Loads the program and attaches it to interface `ifindex` (of the caller's network
    /// namespace).
    pub fn attach(ifindex: u32, hook: Hook) -> io::Result<NullProgram> {
        let (prog_type, ret, attach_type, flags) = attach_params(hook);
        let insns = [
            // r0 = ret (BPF_ALU64 | BPF_MOV | BPF_K)
            Insn {
                code: 0xb7,
                regs: 0,
                off: 0,
                imm: ret,
            },
            // exit (BPF_JMP | BPF_EXIT)
            Insn {
                code: 0x95,
                regs: 0,
                off: 0,
                imm: 0,
            },
        ];
        let license = c"GPL";
        let mut name = [0u8; 16];
        name[..10].copy_from_slice(b"bench_null");
        let mut load = ProgLoadAttr {
            prog_type,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: 0,
            log_size: 0,
            log_buf: 0,
            kern_version: 0,
            prog_flags: 0,
            prog_name: name,
            prog_ifindex: 0,
            expected_attach_type: attach_type,
        };
        let fd = bpf(BPF_PROG_LOAD, &mut load)
            .map_err(|e| io::Error::new(e.kind(), format!("loading the null program: {e}")))?;
        // SAFETY: a fresh fd the kernel just returned, owned by nobody else.
        let prog = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let mut link = LinkCreateAttr {
            prog_fd: prog.as_raw_fd() as u32,
            target_ifindex: ifindex,
            attach_type,
            flags,
            rest: [0; 4],
        };
        let fd = bpf(BPF_LINK_CREATE, &mut link).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("attaching the null program ({hook}) to ifindex {ifindex}: {e}"),
            )
        })?;
        // SAFETY: as above.
        let link = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        Ok(NullProgram { _link: link, prog })
    }

    /// `(run_time_ns, run_cnt)` since the program was loaded (both 0 while statistics are off).
    pub fn stats(&self) -> io::Result<(u64, u64)> {
        let mut info = [0u64; PROG_INFO_LEN / 8];
        let mut attr = InfoAttr {
            bpf_fd: self.prog.as_raw_fd() as u32,
            info_len: PROG_INFO_LEN as u32,
            info: info.as_mut_ptr() as u64,
        };
        bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
        Ok((info[RUN_TIME_NS_AT / 8], info[RUN_CNT_AT / 8]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_layouts_match_linux_bpf_h() {
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(std::mem::offset_of!(LinkCreateAttr, flags), 12);
        assert_eq!(std::mem::offset_of!(InfoAttr, info), 8);
    }
}
