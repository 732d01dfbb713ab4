//! The receive queue (virtio 1.2 section 5.1.6.3 "Setting Up Receive
//! Buffers" and 5.1.6.4 "Processing of Incoming Packets").
//!
//! Every buffer is posted at start-up. A used buffer is handed out as a
//! [`ReceivedFrame`] that borrows nothing. The caller reads it through
//! [`Receiver::frame`] and gives it back with [`Receiver::recycle`], which
//! reposts it. A buffer the device filled wrongly is reposted at once and
//! counted.

use log::{error, warn};
use virtio::dma::Dma;
use virtio::queue::{Buffer, SplitQueue, UsedLength};
use virtio::transport::{PciTransport, QueueNotifier, RegisterBlock};

use crate::buffers::BufferPool;
use crate::histogram::{read_tsc, PathHistograms};
use crate::header::HEADER_BYTES;
use crate::stats::{should_log, RxStats};

/// Shortest acceptable chain: the header and an Ethernet header.
const MIN_USED_BYTES: u32 = (HEADER_BYTES + 14) as u32;

/// A received frame the driver has handed out: its buffer index and length.
#[derive(Debug, PartialEq, Eq)]
pub struct ReceivedFrame {
    index: u16,
    frame_bytes: usize,
}

impl ReceivedFrame {
    /// Returns the Ethernet frame's length.
    pub fn len(&self) -> usize {
        self.frame_bytes
    }

    /// Returns whether the frame is empty (never true for a frame handed out).
    pub fn is_empty(&self) -> bool {
        self.frame_bytes == 0
    }
}

/// The receive side: queue 0 and its buffers.
pub struct Receiver<D: Dma + Clone> {
    pub(crate) queue: SplitQueue<u16, D>,
    pub(crate) notifier: QueueNotifier,
    buffers: BufferPool<D>,
    stats: RxStats,
    /// Cycles to repost a buffer: add, publish and notification decision.
    submit_cycles: PathHistograms,
    /// Cycles to read the used idx and one used entry.
    complete_cycles: PathHistograms,
    broken_reported: bool,
}

impl<D: Dma + Clone> Receiver<D> {
    pub(crate) fn new(queue: SplitQueue<u16, D>, notifier: QueueNotifier, buffers: BufferPool<D>) -> Self {
        Self {
            queue,
            notifier,
            buffers,
            stats: RxStats::default(),
            submit_cycles: PathHistograms::default(),
            complete_cycles: PathHistograms::default(),
            broken_reported: false,
        }
    }

    /// Posts every buffer and notifies the device once.
    pub(crate) fn post_all<R: RegisterBlock>(&mut self, transport: &PciTransport<R>) {
        for index in 0..self.buffers.count() {
            self.post(index);
        }
        self.publish(transport);
    }

    fn post(&mut self, index: u16) {
        let buffer = Buffer {
            address: self.buffers.device_address(index),
            len: self.buffers.slot_bytes() as u32,
        };
        if let Err(rejected) = self.queue.add(&[], &[buffer], index) {
            // The pool never contains more buffers than the queue has
            // descriptors, so only a broken queue gets here.
            warn!("virtio-net: receive buffer {} not posted: {:?}", rejected.token, rejected.error);
        }
    }

    fn publish<R: RegisterBlock>(&mut self, transport: &PciTransport<R>) {
        if self.queue.publish() {
            transport.notify(self.notifier);
            self.stats.notifications += 1;
        }
    }

    /// Returns the next well-formed received frame, reposting malformed
    /// ones, or `None` when the used ring is empty or the queue is broken.
    pub fn receive<R: RegisterBlock>(&mut self, transport: &PciTransport<R>) -> Option<ReceivedFrame> {
        loop {
            let start = read_tsc();
            let popped = self.queue.pop_used();
            if let Ok(Some(_)) = popped {
                self.complete_cycles.record(self.queue.barrier_mode(), read_tsc().wrapping_sub(start));
            }
            let used = match popped {
                Ok(Some(used)) => used,
                Ok(None) => return None,
                Err(problem) => {
                    if !self.broken_reported {
                        error!("virtio-net: receive queue is broken, receiving stops: {problem:?}");
                        self.broken_reported = true;
                    }
                    return None;
                }
            };
            match used.length {
                UsedLength::Valid(length) if length >= MIN_USED_BYTES => {
                    let frame_bytes = length as usize - HEADER_BYTES;
                    self.stats.frames += 1;
                    self.stats.bytes += frame_bytes as u64;
                    return Some(ReceivedFrame { index: used.token, frame_bytes });
                }
                UsedLength::Valid(length) => {
                    self.stats.dropped_short += 1;
                    if should_log(self.stats.dropped_short) {
                        warn!(
                            "virtio-net: dropped receive chain of {length} bytes, shorter than \
                             header and Ethernet header ({} such drops)",
                            self.stats.dropped_short
                        );
                    }
                }
                UsedLength::ExceedsCapacity { reported, capacity_bytes } => {
                    self.stats.dropped_too_long += 1;
                    if should_log(self.stats.dropped_too_long) {
                        warn!(
                            "virtio-net: dropped receive chain: device reported {reported} bytes \
                             for a {capacity_bytes}-byte buffer ({} such drops)",
                            self.stats.dropped_too_long
                        );
                    }
                }
            }
            self.post(used.token);
            self.publish(transport);
        }
    }

    /// Returns the Ethernet frame of a received buffer.
    pub fn frame(&self, frame: &ReceivedFrame) -> &[u8] {
        &self.buffers.slot(frame.index)[HEADER_BYTES..HEADER_BYTES + frame.frame_bytes]
    }

    /// Reposts a frame's buffer for the device to fill again.
    pub fn recycle<R: RegisterBlock>(&mut self, frame: ReceivedFrame, transport: &PciTransport<R>) {
        let start = read_tsc();
        self.post(frame.index);
        let notify = self.queue.publish();
        self.submit_cycles.record(self.queue.barrier_mode(), read_tsc().wrapping_sub(start));
        if notify {
            transport.notify(self.notifier);
            self.stats.notifications += 1;
        }
    }

    /// Returns the cycle histograms of the submit path (repost) and the
    /// completion path (used entry read).
    pub fn cycle_histograms(&self) -> (&PathHistograms, &PathHistograms) {
        (&self.submit_cycles, &self.complete_cycles)
    }

    /// Returns the receive counters.
    pub fn stats(&self) -> &RxStats {
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
