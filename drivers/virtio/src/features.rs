//! Feature bits and the device status field.
//!
//! This module owns the names of the feature bits this kernel logs and
//! negotiates, the [`Features`] set type, and the [`DeviceStatus`] register
//! value. Sources in virtio 1.2: section 2.1 "Device Status Field", section
//! 2.2 "Feature Bits", section 6 "Reserved Feature Bits" (device-independent
//! bits 24 to 40) and section 5.1.3 "Feature bits" of the network device.
//!
//! Feature constants are bit numbers, as the spec lists them. Build a set with
//! [`Features::from_bit`] and [`Features::with`].

use core::fmt;
use core::ops::{BitAnd, BitOr, Not, Sub};

/// Legacy only: the device notifies when its avail ring runs empty (section
/// 6.3 "Legacy Interface: Reserved Feature Bits").
pub const VIRTIO_F_NOTIFY_ON_EMPTY: u32 = 24;
/// Legacy only: the device accepts any framing of request headers and data.
pub const VIRTIO_F_ANY_LAYOUT: u32 = 27;
/// The driver may use descriptors with `VIRTQ_DESC_F_INDIRECT`.
pub const VIRTIO_F_INDIRECT_DESC: u32 = 28;
/// Enables the `used_event` and `avail_event` fields for notification
/// suppression.
pub const VIRTIO_F_EVENT_IDX: u32 = 29;
/// The device complies with virtio 1.0 or later (not legacy).
pub const VIRTIO_F_VERSION_1: u32 = 32;
/// The device accesses memory through a platform translation such as an
/// IOMMU.
pub const VIRTIO_F_ACCESS_PLATFORM: u32 = 33;
/// The device supports the packed virtqueue layout.
pub const VIRTIO_F_RING_PACKED: u32 = 34;
/// The device uses buffers in the order in which they were made available.
pub const VIRTIO_F_IN_ORDER: u32 = 35;
/// The device's memory accesses are ordered as the platform orders them, so
/// the driver must use platform-strength barriers rather than SMP barriers.
pub const VIRTIO_F_ORDER_PLATFORM: u32 = 36;
/// The device supports single root I/O virtualization.
pub const VIRTIO_F_SR_IOV: u32 = 37;
/// The driver passes extra data (beyond the queue index) in notifications.
pub const VIRTIO_F_NOTIFICATION_DATA: u32 = 38;
/// The driver uses `queue_notify_data` as the notification value.
pub const VIRTIO_F_NOTIF_CONFIG_DATA: u32 = 39;
/// The driver can reset a single queue.
pub const VIRTIO_F_RING_RESET: u32 = 40;

