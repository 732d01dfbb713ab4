//! Files of a `bench run`: `trials.csv`, `barrier_bench.csv`, `report.md`
//! and SVG plots, plus the summary table printed on the terminal.

use std::path::{Path, PathBuf};

use super::analysis::{Analysis, BarrierBenchSummary, Comparison, ModeSummary, TrialOutcome, WorkloadAnalysis};
use super::options::{Mode, RunPlan, Workload};
use super::records::{BarrierBenchLine, DriverPath, RECEIVE_QUEUE, TRANSMIT_QUEUE};
use super::trial::TrialRow;
use crate::host::CpuModel;
use crate::plot::{self, Series};
use crate::report::{
    format_optional_interval, format_relative_change, write_csv, MarkdownDocument, MarkdownTable, ReportError,
};
use crate::stats::Interval;

/// Facts about the run that the report header records.
#[derive(Clone, Debug)]
pub struct RunFacts {
    /// The command line as typed.
    pub command_line: String,
    /// UTC start time, `YYYYMMDD-HHMMSS`.
    pub started_utc: String,
    /// The host CPU.
    pub cpu: CpuModel,
    /// Host kernel release.
    pub kernel: String,
    /// Accelerators run.sh reported for the guests, comma-separated.
    pub accelerators: String,
    /// Warning when the requested accelerator was not available.
    pub accelerator_warning: Option<String>,
    /// netperf's version line.
    pub netperf_version: String,
    /// `/proc/loadavg` before and after the trials.
    pub load_averages: (Option<String>, Option<String>),
    /// Configurations of each round, in the order they ran.
    pub round_orders: Vec<Vec<String>>,
}

/// Paths of the files written.
#[derive(Clone, Debug, Default)]
pub struct OutputFiles {
    /// `report.md`.
    pub report: PathBuf,
    /// `trials.csv`.
    pub trials: PathBuf,
    /// `barrier_bench.csv`.
    pub barrier_bench: PathBuf,
    /// Every SVG plot.
    pub plots: Vec<PathBuf>,
}

/// Writes every output file into the plan's directory.
///
/// # Errors
/// The first [`ReportError`].
pub fn write_outputs(
    plan: &RunPlan,
    facts: &RunFacts,
    outcomes: &[TrialOutcome],
    barrier_bench: &[BarrierBenchLine],
    analysis: &Analysis,
) -> Result<OutputFiles, ReportError> {
    let directory = &plan.out;
    let mut files = OutputFiles {
        report: directory.join("report.md"),
        trials: directory.join("trials.csv"),
        barrier_bench: directory.join("barrier_bench.csv"),
        plots: Vec::new(),
    };
    let rows: Vec<&TrialRow> = outcomes.iter().map(|outcome| &outcome.row).collect();
    write_csv(&files.trials, &rows)?;
    write_csv(&files.barrier_bench, barrier_bench)?;
    let plot_names = write_plots(directory, plan, outcomes, analysis, &mut files.plots)?;
    let document = render_report(plan, facts, outcomes, analysis, &plot_names);
    document.write(&files.report)?;
    Ok(files)
}

/// File-name form of a workload: `tcp_rr-1x1`.
fn slug(workload: &Workload) -> String {
    format!("{}-{}", workload.test.name().to_ascii_lowercase(), workload.sizes)
}

