//! Ending QEMU with a status, through the `isa-debug-exit` device.
//!
//! `run.sh` adds `-device isa-debug-exit,iobase=0xf4,iosize=0x04`. QEMU exits
//! with status `(value << 1) | 1` when the kernel writes `value` to the port,
//! and `run.sh` maps that back, so the codes below are what `./run.sh`
//! itself exits with. Code 0 cannot be written as 0, because QEMU's status
//! would then be 1, which QEMU also uses for its own errors: the kernel
//! writes [`SUCCESS_VALUE`] instead, giving status 255, which `run.sh` maps
//! to 0. Codes therefore range from 0 to 126.

use x86_64::instructions::port::Port;

/// I/O port of the `isa-debug-exit` device.
const DEBUG_EXIT_PORT: u16 = 0xf4;
/// Value written for exit code 0; QEMU then exits with status 255.
const SUCCESS_VALUE: u32 = 0x7f;
/// The largest exit code the kernel can report.
pub const MAX_EXIT_CODE: u8 = 126;

/// Exit codes of the kernel, as `./run.sh` reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// An option on the command line is unknown or malformed (sysexits' EX_USAGE).
    InvalidCommandLine = 64,
    /// No virtio-net device could be brought up (sysexits' EX_UNAVAILABLE).
    NoUsableNic = 69,
    /// Another initialisation step failed (sysexits' EX_SOFTWARE).
    BootFailure = 70,
    /// The kernel panicked or took a CPU exception (Rust's panic status).
    Panic = 101,
}

/// Ends QEMU with `code` (at most [`MAX_EXIT_CODE`]; larger codes end it
/// with [`MAX_EXIT_CODE`]). Without the debug-exit device the CPU halts
/// forever with interrupts disabled.
pub fn exit(code: u8) -> ! {
    let value = match code {
        0 => SUCCESS_VALUE,
        code => u32::from(code.min(MAX_EXIT_CODE)),
    };
    // SAFETY: writing to the isa-debug-exit port ends the virtual machine;
    // on a machine without the device the write is ignored.
    unsafe { Port::<u32>::new(DEBUG_EXIT_PORT).write(value) };
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
