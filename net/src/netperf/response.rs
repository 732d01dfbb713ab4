//! Encoding of the OMNI response (type 98), the server's reply to DO_OMNI.
//!
//! The server sends it once its data socket is bound and, for TCP, already
//! listening, because netperf connects as soon as it reads the response.
//! Layout: 2 header words and 18 payload words in big-endian order
//! (bytes 0 to 79), then zeroed strings and padding. The response carries
//! no address: netperf sends data to the host it was given with `-H`, on
//! `data_port`.

use super::parameters::TestParameters;
use super::wire::{errno, message_type, OmniFlags, RawMessage, WordWriter};

/// Number of big-endian words at the start of an OMNI response.
pub const RESPONSE_BIG_ENDIAN_WORDS: usize = 20;

/// `cpu_rate` the response carries when the server reports CPU
/// utilisation. netperf 2.7.0 stores it without printing it; 100.0 is what
/// the Linux netserver sends.
pub const REPORTED_CPU_RATE: f32 = 100.0;

/// An OMNI response. Field names are netperf's own; the comments give the
/// byte offset in the message.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OmniResponse {
    /// Offset 4: 0 on success, else a Linux errno that makes netperf print
    /// the error and exit.
    pub serv_errno: i32,
    /// Offset 8: receive buffer of the data socket, -1 if unknown.
    pub recv_buf_size: i32,
    /// Offset 12: bytes per receive call the server uses.
    pub receive_size: u32,
    /// Offset 16: receive buffers the server uses.
    pub recv_width: i32,
    /// Offset 20: send buffer of the data socket, -1 if unknown.
    pub send_buf_size: i32,
    /// Offset 24: bytes per send call the server uses.
    pub send_size: u32,
    /// Offset 28: send buffers the server uses.
    pub send_width: i32,
    /// Offset 32: `NO_DELAY` if set on the data socket, `MEASURE_CPU` only if
    /// the results will carry a real CPU measurement.
    pub flags: OmniFlags,
    /// Offset 36: 0.0, or [`REPORTED_CPU_RATE`] with `MEASURE_CPU`.
    pub cpu_rate: f32,
    /// Offset 44: copy avoidance for receives, echoed from the request.
    pub so_rcvavoid: u32,
    /// Offset 48: copy avoidance for sends, echoed from the request.
    pub so_sndavoid: u32,
    /// Offset 52: the port the data socket is bound to. netperf connects (or
    /// sends) to this port, whatever it asked for.
    pub data_port: u16,
    /// Offset 72: `SO_PRIORITY`, echoed from the request.
    pub socket_prio: i32,
    /// Offset 76: `IP_TOS`, echoed from the request.
    pub socket_tos: i32,
}

impl OmniResponse {
    /// Creates a refusal: `serv_errno` set and every other field zero.
    /// netperf prints `strerror(serv_errno)` and exits with status 255.
    pub const fn error(serv_errno: i32) -> Self {
        OmniResponse {
            serv_errno,
            recv_buf_size: 0,
            receive_size: 0,
            recv_width: 0,
            send_buf_size: 0,
            send_size: 0,
            send_width: 0,
            flags: OmniFlags(0),
            cpu_rate: 0.0,
            so_rcvavoid: 0,
            so_sndavoid: 0,
            data_port: 0,
            socket_prio: 0,
            socket_tos: 0,
        }
    }

    /// Creates the reply to a request type the server does not know.
    pub const fn unknown_request_type() -> Self {
        Self::error(errno::UNKNOWN_REQUEST_TYPE)
    }

    /// Encodes the response into one 656-byte message.
    pub fn encode(&self) -> RawMessage {
        let mut writer = WordWriter::new();
        writer.i32(message_type::OMNI_RESPONSE);
        writer.i32(self.serv_errno);
        writer.i32(self.recv_buf_size);
        writer.u32(self.receive_size);
        writer.i32(self.recv_width);
        writer.i32(self.send_buf_size);
        writer.u32(self.send_size);
        writer.i32(self.send_width);
        writer.u32(self.flags.0);
        writer.f32(self.cpu_rate);
        // test_length: netperf does not read it back.
        writer.u32(0);
        writer.u32(self.so_rcvavoid);
        writer.u32(self.so_sndavoid);
        writer.u32(u32::from(self.data_port));
        // interval_burst, interval_usecs, cpu_frequency, security_info.
        for _ in 0..4 {
            writer.u32(0);
        }
        writer.i32(self.socket_prio);
        writer.i32(self.socket_tos);
        debug_assert_eq!(writer.offset(), RESPONSE_BIG_ENDIAN_WORDS * 4);
        writer.finish()
    }
}

/// Data socket settings the server applied for a test, reported in the
/// response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataSocketSetup {
    /// Port the data socket is bound to (TCP: listening).
    pub data_port: u16,
    /// Receive buffer of the data socket; `None` if unknown.
    pub receive_buffer_bytes: Option<u32>,
    /// Send buffer of the data socket; `None` if unknown.
    pub send_buffer_bytes: Option<u32>,
    /// Bytes per call the server uses in a stream test when netperf leaves
    /// the size to it (see [`TestParameters::chosen_send_size`]).
    pub default_chunk_bytes: u32,
    /// Whether the server measures CPU utilisation and will report it in the
    /// results. Only then does the response set `MEASURE_CPU`.
    pub measures_cpu: bool,
}

