//! Statistics of a `bench run`. Per workload and mode, the module computes
//! the mean and median of the trials' mean latencies with bootstrap
//! intervals, guest work per transaction and driver path cycles. It
//! compares strong against weak with a ratio of means and its interval, a
//! permutation test and a per-round paired ratio, adjusts for host steal as
//! a covariate, and summarises the in-guest barrier microbenchmark.
//!
//! Every statistic resamples whole trials, one value per trial, because
//! the transactions within a trial share one boot and one stretch of host
//! noise.

use std::collections::BTreeMap;

use virtio::barrier::BarrierKind;

use super::options::{Mode, TrialConfig, Workload};
use super::records::{BarrierBenchLine, CycleHistogram, DriverPath, StatsDelta, LOG2_BUCKETS, RECEIVE_QUEUE, TRANSMIT_QUEUE};
use super::trial::TrialRow;
use crate::stats::{self, Bootstrap, Interval};

/// Relabelings of the permutation test.
const PERMUTATIONS: usize = 10_000;

/// A trial's configuration, its row and, when it succeeded, its counters.
#[derive(Clone, Debug)]
pub struct TrialOutcome {
    /// Combination that ran.
    pub config: TrialConfig,
    /// The `trials.csv` row.
    pub row: TrialRow,
    /// Guest counter differences of a successful trial.
    pub delta: Option<StatsDelta>,
}

/// One workload in one mode.
#[derive(Clone, Debug)]
pub struct ModeSummary {
    /// Barrier mode.
    pub mode: Mode,
    /// Trials with a measurement.
    pub trials_ok: usize,
    /// Trials recorded as failed.
    pub trials_failed: usize,
    /// Mean of the trials' mean latencies, microseconds.
    pub latency_mean: Option<Interval>,
    /// Median of the trials' mean latencies, microseconds.
    pub latency_median: Option<Interval>,
    /// Mean of the trials' 99th percentile latencies, microseconds.
    pub p99_mean: Option<Interval>,
    /// Mean transaction rate, per second.
    pub rate_mean: Option<Interval>,
    /// Mean of the trials' read, write and full barriers per transaction.
    pub barriers_per_transaction: [Option<f64>; 3],
    /// Mean of the trials' notifications (kicks and interrupts) per
    /// transaction.
    pub notifications_per_transaction: Option<f64>,
    /// Mean host steal per trial, milliseconds.
    pub steal_ms_mean: Option<f64>,
    /// Driver path histograms pooled over the trials, by (queue, path).
    pub cycles: BTreeMap<(u16, DriverPath), CycleHistogram>,
}

/// Strong against weak for one workload. Ratios are strong / weak, so
/// subtracting 1 gives the relative difference.
#[derive(Clone, Debug, Default)]
pub struct Comparison {
    /// Ratio of mean latencies with its bootstrap interval.
    pub latency_ratio: Option<Interval>,
    /// Permutation test p-value of the mean latency difference.
    pub latency_p_value: Option<f64>,
    /// Geometric mean of the per-round latency ratios (rounds in which both
    /// modes succeeded), with its bootstrap interval.
    pub paired_latency_ratio: Option<Interval>,
    /// Rounds that had both modes.
    pub paired_rounds: usize,
    /// Ratio of mean transaction rates.
    pub rate_ratio: Option<Interval>,
    /// Permutation test p-value of the rate difference.
    pub rate_p_value: Option<f64>,
    /// Ratio of mean 99th percentile latencies.
    pub p99_ratio: Option<Interval>,
    /// Latency effect of strong barriers in microseconds, from a least
    /// squares fit of trial mean latency on mode and host steal.
    pub steal_adjusted_effect_us: Option<f64>,
    /// Microseconds of mean latency per millisecond of steal, same fit.
    pub steal_slope: Option<f64>,
    /// Pearson correlation of steal and trial mean latency, both modes.
    pub steal_latency_correlation: Option<f64>,
    /// Rounds after which the latency ratio's interval would be narrow
    /// enough to exclude 1 at the observed effect, assuming the interval
    /// narrows as one over the square root of the rounds.
    pub rounds_to_resolve: Option<f64>,
    /// Rounds for an interval half-width of 1% on the latency ratio, same
    /// assumption.
    pub rounds_for_one_percent: Option<f64>,
}

