//! `bench run`: weak against strong virtqueue barriers end to end, with
//! the unmodified host netperf client against the unikernel under QEMU.
//!
//! A run measures every (mode, test, message sizes) combination once per
//! round, in an order shuffled per round with a printed seed, so that drift
//! of a noisy host spreads over both modes. By default each trial boots a
//! fresh guest with `barriers=MODE`; `--switch runtime` boots once per
//! round and switches with the console's `barriers` command. Around each
//! netperf test the harness reads the guest's counters and cycle histograms
//! from the console and the host's CPU and steal time from `/proc/stat`.
//! A trial that fails is retried once on a fresh boot, then recorded as
//! failed.
//!
//! - [`options`]: command line and validation.
//! - [`guest`]: booting `run.sh` and the console.
//! - [`network`] and [`cleanup`]: the tap namespace, and what Ctrl-C
//!   removes.
//! - [`records`]: the console's `key=value` records.
//! - [`netperf`]: netperf's command line and `-o` output.
//! - [`hostload`]: host CPU and steal time.
//! - [`trial`]: one trial and its `trials.csv` row.
//! - [`analysis`] and [`output`]: statistics and the output files.

pub mod analysis;
pub mod cleanup;
pub mod guest;
pub mod hostload;
pub mod netperf;
pub mod network;
pub mod options;
pub mod output;
pub mod records;
pub mod trial;

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime};

use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use ::tests::guest::kernel_image;
use ::tests::netperf::{netperf_binary, NetperfError};

use self::analysis::{analyse, Analysis, TrialOutcome};
use self::guest::{GuestNetwork, GuestSetup, TrialGuest};
use self::netperf::NetperfParseError;
use self::network::TapNetwork;
use self::options::{Accelerator, Mode, NetworkKind, RunArgs, RunPlan, SwitchPoint, TrialConfig};
use self::output::{terminal_summary, write_outputs, OutputFiles, RunFacts};
use self::records::{BarrierBenchLine, RecordError};
use self::trial::{measure, GuestFacts, Measurement, RowLabels, TrialPosition, TrialRow};
use crate::host::{self, CpuModel};
use crate::report::{create_directory, ReportError};
use crate::ring::options::utc_timestamp;

/// Attempts per trial: the first, and one retry on a fresh boot.
const MAX_ATTEMPTS: u32 = 2;

/// Failure of a `bench run` run or of one trial.
#[derive(Debug)]
pub enum E2eError {
    /// A command-line value breaks a rule.
    InvalidOption {
        /// The option.
        option: &'static str,
        /// The value given.
        value: String,
        /// The rule and what to do.
        reason: String,
    },
    /// netperf is missing, could not start, or timed out.
    Netperf(NetperfError),
    /// netperf exited with an error status.
    NetperfFailed {
        /// Exit status.
        status: String,
        /// Output it printed.
        output: String,
    },
    /// netperf's output lacked a figure.
    NetperfOutput(NetperfParseError),
    /// The kernel image `./run.sh build` writes does not exist.
    KernelImageMissing {
        /// Expected path.
        path: PathBuf,
    },
    /// A guest did not come up, faulted or exited.
    Boot {
        /// Description of the failure.
        problem: String,
        /// The end of the guest's output.
        output: String,
    },
    /// A console command failed or timed out.
    Console {
        /// The command.
        command: String,
        /// The socket's error.
        message: String,
    },
    /// A console output lacked a record or field.
    Record {
        /// The command.
        command: &'static str,
        /// Description of the missing piece.
        source: RecordError,
    },
    /// A queue did not run in the trial's mode.
    ModeNotApplied {
        /// The trial's mode.
        requested: Mode,
        /// Receive queue mode.
        receive: Mode,
        /// Transmit queue mode.
        transmit: Mode,
    },
    /// `--net tap` without root.
    TapNeedsRoot,
    /// An `ip` command of the tap setup failed.
    TapSetup {
        /// The command.
        command: String,
        /// Its error output.
        message: String,
    },
    /// Writing the output failed.
    Report(ReportError),
}

