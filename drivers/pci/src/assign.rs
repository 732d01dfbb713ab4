//! BAR and bridge-window assignment, then enabling decoding and bus
//! mastering (PCI Local Bus Specification 3.0, section 6.2.5.1 "Address
//! Maps" and 6.2.2 "Device Control"; PCI-to-PCI Bridge Architecture
//! Specification 1.2, sections 3.2.5.6 to 3.2.5.10).
//!
//! Memory and I/O space are assigned one after the other, each top-down
//! over the bus tree. Every bus is a scope with a window to place BARs in:
//! the allocator's window for bus 0, a bridge's window for the bus behind
//! it. In each scope:
//!
//! 1. Firmware assignments are claimed. A BAR with a non-zero address keeps
//!    it if the address lies in the scope and overlaps nothing claimed
//!    before. On bus 0 any address is in scope; behind a bridge, addresses
//!    inside its open windows are. A bridge with an open window keeps it on
//!    the same terms. Anything else is reassigned, with a warning.
//! 2. Bridges whose window is closed (as firmware such as qboot leaves it)
//!    or was rejected get a window sized for everything behind them. It is
//!    aligned to the window granularity (1 MiB memory, 4 KiB I/O), and every
//!    BAR and window behind such a bridge is placed anew.
//! 3. BARs left at zero and the new bridge windows are placed first-fit,
//!    largest alignment first, each aligned to its size.
//!
//! Memory windows are programmed through the 32-bit memory base and limit
//! registers, so everything behind a reprogrammed bridge lands below 4 GiB;
//! the prefetchable window of such a bridge is closed.

use alloc::vec::Vec;
use core::cmp::Reverse;
use core::ops::Range;

use pci_types::{CommandRegister, ConfigRegionAccess};

use crate::bridge::{read_window, WindowKind, IO_WINDOW_GRANULARITY, MEMORY_WINDOW_GRANULARITY};
use crate::enumerate::BusNode;
use crate::header::{read_command, write_command};
use crate::region::Region;
use crate::{AddressSpace, Bar, Function, PciError};

/// End of the range a 32-bit BAR or a bridge memory window can address.
const ADDRESS_LIMIT_32BIT: u64 = 1 << 32;
/// End of x86 I/O port space; I/O BARs and windows are placed below it.
const IO_PORT_LIMIT: u64 = 1 << 16;

/// Hands out bus addresses for BARs the firmware left at zero, from one
/// memory window and one I/O window (on x86, usually the host bridge's PCI
/// hole below 4 GiB and a range of ports).
///
/// Enumeration reserves in this allocator every address it keeps or
/// assigns, so passing the same allocator to [`enumerate`](crate::enumerate)
/// for a second segment keeps the two segments apart. Enumerating the same
/// segment twice needs a fresh allocator: the second call would find its
/// own earlier assignments reserved and move every BAR.
#[derive(Clone, Debug)]
pub struct BarAllocator {
    memory: Region,
    io: Region,
}

/// Counts for the enumeration log line.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct AssignmentSummary {
    pub(crate) bars_assigned: usize,
    pub(crate) windows_programmed: usize,
}

impl BarAllocator {
    /// Creates an allocator for `memory_window` and `io_window`.
    ///
    /// Both may be empty, in which case every BAR of that space must have
    /// been assigned by the firmware. Ports at or above 0x10000 are never
    /// used: x86 I/O space ends there.
    pub fn new(memory_window: Range<u64>, io_window: Range<u32>) -> Self {
        BarAllocator {
            memory: Region::new(memory_window),
            io: Region::new(u64::from(io_window.start)..u64::from(io_window.end)),
        }
    }

    /// Returns the memory window BARs are placed in.
    pub fn memory_window(&self) -> Range<u64> {
        self.memory.window()
    }

    /// Returns the I/O window BARs are placed in.
    pub fn io_window(&self) -> Range<u32> {
        let window = self.io.window();
        window.start as u32..window.end as u32
    }

    /// Assigns both address spaces of the tree under `root`, then enables
    /// decoding and bus mastering.
    pub(crate) fn assign(
        &mut self,
        access: &impl ConfigRegionAccess,
        root: &mut BusNode,
    ) -> Result<AssignmentSummary, PciError> {
        let mut summary = AssignmentSummary::default();
        for (space, region) in [
            (AddressSpace::Memory, &mut self.memory),
            (AddressSpace::Io, &mut self.io),
        ] {
            let mut assigner = SpaceAssigner {
                access,
                space,
                summary: &mut summary,
            };
            assigner.assign_bus(root, region, &Scope::Root)?;
        }
        enable_decoding(access, root);
        Ok(summary)
    }
}

/// The firmware addresses that the BARs of a bus may keep.
enum Scope {
    /// Bus 0: any address the firmware chose.
    Root,
    /// Behind a bridge that keeps its firmware windows: addresses inside them.
    Kept(Vec<Range<u64>>),
    /// Behind a bridge whose window is being programmed: none.
    Reprogrammed,
}

impl Scope {
    fn claims(&self, range: &Range<u64>) -> bool {
        match self {
            Scope::Root => true,
            Scope::Kept(windows) => windows
                .iter()
                .any(|window| window.start <= range.start && range.end <= window.end),
            Scope::Reprogrammed => false,
        }
    }
}

