//! Errors of the virtio-pci transport: capability parsing, initialization,
//! queue setup and device configuration access.

use core::fmt;

use pci::{Bdf, PciAddress};

use super::capabilities::CapabilityType;
use crate::features::{DeviceStatus, Features};

/// A failure of the virtio-pci transport. Each variant carries the values
/// that diagnose it; addresses and offsets print in hex.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportError {
    /// The function has no vendor-specific capability of a required type.
    MissingCapability {
        function: PciAddress,
        cfg_type: CapabilityType,
    },
    /// The capability's `cap_len` is shorter than its structure, or the
    /// structure runs past the 256-byte configuration header.
    CapabilityTruncated {
        function: PciAddress,
        cfg_type: CapabilityType,
        config_offset: u16,
        cap_len: u8,
        required_length: u8,
    },
    /// The capability names a BAR slot without a BAR (unimplemented, or the
    /// upper half of a 64-bit BAR).
    BarNotPresent {
        function: PciAddress,
        cfg_type: CapabilityType,
        bar: u8,
    },
    /// The capability points into an I/O-space BAR; this transport maps only
    /// memory BARs.
    NotMemoryBar {
        function: PciAddress,
        cfg_type: CapabilityType,
        bar: u8,
    },
    /// `offset + length` of the capability exceeds the size of its BAR.
    CapabilityOutsideBar {
        function: PciAddress,
        cfg_type: CapabilityType,
        bar: u8,
        offset: u32,
        length: u32,
        bar_size: u64,
    },
    /// The region is shorter than the smallest structure of its type.
    CapabilityTooShort {
        function: PciAddress,
        cfg_type: CapabilityType,
        length: usize,
        minimum_length: usize,
    },
    /// The device does not offer features the driver requires.
    MissingFeatures {
        offered: Features,
        missing: Features,
    },
    /// The device cleared FEATURES_OK after the driver wrote `requested`
    /// (section 3.1.1, step 6).
    FeaturesRejected {
        offered: Features,
        requested: Features,
    },
    /// The device status did not read 0 within `polls` reads after a reset.
    ResetTimeout { status: DeviceStatus, polls: u32 },
    /// The queue index is at or past `num_queues`, or its `queue_size` reads 0.
    QueueUnavailable { queue: u16, num_queues: u16 },
    /// The requested queue size exceeds the device's maximum for the queue.
    QueueSizeTooLarge {
        queue: u16,
        requested: u16,
        maximum: u16,
    },
    /// The requested queue size is 0 or not a power of two, which split
    /// virtqueues require (section 2.7 "Split Virtqueues").
    QueueSizeNotPowerOfTwo { queue: u16, size: u16 },
    /// `queue_notify_off * notify_off_multiplier + 2` exceeds the notify
    /// region, so the queue's doorbell is outside the mapped registers, or
    /// the doorbell offset is odd and cannot take a 16-bit write.
    NotifyOffsetOutOfRange {
        queue: u16,
        queue_notify_off: u16,
        notify_off_multiplier: u32,
        notify_length: usize,
    },
    /// The device did not keep the MSI-X vector the driver wrote; `queue` is
    /// `None` for the configuration-change vector. A read-back of
    /// VIRTIO_MSI_NO_VECTOR (0xffff) means the device could not allocate it.
    MsixVectorRejected {
        queue: Option<u16>,
        requested: u16,
        read_back: u16,
    },
    /// `config_generation` changed during each of `attempts` reads of the
    /// device configuration.
    ConfigGenerationUnstable { attempts: u32 },
    /// A device configuration read of `width` bytes at `offset` is outside
    /// the `length`-byte region (0 when the device has none) or misaligned.
    InvalidDeviceConfigAccess {
        offset: usize,
        width: usize,
        length: usize,
    },
}

