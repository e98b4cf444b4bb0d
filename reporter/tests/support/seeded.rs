//! Seeded randomness (`rand`'s small generator, `rand_distr`'s normal), so
//! that tests driven by random input reproduce their failures.

use rand::{rngs::SmallRng, Rng as _, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

/// A generator: the same seed, the same draws.
pub struct Rng(SmallRng);

#[allow(dead_code)] // Each test uses what it needs.
impl Rng {
    /// The generator of `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(SmallRng::seed_from_u64(seed))
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0.random()
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.0.random_range(0..n.max(1))
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut bytes = vec![0; len];
        self.0.fill(&mut bytes[..]);
        bytes
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        self.0.random()
    }

    /// Log-normal around `median` with `sigma`.
    pub fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        let z: f64 = StandardNormal.sample(&mut self.0);
        median * (sigma * z).exp()
    }
}
