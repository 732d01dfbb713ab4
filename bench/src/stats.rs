//! Statistics for benchmark samples: percentiles, a log-linear histogram,
//! percentile-bootstrap confidence intervals (mean, median, difference and
//! ratio of means) and a two-sample permutation test.
//!
//! The bootstrap and the permutation test resample whole values, so callers
//! pass one value per independent unit (per trial, per round), not millions
//! of autocorrelated per-operation samples. Every random choice comes from a
//! ChaCha8 generator seeded by the caller, so a report can be recomputed
//! exactly.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Confidence level of every interval in this module.
pub const CONFIDENCE_LEVEL: f64 = 0.95;

/// Resamples used when the caller has no reason to pick another number.
pub const DEFAULT_RESAMPLES: usize = 10_000;

/// A point estimate with a 95% confidence interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Interval {
    /// Statistic of the original samples.
    pub estimate: f64,
    /// Lower bound (2.5th percentile of the bootstrap distribution).
    pub low: f64,
    /// Upper bound (97.5th percentile of the bootstrap distribution).
    pub high: f64,
}

impl Interval {
    /// Returns whether `value` lies inside the interval, bounds included.
    pub fn contains(&self, value: f64) -> bool {
        self.low <= value && value <= self.high
    }

    /// Applies `map` to the estimate and both bounds, for a monotonically
    /// increasing `map` such as a unit conversion.
    pub fn map(self, map: impl Fn(f64) -> f64) -> Interval {
        Interval {
            estimate: map(self.estimate),
            low: map(self.low),
            high: map(self.high),
        }
    }
}

/// The percentiles that benchmark tables report.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Percentiles {
    /// 50th percentile (median).
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p99_9: f64,
}

/// Arithmetic mean, or `None` for no samples.
pub fn mean(samples: &[f64]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    Some(samples.iter().sum::<f64>() / samples.len() as f64)
}

/// Median (mean of the two middle values for an even count), or `None` for
/// no samples.
pub fn median(samples: &[f64]) -> Option<f64> {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    median_of_sorted(&sorted)
}

fn median_of_sorted(sorted: &[f64]) -> Option<f64> {
    let count = sorted.len();
    if count == 0 {
        return None;
    }
    Some(if count % 2 == 1 {
        sorted[count / 2]
    } else {
        (sorted[count / 2 - 1] + sorted[count / 2]) / 2.0
    })
}

