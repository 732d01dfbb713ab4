//! A small netperf 2.7.0 stand-in: it sends DO_OMNI requests built from
//! captured netperf traffic, reads the response, runs the data phase the
//! way netperf does and reads the results.
//!
//! netperf's behaviour reproduced here:
//! - its timer starts once the response has arrived;
//! - at the end of `TCP_RR` and `TCP_STREAM` it half-closes and reads until
//!   the server's FIN;
//! - `UDP_RR` ends with three zero-length datagrams;
//! - each `TCP_CRR` transaction waits for the server's FIN;
//! - `TCP_MAERTS` reads until end-of-file;
//! - after the last results it half-closes the control connection and waits
//!   for the server to close.

use alloc::vec;

use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpEndpoint;

use super::harness::{ClientSide, CONTROL_PORT, SERVER};
use super::messages::{Request, Response, Results};
use crate::netperf::{RawMessage, MESSAGE_BYTES};
use crate::tcp::TcpStream;
use crate::udp::UdpSocket;

/// netperf's control connection.
pub(super) struct Control {
    stream: TcpStream,
    side: ClientSide,
}

impl Control {
    pub(super) async fn connect(side: &ClientSide) -> Control {
        let remote = IpEndpoint::new(SERVER.into(), CONTROL_PORT);
        let stream = TcpStream::connect(&side.stack, remote, side.ports.next())
            .await
            .expect("control connects");
        Control {
            stream,
            side: side.clone(),
        }
    }

    /// Sends raw bytes, whatever they are.
    pub(super) async fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("control write");
    }

    /// Reads one 656-byte message. Returns `None` when the server closed first.
    pub(super) async fn receive(&mut self) -> Option<RawMessage> {
        let mut message = [0u8; MESSAGE_BYTES];
        match self.stream.read_exact(&mut message).await {
            Ok(true) => Some(message),
            Ok(false) => None,
            Err(error) => panic!("control connection failed mid-message: {error:?}"),
        }
    }

    /// Sends `request` and reads the response.
    pub(super) async fn request(&mut self, request: &Request) -> Response {
        self.send_bytes(&request.0).await;
        let message = self.receive().await.expect("a response");
        Response::decode(&message, self.side.timers.now())
    }

    pub(super) async fn results(&mut self) -> Results {
        let message = self.receive().await.expect("results");
        Results::decode(&message, self.side.timers.now())
    }

    /// Half-closes like netperf after its last test, and returns whether
    /// the server then closed the connection without sending anything.
    pub(super) async fn finish(mut self) -> bool {
        self.stream.close();
        let mut byte = [0u8; 1];
        matches!(self.stream.read(&mut byte).await, Ok(0))
    }

    /// Resets the connection, like a netperf killed mid-test.
    pub(super) fn abort(mut self) {
        self.stream.abort();
    }
}

/// How long the client's data phase runs.
#[derive(Clone, Copy, Debug)]
pub(super) enum Length {
    Seconds(u64),
    Transactions(u64),
    Bytes(u64),
}

/// What the client counted in its data phase.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Counts {
    /// Requests sent (RR), or connections made (CRR).
    pub(super) requests: u64,
    /// Responses received completely.
    pub(super) transactions: u64,
    pub(super) bytes_sent: u64,
    pub(super) bytes_received: u64,
    /// When the server's end-of-file arrived (stream tests).
    pub(super) end_of_file_at: Option<Instant>,
}

/// netperf's data-phase logic for each test.
pub(super) struct DataClient {
    side: ClientSide,
    remote: IpEndpoint,
    length: Length,
    /// netperf's timer: `response.received_at` + T.
    end: Option<Instant>,
}

impl DataClient {
    pub(super) fn new(side: &ClientSide, response: &Response, length: Length) -> DataClient {
        assert_eq!(response.serv_errno, 0, "the response must accept the test");
        let end = match length {
            Length::Seconds(seconds) => Some(response.received_at + Duration::from_secs(seconds)),
            _ => None,
        };
        let remote = IpEndpoint::new(SERVER.into(), response.data_port);
        DataClient {
            side: side.clone(),
            remote,
            length,
            end,
        }
    }

    fn timer_fired(&self) -> bool {
        self.end.is_some_and(|end| self.side.timers.now() >= end)
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(&self.side.stack, self.remote, self.side.ports.next())
            .await
            .expect("data connects")
    }

