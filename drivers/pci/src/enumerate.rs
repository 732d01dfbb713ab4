//! The bus walk. It finds every function reachable from bus 0, numbers the
//! buses behind PCI-to-PCI bridges that the firmware left unnumbered, and
//! hands the tree to the BAR allocator. Sources: PCI Local Bus Specification
//! 3.0, section 3.2.2.3 "Configuration Transactions"; PCI-to-PCI Bridge
//! Architecture Specification 1.2, section 3.2.5.2 "Bus Number Registers".
//!
//! Devices 0 to 31 of each bus are probed through function 0. A device is
//! absent when function 0 returns vendor ID 0xffff. Functions 1 to 7 are
//! probed only when function 0's header type has bit 7 (multi-function) set.
//!
//! Bus numbering is depth-first. On each bus, bridges whose firmware numbers
//! are consistent (secondary above the current bus, inside the range the
//! parent forwards, not claimed by another bridge) keep them and claim their
//! range first. Each remaining bridge then gets the lowest free number as its
//! secondary bus, forwards everything up to the next claimed number while its
//! subtree is walked, and finally gets the highest number that subtree used
//! as its subordinate bus. QEMU's qboot firmware leaves every bridge at zero,
//! so under it all numbers come from here.

use alloc::vec::Vec;

use log::{info, warn};
use pci_types::{ConfigRegionAccess, PciAddress};

use crate::assign::BarAllocator;
use crate::bar::{pauses_decoding, probe_bars};
use crate::bridge::{read_bus_numbers, write_bus_numbers};
use crate::capability::read_capabilities;
use crate::header::{
    read_config_u8, read_dword, CLASS_REVISION, HEADER_TYPE_BRIDGE, HEADER_TYPE_CARDBUS,
    HEADER_TYPE_DWORD, HEADER_TYPE_LAYOUT_MASK, HEADER_TYPE_MULTI_FUNCTION, ID, VENDOR_ID_ABSENT,
};
use crate::{Bdf, BridgeBuses, Function, PciError};

/// Maximum bridge nesting the walk follows. Real topologies are a few levels
/// deep, and the bound caps the recursion on a malformed topology.
pub(crate) const MAX_BRIDGE_DEPTH: u32 = 32;

const DEVICES_PER_BUS: u8 = 32;
const FUNCTIONS_PER_DEVICE: u8 = 8;
/// Offset of the header type byte.
const HEADER_TYPE: u16 = HEADER_TYPE_DWORD + 2;

/// One bus of the enumerated tree.
#[derive(Debug)]
pub(crate) struct BusNode {
    pub(crate) functions: Vec<FunctionNode>,
}

/// A function and, for a bridge the walk descended into, the bus behind it.
#[derive(Debug)]
pub(crate) struct FunctionNode {
    pub(crate) function: Function,
    pub(crate) secondary_bus: Option<BusNode>,
}

/// Enumerates segment `segment` from bus 0: numbers unnumbered buses,
/// sizes every BAR, assigns the BARs the firmware left at zero, programs
/// bridge windows and enables decoding and bus mastering (see
/// [`BarAllocator`]). Returns the functions sorted by address.
///
/// Malformed topology (bus numbers exhausted, bridges nested deeper than
/// 32, broken capability lists) is logged and skipped.
///
/// # Errors
///
/// [`PciError::BarWindowExhausted`] or [`PciError::BridgeWindowExhausted`]
/// when a window of `allocator` (or of a firmware-programmed bridge) has no
/// room for a BAR that needs an address. Bus numbers written before the
/// error stay in place.
pub fn enumerate(
    access: &impl ConfigRegionAccess,
    segment: u16,
    allocator: &mut BarAllocator,
) -> Result<Vec<Function>, PciError> {
    let mut walker = Walker {
        access,
        segment,
        claimed: BusSet::default(),
        buses_walked: 0,
    };
    walker.claimed.insert(0);
    let mut root = walker.scan_bus(0, u8::MAX, 0).0;

    let summary = allocator.assign(access, &mut root)?;

    let mut functions = Vec::new();
    flatten(root, &mut functions);
    functions.sort_by_key(|function| function.address);
    info!(
        "pci: segment {segment:04x}: {} functions on {} buses; assigned {} BARs and {} bridge windows",
        functions.len(),
        walker.buses_walked,
        summary.bars_assigned,
        summary.windows_programmed
    );
    Ok(functions)
}