impl fmt::Display for TransportError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TransportError::MissingCapability { function, cfg_type } => {
                write!(
                    formatter,
                    "{}: missing virtio {cfg_type} capability",
                    Bdf(function)
                )
            }
            TransportError::CapabilityTruncated {
                function,
                cfg_type,
                config_offset,
                cap_len,
                required_length,
            } => write!(
                formatter,
                "{}: virtio {cfg_type} capability at config offset {config_offset:#x} \
                 is truncated: cap_len {cap_len}, structure needs {required_length} bytes \
                 inside the 256-byte header",
                Bdf(function)
            ),
            TransportError::BarNotPresent {
                function,
                cfg_type,
                bar,
            } => write!(
                formatter,
                "{}: virtio {cfg_type} capability names BAR {bar}, which is not present",
                Bdf(function)
            ),
            TransportError::NotMemoryBar {
                function,
                cfg_type,
                bar,
            } => write!(
                formatter,
                "{}: virtio {cfg_type} capability names BAR {bar}, which is not a \
                 memory BAR",
                Bdf(function)
            ),
            TransportError::CapabilityOutsideBar {
                function,
                cfg_type,
                bar,
                offset,
                length,
                bar_size,
            } => write!(
                formatter,
                "{}: virtio {cfg_type} capability (offset {offset:#x}, length \
                 {length:#x}) extends past the end of BAR {bar} (size {bar_size:#x})",
                Bdf(function)
            ),
            TransportError::CapabilityTooShort {
                function,
                cfg_type,
                length,
                minimum_length,
            } => write!(
                formatter,
                "{}: virtio {cfg_type} region is {length:#x} bytes, minimum is \
                 {minimum_length:#x}",
                Bdf(function)
            ),
            TransportError::MissingFeatures { offered, missing } => write!(
                formatter,
                "device does not offer required features {missing} (offered: {offered})"
            ),
            TransportError::FeaturesRejected { offered, requested } => write!(
                formatter,
                "device rejected FEATURES_OK for features {requested} (offered: {offered})"
            ),
            TransportError::ResetTimeout { status, polls } => write!(
                formatter,
                "device reset timed out: status still {status} after {polls} reads"
            ),
            TransportError::QueueUnavailable { queue, num_queues } => write!(
                formatter,
                "queue {queue} is not available (num_queues {num_queues}, or queue_size 0)"
            ),
            TransportError::QueueSizeTooLarge {
                queue,
                requested,
                maximum,
            } => write!(
                formatter,
                "queue {queue}: requested size {requested} exceeds the device maximum {maximum}"
            ),
            TransportError::QueueSizeNotPowerOfTwo { queue, size } => {
                write!(
                    formatter,
                    "queue {queue}: size {size} is not a power of two"
                )
            }
            TransportError::NotifyOffsetOutOfRange {
                queue,
                queue_notify_off,
                notify_off_multiplier,
                notify_length,
            } => write!(
                formatter,
                "queue {queue}: doorbell at queue_notify_off {queue_notify_off} * \
                 notify_off_multiplier {notify_off_multiplier} is misaligned or outside the \
                 notify region of {notify_length:#x} bytes"
            ),
            TransportError::MsixVectorRejected {
                queue,
                requested,
                read_back,
            } => {
                match queue {
                    Some(queue) => write!(formatter, "queue {queue}: ")?,
                    None => formatter.write_str("configuration change: ")?,
                }
                write!(
                    formatter,
                    "device rejected MSI-X vector {requested} (read back {read_back:#06x})"
                )
            }
            TransportError::ConfigGenerationUnstable { attempts } => write!(
                formatter,
                "device configuration changed during each of {attempts} read attempts"
            ),
            TransportError::InvalidDeviceConfigAccess {
                offset,
                width,
                length,
            } => write!(
                formatter,
                "device configuration read of {width} bytes at {offset:#x} is misaligned or \
                 outside the {length:#x}-byte region"
            ),
        }
    }
}

impl core::error::Error for TransportError {}
