//! Decoding of the messages netperf sends to a server.
//!
//! Owns [`Message`], the DO_OMNI request table ([`OmniRequest`]) and the
//! PASSPHRASE payload. Decoding is total: every 656-byte input decodes to
//! some [`Message`], and field values are judged later, when
//! [`TestParameters`](super::TestParameters) are derived from a request.
//!
//! DO_OMNI layout: 2 header words and 38 payload words in big-endian order
//! (bytes 0 to 159), then two raw strings (bytes 160 to 207) and zero padding.

use core::fmt;

use super::wire::{
    message_type, until_nul, OmniFlags, RawMessage, WordReader, HEADER_BYTES, MESSAGE_BYTES,
    PAYLOAD_BYTES,
};

/// Number of big-endian words at the start of a DO_OMNI request.
pub const REQUEST_BIG_ENDIAN_WORDS: usize = 40;

/// `ipfamily` value for IPv4.
pub const IPFAMILY_IPV4: u32 = 4;
/// `ipfamily` value for IPv6.
pub const IPFAMILY_IPV6: u32 = 6;
/// `ipfamily` value when netperf leaves the family open.
pub const IPFAMILY_UNSPECIFIED: u32 = 0;

/// `socket_type` value for a stream socket.
pub const SOCKET_TYPE_STREAM: u32 = 1;
/// `socket_type` value for a datagram socket.
pub const SOCKET_TYPE_DATAGRAM: u32 = 2;

/// `protocol` value for TCP (IP protocol number 6).
pub const PROTOCOL_TCP: u32 = 6;
/// `protocol` value for UDP (IP protocol number 17).
pub const PROTOCOL_UDP: u32 = 17;

/// `direction` bit: the server transmits on the data connection.
pub const DIRECTION_SERVER_SENDS: u32 = 0x2;
/// `direction` bit: the server receives on the data connection.
pub const DIRECTION_SERVER_RECEIVES: u32 = 0x4;

/// One decoded control message from netperf.
// A message lives briefly on the stack of the control task; boxing the
// passphrase would allocate for every message of that type instead.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// Type 97: a test request.
    DoOmni(OmniRequest),
    /// Type 6: the passphrase netperf was given with `-Z`. It gets no reply.
    Passphrase(Passphrase),
    /// Any other type, carried as its type number. The real netserver replies
    /// with `serv_errno` 998.
    Unknown(i32),
}

impl Message {
    /// Decodes one complete message.
    ///
    /// # Errors
    ///
    /// [`DecodeError::Length`] when `bytes` is not exactly
    /// [`MESSAGE_BYTES`] long. Every input of the right length decodes.
    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        let raw: &RawMessage = bytes.try_into().map_err(|_| DecodeError::Length {
            length_bytes: bytes.len(),
        })?;
        Ok(Message::from_raw(raw))
    }

    /// Decodes a message that [`ControlReader`](super::ControlReader)
    /// assembled. Never fails.
    pub fn from_raw(raw: &RawMessage) -> Message {
        match WordReader::new(raw).i32() {
            message_type::DO_OMNI => Message::DoOmni(OmniRequest::from_raw(raw)),
            message_type::PASSPHRASE => Message::Passphrase(Passphrase::from_raw(raw)),
            other => Message::Unknown(other),
        }
    }
}

/// Reason a byte slice is not a control message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The slice is not exactly [`MESSAGE_BYTES`] long.
    Length {
        /// Length of the rejected slice.
        length_bytes: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Length { length_bytes } => write!(
                formatter,
                "invalid netperf control message length: {length_bytes} bytes, expected {MESSAGE_BYTES}"
            ),
        }
    }
}

/// Payload of a PASSPHRASE message: a NUL-terminated string at offset 8, not
/// byte-swapped.
#[derive(Clone, PartialEq, Eq)]
pub struct Passphrase {
    payload: [u8; PAYLOAD_BYTES],
}

impl Passphrase {
    fn from_raw(raw: &RawMessage) -> Passphrase {
        let mut payload = [0; PAYLOAD_BYTES];
        payload.copy_from_slice(&raw[HEADER_BYTES..]);
        Passphrase { payload }
    }

