//! First-fit allocation of aligned ranges inside a window, around ranges
//! already in use. One `Region` backs the allocator's memory window, one its
//! I/O window, and one each bridge window that BARs are placed into.

use alloc::vec::Vec;
use core::ops::Range;

/// A window and the disjoint ranges in use, sorted by start. A range in use
/// may lie outside the window, such as a firmware BAR that the host bridge
/// decodes outside the caller's window. It still blocks overlapping
/// allocations.
#[derive(Clone, Debug)]
pub(crate) struct Region {
    window: Range<u64>,
    used: Vec<Range<u64>>,
}

/// Rounds `value` up to a multiple of `alignment` (a power of two), or
/// returns `None` on overflow.
pub(crate) fn align_up(value: u64, alignment: u64) -> Option<u64> {
    debug_assert!(alignment.is_power_of_two());
    Some(value.checked_add(alignment - 1)? & !(alignment - 1))
}

impl Region {
    pub(crate) fn new(window: Range<u64>) -> Self {
        Region {
            window,
            used: Vec::new(),
        }
    }

    pub(crate) fn window(&self) -> Range<u64> {
        self.window.clone()
    }

    /// Marks `range` as in use. Returns `false`, and changes nothing, if it
    /// is empty or overlaps a range already in use.
    pub(crate) fn reserve(&mut self, range: Range<u64>) -> bool {
        if range.is_empty() {
            return false;
        }
        let index = self.used.partition_point(|used| used.start < range.start);
        let overlaps_previous = index > 0 && self.used[index - 1].end > range.start;
        let overlaps_next = self
            .used
            .get(index)
            .is_some_and(|next| next.start < range.end);
        if overlaps_previous || overlaps_next {
            return false;
        }
        self.used.insert(index, range);
        true
    }

    /// Finds the lowest free range of `size` bytes aligned to `alignment` (a
    /// power of two) that lies inside the window and ends at or below
    /// `end_limit`, and marks it in use.
    pub(crate) fn allocate(&mut self, size: u64, alignment: u64, end_limit: u64) -> Option<u64> {
        let end_limit = end_limit.min(self.window.end);
        let mut candidate = align_up(self.window.start, alignment)?;
        for used in &self.used {
            let candidate_end = candidate.checked_add(size)?;
            if candidate_end <= used.start {
                break;
            }
            if used.end > candidate {
                candidate = align_up(used.end, alignment)?;
            }
        }
        let end = candidate.checked_add(size)?;
        if size == 0 || end > end_limit {
            return None;
        }
        let reserved = self.reserve(candidate..end);
        debug_assert!(
            reserved,
            "the candidate range was checked against every used range"
        );
        Some(candidate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_aligned_and_disjoint() {
        let mut region = Region::new(0x1000..0x10_0000);
        let first = region.allocate(0x100, 0x100, u64::MAX);
        let second = region.allocate(0x4000, 0x4000, u64::MAX);
        let third = region.allocate(0x100, 0x100, u64::MAX);
        assert_eq!(first, Some(0x1000));
        assert_eq!(second, Some(0x4000));
        // First fit: the gap between the first two is used.
        assert_eq!(third, Some(0x1100));
    }

    #[test]
    fn allocation_skips_reserved_ranges() {
        let mut region = Region::new(0x0..0x10_0000);
        assert!(region.reserve(0x0..0x1800));
        assert!(region.reserve(0x3000..0x3010));
        assert_eq!(region.allocate(0x1000, 0x1000, u64::MAX), Some(0x2000));
        assert_eq!(region.allocate(0x1000, 0x1000, u64::MAX), Some(0x4000));
    }

    #[test]
    fn reserve_rejects_overlap() {
        let mut region = Region::new(0x0..0x10_0000);
        assert!(region.reserve(0x2000..0x3000));
        assert!(!region.reserve(0x2fff..0x4000));
        assert!(!region.reserve(0x1000..0x2001));
        assert!(!region.reserve(0x2400..0x2800));
        assert!(!region.reserve(0x5000..0x5000));
        assert!(region.reserve(0x1000..0x2000));
        assert!(region.reserve(0x3000..0x4000));
    }

    #[test]
    fn reserve_outside_window_blocks_nothing_inside() {
        let mut region = Region::new(0x1_0000..0x2_0000);
        assert!(region.reserve(0x8_0000_0000..0x8_0000_4000));
        assert_eq!(
            region.allocate(0x1_0000, 0x1_0000, u64::MAX),
            Some(0x1_0000)
        );
    }

    #[test]
    fn exhaustion_returns_none() {
        let mut region = Region::new(0x1000..0x3000);
        assert_eq!(region.allocate(0x2000, 0x2000, u64::MAX), None);
        assert_eq!(region.allocate(0x1000, 0x1000, u64::MAX), Some(0x1000));
        assert_eq!(region.allocate(0x1000, 0x1000, u64::MAX), Some(0x2000));
        assert_eq!(region.allocate(0x10, 0x10, u64::MAX), None);
    }

    #[test]
    fn end_limit_caps_placement() {
        let mut region = Region::new(0xffff_0000..0x1_0001_0000);
        assert_eq!(
            region.allocate(0x1_0000, 0x1_0000, 1 << 32),
            Some(0xffff_0000)
        );
        assert_eq!(region.allocate(0x1_0000, 0x1_0000, 1 << 32), None);
        assert_eq!(
            region.allocate(0x1_0000, 0x1_0000, u64::MAX),
            Some(0x1_0000_0000)
        );
    }

    #[test]
    fn window_at_address_space_top() {
        let mut region = Region::new(u64::MAX - 0xfff..u64::MAX);
        assert_eq!(region.allocate(0x1000, 0x1000, u64::MAX), None);
        assert_eq!(
            region.allocate(0x800, 0x800, u64::MAX),
            Some(u64::MAX - 0xfff)
        );
        assert_eq!(region.allocate(0x2000, 0x2000, u64::MAX), None);
    }
}
