//! The PVH start info (Xen's `arch-x86/hvm/start_info.h`) and the
//! hand-over from the trampoline to the kernel.

use crate::{BootInfo, MemoryRegion, MAX_COMMAND_LINE_BYTES, MAX_MEMORY_REGIONS};

/// `hvm_start_info.magic` as Xen's `start_info.h` defines it.
const HVM_START_MAGIC: u32 = 0x336e_c578;

/// Xen's `struct hvm_start_info` (version 1 layout).
#[repr(C)]
struct HvmStartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

/// Xen's `struct hvm_memmap_table_entry`.
#[repr(C)]
struct HvmMemmapEntry {
    addr: u64,
    size: u64,
    kind: u32,
    reserved: u32,
}

extern "C" {
    static boot_entry_tsc: u64;
    static boot_pml4: u8;
    static __kernel_end: u8;
}

extern "Rust" {
    /// The kernel's entry point, defined by the kernel binary.
    fn kernel_main(info: &'static BootInfo) -> !;
}

static mut BOOT_INFO: BootInfo = BootInfo {
    regions: [MemoryRegion { start: 0, length: 0, kind: 0 }; MAX_MEMORY_REGIONS],
    region_count: 0,
    command_line: [0; MAX_COMMAND_LINE_BYTES],
    command_line_len: 0,
    rsdp_address: None,
    entry_tsc: 0,
    kernel_end: 0,
    page_table_root: 0,
};

/// Parses the PVH start info and enters the kernel. Called once by the
/// trampoline in long mode, with the first 4 GiB identity-mapped.
#[no_mangle]
extern "C" fn boot_rust_entry(start_info_address: u32) -> ! {
    // SAFETY: the trampoline calls this function once, before anything else
    // runs, so nothing else holds a reference to BOOT_INFO.
    let info = unsafe { &mut *core::ptr::addr_of_mut!(BOOT_INFO) };

    // SAFETY: the three symbols are defined by the trampoline and the linker
    // script; only their values or addresses are read.
    unsafe {
        info.entry_tsc = core::ptr::read_volatile(core::ptr::addr_of!(boot_entry_tsc));
        info.page_table_root = core::ptr::addr_of!(boot_pml4) as u64;
        info.kernel_end = core::ptr::addr_of!(__kernel_end) as u64;
    }

    // SAFETY: the PVH boot protocol passes the physical address of a valid
    // hvm_start_info in ebx, and physical memory below 4 GiB is identity-mapped.
    unsafe { read_start_info(info, start_info_address as u64) };

    // SAFETY: BOOT_INFO is never written again after this point.
    unsafe { kernel_main(&*core::ptr::addr_of!(BOOT_INFO)) }
}

/// Copies the memory map, command line and RSDP address out of the start info.
///
/// # Safety
/// `address` must be the identity-mapped physical address of a valid
/// `hvm_start_info`, with its memory map and command line mapped as well.
unsafe fn read_start_info(info: &mut BootInfo, address: u64) {
    // SAFETY: guaranteed by the caller.
    let start = unsafe { &*(address as *const HvmStartInfo) };
    if start.magic != HVM_START_MAGIC {
        return;
    }

    if start.rsdp_paddr != 0 {
        info.rsdp_address = Some(start.rsdp_paddr);
    }

    if start.cmdline_paddr != 0 {
        let mut length = 0;
        // SAFETY: the command line is a NUL-terminated string in mapped memory;
        // the loop stops at the NUL or at the buffer size.
        while length < MAX_COMMAND_LINE_BYTES {
            let byte = unsafe { *((start.cmdline_paddr + length as u64) as *const u8) };
            if byte == 0 {
                break;
            }
            info.command_line[length] = byte;
            length += 1;
        }
        info.command_line_len = length;
    }

    // The memory map exists from version 1 of the structure on.
    if start.version >= 1 && start.memmap_paddr != 0 {
        let count = (start.memmap_entries as usize).min(MAX_MEMORY_REGIONS);
        for index in 0..count {
            // SAFETY: the loader placed memmap_entries entries at memmap_paddr.
            let entry = unsafe {
                &*((start.memmap_paddr as *const HvmMemmapEntry).add(index))
            };
            info.regions[index] = MemoryRegion {
                start: entry.addr,
                length: entry.size,
                kind: entry.kind,
            };
        }
        info.region_count = count;
    }
}
