//! Encoding of the OMNI results (type 99), sent after the data phase.
//!
//! The server sends the results once its data phase has ended and its data
//! sockets are closed. Layout: 2 header words and 27 payload words in
//! big-endian order (bytes 0 to 115), then zeroed strings (interface,
//! driver, congestion control) and padding. netperf's own clock is the only
//! time base, but `TCP_STREAM` throughput (and any test printed in bit or
//! byte units) is computed from the byte counters here.

use core::time::Duration;

use super::response::buffer_size_word;
use super::wire::{message_type, RawMessage, WordWriter};

/// Number of big-endian words at the start of an OMNI results message.
pub const RESULTS_BIG_ENDIAN_WORDS: usize = 29;

/// Code of the CPU measurement method. netperf prints it as a letter next to
/// the remote CPU figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuMethod(pub u32);

impl CpuMethod {
    /// Unknown method, printed `U`.
    pub const UNKNOWN: CpuMethod = CpuMethod(0);
    /// A looper process or idle counting, printed `L`.
    pub const LOOPER: CpuMethod = CpuMethod(4);
    /// `/proc/stat`, printed `S`: what the Linux netserver uses.
    pub const PROC_STAT: CpuMethod = CpuMethod(8);
}

/// A CPU utilisation measurement over the data phase.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CpuUtilisation {
    /// Busy time over all CPUs, in percent (0 to 100).
    pub percent: f32,
    /// Measurement method of `percent`.
    pub method: CpuMethod,
    /// Number of CPUs the figure covers. netperf multiplies the service
    /// demand by it, and uses its own CPU count when this is 0.
    pub cpu_count: u32,
}

/// OMNI results: the server's counters for one test.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OmniResults {
    /// 0, or a Linux errno if the data phase failed; netperf then prints the
    /// error and exits.
    pub serv_errno: i32,
    /// Data bytes the server received.
    pub bytes_received: u64,
    /// Receive calls that returned data.
    pub receive_calls: u32,
    /// Receive buffer of the data socket at the end; `None` if unknown.
    pub receive_buffer_bytes: Option<u32>,
    /// Data bytes the server sent.
    pub bytes_sent: u64,
    /// Send calls.
    pub send_calls: u32,
    /// Send buffer of the data socket at the end; `None` if unknown.
    pub send_buffer_bytes: Option<u32>,
    /// Transactions the server completed (request/response and connect
    /// tests). netperf 2.7.0 does not use it.
    pub transactions: u32,
    /// Server-side test time, without the deadline pad. netperf 2.7.0 does
    /// not use it.
    pub elapsed: Duration,
    /// CPU utilisation, only when the response set `MEASURE_CPU`; netperf
    /// ignores these fields otherwise.
    pub cpu: Option<CpuUtilisation>,
    /// TCP retransmissions on the data connection; `None` (sent as -1) if
    /// unknown.
    pub transport_retransmissions: Option<u32>,
}

impl OmniResults {
    /// Creates results that report a failed data phase: `serv_errno` set,
    /// every counter zero.
    pub const fn error(serv_errno: i32) -> Self {
        OmniResults {
            serv_errno,
            bytes_received: 0,
            receive_calls: 0,
            receive_buffer_bytes: None,
            bytes_sent: 0,
            send_calls: 0,
            send_buffer_bytes: None,
            transactions: 0,
            elapsed: Duration::ZERO,
            cpu: None,
            transport_retransmissions: None,
        }
    }

    /// Encodes the results into one 656-byte message.
    pub fn encode(&self) -> RawMessage {
        let mut writer = WordWriter::new();
        writer.i32(message_type::OMNI_RESULTS);
        writer.i32(self.serv_errno);
        write_u64(&mut writer, self.bytes_received);
        writer.u32(self.receive_calls);
        writer.i32(buffer_size_word(self.receive_buffer_bytes));
        write_u64(&mut writer, self.bytes_sent);
        writer.u32(self.send_calls);
        writer.i32(buffer_size_word(self.send_buffer_bytes));
        // failed_sends: always 0 for TCP and UDP.
        writer.u32(0);
        writer.u32(self.transactions);
        writer.f32(self.elapsed.as_secs_f32());
        self.write_cpu(&mut writer);
        // vendor, device, subvendor, subdevice of the network interface.
        for _ in 0..4 {
            writer.u32(0);
        }
        writer.i32(
            self.transport_retransmissions
                .map_or(-1, |count| i32::try_from(count).unwrap_or(i32::MAX)),
        );
        debug_assert_eq!(writer.offset(), RESULTS_BIG_ENDIAN_WORDS * 4);
        writer.finish()
    }

