//! Files of a `bench ring` run: `report.md`, `trials.csv`,
//! `histograms.csv`, `microbench.csv` and the SVG plots.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use virtio::barrier::BarrierSite;

use super::analysis::{Analysis, Attribution, ConfigSummary};
use super::microbench::MicrobenchRow;
use super::options::RingPlan;
use super::record::TrialRow;
use crate::host::CpuModel;
use crate::plot::{self, BarWithInterval, Series};
use crate::report::{
    format_interval, format_optional_interval, format_relative_change, write_csv, MarkdownDocument,
    MarkdownTable, ReportError,
};
use crate::stats::{Interval, LogHistogram};
use crate::tsc::TscFrequency;

/// Facts about the run that the report header records.
#[derive(Clone, Debug)]
pub struct RunFacts {
    /// The command line as typed.
    pub command_line: String,
    /// UTC start time, `YYYYMMDD-HHMMSS`.
    pub started_utc: String,
    /// The CPU.
    pub cpu: CpuModel,
    /// Kernel release.
    pub kernel: String,
    /// Counter frequency.
    pub frequency: TscFrequency,
    /// Configuration indices of each round, in the order they ran.
    pub round_orders: Vec<Vec<usize>>,
    /// `/proc/loadavg` before and after the trials.
    pub load_averages: (Option<String>, Option<String>),
}

/// Paths of the files written.
#[derive(Clone, Debug, Default)]
pub struct OutputFiles {
    /// `report.md`.
    pub report: PathBuf,
    /// `trials.csv`.
    pub trials: PathBuf,
    /// `histograms.csv`.
    pub histograms: PathBuf,
    /// `microbench.csv`.
    pub microbench: PathBuf,
    /// Every SVG plot.
    pub plots: Vec<PathBuf>,
}

#[derive(Serialize)]
struct HistogramRow<'a> {
    config: &'a str,
    low_ticks: u64,
    high_ticks: u64,
    count: u64,
}

/// Writes every output file into the plan's directory.
///
/// # Errors
/// The first [`ReportError`].
pub fn write_outputs(
    plan: &RingPlan,
    facts: &RunFacts,
    rows: &[TrialRow],
    histograms: &BTreeMap<String, LogHistogram>,
    microbench: &[MicrobenchRow],
    analysis: &Analysis,
) -> Result<OutputFiles, ReportError> {
    let directory = &plan.out;
    let mut files = OutputFiles {
        report: directory.join("report.md"),
        trials: directory.join("trials.csv"),
        histograms: directory.join("histograms.csv"),
        microbench: directory.join("microbench.csv"),
        plots: Vec::new(),
    };
    write_csv(&files.trials, rows)?;
    write_csv(&files.microbench, microbench)?;
    let histogram_rows: Vec<HistogramRow<'_>> = histograms
        .iter()
        .flat_map(|(config, histogram)| {
            histogram.buckets().map(move |bucket| HistogramRow {
                config,
                low_ticks: bucket.low,
                high_ticks: bucket.high,
                count: bucket.count,
            })
        })
        .collect();
    write_csv(&files.histograms, &histogram_rows)?;

    let plot_names = write_plots(directory, histograms, analysis, &mut files.plots)?;
    let document = render_report(plan, facts, microbench, analysis, &plot_names);
    document.write(&files.report)?;
    Ok(files)
}

