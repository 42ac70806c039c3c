//! [`AddrMap`]: the hash map every simulator table keyed by an object's address uses.
//!
//! Keys are the addresses of kernel and framework objects, which no adversary picks, so the
//! map needs no defence against chosen keys (std's `SipHash`). A multiply by an odd
//! constant (Fibonacci hashing) spreads the aligned addresses over the whole word, so the
//! table's control bits (taken from the top of the hash) stay well distributed. `SipHash`
//! was the largest single cost of a KMDF request in the fuzzer's profile.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map from an object's address (or another `usize`/`u64` identity) to its record.
pub type AddrMap<V> = HashMap<usize, V, BuildHasherDefault<AddrHasher>>;

/// Hashes one integer key by a multiply; see the module documentation.
#[derive(Clone, Copy, Debug, Default)]
pub struct AddrHasher {
    hash: u64,
}

/// 2^64 divided by the golden ratio, rounded to odd.
const FIBONACCI: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.hash
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only integer keys are hashed in practice; fold any other bytes in anyway.
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.hash = (self.hash.rotate_left(5) ^ value).wrapping_mul(FIBONACCI);
    }

    fn write_usize(&mut self, value: usize) {
        self.write_u64(value as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_addresses_differ_in_their_top_bits() {
        let hash = |addr: usize| {
            let mut hasher = AddrHasher::default();
            hasher.write_usize(addr);
            hasher.finish() >> 57
        };
        let tops: std::collections::HashSet<u64> =
            (0..64).map(|i| hash(0x7f00_0000_1000 + i * 64)).collect();
        assert!(
            tops.len() > 32,
            "only {} distinct top-7-bit values",
            tops.len()
        );
    }

    #[test]
    fn a_map_finds_what_it_holds() {
        let mut map = AddrMap::default();
        for addr in (0x1000..0x2000).step_by(8) {
            map.insert(addr, addr * 2);
        }
        assert_eq!(map.len(), 512);
        assert!(
            (0x1000..0x2000)
                .step_by(8)
                .all(|addr| map.get(&addr) == Some(&(addr * 2)))
        );
        assert_eq!(map.get(&0x1004), None);
    }
}
