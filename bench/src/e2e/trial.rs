//! One trial: the guest's counters, a netperf test with the host's CPU time
//! around it, and the counters again. The module also builds the flat
//! `trials.csv` row that keeps every raw figure of a trial, or its failure.

use std::time::Instant;

use serde::Serialize;
use virtio::barrier::{BarrierKind, BarrierSite};

use super::guest::TrialGuest;
use super::hostload::{CpuTicks, CpuUse};
use super::netperf::{self, NetperfFigures};
use super::options::{Mode, TrialConfig};
use super::records::{CycleHistogram, DriverPath, StatsDelta, RECEIVE_QUEUE, TRANSMIT_QUEUE};
use super::E2eError;

/// Measurements of one successful trial.
#[derive(Clone, Debug)]
pub struct Measurement {
    /// netperf's figures.
    pub figures: NetperfFigures,
    /// Guest counters after the test minus before it.
    pub delta: StatsDelta,
    /// Host CPU use while netperf ran.
    pub host: CpuUse,
    /// Wall-clock seconds netperf ran.
    pub wall_seconds: f64,
    /// netperf's command line.
    pub netperf_command: String,
}

/// Runs one netperf test of `config` against `guest`, which must already
/// run in `config.mode`, and reads the guest's counters around it.
///
/// # Errors
/// [`E2eError::ModeNotApplied`] when a queue is in another mode, console
/// and netperf failures, and [`E2eError::Boot`] when the guest faulted or
/// exited.
pub fn measure(guest: &mut TrialGuest, config: &TrialConfig, seconds: u32) -> Result<Measurement, E2eError> {
    guest.check_running()?;
    let before = guest.stats()?;
    let receive = before.queue_modes.get(&RECEIVE_QUEUE).copied().unwrap_or(Mode::Weak);
    let transmit = before.queue_modes.get(&TRANSMIT_QUEUE).copied().unwrap_or(Mode::Weak);
    if receive != config.mode || transmit != config.mode {
        return Err(E2eError::ModeNotApplied { requested: config.mode, receive, transmit });
    }

    let (host, port) = guest.netperf_target();
    let arguments = netperf::arguments(host, port, config.test, config.sizes, seconds);
    let netperf_command = format!("netperf {}", arguments.join(" "));
    let ticks_before = CpuTicks::read();
    let started = Instant::now();
    let run = netperf::run(guest.command_prefix(), &arguments, seconds).map_err(E2eError::Netperf)?;
    let wall_seconds = started.elapsed().as_secs_f64();
    let ticks_after = CpuTicks::read();
    if !run.status.success() {
        guest.check_running()?;
        return Err(E2eError::NetperfFailed {
            status: run.status.to_string(),
            output: format!("{}{}", run.stdout, run.stderr),
        });
    }
    let figures = netperf::parse_output(&run.stdout).map_err(E2eError::NetperfOutput)?;

    let after = guest.stats()?;
    guest.check_running()?;
    let host = match (ticks_before, ticks_after) {
        (Some(before), Some(after)) => after.since(&before),
        _ => CpuUse::default(),
    };
    Ok(Measurement {
        figures,
        delta: after.since(&before),
        host,
        wall_seconds,
        netperf_command,
    })
}

/// Position of a trial in the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrialPosition {
    /// 1-based trial number in run order.
    pub trial: usize,
    /// 1-based round.
    pub round: u32,
    /// 1-based position within the round.
    pub position_in_round: usize,
}

/// Facts of the guest a trial ran on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuestFacts {
    /// Accelerator `run.sh` reported.
    pub accelerator: String,
    /// Kernel entry to listening, in microseconds.
    pub boot_us: Option<u64>,
}

