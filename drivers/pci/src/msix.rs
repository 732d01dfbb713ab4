//! MSI-X (PCI Local Bus Specification 3.0, section 6.8.2 "MSI-X Capability
//! and Table Structure"): the capability in config space, and the table of
//! message address, data and mask per vector in a memory BAR.
//!
//! The platform decides what a message means (on x86 the address selects
//! the local APIC and the data the vector); this module only writes it.

use core::fmt;

use pci_types::{ConfigRegionAccess, PciAddress};

use crate::{read_config_u16, read_config_u32, Bar, Bdf, Function};

/// Capability ID of MSI-X.
pub const CAPABILITY_ID_MSIX: u8 = 0x11;
/// Message Control: table size minus one.
const CONTROL_TABLE_SIZE_MASK: u16 = 0x07ff;
/// Message Control: all vectors masked.
const CONTROL_FUNCTION_MASK: u16 = 1 << 14;
/// Message Control: MSI-X enabled.
const CONTROL_ENABLE: u16 = 1 << 15;
/// Offsets in the capability.
const OFFSET_CONTROL: u16 = 2;
const OFFSET_TABLE: u16 = 4;
const OFFSET_PBA: u16 = 8;
/// The low three bits of the table and PBA registers select the BAR.
const BIR_MASK: u32 = 0b111;
/// Bytes per table entry: address low, address high, data, vector control.
pub const TABLE_ENTRY_BYTES: u32 = 16;
const ENTRY_ADDRESS_LOW: usize = 0;
const ENTRY_ADDRESS_HIGH: usize = 4;
const ENTRY_DATA: usize = 8;
const ENTRY_VECTOR_CONTROL: usize = 12;
/// Vector Control: the vector is masked.
const VECTOR_MASKED: u32 = 1;

/// Error that makes MSI-X unusable on a function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MsixError {
    /// The table or PBA names a BAR that is absent or not a memory BAR.
    BarNotMemory { address: PciAddress, bar: u8 },
    /// The table or PBA does not fit inside its BAR.
    OutsideBar { address: PciAddress, bar: u8, offset: u32, length: u32, bar_size: u64 },
    /// A vector index past the table.
    EntryOutOfRange { entry: u16, table_size: u16 },
}

impl fmt::Display for MsixError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BarNotMemory { address, bar } => {
                write!(formatter, "{}: MSI-X structure in BAR{bar}, which is not a memory BAR", Bdf(*address))
            }
            Self::OutsideBar { address, bar, offset, length, bar_size } => write!(
                formatter,
                "{}: MSI-X structure at {offset:#x}+{length:#x} lies outside BAR{bar} of {bar_size:#x} bytes",
                Bdf(*address)
            ),
            Self::EntryOutOfRange { entry, table_size } => {
                write!(formatter, "MSI-X entry {entry} is past the table of {table_size} entries")
            }
        }
    }
}

/// The decoded MSI-X capability of one function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixCapability {
    function: PciAddress,
    /// Offset of the capability in config space.
    pub offset: u16,
    /// Number of table entries.
    pub table_size: u16,
    /// Bus address of the table (its BAR address plus offset).
    pub table_address: u64,
    /// Bus address of the pending bit array.
    pub pba_address: u64,
}

impl MsixCapability {
    /// Returns the table's length in bytes.
    pub fn table_bytes(&self) -> u32 {
        u32::from(self.table_size) * TABLE_ENTRY_BYTES
    }

    /// Returns the pending bit array's length in bytes (one bit per entry,
    /// in 64-bit words).
    pub fn pba_bytes(&self) -> u32 {
        u32::from(self.table_size).div_ceil(64) * 8
    }

    /// Reads the MSI-X capability of `function`; `Ok(None)` when it has none.
    pub fn find(function: &Function, access: &impl ConfigRegionAccess) -> Result<Option<Self>, MsixError> {
        let Some(capability) = function.capabilities_with_id(CAPABILITY_ID_MSIX).next() else {
            return Ok(None);
        };
        let offset = capability.offset;
        let control = read_config_u16(access, function.address, offset + OFFSET_CONTROL);
        let table_size = (control & CONTROL_TABLE_SIZE_MASK) + 1;
        let table = read_config_u32(access, function.address, offset + OFFSET_TABLE);
        let pba = read_config_u32(access, function.address, offset + OFFSET_PBA);

        let table_bytes = u32::from(table_size) * TABLE_ENTRY_BYTES;
        let pba_bytes = u32::from(table_size).div_ceil(64) * 8;
        let table_address = structure_address(function, table, table_bytes)?;
        let pba_address = structure_address(function, pba, pba_bytes)?;
        Ok(Some(Self { function: function.address, offset, table_size, table_address, pba_address }))
    }

