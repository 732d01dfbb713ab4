//! The transmit queue (virtio 1.2 section 5.1.6.2 "Packet Transmission").
//!
//! Each frame goes out as one device-readable descriptor holding the
//! virtio-net header and the frame, which VIRTIO_F_VERSION_1 permits (it
//! implies VIRTIO_F_ANY_LAYOUT). Transmit buffers come back through the used
//! ring and return to the free list.

use alloc::vec::Vec;

use log::error;
use virtio::dma::Dma;
use virtio::queue::{Buffer, SplitQueue};
use virtio::transport::{PciTransport, QueueNotifier, RegisterBlock};

use crate::buffers::BufferPool;
use crate::histogram::{read_tsc, PathHistograms};
use crate::header::HEADER_BYTES;
use crate::stats::{should_log, TxStats};

/// The transmit side: queue 1, its buffers and their free list.
pub struct Transmitter<D: Dma + Clone> {
    pub(crate) queue: SplitQueue<u16, D>,
    pub(crate) notifier: QueueNotifier,
    buffers: BufferPool<D>,
    free: Vec<u16>,
    stats: TxStats,
    /// Cycles to add, publish and decide on the notification of a frame.
    submit_cycles: PathHistograms,
    /// Cycles to read the used idx and one used entry.
    complete_cycles: PathHistograms,
    broken_reported: bool,
}

impl<D: Dma + Clone> Transmitter<D> {
    pub(crate) fn new(queue: SplitQueue<u16, D>, notifier: QueueNotifier, buffers: BufferPool<D>) -> Self {
        let free = (0..buffers.count()).rev().collect();
        Self {
            queue,
            notifier,
            buffers,
            free,
            stats: TxStats::default(),
            submit_cycles: PathHistograms::default(),
            complete_cycles: PathHistograms::default(),
            broken_reported: false,
        }
    }

    /// Returns the largest frame one transmit buffer holds.
    pub fn max_frame_bytes(&self) -> usize {
        self.buffers.slot_bytes() - HEADER_BYTES
    }

    /// Takes back the buffers the device has finished sending.
    pub fn reclaim(&mut self) {
        loop {
            let start = read_tsc();
            let popped = self.queue.pop_used();
            if let Ok(Some(_)) = popped {
                self.complete_cycles.record(self.queue.barrier_mode(), read_tsc().wrapping_sub(start));
            }
            match popped {
                // The used length of a transmit chain carries no meaning
                // (the device only reads it), so even an invalid one frees
                // the buffer.
                Ok(Some(used)) => self.free.push(used.token),
                Ok(None) => return,
                Err(problem) => {
                    if !self.broken_reported {
                        error!("virtio-net: transmit queue is broken, sending stops: {problem:?}");
                        self.broken_reported = true;
                    }
                    return;
                }
            }
        }
    }

    /// Returns whether a transmit buffer is free (after reclaiming).
    pub fn has_free_buffer(&mut self) -> bool {
        if self.free.is_empty() {
            self.reclaim();
        }
        !self.free.is_empty() && !self.queue.is_broken()
    }

    /// Sends one frame of `frame_bytes`, which `fill` writes. Returns `None`
    /// without calling `fill` (and counts why) when no buffer is free or the
    /// frame is too long. Once `fill` has run, the result is returned even if
    /// the queue then rejects the chain, which is counted as a drop.
    pub fn send<R: RegisterBlock, T>(
        &mut self,
        frame_bytes: usize,
        fill: impl FnOnce(&mut [u8]) -> T,
        transport: &PciTransport<R>,
    ) -> Option<T> {
        if frame_bytes > self.max_frame_bytes() {
            self.stats.dropped_too_long += 1;
            if should_log(self.stats.dropped_too_long) {
                error!(
                    "virtio-net: frame of {frame_bytes} bytes exceeds the {}-byte transmit buffer \
                     ({} such drops)",
                    self.max_frame_bytes(),
                    self.stats.dropped_too_long
                );
            }
            return None;
        }
        if !self.has_free_buffer() {
            self.stats.dropped_ring_full += 1;
            return None;
        }
        let index = self.free.pop()?;

        let slot = self.buffers.slot_mut(index);
        // A zero header: no checksum offload, no segmentation (GSO_NONE).
        slot[..HEADER_BYTES].fill(0);
        let result = fill(&mut slot[HEADER_BYTES..HEADER_BYTES + frame_bytes]);

        let buffer = Buffer {
            address: self.buffers.device_address(index),
            len: (HEADER_BYTES + frame_bytes) as u32,
        };
        let start = read_tsc();
        if let Err(rejected) = self.queue.add(&[buffer], &[], index) {
            self.stats.dropped_queue_error += 1;
            self.free.push(rejected.into_token());
            return Some(result);
        }
        let notify = self.queue.publish();
        self.submit_cycles.record(self.queue.barrier_mode(), read_tsc().wrapping_sub(start));
        if notify {
            transport.notify(self.notifier);
            self.stats.notifications += 1;
        }
        self.stats.frames += 1;
        self.stats.bytes += frame_bytes as u64;
        Some(result)
    }

    /// Returns the cycle histograms of the submit path (add, publish,
    /// notification decision) and the completion path (used entry read).
    pub fn cycle_histograms(&self) -> (&PathHistograms, &PathHistograms) {
        (&self.submit_cycles, &self.complete_cycles)
    }

    /// Returns the transmit counters.
    pub fn stats(&self) -> &TxStats {
        &self.stats
    }

    /// Returns the queue, for counters and the console.
    pub fn queue(&self) -> &SplitQueue<u16, D> {
        &self.queue
    }

    /// Returns the queue for mode switches and interrupt suppression.
    pub fn queue_mut(&mut self) -> &mut SplitQueue<u16, D> {
        &mut self.queue
    }
}
