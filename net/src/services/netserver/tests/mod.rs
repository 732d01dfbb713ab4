//! Host tests of the netperf service: a netperf-like client on a second
//! smoltcp stack drives the service over the in-memory cable, for every
//! served test and for bad input, each followed by a test that must still
//! succeed.

mod bad_input;
mod client;
mod harness;
mod messages;
mod request_response;
mod streams_and_sessions;

use smoltcp::time::Duration;

use super::ErrorReason;
use client::{Control, Counts, DataClient, Length};
use harness::{ClientSide, World};
use messages::{Capture, Request, Response, Results};

/// The length of most tests (netperf `-l 1`).
const ONE_SECOND: Length = Length::Seconds(1);
/// Virtual time a one-second test may take, server deadline included.
const LIMIT: Duration = Duration::from_secs(30);

/// The data phase a test runs, with netperf's sizes.
#[derive(Clone, Copy, Debug)]
enum Phase {
    TcpRr {
        request_bytes: usize,
        response_bytes: usize,
        burst: u64,
    },
    UdpRr {
        request_bytes: usize,
        response_bytes: usize,
    },
    TcpCrr {
        request_bytes: usize,
        response_bytes: usize,
    },
    TcpStream {
        send_bytes: usize,
    },
    TcpMaerts,
}

impl Phase {
    fn capture(self) -> Capture {
        match self {
            Phase::TcpRr { .. } => Capture::TcpRr,
            Phase::UdpRr { .. } => Capture::UdpRr,
            Phase::TcpCrr { .. } => Capture::TcpCrr,
            Phase::TcpStream { .. } => Capture::TcpStream,
            Phase::TcpMaerts => Capture::TcpMaerts,
        }
    }

    /// Returns the captured request with this phase's sizes and `length`.
    fn request(self, length: Length) -> Request {
        let test_length = match length {
            Length::Seconds(seconds) => seconds as i32,
            Length::Transactions(count) | Length::Bytes(count) => -(count as i32),
        };
        let request = Request::captured(self.capture()).length(test_length);
        match self {
            Phase::TcpRr {
                request_bytes,
                response_bytes,
                ..
            }
            | Phase::UdpRr {
                request_bytes,
                response_bytes,
            }
            | Phase::TcpCrr {
                request_bytes,
                response_bytes,
            } => request.sizes(request_bytes as u32, response_bytes as u32),
            Phase::TcpStream { .. } | Phase::TcpMaerts => request,
        }
    }
}

/// Everything one test produced, on both sides.
#[derive(Clone, Copy, Debug)]
struct TestRun {
    response: Response,
    counts: Counts,
    results: Results,
}

/// Runs one test on `control` like netperf: request, response, data phase,
/// results.
async fn run_test(
    control: &mut Control,
    side: &ClientSide,
    phase: Phase,
    request: Request,
    length: Length,
) -> TestRun {
    let response = control.request(&request).await;
    let data = DataClient::new(side, &response, length);
    let counts = match phase {
        Phase::TcpRr {
            request_bytes,
            response_bytes,
            burst,
        } => data.tcp_rr(request_bytes, response_bytes, burst).await,
        Phase::UdpRr {
            request_bytes,
            response_bytes,
        } => data.udp_rr(request_bytes, response_bytes).await,
        Phase::TcpCrr {
            request_bytes,
            response_bytes,
        } => data.tcp_crr(request_bytes, response_bytes).await,
        Phase::TcpStream { send_bytes } => data.tcp_stream(send_bytes).await,
        Phase::TcpMaerts => data.tcp_maerts().await,
    };
    let results = control.results().await;
    TestRun {
        response,
        counts,
        results,
    }
}

/// Connects, runs one test and closes like netperf. Returns the run and
/// whether the server closed the control connection after netperf's FIN.
async fn single_test(side: ClientSide, phase: Phase, length: Length) -> (TestRun, bool) {
    let mut control = Control::connect(&side).await;
    let run = run_test(&mut control, &side, phase, phase.request(length), length).await;
    (run, control.finish().await)
}

/// The default `TCP_RR`: 1-byte request and response, no burst.
const TCP_RR_1_1: Phase = Phase::TcpRr {
    request_bytes: 1,
    response_bytes: 1,
    burst: 0,
};

/// Checks that a request/response run's counters agree on both sides.
fn assert_transactions_match(run: &TestRun, request_bytes: u64, response_bytes: u64) {
    let (counts, results) = (run.counts, run.results);
    assert_eq!(results.serv_errno, 0, "results errno");
    assert!(counts.transactions > 0, "no transaction completed");
    assert_eq!(
        u64::from(results.transactions),
        counts.requests,
        "server transactions against requests sent"
    );
    assert_eq!(
        results.bytes_received,
        counts.requests * request_bytes,
        "server bytes received"
    );
    assert_eq!(
        results.bytes_sent,
        counts.requests * response_bytes,
        "server bytes sent"
    );
    assert_eq!(
        counts.bytes_received, results.bytes_sent,
        "client bytes received against server bytes sent"
    );
}

/// Checks that the service counted no error.
fn assert_no_errors(world: &World) {
    let stats = world.stats.snapshot();
    for reason in ErrorReason::ALL {
        assert_eq!(stats.error_count(reason), 0, "{reason}");
    }
}
