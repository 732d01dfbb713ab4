//! Test classification and the parameters a server needs to run a test.
//!
//! netperf 2.7.0 sends every test as DO_OMNI, so the test is identified by the
//! request's `protocol`, `direction` and `CONNECT_TEST` flag:
//!
//! | protocol | direction | CONNECT_TEST | test |
//! |---:|---:|:-:|---|
//! | 6 (TCP) | 6 (send + receive) | no | `TCP_RR` |
//! | 6 | 6 | yes | `TCP_CRR` |
//! | 6 | 4 (server receives) | no | `TCP_STREAM` |
//! | 6 | 2 (server sends) | no | `TCP_MAERTS` |
//! | 6 | 0 | yes | `TCP_CC` |
//! | 17 (UDP) | 6 | ignored | `UDP_RR` |
//! | 17 | 4 | ignored | `UDP_STREAM` |
//!
//! Anything else, and any value the server cannot honour, is an
//! [`Unsupported`] that carries the Linux errno to send back.

use core::fmt;
use core::time::Duration;

use super::request::{
    OmniRequest, DIRECTION_SERVER_RECEIVES, DIRECTION_SERVER_SENDS, IPFAMILY_IPV4,
    IPFAMILY_UNSPECIFIED, PROTOCOL_TCP, PROTOCOL_UDP, SOCKET_TYPE_DATAGRAM, SOCKET_TYPE_STREAM,
};
use super::wire::{errno, OmniFlags};

/// Time the real netserver adds to `test_length` before it ends a test by
/// itself, so that netperf's own timer always fires first.
pub const SERVER_DEADLINE_PAD: Duration = Duration::from_secs(4);

/// Largest UDP payload in one IPv4 datagram: 65535 minus the 20-byte IPv4
/// header and the 8-byte UDP header.
pub const MAX_UDP_PAYLOAD_BYTES: u32 = 65_507;

/// The test netperf requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TestKind {
    /// One TCP connection; per transaction read `request_size`, write
    /// `response_size`.
    TcpRr,
    /// A new TCP connection per transaction: accept, read, write, close.
    TcpCrr,
    /// The server receives and counts until end-of-file.
    TcpStream,
    /// The server sends until its deadline.
    TcpMaerts,
    /// A new TCP connection per transaction with no data: accept, close.
    TcpCc,
    /// Per datagram received, send `response_size` bytes to its source.
    UdpRr,
    /// The server counts datagrams until a zero-length one.
    UdpStream,
}

impl TestKind {
    /// Classifies a request from its `protocol`, `direction` and
    /// `CONNECT_TEST` flag.
    ///
    /// # Errors
    ///
    /// [`Unsupported::Protocol`] for a protocol other than TCP or UDP,
    /// [`Unsupported::Direction`] for a combination not in the module table.
    pub fn classify(
        protocol: u32,
        direction: u32,
        connect_test: bool,
    ) -> Result<Self, Unsupported> {
        const BOTH: u32 = DIRECTION_SERVER_SENDS | DIRECTION_SERVER_RECEIVES;
        let kind = match (protocol, direction, connect_test) {
            (PROTOCOL_TCP, BOTH, false) => Some(TestKind::TcpRr),
            (PROTOCOL_TCP, BOTH, true) => Some(TestKind::TcpCrr),
            (PROTOCOL_TCP, DIRECTION_SERVER_RECEIVES, false) => Some(TestKind::TcpStream),
            (PROTOCOL_TCP, DIRECTION_SERVER_SENDS, false) => Some(TestKind::TcpMaerts),
            (PROTOCOL_TCP, 0, true) => Some(TestKind::TcpCc),
            (PROTOCOL_UDP, BOTH, _) => Some(TestKind::UdpRr),
            (PROTOCOL_UDP, DIRECTION_SERVER_RECEIVES, _) => Some(TestKind::UdpStream),
            (PROTOCOL_TCP | PROTOCOL_UDP, _, _) => None,
            _ => return Err(Unsupported::Protocol { protocol }),
        };
        kind.ok_or(Unsupported::Direction {
            protocol,
            direction,
            connect_test,
        })
    }