impl Comparison {
    /// Returns whether the latency ratio's interval excludes 1 and the permutation
    /// test rejects equal means at the 5% level.
    pub fn latency_distinguishable(&self) -> bool {
        let interval_excludes_one = self.latency_ratio.is_some_and(|ratio| !ratio.contains(1.0));
        interval_excludes_one && self.latency_p_value.is_some_and(|p_value| p_value < 0.05)
    }
}

/// One workload's summaries and comparison.
#[derive(Clone, Debug)]
pub struct WorkloadAnalysis {
    /// The workload.
    pub workload: Workload,
    /// One summary per mode of the plan, weak first.
    pub modes: Vec<ModeSummary>,
    /// Strong against weak, when both ran.
    pub comparison: Option<Comparison>,
}

/// The barrier microbenchmark of one mode and kind over every round.
#[derive(Clone, Debug, PartialEq)]
pub struct BarrierBenchSummary {
    /// Barrier mode.
    pub mode: Mode,
    /// `read`, `write` or `full`.
    pub kind: String,
    /// Median cycles per barrier.
    pub median_cycles: f64,
    /// Smallest figure.
    pub min_cycles: f64,
    /// Largest figure.
    pub max_cycles: f64,
    /// Rounds measured.
    pub samples: usize,
    /// Accelerators the guest reported, comma-separated.
    pub accelerators: String,
}

/// Everything the report shows.
#[derive(Clone, Debug)]
pub struct Analysis {
    /// Per workload, in plan order.
    pub workloads: Vec<WorkloadAnalysis>,
    /// Per mode and kind.
    pub barrier_bench: Vec<BarrierBenchSummary>,
}

/// Analyses the outcomes of a run.
pub fn analyse(workloads: &[Workload], modes: &[Mode], outcomes: &[TrialOutcome], barrier_bench: &[BarrierBenchLine], seed: u64) -> Analysis {
    let bootstrap = Bootstrap::new(seed);
    let workloads = workloads
        .iter()
        .map(|&workload| {
            let of_workload: Vec<&TrialOutcome> =
                outcomes.iter().filter(|outcome| outcome.config.workload() == workload).collect();
            let summaries: Vec<ModeSummary> =
                modes.iter().map(|&mode| summarise_mode(mode, &of_workload, &bootstrap)).collect();
            let comparison = (modes.contains(&Mode::Weak) && modes.contains(&Mode::Strong))
                .then(|| compare(&of_workload, &bootstrap, seed));
            WorkloadAnalysis { workload, modes: summaries, comparison }
        })
        .collect();
    Analysis {
        workloads,
        barrier_bench: summarise_barrier_bench(barrier_bench),
    }
}

/// Values of `figure` from the successful trials of `mode`.
fn values(outcomes: &[&TrialOutcome], mode: Mode, figure: impl Fn(&TrialRow) -> Option<f64>) -> Vec<f64> {
    outcomes
        .iter()
        .filter(|outcome| outcome.config.mode == mode && outcome.row.is_ok())
        .filter_map(|outcome| figure(&outcome.row))
        .filter(|value| value.is_finite())
        .collect()
}

