//! xorshift64* (Vigna), seeded through splitmix64: the one small, fast, reproducible generator for
//! the simulator's prices, the lab's link draws, the pipeline harness's lossy link and the tests'
//! shuffles, drops and garbage. Not for anything that needs unpredictability.

#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // splitmix64 scrambles the seed so nearby seeds give unrelated sequences; the state
        // must never be zero for xorshift.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        Rng(if z == 0 { 1 } else { z })
    }

    /// The generator for stream `stream` of the thing called `name` under `seed`: things with the
    /// same seed but other names (or streams) draw unrelated numbers.
    pub fn seeded(seed: u64, name: &str, stream: u64) -> Rng {
        Rng::new(seed ^ fnv1a(name) ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n` (n > 0); the modulo bias is irrelevant for these uses.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with the given probability in percent.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit(); // (0, 1]
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i as u64 + 1) as usize);
        }
    }
}

/// 64-bit FNV-1a: a stable hash of a name (a symbol's base price, a link's stream of draws).
pub fn fnv1a(s: &str) -> u64 {
    fnv1a_bytes(0xcbf2_9ce4_8422_2325, s.as_bytes())
}

/// FNV-1a over `bytes`, continuing from `h` (start with the offset basis, or a previous result
/// to hash several parts as one).
pub fn fnv1a_bytes(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn reproducible_and_spread() {
        let a: Vec<u64> = (0..4)
            .scan(Rng::new(7), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..4)
            .scan(Rng::new(7), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        assert_ne!(
            a,
            (0..4)
                .scan(Rng::new(8), |r, _| Some(r.next_u64()))
                .collect::<Vec<_>>()
        );
        let mut rng = Rng::new(0);
        let mut hits = [0u32; 10];
        for _ in 0..10_000 {
            hits[rng.below(10) as usize] += 1;
        }
        assert!(hits.iter().all(|&h| (800..1200).contains(&h)), "{hits:?}");
        let mut items: Vec<u32> = (0..100).collect();
        rng.shuffle(&mut items);
        assert_ne!(items, (0..100).collect::<Vec<_>>());
        items.sort();
        assert_eq!(items, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn named_streams_are_reproducible_and_distinct() {
        let draws = |seed, name, stream| -> Vec<u64> {
            let mut rng = Rng::seeded(seed, name, stream);
            (0..100).map(|_| rng.next_u64()).collect()
        };
        assert_eq!(draws(7, "backbone", 0), draws(7, "backbone", 0));
        assert_ne!(draws(7, "backbone", 0), draws(7, "backbone", 1));
        assert_ne!(draws(7, "backbone", 0), draws(7, "internet", 0));
        assert_ne!(draws(7, "backbone", 0), draws(8, "backbone", 0));
    }

    #[test]
    fn unit_and_normal_have_their_moments() {
        let n = 200_000;
        let mut rng = Rng::seeded(1, "x", 0);
        let (mut sum, mut sq, mut below) = (0.0, 0.0, 0);
        for _ in 0..n {
            let v = rng.normal();
            sum += v;
            sq += v * v;
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u));
            if u < 0.1 {
                below += 1;
            }
        }
        let mean = sum / n as f64;
        let var = sq / n as f64 - mean * mean;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "variance {var}");
        assert!((below as f64 / n as f64 - 0.1).abs() < 0.003, "{below}");
        assert_eq!(super::fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(super::fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
