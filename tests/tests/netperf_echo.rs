//! netperf's request/response tests against the guest's echo service. With
//! `-N` netperf opens no control connection, and `-P ,PORT` sends the
//! requests to PORT, where echo returns each 1-byte request as the 1-byte
//! response netperf waits for.

use std::time::Duration;

use tests::echo_checks::check_no_fault;
use tests::netperf::run_netperf;
use tests::{Guest, GuestOptions};

/// A 2-second test finishes in about 2 s; the rest covers netperf's setup
/// on a loaded host.
const NETPERF_TIMEOUT: Duration = Duration::from_secs(60);

fn check_request_response(test_name: &str) {
    let mut guest = Guest::boot_to_listening(GuestOptions::default());
    let echo_port = guest.ports().echo;
    let arguments: Vec<String> = [
        "-N",
        "-H",
        "127.0.0.1",
        "-t",
        test_name,
        "-l",
        "2",
        "--",
        "-P",
    ]
    .into_iter()
    .map(String::from)
    .chain([format!(",{echo_port}"), "-r".into(), "1,1".into()])
    .collect();

    let run = run_netperf(&arguments, NETPERF_TIMEOUT)
        .unwrap_or_else(|error| panic!("{test_name}: {error}"));
    let report = format!(
        "netperf {}\nstdout:\n{}stderr:\n{}",
        arguments.join(" "),
        run.stdout,
        run.stderr
    );
    assert!(
        run.status.success(),
        "{test_name}: netperf exited with {}\n{report}",
        run.status
    );
    let rate = run
        .transaction_rate()
        .unwrap_or_else(|| panic!("{test_name}: no transaction rate in the report\n{report}"));
    assert!(
        rate > 0.0,
        "{test_name}: transaction rate {rate} is not positive\n{report}"
    );
    check_no_fault(&mut guest);
}

#[test]
fn netperf_tcp_rr_against_echo() {
    check_request_response("TCP_RR");
}

#[test]
fn netperf_udp_rr_against_echo() {
    check_request_response("UDP_RR");
}