/// One row of `trials.csv`. Figures of a failed trial are empty.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TrialRow {
    /// 1-based trial number in run order.
    pub trial: usize,
    /// 1-based round.
    pub round: u32,
    /// 1-based position within the round.
    pub position_in_round: usize,
    /// Barrier mode.
    pub mode: String,
    /// netperf test.
    pub test: String,
    /// Request bytes.
    pub request_bytes: u32,
    /// Response bytes.
    pub response_bytes: u32,
    /// `ok` or `failed`.
    pub status: String,
    /// Attempts made, 2 when the first failed.
    pub attempts: u32,
    /// Error of the last failed attempt.
    pub failure: String,
    /// `boot` or `runtime` mode switching.
    pub switch: String,
    /// `user` or `tap`.
    pub network: String,
    /// Accelerator run.sh reported for the guest.
    pub accelerator: String,
    /// The guest's boot time to listening, in microseconds.
    pub boot_us: Option<u64>,
    /// Transactions per second.
    pub transaction_rate: Option<f64>,
    /// Transactions in the test.
    pub transactions: Option<f64>,
    /// Mean round trip, microseconds.
    pub mean_latency_us: Option<f64>,
    /// Fastest round trip, microseconds.
    pub min_latency_us: Option<f64>,
    /// Slowest round trip, microseconds.
    pub max_latency_us: Option<f64>,
    /// Median round trip, microseconds.
    pub p50_latency_us: Option<f64>,
    /// 90th percentile round trip, microseconds.
    pub p90_latency_us: Option<f64>,
    /// 99th percentile round trip, microseconds.
    pub p99_latency_us: Option<f64>,
    /// Standard deviation of round trips, microseconds.
    pub stddev_latency_us: Option<f64>,
    /// Test length netperf measured, seconds.
    pub elapsed_seconds: Option<f64>,
    /// Guest CPU utilisation netperf reports, percent.
    pub remote_cpu_percent: Option<f64>,
    /// Wall-clock seconds netperf ran.
    pub wall_seconds: Option<f64>,
    /// Host CPU time stolen by the hypervisor while netperf ran, ms.
    pub host_steal_ms: Option<f64>,
    /// Stolen share of all host CPU time, per mille.
    pub host_steal_permille: Option<f64>,
    /// Busy share of all host CPU time, per mille.
    pub host_busy_permille: Option<f64>,
    /// Guest CPU busy share, per mille (estimate from the console).
    pub guest_busy_permille: Option<f64>,
    /// Receive queue chains made available.
    pub rx_adds: Option<u64>,
    /// Receive queue available buffer notifications.
    pub rx_kicks: Option<u64>,
    /// Receive queue notifications suppressed by the event index.
    pub rx_kicks_suppressed: Option<u64>,
    /// Receive queue used buffer notifications.
    pub rx_interrupts: Option<u64>,
    /// Receive queue used entries processed.
    pub rx_used: Option<u64>,
    /// Transmit queue chains made available.
    pub tx_adds: Option<u64>,
    /// Transmit queue available buffer notifications.
    pub tx_kicks: Option<u64>,
    /// Transmit queue notifications suppressed by the event index.
    pub tx_kicks_suppressed: Option<u64>,
    /// Transmit queue used buffer notifications.
    pub tx_interrupts: Option<u64>,
    /// Transmit queue used entries processed.
    pub tx_used: Option<u64>,
    /// Frames received by the guest.
    pub rx_frames: Option<u64>,
    /// Frames sent by the guest.
    pub tx_frames: Option<u64>,
    /// Read barriers executed weak.
    pub barriers_read_weak: Option<u64>,
    /// Read barriers executed strong.
    pub barriers_read_strong: Option<u64>,
    /// Write barriers executed weak.
    pub barriers_write_weak: Option<u64>,
    /// Write barriers executed strong.
    pub barriers_write_strong: Option<u64>,
    /// Full barriers executed weak.
    pub barriers_full_weak: Option<u64>,
    /// Full barriers executed strong.
    pub barriers_full_strong: Option<u64>,
    /// avail-publish barriers, weak.
    pub site_avail_publish_weak: Option<u64>,
    /// avail-publish barriers, strong.
    pub site_avail_publish_strong: Option<u64>,
    /// notify-check barriers, weak.
    pub site_notify_check_weak: Option<u64>,
    /// notify-check barriers, strong.
    pub site_notify_check_strong: Option<u64>,
    /// used-read barriers, weak.
    pub site_used_read_weak: Option<u64>,
    /// used-read barriers, strong.
    pub site_used_read_strong: Option<u64>,
    /// interrupt-enable barriers, weak.
    pub site_interrupt_enable_weak: Option<u64>,
    /// interrupt-enable barriers, strong.
    pub site_interrupt_enable_strong: Option<u64>,
    /// used-event-store barriers, weak.
    pub site_used_event_store_weak: Option<u64>,
    /// used-event-store barriers, strong.
    pub site_used_event_store_strong: Option<u64>,
    /// Barriers of every kind and mode per transaction.
    pub barriers_per_transaction: Option<f64>,
    /// Kicks plus interrupts of both queues per transaction.
    pub notifications_per_transaction: Option<f64>,
    /// Receive queue submit path samples in the trial's mode.
    pub rx_submit_count: Option<u64>,
    /// Receive queue submit path mean cycles.
    pub rx_submit_mean_cycles: Option<f64>,
    /// Receive queue complete path samples.
    pub rx_complete_count: Option<u64>,
    /// Receive queue complete path mean cycles.
    pub rx_complete_mean_cycles: Option<f64>,
    /// Transmit queue submit path samples.
    pub tx_submit_count: Option<u64>,
    /// Transmit queue submit path mean cycles.
    pub tx_submit_mean_cycles: Option<f64>,
    /// Transmit queue complete path samples.
    pub tx_complete_count: Option<u64>,
    /// Transmit queue complete path mean cycles.
    pub tx_complete_mean_cycles: Option<f64>,
    /// Receive submit log2 cycle buckets, `;`-separated.
    pub rx_submit_log2_buckets: String,
    /// Receive complete log2 cycle buckets.
    pub rx_complete_log2_buckets: String,
    /// Transmit submit log2 cycle buckets.
    pub tx_submit_log2_buckets: String,
    /// Transmit complete log2 cycle buckets.
    pub tx_complete_log2_buckets: String,
    /// netperf's command line.
    pub netperf_command: String,
}

