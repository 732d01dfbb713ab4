//! The host's netperf client: the command line of one request/response
//! test with `-o` output selectors, running it with a timeout (inside a
//! network namespace when asked), and parsing the CSV it prints.
//!
//! With `-o`, netperf 2.7 prints its test banner, one CSV header line of
//! the selected figures' titles, and one CSV line of values. The parser
//! matches figures by title, so selectors may be reordered or dropped.

use std::fmt;
use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde::Serialize;
use ::tests::netperf::{netperf_binary, NetperfError};

use super::options::{MessageSizes, NetperfTest};

/// The `-o` selectors of every trial, in the order netperf prints them.
pub const OUTPUT_SELECTORS: [&str; 14] = [
    "THROUGHPUT",
    "THROUGHPUT_UNITS",
    "TRANSACTION_RATE",
    "MEAN_LATENCY",
    "MIN_LATENCY",
    "MAX_LATENCY",
    "P50_LATENCY",
    "P90_LATENCY",
    "P99_LATENCY",
    "STDDEV_LATENCY",
    "ELAPSED_TIME",
    "REQUEST_SIZE",
    "RESPONSE_SIZE",
    "REMOTE_CPU_UTIL",
];

/// Time netperf may take beyond the test length: control connection setup,
/// the guest's CPU utilisation report and teardown.
const EXTRA_TIME: Duration = Duration::from_secs(30);

/// The figures of one netperf request/response test.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NetperfFigures {
    /// Transactions per second.
    pub transaction_rate: f64,
    /// `THROUGHPUT` in `THROUGHPUT_UNITS` (transactions per second for
    /// request/response tests).
    pub throughput: f64,
    /// Mean round-trip latency in microseconds.
    pub mean_latency_us: f64,
    /// Fastest round trip in microseconds.
    pub min_latency_us: f64,
    /// Slowest round trip in microseconds.
    pub max_latency_us: f64,
    /// Median round trip in microseconds.
    pub p50_latency_us: f64,
    /// 90th percentile round trip in microseconds.
    pub p90_latency_us: f64,
    /// 99th percentile round trip in microseconds.
    pub p99_latency_us: f64,
    /// Standard deviation of the round trips in microseconds.
    pub stddev_latency_us: f64,
    /// Test length netperf measured, in seconds.
    pub elapsed_seconds: f64,
    /// Request bytes netperf reports.
    pub request_bytes: f64,
    /// Response bytes netperf reports.
    pub response_bytes: f64,
    /// The guest's CPU utilisation as its netserver reports it, in
    /// percent, or NaN when netperf printed none.
    pub remote_cpu_percent: f64,
}

impl NetperfFigures {
    /// Transactions in the test: rate times elapsed time.
    pub fn transactions(&self) -> f64 {
        self.transaction_rate * self.elapsed_seconds
    }
}

/// netperf output without the figures a trial needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetperfParseError {
    /// Description of the problem.
    pub problem: String,
    /// The whole output.
    pub output: String,
}

impl fmt::Display for NetperfParseError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "netperf output {}; output:\n{}", self.problem, self.output)
    }
}

impl std::error::Error for NetperfParseError {}

/// netperf's arguments for one test against `host:control_port`.
pub fn arguments(host: &str, control_port: u16, test: NetperfTest, sizes: MessageSizes, seconds: u32) -> Vec<String> {
    vec![
        "-H".into(),
        host.into(),
        "-p".into(),
        control_port.to_string(),
        "-t".into(),
        test.name().into(),
        "-l".into(),
        seconds.to_string(),
        // The guest's CPU utilisation; the guest measures it from its halted
        // time.
        "-C".into(),
        "--".into(),
        "-r".into(),
        sizes.netperf_argument(),
        "-o".into(),
        OUTPUT_SELECTORS.join(","),
    ]
}

