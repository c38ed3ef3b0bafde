//! The per-message hot path allocates nothing once warm: framing on the relay, accounting and
//! stamp joining on the receiver. Counted with a global allocator that counts per thread, so
//! the test harness's other threads do not disturb the count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use relay_core::binance::TimeUnit;
use relay_core::forward::framer::Framer;
use relay_core::receive::accounting::{Accounting, AccountingConfig, Event};
use relay_core::receive::stamp_join::{DatagramKey, StampTable};
use relay_core::wire::stamp::RxStamp;
use relay_core::wire::HEADER_LEN;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

const TRADE: &[u8] = br#"{"e":"trade","E":1700000000123456,"s":"BTCUSDT","t":12345,"p":"42000.01000000","q":"0.00100000","T":1700000000123400,"m":true,"M":true}"#;

#[test]
fn framing_and_accounting_allocate_nothing_per_message() {
    let mut framer = Framer::new(7, 1472, TimeUnit::Micros).unwrap();
    framer.on_upstream_open(None, &mut |_, _| {});
    let mut accounting = Accounting::new(AccountingConfig::default());
    let mut table = StampTable::new(1 << 16);
    let mut datagram = vec![0u8; 65_536];
    let big: Vec<u8> = TRADE.iter().copied().cycle().take(5000).collect();

    let mut run = |count: u64, payload: &[u8]| {
        let mut delivered = 0u64;
        for _ in 0..count {
            framer
                .frame_message(payload, false, 1, &mut |header, part| {
                    let len = HEADER_LEN + part.len();
                    header.encode((&mut datagram[..HEADER_LEN]).try_into().unwrap());
                    datagram[HEADER_LEN..len].copy_from_slice(part);
                    let key = DatagramKey::of(&datagram[..len]).unwrap();
                    table.insert(&RxStamp {
                        sequence: key.sequence,
                        time_ns: 1,
                        epoch: key.epoch,
                        fragment_index: key.fragment_index,
                        hook: 1,
                        _pad: 0,
                    });
                    assert!(table.take(key).is_some());
                    if let Event::Message(_) = accounting.on_datagram(&datagram[..len]) {
                        delivered += 1;
                    }
                })
                .unwrap();
        }
        delivered
    };
    // Warm up: reassembly slots grow to the largest message once.
    assert_eq!(run(100, &big), 100);
    assert_eq!(run(100, TRADE), 100);
    let mut delivered = 0;
    let small = allocations_during(|| delivered += run(10_000, TRADE));
    let fragmented = allocations_during(|| delivered += run(1_000, &big));
    assert_eq!(delivered, 11_000);
    assert_eq!(small, 0, "single-datagram messages");
    assert_eq!(fragmented, 0, "fragmented messages");
}