/// Draws the plots; returns (caption, file name) pairs for the report.
fn write_plots(
    directory: &Path,
    plan: &RunPlan,
    outcomes: &[TrialOutcome],
    analysis: &Analysis,
    written: &mut Vec<PathBuf>,
) -> Result<Vec<(String, String)>, ReportError> {
    let mut names = Vec::new();
    for workload in plan.workloads() {
        let of_workload: Vec<&TrialOutcome> = outcomes
            .iter()
            .filter(|outcome| outcome.config.workload() == workload && outcome.row.is_ok())
            .collect();
        let per_mode = |figure: fn(&TrialRow) -> Option<f64>| -> Vec<(Mode, Vec<(usize, f64)>)> {
            plan.modes
                .iter()
                .map(|&mode| {
                    let points = of_workload
                        .iter()
                        .filter(|outcome| outcome.config.mode == mode)
                        .filter_map(|outcome| Some((outcome.row.trial, figure(&outcome.row)?)))
                        .collect();
                    (mode, points)
                })
                .collect()
        };

        let mut latency_series = Vec::new();
        for (mode, points) in per_mode(|row| row.mean_latency_us) {
            let samples: Vec<f64> = points.iter().map(|point| point.1).collect();
            latency_series.push(Series::empirical_cdf(format!("{mode} mean"), &samples));
        }
        for (mode, points) in per_mode(|row| row.p50_latency_us) {
            let samples: Vec<f64> = points.iter().map(|point| point.1).collect();
            latency_series.push(Series::empirical_cdf(format!("{mode} p50"), &samples));
        }
        let name = format!("latency-{}.svg", slug(&workload));
        plot::write_cdf_svg(
            &directory.join(&name),
            &format!("{workload}: trial mean and median latency per mode"),
            "microseconds",
            &latency_series,
            None,
        )?;
        written.push(directory.join(&name));
        names.push((format!("{workload}: distribution of the trials' mean and median latency"), name));

        let p99_series: Vec<Series> = per_mode(|row| row.p99_latency_us)
            .into_iter()
            .map(|(mode, points)| {
                let samples: Vec<f64> = points.iter().map(|point| point.1).collect();
                Series::empirical_cdf(format!("{mode} p99"), &samples)
            })
            .collect();
        let name = format!("p99-{}.svg", slug(&workload));
        plot::write_cdf_svg(
            &directory.join(&name),
            &format!("{workload}: trial 99th percentile latency per mode"),
            "microseconds",
            &p99_series,
            None,
        )?;
        written.push(directory.join(&name));
        names.push((format!("{workload}: distribution of the trials' 99th percentile latency"), name));

        let rate_series: Vec<Series> = per_mode(|row| row.transaction_rate)
            .into_iter()
            .map(|(mode, points)| Series::in_order(mode.name(), points))
            .collect();
        let name = format!("rate-order-{}.svg", slug(&workload));
        plot::write_order_svg(
            &directory.join(&name),
            &format!("{workload}: transaction rate in trial order"),
            "trial",
            "transactions per second",
            &rate_series,
        )?;
        written.push(directory.join(&name));
        names.push((format!("{workload}: transaction rate by trial, in run order (drift shows as a trend)"), name));
    }

    let mut cycle_series = Vec::new();
    for path in DriverPath::ALL {
        for &mode in &plan.modes {
            let mut pooled = vec![0u64; super::records::LOG2_BUCKETS];
            for workload in &analysis.workloads {
                let Some(summary) = workload.modes.iter().find(|summary| summary.mode == mode) else { continue };
                for queue in [RECEIVE_QUEUE, TRANSMIT_QUEUE] {
                    if let Some(histogram) = summary.cycles.get(&(queue, path)) {
                        for (sum, added) in pooled.iter_mut().zip(&histogram.buckets) {
                            *sum += added;
                        }
                    }
                }
            }
            cycle_series.push(log2_cumulative(format!("{} {mode}", path.name()), &pooled));
        }
    }
    let name = "cycles.svg".to_string();
    plot::write_cdf_svg(
        &directory.join(&name),
        "Guest driver path cycles per mode (both queues, every workload)",
        "guest TSC cycles (upper bound of the power-of-two bucket)",
        &cycle_series,
        None,
    )?;
    written.push(directory.join(&name));
    names.push(("Guest submit and complete path cycles per mode".to_string(), name));
    Ok(names)
}

/// Cumulative points of a log2 histogram at each non-empty bucket's upper
/// bound, `2^(i+1) - 1`.
fn log2_cumulative(label: String, buckets: &[u64]) -> Series {
    let total: u64 = buckets.iter().sum();
    let mut seen = 0;
    let mut points = Vec::new();
    for (index, &count) in buckets.iter().enumerate() {
        if count == 0 {
            continue;
        }
        seen += count;
        let upper_bound = 2f64.powi(index as i32 + 1) - 1.0;
        points.push((upper_bound, seen as f64 / total as f64));
    }
    Series { label, points }
}

