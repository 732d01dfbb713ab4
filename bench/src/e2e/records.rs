//! Parser of the guest console's record format, and the differences of two
//! `stats` snapshots.
//!
//! A record is one line: a name, then `key=value` fields separated by
//! spaces (`queue index=0 name=receive adds=290 ...`). The console prints
//! its prompt, the echoed command and plain messages between records, so
//! the parser skips any line whose first word is not a record name or that
//! has a word without `=`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::Serialize;
use virtio::barrier::{BarrierKind, BarrierSite};

use super::options::Mode;

/// Buckets of a `cycles` record: bucket `i` counts samples in
/// `[2^i, 2^(i+1))` cycles.
pub const LOG2_BUCKETS: usize = 33;

/// One parsed line: a record name and its fields in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// First word, such as `queue` or `barrier`.
    pub name: &'a str,
    /// `key=value` fields in the order printed.
    pub fields: Vec<(&'a str, &'a str)>,
}

impl<'a> Record<'a> {
    /// Parses `line`, or returns `None` when it is not a record: the first
    /// word must start with a lower-case letter and every later word must
    /// contain `=`.
    pub fn parse(line: &'a str) -> Option<Record<'a>> {
        let mut words = line.split_whitespace();
        let name = words.next()?;
        let starts_like_name = name.chars().next().is_some_and(|first| first.is_ascii_lowercase());
        if !starts_like_name || !name.chars().all(|character| character.is_ascii_alphanumeric() || character == '_') {
            return None;
        }
        let fields = words.map(|word| word.split_once('=')).collect::<Option<Vec<_>>>()?;
        if fields.is_empty() {
            return None;
        }
        Some(Record { name, fields })
    }

    /// Text of field `key`.
    pub fn text(&self, key: &str) -> Option<&'a str> {
        self.fields.iter().find(|(name, _)| *name == key).map(|&(_, value)| value)
    }

    /// Field `key` as an unsigned number.
    pub fn number(&self, key: &str) -> Option<u64> {
        self.text(key)?.parse().ok()
    }

    fn required_text(&self, key: &'static str) -> Result<&'a str, RecordError> {
        self.text(key).ok_or_else(|| self.missing(key))
    }

    fn required_number(&self, key: &'static str) -> Result<u64, RecordError> {
        self.number(key).ok_or_else(|| self.missing(key))
    }

    fn required_mode(&self, key: &'static str) -> Result<Mode, RecordError> {
        let text = self.required_text(key)?;
        Mode::from_name(text).ok_or_else(|| RecordError::InvalidField {
            record: self.name.to_string(),
            key,
            value: text.to_string(),
        })
    }

    fn missing(&self, key: &'static str) -> RecordError {
        RecordError::InvalidField {
            record: self.name.to_string(),
            key,
            value: self.text(key).unwrap_or("<missing>").to_string(),
        }
    }
}

/// Parses every record of `output`, in order.
pub fn records(output: &str) -> impl Iterator<Item = Record<'_>> {
    output.lines().filter_map(Record::parse)
}

/// A console output that lacks a record or a field the harness needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// A field is absent or not of its type.
    InvalidField {
        /// Record name.
        record: String,
        /// Field name.
        key: &'static str,
        /// Text of the line, or `<missing>`.
        value: String,
    },
    /// No record of this name (and filter) was printed.
    MissingRecord {
        /// Record searched for, such as `queue name=transmit`.
        record: String,
    },
}

impl fmt::Display for RecordError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::InvalidField { record, key, value } => {
                write!(formatter, "`{record}` record has an invalid {key}= field ({value})")
            }
            RecordError::MissingRecord { record } => write!(formatter, "no `{record}` record in the console output"),
        }
    }
}

impl std::error::Error for RecordError {}

/// Counters of one virtqueue from a `queue` record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueCounters {
    /// Chains made available.
    pub adds: u64,
    /// Available buffer notifications sent to the device.
    pub kicks: u64,
    /// Notifications the device's event index made unnecessary.
    pub kicks_suppressed: u64,
    /// Used buffer notifications (interrupts) taken for the queue.
    pub interrupts: u64,
    /// Used entries processed.
    pub used: u64,
}

