//! Barrier mode selection, counters and index accessors of the split
//! virtqueue, for the driver's statistics and the kernel console.

use super::{QueueCounters, SplitQueue};
use crate::barrier::{BarrierCounters, BarrierMode, BarrierSite};
use crate::dma::Dma;

impl<T, D: Dma> SplitQueue<T, D> {
    /// Sets every barrier site to `mode`. Returns false, and keeps strong
    /// barriers, when `VIRTIO_F_ORDER_PLATFORM` rejects weak ones.
    pub fn set_barrier_mode(&mut self, mode: BarrierMode) -> bool {
        self.barriers.set_mode(mode)
    }

    /// Sets the barrier mode of one site. Returns false, and keeps the site
    /// strong, when `VIRTIO_F_ORDER_PLATFORM` rejects weak barriers.
    pub fn set_site_mode(&mut self, site: BarrierSite, mode: BarrierMode) -> bool {
        self.barriers.set_site_mode(site, mode)
    }

    /// Mode last set for all sites; single sites may differ after
    /// [`Self::set_site_mode`].
    pub fn barrier_mode(&self) -> BarrierMode {
        self.barriers.mode()
    }

    /// Mode in force at `site`.
    pub fn site_mode(&self, site: BarrierSite) -> BarrierMode {
        self.barriers.site_mode(site)
    }

    /// Barrier executions by site and mode.
    pub fn barrier_counters(&self) -> &BarrierCounters {
        self.barriers.counters()
    }

    /// Operation and error counters.
    pub fn counters(&self) -> &QueueCounters {
        &self.counters
    }

    /// Index of the queue on its device.
    pub fn queue_index(&self) -> u16 {
        self.queue_index
    }

    /// Number of descriptors.
    pub fn size(&self) -> u16 {
        self.size
    }

    /// Returns whether the queue uses `VIRTIO_F_EVENT_IDX`.
    pub fn event_idx(&self) -> bool {
        self.event_idx
    }

    /// Returns whether `VIRTIO_F_ORDER_PLATFORM` forces strong barriers.
    pub fn order_platform(&self) -> bool {
        self.barriers.order_platform()
    }

    /// Returns whether the device misbehaved and the queue stopped working.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Descriptors in chains that are added, available or used but not yet
    /// popped.
    pub fn descriptors_in_use(&self) -> u16 {
        self.size - self.free_count
    }

    /// Descriptors free for [`Self::add`].
    pub fn free_descriptors(&self) -> u16 {
        self.free_count
    }

    /// Chains added and not yet popped.
    pub fn outstanding_chains(&self) -> u16 {
        self.outstanding_chains
    }

    /// Returns the avail idx including chains added but not yet published.
    pub fn avail_idx(&self) -> u16 {
        self.avail_idx
    }

    /// Returns the avail idx the device can see.
    pub fn published_avail_idx(&self) -> u16 {
        self.published_avail_idx
    }

    /// Index of the next used entry the driver will read.
    pub fn last_used_idx(&self) -> u16 {
        self.last_used_idx
    }

    /// Reads the used idx as the device last wrote it, without a barrier.
    pub fn used_idx(&self) -> u16 {
        self.used.idx()
    }

    /// Reads `used_event` as the driver last wrote it.
    pub fn used_event(&self) -> u16 {
        self.avail.used_event()
    }

    /// Reads `avail_event` as the device last wrote it, without a barrier.
    pub fn avail_event(&self) -> u16 {
        self.used.avail_event()
    }

    /// Returns whether the driver last enabled (rather than disabled) used
    /// buffer notifications.
    pub fn interrupts_enabled(&self) -> bool {
        self.interrupts_enabled
    }
}
