//! Steps 2 and 3 of assignment in a scope: sizing the windows of
//! reprogrammed bridges and placing BARs and windows.

use alloc::vec::Vec;
use core::cmp::Reverse;
use core::ops::Range;

use log::debug;
use pci_types::ConfigRegionAccess;

use super::{BridgePlan, Item, SpaceAssigner};
use crate::bar::{pauses_decoding, write_bar_address};
use crate::bridge::{write_window, WindowKind};
use crate::enumerate::BusNode;
use crate::region::{align_up, Region};
use crate::{AddressSpace, Bar, Bdf, Function, PciError};

impl<A: ConfigRegionAccess> SpaceAssigner<'_, A> {
    /// Step 2 behind a reprogrammed bridge: every BAR and every bridge
    /// window needs an address.
    pub(super) fn reprogram_items(&self, bus: &BusNode) -> (Vec<Item>, Vec<Option<BridgePlan>>) {
        let mut items = Vec::new();
        let mut plans = Vec::new();
        for (index, node) in bus.functions.iter().enumerate() {
            for (slot, bar) in self.bars_in_space(&node.function) {
                items.push(self.bar_item(index, slot, &bar));
            }
            let plan = node.secondary_bus.as_ref().map(|secondary_bus| {
                let (size, alignment) = self.window_need(secondary_bus);
                if size > 0 {
                    items.push(self.window_item(index, size, alignment));
                }
                BridgePlan::Reprogrammed { window: None }
            });
            plans.push(plan);
        }
        (items, plans)
    }

    /// Returns the size and alignment of the window a reprogrammed bridge
    /// needs for the bus behind it: `(0, granularity)` if nothing there
    /// decodes this space.
    ///
    /// Places the items in a scratch region from 0 in the order
    /// `assign_bus` uses, so the real placement, from a base aligned to the
    /// returned alignment, fits the returned size.
    pub(super) fn window_need(&self, bus: &BusNode) -> (u64, u64) {
        let granularity = self.window_granularity();
        let (mut items, _) = self.reprogram_items(bus);
        items.sort_by_key(|item| Reverse(item.alignment));

        let mut scratch = Region::new(0..u64::MAX);
        let mut end = 0u64;
        let mut alignment = granularity;
        for item in &items {
            let Some(start) = scratch.allocate(item.size, item.alignment, u64::MAX) else {
                // Only an impossible total lands here; an oversized request
                // makes the placement fail with a window-exhausted error.
                return (!(granularity - 1), granularity);
            };
            end = end.max(start + item.size);
            alignment = alignment.max(item.alignment);
        }
        let size = align_up(end, granularity).unwrap_or(!(granularity - 1));
        (size, alignment)
    }

    /// Step 3: gives `item` an address in `region` and programs it.
    pub(super) fn place(
        &mut self,
        bus: &mut BusNode,
        region: &mut Region,
        item: &Item,
        plans: &mut [Option<BridgePlan>],
    ) -> Result<(), PciError> {
        let function = &mut bus.functions[item.function].function;
        let start = region.allocate(item.size, item.alignment, item.end_limit);
        match (item.slot, start) {
            (Some(slot), Some(start)) => {
                let slot_index = usize::from(slot);
                let bar = function.bars[slot_index].map(|bar| with_address(bar, start));
                if let Some(bar) = bar {
                    let pause_decoding = pauses_decoding(function.class, function.subclass);
                    write_bar_address(self.access, function.address, slot, &bar, pause_decoding);
                    function.bars[slot_index] = Some(bar);
                    self.summary.bars_assigned += 1;
                    debug!(
                        "pci: {} BAR{slot} {} {start:#x}/{:#x} assigned",
                        Bdf(function.address),
                        self.space,
                        item.size
                    );
                }
                Ok(())
            }
            (None, Some(start)) => {
                plans[item.function] = Some(BridgePlan::Reprogrammed {
                    window: Some(start..start + item.size),
                });
                Ok(())
            }
            (Some(slot), None) => Err(PciError::BarWindowExhausted {
                address: function.address,
                slot,
                space: self.space,
                size_bytes: item.size,
                window: region.window(),
            }),
            (None, None) => Err(PciError::BridgeWindowExhausted {
                address: function.address,
                space: self.space,
                size_bytes: item.size,
                alignment_bytes: item.alignment,
                window: region.window(),
            }),
        }
    }

    /// Writes a reprogrammed bridge's window for this space; for memory,
    /// also closes the prefetchable window, which this crate does not use.
    pub(super) fn program_window(&mut self, bridge: &Function, window: Option<Range<u64>>) {
        if let Some(window) = &window {
            self.summary.windows_programmed += 1;
            debug!(
                "pci: bridge {} {} window {:#x}..{:#x}",
                Bdf(bridge.address),
                self.space,
                window.start,
                window.end
            );
        }
        write_window(self.access, bridge.address, self.allocation_kind(), window);
        if self.space == AddressSpace::Memory {
            write_window(self.access, bridge.address, WindowKind::Prefetchable, None);
        }
    }
}

fn with_address(bar: Bar, address: u64) -> Bar {
    match bar {
        Bar::Memory {
            size,
            prefetchable,
            is_64bit,
            ..
        } => Bar::Memory {
            address,
            size,
            prefetchable,
            is_64bit,
        },
        Bar::Io { size, .. } => Bar::Io {
            port: address as u32,
            size,
        },
    }
}