    /// Returns the passphrase bytes up to the first NUL (all 648 payload
    /// bytes if there is none).
    pub fn as_bytes(&self) -> &[u8] {
        until_nul(&self.payload)
    }
}

impl fmt::Debug for Passphrase {
    // The passphrase is a secret: show only its length.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Passphrase")
            .field("length_bytes", &self.as_bytes().len())
            .finish()
    }
}

/// A DO_OMNI request (type 97), field by field as netperf 2.7.0 lays it out.
///
/// Field names are netperf's own. Offsets count from the start of the
/// 656-byte message. Values are stored as sent, without judging them. "-1"
/// on an unsigned field means the word `0xffffffff`.
#[derive(Clone, Debug, PartialEq)]
pub struct OmniRequest {
    /// Offset 4: CPU the server should bind to, -1 for none (netperf `-T`).
    pub cpu_bind: i32,
    /// Offset 8: `SO_SNDBUF` for the data socket, -1 for the default.
    pub send_buf_size: i32,
    /// Offset 12: bytes per send in a stream test, -1 when the server chooses.
    pub send_size: u32,
    /// Offset 16: send buffer alignment.
    pub send_alignment: u32,
    /// Offset 20: send buffer offset.
    pub send_offset: u32,
    /// Offset 24: number of send buffers.
    pub send_width: u32,
    /// Offset 28: bytes netperf sends per transaction (RR), -1 otherwise.
    pub request_size: i32,
    /// Offset 32: `SO_RCVBUF` for the data socket, -1 for the default.
    pub recv_buf_size: i32,
    /// Offset 36: bytes per receive call, -1 when the server chooses.
    pub receive_size: u32,
    /// Offset 40: receive buffer alignment.
    pub recv_alignment: u32,
    /// Offset 44: receive buffer offset.
    pub recv_offset: u32,
    /// Offset 48: number of receive buffers.
    pub recv_width: u32,
    /// Offset 52: bytes the server sends per transaction (RR), -1 otherwise.
    pub response_size: i32,
    /// Offset 56: option bits.
    pub flags: OmniFlags,
    /// Offset 60: CPU rate given with `-C rate`, else 0.0.
    pub cpu_rate: f32,
    /// Offset 64: seconds when positive, a count (transactions or bytes) when
    /// negative, unbounded when 0.
    pub test_length: i32,
    /// Offset 68: receive copy avoidance.
    pub so_rcvavoid: u32,
    /// Offset 72: send copy avoidance.
    pub so_sndavoid: u32,
    /// Offset 76: buffer dirtying count for sends.
    pub send_dirty_count: u32,
    /// Offset 80: buffer dirtying count for receives.
    pub recv_dirty_count: u32,
    /// Offset 84: clean buffer count for receives.
    pub recv_clean_count: u32,
    /// Offset 88: port for the data socket, 0 for any (netperf `-- -P ,N`).
    pub data_port: u32,
    /// Offset 92: address family: 4, 6, or 0 for unspecified.
    pub ipfamily: u32,
    /// Offset 96: 1 for stream, 2 for datagram.
    pub socket_type: u32,
    /// Offset 100: IP protocol number.
    pub protocol: u32,
    /// Offset 104: [`DIRECTION_SERVER_SENDS`] and
    /// [`DIRECTION_SERVER_RECEIVES`] bits, from the server's point of view.
    pub direction: u32,
    /// Offset 108: local port of netperf's data socket. Wrong behind NAT, so
    /// a server never uses it to reach netperf.
    pub netperf_port: u32,
    /// Offset 112: pacing burst size, 0 for off.
    pub interval_burst: u32,
    /// Offset 116: pacing interval in microseconds.
    pub interval_usecs: u32,
    /// Offset 120: netperf's local data address, as four big-endian words.
    /// Wrong behind NAT.
    pub netperf_ip: [u32; 4],
    /// Offset 136: address the server should bind, as four big-endian words;
    /// all zero for any. See [`OmniRequest::netserver_ipv4`].
    pub netserver_ip: [u32; 4],
    /// Offset 152: `SO_PRIORITY`, -1 for none.
    pub socket_prio: i32,
    /// Offset 156: `IP_TOS`, -1 for none.
    pub socket_tos: i32,
    /// Offset 160: congestion control algorithm name, NUL-padded, raw.
    pub cong_control: [u8; 16],
    /// Offset 176: file to fill buffers from, NUL-padded, raw.
    pub fill_file: [u8; 32],
}

