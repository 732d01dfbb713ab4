//! One row of `trials.csv` per trial: every figure the trial produced, flat
//! for CSV. The per round trip samples are reduced here. Only the latency
//! histogram is kept, merged per configuration.

use serde::Serialize;
use virtio::barrier::BarrierSite;

use super::config::RingConfig;
use super::driver::SiteCounts;
use super::trial::TrialResult;
use crate::stats::{percentiles, LogHistogram, Percentiles};
use crate::tsc::TscFrequency;

/// Position of a trial in the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrialPosition {
    /// 1-based index in run order.
    pub trial: usize,
    /// 1-based round.
    pub round: u32,
    /// 1-based position inside the round.
    pub position_in_round: usize,
}

/// Every figure of one trial.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrialRow {
    /// 1-based index in run order.
    pub trial: usize,
    /// 1-based round.
    pub round: u32,
    /// 1-based position inside the round.
    pub position_in_round: usize,
    /// Full configuration label.
    pub config: String,
    /// "model" or "rust-vmm".
    pub device: &'static str,
    /// "on" or "off".
    pub event_idx: &'static str,
    /// Barrier configuration label.
    pub barriers: String,
    /// Descriptors in the queue.
    pub queue_size: u16,
    /// Chains per round trip.
    pub batch: u16,
    /// Untimed round trips.
    pub warmup: u64,
    /// Timed round trips run, faulted ones included.
    pub round_trips: u64,
    /// Timed round trips with latency samples.
    pub sampled_round_trips: u64,
    /// Calibrated counter frequency.
    pub tsc_hz: f64,
    /// Mean round-trip latency.
    pub latency_mean_ticks: f64,
    /// Minimum round-trip latency.
    pub latency_min_ticks: f64,
    /// Median round-trip latency.
    pub latency_p50_ticks: f64,
    /// 90th percentile.
    pub latency_p90_ticks: f64,
    /// 99th percentile.
    pub latency_p99_ticks: f64,
    /// 99.9th percentile.
    pub latency_p99_9_ticks: f64,
    /// Maximum round-trip latency.
    pub latency_max_ticks: f64,
    /// Mean latency in nanoseconds.
    pub latency_mean_ns: f64,
    /// Median latency in nanoseconds.
    pub latency_p50_ns: f64,
    /// 99th percentile in nanoseconds.
    pub latency_p99_ns: f64,
    /// Chains completed per second over the timed phase.
    pub throughput_chains_per_second: f64,
    /// Mean submit path ticks (add, publish, notification decision).
    pub submit_mean_ticks: f64,
    /// Median submit path ticks.
    pub submit_p50_ticks: f64,
    /// Mean completion path ticks (pop_used until empty).
    pub completion_mean_ticks: f64,
    /// Median completion path ticks.
    pub completion_p50_ticks: f64,
    /// Mean re-arm ticks (enable_interrupts).
    pub rearm_mean_ticks: f64,
    /// Median re-arm ticks.
    pub rearm_p50_ticks: f64,
    /// Ticks of the timed phase.
    pub elapsed_ticks: u64,
    /// Doorbell rings in the timed phase.
    pub kicks: u64,
    /// Notifications suppressed by the device's request in the timed phase.
    pub kicks_suppressed: u64,
    /// Interrupt waits in the timed phase that ended with a signal.
    pub wakeups: u64,
    /// Wakeups that found no used chain.
    pub spurious_wakeups: u64,
    /// Extra polling passes after enable_interrupts found chains.
    pub pending_rechecks: u64,
    /// Interrupts the device raised, warm-up included.
    pub device_interrupts: u64,
    /// Doorbell wakeups of the device, warm-up included.
    pub device_wakeups: u64,
    /// Chains the device returned, warm-up included.
    pub device_completions: u64,
    /// avail-publish executions, weak.
    pub avail_publish_weak: u64,
    /// avail-publish executions, strong.
    pub avail_publish_strong: u64,
    /// avail-publish executions, ablated.
    pub avail_publish_none: u64,
    /// notify-check executions, weak.
    pub notify_check_weak: u64,
    /// notify-check executions, strong.
    pub notify_check_strong: u64,
    /// notify-check executions, ablated.
    pub notify_check_none: u64,
    /// used-read executions, weak.
    pub used_read_weak: u64,
    /// used-read executions, strong.
    pub used_read_strong: u64,
    /// used-read executions, ablated.
    pub used_read_none: u64,
    /// interrupt-enable executions, weak.
    pub interrupt_enable_weak: u64,
    /// interrupt-enable executions, strong.
    pub interrupt_enable_strong: u64,
    /// interrupt-enable executions, ablated.
    pub interrupt_enable_none: u64,
    /// used-event-store executions, weak.
    pub used_event_store_weak: u64,
    /// used-event-store executions, strong.
    pub used_event_store_strong: u64,
    /// used-event-store executions, ablated.
    pub used_event_store_none: u64,
    /// Lost available buffer notifications (ablation runs). This and the
    /// following fault counts include the warm-up.
    pub lost_available_notifications: u64,
    /// Lost used buffer notifications (ablation runs).
    pub lost_used_notifications: u64,
    /// Chains never returned (ablation runs).
    pub missing_buffers: u64,
    /// Chains returned twice (ablation runs).
    pub duplicate_buffers: u64,
    /// Wrong used lengths (ablation runs).
    pub wrong_lengths: u64,
    /// Responses with another request's sequence number (ablation runs).
    pub wrong_contents: u64,
    /// pop_used errors (ablation runs).
    pub queue_errors: u64,
    /// Round trips with a fault, not sampled.
    pub faulted_round_trips: u64,
    /// Reason the trial stopped early, or empty.
    pub ended_early: String,
    /// Steal time of the machine during the trial.
    pub steal_ms: f64,
    /// Preemptions of the driver and device threads (involuntary context
    /// switches), or -1 when the kernel does not report them.
    pub preemptions: i64,
    /// Wall-clock seconds of the trial.
    pub wall_seconds: f64,
}

