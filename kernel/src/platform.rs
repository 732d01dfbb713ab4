//! ACPI tables, read through the `acpi` crate: where PCI configuration space
//! is memory-mapped (the MCFG table, PCI Firmware Specification 3.0 section
//! 4.1.2).

use core::ptr::NonNull;

use acpi::mcfg::Mcfg;
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};

/// Physical memory is identity-mapped, so a mapping is the address itself.
#[derive(Clone, Copy)]
struct IdentityHandler;

impl AcpiHandler for IdentityHandler {
    unsafe fn map_physical_region<T>(&self, address: usize, size: usize) -> PhysicalMapping<Self, T> {
        // SAFETY: ACPI tables lie in RAM or firmware memory below 4 GiB, which
        // the boot page tables identity-map; the acpi crate only reads them.
        unsafe {
            PhysicalMapping::new(
                address,
                NonNull::new_unchecked(address as *mut T),
                size,
                size,
                *self,
            )
        }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// One ECAM window from the MCFG table.
#[derive(Clone, Copy, Debug)]
pub struct EcamWindow {
    pub base_address: u64,
    pub segment: u16,
    pub start_bus: u8,
    pub end_bus: u8,
}

impl EcamWindow {
    /// Returns the window's size: 1 MiB of configuration space per bus.
    pub fn length_bytes(&self) -> u64 {
        (u64::from(self.end_bus) - u64::from(self.start_bus) + 1) << 20
    }
}

/// Returns the ECAM window of segment 0, or `None` when there is no RSDP or
/// no MCFG table (QEMU's `pc` machine has none).
pub fn find_ecam(rsdp_address: Option<u64>) -> Option<EcamWindow> {
    let rsdp_address = rsdp_address?;
    // SAFETY: the loader passed this RSDP address in the PVH start info, and
    // the tables it points to are identity-mapped.
    let tables = match unsafe { AcpiTables::from_rsdp(IdentityHandler, rsdp_address as usize) } {
        Ok(tables) => tables,
        Err(error) => {
            log::warn!("ACPI tables at RSDP {rsdp_address:#x} are invalid: {error:?}");
            return None;
        }
    };
    let mcfg = tables.find_table::<Mcfg>().ok()?;
    mcfg.entries()
        .iter()
        .find(|entry| entry.pci_segment_group == 0)
        .map(|entry| EcamWindow {
            base_address: entry.base_address,
            segment: entry.pci_segment_group,
            start_bus: entry.bus_number_start,
            end_bus: entry.bus_number_end,
        })
}