impl E2eError {
    /// Process exit status for this error: 2 for invalid options, as for
    /// command-line errors the argument parser reports, else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            E2eError::InvalidOption { .. } => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for E2eError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            E2eError::InvalidOption { option, value, reason } => {
                write!(formatter, "invalid {option} value {value:?}: {reason}")
            }
            E2eError::Netperf(error) => write!(formatter, "{error}"),
            E2eError::NetperfFailed { status, output } => write!(formatter, "netperf failed ({status}):\n{output}"),
            E2eError::NetperfOutput(error) => write!(formatter, "{error}"),
            E2eError::KernelImageMissing { path } => {
                write!(formatter, "kernel image {} not found: run ./run.sh build first", path.display())
            }
            E2eError::Boot { problem, output } => write!(formatter, "guest failed: {problem}; its output ends:\n{output}"),
            E2eError::Console { command, message } => write!(formatter, "console command '{command}' failed: {message}"),
            E2eError::Record { command, source } => write!(formatter, "console command '{command}': {source}"),
            E2eError::ModeNotApplied { requested, receive, transmit } => write!(
                formatter,
                "the guest runs receive={receive} transmit={transmit} barriers instead of {requested} \
                 (VIRTIO_F_ORDER_PLATFORM forces strong barriers)"
            ),
            E2eError::TapNeedsRoot => formatter.write_str(
                "--net tap creates a network namespace and a tap device, which needs root; run as root or use --net user",
            ),
            E2eError::TapSetup { command, message } => write!(formatter, "`{command}` failed: {message}"),
            E2eError::Report(error) => write!(formatter, "{error}"),
        }
    }
}

impl std::error::Error for E2eError {}

impl E2eRun {
    /// Trials recorded as failed.
    pub fn failed_trials(&self) -> usize {
        self.outcomes.iter().filter(|outcome| !outcome.row.is_ok()).count()
    }
}

impl From<ReportError> for E2eError {
    fn from(error: ReportError) -> Self {
        E2eError::Report(error)
    }
}

/// Results of a completed run.
#[derive(Debug)]
pub struct E2eRun {
    /// The validated plan.
    pub plan: RunPlan,
    /// Every trial in run order, failed ones included.
    pub outcomes: Vec<TrialOutcome>,
    /// Statistics.
    pub analysis: Analysis,
    /// Files written.
    pub files: OutputFiles,
}

/// The accelerator to pass to `run.sh`, and a warning when the request
/// could not be met.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceleratorChoice {
    /// `run.sh --accel`, or `None` for run.sh's own choice.
    pub flag: Option<Accelerator>,
    /// Set when KVM was requested but is not usable.
    pub warning: Option<String>,
}

/// Resolves `--accel`: a KVM request on a host without usable KVM becomes
/// TCG with a warning.
pub fn choose_accelerator(requested: Option<Accelerator>) -> AcceleratorChoice {
    match requested {
        Some(Accelerator::Kvm) => match kvm_unusable_reason() {
            Some(reason) => AcceleratorChoice {
                flag: Some(Accelerator::Tcg),
                warning: Some(format!("KVM was requested but is not usable ({reason}); the guests ran under TCG")),
            },
            None => AcceleratorChoice { flag: Some(Accelerator::Kvm), warning: None },
        },
        other => AcceleratorChoice { flag: other, warning: None },
    }
}

/// Why this host has no usable KVM, by the rules run.sh applies, or `None`
/// when it has.
pub fn kvm_unusable_reason() -> Option<String> {
    if std::path::Path::new("/sys/module/kvm_pvm").exists() {
        return Some("/dev/kvm is kvm_pvm, a paravirtual KVM that emulates kernel-mode code".to_string());
    }
    if !std::path::Path::new("/dev/kvm").exists() {
        return Some("/dev/kvm does not exist".to_string());
    }
    let path = c"/dev/kvm";
    // SAFETY: `path` is a NUL-terminated string that outlives the call;
    // access only checks permissions.
    let accessible = unsafe { libc::access(path.as_ptr(), libc::R_OK | libc::W_OK) } == 0;
    (!accessible).then(|| "/dev/kvm is not readable and writable by this user".to_string())
}