/// File-name form of a group label: "model, event idx on" becomes
/// "model-event-idx-on".
fn slug(text: &str) -> String {
    let mut slug = String::new();
    for character in text.chars() {
        if character.is_ascii_alphanumeric() {
            slug.push(character.to_ascii_lowercase());
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    slug.trim_matches('-').to_string()
}

/// Draws the plots and returns (caption, file name) pairs for the report.
fn write_plots(
    directory: &Path,
    histograms: &BTreeMap<String, LogHistogram>,
    analysis: &Analysis,
    written: &mut Vec<PathBuf>,
) -> Result<Vec<(String, String)>, ReportError> {
    let mut names = Vec::new();
    let mut groups: Vec<String> = Vec::new();
    for summary in &analysis.summaries {
        let group = summary.config.group_label();
        if !groups.contains(&group) {
            groups.push(group);
        }
    }
    for group in &groups {
        let members: Vec<&ConfigSummary> = analysis
            .summaries
            .iter()
            .filter(|summary| &summary.config.group_label() == group)
            .collect();

        let curves: Vec<Series> = members
            .iter()
            .filter_map(|summary| {
                let histogram = histograms.get(&summary.config.label())?;
                (histogram.total() > 0).then(|| Series {
                    label: summary.config.barriers.label.clone(),
                    points: histogram.cumulative_points(),
                })
            })
            .collect();
        let x_limit = members
            .iter()
            .filter_map(|summary| summary.pooled.map(|pooled| pooled.p99_9))
            .fold(None, |limit: Option<f64>, value| Some(limit.map_or(value, |limit| limit.max(value))));
        let cdf_name = format!("latency-cdf-{}.svg", slug(group));
        let title = format!("Round-trip latency, {group} (x axis cut at the largest p99.9)");
        plot::write_cdf_svg(&directory.join(&cdf_name), &title, "round-trip latency (TSC ticks)", &curves, x_limit)?;
        names.push((format!("Latency distribution, {group}"), cdf_name));

        let in_order: Vec<Series> = members
            .iter()
            .map(|summary| {
                Series::in_order(
                    summary.config.barriers.label.clone(),
                    summary
                        .rows
                        .iter()
                        .filter(|row| row.sampled_round_trips > 0)
                        .map(|row| (row.trial, row.latency_p50_ticks)),
                )
            })
            .collect();
        let order_name = format!("latency-by-trial-{}.svg", slug(group));
        let title = format!("Median round-trip latency per trial, in run order, {group}");
        plot::write_order_svg(&directory.join(&order_name), &title, "trial (run order)", "median latency (ticks)", &in_order)?;
        names.push((format!("Median latency per trial in run order, {group}"), order_name));
    }

    for attribution in &analysis.attributions {
        let mut bars: Vec<BarWithInterval> = attribution
            .sites
            .iter()
            .map(|site| bar(site.site.name(), &site.cost_ticks))
            .collect();
        if let Some(expected) = &attribution.expected_total_ticks {
            bars.push(bar("sum of sites", expected));
        }
        if let Some(measured) = &attribution.measured_total_ticks {
            bars.push(bar("strong - weak", measured));
        }
        let name = format!("site-cost-{}.svg", slug(&attribution.group));
        let title = format!("Latency cost of one strong site (ticks per round trip), {}", attribution.group);
        plot::write_bars_svg(&directory.join(&name), &title, "ticks per round trip, 95% CI", &bars)?;
        names.push((format!("Per-site cost, {}", attribution.group), name));
    }
    written.extend(names.iter().map(|(_, name)| directory.join(name)));
    Ok(names)
}

fn bar(label: &str, interval: &Interval) -> BarWithInterval {
    BarWithInterval {
        label: label.to_string(),
        value: interval.estimate,
        low: interval.low,
        high: interval.high,
    }
}

fn render_report(
    plan: &RingPlan,
    facts: &RunFacts,
    microbench: &[MicrobenchRow],
    analysis: &Analysis,
    plots: &[(String, String)],
) -> MarkdownDocument {
    let mut document = MarkdownDocument::new();
    document.heading(1, "bench ring: split virtqueue ping-pong on two cores");
    render_setup(&mut document, plan, facts);
    render_method(&mut document);

    let frequency = &facts.frequency;
    document.heading(2, "Round-trip latency");
    document.paragraph(
        "Per trial, the median (p50) and mean over its sampled round trips; the table gives the \
         mean over trials with a 95% bootstrap interval, and the median over trials with its \
         interval. Pooled percentiles merge every round trip of every trial in a log-linear \
         histogram (buckets at most 0.8% wide). Throughput is chains completed per second over \
         the timed phase, so preemptions and steal lower it as they raise the mean. \
         Preemptions count involuntary context switches of the driver and device threads.",
    );
    document.table(&latency_table(analysis, frequency), "No trials ran.");

    document.heading(2, "Driver paths");
    document.paragraph(
        "Per trial medians, in ticks, averaged over trials: submit is add + publish + the \
         notification decision; completion is pop_used until it returns None (the used idx \
         read included); re-arm is enable_interrupts with its used idx re-read. Each path is \
         timed with lfence;rdtsc and rdtscp;lfence, which add their own cost to the path and \
         to the round trip, equally in every configuration.",
    );
    document.table(&paths_table(analysis), "No trials ran.");

    document.heading(2, "Strong versus weak");
    document.paragraph(
        "Strong minus weak over per-trial values, with a 95% bootstrap interval of the \
         difference and of the ratio (shown as a change), and the two-sided permutation test \
         p-value of the difference of means. With few trials per configuration the smallest \
         possible p-value is large: with n trials per side it is about 1 / C(2n, n).",
    );
    document.table(&comparison_table(analysis), "Needs both the weak and the strong configuration.");

    if !analysis.attributions.is_empty() {
        document.heading(2, "Per-site attribution");
        document.paragraph(
            "Each site strong alone, the others weak. Cost is the configuration's median latency \
             minus all-weak, per round trip. Expected total adds each site's ticks per \
             execution times its executions per round trip in the all-strong configuration; \
             measured total is all-strong minus all-weak. The microbenchmark column multiplies \
             the strong-minus-weak cost of the site's barrier after a store by the same \
             executions. A site that never executes in a group (interrupt-enable with event \
             idx, used-event-store without) is a control: its cost should be 0 within noise.",
        );
        for attribution in &analysis.attributions {
            render_attribution(&mut document, attribution);
        }
    }

    document.heading(2, "Barrier executions per round trip");
    document.table(&executions_table(analysis), "No trials ran.");

    document.heading(2, "Barrier microbenchmark");
    document.paragraph(
        "Ticks per barrier of the virtio crate's barrier functions on the driver core. Each \
         sample times 1024 barriers (a loop unrolled 16 times); median and 10th/90th \
         percentiles over samples. Net subtracts the same context's weak read barrier, which \
         is only a compiler barrier, leaving the barrier's own cost.",
    );
    document.table(&microbench_table(microbench), "The microbenchmark did not run.");

    document.heading(2, "Faults");
    document.paragraph(
        "Counted only in configurations with an ablated (`none`) site; elsewhere the first fault \
         ends the run with an error. Each round trip is checked for a stall (no used buffer \
         notification within the stall timeout, then diagnosed from the rings), for chains \
         returned twice or never, and for the used length and response contents. Finding no \
         fault does not show that a barrier is unneeded: the race window may just not have \
         been hit.",
    );
    document.table(&faults_table(analysis), "No configuration had an ablated site.");

    document.heading(2, "Trial order");
    let orders: Vec<String> = facts
        .round_orders
        .iter()
        .enumerate()
        .map(|(round, order)| {
            let labels: Vec<String> = order.iter().map(|&index| plan.configs[index].label()).collect();
            format!("round {}: {}", round + 1, labels.join("; "))
        })
        .collect();
    document.bullets(&orders);

    document.heading(2, "Plots");
    for (caption, file_name) in plots {
        document.image(caption, file_name);
    }
    document
}

fn render_setup(document: &mut MarkdownDocument, plan: &RingPlan, facts: &RunFacts) {
    document.code_block(&facts.command_line);
    let cpu = &facts.cpu;
    let cpuinfo = facts
        .frequency
        .cpuinfo_hz
        .map_or("not reported".to_string(), |hz| format!("{:.1} MHz", hz / 1e6));
    document.bullets([
        format!("started {} UTC", facts.started_utc),
        format!(
            "CPU: {} ({}, family/model/stepping {}, microcode {}){}",
            cpu.name,
            cpu.vendor,
            cpu.signature,
            cpu.microcode,
            if cpu.virtualised { ", running under a hypervisor" } else { "" }
        ),
        format!("Linux {}", facts.kernel),
        format!(
            "TSC {:.1} MHz calibrated against the monotonic clock (/proc/cpuinfo cpu MHz: {cpuinfo})",
            facts.frequency.calibrated_hz / 1e6
        ),
        format!("driver on core {}, device on core {}", plan.cores.driver, plan.cores.device),
        format!(
            "queue size {}, batch {} chain(s) per round trip, {} timed and {} warm-up round trips per trial",
            plan.shape.queue_size, plan.shape.batch, plan.shape.iterations, plan.shape.warmup
        ),
        format!(
            "{} rounds of {} configurations, order shuffled with seed {}",
            plan.rounds,
            plan.configs.len(),
            plan.seed
        ),
        format!("stall timeout {} ms", plan.shape.stall_timeout.as_millis()),
        format!(
            "load average (1, 5, 15 min) before the trials {}, after {}; other processes on these \
             cores preempt the spinning threads and show up as latency outliers and preemptions",
            facts.load_averages.0.as_deref().unwrap_or("not reported"),
            facts.load_averages.1.as_deref().unwrap_or("not reported")
        ),
    ]);
}

fn render_method(document: &mut MarkdownDocument) {
    document.heading(2, "Method");
    document.bullets([
        "Driver: the kernel's `virtio::queue::SplitQueue`, unchanged, with the barrier module's \
         per-site modes set through `set_site_mode`. It runs the kernel's interrupt-mode loop: \
         add and publish, ring the doorbell if publish asks for it, wait for an interrupt, \
         disable interrupts, pop every used chain, re-enable interrupts and poll again if the \
         re-read finds chains.",
        "Device: either this crate's device model (a spin loop over the rings with atomics) or \
         rust-vmm's `virtio-queue` 0.18 over `vm-memory` 0.18 guest memory. Both suppress \
         notifications while busy, re-enable and re-check before sleeping, and decide on \
         interrupts with event idx or `VIRTQ_AVAIL_F_NO_INTERRUPT`. `virtio-queue` ignores that \
         flag, so the harness reads it after the crate's own fence.",
        "Memory: the rings and buffers live in one `vm-memory` region at guest-physical \
         0x100000000; every address the driver writes is a guest-physical address.",
        "Doorbell and interrupt are stand-ins: a counter in ordinary memory that one side \
         stores (no locked instruction) and the other polls. Real notifications cost a VM exit \
         or an MSI-X message, so these latencies are far below a guest's; only the differences \
         between barrier configurations carry over.",
        "Each chain is a 64-byte request holding a sequence number and a 64-byte response; the \
         device copies the number and reports a length derived from it, and the driver checks \
         both after each round trip.",
        "Statistics: one value per trial (its median unless stated), 95% percentile bootstrap \
         intervals over trials (10000 resamples), two-sided permutation tests (10000 \
         relabelings). Rounds interleave configurations so that slow drift of the host affects \
         all of them alike; steal time comes from /proc/stat.",
    ]);
}

fn latency_table(analysis: &Analysis, frequency: &TscFrequency) -> MarkdownTable {
    let mut table = MarkdownTable::new([
        "configuration",
        "trials",
        "p50 ticks, mean of trials",
        "p50 ticks, median of trials",
        "mean ticks",
        "p50 ns",
        "pooled p50 / p90 / p99 / p99.9 ticks",
        "throughput Mchains/s",
        "steal ms",
        "preemptions",
    ]);
    for summary in &analysis.summaries {
        let pooled = summary.pooled.map_or("n/a".to_string(), |pooled| {
            format!("{:.0} / {:.0} / {:.0} / {:.0}", pooled.p50, pooled.p90, pooled.p99, pooled.p99_9)
        });
        let p50_ns = summary
            .latency_p50_ticks
            .map(|ticks| ticks.map(|value| frequency.ticks_to_ns(value)));
        let throughput = summary
            .throughput_chains_per_second
            .map(|rate| rate.map(|value| value / 1e6));
        table.push_row([
            summary.config.label(),
            summary.trials.to_string(),
            format_optional_interval(summary.latency_p50_ticks.as_ref(), 0),
            format_optional_interval(summary.latency_p50_median_ticks.as_ref(), 0),
            format_optional_interval(summary.latency_mean_ticks.as_ref(), 0),
            format_optional_interval(p50_ns.as_ref(), 0),
            pooled,
            format_optional_interval(throughput.as_ref(), 3),
            format!("{:.0}", summary.steal_ms),
            summary.rows.iter().map(|row| row.preemptions.max(0)).sum::<i64>().to_string(),
        ]);
    }
    table
}

fn paths_table(analysis: &Analysis) -> MarkdownTable {
    let mut table = MarkdownTable::new([
        "configuration",
        "submit p50",
        "completion p50",
        "re-arm p50",
        "doorbells per round trip",
        "interrupt wakeups per round trip",
    ]);
    for summary in &analysis.summaries {
        table.push_row([
            summary.config.label(),
            format_optional_interval(summary.submit_p50_ticks.as_ref(), 1),
            format_optional_interval(summary.completion_p50_ticks.as_ref(), 1),
            format_optional_interval(summary.rearm_p50_ticks.as_ref(), 1),
            format!("{:.3}", summary.kicks_per_round_trip),
            format!("{:.3}", summary.wakeups_per_round_trip),
        ]);
    }
    table
}

fn comparison_table(analysis: &Analysis) -> MarkdownTable {
    let mut table = MarkdownTable::new(["group", "figure", "weak", "strong", "strong - weak", "change", "p"]);
    for comparison in &analysis.comparisons {
        let decimals = if comparison.metric.starts_with("throughput") { 0 } else { 1 };
        table.push_row([
            comparison.group.clone(),
            comparison.metric.to_string(),
            format_interval(&comparison.weak, decimals),
            format_interval(&comparison.strong, decimals),
            format_interval(&comparison.difference, decimals),
            format_relative_change(&comparison.ratio),
            format!("{:.4}", comparison.p_value),
        ]);
    }
    table
}

fn render_attribution(document: &mut MarkdownDocument, attribution: &Attribution) {
    document.heading(3, &attribution.group);
    let mut table = MarkdownTable::new([
        "site",
        "executions per round trip",
        "cost, ticks per round trip",
        "ticks per execution",
        "p vs weak",
        "microbenchmark expectation",
    ]);
    for site in &attribution.sites {
        table.push_row([
            site.site.name().to_string(),
            format!("{:.3}", site.executions_per_round_trip),
            format_interval(&site.cost_ticks, 1),
            site.ticks_per_execution
                .map_or("n/a (never executes)".to_string(), |ticks| format!("{ticks:.1}")),
            format!("{:.4}", site.p_value),
            site.microbench_ticks.map_or("n/a".to_string(), |ticks| format!("{ticks:.1}")),
        ]);
    }
    document.table(&table, "No site configuration ran.");
    document.bullets([
        format!(
            "expected total from the sites: {} ticks per round trip",
            format_optional_interval(attribution.expected_total_ticks.as_ref(), 1)
        ),
        format!(
            "measured strong - weak: {} ticks per round trip",
            format_optional_interval(attribution.measured_total_ticks.as_ref(), 1)
        ),
        format!(
            "microbenchmark expectation: {} ticks per round trip",
            attribution
                .microbench_total_ticks
                .map_or("n/a".to_string(), |ticks| format!("{ticks:.1}"))
        ),
    ]);
}

fn executions_table(analysis: &Analysis) -> MarkdownTable {
    let mut headers = vec!["configuration".to_string()];
    headers.extend(BarrierSite::ALL.iter().map(|site| site.name().to_string()));
    let mut table = MarkdownTable::new(headers);
    for summary in &analysis.summaries {
        let mut cells = vec![summary.config.label()];
        for (index, site) in BarrierSite::ALL.iter().enumerate() {
            let setting = summary.config.barriers.setting(*site).name();
            cells.push(format!("{:.3} {setting}", summary.executions_per_round_trip[index]));
        }
        table.push_row(cells);
    }
    table
}

fn microbench_table(rows: &[MicrobenchRow]) -> MarkdownTable {
    let mut table = MarkdownTable::new(["barrier", "mode", "context", "median", "p10", "p90", "net"]);
    for row in rows {
        table.push_row([
            row.barrier.to_string(),
            row.mode.to_string(),
            row.context.to_string(),
            format!("{:.1}", row.ticks_median),
            format!("{:.1}", row.ticks_p10),
            format!("{:.1}", row.ticks_p90),
            format!("{:.1}", row.net_ticks),
        ]);
    }
    table
}

fn faults_table(analysis: &Analysis) -> MarkdownTable {
    let mut table = MarkdownTable::new([
        "configuration",
        "round trips",
        "lost available notifications",
        "lost used notifications",
        "missing",
        "duplicated",
        "wrong length",
        "wrong contents",
        "queue errors",
        "faulted round trips",
        "trials ended early",
    ]);
    for summary in analysis
        .summaries
        .iter()
        .filter(|summary| summary.config.barriers.has_ablated_site())
    {
        let sum = |value: fn(&TrialRow) -> u64| summary.rows.iter().map(value).sum::<u64>().to_string();
        let ended_early = summary.rows.iter().filter(|row| !row.ended_early.is_empty()).count();
        table.push_row([
            summary.config.label(),
            sum(|row| row.round_trips),
            sum(|row| row.lost_available_notifications),
            sum(|row| row.lost_used_notifications),
            sum(|row| row.missing_buffers),
            sum(|row| row.duplicate_buffers),
            sum(|row| row.wrong_lengths),
            sum(|row| row.wrong_contents),
            sum(|row| row.queue_errors),
            sum(|row| row.faulted_round_trips),
            ended_early.to_string(),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_keeps_words() {
        assert_eq!(slug("rust-vmm, event idx on"), "rust-vmm-event-idx-on");
        assert_eq!(slug("model, event idx off"), "model-event-idx-off");
    }
}