/// The treatment of a bridge's window in the space being assigned.
enum BridgePlan {
    /// Keep the firmware window; place new BARs behind it in
    /// `allocation_window`, keep those inside `windows`.
    Kept {
        allocation_window: Range<u64>,
        windows: Vec<Range<u64>>,
    },
    /// Program the window (closed for `None`) and place everything behind it.
    Reprogrammed { window: Option<Range<u64>> },
}

/// A BAR or a bridge window waiting for an address.
struct Item {
    /// Index into the bus's functions.
    function: usize,
    /// BAR slot, or `None` for the function's bridge window.
    slot: Option<u8>,
    size: u64,
    alignment: u64,
    end_limit: u64,
}

struct SpaceAssigner<'a, A> {
    access: &'a A,
    space: AddressSpace,
    summary: &'a mut AssignmentSummary,
}

impl<A: ConfigRegionAccess> SpaceAssigner<'_, A> {
    fn assign_bus(
        &mut self,
        bus: &mut BusNode,
        region: &mut Region,
        scope: &Scope,
    ) -> Result<(), PciError> {
        self.close_windows_of_skipped_bridges(bus, region, scope);
        let (mut items, mut plans) = match scope {
            Scope::Reprogrammed => {
                self.warn_firmware_bars_dropped(bus);
                self.reprogram_items(bus)
            }
            Scope::Root | Scope::Kept(_) => self.claim(bus, region, scope),
        };

        items.sort_by_key(|item| Reverse(item.alignment));
        for item in &items {
            self.place(bus, region, item, &mut plans)?;
        }

        for (node, plan) in bus.functions.iter_mut().zip(plans) {
            let (Some(secondary_bus), Some(plan)) = (node.secondary_bus.as_mut(), plan) else {
                continue;
            };
            match plan {
                BridgePlan::Kept {
                    allocation_window,
                    windows,
                } => {
                    let mut child_region = Region::new(allocation_window);
                    self.assign_bus(secondary_bus, &mut child_region, &Scope::Kept(windows))?;
                }
                BridgePlan::Reprogrammed { window } => {
                    self.program_window(&node.function, window.clone());
                    let mut child_region = Region::new(window.unwrap_or(0..0));
                    self.assign_bus(secondary_bus, &mut child_region, &Scope::Reprogrammed)?;
                }
            }
        }
        Ok(())
    }

    fn bars_in_space<'f>(&self, function: &'f Function) -> impl Iterator<Item = (u8, Bar)> + 'f {
        let space = self.space;
        function.bars().filter(move |(_, bar)| bar.space() == space)
    }

    fn bar_item(&self, function: usize, slot: u8, bar: &Bar) -> Item {
        let end_limit = match *bar {
            Bar::Memory { is_64bit: true, .. } => u64::MAX,
            Bar::Memory {
                is_64bit: false, ..
            } => ADDRESS_LIMIT_32BIT,
            Bar::Io { .. } => IO_PORT_LIMIT,
        };
        Item {
            function,
            slot: Some(slot),
            size: bar.size(),
            alignment: bar.size(),
            end_limit,
        }
    }

    fn window_item(&self, function: usize, size: u64, alignment: u64) -> Item {
        let end_limit = match self.space {
            AddressSpace::Memory => ADDRESS_LIMIT_32BIT,
            AddressSpace::Io => IO_PORT_LIMIT,
        };
        Item {
            function,
            slot: None,
            size,
            alignment,
            end_limit,
        }
    }

    /// Returns the window that new BARs behind a bridge are placed in.
    fn allocation_kind(&self) -> WindowKind {
        match self.space {
            AddressSpace::Memory => WindowKind::Memory,
            AddressSpace::Io => WindowKind::Io,
        }
    }

    /// Returns every window of a bridge that forwards this space.
    fn window_kinds(&self) -> &'static [WindowKind] {
        match self.space {
            AddressSpace::Memory => &[WindowKind::Memory, WindowKind::Prefetchable],
            AddressSpace::Io => &[WindowKind::Io],
        }
    }

    fn window_granularity(&self) -> u64 {
        match self.space {
            AddressSpace::Memory => MEMORY_WINDOW_GRANULARITY,
            AddressSpace::Io => IO_WINDOW_GRANULARITY,
        }
    }
}

/// Sets memory decoding (for a memory BAR or an open memory window), I/O
/// decoding (for an I/O BAR or an open I/O window) and bus mastering in
/// every bridge and every function with a BAR. Other command bits are kept.
fn enable_decoding(access: &impl ConfigRegionAccess, bus: &BusNode) {
    for node in &bus.functions {
        let function = &node.function;
        let mut enable = CommandRegister::empty();
        for (_, bar) in function.bars() {
            enable |= match bar.space() {
                AddressSpace::Memory => CommandRegister::MEMORY_ENABLE,
                AddressSpace::Io => CommandRegister::IO_ENABLE,
            };
        }
        if function.is_bridge() {
            let open = |kind| read_window(access, function.address, kind).is_some();
            if open(WindowKind::Memory) || open(WindowKind::Prefetchable) {
                enable |= CommandRegister::MEMORY_ENABLE;
            }
            if open(WindowKind::Io) {
                enable |= CommandRegister::IO_ENABLE;
            }
        }
        if function.is_bridge() || !enable.is_empty() {
            enable |= CommandRegister::BUS_MASTER_ENABLE;
            let command = read_command(access, function.address);
            if !command.contains(enable) {
                write_command(access, function.address, command | enable);
            }
        }
        if let Some(secondary_bus) = &node.secondary_bus {
            enable_decoding(access, secondary_bus);
        }
    }
}

mod claim;
mod place;

#[cfg(test)]
mod tests;
