//! [`FunctionBuilder`]: sets up one function of a [`SyntheticConfigSpace`].

use core::ops::Range;

use super::{BusHandle, FunctionHandle, SyntheticConfigSpace, SyntheticFunction};
use crate::header::{
    BAR0, BRIDGE_BUS_NUMBERS, BRIDGE_IO_BASE_LIMIT, BRIDGE_IO_UPPER, BRIDGE_MEMORY_BASE_LIMIT,
    BRIDGE_PREFETCHABLE_BASE_LIMIT, BRIDGE_PREFETCHABLE_BASE_UPPER,
    BRIDGE_PREFETCHABLE_LIMIT_UPPER, CAPABILITY_POINTER, CLASS_REVISION, COMMAND_STATUS,
    HEADER_TYPE_BRIDGE, HEADER_TYPE_DWORD, HEADER_TYPE_MULTI_FUNCTION, STATUS_CAPABILITIES_LIST,
};

/// Adds registers and behaviour to a function just added to a
/// [`SyntheticConfigSpace`]. Each method returns the builder, so calls
/// chain; [`handle`](Self::handle) ends the chain.
///
/// Methods that describe hardware (BARs, capabilities) set read-only
/// contents and write masks. Methods that describe firmware (BAR addresses,
/// bus numbers, windows, command bits) go through the write masks, as a
/// config write from the firmware would.
#[derive(Debug)]
pub struct FunctionBuilder<'a> {
    space: &'a SyntheticConfigSpace,
    function: FunctionHandle,
}

impl<'a> FunctionBuilder<'a> {
    pub(super) fn new(space: &'a SyntheticConfigSpace, function: FunctionHandle) -> Self {
        FunctionBuilder { space, function }
    }

    /// Returns the handle of the function being built.
    pub fn handle(&self) -> FunctionHandle {
        self.function
    }

    /// Returns the secondary bus of the bridge being built.
    ///
    /// # Panics
    ///
    /// If the function is not a bridge.
    pub fn secondary_bus(&self) -> BusHandle {
        self.space.secondary_bus(self.function)
    }

    fn update(self, change: impl FnOnce(&mut SyntheticFunction)) -> Self {
        change(&mut self.space.lock().functions[self.function.0]);
        self
    }

    /// Sets class code, subclass and programming interface (read-only).
    pub fn class(self, class: u8, subclass: u8, prog_if: u8) -> Self {
        let at = usize::from(CLASS_REVISION);
        self.update(|function| {
            function.bytes[at + 1..at + 4].copy_from_slice(&[prog_if, subclass, class])
        })
    }

    /// Sets the revision ID (read-only).
    pub fn revision(self, revision: u8) -> Self {
        self.update(|function| function.bytes[usize::from(CLASS_REVISION)] = revision)
    }

    /// Sets the multi-function bit of the header type. Set it on function 0
    /// for enumeration to scan functions 1 to 7 of the device.
    pub fn multi_function(self) -> Self {
        let at = usize::from(HEADER_TYPE_DWORD) + 2;
        self.update(|function| function.bytes[at] |= HEADER_TYPE_MULTI_FUNCTION)
    }

    /// Implements an I/O BAR of `size` ports (a power of two, at least 4).
    ///
    /// # Panics
    ///
    /// If `size` is invalid or `slot` past the header's BAR slots.
    pub fn io_bar(self, slot: u8, size: u32) -> Self {
        assert!(
            size.is_power_of_two() && size >= 4,
            "I/O BAR size {size:#x} is invalid"
        );
        self.implement_bar(slot, 1, !(size - 1) & !0x3, 0x1)
    }

    /// Implements a 32-bit memory BAR of `size` bytes (a power of two, at
    /// least 16).
    ///
    /// # Panics
    ///
    /// If `size` is invalid or `slot` past the header's BAR slots.
    pub fn memory_bar(self, slot: u8, size: u32, prefetchable: bool) -> Self {
        assert!(
            size.is_power_of_two() && size >= 16,
            "memory BAR size {size:#x} is invalid"
        );
        let type_bits = u32::from(prefetchable) << 3;
        self.implement_bar(slot, 1, !(size - 1) & !0xf, type_bits)
    }

