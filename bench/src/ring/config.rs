//! What one trial runs: the device implementation, the event-idx feature,
//! the barrier setting of each site, and the ring's size and load.

use std::fmt;
use std::time::Duration;

use clap::ValueEnum;
use virtio::barrier::{BarrierMode, BarrierSite};
use virtio::dma::Dma;
use virtio::queue::SplitQueue;

/// Device side of the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ValueEnum)]
pub enum DeviceKind {
    /// This crate's device model: a spin loop over the rings with atomics,
    /// written for the benchmark.
    Model,
    /// rust-vmm's `virtio-queue` crate over `vm-memory` guest memory.
    RustVmm,
}

impl DeviceKind {
    /// Stable name, as the command line takes it.
    pub const fn name(self) -> &'static str {
        match self {
            DeviceKind::Model => "model",
            DeviceKind::RustVmm => "rust-vmm",
        }
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// Barrier setting of one site.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SiteSetting {
    /// [`BarrierMode::Weak`].
    Weak,
    /// [`BarrierMode::Strong`].
    Strong,
    /// No barrier at all: the virtio crate's `ablation` feature removes the
    /// site. Only `--unsafe-ablation` runs accept it.
    Ablated,
}

impl SiteSetting {
    /// Stable name, as `--sites` takes it.
    pub const fn name(self) -> &'static str {
        match self {
            SiteSetting::Weak => "weak",
            SiteSetting::Strong => "strong",
            SiteSetting::Ablated => "none",
        }
    }

    /// Parses "weak", "strong" or "none".
    pub fn from_name(name: &str) -> Option<SiteSetting> {
        [SiteSetting::Weak, SiteSetting::Strong, SiteSetting::Ablated]
            .into_iter()
            .find(|setting| setting.name() == name)
    }

    /// Mode the queue is given for this setting. An ablated site keeps the
    /// weak mode underneath, which it never executes.
    pub const fn queue_mode(self) -> BarrierMode {
        match self {
            SiteSetting::Strong => BarrierMode::Strong,
            SiteSetting::Weak | SiteSetting::Ablated => BarrierMode::Weak,
        }
    }
}

/// The barrier setting of every site, with the label that tables use.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BarrierConfig {
    /// "weak", "strong", "site:NAME" (only NAME strong) or "custom:SPEC".
    pub label: String,
    /// Setting of each site, indexed like [`BarrierSite::ALL`].
    pub sites: [SiteSetting; BarrierSite::COUNT],
}

impl BarrierConfig {
    /// Every site in `mode`, labelled with the mode's name.
    pub fn uniform(mode: BarrierMode) -> Self {
        let setting = match mode {
            BarrierMode::Weak => SiteSetting::Weak,
            BarrierMode::Strong => SiteSetting::Strong,
        };
        BarrierConfig {
            label: mode.name().to_string(),
            sites: [setting; BarrierSite::COUNT],
        }
    }

    /// Only `site` strong, the rest weak, for per-site attribution.
    pub fn only_strong(site: BarrierSite) -> Self {
        let mut config = Self::uniform(BarrierMode::Weak);
        config.sites[site_index(site)] = SiteSetting::Strong;
        config.label = format!("site:{}", site.name());
        config
    }

    /// The listed sites as given and the rest weak, labelled with the list.
    pub fn custom(settings: &[(BarrierSite, SiteSetting)]) -> Self {
        let mut config = Self::uniform(BarrierMode::Weak);
        let mut parts = Vec::new();
        for &(site, setting) in settings {
            config.sites[site_index(site)] = setting;
            parts.push(format!("{}={}", site.name(), setting.name()));
        }
        config.label = format!("custom:{}", parts.join(","));
        config
    }

    /// Setting of `site`.
    pub fn setting(&self, site: BarrierSite) -> SiteSetting {
        self.sites[site_index(site)]
    }

    /// The site made strong by [`Self::only_strong`], if this is such a
    /// configuration.
    pub fn single_strong_site(&self) -> Option<BarrierSite> {
        self.label.strip_prefix("site:").and_then(BarrierSite::from_name)
    }

    /// Returns whether any site is ablated.
    pub fn has_ablated_site(&self) -> bool {
        self.sites.contains(&SiteSetting::Ablated)
    }