/// The device handles packets with a partial checksum.
pub const VIRTIO_NET_F_CSUM: u32 = 0;
/// The driver handles packets with a partial checksum.
pub const VIRTIO_NET_F_GUEST_CSUM: u32 = 1;
/// Offloads can be reconfigured through the control queue.
pub const VIRTIO_NET_F_CTRL_GUEST_OFFLOADS: u32 = 2;
/// The device reports its maximum MTU in the `mtu` config field.
pub const VIRTIO_NET_F_MTU: u32 = 3;
/// The device has a MAC address in the `mac` config field.
pub const VIRTIO_NET_F_MAC: u32 = 5;
/// The driver can receive TCP segmentation offload over IPv4.
pub const VIRTIO_NET_F_GUEST_TSO4: u32 = 7;
/// The driver can receive TCP segmentation offload over IPv6.
pub const VIRTIO_NET_F_GUEST_TSO6: u32 = 8;
/// The driver can receive TSO with ECN.
pub const VIRTIO_NET_F_GUEST_ECN: u32 = 9;
/// The driver can receive UDP fragmentation offload.
pub const VIRTIO_NET_F_GUEST_UFO: u32 = 10;
/// The device can receive TCP segmentation offload over IPv4.
pub const VIRTIO_NET_F_HOST_TSO4: u32 = 11;
/// The device can receive TCP segmentation offload over IPv6.
pub const VIRTIO_NET_F_HOST_TSO6: u32 = 12;
/// The device can receive TSO with ECN.
pub const VIRTIO_NET_F_HOST_ECN: u32 = 13;
/// The device can receive UDP fragmentation offload.
pub const VIRTIO_NET_F_HOST_UFO: u32 = 14;
/// The driver can merge receive buffers (`num_buffers` is used).
pub const VIRTIO_NET_F_MRG_RXBUF: u32 = 15;
/// The `status` config field is valid.
pub const VIRTIO_NET_F_STATUS: u32 = 16;
/// The device has a control queue.
pub const VIRTIO_NET_F_CTRL_VQ: u32 = 17;
/// The control queue supports receive mode commands.
pub const VIRTIO_NET_F_CTRL_RX: u32 = 18;
/// The control queue supports VLAN filtering.
pub const VIRTIO_NET_F_CTRL_VLAN: u32 = 19;
/// The control queue supports extra receive mode commands.
pub const VIRTIO_NET_F_CTRL_RX_EXTRA: u32 = 20;
/// The driver can send gratuitous packets on request.
pub const VIRTIO_NET_F_GUEST_ANNOUNCE: u32 = 21;
/// The device supports multiqueue with automatic receive steering.
pub const VIRTIO_NET_F_MQ: u32 = 22;
/// The MAC address can be set through the control queue.
pub const VIRTIO_NET_F_CTRL_MAC_ADDR: u32 = 23;
/// The device can receive UDP segmentation offload.
pub const VIRTIO_NET_F_HOST_USO: u32 = 56;
/// The device can report a per-packet hash value and type.
pub const VIRTIO_NET_F_HASH_REPORT: u32 = 57;
/// The driver provides the exact `hdr_len` value.
pub const VIRTIO_NET_F_GUEST_HDRLEN: u32 = 59;
/// The device supports receive side scaling.
pub const VIRTIO_NET_F_RSS: u32 = 60;
/// The device processes duplicated ACKs and reports coalescing details.
pub const VIRTIO_NET_F_RSC_EXT: u32 = 61;
/// The device may act as a standby for a primary device with the same MAC.
pub const VIRTIO_NET_F_STANDBY: u32 = 62;
/// The device reports link speed and duplex in its config.
pub const VIRTIO_NET_F_SPEED_DUPLEX: u32 = 63;