fn optional(value: Option<f64>, decimals: usize) -> String {
    value.filter(|value| value.is_finite()).map_or_else(|| "n/a".to_string(), |value| format!("{value:.decimals$}"))
}

fn relative(ratio: Option<&Interval>) -> String {
    ratio.map_or_else(|| "n/a".to_string(), format_relative_change)
}

fn p_value(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_string(), |value| format!("{value:.4}"))
}

fn render_report(
    plan: &RunPlan,
    facts: &RunFacts,
    outcomes: &[TrialOutcome],
    analysis: &Analysis,
    plots: &[(String, String)],
) -> MarkdownDocument {
    let mut document = MarkdownDocument::new();
    document.heading(1, "bench run: weak against strong virtqueue barriers, end to end");
    render_setup(&mut document, plan, facts, outcomes);

    document.heading(2, "Latency and transaction rate per mode");
    document.paragraph(
        "One value per trial: netperf's mean latency, its 99th percentile and the transaction rate of each \
         trial, summarised over the trials with 95% percentile-bootstrap intervals.",
    );
    document.table(&summary_table(analysis), "No trial succeeded.");

    document.heading(2, "Strong against weak");
    document.paragraph(
        "Relative differences are strong / weak - 1 of the means over trials, with bootstrap intervals; \
         p is a two-sided permutation test of the difference of means (10000 relabelings). The paired \
         column is the geometric mean of strong / weak within each round, which cancels drift slower \
         than a round.",
    );
    document.table(&comparison_table(analysis), "Only one mode ran, so there is nothing to compare.");
    document.bullets(verdicts(analysis));

    document.heading(2, "Guest work per transaction");
    document.paragraph(
        "From the guest's counters before and after each trial: barriers of each kind (both queues), and \
         notifications (available buffer notifications plus interrupts, both queues) per netperf transaction.",
    );
    document.table(&work_table(analysis), "No trial succeeded.");

    document.heading(2, "Driver path cycles");
    document.paragraph(
        "Mean guest TSC cycles of the submit path (add, publish, notification decision) and the complete \
         path (used index and one used entry), pooled over every trial of the mode.",
    );
    document.table(&cycles_table(analysis), "No trial succeeded.");

    document.heading(2, "In-guest barrier microbenchmark");
    document.paragraph(
        "The console's `barrier-bench`, once per round on that round's last guest: guest TSC cycles per \
         barrier minus an empty loop. Under TCG these figures describe QEMU's translation of the \
         instructions, not the CPU's cost.",
    );
    document.table(&barrier_bench_table(&analysis.barrier_bench), "The barrier microbenchmark did not run.");

    render_steal(&mut document, analysis, outcomes);
    render_failures(&mut document, outcomes);

    document.heading(2, "Plots");
    for (caption, file_name) in plots {
        document.paragraph(caption);
        document.image(caption, file_name);
    }
    document
}

