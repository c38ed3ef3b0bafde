//! Binance-shaped sample payloads for the microbenchmarks (same key order and number formats as
//! the exchange and the simulator).

use std::fmt::Write as _;

/// A spot `trade` event with a microsecond `E` (140 bytes).
pub fn trade() -> Vec<u8> {
    br#"{"e":"trade","E":1700000000123456,"s":"BTCUSDT","t":3312345678,"p":"43123.45000000","q":"0.00150000","T":1700000000123400,"m":true,"M":true}"#.to_vec()
}

/// A spot `bookTicker` (no `E`), 114 bytes: a busy symbol's ticker is 100-130 bytes.
pub fn book_ticker() -> Vec<u8> {
    br#"{"u":40090021712345,"s":"BTCUSDT","b":"43123.45000000","B":"131.21000000","a":"43123.46000000","A":"140.66000000"}"#.to_vec()
}

/// A `depthUpdate` with `levels` price levels per side (about 62 bytes per level pair).
pub fn depth_update(levels: usize) -> Vec<u8> {
    let mut out = String::from(
        r#"{"e":"depthUpdate","E":1700000000123456,"s":"BTCUSDT","U":157,"u":160,"b":["#,
    );
    for side in 0..2u64 {
        if side == 1 {
            out.push_str(r#"],"a":["#);
        }
        for i in 0..levels as u64 {
            if i > 0 {
                out.push(',');
            }
            let ticks = if side == 0 {
                4_312_345 - i
            } else {
                4_312_346 + i
            };
            let qty = 1_000 + (i * 7_919) % 900_000;
            let _ = write!(
                out,
                r#"["{}.{:02}000000","{}.{:08}"]"#,
                ticks / 100,
                ticks % 100,
                qty / 100_000_000,
                qty % 100_000_000
            );
        }
    }
    out.push_str("]}");
    out.into_bytes()
}

/// The depth sample the benchmarks use: ~3 KB, three datagrams at the default budget.
pub fn depth_3k() -> Vec<u8> {
    depth_update(48)
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_core::binance::event_time;

    #[test]
    fn samples_have_the_sizes_and_times_the_benchmarks_claim() {
        let t = trade();
        assert_eq!(t.len(), 140);
        assert_eq!(event_time(&t), Some(1_700_000_000_123_456));
        let b = book_ticker();
        assert_eq!(b.len(), 114);
        assert_eq!(event_time(&b), None, "bookTicker has no E");
        let d = depth_3k();
        assert!((2_048..=4_096).contains(&d.len()), "depth {} B", d.len());
        assert_eq!(event_time(&d), Some(1_700_000_000_123_456));
        let v: serde_json::Value = serde_json::from_slice(&d).expect("depth sample is JSON");
        assert_eq!(v["b"].as_array().map(Vec::len), Some(48));
        assert_eq!(v["a"][0][0], "43123.46000000");
    }
}
