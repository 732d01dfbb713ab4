//! COM1, the serial console: the log sink and (later) the console input.
//!
//! Output goes through `uart_16550` on I/O port 0x3f8. The port sits behind a
//! spin lock; interrupt handlers never print, so the lock is never taken by an
//! interrupt that preempted its holder.

use core::fmt::{self, Write};

use spin::Mutex;
use uart_16550::backend::PioBackend;
use uart_16550::spec::registers::IER;
use uart_16550::{Config, Uart16550};

/// I/O base of COM1 on PC-compatible machines.
const COM1_PORT: u16 = 0x3f8;

static COM1: Mutex<Option<Uart16550<PioBackend>>> = Mutex::new(None);

/// Initialises COM1 at 115200 baud, 8N1. Output before this call is dropped.
pub fn init() {
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