/// Display names by bit number. Bits 0 to 23 and 41 to 63 are
/// device-specific. They are named as virtio-net defines them, because
/// virtio-net is the only device type this kernel drives.
const FEATURE_NAMES: &[(u32, &str)] = &[
    (VIRTIO_NET_F_CSUM, "VIRTIO_NET_F_CSUM"),
    (VIRTIO_NET_F_GUEST_CSUM, "VIRTIO_NET_F_GUEST_CSUM"),
    (
        VIRTIO_NET_F_CTRL_GUEST_OFFLOADS,
        "VIRTIO_NET_F_CTRL_GUEST_OFFLOADS",
    ),
    (VIRTIO_NET_F_MTU, "VIRTIO_NET_F_MTU"),
    (VIRTIO_NET_F_MAC, "VIRTIO_NET_F_MAC"),
    (VIRTIO_NET_F_GUEST_TSO4, "VIRTIO_NET_F_GUEST_TSO4"),
    (VIRTIO_NET_F_GUEST_TSO6, "VIRTIO_NET_F_GUEST_TSO6"),
    (VIRTIO_NET_F_GUEST_ECN, "VIRTIO_NET_F_GUEST_ECN"),
    (VIRTIO_NET_F_GUEST_UFO, "VIRTIO_NET_F_GUEST_UFO"),
    (VIRTIO_NET_F_HOST_TSO4, "VIRTIO_NET_F_HOST_TSO4"),
    (VIRTIO_NET_F_HOST_TSO6, "VIRTIO_NET_F_HOST_TSO6"),
    (VIRTIO_NET_F_HOST_ECN, "VIRTIO_NET_F_HOST_ECN"),
    (VIRTIO_NET_F_HOST_UFO, "VIRTIO_NET_F_HOST_UFO"),
    (VIRTIO_NET_F_MRG_RXBUF, "VIRTIO_NET_F_MRG_RXBUF"),
    (VIRTIO_NET_F_STATUS, "VIRTIO_NET_F_STATUS"),
    (VIRTIO_NET_F_CTRL_VQ, "VIRTIO_NET_F_CTRL_VQ"),
    (VIRTIO_NET_F_CTRL_RX, "VIRTIO_NET_F_CTRL_RX"),
    (VIRTIO_NET_F_CTRL_VLAN, "VIRTIO_NET_F_CTRL_VLAN"),
    (VIRTIO_NET_F_CTRL_RX_EXTRA, "VIRTIO_NET_F_CTRL_RX_EXTRA"),
    (VIRTIO_NET_F_GUEST_ANNOUNCE, "VIRTIO_NET_F_GUEST_ANNOUNCE"),
    (VIRTIO_NET_F_MQ, "VIRTIO_NET_F_MQ"),
    (VIRTIO_NET_F_CTRL_MAC_ADDR, "VIRTIO_NET_F_CTRL_MAC_ADDR"),
    (VIRTIO_F_NOTIFY_ON_EMPTY, "VIRTIO_F_NOTIFY_ON_EMPTY"),
    (VIRTIO_F_ANY_LAYOUT, "VIRTIO_F_ANY_LAYOUT"),
    (VIRTIO_F_INDIRECT_DESC, "VIRTIO_F_INDIRECT_DESC"),
    (VIRTIO_F_EVENT_IDX, "VIRTIO_F_EVENT_IDX"),
    (VIRTIO_F_VERSION_1, "VIRTIO_F_VERSION_1"),
    (VIRTIO_F_ACCESS_PLATFORM, "VIRTIO_F_ACCESS_PLATFORM"),
    (VIRTIO_F_RING_PACKED, "VIRTIO_F_RING_PACKED"),
    (VIRTIO_F_IN_ORDER, "VIRTIO_F_IN_ORDER"),
    (VIRTIO_F_ORDER_PLATFORM, "VIRTIO_F_ORDER_PLATFORM"),
    (VIRTIO_F_SR_IOV, "VIRTIO_F_SR_IOV"),
    (VIRTIO_F_NOTIFICATION_DATA, "VIRTIO_F_NOTIFICATION_DATA"),
    (VIRTIO_F_NOTIF_CONFIG_DATA, "VIRTIO_F_NOTIF_CONFIG_DATA"),
    (VIRTIO_F_RING_RESET, "VIRTIO_F_RING_RESET"),
    (VIRTIO_NET_F_HOST_USO, "VIRTIO_NET_F_HOST_USO"),
    (VIRTIO_NET_F_HASH_REPORT, "VIRTIO_NET_F_HASH_REPORT"),
    (VIRTIO_NET_F_GUEST_HDRLEN, "VIRTIO_NET_F_GUEST_HDRLEN"),
    (VIRTIO_NET_F_RSS, "VIRTIO_NET_F_RSS"),
    (VIRTIO_NET_F_RSC_EXT, "VIRTIO_NET_F_RSC_EXT"),
    (VIRTIO_NET_F_STANDBY, "VIRTIO_NET_F_STANDBY"),
    (VIRTIO_NET_F_SPEED_DUPLEX, "VIRTIO_NET_F_SPEED_DUPLEX"),
];

/// Returns the spec name of feature bit `bit`, or `None` for a bit this
/// module does not name.
pub fn feature_name(bit: u32) -> Option<&'static str> {
    FEATURE_NAMES
        .iter()
        .find(|(named_bit, _)| *named_bit == bit)
        .map(|(_, name)| *name)
}

/// A set of feature bits, as read from `device_feature` or written to
/// `driver_feature` (64 bits over two select windows).
///
/// `Display` lists the set bits by name in ascending order, separated by
/// `" | "`, with bits this module does not name shown as `bit N`, and the
/// empty set as `(none)`.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Features(pub u64);

impl Features {
    /// The empty set.
    pub const EMPTY: Features = Features(0);

    /// Returns the set holding only feature bit `bit`.
    ///
    /// # Panics
    ///
    /// Panics if `bit` is 64 or more; feature numbers are constants below 64.
    pub const fn from_bit(bit: u32) -> Features {
        assert!(bit < 64, "feature bit numbers are below 64");
        Features(1 << bit)
    }

