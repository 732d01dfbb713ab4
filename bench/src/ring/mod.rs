//! `bench ring`: a split virtqueue ping-pong between two pinned cores, with
//! the kernel's driver on one side, and per-site barrier attribution.
//!
//! A run measures every configuration (device implementation × event idx ×
//! barrier setting) once per round, in an order shuffled per round with a
//! printed seed, so that drift of a noisy host spreads over all
//! configurations. Each trial builds a fresh queue in fresh guest memory.
//!
//! - [`options`]: command line and validation.
//! - [`config`]: what a trial runs.
//! - [`memory`]: `vm-memory` guest memory and the driver's DMA allocator.
//! - [`signals`]: doorbell and interrupt stand-ins.
//! - [`driver`], [`device`], [`model_device`], [`vmm_device`]: the two
//!   sides of the ring.
//! - [`trial`]: one trial on two cores.
//! - [`microbench`]: ticks per barrier of the barrier module.
//! - [`record`], [`analysis`], [`output`]: per-trial rows, statistics and
//!   the output files.

pub mod analysis;
pub mod config;
pub mod device;
pub mod driver;
pub mod memory;
pub mod microbench;
pub mod model_device;
pub mod options;
pub mod output;
pub mod record;
pub mod signals;
pub mod trial;
pub mod vmm_device;

use std::collections::BTreeMap;
use std::fmt;
use std::thread;
use std::time::SystemTime;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use virtio::queue::QueueError;

use self::analysis::{analyse, Analysis};
use self::config::TrialShape;
use self::device::DeviceFault;
use self::microbench::{measure_barriers, MicrobenchRow};
use self::options::{utc_timestamp, RingArgs, RingPlan};
use self::output::{write_outputs, OutputFiles, RunFacts};
use self::record::{TrialPosition, TrialRow};
use self::trial::run_trial;
use crate::host::{self, CpuModel};
use crate::report::{create_directory, ReportError};
use crate::stats::LogHistogram;
use crate::tsc::TscFrequency;

/// Samples per row of the barrier microbenchmark.
const MICROBENCH_SAMPLES: usize = 2_000;

/// Failure of a `bench ring` run.
#[derive(Debug)]
pub enum RingError {
    /// A command-line value breaks a rule.
    InvalidOption {
        /// The option.
        option: &'static str,
        /// The value given.
        value: String,
        /// The rule and what to do.
        reason: String,
    },
    /// `--unsafe-ablation` or a `none` site in a binary built without the
    /// `ablation` feature.
    AblationUnavailable,
    /// The process may use fewer than two cores.
    NotEnoughCores {
        /// Cores it may use.
        allowed: Vec<usize>,
    },
    /// The kernel rejected pinning a thread.
    PinningFailed {
        /// The requested core.
        core: usize,
    },
    /// `vm-memory` could not map the guest memory region.
    GuestMemory {
        /// Requested size.
        size_bytes: usize,
        /// Error text `vm-memory` reported.
        message: String,
    },
    /// The guest memory region had no room for the buffers.
    GuestMemoryFull {
        /// Bytes allocated before the failure.
        allocated_bytes: usize,
    },
    /// The split queue reported an error.
    Queue(QueueError),
    /// The device stopped on a fault.
    Device(DeviceFault),
    /// The device thread stopped while the driver waited. Its own error
    /// explains why.
    DeviceStopped,
    /// No used buffer notification arrived within the stall timeout.
    Stall {
        /// Round trip, counting warm-up ones from 0.
        round_trip: u64,
        /// State of the rings at the stall.
        diagnosis: String,
        /// Avail idx the device can see.
        published_avail_idx: u16,
        /// Used idx in the device area.
        used_idx: u16,
        /// Next used entry the driver will read.
        last_used_idx: u16,
        /// Avail idx the sleeping device waits beyond, if it sleeps.
        device_sleeping_at: Option<u16>,
    },
    /// A used chain came back wrong.
    WrongCompletion {
        /// Sequence number (token) of the chain.
        sequence: u64,
        /// Description of the fault.
        problem: String,
    },
    /// A trial thread panicked.
    ThreadPanicked {
        /// "driver" or "device".
        role: &'static str,
    },
    /// Writing the output failed.
    Report(ReportError),
}

