//! Test doubles: a synthetic PCI configuration space that responds to config
//! reads and writes the way hardware does.
//!
//! Available under `cfg(test)` and, for other crates' tests, with the
//! `testing` feature (which links `std`).
//!
//! [`SyntheticConfigSpace`] models a tree of buses. Bus 0 is the root; each
//! bridge added with [`SyntheticConfigSpace::add_bridge`] owns a secondary
//! bus. A config access to bus `n` reaches the functions behind a bridge
//! only while that bridge's secondary and subordinate bus-number registers
//! route `n` to it, so code that must number buses itself (as under qboot)
//! is tested against real routing. Each byte of each function has a write
//! mask: read-only bits (IDs, class, BAR type bits, the low address bits of
//! a BAR below its size, capability lists) keep their value, so writing
//! all-ones to a BAR reads back its size mask. Absent functions read
//! all-ones and ignore writes.
//!
//! ```
//! use pci::testing::{SyntheticConfigSpace, ROOT_BUS};
//!
//! let space = SyntheticConfigSpace::new();
//! let bridge = space.add_bridge(ROOT_BUS, 0x1e, 0, 0x8086, 0x244e).handle();
//! let nic = space
//!     .add_endpoint(space.secondary_bus(bridge), 0, 0, 0x1af4, 0x1041)
//!     .class(0x02, 0x00, 0x00)
//!     .memory64_bar(4, 0x4000, true)
//!     .capability(0x09, &[0; 14])
//!     .handle();
//! // The bridge has no bus numbers yet, so the NIC is unreachable.
//! assert_eq!(space.address_of(nic), None);
//! ```

use std::sync::{Mutex, MutexGuard};
use std::vec;
use std::vec::Vec;

use pci_types::{ConfigRegionAccess, PciAddress};

use crate::header::{
    BRIDGE_BUS_NUMBERS, COMMAND_STATUS, CONFIG_SPACE_BYTES, HEADER_TYPE_BRIDGE, HEADER_TYPE_DWORD,
    HEADER_TYPE_LAYOUT_MASK,
};

mod builder;

pub use builder::FunctionBuilder;

/// Command register bits software can change: I/O space, memory space, bus
/// master, parity error response, SERR# enable and interrupt disable.
const COMMAND_WRITABLE: u16 = 0b0000_0101_0100_0111;
/// Interrupt line register, writable in every header type.
const INTERRUPT_LINE: u16 = 0x3c;

/// The root bus (bus number 0) of every [`SyntheticConfigSpace`].
pub const ROOT_BUS: BusHandle = BusHandle(0);

/// A bus of a [`SyntheticConfigSpace`], independent of the bus number that
/// config accesses currently use to reach it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BusHandle(usize);

/// A function of a [`SyntheticConfigSpace`], independent of its current
/// address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FunctionHandle(usize);

/// One config write that reached a function, as a bus analyser would record
/// it (before the function's write masks apply).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigWrite {
    pub function: FunctionHandle,
    /// Dword-aligned register offset.
    pub offset: u16,
    pub value: u32,
}

/// A synthetic configuration space for segment 0; see the module
/// documentation. Shareable between threads.
#[derive(Debug, Default)]
pub struct SyntheticConfigSpace {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    buses: Vec<SyntheticBus>,
    functions: Vec<SyntheticFunction>,
    write_log: Vec<ConfigWrite>,
}

#[derive(Debug, Default)]
struct SyntheticBus {
    /// Indices into `State::functions`.
    functions: Vec<usize>,
    /// The bridge whose secondary bus this is; `None` for the root bus.
    parent_bridge: Option<usize>,
}

#[derive(Debug)]
struct SyntheticFunction {
    bus: usize,
    device: u8,
    function: u8,
    /// Current register contents, 4 KiB.
    bytes: Vec<u8>,
    /// Per-byte mask of the bits a config write can change.
    writable: Vec<u8>,
    /// The bus behind this function, for a bridge.
    secondary_bus: Option<usize>,
    /// Offset of the last capability added, whose next pointer the next
    /// capability links from.
    last_capability: Option<u16>,
    /// Offset of the next capability added.
    next_capability_offset: u16,
}

impl Default for State {
    fn default() -> Self {
        State {
            buses: vec![SyntheticBus::default()],
            functions: Vec::new(),
            write_log: Vec::new(),
        }
    }
}

