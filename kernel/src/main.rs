//! The unikernel image: initialisation order and the hand-over to the
//! executor that runs the network stack and services.
#![no_std]
#![no_main]

extern crate alloc;

mod exit;
mod interrupts;
mod logger;
mod memory;
mod paging;
mod platform;
mod serial;
mod time;

use boot::command_line::{LogLevel, Options};
use boot::BootInfo;
use log::{error, info, LevelFilter};

use crate::exit::{exit_with, ExitCode};

/// Entered from the boot crate once the CPU is in long mode.
#[no_mangle]
pub fn kernel_main(boot_info: &'static BootInfo) -> ! {
    serial::init();
    let (tsc_hz, tsc_source) = time::init(boot_info.entry_tsc);

    let options = match Options::parse(boot_info.command_line()) {
        Ok(options) => options,
        Err(error) => {
            println!("boot: invalid command line: {error}");
            exit_with(ExitCode::InvalidCommandLine);
        }
    };
    logger::init(level_filter(options.log_level));
    info!("command line: '{}'", boot_info.command_line());
    info!("TSC {} MHz ({:?})", tsc_hz / 1_000_000, tsc_source);

    interrupts::init();

    for region in boot_info.memory_regions() {
        info!(
            "memory {:#012x}-{:#012x} type {}",
            region.start,
            region.end(),
            region.kind
        );
    }
    match memory::init(boot_info) {
        Ok(heap) => info!("heap {:#x} size {} KiB", heap.start, heap.size_bytes / 1024),
        Err(problem) => {
            error!("memory setup failed: {problem:?}");
            exit_with(ExitCode::BootFailure);
        }
    }

    match platform::find_ecam(boot_info.rsdp_address) {
        Some(window) => {
            info!("ECAM {:#x} buses {}-{}", window.base_address, window.start_bus, window.end_bus);
            match paging::map_device_memory(window.base_address, window.length_bytes()) {
                Ok(_) => info!("ECAM mapped"),
                Err(problem) => error!("ECAM map failed: {problem:?}"),
            }
        }
        None => info!("no MCFG table: PCI through port I/O"),
    }

    info!("boot took {} us", time::uptime_micros());
    exit_with(ExitCode::Success)
}

fn level_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Off => LevelFilter::Off,
        LogLevel::Error => LevelFilter::Error,
        LogLevel::Warn => LevelFilter::Warn,
        LogLevel::Info => LevelFilter::Info,
        LogLevel::Debug => LevelFilter::Debug,
        LogLevel::Trace => LevelFilter::Trace,
    }
}

#[panic_handler]
fn panic(panic_info: &core::panic::PanicInfo) -> ! {
    serial::write_fmt_in_panic(format_args!("\nKERNEL PANIC: {panic_info}\n"));
    exit_with(ExitCode::Panic)
}
