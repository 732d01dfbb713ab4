//! The control messages of the netperf stand-in: DO_OMNI requests taken
//! from captured netperf 2.7.0 traffic with fields patched, and the
//! response and results fields netperf reads.

use alloc::vec::Vec;

use smoltcp::time::Instant;

use crate::netperf::RawMessage;

/// The captured netperf sessions whose DO_OMNI request a test starts from.
#[derive(Clone, Copy, Debug)]
pub(super) enum Capture {
    TcpRr,
    UdpRr,
    TcpCrr,
    TcpStream,
    TcpMaerts,
}

impl Capture {
    fn text(self) -> &'static str {
        match self {
            Capture::TcpRr => include_str!("../../../netperf/fixtures/tcp_rr.txt"),
            Capture::UdpRr => include_str!("../../../netperf/fixtures/udp_rr.txt"),
            Capture::TcpCrr => include_str!("../../../netperf/fixtures/tcp_crr.txt"),
            Capture::TcpStream => include_str!("../../../netperf/fixtures/tcp_stream.txt"),
            Capture::TcpMaerts => include_str!("../../../netperf/fixtures/tcp_maerts.txt"),
        }
    }
}

/// Request word offsets, from the DO_OMNI layout.
pub(super) mod offset {
    pub(crate) const SEND_BUF_SIZE: usize = 8;
    pub(crate) const RECV_BUF_SIZE: usize = 32;
    pub(crate) const REQUEST_SIZE: usize = 28;
    pub(crate) const RESPONSE_SIZE: usize = 52;
    pub(crate) const FLAGS: usize = 56;
    pub(crate) const TEST_LENGTH: usize = 64;
    pub(crate) const DATA_PORT: usize = 88;
    pub(crate) const IPFAMILY: usize = 92;
    pub(crate) const SOCKET_TYPE: usize = 96;
    pub(crate) const PROTOCOL: usize = 100;
    pub(crate) const DIRECTION: usize = 104;
}

/// A DO_OMNI request as captured, with fields patched.
#[derive(Clone)]
pub(super) struct Request(pub(super) RawMessage);

impl Request {
    /// Returns the captured request of `capture` (netperf `-l 2`).
    pub(super) fn captured(capture: Capture) -> Request {
        let hex = capture
            .text()
            .lines()
            .filter_map(|line| line.trim().strip_prefix("RAW C>S "))
            .find(|hex| hex.starts_with("00000061"))
            .expect("each capture holds a DO_OMNI request");
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|index| u8::from_str_radix(&hex[index..index + 2], 16).expect("hex digits"))
            .collect();
        Request(bytes.try_into().expect("a captured message is 656 bytes"))
    }

    /// Writes a big-endian word at `offset`.
    pub(super) fn word(mut self, offset: usize, value: u32) -> Request {
        self.0[offset..offset + 4].copy_from_slice(&value.to_be_bytes());
        self
    }

    /// Sets `test_length`: seconds when positive, a count when negative.
    pub(super) fn length(self, test_length: i32) -> Request {
        self.word(offset::TEST_LENGTH, test_length as u32)
    }

    /// Sets the RR sizes (netperf `-r request,response`).
    pub(super) fn sizes(self, request_bytes: u32, response_bytes: u32) -> Request {
        self.word(offset::REQUEST_SIZE, request_bytes)
            .word(offset::RESPONSE_SIZE, response_bytes)
    }

    /// Asks for data socket buffers of `bytes` each way (netperf `-s`,
    /// `-S`).
    pub(super) fn buffers(self, bytes: u32) -> Request {
        self.word(offset::SEND_BUF_SIZE, bytes)
            .word(offset::RECV_BUF_SIZE, bytes)
    }

    /// Asks for a data port (netperf `-- -P ,N`).
    pub(super) fn data_port(self, port: u16) -> Request {
        self.word(offset::DATA_PORT, u32::from(port))
    }

    /// Adds flag bits.
    pub(super) fn flags(self, bits: u32) -> Request {
        let current = u32::from_be_bytes(
            self.0[offset::FLAGS..offset::FLAGS + 4]
                .try_into()
                .expect("4 bytes"),
        );
        self.word(offset::FLAGS, current | bits)
    }
}

fn word(message: &RawMessage, offset: usize) -> u32 {
    u32::from_be_bytes(message[offset..offset + 4].try_into().expect("4 bytes"))
}

/// The response fields netperf reads.
#[derive(Clone, Copy, Debug)]
pub(super) struct Response {
    pub(super) serv_errno: i32,
    pub(super) recv_buf_size: i32,
    pub(super) send_buf_size: i32,
    pub(super) send_size: u32,
    pub(super) flags: u32,
    pub(super) data_port: u16,
    /// Arrival time of the response, where netperf's timer starts.
    pub(super) received_at: Instant,
}

impl Response {
    pub(super) fn decode(message: &RawMessage, received_at: Instant) -> Response {
        assert_eq!(word(message, 0), 98, "response type");
        Response {
            serv_errno: word(message, 4) as i32,
            recv_buf_size: word(message, 8) as i32,
            send_buf_size: word(message, 20) as i32,
            send_size: word(message, 24),
            flags: word(message, 32),
            data_port: word(message, 52) as u16,
            received_at,
        }
    }
}

/// The results fields a test checks.
#[derive(Clone, Copy, Debug)]
pub(super) struct Results {
    pub(super) serv_errno: i32,
    pub(super) bytes_received: u64,
    pub(super) receive_calls: u32,
    pub(super) bytes_sent: u64,
    pub(super) send_calls: u32,
    pub(super) transactions: u32,
    pub(super) elapsed_seconds: f32,
    pub(super) cpu_util: f32,
    pub(super) cpu_method: u32,
    pub(super) num_cpus: u32,
    /// When the results arrived.
    pub(super) received_at: Instant,
}

impl Results {
    pub(super) fn decode(message: &RawMessage, received_at: Instant) -> Results {
        assert_eq!(word(message, 0), 99, "results type");
        let wide = |offset| {
            (u64::from(word(message, offset)) << 32) | u64::from(word(message, offset + 4))
        };
        Results {
            serv_errno: word(message, 4) as i32,
            bytes_received: wide(8),
            receive_calls: word(message, 16),
            bytes_sent: wide(24),
            send_calls: word(message, 32),
            transactions: word(message, 44),
            elapsed_seconds: f32::from_bits(word(message, 48)),
            cpu_util: f32::from_bits(word(message, 52)),
            cpu_method: word(message, 80),
            num_cpus: word(message, 84),
            received_at,
        }
    }
}
