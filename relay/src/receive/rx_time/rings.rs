//! The eBPF program's per-CPU stamp rings in this process's memory: both maps `mmap`ed read-only
//! (`BPF_F_MMAPABLE`), read with volatile loads by the core's [`RingReader`] (the layout and the
//! ordering rules are in [`relay_core::wire::stamp`]). Draining is plain memory reads: no syscall.

use std::os::fd::{AsFd, AsRawFd};

use anyhow::Context;
use aya::maps::{Map, MapData};
use relay_core::receive::stamp_rings::RingReader;
use relay_core::wire::stamp::{RingHead, RxStamp, SLOTS_PER_CPU};

/// One map's values, mapped read-only.
struct Mapped {
    ptr: *const u8,
    len: usize,
    /// Keeps the map (and so the mapping's backing) alive.
    _map: MapData,
}

impl Mapped {
    fn new(map: Map, values: usize, value_size: usize, what: &str) -> anyhow::Result<Mapped> {
        let Map::Array(map) = map else {
            anyhow::bail!("the eBPF map {what} is not an array");
        };
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .ok()
            .filter(|&p| p > 0)
            .unwrap_or(4096);
        let len = (values * value_size).div_ceil(page) * page;
        let fd = map.fd().as_fd().as_raw_fd();
        // SAFETY: a read-only shared mapping of the map's values, which the kernel allows for a
        // BPF_F_MMAPABLE array; it stays valid while the map lives (`_map`), and is unmapped on drop.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).with_context(|| format!("mapping {what}"));
        }
        Ok(Mapped {
            ptr: ptr.cast(),
            len,
            _map: map,
        })
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe {
            libc::munmap(self.ptr.cast_mut().cast(), self.len);
        }
    }
}

/// The rings of `cpus` CPUs and the reader's place in them.
pub struct StampRings {
    slots: Mapped,
    heads: Mapped,
    cpus: usize,
    reader: RingReader,
}

// SAFETY: the mappings are read-only memory the kernel keeps valid while the maps live; moving
// the owner to another thread changes nothing about them.
unsafe impl Send for StampRings {}

impl StampRings {
    /// Maps the program's `slots` and `heads` maps, sized for `cpus` CPUs by the loader.
    pub fn new(slots: Map, heads: Map, cpus: usize) -> anyhow::Result<StampRings> {
        Ok(StampRings {
            slots: Mapped::new(
                slots,
                cpus * SLOTS_PER_CPU as usize,
                RxStamp::SIZE,
                "the stamp slots",
            )?,
            heads: Mapped::new(
                heads,
                cpus,
                std::mem::size_of::<RingHead>(),
                "the ring heads",
            )?,
            cpus,
            reader: RingReader::new(cpus, SLOTS_PER_CPU),
        })
    }

    /// Hands every stamp written since the last call to `out`; returns how many.
    pub fn drain(&mut self, out: &mut impl FnMut(RxStamp)) -> usize {
        let (slots, heads, cpus) = (self.slots.ptr, &self.heads, self.cpus);
        self.reader.drain(
            |cpu| written(heads, cpus, cpu),
            |cpu, index| {
                let at = (cpu * SLOTS_PER_CPU as usize + index as usize) * RxStamp::SIZE;
                // SAFETY: `index` < SLOTS_PER_CPU and `cpu` < `cpus`, inside the mapping; the
                // slot is 8-byte aligned; a torn value is caught by the reader's check after it.
                unsafe { std::ptr::read_volatile(slots.add(at).cast::<RxStamp>()) }
            },
            out,
        )
    }

    /// Stamps lost to the program lapping the reader.
    pub fn overwritten(&self) -> u64 {
        self.reader.overwritten()
    }

    /// Stamps the program has written on every CPU since it was loaded: its count of relay
    /// datagrams stamped (the heads are that count, so the program keeps no other).
    pub fn written(&self) -> u64 {
        (0..self.cpus).fold(0u64, |sum, cpu| {
            sum.wrapping_add(written(&self.heads, self.cpus, cpu))
        })
    }
}

/// CPU `cpu`'s head: how many stamps its program has written.
fn written(heads: &Mapped, cpus: usize, cpu: usize) -> u64 {
    debug_assert!(cpu < cpus);
    // SAFETY: `cpu` < `cpus`, and the heads map holds `cpus` 64-byte heads, each 8-byte aligned;
    // a volatile load, since the program writes it concurrently.
    unsafe { std::ptr::read_volatile(heads.ptr.add(cpu * std::mem::size_of::<RingHead>()).cast()) }
}