fn flatten(bus: BusNode, functions: &mut Vec<Function>) {
    for node in bus.functions {
        functions.push(node.function);
        if let Some(secondary) = node.secondary_bus {
            flatten(secondary, functions);
        }
    }
}

/// A set of bus numbers.
#[derive(Clone, Copy, Debug, Default)]
struct BusSet([u64; 4]);

impl BusSet {
    fn contains(&self, bus: u8) -> bool {
        self.0[usize::from(bus / 64)] & 1 << (bus % 64) != 0
    }

    fn insert(&mut self, bus: u8) {
        self.0[usize::from(bus / 64)] |= 1 << (bus % 64);
    }

    fn insert_range(&mut self, start: u8, end: u8) {
        (start..=end).for_each(|bus| self.insert(bus));
    }

    fn remove_range(&mut self, start: u8, end: u8) {
        (start..=end).for_each(|bus| self.0[usize::from(bus / 64)] &= !(1 << (bus % 64)));
    }

    /// Returns the lowest number in `start..=end` not in the set.
    fn first_free(&self, start: u8, end: u8) -> Option<u8> {
        (start..=end).find(|&bus| !self.contains(bus))
    }

    /// Returns whether any number in `start..=end` is in the set.
    fn any_in(&self, start: u8, end: u8) -> bool {
        (start..=end).any(|bus| self.contains(bus))
    }
}

struct Walker<'a, A> {
    access: &'a A,
    segment: u16,
    /// Bus numbers a bridge forwards, or that a firmware-numbered bridge on
    /// the bus being walked will forward.
    claimed: BusSet,
    buses_walked: u32,
}

