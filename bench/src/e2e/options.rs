//! Command-line options of `bench run` and their validation into a plan:
//! which (mode, test, message sizes) combinations a round runs, how long
//! each netperf test lasts, and how guests are booted and networked.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, ValueEnum};
use serde::Serialize;

use super::E2eError;
use crate::ring::options::utc_timestamp;

/// Barrier mode of the guest's virtqueues (the kernel's `barriers=` option
/// and the console's `barriers` command).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// SMP barriers: compiler barriers, a locked add and `xchg`.
    Weak,
    /// Mandatory barriers: `lfence`, `sfence` and `mfence`.
    Strong,
}

impl Mode {
    /// Both modes, weak (the baseline of every comparison) first.
    pub const ALL: [Mode; 2] = [Mode::Weak, Mode::Strong];

    /// Name on the kernel command line and the console.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Weak => "weak",
            Mode::Strong => "strong",
        }
    }

    /// Looks a mode up by its console name.
    pub fn from_name(name: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|mode| mode.name() == name)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// A netperf request/response test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum, Serialize)]
pub enum NetperfTest {
    /// One TCP connection, one request and one response per transaction.
    #[value(name = "TCP_RR")]
    #[serde(rename = "TCP_RR")]
    TcpRr,
    /// UDP datagrams, one request and one response per transaction.
    #[value(name = "UDP_RR")]
    #[serde(rename = "UDP_RR")]
    UdpRr,
}

impl NetperfTest {
    /// Name as netperf's `-t` takes it.
    pub fn name(self) -> &'static str {
        match self {
            NetperfTest::TcpRr => "TCP_RR",
            NetperfTest::UdpRr => "UDP_RR",
        }
    }
}

impl fmt::Display for NetperfTest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// Network path from the host to the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum NetworkKind {
    /// QEMU user-mode networking with ports forwarded on 127.0.0.1.
    User,
    /// A tap device in a network namespace that the run creates and
    /// deletes; needs root.
    Tap,
}

/// QEMU accelerator, as `run.sh --accel` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Accelerator {
    /// Hardware virtualisation through /dev/kvm.
    Kvm,
    /// QEMU's binary translator.
    Tcg,
}

impl Accelerator {
    /// Name as `run.sh --accel` and QEMU's `-accel` take it.
    pub fn name(self) -> &'static str {
        match self {
            Accelerator::Kvm => "kvm",
            Accelerator::Tcg => "tcg",
        }
    }
}

/// When the barrier mode changes between trials.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SwitchPoint {
    /// Every trial boots a fresh guest with `barriers=MODE`.
    Boot,
    /// One boot per round; the console's `barriers MODE` switches before
    /// each trial.
    Runtime,
}

/// The guest's wait for work (the kernel's `mode=` option).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WaitMode {
    /// Sleep until an interrupt.
    Irq,
    /// Spin on the used rings.
    Poll,
}

impl WaitMode {
    /// Name on the kernel command line.
    pub fn name(self) -> &'static str {
        match self {
            WaitMode::Irq => "irq",
            WaitMode::Poll => "poll",
        }
    }
}

