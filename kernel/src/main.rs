//! The unikernel image: initialisation order and the hand-over to the
//! executor that runs the network stack and services.
//!
//! Boot order: COM1 and the clock, the command line, CPU tables, the heap,
//! ACPI (ECAM, interrupt controllers), the local APIC and I/O APICs, PCI,
//! the NIC, and finally the network stack and services on the executor.
#![no_std]
#![no_main]

extern crate alloc;

mod apic;
mod barrier_bench;
mod console;
mod devices;
mod exit;
mod idle;
mod interrupts;
mod ioapic;
mod logger;
mod memory;
mod nic_irq;
mod paging;
mod platform;
mod runtime;
mod serial;
mod time;

use boot::command_line::{Barriers, LogLevel, Options};
use boot::BootInfo;
use log::{error, info, warn, LevelFilter};
use virtio::barrier::BarrierMode;
use virtio_net::NetOptions;

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
        info!("memory {:#012x}-{:#012x} type {}", region.start, region.end(), region.kind);
    }
    match memory::init(boot_info) {
        Ok(heap) => info!("heap {:#x} size {} KiB", heap.start, heap.size_bytes / 1024),
        Err(problem) => {
            error!("memory setup failed: {problem}");
            exit_with(ExitCode::BootFailure);
        }
    }

    let ecam = platform::find_ecam(boot_info.rsdp_address);
    match ecam {
        Some(window) => {
            info!("ECAM {:#x} buses {}-{}", window.base_address, window.start_bus, window.end_bus);
            if let Err(problem) = paging::map_device_memory(window.base_address, window.length_bytes()) {
                error!("cannot map ECAM at {:#x}: {problem}", window.base_address);
                exit_with(ExitCode::BootFailure);
            }
        }
        None => info!("no MCFG table: PCI configuration through port I/O"),
    }

    let controllers = init_interrupt_controllers(boot_info);
    if let Some(iterations) = options.barrier_bench_iterations {
        barrier_bench::run(iterations, barrier_bench::accelerator());
    }

    let functions = devices::enumerate_pci(ecam, low_ram_end(boot_info));
    let net_options = NetOptions {
        barrier_mode: match options.barriers {
            Barriers::Weak => BarrierMode::Weak,
            Barriers::Strong => BarrierMode::Strong,
        },
        event_idx: true,
        msix: None,
    };
    let Some(nic) = devices::start_nic(&functions, ecam, net_options) else {
        error!("no usable NIC found: the kernel needs a virtio-net device (-device virtio-net-pci)");
        exit_with(ExitCode::NoUsableNic);
    };

    runtime::run(nic, &options, functions, &controllers)
}

/// Brings up the local APIC (masking the PICs) and the I/O APICs from the
/// MADT, and installs the timer handler.
fn init_interrupt_controllers(boot_info: &BootInfo) -> platform::InterruptControllers {
    let controllers = platform::find_interrupt_controllers(boot_info.rsdp_address).unwrap_or_default();
    match apic::init(controllers.local_apic_address) {
        Ok(summary) => info!(
            "local APIC {}: {}, timer {}",
            summary.id,
            if summary.x2apic { "x2APIC" } else { "xAPIC" },
            if summary.tsc_deadline { "TSC-deadline" } else { "one-shot (calibrated)" }
        ),
        Err(problem) => {
            error!("local APIC unusable: {problem}");
            exit_with(ExitCode::BootFailure);
        }
    }
    interrupts::set_handler(apic::TIMER_VECTOR, |_| apic::timer_fired());
    for io_apic in &controllers.io_apics {
        match ioapic::add(io_apic) {
            Ok(lines) => info!("I/O APIC {} at {:#x}: GSI {}-{}", io_apic.id, io_apic.address, io_apic.gsi_base, io_apic.gsi_base + lines - 1),
            Err(problem) => warn!("I/O APIC at {:#x} unusable: {problem}", io_apic.address),
        }
    }
    controllers
}

/// Returns the end of usable RAM below 4 GiB, above which PCI windows lie.
fn low_ram_end(boot_info: &BootInfo) -> u64 {
    boot_info
        .memory_regions()
        .iter()
        .filter(|region| region.is_usable() && region.start < 0x1_0000_0000)
        .map(|region| region.end().min(0x1_0000_0000))
        .max()
        .unwrap_or(0)
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