impl<A: ConfigRegionAccess> Walker<'_, A> {
    /// Walks bus `number`, whose upstream bridge forwards buses up to
    /// `limit`. Returns the bus and the highest bus number its subtree uses.
    fn scan_bus(&mut self, number: u8, limit: u8, depth: u32) -> (BusNode, u8) {
        self.buses_walked += 1;
        let mut functions: Vec<FunctionNode> = self
            .present_functions(number)
            .into_iter()
            .map(|function| FunctionNode {
                function,
                secondary_bus: None,
            })
            .collect();

        // Firmware-numbered bridges claim their ranges before any bridge on
        // this bus is numbered, so new numbers never collide with them.
        let mut firmware_numbered = Vec::new();
        for node in functions.iter().filter(|node| node.function.is_bridge()) {
            let buses = read_bus_numbers(self.access, node.function.address);
            let valid = buses.secondary > number
                && buses.secondary <= buses.subordinate
                && buses.subordinate <= limit
                && !self.claimed.any_in(buses.secondary, buses.subordinate);
            if valid {
                self.claimed
                    .insert_range(buses.secondary, buses.subordinate);
            }
            firmware_numbered.push(valid);
        }

        let mut highest = number;
        let bridges = functions
            .iter_mut()
            .filter(|node| node.function.is_bridge());
        for (node, keep_firmware_numbers) in bridges.zip(firmware_numbered) {
            let subtree_highest = if keep_firmware_numbers {
                self.descend_numbered(node, number, depth)
            } else {
                self.descend_unnumbered(node, number, limit, depth)
            };
            highest = highest.max(subtree_highest);
        }
        (BusNode { functions }, highest)
    }

    /// Reads every present function of bus `number`.
    fn present_functions(&self, number: u8) -> Vec<Function> {
        let mut functions = Vec::new();
        for device in 0..DEVICES_PER_BUS {
            let Some(first) = self.read_function(PciAddress::new(self.segment, number, device, 0))
            else {
                continue;
            };
            let header_type = read_config_u8(self.access, first.address, HEADER_TYPE);
            functions.push(first);
            if header_type & HEADER_TYPE_MULTI_FUNCTION == 0 {
                continue;
            }
            for function in 1..FUNCTIONS_PER_DEVICE {
                let address = PciAddress::new(self.segment, number, device, function);
                functions.extend(self.read_function(address));
            }
        }
        functions
    }

    /// Reads the identity, BARs and capabilities of the function at
    /// `address`, or returns `None` if it is absent.
    fn read_function(&self, address: PciAddress) -> Option<Function> {
        let id = read_dword(self.access, address, ID);
        if id as u16 == VENDOR_ID_ABSENT {
            return None;
        }
        let [revision, prog_if, subclass, class] =
            read_dword(self.access, address, CLASS_REVISION).to_le_bytes();
        let header_type =
            read_config_u8(self.access, address, HEADER_TYPE) & HEADER_TYPE_LAYOUT_MASK;
        // The CardBus header keeps its capabilities pointer elsewhere
        // (0x14); CardBus does not occur on the machines this crate targets.
        let capabilities = match header_type {
            HEADER_TYPE_CARDBUS => Vec::new(),
            _ => read_capabilities(self.access, address),
        };
        let bridge =
            (header_type == HEADER_TYPE_BRIDGE).then(|| read_bus_numbers(self.access, address));
        Some(Function {
            address,
            vendor_id: id as u16,
            device_id: (id >> 16) as u16,
            revision,
            class,
            subclass,
            prog_if,
            header_type,
            bars: probe_bars(
                self.access,
                address,
                header_type,
                pauses_decoding(class, subclass),
            ),
            capabilities,
            bridge,
        })
    }

    /// Walks the subtree of a bridge that keeps its firmware bus numbers
    /// (claimed by the caller). Returns its subordinate bus number.
    fn descend_numbered(&mut self, node: &mut FunctionNode, number: u8, depth: u32) -> u8 {
        let address = node.function.address;
        let mut buses = read_bus_numbers(self.access, address);
        if buses.primary != number {
            buses.primary = number;
            write_bus_numbers(self.access, address, buses);
        }
        node.function.bridge = Some(buses);
        if !self.depth_allows(address, depth) {
            return buses.subordinate;
        }

        // Bridges behind this one take their numbers from the range this
        // bridge forwards. Afterwards the whole range is claimed again, so
        // later siblings stay out of it.
        if buses.secondary < buses.subordinate {
            self.claimed
                .remove_range(buses.secondary + 1, buses.subordinate);
        }
        let (secondary_bus, _) = self.scan_bus(buses.secondary, buses.subordinate, depth + 1);
        self.claimed
            .insert_range(buses.secondary, buses.subordinate);
        node.secondary_bus = Some(secondary_bus);
        buses.subordinate
    }

    /// Numbers a bridge the firmware left unnumbered (or numbered
    /// inconsistently) and walks its subtree. Returns the highest bus number
    /// used, or `number` if the bridge was skipped.
    fn descend_unnumbered(
        &mut self,
        node: &mut FunctionNode,
        number: u8,
        limit: u8,
        depth: u32,
    ) -> u8 {
        let address = node.function.address;
        if !self.depth_allows(address, depth) {
            return number;
        }
        let free = if number < limit {
            self.claimed.first_free(number + 1, limit)
        } else {
            None
        };
        let Some(secondary) = free else {
            warn!(
                "pci: no bus number left below {limit:#04x} for bridge {}; skipping the buses behind it",
                Bdf(address)
            );
            return number;
        };

        // Forward every free number up to the next claimed one while the
        // subtree is walked; shrink to what it used afterwards.
        let window_end = (secondary..=limit)
            .take_while(|&bus| !self.claimed.contains(bus))
            .last()
            .unwrap_or(secondary);
        self.claimed.insert(secondary);
        let mut buses = BridgeBuses {
            primary: number,
            secondary,
            subordinate: window_end,
        };
        write_bus_numbers(self.access, address, buses);

        let (secondary_bus, highest) = self.scan_bus(secondary, window_end, depth + 1);
        self.claimed.insert_range(secondary, highest);
        buses.subordinate = highest;
        write_bus_numbers(self.access, address, buses);
        node.function.bridge = Some(buses);
        node.secondary_bus = Some(secondary_bus);
        highest
    }

    fn depth_allows(&self, address: PciAddress, depth: u32) -> bool {
        if depth < MAX_BRIDGE_DEPTH {
            return true;
        }
        warn!(
            "pci: bridge {} is nested deeper than {MAX_BRIDGE_DEPTH} bridges; skipping the buses behind it",
            Bdf(address)
        );
        false
    }
}

#[cfg(test)]
mod tests;