impl QueueCounters {
    fn from_record(record: &Record<'_>) -> Result<QueueCounters, RecordError> {
        Ok(QueueCounters {
            adds: record.required_number("adds")?,
            kicks: record.required_number("kicks")?,
            kicks_suppressed: record.required_number("kicks_suppressed")?,
            interrupts: record.required_number("interrupts")?,
            used: record.required_number("used")?,
        })
    }

    /// `self - earlier`, field by field, saturating at 0.
    pub fn since(&self, earlier: &QueueCounters) -> QueueCounters {
        QueueCounters {
            adds: self.adds.saturating_sub(earlier.adds),
            kicks: self.kicks.saturating_sub(earlier.kicks),
            kicks_suppressed: self.kicks_suppressed.saturating_sub(earlier.kicks_suppressed),
            interrupts: self.interrupts.saturating_sub(earlier.interrupts),
            used: self.used.saturating_sub(earlier.used),
        }
    }
}

/// A `cycles` record: a log2 histogram of driver path cycles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CycleHistogram {
    /// Samples.
    pub count: u64,
    /// Sum of the samples. The console prints the mean rounded down, so
    /// this is `count * mean`, up to one cycle per sample below the true sum.
    pub total_cycles: u64,
    /// Samples per power-of-two bucket.
    pub buckets: Vec<u64>,
}

impl CycleHistogram {
    fn from_record(record: &Record<'_>) -> Result<CycleHistogram, RecordError> {
        let count = record.required_number("count")?;
        let mean = record.required_number("mean")?;
        let text = record.required_text("log2_buckets")?;
        let buckets = text
            .split(',')
            .map(str::parse::<u64>)
            .collect::<Result<Vec<u64>, _>>()
            .ok()
            .filter(|buckets| buckets.len() == LOG2_BUCKETS)
            .ok_or_else(|| record.missing("log2_buckets"))?;
        Ok(CycleHistogram {
            count,
            total_cycles: count.saturating_mul(mean),
            buckets,
        })
    }

    /// `self - earlier`, bucket by bucket, saturating at 0.
    pub fn since(&self, earlier: &CycleHistogram) -> CycleHistogram {
        CycleHistogram {
            count: self.count.saturating_sub(earlier.count),
            total_cycles: self.total_cycles.saturating_sub(earlier.total_cycles),
            buckets: self
                .buckets
                .iter()
                .zip(earlier.buckets.iter().chain(std::iter::repeat(&0)))
                .map(|(now, before)| now.saturating_sub(*before))
                .collect(),
        }
    }

    /// Mean cycles per sample, or `None` without samples.
    pub fn mean_cycles(&self) -> Option<f64> {
        (self.count > 0).then(|| self.total_cycles as f64 / self.count as f64)
    }

    /// Buckets joined with `;`, for one CSV cell.
    pub fn buckets_text(&self) -> String {
        self.buckets.iter().map(u64::to_string).collect::<Vec<_>>().join(";")
    }
}

/// A driver path timed by the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DriverPath {
    /// Add, publish and the notification decision.
    Submit,
    /// Reading the used index and one used entry.
    Complete,
}

impl DriverPath {
    /// Both paths.
    pub const ALL: [DriverPath; 2] = [DriverPath::Submit, DriverPath::Complete];

    /// Name in `cycles` records.
    pub fn name(self) -> &'static str {
        match self {
            DriverPath::Submit => "submit",
            DriverPath::Complete => "complete",
        }
    }

    fn from_name(name: &str) -> Option<DriverPath> {
        DriverPath::ALL.into_iter().find(|path| path.name() == name)
    }
}

/// The receive queue's index; the transmit queue is 1.
pub const RECEIVE_QUEUE: u16 = 0;
/// The transmit queue's index.
pub const TRANSMIT_QUEUE: u16 = 1;

