//! The device side of the ring: the service loop shared by both device
//! implementations, the response every request gets, and device faults.
//!
//! The loop follows the device's half of virtio 1.2 section 2.7.10
//! "Available Buffer Notification Suppression": it waits for the doorbell,
//! suppresses notifications while it works through the avail ring, and
//! before waiting again it re-enables them and re-reads the avail idx, so a
//! chain published in between is not left behind. After each used element
//! it decides on an interrupt as section 2.7.7 "Used Buffer Notification
//! Suppression" requires.
//!
//! Each chain is a device-readable request buffer holding a sequence number
//! and a device-writable response buffer. The device copies the sequence
//! number into the response and reports [`response_len`] bytes written, so
//! the driver can check that each buffer came back once, with its length.

use std::fmt;
use std::sync::Arc;

use virtio::QueueAddresses;

use super::config::{response_len, DeviceKind, BUFFER_BYTES};
use super::memory::GuestRegion;
use super::model_device::ModelDevice;
use super::signals::{Receiver, Sender, Signals, Wait};
use super::vmm_device::VmmDevice;

/// Activity counts of a device thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// Chains returned through the used ring.
    pub completions: u64,
    /// Interrupts raised.
    pub interrupts: u64,
    /// Doorbell wakeups.
    pub wakeups: u64,
}

/// A driver mistake the device detected, or a failure inside rust-vmm's
/// queue. The device stops serving after one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceFault {
    /// A ring area is not inside guest memory.
    AreaNotMapped {
        /// "descriptor area", "driver area" or "device area".
        area: &'static str,
        /// Guest address of the area.
        address: u64,
    },
    /// The avail idx ran more than a queue size ahead of the device.
    AvailIdxInvalid {
        /// Avail idx read from the driver area.
        avail_idx: u16,
        /// Index of the device's next avail entry.
        last_avail_idx: u16,
    },
    /// A chain head or `next` names a descriptor outside the table.
    DescriptorIdOutOfRange {
        /// Chain head.
        head: u16,
        /// Offending id.
        id: u16,
    },
    /// A chain is longer than the queue, so it loops.
    ChainLoop {
        /// Chain head.
        head: u16,
    },
    /// A chain lacks a readable request or a writable response buffer of at
    /// least 8 bytes, or one of them is not 8-byte aligned.
    ChainShapeInvalid {
        /// Chain head.
        head: u16,
    },
    /// A buffer is not inside guest memory.
    BufferNotMapped {
        /// Chain head.
        head: u16,
        /// Guest address of the buffer.
        address: u64,
    },
    /// rust-vmm's queue rejected the configuration or a ring access.
    RustVmm {
        /// The queue operation.
        operation: &'static str,
        /// The error it returned.
        message: String,
    },
}

impl fmt::Display for DeviceFault {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceFault::AreaNotMapped { area, address } => {
                write!(formatter, "{area} at {address:#x} is not inside guest memory")
            }
            DeviceFault::AvailIdxInvalid {
                avail_idx,
                last_avail_idx,
            } => write!(
                formatter,
                "avail idx {avail_idx:#x} is more than a queue ahead of the device at {last_avail_idx:#x}"
            ),
            DeviceFault::DescriptorIdOutOfRange { head, id } => {
                write!(formatter, "chain {head}: descriptor id {id} is outside the table")
            }
            DeviceFault::ChainLoop { head } => write!(formatter, "chain {head} is longer than the queue"),
            DeviceFault::ChainShapeInvalid { head } => write!(
                formatter,
                "chain {head} lacks an aligned readable request or writable response buffer"
            ),
            DeviceFault::BufferNotMapped { head, address } => {
                write!(formatter, "chain {head}: buffer at {address:#x} is not inside guest memory")
            }
            DeviceFault::RustVmm { operation, message } => {
                write!(formatter, "virtio-queue {operation} failed: {message}")
            }
        }
    }
}

impl std::error::Error for DeviceFault {}

/// One device implementation's view of the queue, driven by [`serve`].
pub trait DeviceQueue {
    /// Asks the driver not to send available buffer notifications.
    fn disable_notifications(&mut self) -> Result<(), DeviceFault>;

