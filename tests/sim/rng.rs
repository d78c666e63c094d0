//! The one source of randomness: splitmix64. A schedule is a list of ops,
//! each carrying its own 64-bit draw, so removing ops (shrinking) leaves
//! every other op's choices as they were.

/// splitmix64 (Steele, Lea, Flood 2014): small, fast, well mixed.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True with probability `p` percent.
    pub fn chance(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    /// A float in 0..1.
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A delay in ms: mostly short, sometimes long (a heavy tail).
    pub fn delay(&mut self, short: f64, long: f64) -> f64 {
        if self.chance(90) {
            self.unit() * short
        } else {
            self.unit() * long
        }
    }
}