    /// Returns netperf's name for the test, such as `"TCP_RR"`.
    pub const fn name(self) -> &'static str {
        match self {
            TestKind::TcpRr => "TCP_RR",
            TestKind::TcpCrr => "TCP_CRR",
            TestKind::TcpStream => "TCP_STREAM",
            TestKind::TcpMaerts => "TCP_MAERTS",
            TestKind::TcpCc => "TCP_CC",
            TestKind::UdpRr => "UDP_RR",
            TestKind::UdpStream => "UDP_STREAM",
        }
    }

    /// Returns whether the data connection is TCP (else UDP).
    pub const fn is_tcp(self) -> bool {
        !matches!(self, TestKind::UdpRr | TestKind::UdpStream)
    }

    /// Returns whether each transaction is a request of `request_size`
    /// bytes followed by a response of `response_size` bytes.
    pub const fn is_request_response(self) -> bool {
        matches!(self, TestKind::TcpRr | TestKind::TcpCrr | TestKind::UdpRr)
    }

    /// Returns whether the server accepts a new connection per transaction.
    pub const fn is_connect_test(self) -> bool {
        matches!(self, TestKind::TcpCrr | TestKind::TcpCc)
    }

    /// Returns whether the server sends data in this test.
    pub const fn server_sends(self) -> bool {
        self.is_request_response() || matches!(self, TestKind::TcpMaerts)
    }

    /// Returns whether the server receives data in this test.
    pub const fn server_receives(self) -> bool {
        self.is_request_response() || matches!(self, TestKind::TcpStream | TestKind::UdpStream)
    }

    /// Returns whether the server only sends: its deadline then has no pad.
    pub const fn is_transmit_only(self) -> bool {
        self.server_sends() && !self.server_receives()
    }
}

impl fmt::Display for TestKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// Reason a server cannot run the requested test, with the errno it sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsupported {
    /// `ipfamily` is not IPv4 (4) or unspecified (0). IPv6 is 6.
    AddressFamily {
        /// Requested `ipfamily`.
        ipfamily: u32,
    },
    /// `protocol` is neither TCP (6) nor UDP (17).
    Protocol {
        /// Requested IP protocol number.
        protocol: u32,
    },
    /// `socket_type` does not fit the protocol (TCP needs stream, UDP needs
    /// datagram) or is unknown.
    SocketType {
        /// Requested `socket_type`.
        socket_type: u32,
        /// Requested IP protocol number.
        protocol: u32,
    },
    /// No test has this protocol, direction and `CONNECT_TEST` flag.
    Direction {
        /// Requested IP protocol number.
        protocol: u32,
        /// Requested `direction` bits.
        direction: u32,
        /// Whether `CONNECT_TEST` was set.
        connect_test: bool,
    },
    /// `data_port` does not fit in 16 bits.
    DataPort {
        /// Requested `data_port`.
        data_port: u32,
    },
    /// A request/response test with a request or response size below 1.
    TransactionSize {
        /// Requested `request_size`.
        request_size: i32,
        /// Requested `response_size`.
        response_size: i32,
    },
    /// A UDP request or response larger than [`MAX_UDP_PAYLOAD_BYTES`].
    DatagramSize {
        /// The oversized request or response size.
        size_bytes: u32,
    },
}

impl Unsupported {
    /// Returns the Linux errno to put in the response's `serv_errno`.
    pub const fn errno(&self) -> i32 {
        match self {
            Unsupported::AddressFamily { .. } => errno::EAFNOSUPPORT,
            Unsupported::Protocol { .. } => errno::EPROTONOSUPPORT,
            Unsupported::SocketType { socket_type, .. } => match *socket_type {
                SOCKET_TYPE_STREAM | SOCKET_TYPE_DATAGRAM => errno::EPROTONOSUPPORT,
                _ => errno::ESOCKTNOSUPPORT,
            },
            Unsupported::Direction { .. } => errno::EOPNOTSUPP,
            Unsupported::DataPort { .. } | Unsupported::TransactionSize { .. } => errno::EINVAL,
            Unsupported::DatagramSize { .. } => errno::EMSGSIZE,
        }
    }
}

