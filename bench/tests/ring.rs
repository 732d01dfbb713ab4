//! End-to-end tests of `bench ring`: the output files of a short run, the
//! protocol's correctness over a million round trips against both device
//! implementations, and the per-site barrier switch.
//!
//! Every test pins two threads to the machine's first two cores and spins,
//! so the tests take a lock and run one at a time: two trials spinning on
//! the same cores would make each other's round trips wait for the
//! scheduler.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use bench::host;
use bench::ring::config::{BarrierConfig, DeviceKind, RingConfig, TrialShape};
use bench::ring::options::RingArgs;
use bench::ring::record::TrialRow;
use bench::ring::trial::{run_trial, CorePair, TrialResult};
use bench::tsc::TscFrequency;
use clap::Parser;
use virtio::barrier::{BarrierMode, BarrierSite};

static CORES_IN_USE: Mutex<()> = Mutex::new(());

fn lock_cores() -> MutexGuard<'static, ()> {
    CORES_IN_USE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn cores() -> CorePair {
    let allowed = host::allowed_cores();
    assert!(allowed.len() >= 2, "the ring tests need two cores, found {allowed:?}");
    CorePair {
        driver: allowed[0],
        device: allowed[1],
    }
}

fn scratch_directory(name: &str) -> PathBuf {
    let directory = std::env::temp_dir().join(format!("bench-ring-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&directory);
    directory
}

fn shape(iterations: u64, batch: u16) -> TrialShape {
    TrialShape {
        queue_size: 256,
        batch,
        iterations,
        warmup: 0,
        stall_timeout: Duration::from_secs(2),
        tolerate_faults: false,
    }
}

fn trial(config: &RingConfig, shape: &TrialShape, frequency: &TscFrequency) -> TrialResult {
    run_trial(config, shape, cores(), frequency)
        .unwrap_or_else(|error| panic!("{} (batch {}): {error}", config.label(), shape.batch))
}

#[derive(Parser)]
struct Arguments {
    #[command(flatten)]
    ring: RingArgs,
}

fn ring_args(arguments: &[&str]) -> RingArgs {
    let mut all = vec!["ring"];
    all.extend_from_slice(arguments);
    Arguments::try_parse_from(all).expect("valid arguments").ring
}

/// Rows of a CSV file as (header, value) maps.
fn read_csv(path: &Path) -> Vec<HashMap<String, String>> {
    let mut reader = csv::Reader::from_path(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let headers = reader.headers().expect("header row").clone();
    reader
        .records()
        .map(|record| {
            let record = record.expect("well-formed row");
            headers.iter().map(String::from).zip(record.iter().map(String::from)).collect()
        })
        .collect()
}

fn number(row: &HashMap<String, String>, column: &str) -> f64 {
    row.get(column)
        .unwrap_or_else(|| panic!("no column {column}"))
        .parse()
        .unwrap_or_else(|error| panic!("{column}: {error}"))
}

#[test]
fn short_run_writes_report_csv_and_plots() {
    let _cores = lock_cores();
    let directory = scratch_directory("short");
    let out = directory.to_str().expect("UTF-8 temporary path");
    let args = ring_args(&["--iterations", "100000", "--rounds", "2", "--seed", "7", "--out", out]);
    let run = bench::ring::run(&args, "bench ring --iterations 100000 --rounds 2").expect("run succeeds");

    assert_eq!(run.rows.len(), 2 * 2 * 2 * 2, "devices x event idx x modes x rounds");
    for device in [DeviceKind::Model, DeviceKind::RustVmm] {
        for barriers in ["weak", "strong"] {
            let rows: Vec<&TrialRow> = run
                .rows
                .iter()
                .filter(|row| row.device == device.name() && row.barriers == barriers)
                .collect();
            assert_eq!(rows.len(), 4, "{device} {barriers}");
            for row in rows {
                assert_eq!(row.round_trips, 100_000, "{}", row.config);
                assert_eq!(row.sampled_round_trips, 100_000, "{}", row.config);
                assert!(row.latency_p50_ticks > 0.0, "{}", row.config);
                assert!(row.latency_p50_ns > 0.0, "{}", row.config);
                assert!(row.latency_p99_9_ticks >= row.latency_p50_ticks, "{}", row.config);
                assert!(row.submit_p50_ticks > 0.0, "{}", row.config);
                assert!(row.completion_p50_ticks > 0.0, "{}", row.config);
                assert!(row.rearm_p50_ticks > 0.0, "{}", row.config);
                assert!(row.throughput_chains_per_second > 0.0, "{}", row.config);
                assert_eq!(row.fault_total(), 0, "{}", row.config);
            }
        }
    }
    assert_eq!(run.analysis.summaries.len(), 8);
    assert_eq!(run.analysis.comparisons.len(), 4 * 6, "four groups, six figures");

    let report = fs::read_to_string(&run.files.report).expect("report.md readable");
    for section in [
        "## Round-trip latency",
        "## Driver paths",
        "## Strong versus weak",
        "## Barrier microbenchmark",
        "model, event idx on, weak",
        "rust-vmm, event idx off, strong",
        "stand-ins",
        "bench ring --iterations 100000 --rounds 2",
    ] {
        assert!(report.contains(section), "report.md lacks {section:?}");
    }
    let cpu = host::CpuModel::read();
    assert!(report.contains(&cpu.name), "report.md lacks the CPU model {:?}", cpu.name);

    let trials = read_csv(&run.files.trials);
    assert_eq!(trials.len(), 16);
    for row in &trials {
        let config = &row["config"];
        for column in [
            "latency_p50_ticks",
            "latency_p99_9_ticks",
            "submit_p50_ticks",
            "completion_p50_ticks",
            "throughput_chains_per_second",
            "tsc_hz",
        ] {
            assert!(number(row, column) > 0.0, "{config}: {column}");
        }
    }
    for device in ["model", "rust-vmm"] {
        for barriers in ["weak", "strong"] {
            let count = trials
                .iter()
                .filter(|row| row["device"] == device && row["barriers"] == barriers)
                .count();
            assert_eq!(count, 4, "trials.csv rows for {device} {barriers}");
        }
    }
    let histograms = read_csv(&run.files.histograms);
    let counted: f64 = histograms.iter().map(|row| number(row, "count")).sum();
    assert_eq!(counted, 16.0 * 100_000.0, "every sampled round trip is in a bucket");
    let microbench = read_csv(&run.files.microbench);
    assert_eq!(microbench.len(), 14);

    assert_eq!(run.files.plots.len(), 8, "a CDF and a trial-order plot per group");
    for plot in &run.files.plots {
        let svg = fs::read_to_string(plot).unwrap_or_else(|error| panic!("{}: {error}", plot.display()));
        assert!(svg.starts_with("<svg"), "{}", plot.display());
        assert!(svg.contains("weak"), "{} lacks the weak legend", plot.display());
        assert!(svg.contains("strong"), "{} lacks the strong legend", plot.display());
        let name = plot.file_name().and_then(|name| name.to_str()).expect("file name");
        assert!(report.contains(name), "report.md does not link {name}");
    }
    fs::remove_dir_all(&directory).expect("cleanup");
}

/// Over 10^6 round trips per event idx setting, split over both devices,
/// both modes and batches of 1 and 5, every chain must come back exactly
/// once with its length and response, and no wait may stall: the driver
/// checks each round trip and turns any fault or a 2 s stall into an error.
#[test]
fn million_round_trips_return_every_buffer() {
    let _cores = lock_cores();
    let frequency = TscFrequency::measure();
    for event_idx in [true, false] {
        let mut round_trips = 0;
        for device in [DeviceKind::Model, DeviceKind::RustVmm] {
            for mode in BarrierMode::ALL {
                for batch in [1, 5] {
                    let config = RingConfig {
                        device,
                        event_idx,
                        barriers: BarrierConfig::uniform(mode),
                    };
                    let shape = shape(125_000, batch);
                    let result = trial(&config, &shape, &frequency);
                    let label = format!("{} batch {batch}", config.label());
                    let driver = &result.driver;
                    let chains = shape.iterations * u64::from(batch);

                    assert_eq!(driver.round_trips, shape.iterations, "{label}");
                    assert_eq!(driver.faults.total(), 0, "{label}");
                    assert_eq!(driver.ended_early, None, "{label}");
                    assert_eq!(driver.samples.latency.len() as u64, shape.iterations, "{label}");
                    assert_eq!(result.device.completions, chains, "{label}");
                    let (before, after) = driver.queue_counters;
                    assert_eq!(after.used_processed - before.used_processed, chains, "{label}");
                    assert_eq!(after.adds - before.adds, chains, "{label}");
                    assert_eq!(
                        after.kicks + after.kicks_suppressed - before.kicks - before.kicks_suppressed,
                        shape.iterations,
                        "{label}: one notification decision per publish"
                    );
                    assert_eq!(after.errors, before.errors, "{label}");
                    assert!(result.device.wakeups <= after.kicks, "{label}: a wakeup needs a doorbell");
                    round_trips += driver.round_trips;
                }
            }
        }
        assert_eq!(round_trips, 1_000_000, "event idx {event_idx}");
    }
}

/// With one site strong, that site's counters show strong executions and no
/// weak ones, and every other site shows only weak ones.
#[test]
fn site_switch_reaches_the_barrier_code() {
    let _cores = lock_cores();
    let frequency = TscFrequency::measure();
    for device in [DeviceKind::Model, DeviceKind::RustVmm] {
        for event_idx in [true, false] {
            for strong_site in BarrierSite::ALL {
                let config = RingConfig {
                    device,
                    event_idx,
                    barriers: BarrierConfig::only_strong(strong_site),
                };
                let result = trial(&config, &shape(2_000, 1), &frequency);
                let counts = &result.driver.barriers;
                for (index, site) in BarrierSite::ALL.into_iter().enumerate() {
                    let label = format!("{}: {site}", config.label());
                    let executes = match site {
                        BarrierSite::InterruptEnable => !event_idx,
                        BarrierSite::UsedEventStore => event_idx,
                        _ => true,
                    };
                    let total = counts.weak[index] + counts.strong[index];
                    assert_eq!(total > 0, executes, "{label}: executions {total}");
                    assert_eq!(counts.ablated[index], 0, "{label}");
                    if site == strong_site {
                        assert_eq!(counts.weak[index], 0, "{label}");
                    } else {
                        assert_eq!(counts.strong[index], 0, "{label}");
                    }
                }
            }
        }
    }
}

#[test]
fn binary_runs_and_rejects_bad_options() {
    let _cores = lock_cores();
    let directory = scratch_directory("binary");
    let output = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["ring", "--iterations", "2000", "--rounds", "1", "--devices", "model", "--event-idx", "off", "--out"])
        .arg(&directory)
        .output()
        .expect("bench runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("seed"), "the seed is printed: {stderr}");
    assert!(directory.join("report.md").is_file());
    fs::remove_dir_all(&directory).expect("cleanup");

    let output = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["ring", "--queue-size", "100"])
        .output()
        .expect("bench runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("--queue-size"), "{stderr}");

    let output = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["ring", "--sites", "notify-check=none"])
        .output()
        .expect("bench runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("--unsafe-ablation"), "{stderr}");
}

/// An ablation run removes the chosen site's barrier (its executions count
/// as ablated) and reports what it found without failing. A fault is not
/// required: the race window may never be hit. Batches of 8 let the device
/// return chains while the driver re-enables interrupts, which is the
/// window of the interrupt-enable and used-event-store races.
#[cfg(feature = "ablation")]
#[test]
fn ablation_run_counts_without_failing() {
    use bench::ring::config::SiteSetting;

    let _cores = lock_cores();
    let frequency = TscFrequency::measure();
    let cases = [
        (true, BarrierSite::NotifyCheck),
        (true, BarrierSite::UsedEventStore),
        (false, BarrierSite::InterruptEnable),
        (false, BarrierSite::UsedRead),
    ];
    for (event_idx, site) in cases {
        let config = RingConfig {
            device: DeviceKind::Model,
            event_idx,
            barriers: BarrierConfig::custom(&[(site, SiteSetting::Ablated)]),
        };
        let shape = TrialShape {
            stall_timeout: Duration::from_millis(20),
            tolerate_faults: true,
            ..shape(50_000, 8)
        };
        let result = trial(&config, &shape, &frequency);
        let index = BarrierSite::ALL.iter().position(|&candidate| candidate == site).expect("listed");
        let counts = &result.driver.barriers;
        let label = config.label();
        assert!(counts.ablated[index] > 0, "{label}");
        assert_eq!(counts.weak[index] + counts.strong[index], 0, "{label}");
        let faults = result.driver.faults;
        assert_eq!(faults.duplicate_buffers, 0, "{label}: the queue never returns a token twice");
        assert!(faults.faulted_round_trips <= faults.total(), "{label}: {faults:?}");
        let sampled = result.driver.samples.latency.len() as u64;
        assert_eq!(sampled + faults.faulted_round_trips, result.driver.round_trips, "{label}");
        eprintln!("{label}: {faults:?}, ended early: {:?}", result.driver.ended_early);
    }
}