/// Options of `bench run`.
#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    /// Barrier modes to compare, comma-separated
    #[arg(long, value_enum, value_delimiter = ',', default_value = "weak,strong")]
    pub modes: Vec<Mode>,

    /// netperf tests, comma-separated
    #[arg(long, value_enum, value_delimiter = ',', default_value = "TCP_RR,UDP_RR", ignore_case = true)]
    pub tests: Vec<NetperfTest>,

    /// Request and response sizes in bytes, as REQUEST,RESPONSE pairs
    /// separated by colons, such as 1,1:64,64:1024,1024
    #[arg(long, default_value = "1,1", value_name = "REQ,RESP[:REQ,RESP...]")]
    pub sizes: String,

    /// Rounds. Each round runs every (mode, test, sizes) combination once, in
    /// a shuffled order
    #[arg(long, default_value_t = 10)]
    pub rounds: u32,

    /// Length of each netperf test in seconds (netperf's -l)
    #[arg(long, default_value_t = 5)]
    pub duration: u32,

    /// Network between host and guest: user (QEMU user networking on
    /// 127.0.0.1) or tap (a tap device in a network namespace that the run
    /// creates, which needs root)
    #[arg(long, value_enum, default_value = "user")]
    pub net: NetworkKind,

    /// Accelerator [default: the one run.sh picks]. A request for kvm on a
    /// host without usable KVM falls back to tcg with a warning
    #[arg(long, value_enum)]
    pub accel: Option<Accelerator>,

    /// boot: a fresh guest per trial, booted in the trial's mode; runtime:
    /// one guest per round, switched with the console's barriers command
    #[arg(long = "switch", value_enum, default_value = "boot")]
    pub switch: SwitchPoint,

    /// The guest's wait for work: irq (halt until an interrupt) or poll
    #[arg(long, value_enum, default_value = "irq")]
    pub wait_mode: WaitMode,

    /// Extra kernel command-line options for every guest, such as log=warn
    #[arg(long, default_value = "", value_name = "'KEY=VALUE ...'")]
    pub append: String,

    /// Iterations of the in-guest barrier microbenchmark, run once per round
    #[arg(long, default_value_t = 20_000)]
    pub barrier_bench_iterations: u32,

    /// Seed of the trial order and of the bootstrap [default: from the
    /// clock, printed and recorded in the report]
    #[arg(long)]
    pub seed: Option<u64>,

    /// Output directory [default: bench-out/run-<UTC timestamp>]
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Request and response sizes of one netperf test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageSizes {
    /// Request bytes.
    pub request: u32,
    /// Response bytes.
    pub response: u32,
}

impl MessageSizes {
    /// Formats the sizes as netperf's `-r` takes them.
    pub fn netperf_argument(self) -> String {
        format!("{},{}", self.request, self.response)
    }
}

impl fmt::Display for MessageSizes {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}x{}", self.request, self.response)
    }
}

/// Combination one trial runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrialConfig {
    /// netperf test.
    pub test: NetperfTest,
    /// Message sizes.
    pub sizes: MessageSizes,
    /// Barrier mode.
    pub mode: Mode,
}

impl TrialConfig {
    /// Returns the comparison this trial belongs to: its test and sizes,
    /// without the mode.
    pub fn workload(&self) -> Workload {
        Workload {
            test: self.test,
            sizes: self.sizes,
        }
    }
}

/// A netperf test with its message sizes: the unit within which weak and
/// strong are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Workload {
    /// netperf test.
    pub test: NetperfTest,
    /// Message sizes.
    pub sizes: MessageSizes,
}

impl fmt::Display for Workload {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} {}", self.test, self.sizes)
    }
}

/// A validated run.
#[derive(Clone, Debug)]
pub struct RunPlan {
    /// Every combination, in a fixed order that each round shuffles.
    pub configs: Vec<TrialConfig>,
    /// Modes compared, weak first when present.
    pub modes: Vec<Mode>,
    /// Rounds.
    pub rounds: u32,
    /// Seconds per netperf test.
    pub duration_seconds: u32,
    /// Network.
    pub network: NetworkKind,
    /// Accelerator the user asked for, if any.
    pub requested_accelerator: Option<Accelerator>,
    /// When the mode changes.
    pub switch: SwitchPoint,
    /// The guest's wait mode.
    pub wait_mode: WaitMode,
    /// Extra kernel command-line options.
    pub extra_append: String,
    /// Iterations of the barrier microbenchmark.
    pub barrier_bench_iterations: u32,
    /// Seed of the trial order and the bootstrap.
    pub seed: u64,
    /// Output directory.
    pub out: PathBuf,
}