    /// Implements a 64-bit memory BAR of `size` bytes (a power of two, at
    /// least 16) in `slot` and `slot + 1`.
    ///
    /// # Panics
    ///
    /// If `size` is invalid or `slot + 1` past the header's BAR slots.
    pub fn memory64_bar(self, slot: u8, size: u64, prefetchable: bool) -> Self {
        assert!(
            size.is_power_of_two() && size >= 16,
            "memory BAR size {size:#x} is invalid"
        );
        let type_bits = 0b100 | u32::from(prefetchable) << 3;
        let mask = !(size - 1) & !0xf;
        let builder = self.implement_bar(slot, 2, mask as u32, type_bits);
        let high = usize::from(BAR0) + 4 * usize::from(slot) + 4;
        builder.update(|function| {
            function.writable[high..high + 4].copy_from_slice(&((mask >> 32) as u32).to_le_bytes())
        })
    }

    /// Sets the read-only type bits of `slot` and the mask of its writable
    /// address bits (which must exclude the type bits).
    fn implement_bar(self, slot: u8, slots_used: u8, writable: u32, type_bits: u32) -> Self {
        self.update(|function| {
            let slot_count = if function.is_bridge() { 2 } else { 6 };
            assert!(
                slot + slots_used <= slot_count,
                "BAR{slot} does not fit in {slot_count} BAR slots"
            );
            let at = usize::from(BAR0) + 4 * usize::from(slot);
            function.bytes[at..at + 4].copy_from_slice(&type_bits.to_le_bytes());
            function.writable[at..at + 4].copy_from_slice(&writable.to_le_bytes());
        })
    }

    /// Writes `address` into BAR `slot` as firmware would (both dwords of a
    /// 64-bit BAR); bits below the BAR's size stay zero.
    pub fn bar_address(self, slot: u8, address: u64) -> Self {
        let offset = BAR0 + 4 * u16::from(slot);
        self.update(|function| {
            let is_64bit = function.dword(offset) & 0b111 == 0b100;
            function.write_masked(offset, address as u32);
            if is_64bit {
                function.write_masked(offset + 4, (address >> 32) as u32);
            }
        })
    }

    /// Writes the command register as firmware would.
    pub fn command(self, command: u16) -> Self {
        self.update(|function| function.write_masked(COMMAND_STATUS, u32::from(command)))
    }

    /// Appends a capability with `id` whose bytes after the ID and next
    /// pointer are `body`, and sets the status register's capabilities-list
    /// bit.
    ///
    /// The first capability goes at 0x40 and each next one at the first
    /// dword boundary after the previous one's end, so a test can compute
    /// offsets (to corrupt a next pointer with
    /// [`config_bytes`](Self::config_bytes), say).
    ///
    /// # Panics
    ///
    /// If the capability would run past offset 0xff.
    pub fn capability(self, id: u8, body: &[u8]) -> Self {
        self.update(|function| {
            let offset = function.next_capability_offset;
            let end = usize::from(offset) + 2 + body.len();
            assert!(
                end <= 0x100,
                "capability {id:#x} at {offset:#x} runs past 0xff"
            );

            let at = usize::from(offset);
            function.bytes[at] = id;
            function.bytes[at + 1] = 0;
            function.bytes[at + 2..end].copy_from_slice(body);
            match function.last_capability {
                Some(previous) => function.bytes[usize::from(previous) + 1] = offset as u8,
                None => {
                    function.bytes[usize::from(CAPABILITY_POINTER)] = offset as u8;
                    let status = usize::from(COMMAND_STATUS) + 2;
                    function.bytes[status] |= STATUS_CAPABILITIES_LIST as u8;
                }
            }
            function.last_capability = Some(offset);
            function.next_capability_offset = end.next_multiple_of(4) as u16;
        })
    }

    /// Overwrites raw bytes, ignoring write masks: for layouts the other
    /// methods cannot express, such as a capability list that loops.
    pub fn config_bytes(self, offset: u16, bytes: &[u8]) -> Self {
        self.space.set_config_bytes(self.function, offset, bytes);
        self
    }