impl TrialRow {
    /// Reduces `result` to a row and adds its latencies to `histogram`.
    pub fn from_trial(
        mut result: TrialResult,
        position: TrialPosition,
        frequency: &TscFrequency,
        histogram: &mut LogHistogram,
    ) -> TrialRow {
        let config: &RingConfig = &result.config;
        let driver = &mut result.driver;
        for &latency in &driver.samples.latency {
            histogram.record(latency);
        }
        let latency = summarise(&mut driver.samples.latency);
        let submit = summarise(&mut driver.samples.submit);
        let completion = summarise(&mut driver.samples.completion);
        let rearm = summarise(&mut driver.samples.rearm);
        let counts = &driver.barriers;
        let site = |site: BarrierSite| site_counts(counts, site);
        let (before, after) = driver.queue_counters;
        let faults = driver.faults;
        let chains = driver.round_trips.saturating_sub(faults.faulted_round_trips) * u64::from(result.shape.batch);
        let elapsed_seconds = driver.elapsed_ticks as f64 / frequency.calibrated_hz;
        TrialRow {
            trial: position.trial,
            round: position.round,
            position_in_round: position.position_in_round,
            config: config.label(),
            device: config.device.name(),
            event_idx: if config.event_idx { "on" } else { "off" },
            barriers: config.barriers.label.clone(),
            queue_size: result.shape.queue_size,
            batch: result.shape.batch,
            warmup: result.shape.warmup,
            round_trips: driver.round_trips,
            sampled_round_trips: driver.samples.latency.len() as u64,
            tsc_hz: frequency.calibrated_hz,
            latency_mean_ticks: latency.mean,
            latency_min_ticks: latency.min,
            latency_p50_ticks: latency.percentiles.p50,
            latency_p90_ticks: latency.percentiles.p90,
            latency_p99_ticks: latency.percentiles.p99,
            latency_p99_9_ticks: latency.percentiles.p99_9,
            latency_max_ticks: latency.max,
            latency_mean_ns: frequency.ticks_to_ns(latency.mean),
            latency_p50_ns: frequency.ticks_to_ns(latency.percentiles.p50),
            latency_p99_ns: frequency.ticks_to_ns(latency.percentiles.p99),
            throughput_chains_per_second: if elapsed_seconds > 0.0 { chains as f64 / elapsed_seconds } else { 0.0 },
            submit_mean_ticks: submit.mean,
            submit_p50_ticks: submit.percentiles.p50,
            completion_mean_ticks: completion.mean,
            completion_p50_ticks: completion.percentiles.p50,
            rearm_mean_ticks: rearm.mean,
            rearm_p50_ticks: rearm.percentiles.p50,
            elapsed_ticks: driver.elapsed_ticks,
            kicks: after.kicks - before.kicks,
            kicks_suppressed: after.kicks_suppressed - before.kicks_suppressed,
            wakeups: driver.wakeups,
            spurious_wakeups: driver.spurious_wakeups,
            pending_rechecks: driver.pending_rechecks,
            device_interrupts: result.device.interrupts,
            device_wakeups: result.device.wakeups,
            device_completions: result.device.completions,
            avail_publish_weak: site(BarrierSite::AvailPublish)[0],
            avail_publish_strong: site(BarrierSite::AvailPublish)[1],
            avail_publish_none: site(BarrierSite::AvailPublish)[2],
            notify_check_weak: site(BarrierSite::NotifyCheck)[0],
            notify_check_strong: site(BarrierSite::NotifyCheck)[1],
            notify_check_none: site(BarrierSite::NotifyCheck)[2],
            used_read_weak: site(BarrierSite::UsedRead)[0],
            used_read_strong: site(BarrierSite::UsedRead)[1],
            used_read_none: site(BarrierSite::UsedRead)[2],
            interrupt_enable_weak: site(BarrierSite::InterruptEnable)[0],
            interrupt_enable_strong: site(BarrierSite::InterruptEnable)[1],
            interrupt_enable_none: site(BarrierSite::InterruptEnable)[2],
            used_event_store_weak: site(BarrierSite::UsedEventStore)[0],
            used_event_store_strong: site(BarrierSite::UsedEventStore)[1],
            used_event_store_none: site(BarrierSite::UsedEventStore)[2],
            lost_available_notifications: faults.lost_available_notifications,
            lost_used_notifications: faults.lost_used_notifications,
            missing_buffers: faults.missing_buffers,
            duplicate_buffers: faults.duplicate_buffers,
            wrong_lengths: faults.wrong_lengths,
            wrong_contents: faults.wrong_contents,
            queue_errors: faults.queue_errors,
            faulted_round_trips: faults.faulted_round_trips,
            ended_early: driver.ended_early.clone().unwrap_or_default(),
            steal_ms: result.steal_ms.unwrap_or(f64::NAN),
            preemptions: result.preemptions.map_or(-1, |count| count as i64),
            wall_seconds: result.wall_time.as_secs_f64(),
        }
    }

