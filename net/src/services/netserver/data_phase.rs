//! The data phase of each test, from the bound data socket to the end of
//! the test, counting bytes, calls and transactions.
//!
//! How each test ends, from the server's side of netperf 2.7.0:
//!
//! | test | normal end | server deadline |
//! |---|---|---|
//! | `TCP_RR` | end-of-file from netperf, or the transaction count | T + 4 s, safety net |
//! | `TCP_CRR` | the transaction count | T + 4 s: the normal end of a timed test |
//! | `TCP_STREAM` | end-of-file from netperf | T + 4 s, safety net |
//! | `TCP_MAERTS` | the byte count, or a send error when netperf closes | exactly T: the normal end of a timed test |
//! | `UDP_RR` | a zero-length datagram, or the transaction count | T + 4 s, safety net |
//!
//! The whole phase runs under one timeout, so the timer queue gets one
//! entry per test rather than one per read. When the deadline passes, the
//! phase's future is dropped, and with it the data sockets: connections
//! close with a FIN and listeners stop listening.

use alloc::vec;
use alloc::vec::Vec;
use core::future::Future;

use smoltcp::time::{Duration, Instant};

use super::data_socket::{DataEndpoint, DataSocket, STREAM_CHUNK_BYTES};
use crate::netperf::{TestKind, TestLength, TestParameters};
use crate::tcp::{TcpListener, TcpStream};
use crate::timer::Timers;
use crate::udp::UdpSocket;
use crate::NetError;

/// Largest buffer a test's loop allocates. Longer requests, responses and
/// sends go through it in pieces.
const MAX_CHUNK_BYTES: u32 = 64 * 1024;
/// How long a UDP socket stays open after its last response is queued.
/// Dropping a UDP socket discards the datagrams it still queues, and the
/// socket layer offers no way to wait until its send queue is empty. The
/// interface task polls many times within this delay.
const UDP_DRAIN_DELAY: Duration = Duration::from_millis(10);

/// Counters of one data phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct DataCounters {
    pub(super) bytes_received: u64,
    pub(super) receive_calls: u64,
    pub(super) bytes_sent: u64,
    pub(super) send_calls: u64,
    pub(super) transactions: u64,
    /// Data connections accepted, or datagrams received for UDP.
    pub(super) arrivals: u64,
}

/// The reason a data phase ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ending {
    /// netperf ended it: end-of-file, a zero-length datagram, or (for
    /// `TCP_MAERTS`) a send error once netperf closed.
    Peer,
    /// The transaction or byte count of a count-based test was reached.
    CountReached,
    /// The server deadline passed.
    Deadline,
    /// The data connection was reset.
    Reset,
}

/// The counters and the end of a data phase, for the control connection.
#[derive(Clone, Copy, Debug)]
pub(super) struct PhaseReport {
    pub(super) counters: DataCounters,
    pub(super) ending: Ending,
    pub(super) finished_at: Instant,
    /// Bytes of the data socket's buffer in each direction.
    pub(super) buffer_bytes: u32,
}

/// Runs the data phase of `parameters.kind` on `socket` until it ends or
/// `deadline` passes. The data sockets are closed when this returns.
pub(super) async fn run(
    socket: DataSocket,
    parameters: TestParameters,
    deadline: Option<Instant>,
    timers: Timers,
) -> PhaseReport {
    let mut counters = DataCounters::default();
    let DataSocket {
        endpoint,
        lease,
        buffer_bytes,
        ..
    } = socket;
    let phase = Phase {
        parameters: &parameters,
        counters: &mut counters,
        timers: &timers,
    };
    let ending = match endpoint {
        DataEndpoint::Tcp(listener) => within(&timers, deadline, phase.run_tcp(listener)).await,
        DataEndpoint::Udp(socket) => within(&timers, deadline, phase.udp_rr(socket)).await,
    };
    drop(lease);
    PhaseReport {
        counters,
        ending,
        finished_at: timers.now(),
        buffer_bytes,
    }
}

/// Runs `future` until `deadline`, if there is one.
async fn within(
    timers: &Timers,
    deadline: Option<Instant>,
    future: impl Future<Output = Ending>,
) -> Ending {
    match deadline {
        Some(deadline) => timers
            .timeout(deadline, future)
            .await
            .unwrap_or(Ending::Deadline),
        None => future.await,
    }
}

/// One test's parameters and counters, borrowed by its loop.
struct Phase<'a> {
    parameters: &'a TestParameters,
    counters: &'a mut DataCounters,
    timers: &'a Timers,
}