    /// Writes `cpu_util` through `peak_cpu_util` (offsets 52 to 95). The
    /// per-category percentages, service demand and peak CPU stay 0: netperf
    /// prints them only in `-o` output.
    fn write_cpu(&self, writer: &mut WordWriter) {
        let cpu = self.cpu.unwrap_or(CpuUtilisation {
            percent: 0.0,
            method: CpuMethod::UNKNOWN,
            cpu_count: 0,
        });
        writer.f32(cpu.percent);
        // cpu_percent_user, _system, _iowait, _irq, _swintr, then serv_dem.
        for _ in 0..6 {
            writer.f32(0.0);
        }
        writer.u32(cpu.method.0);
        writer.u32(cpu.cpu_count);
        // peak_cpu_id, peak_cpu_util.
        writer.i32(0);
        writer.f32(0.0);
    }
}

fn write_u64(writer: &mut WordWriter, value: u64) {
    writer.u32((value >> 32) as u32);
    writer.u32(value as u32);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netperf::wire::{read_be_u32, MESSAGE_BYTES};

    fn sample() -> OmniResults {
        OmniResults {
            serv_errno: 0,
            bytes_received: 0x0000_0001_0f39_c000,
            receive_calls: 0x0101,
            receive_buffer_bytes: Some(0x0202),
            bytes_sent: 0x1234_5678_9abc_def0,
            send_calls: 0x0303,
            send_buffer_bytes: Some(0x0404),
            transactions: 0x0505,
            elapsed: Duration::from_millis(2500),
            cpu: Some(CpuUtilisation {
                percent: 100.0,
                method: CpuMethod::LOOPER,
                cpu_count: 2,
            }),
            transport_retransmissions: Some(7),
        }
    }

    #[test]
    fn fields_at_table_offsets() {
        let bytes = sample().encode();
        let expected = [
            (0, 99),
            (4, 0),
            (8, 0x0000_0001),
            (12, 0x0f39_c000),
            (16, 0x0101),
            (20, 0x0202),
            (24, 0x1234_5678),
            (28, 0x9abc_def0),
            (32, 0x0303),
            (36, 0x0404),
            (40, 0),
            (44, 0x0505),
            (48, 2.5f32.to_bits()),
            (52, 0x42c8_0000),
            (80, 4),
            (84, 2),
            (88, 0),
            (92, 0),
            (112, 7),
        ];
        for (offset, value) in expected {
            assert_eq!(read_be_u32(&bytes, offset), value, "offset {offset}");
        }
        for offset in (56..80).chain(96..112).step_by(4) {
            assert_eq!(read_be_u32(&bytes, offset), 0, "offset {offset}");
        }
        assert!(bytes[116..].iter().all(|&b| b == 0));
    }

    #[test]
    fn unmeasured_cpu_and_unknown_retransmissions() {
        let results = OmniResults {
            cpu: None,
            transport_retransmissions: None,
            ..sample()
        };
        let bytes = results.encode();
        for offset in (52..112).step_by(4) {
            assert_eq!(read_be_u32(&bytes, offset), 0, "offset {offset}");
        }
        assert_eq!(read_be_u32(&bytes, 112), 0xffff_ffff);
    }

    #[test]
    fn error_results_zero_counters() {
        let bytes = OmniResults::error(104).encode();
        assert_eq!(read_be_u32(&bytes, 0), 99);
        assert_eq!(read_be_u32(&bytes, 4), 104);
        assert_eq!(read_be_u32(&bytes, 20), 0xffff_ffff);
        assert_eq!(read_be_u32(&bytes, 36), 0xffff_ffff);
        assert_eq!(read_be_u32(&bytes, 112), 0xffff_ffff);
        assert_eq!(bytes.len(), MESSAGE_BYTES);
    }

    #[test]
    fn huge_counters_saturate_or_split() {
        let results = OmniResults {
            bytes_received: u64::MAX,
            receive_buffer_bytes: Some(u32::MAX),
            transport_retransmissions: Some(u32::MAX),
            elapsed: Duration::MAX,
            ..sample()
        };
        let bytes = results.encode();
        assert_eq!(read_be_u32(&bytes, 8), u32::MAX);
        assert_eq!(read_be_u32(&bytes, 12), u32::MAX);
        assert_eq!(read_be_u32(&bytes, 20), i32::MAX as u32);
        assert_eq!(read_be_u32(&bytes, 112), i32::MAX as u32);
        assert!(f32::from_bits(read_be_u32(&bytes, 48)).is_finite());
    }
}
