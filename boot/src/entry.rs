//! The PVH entry point: QEMU's `-kernel` loader finds the Xen ELF note
//! `XEN_ELFNOTE_PHYS32_ENTRY` (type 18) and starts the kernel there in 32-bit
//! protected mode with paging off, with the physical address of the
//! `hvm_start_info` structure in `ebx` (Xen's `arch-x86/hvm/start_info.h`).
//!
//! The trampoline records the TSC, identity-maps the first 4 GiB with 2 MiB
//! pages, enables PAE, long mode and paging, loads a minimal 64-bit GDT, and
//! calls [`crate::boot_rust_entry`] with the start-info address.
//!
//! QEMU reads the note's descriptor as an 8-byte address in a 64-bit ELF and
//! aligns the name to the note segment's alignment, so the note section is
//! 4-byte aligned and its descriptor is a `.quad`.

core::arch::global_asm!(
    r#"
    .section .note.Xen, "a", @note
    .balign 4
    .long 4
    .long 8
    .long 18
    .asciz "Xen"
    .balign 4
    .quad pvh_start

    .section .text.boot, "ax"
    .code32
    .global pvh_start
pvh_start:
    cli
    cld
    mov esi, ebx

    rdtsc
    mov dword ptr [boot_entry_tsc], eax
    mov dword ptr [boot_entry_tsc + 4], edx

    mov esp, offset boot_stack_top

    mov eax, offset boot_pdpt
    or eax, 0x3
    mov dword ptr [boot_pml4], eax

    mov edi, offset boot_pdpt
    mov eax, offset boot_page_directories
    or eax, 0x3
    mov ecx, 4
2:
    mov dword ptr [edi], eax
    add eax, 4096
    add edi, 8
    loop 2b

    mov edi, offset boot_page_directories
    mov eax, 0x83
    mov ecx, 2048
3:
    mov dword ptr [edi], eax
    mov dword ptr [edi + 4], 0
    add eax, 0x200000
    add edi, 8
    loop 3b

    mov eax, cr4
    or eax, 0x20
    mov cr4, eax

    mov eax, offset boot_pml4
    mov cr3, eax

    mov ecx, 0xC0000080
    rdmsr
    or eax, 0x100
    wrmsr

    mov eax, cr0
    or eax, 0x80000001
    mov cr0, eax

    lgdt [boot_gdt_pointer]
    mov eax, 0x08
    push eax
    mov eax, offset boot_long_mode
    push eax
    retf

    .code64
boot_long_mode:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    mov rsp, offset boot_stack_top
    xor ebp, ebp
    mov edi, esi
    call boot_rust_entry
4:
    hlt
    jmp 4b

    .section .rodata.boot, "a"
    .balign 8
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff
    .quad 0x00cf92000000ffff
boot_gdt_end:
boot_gdt_pointer:
    .word boot_gdt_end - boot_gdt - 1
    .quad boot_gdt

    .section .data.boot, "aw"
    .balign 8
    .global boot_entry_tsc
boot_entry_tsc:
    .quad 0

    .section .bss.boot, "aw", @nobits
    .balign 4096
    .global boot_pml4
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_page_directories:
    .skip 4096 * 4
    .balign 16
    .global boot_stack_bottom
boot_stack_bottom:
    .skip 512 * 1024
    .global boot_stack_top
boot_stack_top:
    .code64
"#
);