    /// Sets or clears the enable and function-mask bits of Message Control.
    fn write_control(&self, access: &impl ConfigRegionAccess, set: u16, clear: u16) {
        let header = read_config_u32(access, self.function, self.offset);
        let control = ((header >> 16) as u16 | set) & !clear;
        let value = (header & 0xffff) | (u32::from(control) << 16);
        // SAFETY: the offset is this function's MSI-X capability header, found
        // in its capability list; only Message Control changes.
        unsafe { access.write(self.function, self.offset, value) };
    }

    /// Enables MSI-X with every vector unmasked at function level; entries
    /// keep their own mask bits. The function stops using INTx.
    pub fn enable(&self, access: &impl ConfigRegionAccess) {
        self.write_control(access, CONTROL_ENABLE, CONTROL_FUNCTION_MASK);
    }

    /// Disables MSI-X; the function falls back to INTx.
    pub fn disable(&self, access: &impl ConfigRegionAccess) {
        self.write_control(access, 0, CONTROL_ENABLE);
    }

    /// Returns whether MSI-X is enabled.
    pub fn is_enabled(&self, access: &impl ConfigRegionAccess) -> bool {
        read_config_u16(access, self.function, self.offset + OFFSET_CONTROL) & CONTROL_ENABLE != 0
    }
}

fn structure_address(function: &Function, register: u32, length: u32) -> Result<u64, MsixError> {
    let bar = (register & BIR_MASK) as u8;
    let offset = register & !BIR_MASK;
    let Some(Some(Bar::Memory { address, size, .. })) = function.bars.get(usize::from(bar)) else {
        return Err(MsixError::BarNotMemory { address: function.address, bar });
    };
    if u64::from(offset) + u64::from(length) > *size {
        return Err(MsixError::OutsideBar { address: function.address, bar, offset, length, bar_size: *size });
    }
    Ok(address + u64::from(offset))
}

/// One MSI message: what the function writes where to raise a vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiMessage {
    pub address: u64,
    pub data: u32,
}

/// The mapped MSI-X table.
pub struct MsixTable {
    base: *mut u8,
    table_size: u16,
}

impl MsixTable {
    /// Wraps the table at `base`.
    ///
    /// # Safety
    /// `base` points to the function's MSI-X table, `table_size` entries of
    /// 16 bytes, mapped uncached and used by nothing else.
    pub unsafe fn new(base: *mut u8, table_size: u16) -> Self {
        Self { base, table_size }
    }

    fn entry_pointer(&self, entry: u16, field: usize) -> Result<*mut u32, MsixError> {
        if entry >= self.table_size {
            return Err(MsixError::EntryOutOfRange { entry, table_size: self.table_size });
        }
        // SAFETY: entry < table_size and field < 16, so the pointer stays
        // inside the table, as the constructor's contract guarantees.
        Ok(unsafe { self.base.add(usize::from(entry) * TABLE_ENTRY_BYTES as usize + field) }.cast())
    }

    /// Writes `message` into `entry` and unmasks it. The entry is masked
    /// while its fields change, as section 6.8.3.5 requires of software.
    pub fn program(&self, entry: u16, message: MsiMessage) -> Result<(), MsixError> {
        self.set_masked(entry, true)?;
        let fields = [
            (ENTRY_ADDRESS_LOW, message.address as u32),
            (ENTRY_ADDRESS_HIGH, (message.address >> 32) as u32),
            (ENTRY_DATA, message.data),
        ];
        for (field, value) in fields {
            let pointer = self.entry_pointer(entry, field)?;
            // SAFETY: entry_pointer checked the entry; the table is MMIO that
            // the constructor's caller handed over.
            unsafe { pointer.write_volatile(value) };
        }
        self.set_masked(entry, false)
    }

    /// Masks or unmasks `entry`. A masked vector's messages stay pending.
    pub fn set_masked(&self, entry: u16, masked: bool) -> Result<(), MsixError> {
        let pointer = self.entry_pointer(entry, ENTRY_VECTOR_CONTROL)?;
        // SAFETY: as in `program`.
        unsafe {
            let control = pointer.read_volatile();
            let control = if masked { control | VECTOR_MASKED } else { control & !VECTOR_MASKED };
            pointer.write_volatile(control);
        }
        Ok(())
    }

