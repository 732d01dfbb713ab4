//! ACPI tables, read through the `acpi` crate: where PCI configuration space
//! is memory-mapped (the MCFG table, PCI Firmware Specification 3.0 section
//! 4.1.2), and where the interrupt controllers are (the MADT, ACPI 6.5
//! section 5.2.12 "Multiple APIC Description Table").

use core::ptr::NonNull;

use acpi::madt::{Madt, MadtEntry};
use acpi::mcfg::Mcfg;
use alloc::vec::Vec;
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

fn tables(rsdp_address: Option<u64>) -> Option<AcpiTables<IdentityHandler>> {
    let rsdp_address = rsdp_address?;
    // SAFETY: the loader passed this RSDP address in the PVH start info, and
    // the tables it points to are identity-mapped.
    match unsafe { AcpiTables::from_rsdp(IdentityHandler, rsdp_address as usize) } {
        Ok(tables) => Some(tables),
        Err(error) => {
            log::warn!("ACPI tables at RSDP {rsdp_address:#x} are invalid: {error:?}");
            None
        }
    }
}

/// One I/O APIC from the MADT.
#[derive(Clone, Copy, Debug)]
pub struct IoApicInfo {
    pub id: u8,
    pub address: u64,
    pub gsi_base: u32,
}

/// An ISA interrupt that the MADT routes to another GSI or polarity.
#[derive(Clone, Copy, Debug)]
pub struct IsaOverride {
    pub isa_irq: u8,
    pub gsi: u32,
    /// MPS INTI flags: bits 0-1 polarity, bits 2-3 trigger mode.
    pub flags: u16,
}

/// The interrupt controllers the MADT describes.
#[derive(Clone, Debug, Default)]
pub struct InterruptControllers {
    pub local_apic_address: u64,
    pub io_apics: Vec<IoApicInfo>,
    pub isa_overrides: Vec<IsaOverride>,
}

impl InterruptControllers {
    /// Returns the GSI and INTI flags of ISA interrupt `irq` (identity
    /// mapped, active high, edge triggered unless overridden).
    pub fn isa_gsi(&self, irq: u8) -> (u32, u16) {
        self.isa_overrides
            .iter()
            .find(|entry| entry.isa_irq == irq)
            .map_or((u32::from(irq), 0), |entry| (entry.gsi, entry.flags))
    }
}

/// Reads the MADT; `None` when there are no ACPI tables or no MADT.
pub fn find_interrupt_controllers(rsdp_address: Option<u64>) -> Option<InterruptControllers> {
    let tables = tables(rsdp_address)?;
    let madt = tables.find_table::<Madt>().ok()?;
    let madt = madt.get();
    let mut found = InterruptControllers {
        local_apic_address: u64::from(madt.local_apic_address),
        ..InterruptControllers::default()
    };
    for entry in madt.entries() {
        match entry {
            MadtEntry::IoApic(io_apic) => found.io_apics.push(IoApicInfo {
                id: io_apic.io_apic_id,
                address: u64::from(io_apic.io_apic_address),
                gsi_base: io_apic.global_system_interrupt_base,
            }),
            MadtEntry::InterruptSourceOverride(entry) if entry.bus == 0 => {
                found.isa_overrides.push(IsaOverride {
                    isa_irq: entry.irq,
                    gsi: entry.global_system_interrupt,
                    flags: entry.flags,
                });
            }
            MadtEntry::LocalApicAddressOverride(entry) => {
                found.local_apic_address = entry.local_apic_address;
            }
            _ => {}
        }
    }
    Some(found)
}

/// Returns the ECAM window of segment 0, or `None` when there is no RSDP or
/// no MCFG table (QEMU's `pc` machine has none).
pub fn find_ecam(rsdp_address: Option<u64>) -> Option<EcamWindow> {
    let tables = tables(rsdp_address)?;
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
