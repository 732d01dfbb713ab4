//! Wire primitives shared by every netperf control message.
//!
//! Owns the message size, the type numbers, the flag bits, the errno numbers
//! a server sends back, and the cursors that read and write the leading block
//! of big-endian 32-bit words. The layout is the one the Debian netperf
//! 2.7.0 client uses, checked against the captures in `fixtures/`: an 8-byte
//! header of two words, then 162 words of test-specific payload. Only a
//! leading block of words is in network byte order. The bytes after it
//! (strings, padding) are raw.

/// Size of every control message in both directions: 2 header words plus
/// 162 payload words.
pub const MESSAGE_BYTES: usize = 656;

/// Size of the header: the message type, then the CPU-affinity hint
/// (requests) or `serv_errno` (responses and results).
pub const HEADER_BYTES: usize = 8;

/// Size of the test-specific payload after the header.
pub const PAYLOAD_BYTES: usize = MESSAGE_BYTES - HEADER_BYTES;

/// One complete control message, exactly as it travels on the wire.
pub type RawMessage = [u8; MESSAGE_BYTES];

/// Message type numbers (the first header word).
pub mod message_type {
    /// Passphrase check, sent before the test request when netperf runs with
    /// `-Z`. It gets no reply.
    pub const PASSPHRASE: i32 = 6;
    /// Omni test request. netperf 2.7.0 sends it for every test, including the
    /// classic names (`TCP_RR`, `TCP_STREAM`, ...).
    pub const DO_OMNI: i32 = 97;
    /// Server's reply to [`DO_OMNI`] once its data socket is ready.
    pub const OMNI_RESPONSE: i32 = 98;
    /// Server's counters after the data phase.
    pub const OMNI_RESULTS: i32 = 99;
}

/// Linux errno numbers (x86_64 numbering) a server puts in `serv_errno`.
///
/// The Debian netperf prints `strerror()` of the number on its Linux host,
/// so Linux values produce a meaningful message there.
pub mod errno {
    /// Out of memory.
    pub const ENOMEM: i32 = 12;
    /// Invalid argument: a size, port or length the server cannot use.
    pub const EINVAL: i32 = 22;
    /// Message too long: an RR size that does not fit in one UDP datagram.
    pub const EMSGSIZE: i32 = 90;
    /// Protocol not supported: an IP protocol other than TCP or UDP, or a
    /// socket type that does not match the protocol.
    pub const EPROTONOSUPPORT: i32 = 93;
    /// Socket type not supported: neither stream nor datagram.
    pub const ESOCKTNOSUPPORT: i32 = 94;
    /// Operation not supported: a direction this server does not implement.
    pub const EOPNOTSUPP: i32 = 95;
    /// Address family not supported: anything but IPv4.
    pub const EAFNOSUPPORT: i32 = 97;
    /// Address already in use: the requested data port cannot be bound.
    pub const EADDRINUSE: i32 = 98;
    /// Connection reset by peer.
    pub const ECONNRESET: i32 = 104;
    /// Not a Linux errno: the real netserver's reply to a request type it
    /// does not know (netperf prints `Unknown error 998`).
    pub const UNKNOWN_REQUEST_TYPE: i32 = 998;
}

/// The omni flag word: request offset 56, response offset 32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OmniFlags(pub u32);

impl OmniFlags {
    /// Set `TCP_NODELAY` on the data socket (netperf `-D`).
    pub const NO_DELAY: OmniFlags = OmniFlags(0x0000_0001);
    /// netperf wants `sendfile()` (ignored by a server).
    pub const USE_SENDFILE: OmniFlags = OmniFlags(0x0000_0002);
    /// A new TCP connection per transaction: `TCP_CRR` and `TCP_CC`.
    pub const CONNECT_TEST: OmniFlags = OmniFlags(0x0000_0004);
    /// Request: netperf wants the server's CPU utilisation (`-C`).
    /// Response: the server will report it in the results.
    pub const MEASURE_CPU: OmniFlags = OmniFlags(0x0000_0008);
    /// Checksum offload off (ignored by a server).
    pub const CHECKSUM_OFF: OmniFlags = OmniFlags(0x0000_0010);
    /// Routing allowed. netperf also uses this bit to ask for the server's
    /// congestion-control name in the results.
    pub const ROUTING_ALLOWED: OmniFlags = OmniFlags(0x0000_0020);
    /// TCP fast open.
    pub const FASTOPEN: OmniFlags = OmniFlags(0x0000_0800);
    /// `IP_PKTINFO` on UDP sockets (ignored by a server).
    pub const USE_PKTINFO: OmniFlags = OmniFlags(0x0000_2000);
    /// `TCP_DEFER_ACCEPT` (ignored by a server).
    pub const DEFER_ACCEPT: OmniFlags = OmniFlags(0x0000_8000);
    /// `SO_KEEPALIVE` on the data socket.
    pub const KEEPALIVE: OmniFlags = OmniFlags(0x8000_0000);

    /// Returns whether every bit of `other` is set in `self`.
    pub const fn contains(self, other: OmniFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Returns the union of both flag sets.
    pub const fn union(self, other: OmniFlags) -> OmniFlags {
        OmniFlags(self.0 | other.0)
    }
}

/// Reads consecutive big-endian words from the start of a message.
///
/// Reading past the end yields 0 instead of panicking; callers read fixed
/// layouts far shorter than a message, so that never happens in practice.
pub(crate) struct WordReader<'a> {
    bytes: &'a RawMessage,
    offset: usize,
}