    /// Sets the write mask of config bytes from `offset`: bits set in `mask`
    /// become writable, as for a capability's control register.
    pub fn writable_bytes(self, offset: u16, mask: &[u8]) -> Self {
        self.update(|function| {
            let at = usize::from(offset);
            function.writable[at..at + mask.len()].copy_from_slice(mask);
        })
    }

    /// Marks the function as a PCI-to-PCI bridge and makes its bus-number
    /// and window registers writable. Called by `add_bridge`.
    pub(super) fn bridge_registers(self) -> Self {
        self.update(|function| {
            function.bytes[usize::from(HEADER_TYPE_DWORD) + 2] = HEADER_TYPE_BRIDGE;
            let mut set = |offset: u16, value: &[u8], writable: &[u8]| {
                let at = usize::from(offset);
                function.bytes[at..at + value.len()].copy_from_slice(value);
                function.writable[at..at + writable.len()].copy_from_slice(writable);
            };
            set(BRIDGE_BUS_NUMBERS, &[0; 4], &[0xff; 4]);
            // I/O base and limit: bits 7:4 writable, low nibble 1 means
            // 32-bit I/O addressing.
            set(BRIDGE_IO_BASE_LIMIT, &[0x01, 0x01], &[0xf0, 0xf0]);
            set(BRIDGE_MEMORY_BASE_LIMIT, &[0; 4], &[0xf0, 0xff, 0xf0, 0xff]);
            // Prefetchable base and limit: low nibble 1 means 64-bit.
            set(
                BRIDGE_PREFETCHABLE_BASE_LIMIT,
                &[0x01, 0, 0x01, 0],
                &[0xf0, 0xff, 0xf0, 0xff],
            );
            set(BRIDGE_PREFETCHABLE_BASE_UPPER, &[0; 4], &[0xff; 4]);
            set(BRIDGE_PREFETCHABLE_LIMIT_UPPER, &[0; 4], &[0xff; 4]);
            set(BRIDGE_IO_UPPER, &[0; 4], &[0xff; 4]);
        })
    }

    /// Writes primary, secondary and subordinate bus numbers as firmware
    /// would.
    pub fn bus_numbers(self, primary: u8, secondary: u8, subordinate: u8) -> Self {
        let value = u32::from_le_bytes([primary, secondary, subordinate, 0]);
        self.update(|function| function.write_masked(BRIDGE_BUS_NUMBERS, value))
    }

    /// Programs the I/O window as firmware would; `window` must be 4 KiB
    /// aligned at both ends.
    pub fn io_window(self, window: Range<u32>) -> Self {
        let limit = window.end - 1;
        let base_limit = (window.start >> 8) & 0xf0 | ((limit >> 8) & 0xf0) << 8;
        let upper = window.start >> 16 | (limit >> 16) << 16;
        self.update(|function| {
            function.write_masked(BRIDGE_IO_BASE_LIMIT, base_limit);
            function.write_masked(BRIDGE_IO_UPPER, upper);
        })
    }

    /// Programs the memory window as firmware would; `window` must be 1 MiB
    /// aligned at both ends.
    pub fn memory_window(self, window: Range<u32>) -> Self {
        let value = (window.start >> 16) & 0xfff0 | ((window.end - 1) >> 16 & 0xfff0) << 16;
        self.update(|function| function.write_masked(BRIDGE_MEMORY_BASE_LIMIT, value))
    }

    /// Programs the prefetchable memory window as firmware would; `window`
    /// must be 1 MiB aligned at both ends.
    pub fn prefetchable_window(self, window: Range<u64>) -> Self {
        let limit = window.end - 1;
        let value = (window.start >> 16) as u32 & 0xfff0 | ((limit >> 16) as u32 & 0xfff0) << 16;
        self.update(|function| {
            function.write_masked(BRIDGE_PREFETCHABLE_BASE_LIMIT, value);
            function.write_masked(BRIDGE_PREFETCHABLE_BASE_UPPER, (window.start >> 32) as u32);
            function.write_masked(BRIDGE_PREFETCHABLE_LIMIT_UPPER, (limit >> 32) as u32);
        })
    }
}
