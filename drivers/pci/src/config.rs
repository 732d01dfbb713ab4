//! The two ways an x86 kernel reaches PCI configuration space. The first is
//! configuration mechanism #1 through I/O ports 0xcf8/0xcfc (PCI Local Bus
//! Specification 3.0, section 3.2.2.3.2 "Software Generation of
//! Configuration Transactions"). The second is the memory-mapped Enhanced
//! Configuration Access Mechanism (PCI Express Base Specification, section
//! 7.2.2), whose base address comes from the ACPI MCFG table.
//!
//! Both types implement [`ConfigRegionAccess`]. Reads of registers neither
//! mechanism can reach return all-ones, as a master abort on an absent
//! function does, and writes to them are ignored.

use core::cell::Cell;
use core::marker::PhantomData;
use core::ops::RangeInclusive;

use pci_types::{ConfigRegionAccess, PciAddress};
use x86_64::instructions::port::Port;

/// Configuration mechanism #1: write an address to port 0xcf8, then move the
/// data through port 0xcfc. It reaches segment 0 and the first 256 bytes of
/// each function.
///
/// The address write and the data access are two separate port operations,
/// so two CPUs (or an interrupt handler and the code it interrupted) that use
/// the ports at once can read or write the wrong register. The caller
/// serialises access: the type is `Send` but not `Sync`, so sharing one value
/// across CPUs needs a lock around it.
#[derive(Debug)]
pub struct PortIoAccess {
    /// Makes the type `!Sync`, for the reason in the type's documentation.
    not_sync: PhantomData<Cell<()>>,
}

/// CONFIG_ADDRESS register of configuration mechanism #1.
const CONFIG_ADDRESS_PORT: u16 = 0xcf8;
/// CONFIG_DATA register of configuration mechanism #1.
const CONFIG_DATA_PORT: u16 = 0xcfc;
/// CONFIG_ADDRESS bit 31: turns the next CONFIG_DATA access into a
/// configuration transaction.
const CONFIG_ADDRESS_ENABLE: u32 = 1 << 31;
/// Mechanism #1 carries an 8-bit register number.
const MECHANISM1_CONFIG_BYTES: u16 = 0x100;

impl PortIoAccess {
    /// Creates the accessor.
    ///
    /// # Safety
    ///
    /// The caller guarantees that:
    /// - the code runs at CPL 0 (or with I/O permission for ports
    ///   0xcf8-0xcff), and those ports belong to a host bridge that
    ///   implements configuration mechanism #1;
    /// - every user of ports 0xcf8/0xcfc, this value and any other
    ///   `PortIoAccess`, is serialised;
    /// - nothing relies on the current BAR, bus-number or bridge-window
    ///   layout while [`enumerate`](crate::enumerate) rewrites it.
    pub const unsafe fn new() -> Self {
        PortIoAccess {
            not_sync: PhantomData,
        }
    }
}

/// Builds the CONFIG_ADDRESS value for `offset` of `address`, or `None`
/// where mechanism #1 cannot reach: segments other than 0 and offsets past
/// the first 256 bytes.
fn mechanism1_address(address: PciAddress, offset: u16) -> Option<u32> {
    if address.segment() != 0 || offset >= MECHANISM1_CONFIG_BYTES {
        return None;
    }
    Some(
        CONFIG_ADDRESS_ENABLE
            | u32::from(address.bus()) << 16
            | u32::from(address.device()) << 11
            | u32::from(address.function()) << 8
            | u32::from(offset & 0xfc),
    )
}

impl ConfigRegionAccess for PortIoAccess {
    unsafe fn read(&self, address: PciAddress, offset: u16) -> u32 {
        let Some(config_address) = mechanism1_address(address, offset) else {
            return u32::MAX;
        };
        let mut address_port = Port::<u32>::new(CONFIG_ADDRESS_PORT);
        let mut data_port = Port::<u32>::new(CONFIG_DATA_PORT);
        // SAFETY: `PortIoAccess::new`'s caller guaranteed that these ports
        // are the host bridge's mechanism #1 registers and that their use is
        // serialised, so the data read returns the register just selected.
        unsafe {
            address_port.write(config_address);
            data_port.read()
        }
    }

    unsafe fn write(&self, address: PciAddress, offset: u16, value: u32) {
        let Some(config_address) = mechanism1_address(address, offset) else {
            return;
        };
        let mut address_port = Port::<u32>::new(CONFIG_ADDRESS_PORT);
        let mut data_port = Port::<u32>::new(CONFIG_DATA_PORT);
        // SAFETY: as in `read`; what the write changes is covered by this
        // method's own contract, which the caller upholds.
        unsafe {
            address_port.write(config_address);
            data_port.write(value);
        }
    }
}

/// The Enhanced Configuration Access Mechanism: each function's 4 KiB of
/// configuration space mapped at `base + (bus - start_bus) << 20 |
/// device << 15 | function << 12`.
///
/// Each access is one aligned 32-bit load or store, so unlike
/// [`PortIoAccess`] this type can be shared between CPUs.
#[derive(Debug)]
pub struct EcamAccess {
    base: *mut u8,
    segment: u16,
    start_bus: u8,
    end_bus: u8,
}

// SAFETY: `EcamAccess` contains only the region's address and bounds. Every
// access through it is a single aligned volatile dword load or store, which
// the configuration space completes as a whole, so accesses from several
// CPUs need no lock.
unsafe impl Send for EcamAccess {}
// SAFETY: see the `Send` impl above.
unsafe impl Sync for EcamAccess {}