impl RunPlan {
    /// Validates `args`.
    ///
    /// # Errors
    /// [`E2eError::InvalidOption`] naming the option, the value and the rule.
    pub fn from_args(args: &RunArgs) -> Result<RunPlan, E2eError> {
        let mut modes = args.modes.clone();
        modes.sort();
        modes.dedup();
        let mut tests = args.tests.clone();
        tests.sort();
        tests.dedup();
        if modes.is_empty() {
            return Err(invalid("--modes", "", "give at least one of weak, strong"));
        }
        if tests.is_empty() {
            return Err(invalid("--tests", "", "give at least one of TCP_RR, UDP_RR"));
        }
        let sizes = parse_sizes(&args.sizes)?;
        if args.rounds == 0 {
            return Err(invalid("--rounds", "0", "run at least one round"));
        }
        if args.duration == 0 {
            return Err(invalid("--duration", "0", "netperf needs a test of at least 1 second"));
        }
        if args.barrier_bench_iterations == 0 {
            return Err(invalid("--barrier-bench-iterations", "0", "use at least 1"));
        }

        let mut configs = Vec::new();
        for &test in &tests {
            for &sizes in &sizes {
                for &mode in &modes {
                    configs.push(TrialConfig { test, sizes, mode });
                }
            }
        }
        Ok(RunPlan {
            configs,
            modes,
            rounds: args.rounds,
            duration_seconds: args.duration,
            network: args.net,
            requested_accelerator: args.accel,
            switch: args.switch,
            wait_mode: args.wait_mode,
            extra_append: args.append.trim().to_string(),
            barrier_bench_iterations: args.barrier_bench_iterations,
            seed: args.seed.unwrap_or_else(clock_seed),
            out: args.out.clone().unwrap_or_else(|| default_output_directory(SystemTime::now())),
        })
    }

    /// Returns every workload in the plan, in a fixed order.
    pub fn workloads(&self) -> Vec<Workload> {
        let mut workloads: Vec<Workload> = self.configs.iter().map(TrialConfig::workload).collect();
        workloads.dedup();
        workloads
    }

    /// Builds the kernel command line of a guest booted in `mode`.
    pub fn kernel_command_line(&self, mode: Mode) -> String {
        let mut line = format!("barriers={mode} mode={}", self.wait_mode.name());
        if !self.extra_append.is_empty() {
            line.push(' ');
            line.push_str(&self.extra_append);
        }
        line
    }

    /// Trials in the whole run.
    pub fn trial_count(&self) -> usize {
        self.configs.len() * self.rounds as usize
    }
}

/// Parses `REQ,RESP[:REQ,RESP...]`, keeping the first of any repeated pair.
///
/// # Errors
/// [`E2eError::InvalidOption`] for a pair without a comma, a size that is
/// not a number, or a size of 0.
pub fn parse_sizes(text: &str) -> Result<Vec<MessageSizes>, E2eError> {
    let mut sizes: Vec<MessageSizes> = Vec::new();
    for pair in text.split(':').map(str::trim).filter(|pair| !pair.is_empty()) {
        let (request, response) = pair
            .split_once(',')
            .ok_or_else(|| invalid("--sizes", pair, "write each pair as REQUEST,RESPONSE bytes"))?;
        let parse = |value: &str| {
            value
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|&bytes| bytes > 0)
                .ok_or_else(|| invalid("--sizes", value.trim(), "a size is a positive number of bytes"))
        };
        let parsed = MessageSizes {
            request: parse(request)?,
            response: parse(response)?,
        };
        if !sizes.contains(&parsed) {
            sizes.push(parsed);
        }
    }
    if sizes.is_empty() {
        return Err(invalid("--sizes", text, "give at least one REQUEST,RESPONSE pair"));
    }
    Ok(sizes)
}

fn invalid(option: &'static str, value: impl Into<String>, reason: impl Into<String>) -> E2eError {
    E2eError::InvalidOption {
        option,
        value: value.into(),
        reason: reason.into(),
    }
}