    /// Returns this set with feature bit `bit` added.
    ///
    /// # Panics
    ///
    /// Panics if `bit` is 64 or more.
    pub const fn with(self, bit: u32) -> Features {
        Features(self.0 | Features::from_bit(bit).0)
    }

    /// Returns the raw 64-bit value.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Returns whether feature bit `bit` is in the set. Bits of 64 or more
    /// are never in the set.
    pub const fn has(self, bit: u32) -> bool {
        bit < 64 && self.0 & (1 << bit) != 0
    }

    /// Returns whether every bit of `other` is in this set.
    pub const fn contains(self, other: Features) -> bool {
        self.0 & other.0 == other.0
    }

    /// Returns the bits in both sets.
    pub const fn intersection(self, other: Features) -> Features {
        Features(self.0 & other.0)
    }

    /// Returns the bits in either set.
    pub const fn union(self, other: Features) -> Features {
        Features(self.0 | other.0)
    }

    /// Returns the bits of this set that are not in `other`.
    pub const fn difference(self, other: Features) -> Features {
        Features(self.0 & !other.0)
    }

    /// Returns whether no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Returns the set bit numbers in ascending order.
    pub fn iter(self) -> impl Iterator<Item = u32> {
        (0..64).filter(move |&bit| self.has(bit))
    }
}

impl BitAnd for Features {
    type Output = Features;
    fn bitand(self, other: Features) -> Features {
        self.intersection(other)
    }
}

impl BitOr for Features {
    type Output = Features;
    fn bitor(self, other: Features) -> Features {
        self.union(other)
    }
}

impl Sub for Features {
    type Output = Features;
    fn sub(self, other: Features) -> Features {
        self.difference(other)
    }
}

impl Not for Features {
    type Output = Features;
    fn not(self) -> Features {
        Features(!self.0)
    }
}