    /// Reads back `entry`'s message and mask bit.
    pub fn read(&self, entry: u16) -> Result<(MsiMessage, bool), MsixError> {
        let read = |field| -> Result<u32, MsixError> {
            // SAFETY: as in `program`.
            Ok(unsafe { self.entry_pointer(entry, field)?.read_volatile() })
        };
        let address = u64::from(read(ENTRY_ADDRESS_LOW)?) | (u64::from(read(ENTRY_ADDRESS_HIGH)?) << 32);
        let message = MsiMessage { address, data: read(ENTRY_DATA)? };
        Ok((message, read(ENTRY_VECTOR_CONTROL)? & VECTOR_MASKED != 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{SyntheticConfigSpace, ROOT_BUS};
    use crate::{enumerate, BarAllocator};
    use std::vec;

    /// A virtio-net-like function: MSI-X with 3 entries, table at BAR1+0,
    /// PBA at BAR1+0x800.
    fn function_with_msix(table_register: u32, pba_register: u32) -> (SyntheticConfigSpace, Function) {
        let space = SyntheticConfigSpace::new();
        let mut body = vec![0u8; 10];
        body[0..2].copy_from_slice(&2u16.to_le_bytes());
        body[2..6].copy_from_slice(&table_register.to_le_bytes());
        body[6..10].copy_from_slice(&pba_register.to_le_bytes());
        space
            .add_endpoint(ROOT_BUS, 1, 0, 0x1af4, 0x1000)
            .class(0x02, 0x00, 0x00)
            .memory_bar(1, 0x1000, false)
            .capability(CAPABILITY_ID_MSIX, &body)
            // Message Control bits 14 (function mask) and 15 (enable) are
            // writable; the first capability sits at 0x40.
            .writable_bytes(0x43, &[0xc0]);
        let mut allocator = BarAllocator::new(0xc000_0000..0xd000_0000, 0xc000..0x1_0000);
        let functions = enumerate(&space, 0, &mut allocator).expect("enumeration succeeds");
        let function = functions.into_iter().find(|function| function.vendor_id == 0x1af4).expect("device found");
        (space, function)
    }

    #[test]
    fn capability_decodes_table_and_pba() {
        let (space, function) = function_with_msix(0x0000_0001, 0x0000_0801);
        let capability = MsixCapability::find(&function, &space).unwrap().expect("has MSI-X");
        let bar_address = function.bars[1].expect("BAR1 assigned").address();
        assert_eq!(capability.table_size, 3);
        assert_eq!(capability.table_address, bar_address);
        assert_eq!(capability.pba_address, bar_address + 0x800);
        assert_eq!(capability.table_bytes(), 48);
        assert_eq!(capability.pba_bytes(), 8);
    }

    #[test]
    fn enable_sets_control_bits_only() {
        let (space, function) = function_with_msix(0x0000_0001, 0x0000_0801);
        let capability = MsixCapability::find(&function, &space).unwrap().expect("has MSI-X");
        assert!(!capability.is_enabled(&space));
        capability.enable(&space);
        assert!(capability.is_enabled(&space));
        let header = read_config_u32(&space, function.address, capability.offset);
        assert_eq!(header & 0xff, u32::from(CAPABILITY_ID_MSIX));
        assert_eq!((header >> 16) & 0x7ff, 2, "table size field kept");
        capability.disable(&space);
        assert!(!capability.is_enabled(&space));
    }

    #[test]
    fn structures_outside_memory_bars_are_rejected() {
        let (space, function) = function_with_msix(0x0000_0000, 0x0000_0801);
        assert_eq!(
            MsixCapability::find(&function, &space),
            Err(MsixError::BarNotMemory { address: function.address, bar: 0 })
        );
        let (space, function) = function_with_msix(0x0000_0ff9, 0x0000_0801);
        assert!(matches!(MsixCapability::find(&function, &space), Err(MsixError::OutsideBar { bar: 1, .. })));
    }

    #[test]
    fn table_entries_are_programmed_and_bounded() {
        let mut memory = vec![0u32; 12];
        // The reset state of every entry is masked.
        for entry in 0..3 {
            memory[entry * 4 + 3] = VECTOR_MASKED;
        }
        // SAFETY: the vector contains three 16-byte entries and outlives `table`.
        let table = unsafe { MsixTable::new(memory.as_mut_ptr().cast(), 3) };
        let message = MsiMessage { address: 0x1_fee0_1000, data: 0x42 };
        table.program(2, message).unwrap();
        assert_eq!(table.read(2).unwrap(), (message, false));
        assert!(table.read(0).unwrap().1, "other entries stay masked");
        table.set_masked(2, true).unwrap();
        assert!(table.read(2).unwrap().1);
        assert_eq!(table.program(3, message), Err(MsixError::EntryOutOfRange { entry: 3, table_size: 3 }));
    }
}