impl<'a> WordReader<'a> {
    pub(crate) fn new(bytes: &'a RawMessage) -> Self {
        Self { bytes, offset: 0 }
    }

    pub(crate) fn u32(&mut self) -> u32 {
        let word = read_be_u32(self.bytes, self.offset);
        self.offset = self.offset.saturating_add(4);
        word
    }

    pub(crate) fn i32(&mut self) -> i32 {
        self.u32() as i32
    }

    /// Reads a float that netperf byte-swapped as if it were an integer.
    pub(crate) fn f32(&mut self) -> f32 {
        f32::from_bits(self.u32())
    }

    pub(crate) fn words<const N: usize>(&mut self) -> [u32; N] {
        core::array::from_fn(|_| self.u32())
    }

    /// Copies `N` raw (not byte-swapped) bytes.
    pub(crate) fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let end = self.offset.saturating_add(N);
        if let Some(source) = self.bytes.get(self.offset..end) {
            out.copy_from_slice(source);
        }
        self.offset = end;
        out
    }

    pub(crate) fn offset(&self) -> usize {
        self.offset
    }
}

/// Writes consecutive big-endian words into a zeroed message.
pub(crate) struct WordWriter {
    bytes: RawMessage,
    offset: usize,
}

impl WordWriter {
    pub(crate) fn new() -> Self {
        Self {
            bytes: [0; MESSAGE_BYTES],
            offset: 0,
        }
    }

    pub(crate) fn u32(&mut self, word: u32) {
        let end = self.offset.saturating_add(4);
        if let Some(target) = self.bytes.get_mut(self.offset..end) {
            target.copy_from_slice(&word.to_be_bytes());
        }
        self.offset = end;
    }

    pub(crate) fn i32(&mut self, word: i32) {
        self.u32(word as u32);
    }

    /// Writes a float the way netperf expects it: its bit pattern as a
    /// big-endian word.
    pub(crate) fn f32(&mut self, value: f32) {
        self.u32(value.to_bits());
    }

    pub(crate) fn offset(&self) -> usize {
        self.offset
    }

    pub(crate) fn finish(self) -> RawMessage {
        self.bytes
    }
}

/// Reads the big-endian word at `offset`, or 0 past the end of `bytes`.
pub(crate) fn read_be_u32(bytes: &[u8], offset: usize) -> u32 {
    let end = offset.saturating_add(4);
    bytes
        .get(offset..end)
        .and_then(|word| <[u8; 4]>::try_from(word).ok())
        .map_or(0, u32::from_be_bytes)
}

/// Returns the bytes of a fixed-size C string up to its first NUL, or all of
/// them when netperf (or an attacker) left no terminator.
pub(crate) fn until_nul(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_is_big_endian_bit_pattern() {
        let mut writer = WordWriter::new();
        writer.f32(100.0);
        writer.f32(2.0001);
        let bytes = writer.finish();
        assert_eq!(bytes[0..4], [0x42, 0xc8, 0x00, 0x00]);
        assert_eq!(bytes[4..8], [0x40, 0x00, 0x01, 0xa3]);
    }

    #[test]
    fn reader_reads_what_writer_wrote() {
        let mut writer = WordWriter::new();
        writer.i32(-1);
        writer.u32(0x0102_0304);
        writer.f32(53.25);
        let bytes = writer.finish();
        let mut reader = WordReader::new(&bytes);
        assert_eq!(reader.i32(), -1);
        assert_eq!(reader.u32(), 0x0102_0304);
        assert_eq!(reader.f32(), 53.25);
        assert_eq!(reader.offset(), 12);
    }

    #[test]
    fn reader_past_end_yields_zero() {
        let bytes = [0xffu8; MESSAGE_BYTES];
        let mut reader = WordReader::new(&bytes);
        let _: [u8; MESSAGE_BYTES - 2] = reader.bytes();
        assert_eq!(reader.u32(), 0);
        assert_eq!(reader.bytes::<8>(), [0; 8]);
        assert_eq!(read_be_u32(&bytes, usize::MAX - 1), 0);
    }

    #[test]
    fn writer_past_end_is_dropped() {
        let mut writer = WordWriter::new();
        for _ in 0..(MESSAGE_BYTES / 4 + 3) {
            writer.u32(0xdead_beef);
        }
        let bytes = writer.finish();
        assert_eq!(bytes[MESSAGE_BYTES - 4..], [0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn until_nul_stops_at_terminator() {
        assert_eq!(until_nul(b"bbr\0\0xx"), b"bbr");
        assert_eq!(until_nul(b"abc"), b"abc");
        assert_eq!(until_nul(b"\0abc"), b"");
    }

    #[test]
    fn flags_contains_and_union() {
        let flags = OmniFlags(0x28);
        assert!(flags.contains(OmniFlags::MEASURE_CPU));
        assert!(flags.contains(OmniFlags::ROUTING_ALLOWED));
        assert!(!flags.contains(OmniFlags::CONNECT_TEST));
        let both = OmniFlags::NO_DELAY.union(OmniFlags::MEASURE_CPU);
        assert_eq!(both, OmniFlags(0x9));
    }
}