fn summarise_mode(mode: Mode, outcomes: &[&TrialOutcome], bootstrap: &Bootstrap) -> ModeSummary {
    let of_mode: Vec<&&TrialOutcome> = outcomes.iter().filter(|outcome| outcome.config.mode == mode).collect();
    let latencies = values(outcomes, mode, |row| row.mean_latency_us);
    let per_transaction = |kind: BarrierKind| {
        stats::mean(&values(outcomes, mode, |row| {
            let (weak, strong) = match kind {
                BarrierKind::Read => (row.barriers_read_weak?, row.barriers_read_strong?),
                BarrierKind::Write => (row.barriers_write_weak?, row.barriers_write_strong?),
                BarrierKind::Full => (row.barriers_full_weak?, row.barriers_full_strong?),
            };
            let transactions = row.transactions.filter(|&count| count > 0.0)?;
            Some((weak + strong) as f64 / transactions)
        }))
    };

    let mut cycles: BTreeMap<(u16, DriverPath), CycleHistogram> = BTreeMap::new();
    for outcome in of_mode.iter().filter(|outcome| outcome.row.is_ok()) {
        let Some(delta) = &outcome.delta else { continue };
        for queue in [RECEIVE_QUEUE, TRANSMIT_QUEUE] {
            for path in DriverPath::ALL {
                let histogram = delta.histogram(queue, path, mode);
                let pooled = cycles.entry((queue, path)).or_insert_with(|| CycleHistogram {
                    count: 0,
                    total_cycles: 0,
                    buckets: vec![0; LOG2_BUCKETS],
                });
                pooled.count += histogram.count;
                pooled.total_cycles += histogram.total_cycles;
                for (sum, added) in pooled.buckets.iter_mut().zip(&histogram.buckets) {
                    *sum += added;
                }
            }
        }
    }

    ModeSummary {
        mode,
        trials_ok: of_mode.iter().filter(|outcome| outcome.row.is_ok()).count(),
        trials_failed: of_mode.iter().filter(|outcome| !outcome.row.is_ok()).count(),
        latency_mean: bootstrap.mean(&latencies),
        latency_median: bootstrap.median(&latencies),
        p99_mean: bootstrap.mean(&values(outcomes, mode, |row| row.p99_latency_us)),
        rate_mean: bootstrap.mean(&values(outcomes, mode, |row| row.transaction_rate)),
        barriers_per_transaction: [
            per_transaction(BarrierKind::Read),
            per_transaction(BarrierKind::Write),
            per_transaction(BarrierKind::Full),
        ],
        notifications_per_transaction: stats::mean(&values(outcomes, mode, |row| row.notifications_per_transaction)),
        steal_ms_mean: stats::mean(&values(outcomes, mode, |row| row.host_steal_ms)),
        cycles,
    }
}

fn compare(outcomes: &[&TrialOutcome], bootstrap: &Bootstrap, seed: u64) -> Comparison {
    let weak_latency = values(outcomes, Mode::Weak, |row| row.mean_latency_us);
    let strong_latency = values(outcomes, Mode::Strong, |row| row.mean_latency_us);
    let weak_rate = values(outcomes, Mode::Weak, |row| row.transaction_rate);
    let strong_rate = values(outcomes, Mode::Strong, |row| row.transaction_rate);
    let weak_p99 = values(outcomes, Mode::Weak, |row| row.p99_latency_us);
    let strong_p99 = values(outcomes, Mode::Strong, |row| row.p99_latency_us);

    let paired_log_ratios = paired_log_ratios(outcomes);
    let paired_latency_ratio = bootstrap.mean(&paired_log_ratios).map(|interval| interval.map(f64::exp));
    let latency_ratio = bootstrap.ratio_of_means(&weak_latency, &strong_latency);
    let rounds = weak_latency.len().min(strong_latency.len());
    let (rounds_to_resolve, rounds_for_one_percent) = match latency_ratio {
        Some(ratio) => rounds_needed(&ratio, rounds),
        None => (None, None),
    };
    let fit = steal_fit(outcomes);

    Comparison {
        latency_ratio,
        latency_p_value: stats::permutation_test(&weak_latency, &strong_latency, PERMUTATIONS, seed),
        paired_latency_ratio,
        paired_rounds: paired_log_ratios.len(),
        rate_ratio: bootstrap.ratio_of_means(&weak_rate, &strong_rate),
        rate_p_value: stats::permutation_test(&weak_rate, &strong_rate, PERMUTATIONS, seed.wrapping_add(1)),
        p99_ratio: bootstrap.ratio_of_means(&weak_p99, &strong_p99),
        steal_adjusted_effect_us: fit.map(|fit| fit.mode_effect),
        steal_slope: fit.and_then(|fit| fit.steal_slope),
        steal_latency_correlation: steal_correlation(outcomes),
        rounds_to_resolve,
        rounds_for_one_percent,
    }
}