/// Nearest-rank percentile of ascending `sorted`: the smallest sample with
/// at least `quantile` of the samples at or below it. `quantile` is clamped
/// to 0..=1. Returns `None` for no samples.
pub fn percentile_of_sorted<T: Copy>(sorted: &[T], quantile: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (quantile.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// p50, p90, p99 and p99.9 (nearest rank) of `samples`, which this sorts in
/// place. Returns `None` for no samples.
pub fn percentiles(samples: &mut [u64]) -> Option<Percentiles> {
    samples.sort_unstable();
    let at = |quantile| percentile_of_sorted(samples, quantile).map(|value| value as f64);
    Some(Percentiles {
        p50: at(0.5)?,
        p90: at(0.9)?,
        p99: at(0.99)?,
        p99_9: at(0.999)?,
    })
}

/// Percentile-bootstrap resampler with a fixed seed.
#[derive(Clone, Copy, Debug)]
pub struct Bootstrap {
    /// Number of bootstrap resamples.
    pub resamples: usize,
    /// Seed of the resampling generator.
    pub seed: u64,
}

impl Bootstrap {
    /// Creates a resampler with [`DEFAULT_RESAMPLES`] resamples.
    pub fn new(seed: u64) -> Self {
        Bootstrap {
            resamples: DEFAULT_RESAMPLES,
            seed,
        }
    }

    /// Mean of `samples` with its confidence interval, or `None` for no
    /// samples.
    pub fn mean(&self, samples: &[f64]) -> Option<Interval> {
        self.single_group(samples, |resample| {
            mean(resample).expect("resamples are never empty")
        })
    }

    /// Median of `samples` with its confidence interval, or `None` for no
    /// samples.
    pub fn median(&self, samples: &[f64]) -> Option<Interval> {
        self.single_group(samples, |resample| {
            resample.sort_by(f64::total_cmp);
            median_of_sorted(resample).expect("resamples are never empty")
        })
    }

    /// `mean(treatment) - mean(baseline)` with its confidence interval, from
    /// independent resamples of both groups. `None` if a group is empty.
    pub fn difference_of_means(&self, baseline: &[f64], treatment: &[f64]) -> Option<Interval> {
        self.group_means(&[baseline, treatment], |means| means[1] - means[0])
    }

    /// `mean(treatment) / mean(baseline)` with its confidence interval.
    /// Subtract 1 for the relative difference. `None` if a group is empty.
    pub fn ratio_of_means(&self, baseline: &[f64], treatment: &[f64]) -> Option<Interval> {
        self.group_means(&[baseline, treatment], |means| means[1] / means[0])
    }

    /// Any statistic of the group means, with its confidence interval: each
    /// resample draws every group independently, with replacement, and passes
    /// the groups' means (in the order given) to `statistic`. `None` if a
    /// group is empty.
    pub fn group_means(
        &self,
        groups: &[&[f64]],
        statistic: impl Fn(&[f64]) -> f64,
    ) -> Option<Interval> {
        let means: Vec<f64> = groups
            .iter()
            .map(|group| mean(group))
            .collect::<Option<_>>()?;
        let estimate = statistic(&means);

        let mut generator = ChaCha8Rng::seed_from_u64(self.seed);
        let mut resampled_means = vec![0.0; groups.len()];
        let mut distribution = Vec::with_capacity(self.resamples);
        for _ in 0..self.resamples {
            for (group, resampled_mean) in groups.iter().zip(&mut resampled_means) {
                let sum: f64 = (0..group.len())
                    .map(|_| group[generator.random_range(0..group.len())])
                    .sum();
                *resampled_mean = sum / group.len() as f64;
            }
            distribution.push(statistic(&resampled_means));
        }
        Some(percentile_interval(estimate, distribution))
    }

    fn single_group(
        &self,
        samples: &[f64],
        statistic: impl Fn(&mut [f64]) -> f64,
    ) -> Option<Interval> {
        if samples.is_empty() {
            return None;
        }
        let estimate = statistic(&mut samples.to_vec());
        let mut generator = ChaCha8Rng::seed_from_u64(self.seed);
        let mut resample = vec![0.0; samples.len()];
        let mut distribution = Vec::with_capacity(self.resamples);
        for _ in 0..self.resamples {
            for value in resample.iter_mut() {
                *value = samples[generator.random_range(0..samples.len())];
            }
            distribution.push(statistic(&mut resample));
        }
        Some(percentile_interval(estimate, distribution))
    }
}

/// Builds the percentile interval from a bootstrap distribution.
fn percentile_interval(estimate: f64, mut distribution: Vec<f64>) -> Interval {
    distribution.sort_by(f64::total_cmp);
    let tail = (1.0 - CONFIDENCE_LEVEL) / 2.0;
    Interval {
        estimate,
        low: percentile_of_sorted(&distribution, tail).unwrap_or(estimate),
        high: percentile_of_sorted(&distribution, 1.0 - tail).unwrap_or(estimate),
    }
}

/// Two-sided p-value of a permutation test of the difference of means
/// between `first` and `second`.
///
/// Each of `resamples` random relabelings shuffles the pooled samples and
/// splits them into groups of the original sizes. The p-value is
/// `(k + 1) / (resamples + 1)`, where `k` counts relabelings whose absolute
/// difference of means is at least the observed one, so it is never 0.
/// Returns `None` if a group is empty.
pub fn permutation_test(first: &[f64], second: &[f64], resamples: usize, seed: u64) -> Option<f64> {
    let observed = (mean(second)? - mean(first)?).abs();
    let mut pooled: Vec<f64> = first.iter().chain(second).copied().collect();
    let total: f64 = pooled.iter().sum();
    let first_len = first.len();
    let second_len = second.len();
    // Relabelings that only reorder floating-point sums must still count as
    // "at least as extreme".
    let tolerance = observed.abs() * 1e-12;

    let mut generator = ChaCha8Rng::seed_from_u64(seed);
    let mut extreme = 0usize;
    for _ in 0..resamples {
        // A partial Fisher-Yates shuffle picks the first group.
        for index in 0..first_len {
            let pick = generator.random_range(index..pooled.len());
            pooled.swap(index, pick);
        }
        let first_sum: f64 = pooled[..first_len].iter().sum();
        let difference = (total - first_sum) / second_len as f64 - first_sum / first_len as f64;
        if difference.abs() + tolerance >= observed {
            extreme += 1;
        }
    }
    Some((extreme + 1) as f64 / (resamples + 1) as f64)
}

/// Counts of `u64` values in log-linear buckets: exact below
/// [`LogHistogram::EXACT_BELOW`], then 128 buckets per power of two, so a
/// bucket is at most 1/128 (0.8%) of its lower bound wide.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogHistogram {
    counts: Vec<u64>,
    total: u64,
}

/// One non-empty bucket of a [`LogHistogram`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct HistogramBucket {
    /// Smallest value in the bucket.
    pub low: u64,
    /// Largest value in the bucket.
    pub high: u64,
    /// Values recorded in the bucket.
    pub count: u64,
}

const SUB_BUCKET_BITS: u32 = 7;
const SUB_BUCKETS: u64 = 1 << SUB_BUCKET_BITS;