impl SyntheticFunction {
    fn dword(&self, offset: u16) -> u32 {
        let start = usize::from(offset & !3);
        u32::from_le_bytes(
            self.bytes[start..start + 4]
                .try_into()
                .expect("slice of 4 bytes"),
        )
    }

    /// Applies a config write of `value` at the dword holding `offset`,
    /// changing only the bits the write masks allow.
    fn write_masked(&mut self, offset: u16, value: u32) {
        let start = usize::from(offset & !3);
        for (at, new_byte) in (start..).zip(value.to_le_bytes()) {
            let mask = self.writable[at];
            self.bytes[at] = (self.bytes[at] & !mask) | (new_byte & mask);
        }
    }

    /// Returns the secondary and subordinate bus numbers of a bridge.
    fn bus_numbers(&self) -> (u8, u8) {
        let at = usize::from(BRIDGE_BUS_NUMBERS);
        (self.bytes[at + 1], self.bytes[at + 2])
    }
}

impl SyntheticConfigSpace {
    /// Creates an empty space: bus 0 with no functions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a type 0 function (class 0xff, "unassigned", until
    /// [`FunctionBuilder::class`] sets one) at `device`.`function` of `bus`.
    ///
    /// Function 1 to 7 of a device are only scanned if function 0 is marked
    /// with [`FunctionBuilder::multi_function`].
    ///
    /// # Panics
    ///
    /// If the slot is taken, `device` is 32 or more, or `function` 8 or more.
    pub fn add_endpoint(
        &self,
        bus: BusHandle,
        device: u8,
        function: u8,
        vendor_id: u16,
        device_id: u16,
    ) -> FunctionBuilder<'_> {
        let index = self.add_function(bus, device, function, vendor_id, device_id);
        FunctionBuilder::new(self, FunctionHandle(index)).class(0xff, 0x00, 0x00)
    }

    /// Adds a PCI-to-PCI bridge (header type 1, class 06.04.00) with a new,
    /// empty secondary bus. Its bus numbers and windows start at zero, as
    /// after reset.
    ///
    /// # Panics
    ///
    /// As [`add_endpoint`](Self::add_endpoint).
    pub fn add_bridge(
        &self,
        bus: BusHandle,
        device: u8,
        function: u8,
        vendor_id: u16,
        device_id: u16,
    ) -> FunctionBuilder<'_> {
        let index = self.add_function(bus, device, function, vendor_id, device_id);
        {
            let mut state = self.lock();
            let secondary = state.buses.len();
            state.buses.push(SyntheticBus {
                functions: Vec::new(),
                parent_bridge: Some(index),
            });
            state.functions[index].secondary_bus = Some(secondary);
        }
        FunctionBuilder::new(self, FunctionHandle(index))
            .bridge_registers()
            .class(0x06, 0x04, 0x00)
    }

    fn add_function(
        &self,
        bus: BusHandle,
        device: u8,
        function: u8,
        vendor_id: u16,
        device_id: u16,
    ) -> usize {
        assert!(
            device < 32 && function < 8,
            "no slot {device}.{function} on a PCI bus"
        );
        let mut state = self.lock();
        let taken = state.buses[bus.0].functions.iter().any(|&index| {
            state.functions[index].device == device && state.functions[index].function == function
        });
        assert!(!taken, "slot {device}.{function} is already taken");

        let index = state.functions.len();
        let mut bytes = vec![0u8; usize::from(CONFIG_SPACE_BYTES)];
        bytes[0..2].copy_from_slice(&vendor_id.to_le_bytes());
        bytes[2..4].copy_from_slice(&device_id.to_le_bytes());
        let mut writable = vec![0u8; usize::from(CONFIG_SPACE_BYTES)];
        writable[usize::from(COMMAND_STATUS)..][..2]
            .copy_from_slice(&COMMAND_WRITABLE.to_le_bytes());
        writable[usize::from(INTERRUPT_LINE)] = 0xff;
        state.functions.push(SyntheticFunction {
            bus: bus.0,
            device,
            function,
            bytes,
            writable,
            secondary_bus: None,
            last_capability: None,
            next_capability_offset: crate::header::DEVICE_SPECIFIC_START,
        });
        state.buses[bus.0].functions.push(index);
        index
    }

    /// Returns the secondary bus of a bridge.
    ///
    /// # Panics
    ///
    /// If `bridge` was not added with [`add_bridge`](Self::add_bridge).
    pub fn secondary_bus(&self, bridge: FunctionHandle) -> BusHandle {
        BusHandle(
            self.lock().functions[bridge.0]
                .secondary_bus
                .expect("function is not a bridge"),
        )
    }

    /// Returns the address at which config accesses currently reach
    /// `function`, or `None` if a bridge on the way does not route to it.
    pub fn address_of(&self, function: FunctionHandle) -> Option<PciAddress> {
        let state = self.lock();
        let target = &state.functions[function.0];
        let bus_number = state.bus_number(target.bus);
        let address = PciAddress::new(0, bus_number, target.device, target.function);
        (state.resolve(address) == Some(function.0)).then_some(address)
    }

    /// Reads the dword at `offset` (rounded down to a multiple of 4) of
    /// `function`, bypassing routing.
    pub fn register(&self, function: FunctionHandle, offset: u16) -> u32 {
        self.lock().functions[function.0].dword(offset)
    }

    /// Overwrites bytes of `function` as the device itself would, ignoring
    /// write masks: for device state changes and for malformed layouts such
    /// as a capability list that loops.
    pub fn set_config_bytes(&self, function: FunctionHandle, offset: u16, bytes: &[u8]) {
        let start = usize::from(offset);
        self.lock().functions[function.0].bytes[start..start + bytes.len()].copy_from_slice(bytes);
    }

    /// Returns and clears the record of config writes that reached a
    /// function, oldest first.
    pub fn take_write_log(&self) -> Vec<ConfigWrite> {
        core::mem::take(&mut self.lock().write_log)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("a test panicked while holding the synthetic config space")
    }
}