    /// `TCP_RR` with `burst` extra requests in flight (netperf `-b`).
    pub(super) async fn tcp_rr(
        &self,
        request_bytes: usize,
        response_bytes: usize,
        burst: u64,
    ) -> Counts {
        let mut stream = self.connect().await;
        let (request, mut response) = (vec![b'n'; request_bytes], vec![0u8; response_bytes]);
        let mut counts = Counts::default();
        loop {
            let may_send = match self.length {
                Length::Transactions(count) => counts.requests < count,
                _ => !self.timer_fired(),
            };
            let in_flight = counts.requests - counts.transactions;
            if may_send && in_flight <= burst {
                stream.write_all(&request).await.expect("request write");
                counts.requests += 1;
                counts.bytes_sent += request_bytes as u64;
                continue;
            }
            if in_flight == 0 || !may_send && self.end.is_some() {
                break;
            }
            assert!(
                stream
                    .read_exact(&mut response)
                    .await
                    .expect("response read"),
                "data connection closed early"
            );
            counts.transactions += 1;
            counts.bytes_received += response_bytes as u64;
        }
        // netperf half-closes and reads until the server's FIN, dropping
        // the responses still in flight.
        stream.close();
        counts.bytes_received += drain(&mut stream).await;
        counts
    }

    /// `UDP_RR`: one request datagram, one response datagram, then three
    /// zero-length datagrams at the end.
    pub(super) async fn udp_rr(&self, request_bytes: usize, response_bytes: usize) -> Counts {
        let mut socket =
            UdpSocket::bind(&self.side.stack, self.side.ports.next(), 8, 16 * 1024).expect("binds");
        let request = vec![b'n'; request_bytes];
        let mut buffer = vec![0u8; response_bytes + 1];
        let mut counts = Counts::default();
        while match self.length {
            Length::Transactions(count) => counts.requests < count,
            _ => !self.timer_fired(),
        } {
            socket
                .send_to(&request, self.remote)
                .await
                .expect("request send");
            counts.requests += 1;
            counts.bytes_sent += request_bytes as u64;
            let (length, source) = socket.recv_from(&mut buffer).await;
            assert_eq!(source, self.remote, "the response comes from the data port");
            assert_eq!(length, response_bytes, "response size");
            counts.transactions += 1;
            counts.bytes_received += length as u64;
        }
        for _ in 0..3 {
            socket
                .send_to(&[], self.remote)
                .await
                .expect("end-of-test datagram");
        }
        // Dropping the socket would discard datagrams not yet sent.
        self.side.timers.sleep(Duration::from_millis(10)).await;
        counts
    }

    /// `TCP_CRR`: a connection per transaction, which the server closes first.
    pub(super) async fn tcp_crr(&self, request_bytes: usize, response_bytes: usize) -> Counts {
        let (request, mut response) = (vec![b'n'; request_bytes], vec![0u8; response_bytes]);
        let mut counts = Counts::default();
        while match self.length {
            Length::Transactions(count) => counts.requests < count,
            _ => !self.timer_fired(),
        } {
            let mut stream = self.connect().await;
            counts.requests += 1;
            stream.write_all(&request).await.expect("request write");
            counts.bytes_sent += request_bytes as u64;
            assert!(
                stream
                    .read_exact(&mut response)
                    .await
                    .expect("response read"),
                "closed before the response"
            );
            counts.bytes_received += response_bytes as u64;
            let mut byte = [0u8; 1];
            assert_eq!(
                stream.read(&mut byte).await,
                Ok(0),
                "the server must close each connection first"
            );
            counts.transactions += 1;
        }
        counts
    }

    /// `TCP_STREAM`: send until the timer or the byte count, half-close,
    /// wait for the server's FIN.
    pub(super) async fn tcp_stream(&self, send_bytes: usize) -> Counts {
        let mut stream = self.connect().await;
        let chunk = vec![b'n'; send_bytes];
        let mut counts = Counts::default();
        loop {
            let remaining = match self.length {
                Length::Bytes(total) => total - counts.bytes_sent,
                _ if self.timer_fired() => 0,
                _ => u64::MAX,
            };
            if remaining == 0 {
                break;
            }
            let length = chunk.len().min(remaining.try_into().unwrap_or(usize::MAX));
            stream
                .write_all(&chunk[..length])
                .await
                .expect("stream write");
            counts.bytes_sent += length as u64;
        }
        stream.close();
        assert_eq!(
            drain(&mut stream).await,
            0,
            "the server sent data in TCP_STREAM"
        );
        counts.end_of_file_at = Some(self.side.timers.now());
        counts
    }

    /// `TCP_MAERTS`: read until the server closes.
    pub(super) async fn tcp_maerts(&self) -> Counts {
        let mut stream = self.connect().await;
        let mut counts = Counts {
            bytes_received: drain(&mut stream).await,
            ..Counts::default()
        };
        counts.end_of_file_at = Some(self.side.timers.now());
        stream.close();
        counts
    }
}

/// Reads until end-of-file and returns the bytes read.
async fn drain(stream: &mut TcpStream) -> u64 {
    let mut buffer = [0u8; 4096];
    let mut total = 0;
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) => return total,
            Ok(count) => total += count as u64,
            Err(error) => panic!("data connection failed: {error:?}"),
        }
    }
}