impl LogHistogram {
    /// Values below this have a bucket each.
    pub const EXACT_BELOW: u64 = 2 * SUB_BUCKETS;

    /// Creates an empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one value.
    pub fn record(&mut self, value: u64) {
        let index = bucket_index(value);
        if index >= self.counts.len() {
            self.counts.resize(index + 1, 0);
        }
        self.counts[index] += 1;
        self.total += 1;
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &LogHistogram) {
        if other.counts.len() > self.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (count, added) in self.counts.iter_mut().zip(&other.counts) {
            *count += added;
        }
        self.total += other.total;
    }

    /// Number of recorded values.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Non-empty buckets in ascending order.
    pub fn buckets(&self) -> impl Iterator<Item = HistogramBucket> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, &count)| count > 0)
            .map(|(index, &count)| {
                let (low, high) = bucket_bounds(index);
                HistogramBucket { low, high, count }
            })
    }

    /// Nearest-rank percentile, reported as the upper bound of the bucket
    /// that contains it, or `None` when empty.
    pub fn percentile(&self, quantile: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((quantile.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        self.buckets().find_map(|bucket| {
            seen += bucket.count;
            (seen >= rank).then_some(bucket.high)
        })
    }

    /// p50, p90, p99 and p99.9, or `None` when empty.
    pub fn percentiles(&self) -> Option<Percentiles> {
        let at = |quantile| self.percentile(quantile).map(|value| value as f64);
        Some(Percentiles {
            p50: at(0.5)?,
            p90: at(0.9)?,
            p99: at(0.99)?,
            p99_9: at(0.999)?,
        })
    }

    /// Points `(value, fraction of values at or below it)` at each non-empty
    /// bucket's upper bound, for a cumulative distribution plot.
    pub fn cumulative_points(&self) -> Vec<(f64, f64)> {
        let mut seen = 0;
        self.buckets()
            .map(|bucket| {
                seen += bucket.count;
                (bucket.high as f64, seen as f64 / self.total as f64)
            })
            .collect()
    }
}

fn bucket_index(value: u64) -> usize {
    if value < LogHistogram::EXACT_BELOW {
        return value as usize;
    }
    let octave = 63 - value.leading_zeros();
    let shift = octave - SUB_BUCKET_BITS;
    let mantissa = value >> shift;
    let first_of_octave = LogHistogram::EXACT_BELOW
        + u64::from(octave - SUB_BUCKET_BITS - 1) * SUB_BUCKETS;
    (first_of_octave + mantissa - SUB_BUCKETS) as usize
}

fn bucket_bounds(index: usize) -> (u64, u64) {
    let index = index as u64;
    if index < LogHistogram::EXACT_BELOW {
        return (index, index);
    }
    let above = index - LogHistogram::EXACT_BELOW;
    let shift = above / SUB_BUCKETS + 1;
    let mantissa = SUB_BUCKETS + above % SUB_BUCKETS;
    let low = mantissa << shift;
    (low, low + ((1 << shift) - 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::RngCore;

    /// Approximately normal samples (sum of 12 uniforms) with the given mean
    /// and a standard deviation of 1.
    fn normal_samples(count: usize, mean: f64, seed: u64) -> Vec<f64> {
        let mut generator = ChaCha8Rng::seed_from_u64(seed);
        (0..count)
            .map(|_| {
                let sum: f64 = (0..12).map(|_| generator.random::<f64>()).sum();
                mean + sum - 6.0
            })
            .collect()
    }

    #[test]
    fn bootstrap_mean_covers_true_mean() {
        let samples = normal_samples(200, 10.0, 1);
        let interval = Bootstrap::new(7).mean(&samples).expect("samples");
        assert!(interval.contains(10.0), "{interval:?}");
        assert!(interval.low < interval.estimate);
        assert!(interval.estimate < interval.high);
        // The standard error is 1/sqrt(200), so the 95% interval is about
        // 0.28 wide.
        assert!(interval.high - interval.low < 0.5, "{interval:?}");
    }

    #[test]
    fn bootstrap_median_covers_true_median() {
        let samples = normal_samples(301, -3.0, 2);
        let interval = Bootstrap::new(8).median(&samples).expect("samples");
        assert!(interval.contains(-3.0), "{interval:?}");
        assert!(interval.high - interval.low < 0.6, "{interval:?}");
    }

    #[test]
    fn bootstrap_is_reproducible_per_seed() {
        let samples = normal_samples(50, 0.0, 3);
        let first = Bootstrap::new(11).mean(&samples);
        let second = Bootstrap::new(11).mean(&samples);
        let other_seed = Bootstrap::new(12).mean(&samples);
        assert_eq!(first, second);
        assert_ne!(first, other_seed);
    }

    #[test]
    fn difference_and_ratio_cover_planted_values() {
        let baseline = normal_samples(100, 100.0, 4);
        let treatment = normal_samples(100, 150.0, 5);
        let bootstrap = Bootstrap::new(9);

        let difference = bootstrap
            .difference_of_means(&baseline, &treatment)
            .expect("samples");
        assert!(difference.contains(50.0), "{difference:?}");
        assert!(difference.low > 45.0, "{difference:?}");

        let ratio = bootstrap
            .ratio_of_means(&baseline, &treatment)
            .expect("samples");
        assert!(ratio.contains(1.5), "{ratio:?}");
        assert!(ratio.high < 1.55, "{ratio:?}");
    }

    #[test]
    fn empty_groups_have_no_interval() {
        let bootstrap = Bootstrap::new(0);
        assert_eq!(bootstrap.mean(&[]), None);
        assert_eq!(bootstrap.median(&[]), None);
        assert_eq!(bootstrap.difference_of_means(&[1.0], &[]), None);
        assert_eq!(permutation_test(&[], &[1.0], 100, 0), None);
    }

    #[test]
    fn permutation_test_detects_planted_shift() {
        let first = normal_samples(30, 0.0, 6);
        let second = normal_samples(30, 1.5, 7);
        let p_value = permutation_test(&first, &second, 5_000, 13).expect("samples");
        assert!(p_value < 0.01, "p = {p_value}");
    }

    #[test]
    fn permutation_test_accepts_null() {
        let first = normal_samples(30, 0.0, 8);
        let second = normal_samples(30, 0.0, 9);
        let p_value = permutation_test(&first, &second, 5_000, 14).expect("samples");
        assert!(p_value > 0.05, "p = {p_value}");
    }

    #[test]
    fn permutation_test_floor_is_one_over_resamples() {
        // Two of six relabelings of {0, 0 | 1, 1} are as extreme as observed.
        let p_value = permutation_test(&[0.0, 0.0], &[1.0, 1.0], 9_999, 15).expect("samples");
        assert!((p_value - 1.0 / 3.0).abs() < 0.03, "p = {p_value}");
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut samples: Vec<u64> = (1..=1000).rev().collect();
        let found = percentiles(&mut samples).expect("samples");
        assert_eq!(found.p50, 500.0);
        assert_eq!(found.p90, 900.0);
        assert_eq!(found.p99, 990.0);
        assert_eq!(found.p99_9, 999.0);
        assert_eq!(percentiles(&mut []), None);
    }

    #[test]
    fn median_of_even_count_averages() {
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[5.0]), Some(5.0));
        assert_eq!(mean(&[1.0, 2.0, 6.0]), Some(3.0));
    }

    #[test]
    fn histogram_buckets_tile_the_range() {
        let mut previous_high = None;
        for index in 0..3000 {
            let (low, high) = bucket_bounds(index);
            assert!(low <= high);
            if let Some(previous) = previous_high {
                assert_eq!(low, previous + 1, "bucket {index}");
            }
            assert_eq!(bucket_index(low), index);
            assert_eq!(bucket_index(high), index);
            previous_high = Some(high);
        }
    }

    #[test]
    fn histogram_percentiles_within_bucket_width() {
        let mut generator = ChaCha8Rng::seed_from_u64(10);
        let mut samples: Vec<u64> = (0..100_000)
            .map(|_| 200 + generator.next_u64() % 50_000)
            .collect();
        let mut histogram = LogHistogram::new();
        for &sample in &samples {
            histogram.record(sample);
        }
        assert_eq!(histogram.total(), 100_000);
        let exact = percentiles(&mut samples).expect("samples");
        let binned = histogram.percentiles().expect("samples");
        for (exact, binned) in [
            (exact.p50, binned.p50),
            (exact.p90, binned.p90),
            (exact.p99, binned.p99),
            (exact.p99_9, binned.p99_9),
        ] {
            assert!(binned >= exact, "{binned} < {exact}");
            assert!(binned <= exact * (1.0 + 1.0 / 128.0), "{binned} vs {exact}");
        }
    }

    #[test]
    fn histogram_merge_adds_counts() {
        let mut first = LogHistogram::new();
        let mut second = LogHistogram::new();
        first.record(5);
        second.record(5);
        second.record(1_000_000);
        first.merge(&second);
        let buckets: Vec<HistogramBucket> = first.buckets().collect();
        assert_eq!(first.total(), 3);
        assert_eq!(buckets.len(), 2);
        assert_eq!(buckets[0], HistogramBucket { low: 5, high: 5, count: 2 });
        assert!(buckets[1].low <= 1_000_000 && 1_000_000 <= buckets[1].high);
        let points = first.cumulative_points();
        assert_eq!(points.last().map(|point| point.1), Some(1.0));
    }
}