impl TrialRow {
    /// Builds the row of a trial that did not produce a measurement.
    pub fn failed(position: TrialPosition, config: &TrialConfig, attempts: u32, error: &E2eError, labels: &RowLabels) -> TrialRow {
        let mut row = TrialRow::labelled(position, config, labels);
        row.status = "failed".to_string();
        row.attempts = attempts;
        // One line per cell keeps the CSV easy to read in a terminal.
        row.failure = error.to_string().replace('\n', " | ");
        row
    }

    /// Builds the row of a successful trial.
    pub fn measured(
        position: TrialPosition,
        config: &TrialConfig,
        attempts: u32,
        guest: &GuestFacts,
        measurement: &Measurement,
        labels: &RowLabels,
    ) -> TrialRow {
        let mut row = TrialRow::labelled(position, config, labels);
        row.status = "ok".to_string();
        row.attempts = attempts;
        row.accelerator = guest.accelerator.clone();
        row.boot_us = guest.boot_us;
        row.netperf_command = measurement.netperf_command.clone();
        row.wall_seconds = Some(measurement.wall_seconds);
        row.fill_netperf(&measurement.figures);
        row.fill_host(&measurement.host);
        row.fill_queues(&measurement.delta);
        row.fill_barriers(&measurement.delta, measurement.figures.transactions());
        row.fill_cycles(&measurement.delta, config.mode);
        row
    }

