//! From a finished data phase to the OMNI results message and the log line.

use core::fmt;
use core::time::Duration;

use smoltcp::time::Instant;

use super::data_phase::{Ending, PhaseReport};
use super::CpuCounters;
use crate::netperf::{
    errno, CpuMethod, CpuUtilisation, OmniResults, TestKind, TestParameters, SERVER_DEADLINE_PAD,
};

/// One finished test, as the control connection reports it.
pub(super) struct TestSummary<'a> {
    pub(super) parameters: &'a TestParameters,
    pub(super) report: &'a PhaseReport,
    /// When the response was sent: the start of the server's test time.
    pub(super) started_at: Instant,
    /// Utilisation over the test, when the service measures it and netperf
    /// asked for it.
    pub(super) cpu: Option<CpuUtilisation>,
}

impl TestSummary<'_> {
    /// Returns the server's test time. When the deadline ended a test that
    /// has a pad, the pad is left out, as the real netserver does.
    pub(super) fn elapsed(&self) -> Duration {
        let elapsed_micros = (self.report.finished_at - self.started_at).total_micros();
        let elapsed = Duration::from_micros(elapsed_micros);
        let padded =
            self.report.ending == Ending::Deadline && !self.parameters.kind.is_transmit_only();
        if padded {
            elapsed.saturating_sub(SERVER_DEADLINE_PAD)
        } else {
            elapsed
        }
    }

    /// Builds the results message. A reset data connection is reported as
    /// `ECONNRESET`, with the counters up to the reset.
    pub(super) fn results(&self) -> OmniResults {
        let counters = self.report.counters;
        let buffer_bytes = Some(self.report.buffer_bytes);
        let serv_errno = if self.report.ending == Ending::Reset {
            errno::ECONNRESET
        } else {
            0
        };
        OmniResults {
            serv_errno,
            bytes_received: counters.bytes_received,
            receive_calls: saturate(counters.receive_calls),
            receive_buffer_bytes: buffer_bytes,
            bytes_sent: counters.bytes_sent,
            send_calls: saturate(counters.send_calls),
            send_buffer_bytes: buffer_bytes,
            transactions: saturate(counters.transactions),
            elapsed: self.elapsed(),
            cpu: self.cpu,
            transport_retransmissions: None,
        }
    }
}

/// The part of the per-test log line after "ended: ".
impl fmt::Display for TestSummary<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counters = self.report.counters;
        let bytes = counters.bytes_received.saturating_add(counters.bytes_sent);
        if self.parameters.kind.is_request_response() || self.parameters.kind == TestKind::TcpCc {
            write!(formatter, "{} transactions, ", counters.transactions)?;
        }
        write!(
            formatter,
            "{bytes} bytes, {:.2} s",
            self.elapsed().as_secs_f64()
        )?;
        match self.report.ending {
            Ending::Deadline => formatter.write_str(" (server deadline)"),
            Ending::Reset => formatter.write_str(" (data connection reset)"),
            Ending::Peer | Ending::CountReached => Ok(()),
        }
    }
}

/// Computes the utilisation between two readings of the kernel's CPU
/// counters, as one CPU with netperf's "L" (idle counting) method.
///
/// NOTE: a test shorter than one tick reads 0 %, and netperf 2.7.0 then
/// substitutes its own local utilisation for the remote one.
pub(super) fn cpu_utilisation(start: CpuCounters, end: CpuCounters) -> CpuUtilisation {
    let busy_ticks = end.busy_ticks.saturating_sub(start.busy_ticks);
    let total_ticks = end.total_ticks.saturating_sub(start.total_ticks);
    let percent = if total_ticks == 0 {
        0.0
    } else {
        (busy_ticks as f64 / total_ticks as f64 * 100.0).min(100.0)
    };
    CpuUtilisation {
        percent: percent as f32,
        method: CpuMethod::LOOPER,
        cpu_count: 1,
    }
}

fn saturate(count: u64) -> u32 {
    u32::try_from(count).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_utilisation_is_busy_share_of_ticks() {
        let start = CpuCounters {
            busy_ticks: 100,
            total_ticks: 1000,
        };
        let end = CpuCounters {
            busy_ticks: 350,
            total_ticks: 2000,
        };
        let utilisation = cpu_utilisation(start, end);
        assert_eq!(utilisation.percent, 25.0);
        assert_eq!(utilisation.method, CpuMethod::LOOPER);
        assert_eq!(utilisation.cpu_count, 1);
    }

    #[test]
    fn cpu_utilisation_survives_odd_counters() {
        let start = CpuCounters {
            busy_ticks: 10,
            total_ticks: 10,
        };
        assert_eq!(cpu_utilisation(start, start).percent, 0.0);
        let busier_than_total = CpuCounters {
            busy_ticks: 100,
            total_ticks: 20,
        };
        assert_eq!(cpu_utilisation(start, busier_than_total).percent, 100.0);
        let went_backwards = CpuCounters {
            busy_ticks: 0,
            total_ticks: 0,
        };
        assert_eq!(cpu_utilisation(start, went_backwards).percent, 0.0);
    }
}