fn render_setup(document: &mut MarkdownDocument, plan: &RunPlan, facts: &RunFacts, outcomes: &[TrialOutcome]) {
    document.heading(2, "Setup");
    let failed = outcomes.iter().filter(|outcome| !outcome.row.is_ok()).count();
    let (load_before, load_after) = &facts.load_averages;
    let cpu = &facts.cpu;
    document.bullets([
        format!("Command: `{}`", facts.command_line),
        format!("Started (UTC): {}", facts.started_utc),
        format!(
            "Host CPU: {} ({}, family/model/stepping {}, microcode {}){}",
            cpu.name,
            cpu.vendor,
            cpu.signature,
            cpu.microcode,
            if cpu.virtualised { ", itself a virtual machine" } else { "" }
        ),
        format!("Host kernel: {}", facts.kernel),
        format!("Accelerator: {}", facts.accelerators),
        format!("netperf: {}", facts.netperf_version),
        format!(
            "Trials: {} ({} failed), {} rounds of {} combinations, {} s per netperf test",
            outcomes.len(),
            failed,
            plan.rounds,
            plan.configs.len(),
            plan.duration_seconds
        ),
        format!(
            "Mode switch: {}; network: {}; guest wait mode: {}",
            match plan.switch {
                super::options::SwitchPoint::Boot => "a fresh boot per trial",
                super::options::SwitchPoint::Runtime => "one boot per round, console `barriers` between trials",
            },
            match plan.network {
                super::options::NetworkKind::User => "QEMU user networking (127.0.0.1 port forwarding)",
                super::options::NetworkKind::Tap => "tap device in a network namespace",
            },
            plan.wait_mode.name()
        ),
        format!("Seed: {}", plan.seed),
        format!(
            "Load average before / after: {} / {}",
            load_before.as_deref().unwrap_or("n/a"),
            load_after.as_deref().unwrap_or("n/a")
        ),
    ]);
    if let Some(warning) = &facts.accelerator_warning {
        document.paragraph(&format!("**Warning:** {warning}"));
    }
    if facts.accelerators.split(',').any(|name| name == "tcg") {
        document.paragraph(
            "**Accelerator caveat:** the guests ran under TCG, which translates `lfence`, `sfence`, `mfence` \
             and locked instructions into host code of its own. Differences between the modes here are \
             differences of QEMU's translation and of the guest's instruction count, not what the fences \
             cost on a CPU; read them beside the in-guest microbenchmark below and the host ring benchmark \
             (`bench ring`).",
        );
    }
    let orders: Vec<String> = facts
        .round_orders
        .iter()
        .enumerate()
        .map(|(index, order)| format!("round {}: {}", index + 1, order.join(", ")))
        .collect();
    document.paragraph("Trial order (shuffled per round with the seed):");
    document.code_block(&orders.join("\n"));
}

fn summary_table(analysis: &Analysis) -> MarkdownTable {
    let mut table = MarkdownTable::new([
        "workload",
        "mode",
        "trials ok / failed",
        "mean latency µs [95% CI]",
        "median of trial means µs [95% CI]",
        "p99 µs, mean of trials [95% CI]",
        "transactions/s [95% CI]",
    ]);
    for workload in &analysis.workloads {
        for summary in &workload.modes {
            table.push_row([
                workload.workload.to_string(),
                summary.mode.to_string(),
                format!("{} / {}", summary.trials_ok, summary.trials_failed),
                format_optional_interval(summary.latency_mean.as_ref(), 1),
                format_optional_interval(summary.latency_median.as_ref(), 1),
                format_optional_interval(summary.p99_mean.as_ref(), 0),
                format_optional_interval(summary.rate_mean.as_ref(), 0),
            ]);
        }
    }
    table
}

fn comparison_table(analysis: &Analysis) -> MarkdownTable {
    let mut table = MarkdownTable::new([
        "workload",
        "mean latency, strong vs weak [95% CI]",
        "p",
        "paired per round [95% CI]",
        "transaction rate, strong vs weak [95% CI]",
        "p",
        "p99, strong vs weak [95% CI]",
        "rounds to resolve",
    ]);
    for workload in &analysis.workloads {
        let Some(comparison) = &workload.comparison else { continue };
        table.push_row([
            workload.workload.to_string(),
            relative(comparison.latency_ratio.as_ref()),
            p_value(comparison.latency_p_value),
            format!("{} (n={})", relative(comparison.paired_latency_ratio.as_ref()), comparison.paired_rounds),
            relative(comparison.rate_ratio.as_ref()),
            p_value(comparison.rate_p_value),
            relative(comparison.p99_ratio.as_ref()),
            optional(comparison.rounds_to_resolve, 0),
        ]);
    }
    table
}

/// Writes one sentence per workload on whether the modes differ beyond the
/// noise.
pub fn verdicts(analysis: &Analysis) -> Vec<String> {
    analysis
        .workloads
        .iter()
        .filter_map(|workload| Some((workload, workload.comparison.as_ref()?)))
        .map(|(workload, comparison)| verdict(&workload.workload, comparison, workload.modes.first()))
        .collect()
}