/// Parses the `-o` CSV output of a request/response test.
///
/// # Errors
/// [`NetperfParseError`] when no header line with a transaction rate is
/// followed by a value line of as many fields, or when the transaction
/// rate, mean latency or elapsed time is not a number.
pub fn parse_output(output: &str) -> Result<NetperfFigures, NetperfParseError> {
    let error = |problem: &str| NetperfParseError {
        problem: problem.to_string(),
        output: output.to_string(),
    };
    let lines: Vec<&str> = output.lines().collect();
    let (titles, values) = lines
        .windows(2)
        .find_map(|pair| {
            let titles = csv_fields(pair[0])?;
            if !titles.iter().any(|title| title.starts_with("Transaction Rate")) {
                return None;
            }
            let values = csv_fields(pair[1])?;
            (values.len() == titles.len()).then_some((titles, values))
        })
        .ok_or_else(|| error("has no CSV header with a transaction rate followed by a value line"))?;

    let figure = |prefix: &str| -> Option<f64> {
        let position = titles.iter().position(|title| title.starts_with(prefix))?;
        values[position].trim().parse().ok()
    };
    let required = |prefix: &str| figure(prefix).ok_or_else(|| error(&format!("has no number for '{prefix}'")));
    let optional = |prefix: &str| figure(prefix).unwrap_or(f64::NAN);
    Ok(NetperfFigures {
        transaction_rate: required("Transaction Rate")?,
        throughput: optional("Throughput"),
        mean_latency_us: required("Mean Latency")?,
        min_latency_us: optional("Minimum Latency"),
        max_latency_us: optional("Maximum Latency"),
        p50_latency_us: optional("50th Percentile Latency"),
        p90_latency_us: optional("90th Percentile Latency"),
        p99_latency_us: optional("99th Percentile Latency"),
        stddev_latency_us: optional("Stddev Latency"),
        elapsed_seconds: required("Elapsed Time")?,
        request_bytes: optional("Request Size"),
        response_bytes: optional("Response Size"),
        remote_cpu_percent: optional("Remote CPU Util"),
    })
}

/// Splits one CSV line into fields, or returns `None` when it is not valid
/// CSV.
fn csv_fields(line: &str) -> Option<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(line.as_bytes());
    let record = reader.records().next()?.ok()?;
    Some(record.iter().map(str::to_string).collect())
}

/// A finished netperf process.
#[derive(Debug)]
pub struct NetperfRun {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs netperf with `arguments`, prefixed by `prefix` (such as
/// `ip netns exec NAME`) when it is not empty, and waits for the test
/// length `seconds` plus a margin before killing it.
///
/// # Errors
/// [`NetperfError::NotInstalled`] without netperf, and the spawn, wait and
/// timeout errors of [`NetperfError`].
pub fn run(prefix: &[String], arguments: &[String], seconds: u32) -> Result<NetperfRun, NetperfError> {
    let netperf = netperf_binary()?;
    let mut command = match prefix.split_first() {
        Some((program, prefix_arguments)) => {
            let mut command = Command::new(program);
            command.args(prefix_arguments).arg(&netperf);
            command
        }
        None => Command::new(&netperf),
    };
    let mut child = command
        .args(arguments)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| NetperfError::Spawn { path: netperf.clone(), source })?;
    let stdout = collect(child.stdout.take().expect("stdout was configured as a pipe"));
    let stderr = collect(child.stderr.take().expect("stderr was configured as a pipe"));

    let timeout = Duration::from_secs(u64::from(seconds)) + EXTRA_TIME;
    let status = wait_with_timeout(&mut child, timeout)?;
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    match status {
        Some(status) => Ok(NetperfRun { status, stdout, stderr }),
        None => Err(NetperfError::Timeout {
            timeout,
            output: format!("{stdout}{stderr}"),
        }),
    }
}

fn collect(mut source: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = source.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Waits for the exit status, or returns `None` after killing a child that
/// ran past `timeout`.
fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>, NetperfError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().map_err(|source| NetperfError::Wait { source })? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_put_test_options_after_separator() {
        let arguments = arguments("127.0.0.1", 40003, NetperfTest::UdpRr, MessageSizes { request: 64, response: 1024 }, 3);
        let joined = arguments.join(" ");
        assert!(joined.starts_with("-H 127.0.0.1 -p 40003 -t UDP_RR -l 3 -C -- -r 64,1024 -o THROUGHPUT,"), "{joined}");
        assert!(joined.ends_with("REMOTE_CPU_UTIL"), "{joined}");
    }

    #[test]
    fn parse_rejects_output_without_values() {
        let header_only = "Throughput,Transaction Rate Tran/s,Mean Latency Microseconds\n";
        assert!(parse_output(header_only).is_err());
        let error = parse_output("establish control: are you sure there is a netserver listening on 127.0.0.1 at port 1?\n")
            .expect_err("no CSV");
        assert!(error.to_string().contains("netserver listening"), "{error}");
    }
}