impl fmt::Display for RingError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingError::InvalidOption { option, value, reason } => {
                write!(formatter, "invalid {option} value {value:?}: {reason}")
            }
            RingError::AblationUnavailable => formatter.write_str(
                "this binary was built without barrier ablation; rebuild with \
                 `cargo run --release -p bench --features ablation -- ring ...`",
            ),
            RingError::NotEnoughCores { allowed } => write!(
                formatter,
                "the driver and the device need two cores, but this process may only use {allowed:?}"
            ),
            RingError::PinningFailed { core } => write!(formatter, "pinning a thread to core {core} failed"),
            RingError::GuestMemory { size_bytes, message } => {
                write!(formatter, "mapping {size_bytes:#x} bytes of guest memory failed: {message}")
            }
            RingError::GuestMemoryFull { allocated_bytes } => write!(
                formatter,
                "guest memory ran out after {allocated_bytes:#x} bytes of rings and buffers"
            ),
            RingError::Queue(error) => write!(formatter, "split queue: {error}"),
            RingError::Device(fault) => write!(formatter, "device: {fault}"),
            RingError::DeviceStopped => formatter.write_str("the device thread stopped while the driver waited"),
            RingError::Stall {
                round_trip,
                diagnosis,
                published_avail_idx,
                used_idx,
                last_used_idx,
                device_sleeping_at,
            } => write!(
                formatter,
                "round trip {round_trip} stalled: {diagnosis} (published avail idx {published_avail_idx:#x}, \
                 used idx {used_idx:#x}, driver's last used idx {last_used_idx:#x}, device sleeping at \
                 avail idx {device_sleeping_at:x?})"
            ),
            RingError::WrongCompletion { sequence, problem } => {
                write!(formatter, "chain with sequence number {sequence} came back wrong: {problem}")
            }
            RingError::ThreadPanicked { role } => write!(formatter, "the {role} thread panicked"),
            RingError::Report(error) => write!(formatter, "{error}"),
        }
    }
}

impl std::error::Error for RingError {}

impl From<ReportError> for RingError {
    fn from(error: ReportError) -> Self {
        RingError::Report(error)
    }
}

/// Results of a completed run.
#[derive(Debug)]
pub struct RingRun {
    /// The validated plan.
    pub plan: RingPlan,
    /// One row per trial, in run order.
    pub rows: Vec<TrialRow>,
    /// Statistics over the trials.
    pub analysis: Analysis,
    /// The files written.
    pub files: OutputFiles,
}

/// Runs `bench ring` with `args` and writes its output files.
/// `command_line` goes into the report.
/// Progress goes to stderr.
///
/// # Errors
/// The first [`RingError`]. Outside ablation runs, any fault is one.
pub fn run(args: &RingArgs, command_line: &str) -> Result<RingRun, RingError> {
    let plan = RingPlan::from_args(args)?;
    create_directory(&plan.out)?;
    let started_utc = utc_timestamp(SystemTime::now());
    eprintln!(
        "bench ring: {} configurations x {} rounds, seed {}, driver core {}, device core {}, output {}",
        plan.configs.len(),
        plan.rounds,
        plan.seed,
        plan.cores.driver,
        plan.cores.device,
        plan.out.display()
    );

    let load_before = host::load_average();
    let frequency = TscFrequency::measure();
    let microbench = run_microbench(plan.cores.driver)?;

    let mut generator = ChaCha8Rng::seed_from_u64(plan.seed);
    let mut rows = Vec::new();
    let mut histograms: BTreeMap<String, LogHistogram> = BTreeMap::new();
    let mut round_orders = Vec::new();
    for round in 1..=plan.rounds {
        let mut order: Vec<usize> = (0..plan.configs.len()).collect();
        order.shuffle(&mut generator);
        eprintln!("round {round}/{}: order {order:?}", plan.rounds);
        for (position, &index) in order.iter().enumerate() {
            let config = &plan.configs[index];
            let shape = TrialShape {
                tolerate_faults: config.barriers.has_ablated_site(),
                ..plan.shape
            };
            let result = run_trial(config, &shape, plan.cores, &frequency)?;
            let histogram = histograms.entry(config.label()).or_default();
            let trial_position = TrialPosition {
                trial: rows.len() + 1,
                round,
                position_in_round: position + 1,
            };
            let row = TrialRow::from_trial(result, trial_position, &frequency, histogram);
            eprintln!(
                "  trial {:3}: {:48} p50 {:7.0} ticks ({:6.0} ns), faults {}, steal {:.0} ms, preemptions {}",
                row.trial,
                row.config,
                row.latency_p50_ticks,
                row.latency_p50_ns,
                row.fault_total(),
                row.steal_ms,
                row.preemptions
            );
            rows.push(row);
        }
        round_orders.push(order);
    }

    let analysis = analyse(&plan.configs, &rows, &histograms, &microbench, plan.seed);
    let facts = RunFacts {
        command_line: command_line.to_string(),
        started_utc,
        cpu: CpuModel::read(),
        kernel: host::kernel_release(),
        frequency,
        round_orders,
        load_averages: (load_before, host::load_average()),
    };
    let files = write_outputs(&plan, &facts, &rows, &histograms, &microbench, &analysis)?;
    eprintln!("bench ring: report in {}", files.report.display());
    Ok(RingRun {
        plan,
        rows,
        analysis,
        files,
    })
}

/// Runs the barrier microbenchmark on a thread pinned to `core`.
fn run_microbench(core: usize) -> Result<Vec<MicrobenchRow>, RingError> {
    thread::scope(|scope| {
        scope
            .spawn(|| {
                if !host::pin_current_thread(core) {
                    return Err(RingError::PinningFailed { core });
                }
                Ok(measure_barriers(MICROBENCH_SAMPLES))
            })
            .join()
            .unwrap_or(Err(RingError::ThreadPanicked { role: "microbenchmark" }))
    })
}
