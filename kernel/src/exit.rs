//! Ending QEMU with a status, through the `isa-debug-exit` device.
//!
//! `run.sh` adds `-device isa-debug-exit,iobase=0xf4,iosize=0x04`. QEMU exits
//! with status `(value << 1) | 1` when the kernel writes `value` to the port,
//! and `run.sh` maps that back to `value`, so the codes below are what
//! `./run.sh` itself exits with.

use x86_64::instructions::port::Port;

/// I/O port of the `isa-debug-exit` device.
const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Exit codes of the kernel, as `./run.sh` reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    Success = 0,
    /// An option on the command line is unknown or malformed (sysexits' EX_USAGE).
    InvalidCommandLine = 64,
    /// No virtio-net device could be brought up (sysexits' EX_UNAVAILABLE).
    NoUsableNic = 69,
    /// Another initialisation step failed (sysexits' EX_SOFTWARE).
    BootFailure = 70,
    /// The kernel panicked or took a CPU exception (Rust's panic status).
    Panic = 101,
}

/// Ends QEMU with `code`. Without the debug-exit device the CPU halts forever
/// with interrupts disabled.
pub fn exit(code: u8) -> ! {
    // SAFETY: writing to the isa-debug-exit port ends the virtual machine;
    // on a machine without the device the write is ignored.
    unsafe { Port::<u32>::new(DEBUG_EXIT_PORT).write(u32::from(code)) };
    halt_forever()
}

/// Ends QEMU with one of the kernel's own exit codes.
pub fn exit_with(code: ExitCode) -> ! {
    exit(code as u8)
}

/// Disables interrupts and halts the CPU for good.
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