impl OmniRequest {
    /// Decodes the request table. The type word is not checked.
    pub fn from_raw(raw: &RawMessage) -> OmniRequest {
        let mut reader = WordReader::new(raw);
        let _message_type = reader.i32();
        let request = OmniRequest {
            cpu_bind: reader.i32(),
            send_buf_size: reader.i32(),
            send_size: reader.u32(),
            send_alignment: reader.u32(),
            send_offset: reader.u32(),
            send_width: reader.u32(),
            request_size: reader.i32(),
            recv_buf_size: reader.i32(),
            receive_size: reader.u32(),
            recv_alignment: reader.u32(),
            recv_offset: reader.u32(),
            recv_width: reader.u32(),
            response_size: reader.i32(),
            flags: OmniFlags(reader.u32()),
            cpu_rate: reader.f32(),
            test_length: reader.i32(),
            so_rcvavoid: reader.u32(),
            so_sndavoid: reader.u32(),
            send_dirty_count: reader.u32(),
            recv_dirty_count: reader.u32(),
            recv_clean_count: reader.u32(),
            data_port: reader.u32(),
            ipfamily: reader.u32(),
            socket_type: reader.u32(),
            protocol: reader.u32(),
            direction: reader.u32(),
            netperf_port: reader.u32(),
            interval_burst: reader.u32(),
            interval_usecs: reader.u32(),
            netperf_ip: reader.words(),
            netserver_ip: reader.words(),
            socket_prio: reader.i32(),
            socket_tos: reader.i32(),
            cong_control: reader.bytes(),
            fill_file: reader.bytes(),
        };
        debug_assert_eq!(reader.offset(), 208, "DO_OMNI layout ends at byte 208");
        request
    }

    /// Returns the `cong_control` name up to its first NUL.
    pub fn cong_control_name(&self) -> &[u8] {
        until_nul(&self.cong_control)
    }

    /// Returns the `fill_file` name up to its first NUL.
    pub fn fill_file_name(&self) -> &[u8] {
        until_nul(&self.fill_file)
    }

    /// Returns `netserver_ip` as IPv4 octets in their usual order: word 0
    /// contains the address as a big-endian number.
    pub fn netserver_ipv4(&self) -> [u8; 4] {
        self.netserver_ip[0].to_be_bytes()
    }