fn verdict(workload: &Workload, comparison: &Comparison, weak: Option<&ModeSummary>) -> String {
    let trials = weak.map_or(0, |summary| summary.trials_ok);
    let Some(ratio) = comparison.latency_ratio else {
        return format!("{workload}: too few successful trials to compare.");
    };
    let resolve = match comparison.rounds_to_resolve {
        Some(rounds) => format!(
            "at the observed effect the interval would exclude 0 after about {rounds:.0} rounds, and reach ±1% \
             after about {} rounds",
            optional(comparison.rounds_for_one_percent, 0)
        ),
        None => "the interval width gives no estimate of the rounds needed".to_string(),
    };
    if comparison.latency_distinguishable() {
        format!(
            "{workload}: strong changes the mean latency by {} with {trials} trials per mode; the difference is \
             distinguishable from the noise (the interval excludes 0, p = {}).",
            format_relative_change(&ratio),
            p_value(comparison.latency_p_value)
        )
    } else {
        format!(
            "{workload}: the mean latency difference {} with {trials} trials per mode is not distinguishable \
             from the noise (p = {}); {resolve}.",
            format_relative_change(&ratio),
            p_value(comparison.latency_p_value)
        )
    }
}

fn work_table(analysis: &Analysis) -> MarkdownTable {
    let mut table = MarkdownTable::new([
        "workload",
        "mode",
        "read barriers / transaction",
        "write barriers / transaction",
        "full barriers / transaction",
        "notifications / transaction",
    ]);
    for workload in &analysis.workloads {
        for summary in workload.modes.iter().filter(|summary| summary.trials_ok > 0) {
            let [read, write, full] = summary.barriers_per_transaction;
            table.push_row([
                workload.workload.to_string(),
                summary.mode.to_string(),
                optional(read, 2),
                optional(write, 2),
                optional(full, 2),
                optional(summary.notifications_per_transaction, 2),
            ]);
        }
    }
    table
}

fn cycles_table(analysis: &Analysis) -> MarkdownTable {
    let mut table = MarkdownTable::new([
        "workload",
        "mode",
        "receive submit",
        "receive complete",
        "transmit submit",
        "transmit complete",
    ]);
    for workload in &analysis.workloads {
        for summary in workload.modes.iter().filter(|summary| summary.trials_ok > 0) {
            let mean = |queue, path| optional(summary.cycles.get(&(queue, path)).and_then(|histogram| histogram.mean_cycles()), 0);
            table.push_row([
                workload.workload.to_string(),
                summary.mode.to_string(),
                mean(RECEIVE_QUEUE, DriverPath::Submit),
                mean(RECEIVE_QUEUE, DriverPath::Complete),
                mean(TRANSMIT_QUEUE, DriverPath::Submit),
                mean(TRANSMIT_QUEUE, DriverPath::Complete),
            ]);
        }
    }
    table
}

fn barrier_bench_table(summaries: &[BarrierBenchSummary]) -> MarkdownTable {
    let mut table = MarkdownTable::new(["mode", "kind", "cycles per barrier, median [min, max]", "rounds", "guest accelerator"]);
    for summary in summaries {
        table.push_row([
            summary.mode.to_string(),
            summary.kind.clone(),
            format!("{:.2} [{:.2}, {:.2}]", summary.median_cycles, summary.min_cycles, summary.max_cycles),
            summary.samples.to_string(),
            summary.accelerators.clone(),
        ]);
    }
    table
}

