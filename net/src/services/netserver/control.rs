//! One control connection: reads netperf's requests, replies to them, runs
//! each test's data phase as its own task and sends the results.
//!
//! The [`Session`] state machine decides what each message means, and this
//! module does the I/O. netperf speaks first, so nothing is ever sent
//! unasked. After its last results netperf half-closes the connection and
//! waits up to 60 s for the server's FIN, so end-of-file closes the
//! connection at once.

use alloc::rc::Rc;
use core::fmt;
use core::pin::pin;

use futures_util::future::{select, Either};
use log::info;
use smoltcp::time::Duration;
use smoltcp::wire::IpEndpoint;

use super::data_phase::{self, Ending, PhaseReport};
use super::data_socket::DataSocket;
use super::stats::ErrorReason;
use super::test_task::TestTask;
use super::{CpuCounters, Service};
use crate::netperf::{
    errno, Action, ControlReader, Event, OmniResponse, RawMessage, RejectReason, Session, TestKind,
    TestParameters,
};
use crate::tcp::TcpStream;
use crate::NetError;

/// How long an idle control connection may wait for its next request.
/// netperf sends each request right after the previous results, so only a
/// stalled or hostile client waits this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Largest `UDP_RR` request or response: one datagram in a 1500-byte
/// Ethernet MTU, less the IPv4 and UDP headers.
///
/// NOTE: the stack is built without smoltcp's IPv4 fragmentation, so a
/// larger datagram would be dropped on the way out and its fragments on the
/// way in, and netperf would wait at 0 transactions per second. Such tests
/// are rejected with `EMSGSIZE` instead.
const MAX_UDP_RR_BYTES: u32 = 1500 - 20 - 8;
/// Bytes read from the control connection per call.
const READ_CHUNK_BYTES: usize = 1024;

/// Whether the connection continues after handling a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

/// The peer of a control connection, for log lines.
#[derive(Clone, Copy)]
struct Peer(Option<IpEndpoint>);

impl fmt::Display for Peer {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(endpoint) => write!(formatter, "{endpoint}"),
            None => formatter.write_str("an unknown peer"),
        }
    }
}

/// The event that ended the wait for a running test.
enum TestEvent {
    Finished(PhaseReport),
    Control(Result<usize, NetError>),
}

struct ControlConnection {
    service: Rc<Service>,
    stream: TcpStream,
    peer: Peer,
    reader: ControlReader,
    session: Session,
}

/// Serves one control connection until netperf closes it or it fails.
pub(super) async fn serve_connection(service: Rc<Service>, stream: TcpStream) {
    let peer = Peer(stream.remote_endpoint());
    let mut connection = ControlConnection {
        service,
        stream,
        peer,
        reader: ControlReader::new(),
        session: Session::new(),
    };
    connection.run().await;
    connection.stream.close();
}

impl ControlConnection {
    async fn run(&mut self) {
        let mut chunk = [0u8; READ_CHUNK_BYTES];
        loop {
            let deadline = self.service.timers.now() + IDLE_TIMEOUT;
            let read = self
                .service
                .timers
                .timeout(deadline, self.stream.read(&mut chunk))
                .await;
            let count = match read {
                Ok(Ok(0)) => return self.end_of_file(),
                Ok(Ok(count)) => count,
                Ok(Err(error)) => {
                    return self.record(ErrorReason::ControlConnectionFailed, &error_text(error))
                }
                Err(_) => {
                    return self.record(
                        ErrorReason::ControlIdleTimeout,
                        &"no request within the idle timeout",
                    )
                }
            };
            if self.handle_chunk(&chunk[..count]).await == Flow::Stop {
                return;
            }
        }
    }

    fn end_of_file(&mut self) {
        let buffered_bytes = self.reader.buffered_bytes();
        if buffered_bytes > 0 {
            self.record(
                ErrorReason::TruncatedMessage,
                &format_args!("end-of-file after {buffered_bytes} of 656 bytes"),
            );
        }
        self.session.handle(Event::EndOfFile);
    }