    /// Sets each site's mode on `queue` through `set_site_mode`. Ablation is
    /// per thread and is applied by the driver thread itself.
    pub fn apply_modes<T, D: Dma>(&self, queue: &mut SplitQueue<T, D>) {
        queue.set_barrier_mode(BarrierMode::Weak);
        for site in BarrierSite::ALL {
            queue.set_site_mode(site, self.setting(site).queue_mode());
        }
    }
}

/// Position of `site` in [`BarrierSite::ALL`].
pub fn site_index(site: BarrierSite) -> usize {
    BarrierSite::ALL
        .iter()
        .position(|&candidate| candidate == site)
        .expect("BarrierSite::ALL lists every site")
}

/// One configuration of the ring: what a trial runs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RingConfig {
    /// Device side.
    pub device: DeviceKind,
    /// Whether both sides use `VIRTIO_F_EVENT_IDX`.
    pub event_idx: bool,
    /// Barrier setting of each driver site.
    pub barriers: BarrierConfig,
}

impl RingConfig {
    /// "DEVICE, event idx on|off, BARRIERS".
    pub fn label(&self) -> String {
        format!("{}, {}", self.group_label(), self.barriers.label)
    }

    /// "DEVICE, event idx on|off": the configurations compared with each
    /// other.
    pub fn group_label(&self) -> String {
        format!(
            "{}, event idx {}",
            self.device,
            if self.event_idx { "on" } else { "off" }
        )
    }
}

/// Ring shape and run lengths shared by every trial of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrialShape {
    /// Descriptors in the queue.
    pub queue_size: u16,
    /// Chains submitted per round trip.
    pub batch: u16,
    /// Timed round trips per trial.
    pub iterations: u64,
    /// Untimed round trips before the timed ones.
    pub warmup: u64,
    /// Wait for a notification after which the driver declares a stall.
    pub stall_timeout: Duration,
    /// Whether faults are counted and recovered from (ablation runs) rather
    /// than ending the run with an error.
    pub tolerate_faults: bool,
}

/// Bytes of each request and response buffer: one cache line, so that no
/// two buffers share a line.
pub const BUFFER_BYTES: u32 = 64;

/// Length the device reports for the response to request `sequence`: the
/// 8-byte sequence number plus 0 to 56 bytes, so that a length from another
/// request or a stale used element shows up as a mismatch.
pub fn response_len(sequence: u64) -> u32 {
    8 + (sequence % 57) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_strong_sets_one_site() {
        let config = BarrierConfig::only_strong(BarrierSite::UsedRead);
        assert_eq!(config.label, "site:used-read");
        assert_eq!(config.single_strong_site(), Some(BarrierSite::UsedRead));
        for site in BarrierSite::ALL {
            let expected = if site == BarrierSite::UsedRead {
                SiteSetting::Strong
            } else {
                SiteSetting::Weak
            };
            assert_eq!(config.setting(site), expected, "{site}");
        }
        assert_eq!(BarrierConfig::uniform(BarrierMode::Strong).single_strong_site(), None);
    }

    #[test]
    fn custom_label_lists_settings() {
        let config = BarrierConfig::custom(&[
            (BarrierSite::NotifyCheck, SiteSetting::Ablated),
            (BarrierSite::AvailPublish, SiteSetting::Strong),
        ]);
        assert_eq!(config.label, "custom:notify-check=none,avail-publish=strong");
        assert!(config.has_ablated_site());
        assert_eq!(config.setting(BarrierSite::UsedRead), SiteSetting::Weak);
        assert!(!BarrierConfig::uniform(BarrierMode::Weak).has_ablated_site());
    }

    #[test]
    fn response_len_fits_buffer() {
        assert!((0..200).all(|sequence| (8..=BUFFER_BYTES).contains(&response_len(sequence))));
        assert_ne!(response_len(1), response_len(2));
    }

    #[test]
    fn setting_names_round_trip() {
        for setting in [SiteSetting::Weak, SiteSetting::Strong, SiteSetting::Ablated] {
            assert_eq!(SiteSetting::from_name(setting.name()), Some(setting));
        }
        assert_eq!(SiteSetting::from_name("full"), None);
    }
}
