//! Base address registers: decoding, sizing with the all-ones probe, and
//! writing assigned addresses (PCI Local Bus Specification 3.0, section
//! 6.2.5.1 "Address Maps").
//!
//! A BAR's low bits are read-only and give its type: bit 0 selects I/O
//! space, bits 2:1 of a memory BAR select 32-bit or 64-bit decoding, and bit
//! 3 marks it prefetchable. Above them, the address bits below the BAR's
//! size are hardwired to zero, so writing all-ones and reading back yields
//! the size as the lowest writable bit. A 64-bit BAR spans two slots, the
//! upper dword in the second.

use log::warn;
use pci_types::{CommandRegister, ConfigRegionAccess, PciAddress};

use crate::header::{
    read_command, read_dword, write_command, write_dword, BAR0, HEADER_TYPE_BRIDGE,
    HEADER_TYPE_CARDBUS, HEADER_TYPE_ENDPOINT,
};
use crate::{Bar, Bdf};

/// Bit 0: the BAR decodes I/O space.
const BAR_IO_SPACE: u32 = 1 << 0;
/// Bits 2:1 of a memory BAR: where it can be placed.
const BAR_MEMORY_TYPE_MASK: u32 = 0b11 << 1;
/// Memory type 00b: anywhere in 32-bit address space.
const BAR_MEMORY_TYPE_32BIT: u32 = 0b00 << 1;
/// Memory type 10b: anywhere in 64-bit address space, using two slots.
const BAR_MEMORY_TYPE_64BIT: u32 = 0b10 << 1;
/// Bit 3 of a memory BAR: reads have no side effects.
const BAR_PREFETCHABLE: u32 = 1 << 3;
const BAR_MEMORY_ADDRESS_MASK: u32 = !0xf;
const BAR_IO_ADDRESS_MASK: u32 = !0x3;

/// Decoding bits cleared while a BAR contains all-ones or a half-written
/// address, so the device never decodes a bogus range.
const DECODE_ENABLES: CommandRegister =
    CommandRegister::IO_ENABLE.union(CommandRegister::MEMORY_ENABLE);

/// Class code 06h, subclass 00h.
const CLASS_BRIDGE: u8 = 0x06;
const SUBCLASS_HOST_BRIDGE: u8 = 0x00;

/// Returns whether decoding may be paused while this function's BARs
/// contain all-ones or a half-written address: not on a host bridge, whose memory
/// decoding on some chipsets also carries the CPU's accesses to RAM. Linux
/// keeps memory decoding on for host bridges for that reason
/// (`quirk_mmio_always_on` in drivers/pci/quirks.c).
pub(crate) fn pauses_decoding(class: u8, subclass: u8) -> bool {
    !(class == CLASS_BRIDGE && subclass == SUBCLASS_HOST_BRIDGE)
}

/// Returns how many BAR slots a header layout has: 6 for an endpoint, 2 for
/// a PCI-to-PCI bridge, 1 for a CardBus bridge (its socket registers), and 0
/// for layouts this crate does not know.
pub(crate) fn bar_slot_count(header_type: u8) -> u8 {
    match header_type {
        HEADER_TYPE_ENDPOINT => 6,
        HEADER_TYPE_BRIDGE => 2,
        HEADER_TYPE_CARDBUS => 1,
        _ => 0,
    }
}

fn bar_offset(slot: u8) -> u16 {
    BAR0 + 4 * u16::from(slot)
}

/// Returns the lowest set bit of `mask`, which is the size of a BAR whose
/// all-ones readback (type bits cleared) is `mask`; 0 means unimplemented.
fn lowest_set_bit(mask: u64) -> u64 {
    mask & mask.wrapping_neg()
}

/// Reads every BAR of the function at `address` and sizes it.
///
/// With `pause_decoding` (see [`pauses_decoding`]), I/O and memory decoding
/// are disabled in the command register during the probe. The command
/// register and every BAR are restored afterwards. Malformed BARs (a
/// reserved memory type, a 64-bit BAR in the last slot) are logged and
/// reported as absent.
pub(crate) fn probe_bars(
    access: &impl ConfigRegionAccess,
    address: PciAddress,
    header_type: u8,
    pause_decoding: bool,
) -> [Option<Bar>; 6] {
    let mut bars = [None; 6];
    let slot_count = bar_slot_count(header_type);
    if slot_count == 0 {
        return bars;
    }

    let command = read_command(access, address);
    let paused = pause_decoding && command.intersects(DECODE_ENABLES);
    if paused {
        write_command(access, address, command.difference(DECODE_ENABLES));
    }

    let mut slot = 0;
    while slot < slot_count {
        let (bar, slots_used) = probe_slot(access, address, slot, slot_count);
        bars[usize::from(slot)] = bar;
        slot += slots_used;
    }

    if paused {
        write_command(access, address, command);
    }
    bars
}