impl TestParameters {
    /// Builds the success response for this test.
    ///
    /// Sizes and widths follow the roles: a direction the server serves gets
    /// the size it will use, and a direction it does not serve echoes the
    /// request. Request/response tests use one buffer each way. Stream tests
    /// report `buffer / size + 1` buffers, as the Linux netserver does.
    /// `MEASURE_CPU` is set only if netperf asked for it and
    /// `setup.measures_cpu` is true.
    pub fn response(&self, setup: &DataSocketSetup) -> OmniResponse {
        let measure_cpu = self.measure_cpu && setup.measures_cpu;
        let mut flags = OmniFlags(0);
        if self.no_delay {
            flags = flags.union(OmniFlags::NO_DELAY);
        }
        if measure_cpu {
            flags = flags.union(OmniFlags::MEASURE_CPU);
        }

        let (receive_size, recv_width) = if self.kind.server_receives() {
            let size = self.chosen_receive_size(setup.default_chunk_bytes);
            (size, self.buffer_count(setup.receive_buffer_bytes, size))
        } else {
            (self.echo.receive_size, self.echo.recv_width as i32)
        };
        let (send_size, send_width) = if self.kind.server_sends() {
            let size = self.chosen_send_size(setup.default_chunk_bytes);
            (size, self.buffer_count(setup.send_buffer_bytes, size))
        } else {
            (self.echo.send_size, self.echo.send_width as i32)
        };

        OmniResponse {
            serv_errno: 0,
            recv_buf_size: buffer_size_word(setup.receive_buffer_bytes),
            receive_size,
            recv_width,
            send_buf_size: buffer_size_word(setup.send_buffer_bytes),
            send_size,
            send_width,
            flags,
            cpu_rate: if measure_cpu { REPORTED_CPU_RATE } else { 0.0 },
            so_rcvavoid: self.echo.so_rcvavoid,
            so_sndavoid: self.echo.so_sndavoid,
            data_port: setup.data_port,
            socket_prio: self.echo.socket_prio,
            socket_tos: self.echo.socket_tos,
        }
    }

    fn buffer_count(&self, buffer_bytes: Option<u32>, size_bytes: u32) -> i32 {
        if self.kind.is_request_response() {
            return 1;
        }
        match buffer_bytes {
            Some(buffer_bytes) if size_bytes > 0 => {
                let count = (buffer_bytes / size_bytes).saturating_add(1);
                i32::try_from(count).unwrap_or(i32::MAX)
            }
            _ => 1,
        }
    }
}

/// Converts a buffer size to its wire form: -1 for unknown, saturated at
/// `i32::MAX`.
pub(crate) fn buffer_size_word(buffer_bytes: Option<u32>) -> i32 {
    buffer_bytes.map_or(-1, |bytes| i32::try_from(bytes).unwrap_or(i32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netperf::wire::MESSAGE_BYTES;

    #[test]
    fn error_response_is_type_and_errno_only() {
        let bytes = OmniResponse::error(errno::EAFNOSUPPORT).encode();
        assert_eq!(bytes[0..4], [0, 0, 0, 98]);
        assert_eq!(bytes[4..8], [0, 0, 0, 97]);
        assert!(bytes[8..].iter().all(|&b| b == 0));
        assert_eq!(bytes.len(), MESSAGE_BYTES);
    }

    #[test]
    fn unknown_type_reply_carries_998() {
        let bytes = OmniResponse::unknown_request_type().encode();
        assert_eq!(bytes[4..8], 998i32.to_be_bytes());
        assert!(bytes[8..].iter().all(|&b| b == 0));
    }

    #[test]
    fn fields_at_table_offsets() {
        let response = OmniResponse {
            serv_errno: 0x0101,
            recv_buf_size: 0x0202,
            receive_size: 0x0303,
            recv_width: 0x0404,
            send_buf_size: 0x0505,
            send_size: 0x0606,
            send_width: 0x0707,
            flags: OmniFlags(0x0808),
            cpu_rate: 100.0,
            so_rcvavoid: 0x0909,
            so_sndavoid: 0x0a0a,
            data_port: 0x0b0b,
            socket_prio: 0x0c0c,
            socket_tos: -1,
        };
        let bytes = response.encode();
        let word =
            |offset: usize| u32::from_be_bytes(bytes[offset..offset + 4].try_into().unwrap());
        let expected = [
            (4, 0x0101),
            (8, 0x0202),
            (12, 0x0303),
            (16, 0x0404),
            (20, 0x0505),
            (24, 0x0606),
            (28, 0x0707),
            (32, 0x0808),
            (36, 0x42c8_0000),
            (40, 0),
            (44, 0x0909),
            (48, 0x0a0a),
            (52, 0x0b0b),
            (56, 0),
            (60, 0),
            (64, 0),
            (68, 0),
            (72, 0x0c0c),
            (76, 0xffff_ffff),
        ];
        for (offset, value) in expected {
            assert_eq!(word(offset), value, "offset {offset}");
        }
        assert!(bytes[80..].iter().all(|&b| b == 0));
    }

    #[test]
    fn buffer_size_word_saturates() {
        assert_eq!(buffer_size_word(None), -1);
        assert_eq!(buffer_size_word(Some(131_072)), 131_072);
        assert_eq!(buffer_size_word(Some(u32::MAX)), i32::MAX);
    }
}