    async fn handle_chunk(&mut self, chunk: &[u8]) -> Flow {
        let mut input = chunk;
        while let Some(message) = self.reader.push(&mut input) {
            let flow = match self.session.handle(Event::Message(&message)) {
                Action::StartTest(parameters) => self.run_test(parameters, &mut input).await,
                Action::Reject(reason) => self.reject(reason).await,
                Action::Ignore => Flow::Continue,
                Action::AbortTest | Action::Close => Flow::Stop,
            };
            if flow == Flow::Stop {
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    async fn reject(&mut self, reason: RejectReason) -> Flow {
        match reason {
            RejectReason::UnknownType(message_type) => self.record(
                ErrorReason::UnknownRequestType,
                &format_args!("message type {message_type}"),
            ),
            RejectReason::Unsupported(unsupported) => {
                self.record(ErrorReason::UnsupportedRequest, &unsupported)
            }
        }
        self.send(&reason.reply()).await
    }

    /// Sends an error response for a test that cannot run. The connection
    /// stays open for the next request.
    async fn reject_test(&mut self, serv_errno: i32) -> Flow {
        let flow = self.send(&OmniResponse::error(serv_errno).encode()).await;
        self.session.handle(Event::TestFinished);
        flow
    }

    /// Binds the data socket, sends the response, runs the data phase while
    /// watching the control connection, and sends the results.
    async fn run_test(&mut self, parameters: TestParameters, leftover: &mut &[u8]) -> Flow {
        let kind = parameters.kind;
        if matches!(kind, TestKind::TcpCc | TestKind::UdpStream) {
            self.record(
                ErrorReason::UnsupportedTest,
                &format_args!("{kind} is not served"),
            );
            return self.reject_test(errno::EOPNOTSUPP).await;
        }
        let largest_bytes = parameters
            .request_size_bytes
            .max(parameters.response_size_bytes);
        if kind == TestKind::UdpRr && largest_bytes > MAX_UDP_RR_BYTES {
            self.record(
                ErrorReason::UnsupportedTest,
                &format_args!("{kind} size {largest_bytes} exceeds one unfragmented datagram ({MAX_UDP_RR_BYTES} bytes)"),
            );
            return self.reject_test(errno::EMSGSIZE).await;
        }
        let service = self.service.clone();
        let Some(socket) = DataSocket::open(&service.ports, &service.stack, &parameters) else {
            let port = parameters.data_port;
            self.record(
                ErrorReason::DataPortUnavailable,
                &format_args!("{kind} data port {port} (0: any) is taken"),
            );
            return self.reject_test(errno::EADDRINUSE).await;
        };

        let measures_cpu = parameters.measure_cpu && service.cpu.is_some();
        let response = parameters.response(&socket.setup(measures_cpu));
        if self.send(&response.encode()).await == Flow::Stop {
            return Flow::Stop;
        }
        service.stats.record_test_started(kind);
        let started_at = service.timers.now();
        let cpu_at_start = service.read_cpu();
        let deadline = parameters
            .server_deadline()
            .map(|delay| started_at + Duration::from_micros(delay.as_micros() as u64));
        let phase = data_phase::run(socket, parameters.clone(), deadline, service.timers.clone());
        let task = TestTask::spawn(&service.spawner, phase);

        let Some(report) = self.watch(&task, leftover).await else {
            drop(task);
            service.stats.record_test_aborted();
            return Flow::Stop;
        };
        let cpu =
            measures_cpu.then(|| super::results::cpu_utilisation(cpu_at_start, service.read_cpu()));
        let summary = super::results::TestSummary {
            parameters: &parameters,
            report: &report,
            started_at,
            cpu,
        };
        self.record_ending(&summary);
        info!("netserver: {kind} from {} ended: {summary}", self.peer);
        if self.send(&summary.results().encode()).await == Flow::Stop {
            return Flow::Stop;
        }
        service
            .stats
            .record_test_completed(report.counters.bytes_received, report.counters.bytes_sent);
        self.session.handle(Event::TestFinished);
        Flow::Continue
    }

    /// Waits for the data phase to end. Returns `None` when the control
    /// connection ends or netperf sends a message first: the caller then
    /// aborts the test and closes the connection.
    async fn watch(&mut self, task: &TestTask, leftover: &mut &[u8]) -> Option<PhaseReport> {
        if self.take_message(leftover) {
            self.record(
                ErrorReason::MessageDuringTest,
                &"a request arrived together with the previous one",
            );
            return None;
        }
        let mut chunk = [0u8; READ_CHUNK_BYTES];
        loop {
            let event = {
                let finished = pin!(task.finished());
                let read = pin!(self.stream.read(&mut chunk));
                match select(finished, read).await {
                    Either::Left((report, _)) => TestEvent::Finished(report),
                    Either::Right((read, _)) => TestEvent::Control(read),
                }
            };
            match event {
                TestEvent::Finished(report) => return Some(report),
                TestEvent::Control(Ok(0)) => {
                    self.session.handle(Event::EndOfFile);
                    self.record(ErrorReason::ControlClosedDuringTest, &"end-of-file");
                    return None;
                }
                TestEvent::Control(Err(error)) => {
                    self.session.handle(Event::EndOfFile);
                    self.record(ErrorReason::ControlClosedDuringTest, &error_text(error));
                    return None;
                }
                TestEvent::Control(Ok(count)) => {
                    if self.take_message(&mut &chunk[..count]) {
                        self.record(
                            ErrorReason::MessageDuringTest,
                            &"netperf sent a message before the results",
                        );
                        return None;
                    }
                }
            }
        }
    }

    /// Feeds bytes that arrived during a test to the reader. Returns whether
    /// they completed a message, which aborts the test.
    fn take_message(&mut self, input: &mut &[u8]) -> bool {
        match self.reader.push(input) {
            Some(message) => {
                self.session.handle(Event::Message(&message));
                true
            }
            None => false,
        }
    }

    /// Counts the errors a test's ending reveals.
    fn record_ending(&self, summary: &super::results::TestSummary<'_>) {
        let kind = summary.parameters.kind;
        let counters = summary.report.counters;
        let reason = match summary.report.ending {
            Ending::Deadline if counters.arrivals == 0 => ErrorReason::DataConnectionMissing,
            Ending::Deadline if !matches!(kind, TestKind::TcpCrr | TestKind::TcpMaerts) => {
                ErrorReason::DataPhaseDeadline
            }
            Ending::Reset => ErrorReason::DataConnectionReset,
            _ => return,
        };
        self.record(reason, &format_args!("{kind}"));
    }

    async fn send(&mut self, message: &RawMessage) -> Flow {
        match self.stream.write_all(message).await {
            Ok(()) => Flow::Continue,
            Err(error) => {
                self.record(ErrorReason::ControlConnectionFailed, &error_text(error));
                Flow::Stop
            }
        }
    }

    fn record(&self, reason: ErrorReason, detail: &dyn fmt::Display) {
        self.service.stats.record_error(reason, &self.peer, detail);
    }
}

impl Service {
    fn read_cpu(&self) -> CpuCounters {
        self.cpu.map(|read| read()).unwrap_or_default()
    }
}

fn error_text(error: NetError) -> impl fmt::Display {
    struct Text(NetError);
    impl fmt::Display for Text {
        fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(formatter, "{:?}", self.0)
        }
    }
    Text(error)
}