    /// Weak, strong and ablated executions of `site` in the timed phase.
    pub fn site_counts(&self, site: BarrierSite) -> [u64; 3] {
        match site {
            BarrierSite::AvailPublish => [self.avail_publish_weak, self.avail_publish_strong, self.avail_publish_none],
            BarrierSite::NotifyCheck => [self.notify_check_weak, self.notify_check_strong, self.notify_check_none],
            BarrierSite::UsedRead => [self.used_read_weak, self.used_read_strong, self.used_read_none],
            BarrierSite::InterruptEnable => [
                self.interrupt_enable_weak,
                self.interrupt_enable_strong,
                self.interrupt_enable_none,
            ],
            BarrierSite::UsedEventStore => [
                self.used_event_store_weak,
                self.used_event_store_strong,
                self.used_event_store_none,
            ],
        }
    }

    /// Executions of `site` per timed round trip, whatever executed.
    pub fn executions_per_round_trip(&self, site: BarrierSite) -> f64 {
        if self.round_trips == 0 {
            return 0.0;
        }
        self.site_counts(site).iter().sum::<u64>() as f64 / self.round_trips as f64
    }

    /// Faults of every kind.
    pub fn fault_total(&self) -> u64 {
        self.lost_available_notifications
            + self.lost_used_notifications
            + self.missing_buffers
            + self.duplicate_buffers
            + self.wrong_lengths
            + self.wrong_contents
            + self.queue_errors
    }
}

fn site_counts(counts: &SiteCounts, site: BarrierSite) -> [u64; 3] {
    let index = super::config::site_index(site);
    [counts.weak[index], counts.strong[index], counts.ablated[index]]
}

struct Summary {
    mean: f64,
    min: f64,
    max: f64,
    percentiles: Percentiles,
}

/// Mean, extremes and percentiles of `samples` (sorted in place), or zeros
/// when there are none.
fn summarise(samples: &mut [u64]) -> Summary {
    let zero = Percentiles {
        p50: 0.0,
        p90: 0.0,
        p99: 0.0,
        p99_9: 0.0,
    };
    if samples.is_empty() {
        return Summary {
            mean: 0.0,
            min: 0.0,
            max: 0.0,
            percentiles: zero,
        };
    }
    let mean = samples.iter().map(|&sample| sample as f64).sum::<f64>() / samples.len() as f64;
    let percentiles = percentiles(samples).unwrap_or(zero);
    Summary {
        mean,
        min: samples[0] as f64,
        max: samples[samples.len() - 1] as f64,
        percentiles,
    }
}
