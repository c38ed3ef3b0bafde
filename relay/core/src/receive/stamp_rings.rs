//! Reading the eBPF program's per-CPU stamp rings (the layout and the producer's side are in
//! [`relay_wire::stamp`]): the reader's tails, and what counts as overwritten. The shell maps the
//! rings' shared memory and hands [`RingReader::drain`] two loads: a CPU's `written` count and
//! the stamp in one of its slots.

use relay_wire::stamp::RxStamp;

/// The reader's position in every CPU's ring.
pub struct RingReader {
    tails: Vec<u64>,
    slots: u64,
    overwritten: u64,
}

impl RingReader {
    /// A reader of `cpus` rings of `slots_per_cpu` slots (a power of two), from their start.
    pub fn new(cpus: usize, slots_per_cpu: u32) -> RingReader {
        debug_assert!(slots_per_cpu.is_power_of_two());
        RingReader {
            tails: vec![0; cpus],
            slots: u64::from(slots_per_cpu.max(1)),
            overwritten: 0,
        }
    }

    /// Hands every stamp written since the last call to `out`, CPU by CPU, each CPU's oldest
    /// first, and returns how many. `written(cpu)` loads a CPU's head, `slot(cpu, index)` the
    /// stamp in its slot `index` (< slots per CPU). Stamps the producer wrote over before they
    /// were read, or while one was being read, are counted ([`RingReader::overwritten`]) and
    /// skipped: a reader a whole ring behind keeps the newest ring less one.
    pub fn drain(
        &mut self,
        written: impl Fn(usize) -> u64,
        slot: impl Fn(usize, u64) -> RxStamp,
        out: &mut impl FnMut(RxStamp),
    ) -> usize {
        let mut count = 0;
        for (cpu, tail) in self.tails.iter_mut().enumerate() {
            let head = written(cpu);
            // A head behind the tail cannot come from the program (it only counts up): start
            // over from it rather than read slots that were never written.
            if head < *tail {
                *tail = head;
            }
            // A full ring: the oldest slot may be the one being written next, so the reader
            // keeps at most a ring less one.
            if head - *tail >= self.slots {
                self.overwritten += head - *tail - (self.slots - 1);
                *tail = head - (self.slots - 1);
            }
            while *tail < head {
                let stamp = slot(cpu, *tail & (self.slots - 1));
                // The slot holds stamp `tail` until the producer starts on `tail + slots`,
                // which it does only once `written` has reached that far.
                if written(cpu) >= *tail + self.slots {
                    self.overwritten += 1;
                } else {
                    out(stamp);
                    count += 1;
                }
                *tail += 1;
            }
        }
        count
    }

    /// Stamps lost to the producer lapping the reader.
    pub fn overwritten(&self) -> u64 {
        self.overwritten
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};

    use super::*;

    fn stamp(sequence: u64) -> RxStamp {
        RxStamp {
            sequence,
            ..RxStamp::default()
        }
    }

    /// Rings of `slots` per CPU with a producer that can be run between loads.
    struct Rings {
        slots: u64,
        heads: Vec<Cell<u64>>,
        memory: RefCell<Vec<RxStamp>>,
    }

    impl Rings {
        fn new(cpus: usize, slots: u64) -> Rings {
            Rings {
                slots,
                heads: (0..cpus).map(|_| Cell::new(0)).collect(),
                memory: RefCell::new(vec![RxStamp::default(); cpus * slots as usize]),
            }
        }

        /// The program on `cpu` stamps a datagram of `sequence`.
        fn produce(&self, cpu: usize, sequence: u64) {
            let n = self.heads[cpu].get();
            self.memory.borrow_mut()[cpu * self.slots as usize + (n % self.slots) as usize] =
                stamp(sequence);
            self.heads[cpu].set(n + 1);
        }

        fn drain(&self, reader: &mut RingReader, meanwhile: impl Fn(usize, u64)) -> Vec<u64> {
            let mut got = Vec::new();
            reader.drain(
                |cpu| self.heads[cpu].get(),
                |cpu, index| {
                    let s = self.memory.borrow()[cpu * self.slots as usize + index as usize];
                    meanwhile(cpu, index);
                    s
                },
                &mut |s| got.push(s.sequence),
            );
            got
        }
    }

    #[test]
    fn every_cpu_ring_is_read_in_order_once() {
        let rings = Rings::new(2, 8);
        let mut reader = RingReader::new(2, 8);
        for seq in 1..=5 {
            rings.produce(0, seq);
        }
        rings.produce(1, 100);
        assert_eq!(rings.drain(&mut reader, |_, _| {}), [1, 2, 3, 4, 5, 100]);
        assert!(rings.drain(&mut reader, |_, _| {}).is_empty(), "read once");
        for seq in 6..=12 {
            rings.produce(0, seq);
        }
        assert_eq!(
            rings.drain(&mut reader, |_, _| {}),
            (6..=12).collect::<Vec<_>>(),
            "across the wrap"
        );
        assert_eq!(reader.overwritten(), 0);
    }

    #[test]
    fn a_reader_a_whole_ring_behind_loses_only_the_overwritten() {
        let rings = Rings::new(1, 8);
        let mut reader = RingReader::new(1, 8);
        for seq in 1..=20 {
            rings.produce(0, seq);
        }
        assert_eq!(
            rings.drain(&mut reader, |_, _| {}),
            (14..=20).collect::<Vec<_>>()
        );
        assert_eq!(reader.overwritten(), 13);
    }

    #[test]
    fn a_slot_rewritten_while_it_is_read_is_dropped_not_believed() {
        let rings = Rings::new(1, 8);
        let mut reader = RingReader::new(1, 8);
        for seq in 1..=4 {
            rings.produce(0, seq);
        }
        // While the reader holds its first slot (stamp 1), the producer laps it: eight more.
        let lapped = Cell::new(false);
        let got = rings.drain(&mut reader, |_, _| {
            if !lapped.replace(true) {
                for seq in 5..=12 {
                    rings.produce(0, seq);
                }
            }
        });
        // Stamps 1-4 were all (possibly) overwritten by the time each was checked.
        assert!(got.is_empty(), "{got:?}");
        assert_eq!(reader.overwritten(), 4);
        // Written 12, read up to 4: the ring is full, so the oldest (5) goes too.
        assert_eq!(
            rings.drain(&mut reader, |_, _| {}),
            (6..=12).collect::<Vec<_>>()
        );
        assert_eq!(reader.overwritten(), 5);
    }
}
