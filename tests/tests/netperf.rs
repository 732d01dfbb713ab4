//! Unmodified netperf against the guest's netperf service:
//! - every test type in the form netperf 2.7 sends it, with the figures
//!   netperf prints checked against the counts the guest logs;
//! - several tests on one control connection, and two clients at once;
//! - the services netperf reaches without a control connection;
//! - hostile control input followed by a normal test.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use tests::console::field;
use tests::netperf::run_netperf;
use tests::{Guest, GuestOptions, Stream};

const TEST_SECONDS: f64 = 2.0;
const NETPERF_TIMEOUT: Duration = Duration::from_secs(60);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);
/// Data that QEMU's user network and the host's socket buffers hold between
/// the guest and netperf at the end of a 2-second TCP_MAERTS. Linux
/// auto-tunes those buffers up to `net.ipv4.tcp_rmem` and `tcp_wmem`.
///
/// NOTE: 8 MiB is an estimate from runs under TCG on a Debian 12 host,
/// where about 3 MiB was in flight. A much faster guest fills more.
const HOST_BUFFER_ALLOWANCE_BYTES: f64 = 8.0 * 1024.0 * 1024.0;
/// A captured TCP_RR request of netperf 2.7.0 (656 bytes as hex).
const TCP_RR_CAPTURE: &str = include_str!("../../net/src/netperf/fixtures/tcp_rr.txt");
const TCP_RR_IPV6_CAPTURE: &str = include_str!("../../net/src/netperf/fixtures/tcp_rr_ipv6.txt");

/// What netperf printed: elapsed seconds and the rate column.
struct Report {
    elapsed_seconds: f64,
    rate: f64,
    wall: Duration,
    output: String,
}

fn control_arguments(guest: &Guest, test: &str, seconds: f64) -> Vec<String> {
    vec![
        "-H".into(),
        "127.0.0.1".into(),
        "-p".into(),
        guest.ports().netperf_control.to_string(),
        "-t".into(),
        test.into(),
        "-l".into(),
        seconds.to_string(),
    ]
}

/// Runs netperf with `arguments` and returns its figures; `rate_column` is
/// 5 for request/response reports and 4 for stream reports.
fn netperf(arguments: &[String], rate_column: usize) -> Report {
    let start = Instant::now();
    let run = run_netperf(arguments, NETPERF_TIMEOUT).unwrap_or_else(|error| panic!("netperf {arguments:?}: {error}"));
    let wall = start.elapsed();
    let output = format!("netperf {}\n{}{}", arguments.join(" "), run.stdout, run.stderr);
    assert!(run.status.success(), "netperf failed ({}):\n{output}", run.status);
    let figures = run
        .stdout
        .lines()
        .find_map(|line| {
            let fields: Vec<f64> = line.split_whitespace().map(str::parse).collect::<Result<_, _>>().ok()?;
            (fields.len() > rate_column).then(|| (fields[rate_column - 1], fields[rate_column]))
        })
        .unwrap_or_else(|| panic!("no result line:\n{output}"));
    Report { elapsed_seconds: figures.0, rate: figures.1, wall, output }
}

fn check_timing(report: &Report, seconds: f64, max_wall: Duration) {
    assert!(report.rate > 0.0, "rate not positive:\n{}", report.output);
    assert!(
        (report.elapsed_seconds - seconds).abs() <= seconds * 0.1,
        "elapsed {} s is not within 10% of {seconds} s:\n{}",
        report.elapsed_seconds,
        report.output
    );
    assert!(report.wall <= max_wall, "took {:?}, more than {max_wall:?}:\n{}", report.wall, report.output);
}