impl Phase<'_> {
    async fn run_tcp(self, mut listener: TcpListener) -> Ending {
        if self.parameters.kind == TestKind::TcpCrr {
            return self.tcp_crr(listener).await;
        }
        let Ok(mut stream) = listener.accept().await else {
            return Ending::Reset;
        };
        // One data connection per test: later connection attempts get a
        // reset instead of waiting in a backlog that no task accepts from.
        drop(listener);
        self.counters.arrivals += 1;
        stream.set_no_delay(self.parameters.no_delay);
        match self.parameters.kind {
            TestKind::TcpStream => self.tcp_stream(stream).await,
            TestKind::TcpMaerts => self.tcp_maerts(stream).await,
            _ => self.tcp_rr(stream).await,
        }
    }

    /// Reads `request_size` bytes, writes `response_size` bytes, and so on
    /// until end-of-file. A partly received request is discarded.
    async fn tcp_rr(mut self, mut stream: TcpStream) -> Ending {
        let mut buffer = chunk_buffer(
            self.parameters
                .request_size_bytes
                .max(self.parameters.response_size_bytes),
        );
        loop {
            match self.transaction(&mut stream, &mut buffer).await {
                Ok(true) => {}
                Ok(false) => return Ending::Peer,
                Err(_) => return Ending::Reset,
            }
            self.counters.transactions += 1;
            if self.count_reached() {
                return Ending::CountReached;
            }
        }
    }

    /// Accepts a connection per transaction, serves one request on it and
    /// closes it first, because netperf waits for the server's FIN.
    async fn tcp_crr(mut self, mut listener: TcpListener) -> Ending {
        let mut buffer = chunk_buffer(
            self.parameters
                .request_size_bytes
                .max(self.parameters.response_size_bytes),
        );
        loop {
            let Ok(mut stream) = listener.accept().await else {
                return Ending::Reset;
            };
            self.counters.arrivals += 1;
            stream.set_no_delay(self.parameters.no_delay);
            // A connection that ends or resets before its request is
            // complete is closed, and the test goes on.
            if let Ok(true) = self.transaction(&mut stream, &mut buffer).await {
                self.counters.transactions += 1;
            }
            drop(stream);
            if self.count_reached() {
                return Ending::CountReached;
            }
        }
    }

    /// Receives and counts until end-of-file. A count-based test also ends
    /// at end-of-file: netperf closes once it has sent its bytes, and
    /// closing earlier would reset a sender that is still sending.
    async fn tcp_stream(mut self, mut stream: TcpStream) -> Ending {
        let receive_bytes = self.parameters.chosen_receive_size(STREAM_CHUNK_BYTES);
        let mut buffer = chunk_buffer(receive_bytes);
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) => return Ending::Peer,
                Ok(count) => self.count_received(count),
                Err(_) => return Ending::Reset,
            }
        }
    }

    /// Sends `send_size` chunks until the deadline (timed) or the byte
    /// count. A send error means netperf has closed its socket, which it
    /// may do when its own timer fires first: that is a normal end.
    async fn tcp_maerts(mut self, mut stream: TcpStream) -> Ending {
        let send_bytes = u64::from(self.parameters.chosen_send_size(STREAM_CHUNK_BYTES).max(1));
        let buffer = chunk_buffer(send_bytes as u32);
        let limit_bytes = match self.parameters.length {
            TestLength::Bytes(bytes) => u64::from(bytes),
            _ => u64::MAX,
        };
        while self.counters.bytes_sent < limit_bytes {
            let chunk_bytes = send_bytes.min(limit_bytes - self.counters.bytes_sent);
            if self
                .write_counted(&mut stream, &buffer, chunk_bytes)
                .await
                .is_err()
            {
                return Ending::Peer;
            }
        }
        Ending::CountReached
    }

    /// Replies to each datagram with `response_size` bytes sent to its
    /// source, until a zero-length datagram or the transaction count.
    async fn udp_rr(mut self, mut socket: UdpSocket) -> Ending {
        let mut request = vec![0u8; self.parameters.request_size_bytes.max(1) as usize];
        let response = vec![0u8; self.parameters.response_size_bytes as usize];
        loop {
            let (length, source) = socket.recv_from(&mut request).await;
            if length == 0 {
                return Ending::Peer;
            }
            self.counters.arrivals += 1;
            self.count_received(length);
            // A reply that cannot be routed is lost like a dropped
            // datagram, and netperf's own timer ends the test.
            if socket.send_to(&response, source).await.is_ok() {
                self.counters.send_calls += 1;
                self.counters.bytes_sent += response.len() as u64;
            }
            self.counters.transactions += 1;
            if self.count_reached() {
                self.timers.sleep(UDP_DRAIN_DELAY).await;
                return Ending::CountReached;
            }
        }
    }

    /// Reads exactly one request and writes one response. Returns
    /// `Ok(false)` at end-of-file before the request was complete.
    async fn transaction(
        &mut self,
        stream: &mut TcpStream,
        buffer: &mut [u8],
    ) -> Result<bool, NetError> {
        let mut remaining = u64::from(self.parameters.request_size_bytes);
        while remaining > 0 {
            // Never read past this request: with a burst, the next one
            // follows in the same segment.
            let wanted = remaining.min(buffer.len() as u64) as usize;
            let count = stream.read(&mut buffer[..wanted]).await?;
            if count == 0 {
                return Ok(false);
            }
            self.count_received(count);
            remaining -= count as u64;
        }
        self.write_counted(
            stream,
            buffer,
            u64::from(self.parameters.response_size_bytes),
        )
        .await?;
        Ok(true)
    }

    /// Writes `total_bytes` from `buffer`, repeated as needed, counting each
    /// write call as it completes so that a deadline mid-way leaves exact
    /// counts.
    async fn write_counted(
        &mut self,
        stream: &mut TcpStream,
        buffer: &[u8],
        total_bytes: u64,
    ) -> Result<(), NetError> {
        let mut remaining = total_bytes;
        while remaining > 0 {
            let wanted = remaining.min(buffer.len() as u64) as usize;
            let count = stream.write(&buffer[..wanted]).await?;
            self.counters.send_calls += 1;
            self.counters.bytes_sent += count as u64;
            remaining -= count as u64;
        }
        Ok(())
    }

    fn count_received(&mut self, count: usize) {
        self.counters.receive_calls += 1;
        self.counters.bytes_received += count as u64;
    }

    fn count_reached(&self) -> bool {
        matches!(self.parameters.length, TestLength::Transactions(count) if self.counters.transactions >= u64::from(count))
    }
}

/// Allocates a loop buffer of `bytes`, at least 1 and at most
/// [`MAX_CHUNK_BYTES`]. Its content does not matter to netperf.
fn chunk_buffer(bytes: u32) -> Vec<u8> {
    vec![0u8; bytes.clamp(1, MAX_CHUNK_BYTES) as usize]
}
