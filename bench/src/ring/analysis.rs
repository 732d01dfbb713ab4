//! Statistics over trials: per-configuration summaries, strong versus weak
//! comparisons and per-site attribution.
//!
//! The unit of every interval and test is the trial. Round trips inside one
//! trial are not independent (they share caches, frequency and the
//! hypervisor's mood), so each trial is reduced to one value per figure,
//! usually its median, and the bootstrap and the permutation test resample
//! those values.

use std::collections::BTreeMap;

use virtio::barrier::{BarrierKind, BarrierMode, BarrierSite};

use super::config::RingConfig;
use super::microbench::{net_after_store, MicrobenchRow};
use super::record::TrialRow;
use crate::stats::{mean, permutation_test, Bootstrap, Interval, LogHistogram, Percentiles, DEFAULT_RESAMPLES};

/// Figures of one configuration over its trials.
#[derive(Clone, Debug)]
pub struct ConfigSummary {
    /// The configuration.
    pub config: RingConfig,
    /// Trials run.
    pub trials: usize,
    /// Mean over trials of the per-trial median latency, with CI.
    pub latency_p50_ticks: Option<Interval>,
    /// Median over trials of the per-trial median latency, with CI.
    pub latency_p50_median_ticks: Option<Interval>,
    /// Mean over trials of the per-trial mean latency, with CI.
    pub latency_mean_ticks: Option<Interval>,
    /// Percentiles of every sampled round trip of every trial together.
    pub pooled: Option<Percentiles>,
    /// Mean over trials of the throughput, with CI.
    pub throughput_chains_per_second: Option<Interval>,
    /// Mean over trials of the per-trial median submit ticks, with CI.
    pub submit_p50_ticks: Option<Interval>,
    /// Mean over trials of the per-trial median completion ticks, with CI.
    pub completion_p50_ticks: Option<Interval>,
    /// Mean over trials of the per-trial median re-arm ticks, with CI.
    pub rearm_p50_ticks: Option<Interval>,
    /// Mean executions per round trip of each site, like
    /// [`BarrierSite::ALL`].
    pub executions_per_round_trip: [f64; BarrierSite::COUNT],
    /// Mean doorbell rings per round trip.
    pub kicks_per_round_trip: f64,
    /// Mean interrupt wakeups per round trip.
    pub wakeups_per_round_trip: f64,
    /// Steal time over all trials, in milliseconds.
    pub steal_ms: f64,
    /// The configuration's trial rows, in run order.
    pub rows: Vec<TrialRow>,
}

/// A figure of the strong configuration against the weak one.
#[derive(Clone, Debug)]
pub struct Comparison {
    /// "DEVICE, event idx on|off".
    pub group: String,
    /// The figure compared.
    pub metric: &'static str,
    /// Weak trials' mean, with CI.
    pub weak: Interval,
    /// Strong trials' mean, with CI.
    pub strong: Interval,
    /// Strong minus weak, with CI.
    pub difference: Interval,
    /// Strong over weak, with CI.
    pub ratio: Interval,
    /// Two-sided permutation test p-value of the difference of means.
    pub p_value: f64,
}

/// The cost of making one site strong while the others stay weak.
#[derive(Clone, Debug)]
pub struct SiteCost {
    /// The site.
    pub site: BarrierSite,
    /// Executions per round trip in the site's configuration.
    pub executions_per_round_trip: f64,
    /// Median latency of "only this site strong" minus all weak, ticks per
    /// round trip, with CI.
    pub cost_ticks: Interval,
    /// `cost_ticks` per execution, when the site executes.
    pub ticks_per_execution: Option<f64>,
    /// Permutation test p-value against all weak.
    pub p_value: f64,
    /// Strong minus weak net ticks of the site's barrier in the
    /// microbenchmark ("after a store"), times executions per round trip.
    pub microbench_ticks: Option<f64>,
}

/// Per-site attribution of one group.
#[derive(Clone, Debug)]
pub struct Attribution {
    /// "DEVICE, event idx on|off".
    pub group: String,
    /// One entry per site.
    pub sites: Vec<SiteCost>,
    /// Sum over sites of ticks per execution times the site's executions
    /// per round trip in the all-strong configuration, with CI.
    pub expected_total_ticks: Option<Interval>,
    /// Measured all-strong minus all-weak median latency, with CI.
    pub measured_total_ticks: Option<Interval>,
    /// Sum of the sites' microbenchmark expectations.
    pub microbench_total_ticks: Option<f64>,
}

/// Everything the report shows.
#[derive(Clone, Debug)]
pub struct Analysis {
    /// One summary per configuration, in plan order.
    pub summaries: Vec<ConfigSummary>,
    /// Strong versus weak, per group and figure.
    pub comparisons: Vec<Comparison>,
    /// Per-site attribution of the groups that ran it.
    pub attributions: Vec<Attribution>,
}