impl fmt::Display for Features {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return formatter.write_str("(none)");
        }
        for (position, bit) in self.iter().enumerate() {
            if position > 0 {
                formatter.write_str(" | ")?;
            }
            match feature_name(bit) {
                Some(name) => formatter.write_str(name)?,
                None => write!(formatter, "bit {bit}")?,
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Features {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Features({:#018x}: {self})", self.0)
    }
}

/// Value of the `device_status` register (section 2.1 "Device Status
/// Field").
///
/// The driver sets bits in this order during initialization (section 3.1.1
/// "Driver Requirements: Device Initialization"); writing 0 resets the
/// device from any state:
///
/// ```text
///             write 0 (reset; wait until status reads 0)
///   +-------------------------------------------------------------+
///   |                                                             |
///   v                                                             |
/// [0] --ACKNOWLEDGE--> [A] --DRIVER--> [A|D] --write features,    |
///                                              FEATURES_OK-->     |
///   [A|D|FEATURES_OK] --set up queues, DRIVER_OK--> [live] -------+
///        |                                            |
///        | FEATURES_OK does not read back:            | device sets
///        | features rejected                          | DEVICE_NEEDS_RESET
///        v                                            v
///   driver sets FAILED, then resets        driver resets and reinitializes
/// ```
///
/// [`crate::transport::PciTransport::initialize`] walks the path up to
/// FEATURES_OK and [`crate::transport::PciTransport::driver_ok`] takes the last
/// step.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct DeviceStatus(pub u8);

impl DeviceStatus {
    /// The status after reset: no bit set.
    pub const RESET: DeviceStatus = DeviceStatus(0);
    /// The driver has found the device and recognized it as a virtio device.
    pub const ACKNOWLEDGE: DeviceStatus = DeviceStatus(1);
    /// The driver supports the device type and will drive it.
    pub const DRIVER: DeviceStatus = DeviceStatus(2);
    /// The driver is set up and ready to drive the device.
    pub const DRIVER_OK: DeviceStatus = DeviceStatus(4);
    /// The driver has acknowledged the features it understands and feature
    /// negotiation is complete.
    pub const FEATURES_OK: DeviceStatus = DeviceStatus(8);
    /// The device hit an error it cannot recover from and needs a reset.
    pub const DEVICE_NEEDS_RESET: DeviceStatus = DeviceStatus(64);
    /// The driver has given up on the device.
    pub const FAILED: DeviceStatus = DeviceStatus(128);

    const NAMES: [(DeviceStatus, &'static str); 6] = [
        (DeviceStatus::ACKNOWLEDGE, "ACKNOWLEDGE"),
        (DeviceStatus::DRIVER, "DRIVER"),
        (DeviceStatus::DRIVER_OK, "DRIVER_OK"),
        (DeviceStatus::FEATURES_OK, "FEATURES_OK"),
        (DeviceStatus::DEVICE_NEEDS_RESET, "DEVICE_NEEDS_RESET"),
        (DeviceStatus::FAILED, "FAILED"),
    ];

    /// Returns the raw register value.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Returns whether every bit of `other` is set.
    pub const fn contains(self, other: DeviceStatus) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for DeviceStatus {
    type Output = DeviceStatus;
    fn bitor(self, other: DeviceStatus) -> DeviceStatus {
        DeviceStatus(self.0 | other.0)
    }
}

impl fmt::Display for DeviceStatus {
    /// Lists the set bits by name, `|`-separated, with undefined bits in hex;
    /// prints `RESET` for 0.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return formatter.write_str("RESET");
        }
        let mut remaining = self.0;
        let mut first = true;
        for (flag, name) in DeviceStatus::NAMES {
            if self.contains(flag) {
                if !first {
                    formatter.write_str("|")?;
                }
                formatter.write_str(name)?;
                remaining &= !flag.0;
                first = false;
            }
        }
        if remaining != 0 {
            if !first {
                formatter.write_str("|")?;
            }
            write!(formatter, "{remaining:#04x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for DeviceStatus {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "DeviceStatus({:#04x}: {self})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn display_names_known_bits_in_order() {
        let features = Features::from_bit(VIRTIO_F_VERSION_1)
            .with(VIRTIO_NET_F_MAC)
            .with(VIRTIO_F_ORDER_PLATFORM);
        assert_eq!(
            format!("{features}"),
            "VIRTIO_NET_F_MAC | VIRTIO_F_VERSION_1 | VIRTIO_F_ORDER_PLATFORM"
        );
    }

    #[test]
    fn display_shows_unknown_bits_by_number() {
        let features = Features::from_bit(4).with(VIRTIO_NET_F_CSUM).with(58);
        assert_eq!(format!("{features}"), "VIRTIO_NET_F_CSUM | bit 4 | bit 58");
        assert_eq!(format!("{}", Features::EMPTY), "(none)");
    }

    #[test]
    fn every_named_bit_is_unique_and_below_64() {
        for (index, (bit, name)) in FEATURE_NAMES.iter().enumerate() {
            assert!(*bit < 64, "{name} has bit {bit}");
            let duplicate = FEATURE_NAMES[index + 1..]
                .iter()
                .find(|(other, _)| other == bit);
            assert!(duplicate.is_none(), "bit {bit} is named twice");
        }
    }

    #[test]
    fn set_operations() {
        let offered = Features::from_bit(0).with(5).with(32).with(36);
        let supported = Features::from_bit(5).with(32).with(40);
        assert_eq!(offered & supported, Features::from_bit(5).with(32));
        assert_eq!(
            offered | supported,
            Features::from_bit(0).with(5).with(32).with(36).with(40)
        );
        assert_eq!(supported - offered, Features::from_bit(40));
        assert!(offered.contains(Features::from_bit(36).with(0)));
        assert!(!offered.contains(Features::from_bit(40)));
        assert!(!offered.has(63));
        assert!(Features::from_bit(63).has(63));
        assert!(!Features(u64::MAX).has(64));
        assert_eq!((!Features::EMPTY).bits(), u64::MAX);
        assert_eq!(
            offered.iter().collect::<alloc::vec::Vec<_>>(),
            [0, 5, 32, 36]
        );
    }

    #[test]
    fn device_status_display() {
        let status = DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER | DeviceStatus::FEATURES_OK;
        assert_eq!(format!("{status}"), "ACKNOWLEDGE|DRIVER|FEATURES_OK");
        assert_eq!(format!("{}", DeviceStatus::RESET), "RESET");
        assert_eq!(format!("{}", DeviceStatus(0x30 | 0x80)), "FAILED|0x30");
    }
}
