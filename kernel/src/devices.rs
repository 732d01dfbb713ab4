//! Finding and starting the NIC: PCI enumeration over ECAM or port I/O,
//! then the first virtio-net function that comes up through the modern
//! virtio-pci transport.

use alloc::vec::Vec;
use core::fmt;

use log::{error, info, warn};
use pci::{BarAllocator, ConfigRegionAccess, EcamAccess, Function, PortIoAccess};
use virtio::dma::IdentityDma;
use virtio::transport::{
    CapabilityRegion, MmioRegion, PciTransport, TransportError, TransportRegisters,
    VirtioPciCapabilities,
};
use virtio_net::{NetOptions, VirtioNet};

use crate::{nic_irq, paging};
use crate::platform::EcamWindow;

/// Red Hat's PCI vendor ID, which virtio devices use.
const VIRTIO_VENDOR_ID: u16 = 0x1af4;
/// Transitional virtio-net (legacy and modern interfaces).
const VIRTIO_NET_TRANSITIONAL_DEVICE_ID: u16 = 0x1000;
/// Modern-only virtio-net: 0x1040 plus device type 1.
const VIRTIO_NET_MODERN_DEVICE_ID: u16 = 0x1041;
/// PCI class code of network controllers.
const CLASS_NETWORK: u8 = 0x02;

/// Window for the 32-bit memory BARs the firmware left unassigned. Reading the host bridge's
/// window from the ACPI `_CRS` method needs an AML interpreter, so this uses
/// the range both QEMU machines leave to PCI below the I/O APIC: above RAM,
/// above q35's ECAM, and below 0xfec00000.
const PCI_MEMORY_WINDOW_END: u64 = 0xfec0_0000;
const PCI_MEMORY_WINDOW_MIN_START: u64 = 0xc000_0000;
/// Window for the I/O BARs the firmware left unassigned.
const PCI_IO_WINDOW: core::ops::Range<u32> = 0xc000..0x1_0000;

/// The kernel's NIC type.
pub type Nic = VirtioNet<MmioRegion, IdentityDma>;

/// Enumerates PCI and returns every function found.
pub fn enumerate_pci(ecam: Option<EcamWindow>, low_ram_end: u64) -> Vec<Function> {
    let window_start = PCI_MEMORY_WINDOW_MIN_START
        .max(low_ram_end)
        .max(ecam.map_or(0, |window| window.base_address + window.length_bytes()));
    let mut allocator = BarAllocator::new(window_start..PCI_MEMORY_WINDOW_END, PCI_IO_WINDOW);

    let result = match ecam {
        Some(window) => {
            // SAFETY: the window comes from the MCFG table and was mapped
            // uncached by paging::map_device_memory before this call.
            let access = unsafe {
                EcamAccess::new(window.base_address as *mut u8, window.segment, window.start_bus, window.end_bus)
            };
            pci::enumerate(&access, window.segment, &mut allocator)
        }
        None => {
            // SAFETY: the kernel runs at CPL 0 on one CPU, and enumeration is
            // the only user of ports 0xcf8/0xcfc at this point of boot.
            let access = unsafe { PortIoAccess::new() };
            pci::enumerate(&access, 0, &mut allocator)
        }
    };
    match result {
        Ok(functions) => {
            for function in &functions {
                info!("pci {function}");
            }
            functions
        }
        Err(problem) => {
            error!("PCI enumeration failed: {problem}");
            Vec::new()
        }
    }
}

/// Returns whether `function` is a virtio network device.
pub fn is_virtio_net(function: &Function) -> bool {
    function.vendor_id == VIRTIO_VENDOR_ID
        && (function.device_id == VIRTIO_NET_MODERN_DEVICE_ID
            || (function.device_id == VIRTIO_NET_TRANSITIONAL_DEVICE_ID && function.class == CLASS_NETWORK))
}

/// Brings up the first virtio-net function that works; each failure is
/// logged with its reason and the device is left reset. Interrupts go
/// through MSI-X when the function has it, else through INTx.
pub fn start_nic(functions: &[Function], ecam: Option<EcamWindow>, options: NetOptions) -> Option<Nic> {
    for function in functions.iter().filter(|function| is_virtio_net(function)) {
        let started = match ecam {
            Some(window) => {
                // SAFETY: as in enumerate_pci; enumeration has finished.
                let access = unsafe {
                    EcamAccess::new(window.base_address as *mut u8, window.segment, window.start_bus, window.end_bus)
                };
                start_one(function, functions, &access, options)
            }
            None => {
                // SAFETY: as in enumerate_pci; enumeration has finished.
                let access = unsafe { PortIoAccess::new() };
                start_one(function, functions, &access, options)
            }
        };
        match started {
            Ok(nic) => return Some(nic),
            Err(reason) => warn!("virtio-net {}: not usable: {reason}", pci::Bdf(function.address)),
        }
    }
    None
}

/// Error of starting one virtio-net function.
#[derive(Debug)]
pub enum NicStartError {
    /// The virtio capabilities are missing or do not fit their BARs.
    Capabilities(TransportError),
    /// A capability region could not be mapped.
    Map { address: u64, length: u32, error: paging::PagingError },
    /// The register blocks are too short for the transport.
    Transport(TransportError),
    /// Feature negotiation or queue set-up failed.
    Driver(virtio_net::NetError),
}

impl fmt::Display for NicStartError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Capabilities(error) => write!(formatter, "virtio capabilities: {error}"),
            Self::Map { address, length, error } => {
                write!(formatter, "cannot map {address:#x}+{length:#x}: {error}")
            }
            Self::Transport(error) => write!(formatter, "transport: {error}"),
            Self::Driver(error) => write!(formatter, "driver: {error}"),
        }
    }
}

fn start_one(
    function: &Function,
    functions: &[Function],
    access: &impl ConfigRegionAccess,
    mut options: NetOptions,
) -> Result<Nic, NicStartError> {
    let capabilities = VirtioPciCapabilities::parse(function, access).map_err(NicStartError::Capabilities)?;
    let map = |region: CapabilityRegion| -> Result<MmioRegion, NicStartError> {
        let pointer = paging::map_device_memory(region.address, u64::from(region.length)).map_err(|error| {
            NicStartError::Map { address: region.address, length: region.length, error }
        })?;
        // SAFETY: the region lies inside a memory BAR of this function (the
        // capability parser checked offset and length against the BAR), and
        // was just mapped uncached; only this transport uses it.
        Ok(unsafe { MmioRegion::new(pointer, region.length as usize) })
    };
    let registers = TransportRegisters {
        common: map(capabilities.common)?,
        notify: map(capabilities.notify)?,
        notify_off_multiplier: capabilities.notify_off_multiplier,
        isr: map(capabilities.isr)?,
        device: capabilities.device.map(map).transpose()?,
    };
    let transport = PciTransport::new(function.address, registers).map_err(NicStartError::Transport)?;

    options.msix = nic_irq::setup_msix(function, access);
    if options.msix.is_none() {
        nic_irq::setup_intx(capabilities.isr.address, functions, access);
    }
    VirtioNet::new(transport, IdentityDma, options).map_err(NicStartError::Driver)
}
