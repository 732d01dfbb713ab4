//! Test payloads: reproducible pseudo-random bytes, and a comparison that
//! reports where an echo differs from what was sent.

use std::time::{SystemTime, UNIX_EPOCH};

/// Returns `length` pseudo-random bytes from `seed` (SplitMix64); the same
/// seed always gives the same bytes, so a failure message's seed
/// reproduces the payload.
pub fn pseudo_random_bytes(seed: u64, length: usize) -> Vec<u8> {
    let mut state = seed;
    let mut bytes = Vec::with_capacity(length + 8);
    while bytes.len() < length {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut mixed = state;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^= mixed >> 31;
        bytes.extend_from_slice(&mixed.to_le_bytes());
    }
    bytes.truncate(length);
    bytes
}

/// Returns a seed that differs between runs, from the wall clock.
pub fn seed_from_clock() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as u64)
        .unwrap_or(0x5eed)
}

/// Returns the offset of the first byte where `received` differs from
/// `sent`, including a length difference, or `None` when they are equal.
pub fn first_difference(sent: &[u8], received: &[u8]) -> Option<usize> {
    sent.iter()
        .zip(received)
        .position(|(left, right)| left != right)
        .or_else(|| (sent.len() != received.len()).then(|| sent.len().min(received.len())))
}

/// Checks that `received` equals `sent` byte for byte.
///
/// # Panics
/// On any difference, naming `context`, both lengths, the first differing
/// offset and up to 16 bytes of each side from there.
pub fn assert_echoed(sent: &[u8], received: &[u8], context: &str) {
    let Some(offset) = first_difference(sent, received) else {
        return;
    };
    let window =
        |bytes: &[u8]| -> Vec<u8> { bytes.iter().skip(offset).take(16).copied().collect() };
    panic!(
        "{context}: echo differs from the payload at offset {offset} \
         (sent {} bytes, received {}): sent {:02x?}, received {:02x?}",
        sent.len(),
        received.len(),
        window(sent),
        window(received)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes() {
        assert_eq!(pseudo_random_bytes(7, 1000), pseudo_random_bytes(7, 1000));
        assert_ne!(pseudo_random_bytes(7, 64), pseudo_random_bytes(8, 64));
    }

    #[test]
    fn lengths_are_exact_and_prefixes_agree() {
        for length in [0, 1, 7, 8, 9, 1472] {
            assert_eq!(pseudo_random_bytes(3, length).len(), length);
        }
        assert_eq!(
            pseudo_random_bytes(3, 13)[..],
            pseudo_random_bytes(3, 100)[..13]
        );
    }

    #[test]
    fn bytes_are_spread() {
        let bytes = pseudo_random_bytes(11, 1 << 16);
        let mut counts = [0u32; 256];
        for byte in &bytes {
            counts[usize::from(*byte)] += 1;
        }
        // 256 expected per value; a constant or short-cycle generator is far off.
        assert!(
            counts.iter().all(|&count| (128..=384).contains(&count)),
            "{counts:?}"
        );
    }

    #[test]
    fn difference_offsets() {
        assert_eq!(first_difference(b"abc", b"abc"), None);
        assert_eq!(first_difference(b"abc", b"abd"), Some(2));
        assert_eq!(first_difference(b"abc", b"ab"), Some(2));
        assert_eq!(first_difference(b"ab", b"abc"), Some(2));
        assert_eq!(first_difference(b"", b""), None);
    }

    #[test]
    #[should_panic(expected = "at offset 1 (sent 3 bytes, received 3)")]
    fn assert_echoed_reports_offset() {
        assert_echoed(b"abc", b"aXc", "test");
    }
}
