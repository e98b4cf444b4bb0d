//! The generator's randomness: `rand`'s small generator, seeded per
//! (seed, series, minute) so that any step's samples can be replayed alone,
//! and `rand_distr`'s distributions.

use rand::{rngs::SmallRng, Rng as _, SeedableRng};
use rand_distr::{Distribution, Poisson, StandardNormal};

use crate::stable_hash::fnv1a64;

/// A seeded generator of uniform, normal and Poisson draws.
#[derive(Clone, Debug)]
pub(crate) struct Rng(SmallRng);

/// A stable 64-bit hash of `parts`: the seed of their generator, and ids.
pub(super) fn hash(parts: &[u64]) -> u64 {
    let bytes: Vec<[u8; 8]> = parts.iter().map(|part| part.to_le_bytes()).collect();
    let fields: Vec<&[u8]> = bytes.iter().map(|b| b.as_slice()).collect();
    fnv1a64(&fields)
}

impl Rng {
    /// The generator of `parts` (the same parts, the same draws).
    pub(crate) fn new(parts: &[u64]) -> Rng {
        Rng(SmallRng::seed_from_u64(hash(parts)))
    }

    /// A uniform 64-bit draw.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0.random()
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn uniform(&mut self) -> f64 {
        self.0.random()
    }

    /// Standard normal.
    pub(crate) fn normal(&mut self) -> f64 {
        StandardNormal.sample(&mut self.0)
    }

    /// Poisson with `mean` (0 for a mean that is not positive and finite).
    pub(crate) fn poisson(&mut self, mean: f64) -> u64 {
        match Poisson::new(mean) {
            Ok(poisson) => poisson.sample(&mut self.0) as u64,
            Err(_) => 0,
        }
    }

    /// Uniform in `[low, high)`.
    pub(super) fn between(&mut self, low: f64, high: f64) -> f64 {
        self.0.random_range(low..high)
    }
}
