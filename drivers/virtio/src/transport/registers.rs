//! Register blocks: the seam between the transport and device memory.
//!
//! This module owns the [`RegisterBlock`] trait, its volatile MMIO
//! implementation [`MmioRegion`], and the layout of `struct
//! virtio_pci_common_cfg` (virtio 1.2 section 4.1.4.3 "Common configuration
//! structure layout") from which the register offsets are derived.

use core::mem::offset_of;
use core::ptr::NonNull;

/// A block of little-endian device registers, such as one virtio structure
/// inside a memory BAR.
///
/// Methods take `&self` because device registers change under the driver:
/// the device, not Rust, owns their state. Values are in CPU byte order; an
/// implementation converts from and to the little-endian layout of the
/// device (virtio 1.2 section 4.1.3 "PCI Device Layout").
///
/// Callers access each register with its natural width at a naturally
/// aligned offset, with `offset + width <= len()`. Breaking this is an
/// internal invariant violation: implementations must not touch memory
/// outside the block, and [`MmioRegion`] then ignores the write or returns
/// all-ones.
pub trait RegisterBlock {
    /// Reads the 8-bit register at `offset`.
    fn read8(&self, offset: usize) -> u8;
    /// Reads the 16-bit register at `offset`.
    fn read16(&self, offset: usize) -> u16;
    /// Reads the 32-bit register at `offset`.
    fn read32(&self, offset: usize) -> u32;
    /// Writes the 8-bit register at `offset`.
    fn write8(&self, offset: usize, value: u8);
    /// Writes the 16-bit register at `offset`.
    fn write16(&self, offset: usize, value: u16);
    /// Writes the 32-bit register at `offset`.
    fn write32(&self, offset: usize, value: u32);
    /// Returns the length of the block in bytes.
    fn len(&self) -> usize;

    /// Returns whether the block has no registers.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Returns whether an access of `width` bytes at `offset` lies inside a
/// block of `len` bytes and is naturally aligned.
pub(crate) fn access_fits(offset: usize, width: usize, len: usize) -> bool {
    let in_bounds = offset.checked_add(width).is_some_and(|end| end <= len);
    in_bounds && offset.is_multiple_of(width)
}

/// A register block in memory-mapped device memory, accessed with volatile
/// loads and stores of the register's width.
#[derive(Debug)]
pub struct MmioRegion {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: `MmioRegion` contains no Rust-owned data. `new`'s contract makes
// the region device memory that no Rust reference aliases. Each access is a
// single volatile load or store, which the device accepts from any CPU.
// Sequences that need exclusive access (select, then read) take `&mut` in
// `PciTransport`.
unsafe impl Send for MmioRegion {}
// SAFETY: as for `Send`, because shared use only issues independent single
// volatile accesses to device memory.
unsafe impl Sync for MmioRegion {}

impl MmioRegion {
    /// Creates a register block over `len` bytes of device memory at `base`.
    ///
    /// # Safety
    ///
    /// For as long as the returned value lives, `base..base + len` must be
    /// mapped as uncached device memory, such as a BAR range checked against
    /// its capability by [`super::VirtioPciCapabilities::parse`]. The range
    /// must be valid for volatile reads and writes of 1, 2 and 4 bytes and
    /// not referenced by any Rust reference. `base` must be non-null and
    /// aligned to 4 bytes.
    pub unsafe fn new(base: *mut u8, len: usize) -> MmioRegion {
        debug_assert!(
            (base as usize).is_multiple_of(4),
            "MMIO base {base:p} is not 4-byte aligned"
        );
        let base = NonNull::new(base).expect("MmioRegion::new contract: base is non-null");
        MmioRegion { base, len }
    }

    /// Returns a pointer to `offset` if an access of `width` bytes fits,
    /// else `None` after a debug assertion.
    fn register(&self, offset: usize, width: usize) -> Option<NonNull<u8>> {
        if !access_fits(offset, width, self.len) {
            debug_assert!(
                false,
                "register access of {width} bytes at {offset:#x} outside block of {:#x} bytes \
                 or misaligned",
                self.len
            );
            return None;
        }
        // SAFETY: `offset + width <= len` was checked above, so the result
        // stays inside the region that `new`'s contract makes valid.
        Some(unsafe { self.base.add(offset) })
    }
}

/// Generates a volatile read and write pair for one register width.
macro_rules! mmio_access {
    ($read:ident, $write:ident, $type:ty) => {
        fn $read(&self, offset: usize) -> $type {
            let Some(register) = self.register(offset, size_of::<$type>()) else {
                return <$type>::MAX;
            };
            // SAFETY: `register` checked that the access lies inside the
            // region and is naturally aligned, given the 4-byte aligned base
            // that `new` requires. `new`'s contract makes the region valid
            // device memory for volatile access.
            let raw = unsafe { register.cast::<$type>().as_ptr().read_volatile() };
            <$type>::from_le(raw)
        }

        fn $write(&self, offset: usize, value: $type) {
            let Some(register) = self.register(offset, size_of::<$type>()) else {
                return;
            };
            // SAFETY: as for the read: bounds and alignment were checked by
            // `register`, validity comes from `new`'s contract.
            unsafe {
                register
                    .cast::<$type>()
                    .as_ptr()
                    .write_volatile(value.to_le())
            };
        }
    };
}

impl RegisterBlock for MmioRegion {
    mmio_access!(read8, write8, u8);
    mmio_access!(read16, write16, u16);
    mmio_access!(read32, write32, u32);