/// Writes all-ones to the BAR register at `offset`, reads the result back
/// and restores the original. Returns `(original, readback)`.
fn probe_register(
    access: &impl ConfigRegionAccess,
    address: PciAddress,
    offset: u16,
) -> (u32, u32) {
    let original = read_dword(access, address, offset);
    write_dword(access, address, offset, u32::MAX);
    let readback = read_dword(access, address, offset);
    write_dword(access, address, offset, original);
    (original, readback)
}

/// Decodes and sizes the BAR in `slot`. Returns the BAR (or `None` if the
/// slot is unimplemented or malformed) and the number of slots it occupies.
fn probe_slot(
    access: &impl ConfigRegionAccess,
    address: PciAddress,
    slot: u8,
    slot_count: u8,
) -> (Option<Bar>, u8) {
    let offset = bar_offset(slot);
    let (original, readback) = probe_register(access, address, offset);

    if original & BAR_IO_SPACE != 0 {
        let size = lowest_set_bit(u64::from(readback & BAR_IO_ADDRESS_MASK));
        let bar = (size != 0).then_some(Bar::Io {
            port: original & BAR_IO_ADDRESS_MASK,
            size: size as u32,
        });
        return (bar, 1);
    }

    let prefetchable = original & BAR_PREFETCHABLE != 0;
    match original & BAR_MEMORY_TYPE_MASK {
        BAR_MEMORY_TYPE_32BIT => {
            let size = lowest_set_bit(u64::from(readback & BAR_MEMORY_ADDRESS_MASK));
            let bar = (size != 0).then_some(Bar::Memory {
                address: u64::from(original & BAR_MEMORY_ADDRESS_MASK),
                size,
                prefetchable,
                is_64bit: false,
            });
            (bar, 1)
        }
        BAR_MEMORY_TYPE_64BIT if slot + 1 < slot_count => {
            let (original_high, readback_high) = probe_register(access, address, offset + 4);
            let mask =
                u64::from(readback_high) << 32 | u64::from(readback & BAR_MEMORY_ADDRESS_MASK);
            let size = lowest_set_bit(mask);
            let bar = (size != 0).then_some(Bar::Memory {
                address: u64::from(original_high) << 32
                    | u64::from(original & BAR_MEMORY_ADDRESS_MASK),
                size,
                prefetchable,
                is_64bit: true,
            });
            (bar, 2)
        }
        BAR_MEMORY_TYPE_64BIT => {
            warn!(
                "pci: {} BAR{slot} is 64-bit but has no upper slot; ignoring it",
                Bdf(address)
            );
            (None, 1)
        }
        reserved => {
            warn!(
                "pci: {} BAR{slot} has reserved memory type {:#b}; ignoring it",
                Bdf(address),
                reserved >> 1
            );
            (None, 1)
        }
    }
}

/// Programs the address of `bar` into `slot` (both dwords of a 64-bit BAR).
///
/// With `pause_decoding`, clears I/O and memory decoding first, so the
/// device never decodes a half-written address, and leaves them cleared:
/// the caller enables decoding once every BAR of the function is placed.
pub(crate) fn write_bar_address(
    access: &impl ConfigRegionAccess,
    address: PciAddress,
    slot: u8,
    bar: &Bar,
    pause_decoding: bool,
) {
    let command = read_command(access, address);
    if pause_decoding && command.intersects(DECODE_ENABLES) {
        write_command(access, address, command.difference(DECODE_ENABLES));
    }

    let offset = bar_offset(slot);
    match *bar {
        Bar::Io { port, .. } => write_dword(access, address, offset, port),
        Bar::Memory {
            address: bar_address,
            is_64bit,
            ..
        } => {
            write_dword(access, address, offset, bar_address as u32);
            if is_64bit {
                write_dword(access, address, offset + 4, (bar_address >> 32) as u32);
            }
        }
    }
}

#[cfg(test)]
mod tests;
