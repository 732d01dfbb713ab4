//! CPU tables and exception handling: the GDT with a TSS (whose first
//! interrupt stack serves double faults, so a stack overflow is still
//! reported), and an IDT whose exception entries print the vector, error
//! code and RIP, then end QEMU with the panic status.
//!
//! Entry stubs are naked functions: each pushes its vector (and a zero where
//! the CPU pushes no error code) so that one common path, for exceptions and
//! interrupts alike, saves the caller-saved registers and calls Rust with a
//! pointer to the frame.
//!
//! Vectors 32 to 255 are device and timer interrupts: each has a handler
//! registered with [`set_handler`], or is counted and logged once as
//! unexpected. The kernel keeps interrupts disabled except while the CPU
//! halts in the idle loop, so handlers never preempt task code.

use core::arch::{global_asm, naked_asm};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use spin::Once;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::registers::control::Cr2;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::idt::InterruptDescriptorTable;
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

use crate::exit::{exit_with, ExitCode};
use crate::serial;

/// Interrupt stack table slot of the double-fault stack (IST1).
const DOUBLE_FAULT_IST_INDEX: u16 = 0;
const DOUBLE_FAULT_STACK_BYTES: usize = 16 * 1024;
const PAGE_FAULT_VECTOR: u64 = 14;

#[repr(C, align(16))]
struct Stack([u8; DOUBLE_FAULT_STACK_BYTES]);

static mut DOUBLE_FAULT_STACK: Stack = Stack([0; DOUBLE_FAULT_STACK_BYTES]);
static TSS: Once<TaskStateSegment> = Once::new();
static GDT: Once<(GlobalDescriptorTable, Selectors)> = Once::new();
static IDT: Once<InterruptDescriptorTable> = Once::new();

struct Selectors {
    code: SegmentSelector,
    data: SegmentSelector,
    tss: SegmentSelector,
}

/// The registers the common entry path saves, then what the stub and the
/// CPU pushed, lowest address first.
#[repr(C)]
#[derive(Debug)]
pub struct ExceptionFrame {
    r11: u64,
    r10: u64,
    r9: u64,
    r8: u64,
    rdi: u64,
    rsi: u64,
    rdx: u64,
    rcx: u64,
    rax: u64,
    vector: u64,
    error_code: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

/// Loads the GDT, TSS and IDT.
pub fn init() {
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        let stack_start = VirtAddr::from_ptr(core::ptr::addr_of!(DOUBLE_FAULT_STACK));
        tss.interrupt_stack_table[DOUBLE_FAULT_IST_INDEX as usize] =
            stack_start + DOUBLE_FAULT_STACK_BYTES as u64;
        tss
    });

    let (gdt, selectors) = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss = gdt.append(Descriptor::tss_segment(tss));
        (gdt, Selectors { code, data, tss })
    });
    gdt.load();
    // SAFETY: the selectors index the GDT just loaded, whose code and data
    // descriptors are flat 64-bit kernel segments.
    unsafe {
        CS::set_reg(selectors.code);
        DS::set_reg(selectors.data);
        ES::set_reg(selectors.data);
        SS::set_reg(selectors.data);
        load_tss(selectors.tss);
    }

    let idt = IDT.call_once(build_idt);
    idt.load();
}

