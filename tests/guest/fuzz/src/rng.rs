//! The seeded PRNG (SplitMix64, Steele, Lea and Flood 2014) and the value generators built on
//! it. Every decision of the fuzzer comes from here and never from a value the hypervisor
//! returned, so a seed replays the same action sequence.

/// SplitMix64: a 64-bit state advanced by the golden-ratio increment and mixed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

/// 2^64 / φ, the SplitMix64 increment.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0; 0 for `n` = 0), by the multiply-high method.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo.wrapping_add(self.below(hi.wrapping_sub(lo).wrapping_add(1)))
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// An index into `weights`, chosen with probability proportional to its weight.
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let mut r = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if r < u64::from(w) {
                return i;
            }
            r -= u64::from(w);
        }
        weights.len() - 1
    }

    /// Values that sit on boundaries (0, ±1 around powers of two, sign bits, all-ones) half of
    /// the time, otherwise random bits of a random width.
    pub fn interesting(&mut self) -> u64 {
        const EDGES: [u64; 22] = [
            0,
            1,
            2,
            0x7f,
            0x80,
            0xff,
            0x100,
            0xfff,
            0x1000,
            0xffff,
            0x1_0000,
            0x7fff_ffff,
            0x8000_0000,
            0xffff_ffff,
            0x1_0000_0000,
            0x0000_7fff_ffff_ffff,
            0x0000_8000_0000_0000,
            0xffff_8000_0000_0000,
            0x7fff_ffff_ffff_ffff,
            0x8000_0000_0000_0000,
            u64::MAX - 1,
            u64::MAX,
        ];
        match self.below(4) {
            0 | 1 => self.pick(&EDGES),
            2 => 1u64 << self.below(64),
            _ => {
                let bits = self.range(1, 64);
                let v = self.next();
                if bits == 64 {
                    v
                } else {
                    v & ((1u64 << bits) - 1)
                }
            }
        }
    }
}