    /// Returns whether the trial produced a measurement.
    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }

    fn labelled(position: TrialPosition, config: &TrialConfig, labels: &RowLabels) -> TrialRow {
        TrialRow {
            trial: position.trial,
            round: position.round,
            position_in_round: position.position_in_round,
            mode: config.mode.name().to_string(),
            test: config.test.name().to_string(),
            request_bytes: config.sizes.request,
            response_bytes: config.sizes.response,
            switch: labels.switch.to_string(),
            network: labels.network.to_string(),
            ..TrialRow::default()
        }
    }

    fn fill_netperf(&mut self, figures: &NetperfFigures) {
        let finite = |value: f64| value.is_finite().then_some(value);
        self.transaction_rate = Some(figures.transaction_rate);
        self.transactions = Some(figures.transactions());
        self.mean_latency_us = Some(figures.mean_latency_us);
        self.min_latency_us = finite(figures.min_latency_us);
        self.max_latency_us = finite(figures.max_latency_us);
        self.p50_latency_us = finite(figures.p50_latency_us);
        self.p90_latency_us = finite(figures.p90_latency_us);
        self.p99_latency_us = finite(figures.p99_latency_us);
        self.stddev_latency_us = finite(figures.stddev_latency_us);
        self.elapsed_seconds = Some(figures.elapsed_seconds);
        self.remote_cpu_percent = finite(figures.remote_cpu_percent);
    }

    fn fill_host(&mut self, host: &CpuUse) {
        self.host_steal_ms = Some(host.steal_ms);
        self.host_steal_permille = Some(host.steal_permille);
        self.host_busy_permille = Some(host.busy_permille);
    }

    fn fill_queues(&mut self, delta: &StatsDelta) {
        self.guest_busy_permille = delta.cpu_busy_permille;
        self.rx_adds = Some(delta.receive.adds);
        self.rx_kicks = Some(delta.receive.kicks);
        self.rx_kicks_suppressed = Some(delta.receive.kicks_suppressed);
        self.rx_interrupts = Some(delta.receive.interrupts);
        self.rx_used = Some(delta.receive.used);
        self.tx_adds = Some(delta.transmit.adds);
        self.tx_kicks = Some(delta.transmit.kicks);
        self.tx_kicks_suppressed = Some(delta.transmit.kicks_suppressed);
        self.tx_interrupts = Some(delta.transmit.interrupts);
        self.tx_used = Some(delta.transmit.used);
        self.rx_frames = Some(delta.rx_frames);
        self.tx_frames = Some(delta.tx_frames);
    }

    fn fill_barriers(&mut self, delta: &StatsDelta, transactions: f64) {
        let kind = |kind: BarrierKind, mode: Mode| Some(delta.barriers_of_kind(kind, mode));
        self.barriers_read_weak = kind(BarrierKind::Read, Mode::Weak);
        self.barriers_read_strong = kind(BarrierKind::Read, Mode::Strong);
        self.barriers_write_weak = kind(BarrierKind::Write, Mode::Weak);
        self.barriers_write_strong = kind(BarrierKind::Write, Mode::Strong);
        self.barriers_full_weak = kind(BarrierKind::Full, Mode::Weak);
        self.barriers_full_strong = kind(BarrierKind::Full, Mode::Strong);

        let site = |site: BarrierSite, mode: Mode| Some(delta.site_barriers(site, mode));
        self.site_avail_publish_weak = site(BarrierSite::AvailPublish, Mode::Weak);
        self.site_avail_publish_strong = site(BarrierSite::AvailPublish, Mode::Strong);
        self.site_notify_check_weak = site(BarrierSite::NotifyCheck, Mode::Weak);
        self.site_notify_check_strong = site(BarrierSite::NotifyCheck, Mode::Strong);
        self.site_used_read_weak = site(BarrierSite::UsedRead, Mode::Weak);
        self.site_used_read_strong = site(BarrierSite::UsedRead, Mode::Strong);
        self.site_interrupt_enable_weak = site(BarrierSite::InterruptEnable, Mode::Weak);
        self.site_interrupt_enable_strong = site(BarrierSite::InterruptEnable, Mode::Strong);
        self.site_used_event_store_weak = site(BarrierSite::UsedEventStore, Mode::Weak);
        self.site_used_event_store_strong = site(BarrierSite::UsedEventStore, Mode::Strong);

        if transactions > 0.0 {
            let barriers: u64 = Mode::ALL.into_iter().map(|mode| delta.barriers_in_mode(mode)).sum();
            self.barriers_per_transaction = Some(barriers as f64 / transactions);
            self.notifications_per_transaction = Some(delta.notifications() as f64 / transactions);
        }
    }

    fn fill_cycles(&mut self, delta: &StatsDelta, mode: Mode) {
        let histogram = |queue, path| delta.histogram(queue, path, mode);
        let summary = |histogram: &CycleHistogram| (Some(histogram.count), histogram.mean_cycles(), histogram.buckets_text());
        (self.rx_submit_count, self.rx_submit_mean_cycles, self.rx_submit_log2_buckets) =
            summary(&histogram(RECEIVE_QUEUE, DriverPath::Submit));
        (self.rx_complete_count, self.rx_complete_mean_cycles, self.rx_complete_log2_buckets) =
            summary(&histogram(RECEIVE_QUEUE, DriverPath::Complete));
        (self.tx_submit_count, self.tx_submit_mean_cycles, self.tx_submit_log2_buckets) =
            summary(&histogram(TRANSMIT_QUEUE, DriverPath::Submit));
        (self.tx_complete_count, self.tx_complete_mean_cycles, self.tx_complete_log2_buckets) =
            summary(&histogram(TRANSMIT_QUEUE, DriverPath::Complete));
    }
}

/// Labels that every row of a run shares.
#[derive(Clone, Debug)]
pub struct RowLabels {
    /// `boot` or `runtime`.
    pub switch: &'static str,
    /// `user` or `tap`.
    pub network: &'static str,
}