/// Runs `bench run` with `args` and writes its output files.
/// `command_line` goes into the report. Progress goes to stderr.
///
/// # Errors
/// Invalid options, missing netperf or kernel image, tap setup, and output
/// errors. Trial failures are recorded in `trials.csv`, not returned.
pub fn run(args: &RunArgs, command_line: &str) -> Result<E2eRun, E2eError> {
    let plan = RunPlan::from_args(args)?;
    netperf_binary().map_err(E2eError::Netperf)?;
    let image = kernel_image();
    if !image.is_file() {
        return Err(E2eError::KernelImageMissing { path: image });
    }
    let accelerator = choose_accelerator(plan.requested_accelerator);
    if let Some(warning) = &accelerator.warning {
        eprintln!("bench run: warning: {warning}");
    }
    if let Err(message) = cleanup::install_interrupt_handler() {
        eprintln!("bench run: warning: no Ctrl-C handler ({message}); an interrupted run may leave guests running");
    }
    let tap = match plan.network {
        NetworkKind::Tap => Some(TapNetwork::create()?),
        NetworkKind::User => None,
    };
    create_directory(&plan.out)?;
    let started_utc = utc_timestamp(SystemTime::now());
    eprintln!(
        "bench run: {} combinations x {} rounds = {} trials of {} s, seed {}, output {}",
        plan.configs.len(),
        plan.rounds,
        plan.trial_count(),
        plan.duration_seconds,
        plan.seed,
        plan.out.display()
    );

    let load_before = host::load_average();
    let network = match &tap {
        Some(tap) => GuestNetwork::Tap(tap),
        None => GuestNetwork::User,
    };
    let mut runner = Runner::new(&plan, network, accelerator.flag);
    let mut generator = ChaCha8Rng::seed_from_u64(plan.seed);
    let mut round_orders = Vec::new();
    for round in 1..=plan.rounds {
        let mut order = plan.configs.clone();
        order.shuffle(&mut generator);
        round_orders.push(order.iter().map(|config| format!("{} {}", config.workload(), config.mode)).collect());
        runner.run_round(round, &order);
    }
    runner.progress.finish_and_clear();

    let analysis = analyse(&plan.workloads(), &plan.modes, &runner.outcomes, &runner.barrier_bench, plan.seed);
    let accelerators = if runner.accelerators.is_empty() {
        accelerator.flag.map_or("run.sh's choice (no guest came up)".to_string(), |flag| flag.name().to_string())
    } else {
        runner.accelerators.iter().cloned().collect::<Vec<_>>().join(",")
    };
    let facts = RunFacts {
        command_line: command_line.to_string(),
        started_utc,
        cpu: CpuModel::read(),
        kernel: host::kernel_release(),
        accelerators,
        accelerator_warning: accelerator.warning,
        netperf_version: netperf_version(),
        load_averages: (load_before, host::load_average()),
        round_orders,
    };
    let files = write_outputs(&plan, &facts, &runner.outcomes, &runner.barrier_bench, &analysis)?;
    print!("{}", terminal_summary(&analysis));
    eprintln!("bench run: report in {}", files.report.display());
    let outcomes = runner.outcomes;
    drop(tap);
    Ok(E2eRun { plan, outcomes, analysis, files })
}

/// The trial loop's state.
struct Runner<'a> {
    plan: &'a RunPlan,
    network: GuestNetwork<'a>,
    accelerator: Option<Accelerator>,
    labels: RowLabels,
    progress: ProgressBar,
    outcomes: Vec<TrialOutcome>,
    barrier_bench: Vec<BarrierBenchLine>,
    accelerators: BTreeSet<String>,
}