/// A per-trial figure: its name and how to read it from a row.
type Metric = (&'static str, fn(&TrialRow) -> f64);

/// Per-trial figures that the comparisons cover.
const COMPARED_METRICS: [Metric; 6] = [
    ("latency p50 (ticks)", |row| row.latency_p50_ticks),
    ("latency mean (ticks)", |row| row.latency_mean_ticks),
    ("submit path p50 (ticks)", |row| row.submit_p50_ticks),
    ("completion path p50 (ticks)", |row| row.completion_p50_ticks),
    ("re-arm p50 (ticks)", |row| row.rearm_p50_ticks),
    ("throughput (chains/s)", |row| row.throughput_chains_per_second),
];

/// Analyses `rows` of the plan's `configs`, with `histograms` keyed by
/// configuration label, using `seed` for every bootstrap.
pub fn analyse(
    configs: &[RingConfig],
    rows: &[TrialRow],
    histograms: &BTreeMap<String, LogHistogram>,
    microbench: &[MicrobenchRow],
    seed: u64,
) -> Analysis {
    let mut seeds = SeedSequence(seed);
    let summaries: Vec<ConfigSummary> = configs
        .iter()
        .map(|config| summarise(config, rows, histograms.get(&config.label()), &mut seeds))
        .collect();

    let mut comparisons = Vec::new();
    let mut attributions = Vec::new();
    for group in groups(configs) {
        let find = |label: &str| {
            summaries
                .iter()
                .find(|summary| summary.config.group_label() == group && summary.config.barriers.label == label)
        };
        let (Some(weak), Some(strong)) = (find("weak"), find("strong")) else {
            continue;
        };
        for (metric, value) in COMPARED_METRICS {
            if let Some(comparison) = compare(&group, metric, weak, strong, value, &mut seeds) {
                comparisons.push(comparison);
            }
        }
        let site_summaries: Vec<&ConfigSummary> = BarrierSite::ALL
            .iter()
            .filter_map(|site| find(&format!("site:{}", site.name())))
            .collect();
        if site_summaries.len() == BarrierSite::COUNT {
            attributions.push(attribute(&group, weak, strong, &site_summaries, microbench, &mut seeds));
        }
    }
    Analysis {
        summaries,
        comparisons,
        attributions,
    }
}

/// Hands out a distinct, reproducible seed per bootstrap.
struct SeedSequence(u64);

impl SeedSequence {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.0
    }
}

/// Group labels in plan order, each once.
fn groups(configs: &[RingConfig]) -> Vec<String> {
    let mut groups: Vec<String> = Vec::new();
    for config in configs {
        let group = config.group_label();
        if !groups.contains(&group) {
            groups.push(group);
        }
    }
    groups
}

fn values(rows: &[TrialRow], value: fn(&TrialRow) -> f64) -> Vec<f64> {
    rows.iter().map(value).collect()
}

fn summarise(
    config: &RingConfig,
    all_rows: &[TrialRow],
    histogram: Option<&LogHistogram>,
    seeds: &mut SeedSequence,
) -> ConfigSummary {
    let label = config.label();
    let rows: Vec<TrialRow> = all_rows.iter().filter(|row| row.config == label).cloned().collect();
    let sampled: Vec<TrialRow> = rows.iter().filter(|row| row.sampled_round_trips > 0).cloned().collect();
    let mut bootstrap_mean = |value: fn(&TrialRow) -> f64| Bootstrap::new(seeds.next()).mean(&values(&sampled, value));
    let latency_p50_ticks = bootstrap_mean(|row| row.latency_p50_ticks);
    let latency_mean_ticks = bootstrap_mean(|row| row.latency_mean_ticks);
    let throughput_chains_per_second = bootstrap_mean(|row| row.throughput_chains_per_second);
    let submit_p50_ticks = bootstrap_mean(|row| row.submit_p50_ticks);
    let completion_p50_ticks = bootstrap_mean(|row| row.completion_p50_ticks);
    let rearm_p50_ticks = bootstrap_mean(|row| row.rearm_p50_ticks);
    let latency_p50_median_ticks =
        Bootstrap::new(seeds.next()).median(&values(&sampled, |row| row.latency_p50_ticks));

    let per_round_trip = |count: fn(&TrialRow) -> u64| {
        let ratios: Vec<f64> = rows
            .iter()
            .filter(|row| row.round_trips > 0)
            .map(|row| count(row) as f64 / row.round_trips as f64)
            .collect();
        mean(&ratios).unwrap_or(0.0)
    };
    let executions_per_round_trip = BarrierSite::ALL.map(|site| {
        mean(&rows.iter().map(|row| row.executions_per_round_trip(site)).collect::<Vec<_>>()).unwrap_or(0.0)
    });
    ConfigSummary {
        config: config.clone(),
        trials: rows.len(),
        latency_p50_ticks,
        latency_p50_median_ticks,
        latency_mean_ticks,
        pooled: histogram.and_then(LogHistogram::percentiles),
        throughput_chains_per_second,
        submit_p50_ticks,
        completion_p50_ticks,
        rearm_p50_ticks,
        executions_per_round_trip,
        kicks_per_round_trip: per_round_trip(|row| row.kicks),
        wakeups_per_round_trip: per_round_trip(|row| row.wakeups),
        steal_ms: rows.iter().map(|row| row.steal_ms).filter(|steal| steal.is_finite()).sum(),
        rows,
    }
}