/// Everything the harness reads from one `stats` output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuestStats {
    /// `queue` counters by queue index.
    pub queues: BTreeMap<u16, QueueCounters>,
    /// Barrier mode each queue reports, by queue index.
    pub queue_modes: BTreeMap<u16, Mode>,
    /// `barrier` records: executions by (queue, site, mode).
    pub barriers: HashMap<(u16, BarrierSite, Mode), u64>,
    /// `cycles` records by (queue, path, mode).
    pub cycles: BTreeMap<(u16, DriverPath, Mode), CycleHistogram>,
    /// `nic` record fields.
    pub nic: BTreeMap<String, u64>,
    /// `system uptime_us`.
    pub uptime_us: u64,
    /// `system cpu_busy_permille`: busy share of the guest CPU since boot.
    pub cpu_busy_permille: u64,
}

impl GuestStats {
    /// Parses the output of the console's `stats` command.
    ///
    /// # Errors
    /// [`RecordError`] when the receive or transmit queue, their barrier
    /// sites, or the `system` record is missing, or a field is malformed.
    pub fn parse(output: &str) -> Result<GuestStats, RecordError> {
        let mut stats = GuestStats::default();
        let mut system_seen = false;
        for record in records(output) {
            match record.name {
                "queue" => {
                    let index = queue_index(&record, "index")?;
                    stats.queues.insert(index, QueueCounters::from_record(&record)?);
                    stats.queue_modes.insert(index, record.required_mode("barrier_mode")?);
                }
                "barrier" => {
                    let queue = queue_index(&record, "queue")?;
                    let site_name = record.required_text("site")?;
                    let site = BarrierSite::from_name(site_name).ok_or_else(|| record.missing("site"))?;
                    for mode in Mode::ALL {
                        let count = record.required_number(mode.name())?;
                        stats.barriers.insert((queue, site, mode), count);
                    }
                }
                "cycles" => {
                    let queue = queue_index(&record, "queue")?;
                    let path = DriverPath::from_name(record.required_text("path")?).ok_or_else(|| record.missing("path"))?;
                    let mode = record.required_mode("mode")?;
                    stats.cycles.insert((queue, path, mode), CycleHistogram::from_record(&record)?);
                }
                "nic" => {
                    for (key, value) in &record.fields {
                        if let Ok(number) = value.parse() {
                            stats.nic.insert((*key).to_string(), number);
                        }
                    }
                }
                "system" => {
                    stats.uptime_us = record.required_number("uptime_us")?;
                    stats.cpu_busy_permille = record.required_number("cpu_busy_permille")?;
                    system_seen = true;
                }
                _ => {}
            }
        }

        for (queue, name) in [(RECEIVE_QUEUE, "queue index=0"), (TRANSMIT_QUEUE, "queue index=1")] {
            if !stats.queues.contains_key(&queue) {
                return Err(RecordError::MissingRecord { record: name.to_string() });
            }
            for site in BarrierSite::ALL {
                if !stats.barriers.contains_key(&(queue, site, Mode::Weak)) {
                    return Err(RecordError::MissingRecord {
                        record: format!("barrier queue={queue} site={}", site.name()),
                    });
                }
            }
        }
        if !system_seen {
            return Err(RecordError::MissingRecord { record: "system".to_string() });
        }
        Ok(stats)
    }

    /// Executions of every site of `kind` in `mode`, over both queues.
    pub fn barriers_of_kind(&self, kind: BarrierKind, mode: Mode) -> u64 {
        self.barriers
            .iter()
            .filter(|((_, site, counted_mode), _)| site.kind() == kind && *counted_mode == mode)
            .map(|(_, count)| count)
            .sum()
    }

    /// Executions of `site` in `mode`, over both queues.
    pub fn site_barriers(&self, site: BarrierSite, mode: Mode) -> u64 {
        self.barriers
            .iter()
            .filter(|((_, counted_site, counted_mode), _)| *counted_site == site && *counted_mode == mode)
            .map(|(_, count)| count)
            .sum()
    }