fn clock_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as u64)
        .unwrap_or(0)
}

fn default_output_directory(now: SystemTime) -> PathBuf {
    Path::new("bench-out").join(format!("run-{}", utc_timestamp(now)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        run: RunArgs,
    }

    fn parse(arguments: &[&str]) -> Result<RunArgs, clap::Error> {
        let mut all = vec!["run"];
        all.extend_from_slice(arguments);
        Command::try_parse_from(all).map(|command| command.run)
    }

    #[test]
    fn defaults_compare_both_modes() {
        let plan = RunPlan::from_args(&parse(&[]).expect("defaults parse")).expect("valid plan");
        assert_eq!(plan.modes, [Mode::Weak, Mode::Strong]);
        assert_eq!(plan.configs.len(), 4);
        assert_eq!(plan.rounds, 10);
        assert_eq!(plan.duration_seconds, 5);
        assert_eq!(plan.switch, SwitchPoint::Boot);
        assert_eq!(plan.network, NetworkKind::User);
        assert_eq!(plan.requested_accelerator, None);
        assert_eq!(plan.trial_count(), 40);
        assert_eq!(plan.workloads().len(), 2);
        assert_eq!(plan.kernel_command_line(Mode::Strong), "barriers=strong mode=irq");
    }

    #[test]
    fn extra_options_follow_the_mode() {
        let args = parse(&["--append", " log=warn ", "--wait-mode", "poll"]).expect("parses");
        let plan = RunPlan::from_args(&args).expect("valid plan");
        assert_eq!(plan.kernel_command_line(Mode::Weak), "barriers=weak mode=poll log=warn");
    }

    #[test]
    fn sizes_parse_pairs() {
        let sizes = parse_sizes("1,1:64,64: 1024,1024:1,1").expect("valid sizes");
        assert_eq!(
            sizes,
            [
                MessageSizes { request: 1, response: 1 },
                MessageSizes { request: 64, response: 64 },
                MessageSizes { request: 1024, response: 1024 },
            ]
        );
        assert_eq!(sizes[1].netperf_argument(), "64,64");
        assert_eq!(sizes[2].to_string(), "1024x1024");
    }

    #[test]
    fn bad_sizes_are_rejected() {
        for text in ["", "1", "1,x", "0,1", "1,-4", "1;1"] {
            let error = parse_sizes(text).expect_err(text);
            assert!(error.to_string().contains("--sizes"), "{text}: {error}");
        }
    }

    #[test]
    fn unknown_mode_and_test_are_rejected() {
        let error = parse(&["--modes", "weak,medium"]).expect_err("medium is no mode");
        assert_eq!(error.exit_code(), 2);
        assert!(error.to_string().contains("medium"), "{error}");
        let error = parse(&["--tests", "TCP_STREAM"]).expect_err("TCP_STREAM is not offered");
        assert_eq!(error.exit_code(), 2);
        assert!(parse(&["--tests", "tcp_rr"]).is_ok(), "test names ignore case");
    }

    #[test]
    fn zero_rounds_and_duration_are_rejected() {
        for arguments in [["--rounds", "0"], ["--duration", "0"]] {
            let args = parse(&arguments).expect("parses");
            let error = RunPlan::from_args(&args).expect_err("zero is invalid");
            assert!(error.to_string().contains(arguments[0]), "{error}");
        }
    }

    #[test]
    fn configs_cover_every_combination() {
        let args = parse(&["--modes", "strong,weak,weak", "--tests", "UDP_RR", "--sizes", "1,1:64,64"]).expect("parses");
        let plan = RunPlan::from_args(&args).expect("valid plan");
        assert_eq!(plan.modes, [Mode::Weak, Mode::Strong]);
        assert_eq!(plan.configs.len(), 4);
        assert!(plan.configs.iter().all(|config| config.test == NetperfTest::UdpRr));
        assert_eq!(plan.workloads().len(), 2);
    }
}
