//! Interrupts of the NIC: MSI-X vectors for configuration changes, receive
//! and transmit, or the legacy INTx line through the I/O APIC and the ISR
//! status register when the device has no MSI-X.
//!
//! Handlers only record the interrupt and wake the interface task. The task
//! suppresses further queue interrupts while it processes the rings, and
//! re-enables them with the recheck before it sleeps. Nothing here
//! allocates or takes a lock.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use futures_util::task::AtomicWaker;
use log::{info, warn};
use pci::msix::{MsiMessage, MsixCapability, MsixTable};
use pci::{ConfigRegionAccess, Function};
use virtio_net::MsixVectors;

use crate::ioapic::{self, LineMode};
use crate::{apic, interrupts, paging};

/// Vectors of the NIC's MSI-X entries 0, 1 and 2.
pub const CONFIG_VECTOR: u8 = 0x41;
pub const RECEIVE_VECTOR: u8 = 0x42;
pub const TRANSMIT_VECTOR: u8 = 0x43;
/// Vector of the INTx line.
pub const INTX_VECTOR: u8 = 0x44;
/// x86 MSI address window: 0xfee00000 with the destination APIC ID in bits
/// 19:12 (Intel SDM volume 3, section 11.11.1 "Message Address Register
/// Format").
const MSI_ADDRESS_BASE: u64 = 0xfee0_0000;

/// The interface task's waker, woken by every NIC interrupt.
pub static NIC_WAKER: AtomicWaker = AtomicWaker::new();
/// Set by a queue interrupt, cleared by the interface task.
pub static NIC_INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// Set by a configuration-change interrupt, cleared by the interface task.
pub static CONFIG_CHANGED: AtomicBool = AtomicBool::new(false);
/// Address of the ISR status register, for the INTx handler (0 = none).
static ISR_ADDRESS: AtomicUsize = AtomicUsize::new(0);
/// INTx interrupts whose ISR read showed nothing for this device.
pub static INTX_NOT_OURS: AtomicU64 = AtomicU64::new(0);

/// Interrupt route of a NIC without MSI-X.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterruptRoute {
    /// The INTx line, through these GSIs.
    Intx { gsis: &'static [u32] },
    /// No I/O APIC serves the line: the NIC can only be polled.
    None,
}

fn queue_interrupt(_vector: u8) {
    NIC_INTERRUPTED.store(true, Ordering::Release);
    NIC_WAKER.wake();
}

fn config_interrupt(_vector: u8) {
    CONFIG_CHANGED.store(true, Ordering::Release);
    NIC_WAKER.wake();
}

/// INTx is level-triggered and may be shared: reading the ISR status
/// register shows whether this device raised it and deasserts the line
/// (virtio 1.2 section 4.1.4.5), which must happen before the EOI.
fn intx_interrupt(_vector: u8) {
    let address = ISR_ADDRESS.load(Ordering::Acquire);
    if address == 0 {
        return;
    }
    // SAFETY: ISR_ADDRESS is the address of the NIC's ISR status byte, mapped
    // uncached by the transport set-up and never unmapped.
    let isr = unsafe { core::ptr::read_volatile(address as *const u8) };
    if isr & 0b01 != 0 {
        NIC_INTERRUPTED.store(true, Ordering::Release);
    }
    if isr & 0b10 != 0 {
        CONFIG_CHANGED.store(true, Ordering::Release);
    }
    if isr == 0 {
        INTX_NOT_OURS.fetch_add(1, Ordering::Relaxed);
    } else {
        NIC_WAKER.wake();
    }
}

/// Programs the function's MSI-X table for the three NIC vectors and enables
/// MSI-X. Returns the entries for the driver, or `None` when the function
/// has no usable MSI-X (the caller then uses INTx).
pub fn setup_msix(function: &Function, access: &impl ConfigRegionAccess) -> Option<MsixVectors> {
    let capability = match MsixCapability::find(function, access) {
        Ok(Some(capability)) if capability.table_size >= 3 => capability,
        Ok(Some(capability)) => {
            warn!("MSI-X table of {} entries is too small for 3 vectors: using INTx", capability.table_size);
            return None;
        }
        Ok(None) => return None,
        Err(problem) => {
            warn!("MSI-X unusable ({problem}): using INTx");
            return None;
        }
    };
    let base = match paging::map_device_memory(capability.table_address, u64::from(capability.table_bytes())) {
        Ok(base) => base,
        Err(problem) => {
            warn!("MSI-X table at {:#x} cannot be mapped ({problem}): using INTx", capability.table_address);
            return None;
        }
    };
    // SAFETY: the table lies inside a memory BAR of this function (checked by
    // MsixCapability::find) and was just mapped uncached; only this module
    // writes it.
    let table = unsafe { MsixTable::new(base, capability.table_size) };
    let destination = u64::from(apic::id()) << 12;
    for (entry, vector) in [(0u16, CONFIG_VECTOR), (1, RECEIVE_VECTOR), (2, TRANSMIT_VECTOR)] {
        let message = MsiMessage { address: MSI_ADDRESS_BASE | destination, data: u32::from(vector) };
        if let Err(problem) = table.program(entry, message) {
            warn!("MSI-X entry {entry} not programmed ({problem}): using INTx");
            return None;
        }
    }
    interrupts::set_handler(CONFIG_VECTOR, config_interrupt);
    interrupts::set_handler(RECEIVE_VECTOR, queue_interrupt);
    interrupts::set_handler(TRANSMIT_VECTOR, queue_interrupt);
    capability.enable(access);
    info!(
        "MSI-X: table {:#x} ({} entries), vectors config {CONFIG_VECTOR:#x}, receive {RECEIVE_VECTOR:#x}, \
         transmit {TRANSMIT_VECTOR:#x}",
        capability.table_address, capability.table_size
    );
    Some(MsixVectors { config: 0, receive: 1, transmit: 2 })
}

