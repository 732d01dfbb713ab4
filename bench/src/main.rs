//! `bench`: host-side benchmarks of the unikernel's virtio code. See the
//! library documentation for what each subcommand measures.

use std::process::ExitCode;

use bench::e2e::{self, options::RunArgs};
use bench::ring::{self, options::RingArgs};
use clap::{Parser, Subcommand};

/// Host-side benchmarks of the unikernel's virtio code.
#[derive(Parser)]
#[command(name = "bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Split virtqueue ping-pong between two pinned cores: round-trip
    /// latency, driver path costs and per-site barrier attribution for weak
    /// and strong barriers, against this crate's device model and rust-vmm's
    /// virtio-queue.
    Ring(RingArgs),
    /// Weak against strong barriers end to end: the host's netperf against
    /// the unikernel under QEMU, in a balanced, shuffled order of trials,
    /// with the guest's counters, host steal time, statistics and plots.
    Run(RunArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    match cli.command {
        Command::Ring(args) => match ring::run(&args, &command_line) {
            Ok(_) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("bench ring: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => match e2e::run(&args, &command_line) {
            Ok(run) if run.failed_trials() > 0 => {
                eprintln!(
                    "bench run: {} of {} trials failed; trials.csv and report.md record why",
                    run.failed_trials(),
                    run.outcomes.len()
                );
                ExitCode::FAILURE
            }
            Ok(_) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("bench run: {error}");
                ExitCode::from(error.exit_code())
            }
        },
    }
}