    /// Returns `netserver_ip` as the 16 bytes of an IPv6 address.
    ///
    /// A little-endian netperf byte-swaps the address one 32-bit word at a
    /// time, so each group of four bytes arrives reversed (`::1` ends in
    /// `01 00 00 00`). This undoes that swap.
    pub fn netserver_ipv6(&self) -> [u8; 16] {
        let mut octets = [0; 16];
        for (group, word) in octets.chunks_exact_mut(4).zip(self.netserver_ip) {
            group.copy_from_slice(&word.to_le_bytes());
        }
        octets
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netperf::wire::WordWriter;

    /// Writes words 0 to 39 with distinct values (`0x0100 + index`) and the
    /// two strings, so each field can be checked against its offset.
    fn numbered_request() -> RawMessage {
        let mut writer = WordWriter::new();
        writer.i32(message_type::DO_OMNI);
        for index in 1..REQUEST_BIG_ENDIAN_WORDS as u32 {
            writer.u32(0x0100 + index);
        }
        let mut raw = writer.finish();
        raw[160..164].copy_from_slice(b"bbr\0");
        raw[176..207].copy_from_slice(&[b'f'; 31]);
        raw[207] = b'x';
        raw
    }

    #[test]
    fn request_fields_at_table_offsets() {
        let Message::DoOmni(request) = Message::from_raw(&numbered_request()) else {
            panic!("type 97 must decode as DO_OMNI");
        };
        let word = |offset: u32| 0x0100 + offset / 4;

        assert_eq!(request.cpu_bind as u32, word(4));
        assert_eq!(request.send_buf_size as u32, word(8));
        assert_eq!(request.send_size, word(12));
        assert_eq!(request.send_width, word(24));
        assert_eq!(request.request_size as u32, word(28));
        assert_eq!(request.recv_buf_size as u32, word(32));
        assert_eq!(request.receive_size, word(36));
        assert_eq!(request.recv_width, word(48));
        assert_eq!(request.response_size as u32, word(52));
        assert_eq!(request.flags, OmniFlags(word(56)));
        assert_eq!(request.cpu_rate.to_bits(), word(60));
        assert_eq!(request.test_length as u32, word(64));
        assert_eq!(request.recv_clean_count, word(84));
        assert_eq!(request.data_port, word(88));
        assert_eq!(request.ipfamily, word(92));
        assert_eq!(request.socket_type, word(96));
        assert_eq!(request.protocol, word(100));
        assert_eq!(request.direction, word(104));
        assert_eq!(request.netperf_port, word(108));
        assert_eq!(request.interval_usecs, word(116));
        assert_eq!(
            request.netperf_ip,
            [word(120), word(124), word(128), word(132)]
        );
        assert_eq!(
            request.netserver_ip,
            [word(136), word(140), word(144), word(148)]
        );
        assert_eq!(request.socket_prio as u32, word(152));
        assert_eq!(request.socket_tos as u32, word(156));

        assert_eq!(request.cong_control_name(), b"bbr");
        assert_eq!(request.fill_file_name().len(), 32);
    }

    #[test]
    fn decode_rejects_wrong_lengths() {
        let raw = numbered_request();
        for length_bytes in [0, 1, 8, 159, 655, 657] {
            let mut bytes = std::vec::Vec::from(&raw[..]);
            bytes.resize(length_bytes, 0);
            assert_eq!(
                Message::decode(&bytes),
                Err(DecodeError::Length { length_bytes })
            );
        }
        assert!(matches!(Message::decode(&raw), Ok(Message::DoOmni(_))));
    }

    #[test]
    fn unknown_types_keep_their_number() {
        for message_type in [0, 1, 5, 98, 99, -1, i32::MIN, 0x6200_0000] {
            let mut raw = [0; MESSAGE_BYTES];
            raw[..4].copy_from_slice(&message_type.to_be_bytes());
            assert_eq!(Message::from_raw(&raw), Message::Unknown(message_type));
        }
    }

    #[test]
    fn passphrase_without_nul_uses_whole_payload() {
        let mut raw = [b'a'; MESSAGE_BYTES];
        raw[..4].copy_from_slice(&message_type::PASSPHRASE.to_be_bytes());
        let Message::Passphrase(passphrase) = Message::from_raw(&raw) else {
            panic!("type 6 must decode as PASSPHRASE");
        };
        assert_eq!(passphrase.as_bytes().len(), PAYLOAD_BYTES);
    }

    #[test]
    fn passphrase_debug_hides_secret() {
        let mut raw = [0; MESSAGE_BYTES];
        raw[..4].copy_from_slice(&message_type::PASSPHRASE.to_be_bytes());
        raw[8..14].copy_from_slice(b"secret");
        let debug_output = std::format!("{:?}", Message::from_raw(&raw));
        assert!(!debug_output.contains("secret"), "{debug_output}");
        assert!(debug_output.contains("length_bytes: 6"), "{debug_output}");
    }

    #[test]
    fn ipv6_words_are_unswapped() {
        let mut request = OmniRequest::from_raw(&numbered_request());
        request.netserver_ip = [0, 0, 0, 0x0100_0000];
        let mut loopback = [0; 16];
        loopback[15] = 1;
        assert_eq!(request.netserver_ipv6(), loopback);
        request.netserver_ip = [0x7f00_0001, 0, 0, 0];
        assert_eq!(request.netserver_ipv4(), [127, 0, 0, 1]);
    }
}
