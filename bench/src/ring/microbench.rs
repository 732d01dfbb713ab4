//! Cost of each barrier of the virtio crate's barrier module on this host,
//! in time stamp counter ticks per barrier.
//!
//! Each sample times 1024 barriers in a loop unrolled 16 times, between
//! `lfence; rdtsc` and `rdtscp; lfence`; a row reports the median and the
//! 10th and 90th percentile over the samples. "back-to-back" runs the
//! barriers alone. "after a store" puts a store to a private cache line
//! before each barrier, the situation at the queue's sites, where a full
//! barrier has to wait for the store buffer to drain. Net ticks subtract the
//! same context's weak read barrier, which is only a compiler barrier, so
//! the net figure excludes the loop and the store.

use std::hint::black_box;

use virtio::barrier::{full_barrier, read_barrier, store_then_full_barrier, write_barrier, BarrierMode};

use crate::stats::percentile_of_sorted;
use crate::tsc;

/// Calls of the operation in [`unrolled`].
const UNROLL: usize = 16;
const LOOPS: usize = 64;
const BARRIERS_PER_SAMPLE: usize = UNROLL * LOOPS;

/// One measured barrier.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct MicrobenchRow {
    /// "read", "write", "full" or "store-then-full".
    pub barrier: &'static str,
    /// "weak" or "strong".
    pub mode: &'static str,
    /// "back-to-back" or "after a store".
    pub context: &'static str,
    /// Median ticks per barrier, loop included.
    pub ticks_median: f64,
    /// 10th percentile of ticks per barrier.
    pub ticks_p10: f64,
    /// 90th percentile of ticks per barrier.
    pub ticks_p90: f64,
    /// Median minus the same context's weak read barrier.
    pub net_ticks: f64,
}

/// Measures every barrier in both modes with `samples` samples each, on
/// the calling thread (pin it first).
pub fn measure_barriers(samples: usize) -> Vec<MicrobenchRow> {
    let mut slot = Box::new([0u64; 8]);
    let target: *mut u64 = slot.as_mut_ptr();
    let mut rows = Vec::new();
    for mode in BarrierMode::ALL {
        let mode = black_box(mode);
        rows.push(row("read", mode, "back-to-back", samples, || read_barrier(mode)));
        rows.push(row("write", mode, "back-to-back", samples, || write_barrier(mode)));
        rows.push(row("full", mode, "back-to-back", samples, || full_barrier(mode)));
        let store = || {
            // SAFETY: `target` points to the live boxed array above, which
            // nothing else references while the closures run.
            unsafe { target.write_volatile(black_box(1)) }
        };
        rows.push(row("read", mode, "after a store", samples, || {
            store();
            read_barrier(mode);
        }));
        rows.push(row("write", mode, "after a store", samples, || {
            store();
            write_barrier(mode);
        }));
        rows.push(row("full", mode, "after a store", samples, || {
            store();
            full_barrier(mode);
        }));
        rows.push(row("store-then-full", mode, "after a store", samples, || {
            // SAFETY: as for `store`; the array is 8-byte aligned, so its
            // first u16 is 2-byte aligned.
            unsafe { store_then_full_barrier(mode, target.cast::<u16>(), 1) }
        }));
    }
    let baseline = |context: &str| {
        rows.iter()
            .find(|row| row.barrier == "read" && row.mode == "weak" && row.context == context)
            .map_or(0.0, |row| row.ticks_median)
    };
    let baselines: Vec<f64> = rows.iter().map(|row| baseline(row.context)).collect();
    for (row, baseline) in rows.iter_mut().zip(baselines) {
        row.net_ticks = row.ticks_median - baseline;
    }
    black_box(&mut slot);
    rows
}

fn row(
    barrier: &'static str,
    mode: BarrierMode,
    context: &'static str,
    samples: usize,
    operation: impl Fn(),
) -> MicrobenchRow {
    let mut per_barrier: Vec<f64> = (0..samples.max(1))
        .map(|_| {
            let started = tsc::start();
            for _ in 0..LOOPS {
                unrolled(&operation);
            }
            let ended = tsc::stop();
            (ended - started) as f64 / BARRIERS_PER_SAMPLE as f64
        })
        .collect();
    per_barrier.sort_by(f64::total_cmp);
    let at = |quantile| percentile_of_sorted(&per_barrier, quantile).unwrap_or(0.0);
    MicrobenchRow {
        barrier,
        mode: mode.name(),
        context,
        ticks_median: at(0.5),
        ticks_p10: at(0.1),
        ticks_p90: at(0.9),
        net_ticks: 0.0,
    }
}

#[inline(always)]
fn unrolled(operation: &impl Fn()) {
    operation();
    operation();
    operation();
    operation();
    operation();
    operation();
    operation();
    operation();
    operation();
    operation();
    operation();
    operation();
    operation();
    operation();
    operation();
    operation();
}

/// Net ticks of `barrier` in `mode` after a store, the context of the
/// queue's sites.
pub fn net_after_store(rows: &[MicrobenchRow], barrier: &str, mode: BarrierMode) -> Option<f64> {
    rows.iter()
        .find(|row| row.barrier == barrier && row.mode == mode.name() && row.context == "after a store")
        .map(|row| row.net_ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_barrier_is_measured_in_both_modes() {
        let rows = measure_barriers(5);
        assert_eq!(rows.len(), 14);
        for mode in BarrierMode::ALL {
            for barrier in ["read", "write", "full", "store-then-full"] {
                let found = net_after_store(&rows, barrier, mode);
                assert!(found.is_some(), "{barrier} {mode}");
            }
        }
        assert!(rows.iter().all(|row| row.ticks_median > 0.0 && row.ticks_p10 <= row.ticks_p90));
        assert_eq!(net_after_store(&rows, "read", BarrierMode::Weak), Some(0.0));
    }
}