    fn len(&self) -> usize {
        self.len
    }
}

/// `struct virtio_pci_common_cfg` of virtio 1.2 section 4.1.4.3, used only
/// for its field offsets.
///
/// The 64-bit queue address fields are declared as two 32-bit halves, low
/// first, because the transport writes them as two 32-bit accesses, which
/// section 4.1.3.1 "Driver Requirements: PCI Device Layout" allows for 64-bit
/// fields. This also keeps the alignment at 4, so the size is the spec's 60
/// bytes.
#[repr(C)]
#[allow(
    dead_code,
    reason = "never constructed; only its field offsets are used"
)]
struct CommonConfigLayout {
    device_feature_select: u32,
    device_feature: u32,
    driver_feature_select: u32,
    driver_feature: u32,
    config_msix_vector: u16,
    num_queues: u16,
    device_status: u8,
    config_generation: u8,
    queue_select: u16,
    queue_size: u16,
    queue_msix_vector: u16,
    queue_enable: u16,
    queue_notify_off: u16,
    queue_desc: [u32; 2],
    queue_driver: [u32; 2],
    queue_device: [u32; 2],
    queue_notify_data: u16,
    queue_reset: u16,
}

/// Byte offsets of the common configuration registers, named as the spec
/// names the fields.
pub(crate) mod common {
    use super::{offset_of, CommonConfigLayout};

    pub(crate) const DEVICE_FEATURE_SELECT: usize =
        offset_of!(CommonConfigLayout, device_feature_select);
    pub(crate) const DEVICE_FEATURE: usize = offset_of!(CommonConfigLayout, device_feature);
    pub(crate) const DRIVER_FEATURE_SELECT: usize =
        offset_of!(CommonConfigLayout, driver_feature_select);
    pub(crate) const DRIVER_FEATURE: usize = offset_of!(CommonConfigLayout, driver_feature);
    pub(crate) const CONFIG_MSIX_VECTOR: usize = offset_of!(CommonConfigLayout, config_msix_vector);
    pub(crate) const NUM_QUEUES: usize = offset_of!(CommonConfigLayout, num_queues);
    pub(crate) const DEVICE_STATUS: usize = offset_of!(CommonConfigLayout, device_status);
    pub(crate) const CONFIG_GENERATION: usize = offset_of!(CommonConfigLayout, config_generation);
    pub(crate) const QUEUE_SELECT: usize = offset_of!(CommonConfigLayout, queue_select);
    pub(crate) const QUEUE_SIZE: usize = offset_of!(CommonConfigLayout, queue_size);
    pub(crate) const QUEUE_MSIX_VECTOR: usize = offset_of!(CommonConfigLayout, queue_msix_vector);
    pub(crate) const QUEUE_ENABLE: usize = offset_of!(CommonConfigLayout, queue_enable);
    pub(crate) const QUEUE_NOTIFY_OFF: usize = offset_of!(CommonConfigLayout, queue_notify_off);
    /// Low half of `queue_desc`; the high half follows at `+ 4`.
    pub(crate) const QUEUE_DESC: usize = offset_of!(CommonConfigLayout, queue_desc);
    /// Low half of `queue_driver`; the high half follows at `+ 4`.
    pub(crate) const QUEUE_DRIVER: usize = offset_of!(CommonConfigLayout, queue_driver);
    /// Low half of `queue_device`; the high half follows at `+ 4`.
    pub(crate) const QUEUE_DEVICE: usize = offset_of!(CommonConfigLayout, queue_device);
    pub(crate) const QUEUE_NOTIFY_DATA: usize = offset_of!(CommonConfigLayout, queue_notify_data);
    #[cfg_attr(
        not(any(test, feature = "testing")),
        allow(dead_code, reason = "the device model uses it")
    )]
    pub(crate) const QUEUE_RESET: usize = offset_of!(CommonConfigLayout, queue_reset);

    /// Size of the virtio 1.2 structure, including `queue_notify_data` and
    /// `queue_reset`.
    #[cfg_attr(
        not(any(test, feature = "testing")),
        allow(dead_code, reason = "the device model uses it")
    )]
    pub(crate) const LENGTH: usize = size_of::<CommonConfigLayout>();
    /// Smallest common configuration this driver accepts: the virtio 1.0
    /// structure, which ends after `queue_device`. The two later fields are
    /// only used with VIRTIO_F_NOTIF_CONFIG_DATA and VIRTIO_F_RING_RESET,
    /// which this driver does not negotiate.
    pub(crate) const MINIMUM_LENGTH: usize = QUEUE_NOTIFY_DATA;
}