/// `ln(strong / weak)` of the mean latencies of each round with a
/// successful trial in both modes.
fn paired_log_ratios(outcomes: &[&TrialOutcome]) -> Vec<f64> {
    let mut by_round: BTreeMap<u32, (Option<f64>, Option<f64>)> = BTreeMap::new();
    for outcome in outcomes.iter().filter(|outcome| outcome.row.is_ok()) {
        let Some(latency) = outcome.row.mean_latency_us else { continue };
        let entry = by_round.entry(outcome.row.round).or_default();
        match outcome.config.mode {
            Mode::Weak => entry.0 = Some(latency),
            Mode::Strong => entry.1 = Some(latency),
        }
    }
    by_round
        .values()
        .filter_map(|&(weak, strong)| {
            let (weak, strong) = (weak?, strong?);
            (weak > 0.0 && strong > 0.0).then(|| (strong / weak).ln())
        })
        .collect()
}

/// Rounds after which the interval of `ratio` would exclude 1 at the
/// observed effect, and rounds for a half-width of 0.01, from the interval
/// at `rounds` rounds and a width shrinking as `1/sqrt(rounds)`.
pub fn rounds_needed(ratio: &Interval, rounds: usize) -> (Option<f64>, Option<f64>) {
    let half_width = (ratio.high - ratio.low) / 2.0;
    if rounds == 0 || half_width <= 0.0 || !half_width.is_finite() {
        return (None, None);
    }
    let effect = (ratio.estimate - 1.0).abs();
    // The tolerance keeps rounding error of the interval bounds from adding
    // a round to an exact result.
    let scale = |target: f64| (target > 0.0).then(|| (rounds as f64 * (half_width / target).powi(2) - 1e-9).ceil());
    (scale(effect), scale(0.01))
}

/// Least squares fit `latency = a + mode_effect * strong + steal_slope * steal_ms`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StealFit {
    /// Microseconds added by strong barriers at equal steal.
    pub mode_effect: f64,
    /// Microseconds per millisecond of steal; `None` when steal did not
    /// vary, and the fit is then the plain difference of means.
    pub steal_slope: Option<f64>,
}

fn steal_fit(outcomes: &[&TrialOutcome]) -> Option<StealFit> {
    let points: Vec<(f64, f64, f64)> = outcomes
        .iter()
        .filter(|outcome| outcome.row.is_ok())
        .filter_map(|outcome| {
            let strong = if outcome.config.mode == Mode::Strong { 1.0 } else { 0.0 };
            Some((strong, outcome.row.host_steal_ms?, outcome.row.mean_latency_us?))
        })
        .collect();
    fit_mode_and_steal(&points)
}

/// Fits `y = a + b1 * x1 + b2 * x2` to `(x1, x2, y)` points by least
/// squares on centred values. `None` when `x1` does not vary.
pub fn fit_mode_and_steal(points: &[(f64, f64, f64)]) -> Option<StealFit> {
    let count = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean = |select: fn(&(f64, f64, f64)) -> f64| points.iter().map(select).sum::<f64>() / count;
    let (mean_x1, mean_x2, mean_y) = (mean(|point| point.0), mean(|point| point.1), mean(|point| point.2));
    let mut sums = [0.0f64; 5];
    for &(x1, x2, y) in points {
        let (x1, x2, y) = (x1 - mean_x1, x2 - mean_x2, y - mean_y);
        sums[0] += x1 * x1;
        sums[1] += x2 * x2;
        sums[2] += x1 * x2;
        sums[3] += x1 * y;
        sums[4] += x2 * y;
    }
    let [s11, s22, s12, s1y, s2y] = sums;
    if s11 <= 0.0 {
        return None;
    }
    let determinant = s11 * s22 - s12 * s12;
    if s22 <= 0.0 || determinant <= s11 * s22 * 1e-12 {
        return Some(StealFit { mode_effect: s1y / s11, steal_slope: None });
    }
    Some(StealFit {
        mode_effect: (s22 * s1y - s12 * s2y) / determinant,
        steal_slope: Some((s11 * s2y - s12 * s1y) / determinant),
    })
}

fn steal_correlation(outcomes: &[&TrialOutcome]) -> Option<f64> {
    let pairs: Vec<(f64, f64)> = outcomes
        .iter()
        .filter(|outcome| outcome.row.is_ok())
        .filter_map(|outcome| Some((outcome.row.host_steal_ms?, outcome.row.mean_latency_us?)))
        .collect();
    pearson(&pairs)
}

