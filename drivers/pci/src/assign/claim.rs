//! Step 1 of assignment in a scope: claiming firmware BARs and bridge
//! windows.

use alloc::vec::Vec;
use core::ops::Range;

use log::warn;
use pci_types::ConfigRegionAccess;

use super::{BridgePlan, Item, Scope, SpaceAssigner};
use crate::bridge::{read_window, write_window};
use crate::enumerate::BusNode;
use crate::region::Region;
use crate::{Bdf, Function};

impl<A: ConfigRegionAccess> SpaceAssigner<'_, A> {
    /// Step 1 for bus 0 and buses behind kept windows: reserves the firmware
    /// BARs and bridge windows the scope accepts. Returns what still needs an
    /// address, and a plan per bridge.
    pub(super) fn claim(
        &mut self,
        bus: &BusNode,
        region: &mut Region,
        scope: &Scope,
    ) -> (Vec<Item>, Vec<Option<BridgePlan>>) {
        let mut items = Vec::new();
        for (index, node) in bus.functions.iter().enumerate() {
            for (slot, bar) in self.bars_in_space(&node.function) {
                if bar.address() == 0 {
                    items.push(self.bar_item(index, slot, &bar));
                    continue;
                }
                let range = bar.address()..bar.address().saturating_add(bar.size());
                if !(scope.claims(&range) && region.reserve(range.clone())) {
                    warn!(
                        "pci: {} BAR{slot} at {:#x}..{:#x} lies outside its bridge's window or overlaps \
                         another assignment; reassigning it",
                        Bdf(node.function.address),
                        range.start,
                        range.end
                    );
                    items.push(self.bar_item(index, slot, &bar));
                }
            }
        }

        let mut plans = Vec::new();
        for (index, node) in bus.functions.iter().enumerate() {
            let plan = node.secondary_bus.as_ref().map(|secondary_bus| {
                self.claim_bridge_windows(&node.function, region, scope)
                    .unwrap_or_else(|| {
                        let (size, alignment) = self.window_need(secondary_bus);
                        if size > 0 {
                            items.push(self.window_item(index, size, alignment));
                        }
                        BridgePlan::Reprogrammed { window: None }
                    })
            });
            plans.push(plan);
        }
        (items, plans)
    }

    /// Keeps a bridge's open firmware windows if the scope accepts them,
    /// reserving them in `region`. Returns `None` if the bridge needs a new
    /// window instead.
    ///
    /// NOTE: a bridge whose firmware opened only the prefetchable window is
    /// reprogrammed, and the BARs behind it move below 4 GiB, because BARs
    /// placed anew need the non-prefetchable window.
    fn claim_bridge_windows(
        &self,
        bridge: &Function,
        region: &mut Region,
        scope: &Scope,
    ) -> Option<BridgePlan> {
        let allocation_window = read_window(self.access, bridge.address, self.allocation_kind())?;
        let windows: Vec<Range<u64>> = self
            .window_kinds()
            .iter()
            .filter_map(|&kind| read_window(self.access, bridge.address, kind))
            .collect();

        let mut trial = region.clone();
        let accepted = windows
            .iter()
            .all(|window| scope.claims(window) && trial.reserve(window.clone()));
        if !accepted {
            warn!(
                "pci: {} window of bridge {} lies outside its parent's window or overlaps another \
                 assignment; reprogramming it",
                self.space,
                Bdf(bridge.address)
            );
            return None;
        }
        *region = trial;
        Some(BridgePlan::Kept {
            allocation_window,
            windows,
        })
    }

    /// Bridges the walk did not descend into (depth or bus-number limits)
    /// may still forward a window. Bus 0 and kept scopes reserve their open
    /// windows; in a reprogrammed scope they would overlap new
    /// assignments, so they are closed. A window in its reset state (base
    /// and limit zero) forwards the first granule of address space once
    /// decoding is enabled, so it is closed in every scope.
    pub(super) fn close_windows_of_skipped_bridges(
        &self,
        bus: &BusNode,
        region: &mut Region,
        scope: &Scope,
    ) {
        let skipped = bus
            .functions
            .iter()
            .filter(|node| node.function.is_bridge() && node.secondary_bus.is_none());
        for node in skipped {
            for &kind in self.window_kinds() {
                let window = read_window(self.access, node.function.address, kind);
                let keep = window.is_some_and(|window| {
                    !matches!(scope, Scope::Reprogrammed)
                        && scope.claims(&window)
                        && region.reserve(window)
                });
                if !keep {
                    write_window(self.access, node.function.address, kind, None);
                }
            }
        }
    }

    /// Logs each firmware BAR address a reprogrammed scope discards.
    pub(super) fn warn_firmware_bars_dropped(&self, bus: &BusNode) {
        for node in &bus.functions {
            for (slot, bar) in self
                .bars_in_space(&node.function)
                .filter(|(_, bar)| bar.address() != 0)
            {
                warn!(
                    "pci: {} BAR{slot} at {:#x} sits behind a bridge whose {} window is being reprogrammed; \
                     reassigning it",
                    Bdf(node.function.address),
                    bar.address(),
                    self.space
                );
            }
        }
    }
}