fn build_idt() -> InterruptDescriptorTable {
    let mut idt = InterruptDescriptorTable::new();
    macro_rules! install {
        ($($field:ident => $stub:ident),* $(,)?) => {$(
            // SAFETY: the stub is a naked entry function that follows the
            // interrupt frame layout of its vector (error code or not).
            unsafe { idt.$field.set_handler_addr(VirtAddr::new($stub as *const () as u64)); }
        )*};
    }
    for vector in FIRST_DEVICE_VECTOR..=255u8 {
        let stub = core::ptr::addr_of!(interrupt_stubs) as u64
            + u64::from(vector - FIRST_DEVICE_VECTOR) * INTERRUPT_STUB_BYTES;
        // SAFETY: each 16-byte slot of interrupt_stubs is an entry stub that
        // pushes a zero and its vector, then jumps to interrupt_common.
        unsafe { idt[vector].set_handler_addr(VirtAddr::new(stub)) };
    }
    install!(
        divide_error => vector_0,
        debug => vector_1,
        non_maskable_interrupt => vector_2,
        breakpoint => vector_3,
        overflow => vector_4,
        bound_range_exceeded => vector_5,
        invalid_opcode => vector_6,
        device_not_available => vector_7,
        invalid_tss => vector_10,
        segment_not_present => vector_11,
        stack_segment_fault => vector_12,
        general_protection_fault => vector_13,
        page_fault => vector_14,
        x87_floating_point => vector_16,
        alignment_check => vector_17,
        machine_check => vector_18,
        simd_floating_point => vector_19,
        virtualization => vector_20,
        cp_protection_exception => vector_21,
    );
    // SAFETY: as above; the double-fault stack is installed in the TSS at
    // DOUBLE_FAULT_IST_INDEX by init().
    unsafe {
        idt.double_fault
            .set_handler_addr(VirtAddr::new(vector_8 as *const () as u64))
            .set_stack_index(DOUBLE_FAULT_IST_INDEX);
    }
    idt
}

macro_rules! exception_stub {
    ($name:ident, $vector:literal) => {
        #[unsafe(naked)]
        extern "C" fn $name() {
            naked_asm!("push 0", "push {vector}", "jmp {common}",
                vector = const $vector, common = sym interrupt_common)
        }
    };
    ($name:ident, $vector:literal, error_code) => {
        #[unsafe(naked)]
        extern "C" fn $name() {
            naked_asm!("push {vector}", "jmp {common}",
                vector = const $vector, common = sym interrupt_common)
        }
    };
}

exception_stub!(vector_0, 0);
exception_stub!(vector_1, 1);
exception_stub!(vector_2, 2);
exception_stub!(vector_3, 3);
exception_stub!(vector_4, 4);
exception_stub!(vector_5, 5);
exception_stub!(vector_6, 6);
exception_stub!(vector_7, 7);
exception_stub!(vector_8, 8, error_code);
exception_stub!(vector_10, 10, error_code);
exception_stub!(vector_11, 11, error_code);
exception_stub!(vector_12, 12, error_code);
exception_stub!(vector_13, 13, error_code);
exception_stub!(vector_14, 14, error_code);
exception_stub!(vector_16, 16);
exception_stub!(vector_17, 17, error_code);
exception_stub!(vector_18, 18);
exception_stub!(vector_19, 19);
exception_stub!(vector_20, 20);
exception_stub!(vector_21, 21, error_code);

/// Reports a CPU exception and ends QEMU: every exception in this kernel is
/// a bug, because no code relies on one.
fn exception_handler(frame: &ExceptionFrame) -> ! {
    serial::write_fmt_in_panic(format_args!(
        "\nCPU EXCEPTION {} ({}) error code {:#x} at RIP {:#x} (RSP {:#x}, RFLAGS {:#x})\n",
        frame.vector,
        exception_name(frame.vector),
        frame.error_code,
        frame.rip,
        frame.rsp,
        frame.rflags
    ));
    if frame.vector == PAGE_FAULT_VECTOR {
        serial::write_fmt_in_panic(format_args!(
            "  faulting address (CR2) {:#x}\n",
            Cr2::read_raw()
        ));
    }
    serial::write_fmt_in_panic(format_args!("  {:x?}\n", frame));
    exit_with(ExitCode::Panic)
}

fn exception_name(vector: u64) -> &'static str {
    match vector {
        0 => "divide error",
        1 => "debug",
        2 => "non-maskable interrupt",
        3 => "breakpoint",
        4 => "overflow",
        5 => "bound range exceeded",
        6 => "invalid opcode",
        7 => "device not available",
        8 => "double fault",
        10 => "invalid TSS",
        11 => "segment not present",
        12 => "stack-segment fault",
        13 => "general protection",
        14 => "page fault",
        16 => "x87 floating point",
        17 => "alignment check",
        18 => "machine check",
        19 => "SIMD floating point",
        20 => "virtualization",
        21 => "control protection",
        _ => "unknown",
    }
}