fn sampled_values(summary: &ConfigSummary, value: fn(&TrialRow) -> f64) -> Vec<f64> {
    summary
        .rows
        .iter()
        .filter(|row| row.sampled_round_trips > 0)
        .map(value)
        .collect()
}

fn compare(
    group: &str,
    metric: &'static str,
    weak: &ConfigSummary,
    strong: &ConfigSummary,
    value: fn(&TrialRow) -> f64,
    seeds: &mut SeedSequence,
) -> Option<Comparison> {
    let weak_values = sampled_values(weak, value);
    let strong_values = sampled_values(strong, value);
    Some(Comparison {
        group: group.to_string(),
        metric,
        weak: Bootstrap::new(seeds.next()).mean(&weak_values)?,
        strong: Bootstrap::new(seeds.next()).mean(&strong_values)?,
        difference: Bootstrap::new(seeds.next()).difference_of_means(&weak_values, &strong_values)?,
        ratio: Bootstrap::new(seeds.next()).ratio_of_means(&weak_values, &strong_values)?,
        p_value: permutation_test(&weak_values, &strong_values, DEFAULT_RESAMPLES, seeds.next())?,
    })
}

/// Name of the microbenchmark row for the barrier that `site` executes.
fn microbench_barrier(site: BarrierSite) -> &'static str {
    match (site, site.kind()) {
        (BarrierSite::UsedEventStore, _) => "store-then-full",
        (_, BarrierKind::Read) => "read",
        (_, BarrierKind::Write) => "write",
        (_, BarrierKind::Full) => "full",
    }
}

fn attribute(
    group: &str,
    weak: &ConfigSummary,
    strong: &ConfigSummary,
    site_summaries: &[&ConfigSummary],
    microbench: &[MicrobenchRow],
    seeds: &mut SeedSequence,
) -> Attribution {
    let latency = |row: &TrialRow| row.latency_p50_ticks;
    let weak_values = sampled_values(weak, latency);
    let strong_values = sampled_values(strong, latency);
    let mut sites = Vec::new();
    let mut site_values = Vec::new();
    let mut weights = Vec::new();
    for (index, (&site, summary)) in BarrierSite::ALL.iter().zip(site_summaries).enumerate() {
        let values = sampled_values(summary, latency);
        let executions = summary.executions_per_round_trip[index];
        let executions_when_strong = strong.executions_per_round_trip[index];
        let microbench_per_execution = net_after_store(microbench, microbench_barrier(site), BarrierMode::Strong)
            .zip(net_after_store(microbench, microbench_barrier(site), BarrierMode::Weak))
            .map(|(strong, weak)| strong - weak);
        if let (Some(cost_ticks), Some(p_value)) = (
            Bootstrap::new(seeds.next()).difference_of_means(&weak_values, &values),
            permutation_test(&weak_values, &values, DEFAULT_RESAMPLES, seeds.next()),
        ) {
            sites.push(SiteCost {
                site,
                executions_per_round_trip: executions,
                cost_ticks,
                ticks_per_execution: (executions > 0.0).then(|| cost_ticks.estimate / executions),
                p_value,
                microbench_ticks: microbench_per_execution.map(|ticks| ticks * executions_when_strong),
            });
        }
        weights.push(if executions > 0.0 { executions_when_strong / executions } else { 0.0 });
        site_values.push(values);
    }

    // Groups: weak, then each site, then strong.
    let mut groups: Vec<&[f64]> = vec![&weak_values];
    groups.extend(site_values.iter().map(Vec::as_slice));
    let expected_total_ticks = Bootstrap::new(seeds.next()).group_means(&groups, |means| {
        weights
            .iter()
            .enumerate()
            .map(|(index, weight)| weight * (means[index + 1] - means[0]))
            .sum()
    });
    let microbench_total_ticks = sites
        .iter()
        .map(|site| site.microbench_ticks)
        .sum::<Option<f64>>();
    Attribution {
        group: group.to_string(),
        sites,
        expected_total_ticks,
        measured_total_ticks: Bootstrap::new(seeds.next()).difference_of_means(&weak_values, &strong_values),
        microbench_total_ticks,
    }
}
