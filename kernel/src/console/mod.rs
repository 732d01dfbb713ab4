//! The serial console: a line editor on COM1 and the commands behind it.
//!
//! Input arrives by interrupt (COM1's IRQ through the I/O APIC) in irq mode
//! and is polled every few milliseconds in poll mode. Log lines and the
//! prompt never garble each other: the logger clears the line being typed,
//! prints its record, then redraws the prompt and the input.

mod commands;
mod editor;

use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::net::Ipv4Addr;
use core::future::poll_fn;
use core::task::Poll;

use boot::command_line::WaitMode;
use futures_util::task::AtomicWaker;
use net::stack::Stack;
use net::timer::Timers;
use pci::Function;
use smoltcp::time::Duration;
use spin::Mutex;

use crate::ioapic::{self, LineMode};
use crate::platform::InterruptControllers;
use crate::runtime::{self, Device};
use crate::{apic, interrupts, serial};

pub use editor::LineEditor;

/// Vector of COM1's receive interrupt.
const COM1_VECTOR: u8 = 0x45;
/// COM1's ISA interrupt.
const COM1_ISA_IRQ: u8 = 4;
/// How often poll mode looks at COM1.
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// The prompt.
pub const PROMPT: &str = "> ";

static CONSOLE_WAKER: AtomicWaker = AtomicWaker::new();
/// The line being typed, shared with the logger so it can redraw it.
static EDITOR: Mutex<Option<LineEditor>> = Mutex::new(None);

/// State the commands inspect and change.
pub struct ConsoleContext {
    pub device: Rc<RefCell<Device>>,
    pub stack: Stack,
    pub functions: Vec<Function>,
    pub address: Ipv4Addr,
    pub prefix_length: u8,
    pub gateway: Ipv4Addr,
    pub services: runtime::ServiceCounters,
}

fn com1_interrupt(_vector: u8) {
    CONSOLE_WAKER.wake();
}

/// Routes COM1's interrupt and enables its receive interrupt.
pub fn init(controllers: &InterruptControllers) {
    let (gsi, flags) = controllers.isa_gsi(COM1_ISA_IRQ);
    interrupts::set_handler(COM1_VECTOR, com1_interrupt);
    let mode = LineMode::from_inti_flags(flags, LineMode::EDGE_HIGH);
    if ioapic::route(gsi, COM1_VECTOR, mode, apic::id()) {
        serial::enable_receive_interrupt();
    } else {
        log::warn!("console: no I/O APIC serves GSI {gsi} (COM1): input is polled");
    }
    *EDITOR.lock() = Some(LineEditor::new());
}

/// Clears the line being typed before a log record is printed.
pub fn before_log() {
    if let Some(editor) = EDITOR.lock().as_ref() {
        if editor.is_drawn() {
            crate::print!("\r\x1b[2K");
        }
    }
}

/// Redraws the prompt and the input after a log record.
pub fn after_log() {
    if let Some(editor) = EDITOR.lock().as_ref() {
        if editor.is_drawn() {
            crate::print!("{PROMPT}{}", editor.line());
        }
    }
}

/// Reads and runs commands for as long as the kernel runs.
pub async fn run(context: ConsoleContext, timers: Timers) {
    crate::print!("{PROMPT}");
    set_drawn(true);
    let (early, length) = serial::take_early_input();
    for &byte in &early[..length] {
        handle_byte(&context, byte);
    }
    loop {
        while let Some(byte) = serial::read_byte() {
            handle_byte(&context, byte);
        }
        if runtime::mode() == WaitMode::Poll {
            timers.sleep(POLL_INTERVAL).await;
            continue;
        }
        let mut registered = false;
        poll_fn(|context| {
            if registered {
                return Poll::Ready(());
            }
            CONSOLE_WAKER.register(context.waker());
            registered = true;
            Poll::Pending
        })
        .await;
    }
}

fn set_drawn(drawn: bool) {
    if let Some(editor) = EDITOR.lock().as_mut() {
        editor.set_drawn(drawn);
    }
}

fn handle_byte(context: &ConsoleContext, byte: u8) {
    let (echo, submitted) = {
        let mut guard = EDITOR.lock();
        let Some(editor) = guard.as_mut() else { return };
        editor.feed(byte)
    };
    crate::print!("{}", echo.as_str());
    if let Some(line) = submitted {
        set_drawn(false);
        crate::println!();
        commands::execute(context, line.trim());
        crate::print!("{PROMPT}");
        set_drawn(true);
    }
}