    /// Asks the driver for a notification for the next chain, then re-reads
    /// the avail idx. Returns true when chains are already pending.
    fn enable_notifications(&mut self) -> Result<bool, DeviceFault>;

    /// Serves the next published chain and returns it through the used
    /// ring. Returns `Ok(None)` when nothing is published, otherwise whether
    /// the driver requested an interrupt for it.
    fn serve_next(&mut self) -> Result<Option<bool>, DeviceFault>;

    /// Index of the next avail entry the device will take.
    fn last_avail_idx(&self) -> u16;
}

/// Attaches a device of `kind` to the queue at `addresses` and serves it
/// until `signals` asks it to stop. On a fault it sets the stop flag, so the
/// driver's wait ends too, and returns the fault.
///
/// # Errors
/// The [`DeviceFault`] that stopped the device.
pub fn run_device(
    kind: DeviceKind,
    region: &Arc<GuestRegion>,
    addresses: QueueAddresses,
    event_idx: bool,
    signals: &Signals,
) -> Result<DeviceStats, DeviceFault> {
    let result = match kind {
        DeviceKind::Model => ModelDevice::attach(region, addresses, event_idx)
            .and_then(|device| serve(device, signals)),
        DeviceKind::RustVmm => VmmDevice::attach(region.memory(), addresses, event_idx)
            .and_then(|device| serve(device, signals)),
    };
    if result.is_err() {
        signals.request_stop();
    }
    result
}

/// The service loop: wait for the doorbell, work through the avail ring
/// with notifications suppressed, re-enable them and re-check, repeat.
fn serve<Q: DeviceQueue>(mut queue: Q, signals: &Signals) -> Result<DeviceStats, DeviceFault> {
    let mut doorbell = Receiver::new(&signals.doorbell.0);
    let mut interrupt = Sender::new(&signals.interrupt.0);
    let mut stats = DeviceStats::default();
    loop {
        signals.device_sleeps(queue.last_avail_idx());
        if doorbell.wait(None, Some(&signals.stop.0)) == Wait::Stopped {
            break;
        }
        signals.device_wakes();
        stats.wakeups += 1;

        queue.disable_notifications()?;
        loop {
            while let Some(interrupt_requested) = queue.serve_next()? {
                stats.completions += 1;
                if interrupt_requested {
                    interrupt.send();
                }
            }
            if !queue.enable_notifications()? {
                break;
            }
            queue.disable_notifications()?;
        }
    }
    stats.interrupts = interrupt.sent();
    Ok(stats)
}

/// Returns the response length for request `sequence`, capped at the
/// response buffer's `capacity` as a device caps what it writes.
pub fn reported_len(sequence: u64, capacity: u32) -> u32 {
    response_len(sequence).min(capacity).min(BUFFER_BYTES)
}

/// The event index test of virtio 1.2 section 2.7.7 and section 2.7.10:
/// returns true when the index moved from `old_idx` to `new_idx` past
/// `event_idx`, the entry after which the other side requested a
/// notification.
/// Written here rather than taken from the driver crate, so that a mistake
/// on one side cannot cancel out on the other.
pub fn event_idx_passed(event_idx: u16, new_idx: u16, old_idx: u16) -> bool {
    new_idx.wrapping_sub(event_idx).wrapping_sub(1) < new_idx.wrapping_sub(old_idx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_idx_passed_handles_wraparound() {
        assert!(event_idx_passed(5, 6, 5));
        assert!(!event_idx_passed(6, 6, 5));
        assert!(event_idx_passed(0xffff, 1, 0xfffe));
        assert!(!event_idx_passed(2, 1, 0xfffe));
        assert!(event_idx_passed(3, 10, 0));
        assert!(!event_idx_passed(3, 3, 3), "no movement never notifies");
    }

    #[test]
    fn reported_len_is_capped() {
        assert_eq!(reported_len(56, 64), 64);
        assert_eq!(reported_len(56, 20), 20);
        assert_eq!(reported_len(0, 64), 8);
    }
}