/// GSIs that PCI INTx lines reach on QEMU's machines in APIC mode: PIRQ A-H
/// on q35 (GSI 16-23), and the PIIX3 link interrupts on pc. Reading the
/// exact routing needs the ACPI `_PRT` method and so an AML interpreter.
/// Routing every candidate to the handler works because it checks the
/// device's ISR status register and ignores interrupts that are not its own.
const Q35_INTX_GSIS: &[u32] = &[16, 17, 18, 19, 20, 21, 22, 23];
const PC_INTX_GSIS: &[u32] = &[5, 9, 10, 11];

/// Device ID of QEMU's q35 host bridge (Intel 82G33/ICH9 MCH) at 00:00.0.
const Q35_HOST_BRIDGE_DEVICE_ID: u16 = 0x29c0;
/// PIIX3 PCI-to-ISA bridge: its PIRQ route control registers (0x60-0x63)
/// send PCI link interrupts A-D to ISA IRQs; bit 7 disables a link.
const PIIX3_DEVICE_ID: u16 = 0x7000;
const PIIX3_PIRQ_ROUTE_CONTROL: u16 = 0x60;
/// Link A-D to IRQ 10, 10, 11, 11, as SeaBIOS programs them; firmware such
/// as qboot leaves the links disabled.
const PIIX3_DEFAULT_ROUTES: u32 = u32::from_le_bytes([10, 10, 11, 11]);
const PIRQ_DISABLED: u32 = 0x80;

/// Enables the PIIX3 link interrupts when the firmware left any disabled.
fn enable_piix3_links(functions: &[Function], access: &impl ConfigRegionAccess) {
    let Some(piix3) = functions.iter().find(|function| function.vendor_id == 0x8086 && function.device_id == PIIX3_DEVICE_ID) else {
        return;
    };
    let routes = pci::read_config_u32(access, piix3.address, PIIX3_PIRQ_ROUTE_CONTROL);
    let any_disabled = routes.to_le_bytes().iter().any(|&route| u32::from(route) & PIRQ_DISABLED != 0);
    if any_disabled {
        // SAFETY: offset 0x60 of the PIIX3 is its PIRQ route control dword;
        // enabling the links changes only where PCI INTx lines are sent.
        unsafe { access.write(piix3.address, PIIX3_PIRQ_ROUTE_CONTROL, PIIX3_DEFAULT_ROUTES) };
        info!("PIIX3 PIRQ links were {routes:#010x}; routed to IRQ 10, 10, 11, 11");
    }
}

/// Routes the candidate INTx GSIs to the INTx handler, which reads the ISR
/// status register at `isr_address`.
pub fn setup_intx(isr_address: u64, functions: &[Function], access: &impl ConfigRegionAccess) -> InterruptRoute {
    ISR_ADDRESS.store(isr_address as usize, Ordering::Release);
    let q35 = functions
        .iter()
        .any(|function| function.address.bus() == 0 && function.address.device() == 0 && function.device_id == Q35_HOST_BRIDGE_DEVICE_ID);
    if !q35 {
        enable_piix3_links(functions, access);
    }
    interrupts::set_handler(INTX_VECTOR, intx_interrupt);
    let gsis = if q35 { Q35_INTX_GSIS } else { PC_INTX_GSIS };
    let mut routed = 0;
    for &gsi in gsis {
        if ioapic::route(gsi, INTX_VECTOR, LineMode::LEVEL_HIGH, apic::id()) {
            routed += 1;
        }
    }
    if routed == 0 {
        warn!("no I/O APIC serves the INTx GSIs {gsis:?}: the NIC can only be polled");
        return InterruptRoute::None;
    }
    info!("INTx: GSIs {gsis:?} routed to vector {INTX_VECTOR:#x}, ISR status at {isr_address:#x}");
    InterruptRoute::Intx { gsis }
}
