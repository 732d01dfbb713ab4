//! COM1, the serial console: the log sink and (later) the console input.
//!
//! Output goes through `uart_16550` on I/O port 0x3f8. The port sits behind a
//! spin lock; interrupt handlers never print, so the lock is never taken by an
//! interrupt that preempted its holder.

use core::fmt::{self, Write};

use spin::Mutex;
use x86_64::instructions::port::Port;
use uart_16550::backend::PioBackend;
use uart_16550::spec::registers::IER;
use uart_16550::{Config, Uart16550};

/// I/O base of COM1 on PC-compatible machines.
const COM1_PORT: u16 = 0x3f8;

static COM1: Mutex<Option<Uart16550<PioBackend>>> = Mutex::new(None);

/// Line status register offset and its data-ready bit (16550 data sheet).
const LINE_STATUS_OFFSET: u16 = 5;
const LINE_STATUS_DATA_READY: u8 = 1;
/// Bytes kept from before initialisation: the 16550's receive FIFO size.
const EARLY_INPUT_BYTES: usize = 16;

/// Input that arrived before [`init`], which resets the UART and would
/// otherwise drop it (typed or piped before the kernel started).
static EARLY_INPUT: Mutex<([u8; EARLY_INPUT_BYTES], usize)> = Mutex::new(([0; EARLY_INPUT_BYTES], 0));

/// Moves bytes already waiting in the UART into [`EARLY_INPUT`].
fn save_early_input() {
    let mut line_status = Port::<u8>::new(COM1_PORT + LINE_STATUS_OFFSET);
    let mut data = Port::<u8>::new(COM1_PORT);
    let mut early = EARLY_INPUT.lock();
    // SAFETY: reading COM1's line status and receive buffer has no effect
    // beyond taking the received byte, which is what this function is for.
    while early.1 < EARLY_INPUT_BYTES && unsafe { line_status.read() } & LINE_STATUS_DATA_READY != 0 {
        let index = early.1;
        // SAFETY: as above.
        early.0[index] = unsafe { data.read() };
        early.1 += 1;
    }
}

/// Returns the input saved before initialisation, once.
pub fn take_early_input() -> ([u8; EARLY_INPUT_BYTES], usize) {
    core::mem::replace(&mut *EARLY_INPUT.lock(), ([0; EARLY_INPUT_BYTES], 0))
}

/// Initialises COM1 at 115200 baud, 8N1. Output before this call is dropped.
pub fn init() {
    save_early_input();
    // SAFETY: 0x3f8..0x400 are COM1's registers on every PC-compatible
    // machine QEMU emulates, and only this module touches them.
    let Ok(mut port) = (unsafe { Uart16550::new_port(COM1_PORT) }) else {
        return;
    };
    if port.init(Config::default()).is_ok() {
        *COM1.lock() = Some(port);
    }
}

/// Returns the next received byte, if one is waiting.
pub fn read_byte() -> Option<u8> {
    COM1.lock().as_mut()?.try_receive_byte().ok()
}

/// Makes COM1 raise its interrupt line when a byte arrives.
pub fn enable_receive_interrupt() {
    if let Some(port) = COM1.lock().as_mut() {
        port.enable_interrupts(IER::DATA_READY);
    }
}

struct Writer<'a>(&'a mut Uart16550<PioBackend>);

impl Write for Writer<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for byte in text.bytes() {
            if byte == b'\n' {
                self.0.send_bytes_exact(b"\r");
            }
            self.0.send_bytes_exact(&[byte]);
        }
        Ok(())
    }
}

/// Writes formatted text to COM1.
pub fn write_fmt(arguments: fmt::Arguments) {
    let mut guard = COM1.lock();
    if let Some(port) = guard.as_mut() {
        let _ = Writer(port).write_fmt(arguments);
    }
}

/// Writes to COM1 even if the lock is held, for the panic handler: the
/// holder can never run again once the kernel has panicked.
pub fn write_fmt_in_panic(arguments: fmt::Arguments) {
    // SAFETY: called only from the panic handler on the single CPU, after
    // which the kernel exits; no other user of COM1 resumes.
    unsafe { COM1.force_unlock() };
    write_fmt(arguments);
}

/// Prints to the serial console.
#[macro_export]
macro_rules! print {
    ($($argument:tt)*) => { $crate::serial::write_fmt(format_args!($($argument)*)) };
}

/// Prints a line to the serial console.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($argument:tt)*) => { $crate::print!("{}\n", format_args!($($argument)*)) };
}
