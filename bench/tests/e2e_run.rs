//! End-to-end tests of `bench run`: the `bench` binary boots guests with
//! `run.sh`, runs the host's netperf against them and writes its files.
//!
//! Each run keeps a guest busy on a host core, so the tests take a lock and
//! run one at a time.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

use bench::e2e::kvm_unusable_reason;

static GUESTS_IN_USE: Mutex<()> = Mutex::new(());

fn lock_guests() -> MutexGuard<'static, ()> {
    GUESTS_IN_USE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn scratch_directory(name: &str) -> PathBuf {
    let directory = std::env::temp_dir().join(format!("bench-run-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&directory);
    directory
}

/// Runs `bench run ARGUMENTS --out OUT`.
fn bench_run(arguments: &[&str], out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bench"))
        .arg("run")
        .args(arguments)
        .arg("--out")
        .arg(out)
        .output()
        .expect("the bench binary starts")
}

fn describe(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Rows of a CSV file as (header, value) maps.
fn read_csv(path: &Path) -> Vec<HashMap<String, String>> {
    let mut reader = csv::Reader::from_path(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let headers = reader.headers().expect("header row").clone();
    reader
        .records()
        .map(|record| {
            let record = record.expect("valid CSV row");
            headers.iter().map(str::to_string).zip(record.iter().map(str::to_string)).collect()
        })
        .collect()
}

fn number(row: &HashMap<String, String>, column: &str) -> f64 {
    let text = row.get(column).unwrap_or_else(|| panic!("no column {column}"));
    text.parse().unwrap_or_else(|_| panic!("column {column} is {text:?}: {row:?}"))
}

/// Checks that a successful row's barrier counters moved in its own mode
/// only, for each barrier kind.
fn check_barriers_in_own_mode(row: &HashMap<String, String>) {
    let mode = row["mode"].as_str();
    let other = if mode == "weak" { "strong" } else { "weak" };
    for kind in ["read", "write", "full"] {
        let own = number(row, &format!("barriers_{kind}_{mode}"));
        let foreign = number(row, &format!("barriers_{kind}_{other}"));
        assert!(own > 0.0, "trial {} ({mode}) ran no {kind} barriers in its mode", row["trial"]);
        assert_eq!(foreign, 0.0, "trial {} ({mode}) ran {kind} barriers in {other} mode", row["trial"]);
    }
}

fn check_svg(path: &Path) {
    let text = fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    assert!(text.starts_with("<svg"), "{} is not an SVG", path.display());
}

#[test]
fn two_rounds_write_trials_report_and_plots() {
    let _guests = lock_guests();
    let out = scratch_directory("two-rounds");
    let output = bench_run(&["--rounds", "2", "--duration", "1", "--tests", "TCP_RR", "--seed", "11"], &out);
    assert!(output.status.success(), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("seed 11"), "the seed is not printed: {stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("TCP_RR 1x1"), "no summary table: {stdout}");
    assert!(stdout.contains("strong"), "no strong row in the summary: {stdout}");

    let rows = read_csv(&out.join("trials.csv"));
    assert_eq!(rows.len(), 4, "{rows:?}");
    for round in ["1", "2"] {
        let mut modes: Vec<&str> = rows.iter().filter(|row| row["round"] == round).map(|row| row["mode"].as_str()).collect();
        modes.sort_unstable();
        assert_eq!(modes, ["strong", "weak"], "round {round} is not balanced");
    }
    for row in &rows {
        assert_eq!(row["status"], "ok", "{row:?}");
        assert_eq!(row["test"], "TCP_RR");
        assert_eq!(row["switch"], "boot");
        assert!(number(row, "transaction_rate") > 0.0, "{row:?}");
        assert!(number(row, "mean_latency_us") > 0.0, "{row:?}");
        assert!(number(row, "p99_latency_us") >= number(row, "p50_latency_us"), "{row:?}");
        assert!(number(row, "notifications_per_transaction") > 0.0, "{row:?}");
        assert!(number(row, "tx_submit_count") > 0.0, "{row:?}");
        assert!(!row["accelerator"].is_empty());
        assert!(number(row, "host_steal_ms") >= 0.0);
        check_barriers_in_own_mode(row);
    }

    let report = fs::read_to_string(out.join("report.md")).expect("report.md");
    for expected in [
        "## Latency and transaction rate per mode",
        "| TCP_RR 1x1 | weak | 2 / 0 |",
        "| TCP_RR 1x1 | strong | 2 / 0 |",
        "## Strong against weak",
        "## In-guest barrier microbenchmark",
        "## Host steal time as a covariate",
        "Accelerator: ",
    ] {
        assert!(report.contains(expected), "report.md lacks {expected:?}:\n{report}");
    }
    let bench_rows = read_csv(&out.join("barrier_bench.csv"));
    assert_eq!(bench_rows.len(), 2 * 6, "one microbenchmark per round: {bench_rows:?}");
    for plot in ["latency-tcp_rr-1x1.svg", "p99-tcp_rr-1x1.svg", "rate-order-tcp_rr-1x1.svg", "cycles.svg"] {
        check_svg(&out.join(plot));
        assert!(report.contains(plot), "report.md does not show {plot}");
    }
    fs::remove_dir_all(&out).expect("scratch directory removed");
}

#[test]
fn runtime_switch_reuses_one_boot() {
    let _guests = lock_guests();
    let out = scratch_directory("runtime");
    let arguments = ["--switch", "runtime", "--rounds", "1", "--duration", "1", "--tests", "UDP_RR", "--sizes", "64,64", "--accel", "kvm"];
    let output = bench_run(&arguments, &out);
    assert!(output.status.success(), "{}", describe(&output));

    let rows = read_csv(&out.join("trials.csv"));
    assert_eq!(rows.len(), 2, "{rows:?}");
    for row in &rows {
        assert_eq!(row["status"], "ok", "{row:?}");
        assert_eq!(row["switch"], "runtime");
        assert_eq!(row["request_bytes"], "64");
        assert!(number(row, "transaction_rate") > 0.0, "{row:?}");
        check_barriers_in_own_mode(row);
    }
    assert_eq!(rows[0]["boot_us"], rows[1]["boot_us"], "both trials should run on the round's one guest");

    let report = fs::read_to_string(out.join("report.md")).expect("report.md");
    match kvm_unusable_reason() {
        Some(_) => {
            assert!(rows.iter().all(|row| row["accelerator"] == "tcg"), "{rows:?}");
            assert!(report.contains("KVM was requested but is not usable"), "{report}");
        }
        None => assert!(rows.iter().all(|row| row["accelerator"] == "kvm"), "{rows:?}"),
    }
    fs::remove_dir_all(&out).expect("scratch directory removed");
}

#[test]
fn invalid_options_exit_with_status_2() {
    let out = scratch_directory("invalid");
    for (arguments, expected) in [
        (&["--modes", "weak,medium"][..], "medium"),
        (&["--tests", "TCP_STREAM"][..], "TCP_STREAM"),
        (&["--sizes", "1"][..], "--sizes"),
        (&["--rounds", "0"][..], "--rounds"),
    ] {
        let output = bench_run(arguments, &out);
        assert_eq!(output.status.code(), Some(2), "{arguments:?}: {}", describe(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{arguments:?}: stderr lacks {expected}: {stderr}");
    }
    assert!(!out.exists(), "an invalid run must not create its output directory");
}

#[test]
fn guest_that_does_not_boot_is_recorded() {
    let _guests = lock_guests();
    let out = scratch_directory("no-boot");
    // The kernel rejects an unknown command-line option and exits.
    let arguments = ["--append", "no_such_option=1", "--modes", "weak", "--rounds", "1", "--duration", "1", "--tests", "TCP_RR"];
    let output = bench_run(&arguments, &out);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("1 of 1 trials failed"), "{}", describe(&output));

    let rows = read_csv(&out.join("trials.csv"));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["status"], "failed");
    assert_eq!(rows[0]["attempts"], "2");
    assert!(rows[0]["failure"].contains("guest failed"), "{rows:?}");
    assert_eq!(rows[0]["transaction_rate"], "", "a failed trial has no figures");
    let report = fs::read_to_string(out.join("report.md")).expect("report.md");
    assert!(report.contains("## Failed trials"), "{report}");
    assert!(report.contains("| TCP_RR 1x1 | weak | 0 / 1 |"), "{report}");
    fs::remove_dir_all(&out).expect("scratch directory removed");
}

/// Returns whether the tests run as root, which `--net tap` needs.
fn running_as_root() -> bool {
    let status = fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0")
}

fn namespaces() -> String {
    let output = Command::new("ip").args(["netns", "list"]).output().expect("ip runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn tap_network_is_created_and_removed() {
    let _guests = lock_guests();
    let out = scratch_directory("tap");
    let arguments = ["--net", "tap", "--modes", "strong", "--rounds", "1", "--duration", "1", "--tests", "TCP_RR"];
    let output = bench_run(&arguments, &out);
    if !running_as_root() {
        assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
        assert!(String::from_utf8_lossy(&output.stderr).contains("needs root"), "{}", describe(&output));
        return;
    }
    assert!(output.status.success(), "{}", describe(&output));
    let rows = read_csv(&out.join("trials.csv"));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["network"], "tap");
    assert!(number(&rows[0], "transaction_rate") > 0.0, "{rows:?}");
    assert!(rows[0]["netperf_command"].contains("-H 10.213.0.2"), "{rows:?}");
    // The namespace is named after the bench process, which has exited.
    assert!(!namespaces().contains("vbench-"), "a namespace was left behind: {}", namespaces());
    fs::remove_dir_all(&out).expect("scratch directory removed");
}