    /// Computes the differences from `earlier` to `self`.
    pub fn since(&self, earlier: &GuestStats) -> StatsDelta {
        let queue = |index: u16| {
            let now = self.queues.get(&index).cloned().unwrap_or_default();
            let before = earlier.queues.get(&index).cloned().unwrap_or_default();
            now.since(&before)
        };
        let mut barriers = HashMap::new();
        for (key, count) in &self.barriers {
            let before = earlier.barriers.get(key).copied().unwrap_or(0);
            barriers.insert(*key, count.saturating_sub(before));
        }
        let mut cycles = BTreeMap::new();
        for (key, histogram) in &self.cycles {
            let delta = match earlier.cycles.get(key) {
                Some(before) => histogram.since(before),
                None => histogram.clone(),
            };
            cycles.insert(*key, delta);
        }
        let nic_delta = |key: &str| {
            let now = self.nic.get(key).copied().unwrap_or(0);
            now.saturating_sub(earlier.nic.get(key).copied().unwrap_or(0))
        };

        // The console prints the busy share since boot, so the share within
        // the interval comes from the busy time at both ends.
        let busy_us = |stats: &GuestStats| stats.uptime_us as f64 * stats.cpu_busy_permille as f64 / 1000.0;
        let interval_us = self.uptime_us.saturating_sub(earlier.uptime_us);
        let cpu_busy_permille = (interval_us > 0)
            .then(|| ((busy_us(self) - busy_us(earlier)) / interval_us as f64 * 1000.0).clamp(0.0, 1000.0));

        StatsDelta {
            receive: queue(RECEIVE_QUEUE),
            transmit: queue(TRANSMIT_QUEUE),
            barriers,
            cycles,
            rx_frames: nic_delta("rx_frames"),
            tx_frames: nic_delta("tx_frames"),
            interval_us,
            cpu_busy_permille,
        }
    }
}

fn queue_index(record: &Record<'_>, key: &'static str) -> Result<u16, RecordError> {
    record
        .number(key)
        .and_then(|index| u16::try_from(index).ok())
        .ok_or_else(|| record.missing(key))
}

/// Changes in the guest between two `stats` snapshots.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatsDelta {
    /// Receive queue counters.
    pub receive: QueueCounters,
    /// Transmit queue counters.
    pub transmit: QueueCounters,
    /// Barrier executions by (queue, site, mode).
    pub barriers: HashMap<(u16, BarrierSite, Mode), u64>,
    /// Driver path histograms by (queue, path, mode).
    pub cycles: BTreeMap<(u16, DriverPath, Mode), CycleHistogram>,
    /// Frames received.
    pub rx_frames: u64,
    /// Frames sent.
    pub tx_frames: u64,
    /// Guest uptime between the snapshots, in microseconds.
    pub interval_us: u64,
    /// Busy share of the guest CPU between the snapshots, an estimate from
    /// the rounded since-boot shares.
    pub cpu_busy_permille: Option<f64>,
}

impl StatsDelta {
    /// Barrier executions of `kind` in `mode`, over both queues.
    pub fn barriers_of_kind(&self, kind: BarrierKind, mode: Mode) -> u64 {
        self.barriers
            .iter()
            .filter(|((_, site, counted_mode), _)| site.kind() == kind && *counted_mode == mode)
            .map(|(_, count)| count)
            .sum()
    }

    /// Barrier executions of `site` in `mode`, over both queues.
    pub fn site_barriers(&self, site: BarrierSite, mode: Mode) -> u64 {
        self.barriers
            .iter()
            .filter(|((_, counted_site, counted_mode), _)| *counted_site == site && *counted_mode == mode)
            .map(|(_, count)| count)
            .sum()
    }

    /// Barrier executions in `mode`, every site and queue.
    pub fn barriers_in_mode(&self, mode: Mode) -> u64 {
        self.barriers
            .iter()
            .filter(|((_, _, counted_mode), _)| *counted_mode == mode)
            .map(|(_, count)| count)
            .sum()
    }