impl fmt::Display for Unsupported {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unsupported::AddressFamily { ipfamily } => {
                write!(formatter, "unsupported address family {ipfamily}, only IPv4 (4) is served")
            }
            Unsupported::Protocol { protocol } => {
                write!(formatter, "unsupported IP protocol {protocol}, expected TCP (6) or UDP (17)")
            }
            Unsupported::SocketType {
                socket_type,
                protocol,
            } => write!(
                formatter,
                "invalid socket type {socket_type} for IP protocol {protocol}"
            ),
            Unsupported::Direction {
                protocol,
                direction,
                connect_test,
            } => write!(
                formatter,
                "no test with IP protocol {protocol}, direction {direction:#x}, connect test {connect_test}"
            ),
            Unsupported::DataPort { data_port } => {
                write!(formatter, "invalid data port {data_port}, expected 0 to 65535")
            }
            Unsupported::TransactionSize {
                request_size,
                response_size,
            } => write!(
                formatter,
                "invalid transaction sizes: request {request_size}, response {response_size}, both must be at least 1"
            ),
            Unsupported::DatagramSize { size_bytes } => write!(
                formatter,
                "transaction size {size_bytes} bytes exceeds one UDP datagram ({MAX_UDP_PAYLOAD_BYTES} bytes)"
            ),
        }
    }
}

/// How long a test runs, from the request's `test_length`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestLength {
    /// A timed test of this many seconds (`test_length` > 0).
    Seconds(u32),
    /// Ends after this many transactions (`test_length` < 0 in a
    /// request/response or connect test).
    Transactions(u32),
    /// Ends after this many bytes received (`TCP_STREAM`, `UDP_STREAM`) or
    /// sent (`TCP_MAERTS`) (`test_length` < 0).
    Bytes(u32),
    /// No limit (`test_length` = 0): the test ends on netperf's signal only.
    Unbounded,
}

/// Everything a server needs to run one test, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct TestParameters {
    /// The test to run.
    pub kind: TestKind,
    /// Bytes netperf sends per transaction; 0 unless
    /// [`TestKind::is_request_response`]. TCP allows up to `i32::MAX`, so
    /// read and discard a request in pieces instead of allocating it whole.
    pub request_size_bytes: u32,
    /// Bytes the server sends per transaction; 0 unless
    /// [`TestKind::is_request_response`]. Up to `i32::MAX` for TCP, like
    /// `request_size_bytes`; the content does not matter to netperf.
    pub response_size_bytes: u32,
    /// Test duration or count.
    pub length: TestLength,
    /// Port to bind the data socket to; 0 lets the server choose.
    pub data_port: u16,
    /// Address to bind the data socket to; `None` for any.
    pub bind_ipv4: Option<[u8; 4]>,
    /// Bytes per send netperf asked for (`-m`); `None` lets the server choose.
    pub send_size_bytes: Option<u32>,
    /// Bytes per receive netperf asked for (`-M`); `None` lets the server
    /// choose.
    pub receive_size_bytes: Option<u32>,
    /// Requested send buffer size (`SO_SNDBUF`); `None` for the default.
    pub send_buffer_bytes: Option<u32>,
    /// Requested receive buffer size (`SO_RCVBUF`); `None` for the default.
    pub receive_buffer_bytes: Option<u32>,
    /// Whether to set `TCP_NODELAY` on the data socket.
    pub no_delay: bool,
    /// Whether netperf asked for the server's CPU utilisation.
    pub measure_cpu: bool,
    /// Request values the response sends back unchanged.
    pub(crate) echo: EchoedFields,
}

/// Request fields that the response repeats as netperf sent them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct EchoedFields {
    pub(crate) send_size: u32,
    pub(crate) send_width: u32,
    pub(crate) receive_size: u32,
    pub(crate) recv_width: u32,
    pub(crate) so_rcvavoid: u32,
    pub(crate) so_sndavoid: u32,
    pub(crate) socket_prio: i32,
    pub(crate) socket_tos: i32,
}