/// The value of `config_msix_vector` and `queue_msix_vector` that means "no
/// MSI-X vector" (virtio 1.2 section 4.1.5.1.2.1, VIRTIO_MSI_NO_VECTOR).
pub const VIRTIO_MSI_NO_VECTOR: u16 = 0xffff;

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn common_config_offsets_match_spec() {
        let expected = [
            (common::DEVICE_FEATURE_SELECT, 0x00),
            (common::DEVICE_FEATURE, 0x04),
            (common::DRIVER_FEATURE_SELECT, 0x08),
            (common::DRIVER_FEATURE, 0x0c),
            (common::CONFIG_MSIX_VECTOR, 0x10),
            (common::NUM_QUEUES, 0x12),
            (common::DEVICE_STATUS, 0x14),
            (common::CONFIG_GENERATION, 0x15),
            (common::QUEUE_SELECT, 0x16),
            (common::QUEUE_SIZE, 0x18),
            (common::QUEUE_MSIX_VECTOR, 0x1a),
            (common::QUEUE_ENABLE, 0x1c),
            (common::QUEUE_NOTIFY_OFF, 0x1e),
            (common::QUEUE_DESC, 0x20),
            (common::QUEUE_DRIVER, 0x28),
            (common::QUEUE_DEVICE, 0x30),
            (common::QUEUE_NOTIFY_DATA, 0x38),
            (common::QUEUE_RESET, 0x3a),
        ];
        for (index, (actual, spec)) in expected.into_iter().enumerate() {
            assert_eq!(actual, spec, "field {index} of virtio_pci_common_cfg");
        }
    }

    #[test]
    fn common_config_size_matches_spec() {
        assert_eq!(common::LENGTH, 60);
        assert_eq!(common::MINIMUM_LENGTH, 56);
        assert_eq!(align_of::<CommonConfigLayout>(), 4);
    }

    #[test]
    fn access_fits_checks_bounds_and_alignment() {
        assert!(access_fits(0, 4, 4));
        assert!(access_fits(2, 2, 4));
        assert!(!access_fits(4, 1, 4));
        assert!(!access_fits(2, 4, 8));
        assert!(!access_fits(usize::MAX - 1, 4, usize::MAX));
    }

    #[test]
    fn mmio_region_reads_and_writes_little_endian() {
        let mut memory = vec![0u32; 4];
        // SAFETY: `memory` is a live, 4-byte aligned heap buffer of 16 bytes
        // that is only accessed through `region` until `region` is dropped.
        let region = unsafe { MmioRegion::new(memory.as_mut_ptr().cast(), 16) };
        region.write32(0, 0x1122_3344);
        region.write16(6, 0xaabb);
        region.write8(8, 0x5a);

        assert_eq!(region.read8(0), 0x44);
        assert_eq!(region.read16(2), 0x1122);
        assert_eq!(region.read32(4), 0xaabb_0000);
        assert_eq!(region.read32(8), 0x5a);
        assert_eq!(memory[0].to_le_bytes(), [0x44, 0x33, 0x22, 0x11]);
    }

    #[test]
    #[cfg(not(debug_assertions))]
    fn mmio_region_ignores_access_past_end() {
        let mut memory = vec![0u32; 2];
        // SAFETY: `memory` is a live, 4-byte aligned heap buffer; the region
        // covers only its first 4 bytes.
        let region = unsafe { MmioRegion::new(memory.as_mut_ptr().cast(), 4) };
        region.write32(4, 0xdead_beef);
        assert_eq!(region.read32(4), u32::MAX);
        assert_eq!(memory[1], 0);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "outside block")]
    fn mmio_region_asserts_on_access_past_end() {
        let mut memory = vec![0u32; 2];
        // SAFETY: `memory` is a live, 4-byte aligned heap buffer; the region
        // covers only its first 4 bytes.
        let region = unsafe { MmioRegion::new(memory.as_mut_ptr().cast(), 4) };
        region.write32(4, 0xdead_beef);
    }
}