/// Pearson correlation, or `None` for fewer than 3 pairs or a constant
/// variable.
pub fn pearson(pairs: &[(f64, f64)]) -> Option<f64> {
    if pairs.len() < 3 {
        return None;
    }
    let count = pairs.len() as f64;
    let mean_x = pairs.iter().map(|pair| pair.0).sum::<f64>() / count;
    let mean_y = pairs.iter().map(|pair| pair.1).sum::<f64>() / count;
    let (mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0);
    for &(x, y) in pairs {
        sxx += (x - mean_x) * (x - mean_x);
        syy += (y - mean_y) * (y - mean_y);
        sxy += (x - mean_x) * (y - mean_y);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

fn summarise_barrier_bench(lines: &[BarrierBenchLine]) -> Vec<BarrierBenchSummary> {
    let mut groups: BTreeMap<(Mode, usize), Vec<&BarrierBenchLine>> = BTreeMap::new();
    for line in lines {
        let kind_order = BarrierKind::ALL.iter().position(|kind| kind.name() == line.kind).unwrap_or(usize::MAX);
        groups.entry((line.mode, kind_order)).or_default().push(line);
    }
    groups
        .into_values()
        .map(|group| {
            let figures: Vec<f64> = group.iter().map(|line| line.cycles_per_barrier).collect();
            let mut accelerators: Vec<&str> = group.iter().map(|line| line.accelerator.as_str()).collect();
            accelerators.sort_unstable();
            accelerators.dedup();
            BarrierBenchSummary {
                mode: group[0].mode,
                kind: group[0].kind.clone(),
                median_cycles: stats::median(&figures).unwrap_or(f64::NAN),
                min_cycles: figures.iter().copied().fold(f64::INFINITY, f64::min),
                max_cycles: figures.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                samples: figures.len(),
                accelerators: accelerators.join(","),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_recovers_planted_effects() {
        // latency = 100 + 5 * strong + 2 * steal, steal varying within modes.
        let points: Vec<(f64, f64, f64)> = (0..20)
            .map(|index| {
                let strong = f64::from(index % 2);
                let steal = f64::from(index % 7) + strong * 3.0;
                (strong, steal, 100.0 + 5.0 * strong + 2.0 * steal)
            })
            .collect();
        let fit = fit_mode_and_steal(&points).expect("mode varies");
        assert!((fit.mode_effect - 5.0).abs() < 1e-9, "{fit:?}");
        assert!((fit.steal_slope.expect("steal varies") - 2.0).abs() < 1e-9, "{fit:?}");
    }

    #[test]
    fn fit_without_steal_is_difference_of_means() {
        let points = [(0.0, 0.0, 10.0), (0.0, 0.0, 12.0), (1.0, 0.0, 15.0), (1.0, 0.0, 17.0)];
        let fit = fit_mode_and_steal(&points).expect("mode varies");
        assert_eq!(fit.mode_effect, 5.0);
        assert_eq!(fit.steal_slope, None);
        assert_eq!(fit_mode_and_steal(&[(0.0, 1.0, 1.0), (0.0, 2.0, 3.0)]), None);
    }

    #[test]
    fn rounds_needed_scale_with_square_of_width() {
        let ratio = Interval { estimate: 1.02, low: 0.98, high: 1.06 };
        let (resolve, one_percent) = rounds_needed(&ratio, 5);
        // Half-width 0.04 against an effect of 0.02: 4 times the rounds;
        // against 0.01: 16 times.
        assert_eq!(resolve, Some(20.0));
        assert_eq!(one_percent, Some(80.0));
        assert_eq!(rounds_needed(&ratio, 0), (None, None));
    }

    #[test]
    fn pearson_of_lines() {
        let rising: Vec<(f64, f64)> = (0..5).map(|x| (f64::from(x), 2.0 * f64::from(x) + 1.0)).collect();
        assert!((pearson(&rising).expect("varies") - 1.0).abs() < 1e-12);
        let falling: Vec<(f64, f64)> = (0..5).map(|x| (f64::from(x), -f64::from(x))).collect();
        assert!((pearson(&falling).expect("varies") + 1.0).abs() < 1e-12);
        assert_eq!(pearson(&[(1.0, 1.0), (1.0, 2.0), (1.0, 3.0)]), None);
    }
}