impl TestParameters {
    /// Validates a DO_OMNI request and extracts what the server needs.
    ///
    /// Checks run in this order: address family, protocol, socket type,
    /// test kind, data port, transaction sizes.
    ///
    /// # Errors
    ///
    /// An [`Unsupported`] naming the first field the server cannot honour;
    /// send [`Unsupported::errno`] back in the response.
    pub fn from_request(request: &OmniRequest) -> Result<Self, Unsupported> {
        if !matches!(request.ipfamily, IPFAMILY_IPV4 | IPFAMILY_UNSPECIFIED) {
            return Err(Unsupported::AddressFamily {
                ipfamily: request.ipfamily,
            });
        }
        let kind = classify_request(request)?;
        let data_port = u16::try_from(request.data_port).map_err(|_| Unsupported::DataPort {
            data_port: request.data_port,
        })?;
        let (request_size_bytes, response_size_bytes) = transaction_sizes(kind, request)?;

        let bind_ip = request.netserver_ip[0];
        Ok(TestParameters {
            kind,
            request_size_bytes,
            response_size_bytes,
            length: test_length(kind, request.test_length),
            data_port,
            bind_ipv4: (bind_ip != 0).then(|| bind_ip.to_be_bytes()),
            send_size_bytes: positive(request.send_size as i32),
            receive_size_bytes: positive(request.receive_size as i32),
            send_buffer_bytes: positive(request.send_buf_size),
            receive_buffer_bytes: positive(request.recv_buf_size),
            no_delay: request.flags.contains(OmniFlags::NO_DELAY),
            measure_cpu: request.flags.contains(OmniFlags::MEASURE_CPU),
            echo: EchoedFields {
                send_size: request.send_size,
                send_width: request.send_width,
                receive_size: request.receive_size,
                recv_width: request.recv_width,
                so_rcvavoid: request.so_rcvavoid,
                so_sndavoid: request.so_sndavoid,
                socket_prio: request.socket_prio,
                socket_tos: request.socket_tos,
            },
        })
    }

    /// Returns how long after sending the response the server ends the test
    /// by itself, or `None` when only netperf or a count ends it.
    ///
    /// A timed test of T seconds gets T plus [`SERVER_DEADLINE_PAD`], so
    /// that netperf's end-of-test signal arrives first. A transmit-only test
    /// (`TCP_MAERTS`) gets exactly T, because there the server's deadline is
    /// what ends the test. `TCP_CRR` and `TCP_CC` always end at the deadline:
    /// netperf sends no end-of-test signal for them.
    pub fn server_deadline(&self) -> Option<Duration> {
        let TestLength::Seconds(seconds) = self.length else {
            return None;
        };
        let test_time = Duration::from_secs(u64::from(seconds));
        if self.kind.is_transmit_only() {
            Some(test_time)
        } else {
            Some(test_time + SERVER_DEADLINE_PAD)
        }
    }

    /// Returns the bytes per send call the server uses: `response_size` in a
    /// request/response test, else netperf's `-m` size, else
    /// `server_default_bytes`.
    pub fn chosen_send_size(&self, server_default_bytes: u32) -> u32 {
        if self.kind.is_request_response() {
            return self.response_size_bytes;
        }
        self.send_size_bytes.unwrap_or(server_default_bytes)
    }

    /// Returns the bytes per receive call the server uses: `request_size` in
    /// a request/response test, else netperf's `-M` size, else
    /// `server_default_bytes`.
    pub fn chosen_receive_size(&self, server_default_bytes: u32) -> u32 {
        if self.kind.is_request_response() {
            return self.request_size_bytes;
        }
        self.receive_size_bytes.unwrap_or(server_default_bytes)
    }
}

/// Checks the socket type against the protocol, then classifies the test.
fn classify_request(request: &OmniRequest) -> Result<TestKind, Unsupported> {
    let expected_socket_type = match request.protocol {
        PROTOCOL_TCP => SOCKET_TYPE_STREAM,
        PROTOCOL_UDP => SOCKET_TYPE_DATAGRAM,
        protocol => return Err(Unsupported::Protocol { protocol }),
    };
    if request.socket_type != expected_socket_type {
        return Err(Unsupported::SocketType {
            socket_type: request.socket_type,
            protocol: request.protocol,
        });
    }
    let connect_test = request.flags.contains(OmniFlags::CONNECT_TEST);
    TestKind::classify(request.protocol, request.direction, connect_test)
}