/// Returns the count the guest logged for its newest test of `kind`:
/// transactions for request/response tests, bytes for stream tests.
fn guest_count(guest: &Guest, kind: &str, unit: &str) -> f64 {
    let needle = format!("netserver: {kind} from ");
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    loop {
        let line = guest
            .log()
            .lines()
            .into_iter()
            .rev()
            .find(|line| line.stream == Stream::Serial && line.text.contains(&needle));
        if let Some(line) = line {
            let summary = line.text.split("ended: ").nth(1).unwrap_or_else(|| panic!("odd line: {}", line.text));
            let value = summary
                .split(", ")
                .find_map(|part| part.strip_suffix(&format!(" {unit}")))
                .unwrap_or_else(|| panic!("no {unit} in: {}", line.text));
            return value.parse().unwrap_or_else(|_| panic!("bad count in: {}", line.text));
        }
        assert!(Instant::now() < deadline, "the guest logged no {kind} line");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Checks that the guest's count and netperf's (rate x elapsed) agree within
/// 1%, or within one transaction: one request can be in flight when
/// netperf's timer stops the test.
fn check_count(guest: &Guest, kind: &str, report: &Report, netperf_count: f64, unit: &str) {
    let logged = guest_count(guest, kind, unit);
    let tolerance = (netperf_count * 0.01).max(if unit == "transactions" { 1.5 } else { 0.0 });
    assert!(
        (logged - netperf_count).abs() <= tolerance,
        "{kind}: guest logged {logged} {unit}, netperf reports {netperf_count}:\n{}",
        report.output
    );
}

fn request_response(guest: &Guest, test: &str, sizes: &str) {
    let mut arguments = control_arguments(guest, test, TEST_SECONDS);
    arguments.extend(["--".into(), "-r".into(), sizes.into()]);
    let report = netperf(&arguments, 5);
    check_timing(&report, TEST_SECONDS, Duration::from_secs(10));
    check_count(guest, test, &report, report.rate * report.elapsed_seconds, "transactions");
}

#[test]
fn request_response_sizes() {
    let guest = Guest::boot_to_listening(GuestOptions::default());
    for sizes in ["1,1", "64,1024", "6000,6000", "65536,65536"] {
        request_response(&guest, "TCP_RR", sizes);
    }
    for sizes in ["1,1", "1400,1400"] {
        request_response(&guest, "UDP_RR", sizes);
    }
}

#[test]
fn connect_and_stream_tests() {
    let guest = Guest::boot_to_listening(GuestOptions::default());

    // TCP_CRR ends only at the server's deadline, 4 s after netperf's.
    let report = netperf(&control_arguments(&guest, "TCP_CRR", TEST_SECONDS), 5);
    check_timing(&report, TEST_SECONDS, Duration::from_secs(12));
    check_count(&guest, "TCP_CRR", &report, report.rate * report.elapsed_seconds, "transactions");

    // Stream rates are 10^6 bits per second.
    let report = netperf(&control_arguments(&guest, "TCP_STREAM", TEST_SECONDS), 4);
    check_timing(&report, TEST_SECONDS, Duration::from_secs(10));
    check_count(&guest, "TCP_STREAM", &report, report.rate * 1e6 / 8.0 * report.elapsed_seconds, "bytes");

    // TCP_MAERTS: netperf counts what it read, the guest what it sent. Data
    // still in QEMU's user network and the host's auto-tuned socket buffers
    // when netperf's timer fires (a few MiB) is counted by the guest only.
    // So the guest's count may exceed netperf's by that much, but never
    // fall short of it.
    let report = netperf(&control_arguments(&guest, "TCP_MAERTS", TEST_SECONDS), 4);
    check_timing(&report, TEST_SECONDS, Duration::from_secs(10));
    let received = report.rate * 1e6 / 8.0 * report.elapsed_seconds;
    let sent = guest_count(&guest, "TCP_MAERTS", "bytes");
    assert!(sent >= received * 0.99, "guest sent {sent} bytes, netperf read {received}:\n{}", report.output);
    assert!(
        sent <= received * 1.01 + HOST_BUFFER_ALLOWANCE_BYTES,
        "guest sent {sent} bytes, netperf read only {received}:\n{}",
        report.output
    );

    // Three iterations on one control connection; netperf exits at once
    // after the last because the guest closes the control connection.
    let mut arguments = control_arguments(&guest, "TCP_STREAM", TEST_SECONDS);
    arguments.extend(["-i".into(), "3,3".into()]);
    let report = netperf(&arguments, 4);
    check_timing(&report, TEST_SECONDS, Duration::from_secs(15));
}

#[test]
fn latency_output_and_remote_cpu() {
    let guest = Guest::boot_to_listening(GuestOptions::default());

    let mut arguments = control_arguments(&guest, "TCP_RR", TEST_SECONDS);
    arguments.extend(["--".into(), "-o".into(), "MIN_LATENCY,MEAN_LATENCY,P50_LATENCY,P99_LATENCY,TRANSACTION_RATE".into()]);
    let start = Instant::now();
    let run = run_netperf(&arguments, NETPERF_TIMEOUT).unwrap();
    assert!(run.status.success(), "{}{}", run.stdout, run.stderr);
    let values: Vec<f64> = run
        .stdout
        .lines()
        .last()
        .unwrap_or_default()
        .split(',')
        .map(|value| value.trim().parse().unwrap_or(f64::NAN))
        .collect();
    assert_eq!(values.len(), 5, "unexpected -o output: {}", run.stdout);
    assert!(values.iter().all(|value| *value > 0.0), "non-positive figures: {}", run.stdout);
    assert!(values[0] <= values[2], "min above p50: {}", run.stdout);
    assert!(values[2] <= values[3], "p50 above p99: {}", run.stdout);
    assert!(start.elapsed() < Duration::from_secs(10));

    // -C: the guest measures its CPU from halted time and reports it.
    let mut arguments = control_arguments(&guest, "TCP_RR", TEST_SECONDS);
    arguments.push("-C".into());
    let report = netperf(&arguments, 5);
    check_timing(&report, TEST_SECONDS, Duration::from_secs(10));
    let cpu_line = report
        .output
        .lines()
        .find(|line| line.split_whitespace().count() >= 8 && line.split_whitespace().all(|word| word.parse::<f64>().is_ok()))
        .unwrap_or_else(|| panic!("no CPU result line:\n{}", report.output));
    let remote_cpu: f64 = cpu_line.split_whitespace().nth(7).unwrap().parse().unwrap();
    assert!(remote_cpu > 0.0, "remote CPU {remote_cpu}% not measured:\n{}", report.output);
    assert!(remote_cpu <= 100.0, "remote CPU {remote_cpu}% above 100%:\n{}", report.output);
}

#[test]
fn two_clients_at_once() {
    let guest = Guest::boot_to_listening(GuestOptions::default());
    let arguments = control_arguments(&guest, "TCP_RR", TEST_SECONDS);
    let second = arguments.clone();
    let other = std::thread::spawn(move || netperf(&second, 5));
    let first = netperf(&arguments, 5);
    let second = other.join().expect("the second netperf thread finished");
    check_timing(&first, TEST_SECONDS, Duration::from_secs(15));
    check_timing(&second, TEST_SECONDS, Duration::from_secs(15));
}

#[test]
fn services_without_control_connection() {
    let guest = Guest::boot_to_listening(GuestOptions::default());
    let ports = guest.ports().clone();
    for (test, port, column) in [("TCP_STREAM", ports.discard, 4), ("TCP_MAERTS", ports.chargen, 4), ("TCP_RR", ports.echo, 5)] {
        let arguments: Vec<String> = ["-N", "-H", "127.0.0.1", "-t", test, "-l", "2", "--", "-P"]
            .into_iter()
            .map(String::from)
            .chain([format!(",{port}")])
            .collect();
        let report = netperf(&arguments, column);
        check_timing(&report, TEST_SECONDS, Duration::from_secs(10));
    }
}

/// Returns the first captured netperf request in `capture`.
fn captured_request(capture: &str) -> Vec<u8> {
    let hex = capture
        .lines()
        .find_map(|line| line.trim().strip_prefix("RAW C>S "))
        .expect("the capture has a request");
    (0..hex.len()).step_by(2).map(|index| u8::from_str_radix(&hex[index..index + 2], 16).expect("hex")).collect()
}

/// Reads one 656-byte reply, or returns `None` when the guest closed the
/// connection first.
fn read_reply(connection: &mut TcpStream) -> Option<Vec<u8>> {
    connection.set_read_timeout(Some(COMMAND_TIMEOUT)).unwrap();
    let mut reply = vec![0u8; 656];
    connection.read_exact(&mut reply).ok()?;
    Some(reply)
}

fn serv_errno(reply: &[u8]) -> i32 {
    i32::from_be_bytes(reply[4..8].try_into().expect("4 bytes"))
}

#[test]
fn hostile_control_input_then_normal_test() {
    let guest = Guest::boot_to_listening(GuestOptions { console_socket: true, ..GuestOptions::default() });
    let control = std::net::SocketAddr::from(([127, 0, 0, 1], guest.ports().netperf_control));
    let connect = || TcpStream::connect_timeout(&control, COMMAND_TIMEOUT).expect("control port accepts");

    // Random bytes: a full message of garbage gets an error reply or a close.
    let mut connection = connect();
    let garbage: Vec<u8> = (0..656u32).map(|index| (index.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    connection.write_all(&garbage).unwrap();
    if let Some(reply) = read_reply(&mut connection) {
        assert_ne!(serv_errno(&reply), 0, "garbage was accepted");
    }
    drop(connection);

    // A truncated message followed by end-of-file.
    let mut connection = connect();
    connection.write_all(&captured_request(TCP_RR_CAPTURE)[..300]).unwrap();
    connection.shutdown(Shutdown::Write).unwrap();
    assert!(read_reply(&mut connection).is_none(), "a truncated request got a reply");

    // An unknown request type gets errno 998.
    let mut connection = connect();
    let mut unknown = captured_request(TCP_RR_CAPTURE);
    unknown[0..4].copy_from_slice(&1234i32.to_be_bytes());
    connection.write_all(&unknown).unwrap();
    let reply = read_reply(&mut connection).expect("an unknown type gets a reply");
    assert_eq!(serv_errno(&reply), 998);

    // An unsupported test (IPv6) gets EAFNOSUPPORT on the same connection.
    connection.write_all(&captured_request(TCP_RR_IPV6_CAPTURE)).unwrap();
    let reply = read_reply(&mut connection).expect("an unsupported test gets a reply");
    assert_eq!(serv_errno(&reply), 97);
    drop(connection);

    // A control connection that closes mid-test.
    let mut connection = connect();
    connection.write_all(&captured_request(TCP_RR_CAPTURE)).unwrap();
    let reply = read_reply(&mut connection).expect("a TCP_RR request gets a response");
    assert_eq!(serv_errno(&reply), 0);
    drop(connection);

    // A data connection that never arrives: the server's deadline (the
    // captured test length, 2 s, plus 4 s) ends the test and the results
    // still come.
    let mut connection = connect();
    connection.write_all(&captured_request(TCP_RR_CAPTURE)).unwrap();
    let reply = read_reply(&mut connection).expect("a TCP_RR request gets a response");
    assert_eq!(serv_errno(&reply), 0);
    let results = read_reply(&mut connection).expect("results arrive after the server deadline");
    assert_eq!(i32::from_be_bytes(results[0..4].try_into().unwrap()), 99);
    drop(connection);

    // The service still runs a normal test.
    let report = netperf(&control_arguments(&guest, "TCP_RR", TEST_SECONDS), 5);
    check_timing(&report, TEST_SECONDS, Duration::from_secs(10));

    let mut console = guest.console(COMMAND_TIMEOUT).expect("console socket accepts");
    let stats = console.command("stats", COMMAND_TIMEOUT).unwrap();
    let unknown_requests = field(&stats, "netserver_errors", &[], "unknown_request_type").expect("netserver_errors record");
    assert!(unknown_requests >= 1, "unknown request not counted:\n{stats}");
    let unsupported = field(&stats, "netserver_errors", &[], "unsupported_request").unwrap_or(0)
        + field(&stats, "netserver_errors", &[], "unsupported_test").unwrap_or(0);
    assert!(unsupported >= 1, "unsupported test not counted:\n{stats}");
    let missing = field(&stats, "netserver_errors", &[], "data_connection_missing").unwrap();
    assert!(missing >= 1, "missing data connection not counted:\n{stats}");
    let aborted = field(&stats, "netserver", &[], "tests_aborted").unwrap()
        + field(&stats, "netserver_errors", &[], "control_closed_during_test").unwrap();
    assert!(aborted >= 1, "abandoned test not counted:\n{stats}");
}
