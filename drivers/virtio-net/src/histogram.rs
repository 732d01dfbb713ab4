//! TSC-cycle histograms of the driver's paths, with power-of-two buckets:
//! bucket `i` counts samples in `[2^i, 2^(i+1))` cycles (bucket 0 also
//! counts 0 and 1).

use virtio::barrier::BarrierMode;

/// Number of buckets: up to 2^32 cycles, far past any path length.
pub const BUCKETS: usize = 33;

/// One histogram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Log2Histogram {
    pub buckets: [u64; BUCKETS],
    pub count: u64,
    pub total_cycles: u64,
}

impl Default for Log2Histogram {
    fn default() -> Self {
        Self { buckets: [0; BUCKETS], count: 0, total_cycles: 0 }
    }
}

impl Log2Histogram {
    /// Adds one sample.
    pub fn record(&mut self, cycles: u64) {
        let bucket = (u64::BITS - cycles.max(1).leading_zeros() - 1) as usize;
        self.buckets[bucket.min(BUCKETS - 1)] += 1;
        self.count += 1;
        self.total_cycles = self.total_cycles.wrapping_add(cycles);
    }

    /// Returns the mean in cycles, or 0 without samples.
    pub fn mean_cycles(&self) -> u64 {
        self.total_cycles.checked_div(self.count).unwrap_or(0)
    }
}

/// Histograms of one path, one per barrier mode, so that runs that switch
/// modes at run time keep the two apart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathHistograms {
    pub weak: Log2Histogram,
    pub strong: Log2Histogram,
}

impl PathHistograms {
    /// Adds a sample taken in `mode`.
    pub fn record(&mut self, mode: BarrierMode, cycles: u64) {
        match mode {
            BarrierMode::Weak => self.weak.record(cycles),
            BarrierMode::Strong => self.strong.record(cycles),
        }
    }

    /// Returns the histogram of `mode`.
    pub fn for_mode(&self, mode: BarrierMode) -> &Log2Histogram {
        match mode {
            BarrierMode::Weak => &self.weak,
            BarrierMode::Strong => &self.strong,
        }
    }
}

/// Reads the TSC (unserialised: the paths are timed as they run, and a
/// serialising read would cost more than the barriers being measured).
#[inline(always)]
pub fn read_tsc() -> u64 {
    // SAFETY: RDTSC exists on every x86_64 CPU and has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_land_in_power_of_two_buckets() {
        let mut histogram = Log2Histogram::default();
        for cycles in [0, 1, 2, 3, 4, 7, 8, 1000, u64::MAX] {
            histogram.record(cycles);
        }
        assert_eq!(histogram.buckets[0], 2, "0 and 1");
        assert_eq!(histogram.buckets[1], 2, "2 and 3");
        assert_eq!(histogram.buckets[2], 2, "4 and 7");
        assert_eq!(histogram.buckets[3], 1, "8");
        assert_eq!(histogram.buckets[9], 1, "1000 is in [512, 1024)");
        assert_eq!(histogram.buckets[BUCKETS - 1], 1, "huge samples go to the last bucket");
        assert_eq!(histogram.count, 9);
    }

    #[test]
    fn modes_are_kept_apart() {
        let mut histograms = PathHistograms::default();
        histograms.record(BarrierMode::Weak, 100);
        histograms.record(BarrierMode::Strong, 300);
        histograms.record(BarrierMode::Strong, 500);
        assert_eq!(histograms.for_mode(BarrierMode::Weak).count, 1);
        assert_eq!(histograms.for_mode(BarrierMode::Strong).count, 2);
        assert_eq!(histograms.for_mode(BarrierMode::Strong).mean_cycles(), 400);
    }
}
