//! The one hash the reporter stores: ids that must never change.
//!
//! Error fingerprints, ClickHouse series ids, cumulative stream ids and
//! stack-trace keys are written to disk and compared across builds and
//! replicas, so they are 64-bit FNV-1a, hand-written (ten lines): std's
//! hashers promise stability across neither Rust releases nor platforms,
//! and a dependency could change its output.

/// 64-bit FNV-1a over `fields`, each followed by the byte 0xff (never in
/// UTF-8, so fields cannot run into each other).
pub(crate) fn fnv1a64(fields: &[&[u8]]) -> u64 {
    fields
        .iter()
        .fold(Fnv1a::new(), |hash, field| hash.field(field))
        .finish()
}

/// [`fnv1a64`] fed one field at a time: a prefix shared by many ids (a
/// resource's attributes, hashed once per resource) is hashed once and
/// continued from, with the same result as hashing every field each time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fnv1a(u64);

impl Fnv1a {
    /// The hash of no fields.
    pub(crate) const fn new() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }

    /// The hash continued with `field` and its separator.
    #[must_use]
    pub(crate) fn field(self, field: &[u8]) -> Self {
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        let mut hash = self.0;
        for &byte in field.iter().chain(&[0xff]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(PRIME);
        }
        Fnv1a(hash)
    }

    /// The hash so far.
    pub(crate) fn finish(self) -> u64 {
        self.0
    }
}

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        // From the FNV reference (draft-eastlake-fnv), without our 0xff separator.
        let reference = |bytes: &[u8]| {
            bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            })
        };
        assert_eq!(reference(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(reference(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(reference(b"foobar"), 0x8594_4171_f739_67e8);
        // Our hash is the same function over the fields and their separators.
        assert_eq!(fnv1a64(&[b"a", b"b"]), reference(b"a\xffb\xff"));
        assert_eq!(fnv1a64(&[]), 0xcbf2_9ce4_8422_2325);
        // Continued from a prefix, the same hash.
        let prefix = Fnv1a::new().field(b"resource");
        assert_eq!(prefix.field(b"point").finish(), fnv1a64(&[b"resource", b"point"]));
    }
}