impl<'a> Runner<'a> {
    fn new(plan: &'a RunPlan, network: GuestNetwork<'a>, accelerator: Option<Accelerator>) -> Self {
        let progress = ProgressBar::new(plan.trial_count() as u64);
        progress.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} trials, eta {eta} {msg}")
                .expect("the progress template is valid")
                .progress_chars("=> "),
        );
        progress.enable_steady_tick(Duration::from_millis(500));
        let labels = RowLabels {
            switch: match plan.switch {
                SwitchPoint::Boot => "boot",
                SwitchPoint::Runtime => "runtime",
            },
            network: match plan.network {
                NetworkKind::User => "user",
                NetworkKind::Tap => "tap",
            },
        };
        Runner {
            plan,
            network,
            accelerator,
            labels,
            progress,
            outcomes: Vec::new(),
            barrier_bench: Vec::new(),
            accelerators: BTreeSet::new(),
        }
    }

    /// Runs one round's trials in `order`, then the barrier microbenchmark
    /// on the last guest.
    fn run_round(&mut self, round: u32, order: &[TrialConfig]) {
        let mut guest: Option<TrialGuest> = None;
        for (index, config) in order.iter().enumerate() {
            let position = TrialPosition {
                trial: self.outcomes.len() + 1,
                round,
                position_in_round: index + 1,
            };
            self.progress
                .set_message(format!("round {round}/{}: {} {}", self.plan.rounds, config.workload(), config.mode));
            let outcome = self.run_trial(&mut guest, position, config);
            self.report_trial(&outcome);
            self.outcomes.push(outcome);
            self.progress.inc(1);
        }
        if let Some(guest) = guest.as_mut() {
            match guest.barrier_bench(self.plan.barrier_bench_iterations) {
                Ok(lines) => self.barrier_bench.extend(lines),
                Err(error) => self.progress.suspend(|| {
                    eprintln!("bench run: barrier-bench in round {round} failed: {error}");
                }),
            }
        }
    }

    /// Runs a trial with up to [`MAX_ATTEMPTS`] attempts. `guest` is the
    /// round's guest under `--switch runtime`; a failed attempt drops it so
    /// that the retry boots afresh.
    fn run_trial(&mut self, guest: &mut Option<TrialGuest>, position: TrialPosition, config: &TrialConfig) -> TrialOutcome {
        let mut last_error = None;
        for attempt in 1..=MAX_ATTEMPTS {
            if self.plan.switch == SwitchPoint::Boot {
                // Dropping the previous guest first frees its host core.
                *guest = None;
            }
            match self.attempt(guest, config) {
                Ok((facts, measurement)) => {
                    let row = TrialRow::measured(position, config, attempt, &facts, &measurement, &self.labels);
                    return TrialOutcome { config: *config, row, delta: Some(measurement.delta) };
                }
                Err(error) => {
                    self.progress.suspend(|| {
                        eprintln!(
                            "bench run: trial {} ({} {}) attempt {attempt}/{MAX_ATTEMPTS} failed: {error}",
                            position.trial,
                            config.workload(),
                            config.mode
                        );
                    });
                    *guest = None;
                    last_error = Some(error);
                }
            }
        }
        let error = last_error.expect("every attempt failed, so an error was kept");
        let row = TrialRow::failed(position, config, MAX_ATTEMPTS, &error, &self.labels);
        TrialOutcome { config: *config, row, delta: None }
    }

    fn attempt(&mut self, slot: &mut Option<TrialGuest>, config: &TrialConfig) -> Result<(GuestFacts, Measurement), E2eError> {
        if slot.is_none() {
            let setup = GuestSetup {
                append: self.plan.kernel_command_line(config.mode),
                accelerator: self.accelerator,
                network: self.network,
            };
            let booted = TrialGuest::boot(&setup)?;
            self.accelerators.insert(booted.accelerator().to_string());
            *slot = Some(booted);
        }
        let guest = slot.as_mut().expect("a guest was booted above");
        if self.plan.switch == SwitchPoint::Runtime {
            guest.switch_barriers(config.mode)?;
        }
        let facts = GuestFacts {
            accelerator: guest.accelerator().to_string(),
            boot_us: guest.boot_us(),
        };
        let measurement = measure(guest, config, self.plan.duration_seconds)?;
        Ok((facts, measurement))
    }

    fn report_trial(&self, outcome: &TrialOutcome) {
        let row = &outcome.row;
        let line = if row.is_ok() {
            format!(
                "trial {:3} round {:2} {:<16} {:<6}: {:8.0} trans/s, mean {:7.1} us, p99 {:6.0} us, steal {:5.0} ms",
                row.trial,
                row.round,
                outcome.config.workload().to_string(),
                row.mode,
                row.transaction_rate.unwrap_or(f64::NAN),
                row.mean_latency_us.unwrap_or(f64::NAN),
                row.p99_latency_us.unwrap_or(f64::NAN),
                row.host_steal_ms.unwrap_or(f64::NAN),
            )
        } else {
            format!(
                "trial {:3} round {:2} {:<16} {:<6}: FAILED after {} attempts",
                row.trial,
                row.round,
                outcome.config.workload().to_string(),
                row.mode,
                row.attempts
            )
        };
        self.progress.suspend(|| eprintln!("{line}"));
    }
}

/// netperf's `-V` line, or what went wrong.
fn netperf_version() -> String {
    let Ok(path) = netperf_binary() else {
        return "not found".to_string();
    };
    match Command::new(&path).arg("-V").output() {
        Ok(output) => String::from_utf8_lossy(&output.stdout).trim().to_string(),
        Err(error) => format!("`{} -V` failed: {error}", path.display()),
    }
}