impl State {
    /// Returns the bus number that config accesses to `bus` carry: 0 for
    /// the root, otherwise its parent bridge's secondary bus number. Whether
    /// the bridges on the way route that number is for `resolve` to check.
    fn bus_number(&self, bus: usize) -> u8 {
        match self.buses[bus].parent_bridge {
            Some(bridge) => self.functions[bridge].bus_numbers().0,
            None => 0,
        }
    }

    /// Routes a config access the way bridges do: from the root bus, follow
    /// the bridge whose secondary..=subordinate range contains the target bus
    /// until the current bus number matches it.
    fn resolve(&self, address: PciAddress) -> Option<usize> {
        if address.segment() != 0 {
            return None;
        }
        let mut bus = 0;
        let mut bus_number = 0u8;
        // Each step moves to a secondary bus, one level down a finite tree,
        // so the loop ends however the bus numbers are programmed.
        loop {
            let functions = &self.buses[bus].functions;
            if address.bus() == bus_number {
                return functions.iter().copied().find(|&index| {
                    let function = &self.functions[index];
                    function.device == address.device() && function.function == address.function()
                });
            }
            let next = functions.iter().find_map(|&index| {
                let function = &self.functions[index];
                let (secondary, subordinate) = function.bus_numbers();
                let routes = (secondary..=subordinate).contains(&address.bus());
                function
                    .secondary_bus
                    .filter(|_| routes)
                    .map(|child| (child, secondary))
            })?;
            (bus, bus_number) = next;
        }
    }
}

impl ConfigRegionAccess for SyntheticConfigSpace {
    unsafe fn read(&self, address: PciAddress, offset: u16) -> u32 {
        let state = self.lock();
        match state.resolve(address) {
            Some(index) if offset < CONFIG_SPACE_BYTES => state.functions[index].dword(offset),
            _ => u32::MAX,
        }
    }

    unsafe fn write(&self, address: PciAddress, offset: u16, value: u32) {
        let mut state = self.lock();
        let Some(index) = state.resolve(address) else {
            return;
        };
        if offset >= CONFIG_SPACE_BYTES {
            return;
        }
        let offset = offset & !3;
        state.write_log.push(ConfigWrite {
            function: FunctionHandle(index),
            offset,
            value,
        });
        state.functions[index].write_masked(offset, value);
    }
}

impl SyntheticFunction {
    fn header_type(&self) -> u8 {
        self.bytes[usize::from(HEADER_TYPE_DWORD) + 2] & HEADER_TYPE_LAYOUT_MASK
    }

    fn is_bridge(&self) -> bool {
        self.header_type() == HEADER_TYPE_BRIDGE
    }
}

#[cfg(test)]
mod tests;