/// Returns (request, response) sizes for request/response tests, (0, 0)
/// for the others, whose sizes netperf sets to -1.
fn transaction_sizes(kind: TestKind, request: &OmniRequest) -> Result<(u32, u32), Unsupported> {
    if !kind.is_request_response() {
        return Ok((0, 0));
    }
    let invalid = Unsupported::TransactionSize {
        request_size: request.request_size,
        response_size: request.response_size,
    };
    let request_bytes = positive(request.request_size).ok_or(invalid)?;
    let response_bytes = positive(request.response_size).ok_or(invalid)?;

    if !kind.is_tcp() {
        let largest_bytes = request_bytes.max(response_bytes);
        if largest_bytes > MAX_UDP_PAYLOAD_BYTES {
            return Err(Unsupported::DatagramSize {
                size_bytes: largest_bytes,
            });
        }
    }
    Ok((request_bytes, response_bytes))
}

fn test_length(kind: TestKind, test_length: i32) -> TestLength {
    match test_length {
        0 => TestLength::Unbounded,
        seconds if seconds > 0 => TestLength::Seconds(seconds.unsigned_abs()),
        count if kind.is_request_response() || kind.is_connect_test() => {
            TestLength::Transactions(count.unsigned_abs())
        }
        count => TestLength::Bytes(count.unsigned_abs()),
    }
}

/// Returns the value if it is at least 1; netperf uses -1 (and a server
/// treats 0 alike) for "not set".
fn positive(value: i32) -> Option<u32> {
    u32::try_from(value).ok().filter(|&value| value > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_table() {
        let cases = [
            (6, 6, false, TestKind::TcpRr),
            (6, 6, true, TestKind::TcpCrr),
            (6, 4, false, TestKind::TcpStream),
            (6, 2, false, TestKind::TcpMaerts),
            (6, 0, true, TestKind::TcpCc),
            (17, 6, false, TestKind::UdpRr),
            (17, 6, true, TestKind::UdpRr),
            (17, 4, false, TestKind::UdpStream),
        ];
        for (protocol, direction, connect_test, expected) in cases {
            assert_eq!(
                TestKind::classify(protocol, direction, connect_test),
                Ok(expected),
                "{protocol}/{direction}/{connect_test}"
            );
        }
    }

    #[test]
    fn classify_rejects_other_combinations() {
        for (protocol, direction, connect_test) in [
            (6, 0, false),
            (6, 4, true),
            (6, 2, true),
            (6, 7, false),
            (6, 0x106, false),
            (17, 2, false),
            (17, 0, true),
        ] {
            let error = TestKind::classify(protocol, direction, connect_test).unwrap_err();
            assert_eq!(error.errno(), errno::EOPNOTSUPP, "{error}");
        }
        for protocol in [0, 1, 132, u32::MAX] {
            let error = TestKind::classify(protocol, 6, false).unwrap_err();
            assert_eq!(error, Unsupported::Protocol { protocol });
            assert_eq!(error.errno(), errno::EPROTONOSUPPORT);
        }
    }

    #[test]
    fn kind_directions() {
        assert!(TestKind::TcpMaerts.is_transmit_only());
        assert!(!TestKind::TcpStream.is_transmit_only());
        assert!(!TestKind::TcpRr.is_transmit_only());
        assert!(!TestKind::TcpCc.server_sends());
        assert!(!TestKind::TcpCc.server_receives());
        assert!(TestKind::UdpStream.server_receives());
        assert!(!TestKind::UdpRr.is_tcp());
    }

    #[test]
    fn negative_length_counts_per_kind() {
        assert_eq!(
            test_length(TestKind::TcpRr, -1000),
            TestLength::Transactions(1000)
        );
        assert_eq!(
            test_length(TestKind::TcpCc, -5),
            TestLength::Transactions(5)
        );
        assert_eq!(
            test_length(TestKind::TcpStream, -4096),
            TestLength::Bytes(4096)
        );
        assert_eq!(
            test_length(TestKind::TcpMaerts, i32::MIN),
            TestLength::Bytes(1 << 31)
        );
        assert_eq!(test_length(TestKind::UdpRr, 0), TestLength::Unbounded);
        assert_eq!(
            test_length(TestKind::UdpRr, i32::MAX),
            TestLength::Seconds(i32::MAX as u32)
        );
    }

    #[test]
    fn positive_treats_zero_and_negative_as_unset() {
        assert_eq!(positive(-1), None);
        assert_eq!(positive(0), None);
        assert_eq!(positive(i32::MIN), None);
        assert_eq!(positive(1), Some(1));
        assert_eq!(positive(i32::MAX), Some(i32::MAX as u32));
    }
}
