//! A small stable hash: revision ids and deterministic sampling must not change between
//! builds or Rust versions, which `std`'s hasher does not promise.

/// 64-bit FNV-1a over the parts, with a separator so `("ab","c")` differs from `("a","bc")`.
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h = StableHasher::new();
    for part in parts {
        h.part(part);
    }
    h.finish()
}

/// [`stable_hash`] fed a part at a time, or a part written in pieces (`io::Write`, then
/// [`StableHasher::end_part`]): what a serializer writes is hashed without being kept.
pub struct StableHasher(u64);

impl StableHasher {
    pub fn new() -> Self {
        StableHasher(0xcbf2_9ce4_8422_2325)
    }

    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// One whole part.
    pub fn part(&mut self, bytes: &[u8]) {
        self.feed(bytes);
        self.end_part();
    }

    /// Ends the part written so far.
    pub fn end_part(&mut self) {
        self.feed(&[0xff]);
    }

    pub fn finish(&self) -> u64 {
        // Finalise (splitmix64) so nearby inputs spread over the whole range.
        let mut h = self.0;
        h ^= h >> 30;
        h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^= h >> 27;
        h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^ (h >> 31)
    }
}

impl Default for StableHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl std::io::Write for StableHasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.feed(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A uniform float in [0, 1) from a hash.
pub fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separates_parts_and_is_stable() {
        assert_ne!(stable_hash(&[b"ab", b"c"]), stable_hash(&[b"a", b"bc"]));
        assert_eq!(stable_hash(&[b"x"]), stable_hash(&[b"x"]));
        let u = unit(stable_hash(&[b"y"]));
        assert!((0.0..1.0).contains(&u));
    }
}