fn render_steal(document: &mut MarkdownDocument, analysis: &Analysis, outcomes: &[TrialOutcome]) {
    document.heading(2, "Host steal time as a covariate");
    document.paragraph(
        "Steal is CPU time the host's hypervisor gave to others while this host wanted it, read from \
         /proc/stat around each netperf run. The fit is a least squares regression of trial mean latency \
         on mode and steal; its mode effect is the latency difference at equal steal.",
    );
    let mut table = MarkdownTable::new([
        "workload",
        "mean steal ms, weak / strong",
        "correlation of steal and latency",
        "µs per ms of steal",
        "strong - weak at equal steal, µs",
    ]);
    for workload in &analysis.workloads {
        let Some(comparison) = &workload.comparison else { continue };
        let steal = |mode: Mode| optional(mode_summary(workload, mode).and_then(|summary| summary.steal_ms_mean), 1);
        table.push_row([
            workload.workload.to_string(),
            format!("{} / {}", steal(Mode::Weak), steal(Mode::Strong)),
            optional(comparison.steal_latency_correlation, 2),
            optional(comparison.steal_slope, 3),
            optional(comparison.steal_adjusted_effect_us, 2),
        ]);
    }
    document.table(&table, "Only one mode ran, so there is no mode effect to adjust.");

    let mut trials = MarkdownTable::new([
        "trial",
        "round",
        "workload",
        "mode",
        "transactions/s",
        "mean latency µs",
        "p99 µs",
        "host steal ms",
        "host steal ‰",
        "host busy ‰",
    ]);
    for outcome in outcomes.iter().filter(|outcome| outcome.row.is_ok()) {
        let row = &outcome.row;
        trials.push_row([
            row.trial.to_string(),
            row.round.to_string(),
            outcome.config.workload().to_string(),
            row.mode.clone(),
            optional(row.transaction_rate, 0),
            optional(row.mean_latency_us, 1),
            optional(row.p99_latency_us, 0),
            optional(row.host_steal_ms, 0),
            optional(row.host_steal_permille, 1),
            optional(row.host_busy_permille, 0),
        ]);
    }
    document.paragraph("Per trial:");
    document.table(&trials, "No trial succeeded.");
}

fn mode_summary(workload: &WorkloadAnalysis, mode: Mode) -> Option<&ModeSummary> {
    workload.modes.iter().find(|summary| summary.mode == mode)
}

fn render_failures(document: &mut MarkdownDocument, outcomes: &[TrialOutcome]) {
    let mut table = MarkdownTable::new(["trial", "round", "workload", "mode", "attempts", "error"]);
    for outcome in outcomes.iter().filter(|outcome| !outcome.row.is_ok()) {
        let row = &outcome.row;
        let mut error = row.failure.clone();
        if let Some((cut, _)) = error.char_indices().nth(300) {
            error.truncate(cut);
            error.push_str(" ...");
        }
        table.push_row([
            row.trial.to_string(),
            row.round.to_string(),
            outcome.config.workload().to_string(),
            row.mode.clone(),
            row.attempts.to_string(),
            error,
        ]);
    }
    if !table.is_empty() {
        document.heading(2, "Failed trials");
        document.paragraph("Each failed trial was retried once; the full error is in trials.csv.");
        document.table(&table, "");
    }
}

/// Formats the terminal summary: one line per workload and mode, then the
/// verdicts.
pub fn terminal_summary(analysis: &Analysis) -> String {
    let mut text = format!(
        "{:<16} {:<7} {:>7} {:>12} {:>30} {:>9} {:>28} {:>8}\n",
        "workload", "mode", "trials", "trans/s", "mean latency us [95% CI]", "p99 us", "vs weak [95% CI]", "p"
    );
    for workload in &analysis.workloads {
        for summary in &workload.modes {
            let versus = match (&workload.comparison, summary.mode) {
                (Some(comparison), Mode::Strong) => {
                    (relative(comparison.latency_ratio.as_ref()), p_value(comparison.latency_p_value))
                }
                _ => (String::new(), String::new()),
            };
            text.push_str(&format!(
                "{:<16} {:<7} {:>7} {:>12} {:>30} {:>9} {:>28} {:>8}\n",
                workload.workload.to_string(),
                summary.mode.name(),
                format!("{}/{}", summary.trials_ok, summary.trials_ok + summary.trials_failed),
                optional(summary.rate_mean.map(|interval| interval.estimate), 0),
                format_optional_interval(summary.latency_mean.as_ref(), 1),
                optional(summary.p99_mean.map(|interval| interval.estimate), 0),
                versus.0,
                versus.1,
            ));
        }
    }
    for line in verdicts(analysis) {
        text.push_str(&line);
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log2_points_sit_at_bucket_upper_bounds() {
        let series = log2_cumulative("submit weak".to_string(), &[0, 0, 2, 0, 2]);
        assert_eq!(series.points, [(7.0, 0.5), (31.0, 1.0)]);
        assert!(log2_cumulative("empty".to_string(), &[0, 0]).points.is_empty());
    }
}