/// First vector after the 32 reserved for CPU exceptions.
const FIRST_DEVICE_VECTOR: u8 = 32;
/// Size of each generated entry stub (they are 16-byte aligned).
const INTERRUPT_STUB_BYTES: u64 = 16;

// One entry stub per vector 32..=255: push a zero error code and the
// vector, then jump to the common path. `push` of a value above 127 takes a
// 32-bit immediate, so each stub fits in 12 bytes of its 16-byte slot.
global_asm!(
    r#"
    .section .text.interrupt_stubs, "ax"
    .balign 16
    .global interrupt_stubs
interrupt_stubs:
    .set vector, 32
    .rept 224
    .balign 16
    push 0
    push vector
    jmp {common}
    .set vector, vector + 1
    .endr
    "#,
    common = sym interrupt_common,
);

extern "C" {
    static interrupt_stubs: u8;
}

/// Saves the caller-saved registers, calls [`interrupt_dispatch`] and
/// returns from the interrupt. The CPU aligned the stack to 16 bytes before
/// its five pushes; with the two stub words and nine registers the call
/// gets the ABI's alignment.
#[unsafe(naked)]
extern "C" fn interrupt_common() {
    naked_asm!(
        "push rax", "push rcx", "push rdx", "push rsi", "push rdi",
        "push r8", "push r9", "push r10", "push r11",
        "mov rdi, rsp",
        "cld",
        "call {dispatch}",
        "pop r11", "pop r10", "pop r9", "pop r8",
        "pop rdi", "pop rsi", "pop rdx", "pop rcx", "pop rax",
        "add rsp, 16",
        "iretq",
        dispatch = sym interrupt_dispatch,
    )
}

/// Handlers by vector, as `fn(u8)` pointers; 0 means none.
static HANDLERS: [AtomicUsize; 256] = [const { AtomicUsize::new(0) }; 256];
/// Interrupts taken, by vector.
static COUNTS: [AtomicU64; 256] = [const { AtomicU64::new(0) }; 256];
/// Vectors already reported as unexpected.
static REPORTED: [AtomicBool; 256] = [const { AtomicBool::new(false) }; 256];

/// Installs `handler` for `vector`. The handler runs with interrupts
/// disabled and must acknowledge its source; the local APIC's EOI is sent
/// after it returns.
pub fn set_handler(vector: u8, handler: fn(u8)) {
    HANDLERS[usize::from(vector)].store(handler as usize, Ordering::Release);
}

/// Returns how many interrupts `vector` has taken.
pub fn count(vector: u8) -> u64 {
    COUNTS[usize::from(vector)].load(Ordering::Relaxed)
}

extern "C" fn interrupt_dispatch(frame: &ExceptionFrame) {
    let vector = (frame.vector & 0xff) as u8;
    if vector < FIRST_DEVICE_VECTOR {
        exception_handler(frame);
    }
    COUNTS[usize::from(vector)].fetch_add(1, Ordering::Relaxed);
    if vector == crate::apic::SPURIOUS_VECTOR {
        // A spurious APIC interrupt must not be acknowledged with an EOI.
        return;
    }
    let handler = HANDLERS[usize::from(vector)].load(Ordering::Acquire);
    if handler == 0 {
        if !REPORTED[usize::from(vector)].swap(true, Ordering::Relaxed) {
            log::warn!("unexpected interrupt vector {vector:#x}: acknowledged and ignored");
        }
    } else {
        // SAFETY: non-zero entries were stored by set_handler from a fn(u8).
        let handler: fn(u8) = unsafe { core::mem::transmute::<usize, fn(u8)>(handler) };
        handler(vector);
    }
    crate::apic::end_of_interrupt();
}