    /// Notifications in both directions: available buffer notifications
    /// (kicks) and used buffer notifications (interrupts) of both queues.
    pub fn notifications(&self) -> u64 {
        self.receive.kicks + self.transmit.kicks + self.receive.interrupts + self.transmit.interrupts
    }

    /// Returns the histogram of (queue, path, mode), or an empty one.
    pub fn histogram(&self, queue: u16, path: DriverPath, mode: Mode) -> CycleHistogram {
        self.cycles.get(&(queue, path, mode)).cloned().unwrap_or(CycleHistogram {
            count: 0,
            total_cycles: 0,
            buckets: vec![0; LOG2_BUCKETS],
        })
    }
}

/// One line of the console's `barrier-bench` output.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BarrierBenchLine {
    /// Accelerator the guest detected from CPUID: kvm, tcg, none or unknown.
    pub accelerator: String,
    /// Barrier mode.
    pub mode: Mode,
    /// `read`, `write` or `full`.
    pub kind: String,
    /// Barriers per timed loop.
    pub iterations: u64,
    /// Guest TSC cycles per barrier, minus the empty loop.
    pub cycles_per_barrier: f64,
}

/// Parses every `barrier_bench` record of `output`.
///
/// # Errors
/// [`RecordError::InvalidField`] for a malformed `barrier_bench` record.
pub fn parse_barrier_bench(output: &str) -> Result<Vec<BarrierBenchLine>, RecordError> {
    records(output)
        .filter(|record| record.name == "barrier_bench")
        .map(|record| {
            let kind = record.required_text("kind")?;
            if BarrierKind::ALL.iter().all(|known| known.name() != kind) {
                return Err(record.missing("kind"));
            }
            let cycles = record.required_text("cycles_per_barrier")?;
            Ok(BarrierBenchLine {
                accelerator: record.required_text("accel")?.to_string(),
                mode: record.required_mode("mode")?,
                kind: kind.to_string(),
                iterations: record.required_number("iterations")?,
                cycles_per_barrier: cycles.parse().map_err(|_| record.missing("cycles_per_barrier"))?,
            })
        })
        .collect()
}

/// Parses the console's `barriers` output, `barriers receive=M transmit=M`,
/// into the receive and transmit queue modes.
///
/// # Errors
/// [`RecordError`] when the output has no such record.
pub fn parse_barrier_modes(output: &str) -> Result<(Mode, Mode), RecordError> {
    let record = records(output)
        .find(|record| record.name == "barriers")
        .ok_or_else(|| RecordError::MissingRecord { record: "barriers".to_string() })?;
    Ok((record.required_mode("receive")?, record.required_mode("transmit")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_parses_fields_in_order() {
        let record = Record::parse("cycles queue=1 path=submit mode=weak count=3 mean=7").expect("a record");
        assert_eq!(record.name, "cycles");
        assert_eq!(record.fields.len(), 5);
        assert_eq!(record.text("path"), Some("submit"));
        assert_eq!(record.number("mean"), Some(7));
        assert_eq!(record.number("path"), None);
    }

    #[test]
    fn non_records_are_skipped() {
        for line in ["> ", "stats", "> stats", "barriers strong", "warning: VIRTIO_F_ORDER_PLATFORM was negotiated", ""] {
            assert_eq!(Record::parse(line), None, "{line:?}");
        }
    }

    #[test]
    fn histogram_difference_is_per_bucket() {
        let now = CycleHistogram { count: 5, total_cycles: 50, buckets: vec![1, 4, 0] };
        let before = CycleHistogram { count: 2, total_cycles: 10, buckets: vec![1, 1] };
        let delta = now.since(&before);
        assert_eq!(delta.buckets, [0, 3, 0]);
        assert_eq!(delta.mean_cycles(), Some(40.0 / 3.0));
        assert_eq!(delta.buckets_text(), "0;3;0");
    }
}