impl EcamAccess {
    /// Creates an accessor for buses `start_bus..=end_bus` of `segment`,
    /// as an ACPI MCFG entry describes them.
    ///
    /// # Safety
    ///
    /// The caller guarantees that:
    /// - `base` points to the ECAM region of that bus range, which is
    ///   `(end_bus - start_bus + 1) << 20` bytes, identity-mapped (or mapped
    ///   at `base`) and uncached, and stays so for the lifetime of this value;
    /// - nothing else in the program treats that region as ordinary memory;
    /// - nothing relies on the current BAR, bus-number or bridge-window
    ///   layout while [`enumerate`](crate::enumerate) rewrites it.
    ///
    /// If `end_bus < start_bus` no bus is reachable and every read returns
    /// all-ones.
    pub unsafe fn new(base: *mut u8, segment: u16, start_bus: u8, end_bus: u8) -> Self {
        EcamAccess {
            base,
            segment,
            start_bus,
            end_bus,
        }
    }

    /// Returns the segment this region serves.
    pub fn segment(&self) -> u16 {
        self.segment
    }

    /// Returns the bus numbers this region maps.
    pub fn buses(&self) -> RangeInclusive<u8> {
        self.start_bus..=self.end_bus
    }

    /// Returns the byte offset of the dword holding `offset` of `address`
    /// inside the region, or `None` if the region does not map it.
    fn region_offset(&self, address: PciAddress, offset: u16) -> Option<usize> {
        if address.segment() != self.segment
            || !self.buses().contains(&address.bus())
            || offset >= crate::header::CONFIG_SPACE_BYTES
        {
            return None;
        }
        let bus_index = usize::from(address.bus() - self.start_bus);
        Some(
            bus_index << 20
                | usize::from(address.device()) << 15
                | usize::from(address.function()) << 12
                | usize::from(offset & !3),
        )
    }
}

impl ConfigRegionAccess for EcamAccess {
    unsafe fn read(&self, address: PciAddress, offset: u16) -> u32 {
        let Some(region_offset) = self.region_offset(address, offset) else {
            return u32::MAX;
        };
        // SAFETY: `region_offset` is dword aligned and, because the bus is
        // inside `start_bus..=end_bus` and the offset below 4 KiB, lies inside
        // the `(end_bus - start_bus + 1) << 20`-byte region that
        // `EcamAccess::new`'s caller guaranteed is mapped and uncached.
        unsafe { self.base.add(region_offset).cast::<u32>().read_volatile() }
    }

    unsafe fn write(&self, address: PciAddress, offset: u16, value: u32) {
        let Some(region_offset) = self.region_offset(address, offset) else {
            return;
        };
        // SAFETY: in bounds and aligned as in `read`; what the write changes
        // is covered by this method's own contract, which the caller upholds.
        unsafe {
            self.base
                .add(region_offset)
                .cast::<u32>()
                .write_volatile(value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const BUS_BYTES: usize = 1 << 20;

    #[test]
    fn mechanism1_address_layout() {
        let address = PciAddress::new(0, 0x12, 0x1f, 7);
        assert_eq!(mechanism1_address(address, 0x3c), Some(0x8012_ff3c));
        assert_eq!(mechanism1_address(address, 0x3e), Some(0x8012_ff3c));
        assert_eq!(
            mechanism1_address(PciAddress::new(0, 0, 2, 0), 0),
            Some(0x8000_1000)
        );
    }

    #[test]
    fn mechanism1_rejects_other_segments_and_extended_space() {
        assert_eq!(mechanism1_address(PciAddress::new(1, 0, 0, 0), 0), None);
        assert_eq!(mechanism1_address(PciAddress::new(0, 0, 0, 0), 0x100), None);
    }

    /// Backs an ECAM region for buses 2..=3 with heap memory.
    fn ecam_on_heap(memory: &mut [u32]) -> EcamAccess {
        assert_eq!(memory.len() * 4, 2 * BUS_BYTES);
        // SAFETY: `memory` is 2 MiB, the size of a two-bus region, outlives
        // the accessor in each test, and is accessed only through it.
        unsafe { EcamAccess::new(memory.as_mut_ptr().cast(), 0, 2, 3) }
    }

    #[test]
    fn ecam_register_lands_at_its_offset() {
        let mut memory = vec![0u32; 2 * BUS_BYTES / 4];
        let ecam = ecam_on_heap(&mut memory);
        let address = PciAddress::new(0, 3, 0x1f, 7);
        // SAFETY: the region is heap memory (see `ecam_on_heap`).
        unsafe { ecam.write(address, 0x104, 0xdead_beef) };
        // SAFETY: as above.
        let read_back = unsafe { ecam.read(address, 0x104) };

        let index = (BUS_BYTES | 0x1f << 15 | 7 << 12 | 0x104) / 4;
        assert_eq!(memory[index], 0xdead_beef);
        assert_eq!(read_back, 0xdead_beef);
    }

    #[test]
    fn ecam_bus_outside_range_is_absent() {
        let mut memory = vec![0u32; 2 * BUS_BYTES / 4];
        let ecam = ecam_on_heap(&mut memory);
        for address in [
            PciAddress::new(0, 1, 0, 0),
            PciAddress::new(0, 4, 0, 0),
            PciAddress::new(1, 2, 0, 0),
        ] {
            // SAFETY: the region is heap memory (see `ecam_on_heap`).
            unsafe { ecam.write(address, 0, 0x1234_5678) };
            // SAFETY: as above.
            let value = unsafe { ecam.read(address, 0) };
            assert_eq!(value, u32::MAX, "{address:?}");
        }
        // SAFETY: as above.
        let past_config_space = unsafe { ecam.read(PciAddress::new(0, 2, 0, 0), 0x1000) };
        assert_eq!(past_config_space, u32::MAX);

        assert!(memory.iter().all(|&word| word == 0));
    }
}
